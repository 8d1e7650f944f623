//! What an evaluation read, as validators: the ETag of every GET, so that a later sweep can ask
//! GitHub "has any of this changed?" with conditional requests, which cost no quota when the
//! answer is 304, instead of reading everything again.
//!
//! The ETag cache ([`crate::cache`]) answers the same question while it still holds the bodies,
//! but it is bounded in memory, and at 100,000 repositories it evicts before the next sweep
//! comes round (measured with `sweep_scale`: 3.5 charged requests per repository on an unchanged
//! second sweep). Validators are a few hundred bytes per repository, kept by the caller where
//! they scale (the evaluator keeps them in Postgres), and need no body: when every validator is
//! a 304, everything the evaluation was decided on is what it was, so its verdicts still stand.
//!
//! Recording is scoped to one future (a tokio task-local), so concurrent evaluations on the
//! shared client never mix their reads. It fails closed: a read that yields no validator (no
//! ETag, an error status without a validating resource, a write) marks the record incomplete,
//! and an incomplete record must not be used to skip anything.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;

/// One conditional read: GitHub answers 304 to this request with `If-None-Match: etag` while
/// the resource is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validator {
    pub path: String,
    /// The request headers that select the representation (e.g. `Accept`), as sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    pub etag: String,
}

/// What one scoped future read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// One per distinct request, in the order first read.
    pub validators: Vec<Validator>,
    /// False once any read gave no validator: the validators then do not cover everything
    /// that was read.
    pub complete: bool,
}

impl Reads {
    fn note(&mut self, v: Option<Validator>) {
        match v {
            Some(v) => {
                if let Some(same) = self
                    .validators
                    .iter_mut()
                    .find(|o| o.path == v.path && o.headers == v.headers)
                {
                    // Read twice in one evaluation with different answers: which one a verdict
                    // was decided on is not known, so neither can vouch for it.
                    if same.etag != v.etag {
                        self.complete = false;
                    }
                } else {
                    self.validators.push(v);
                }
            }
            None => self.complete = false,
        }
    }
}

tokio::task_local! {
    static READS: Mutex<Reads>;
}

/// Runs `fut`, recording the validators of every read the GitHub client makes inside it.
pub async fn recording<F: std::future::Future>(fut: F) -> (F::Output, Reads) {
    READS
        .scope(
            Mutex::new(Reads {
                validators: Vec::new(),
                complete: true,
            }),
            async move {
                let out = fut.await;
                let reads = READS
                    .try_with(|r| r.lock().map(|r| r.clone()).unwrap_or_default())
                    .unwrap_or_default();
                (out, reads)
            },
        )
        .await
}

/// Notes one read of the current scope; `None`: the read cannot be validated later. Outside a
/// scope (every service but the evaluator's evaluations) nothing is built or kept.
pub(crate) fn note(v: impl FnOnce() -> Option<Validator>) {
    let _ = READS.try_with(|r| {
        if let Ok(mut r) = r.lock() {
            r.note(v());
        }
    });
}

/// Whether a scope is recording (so the client builds validators only when someone keeps them).
pub(crate) fn active() -> bool {
    READS.try_with(|_| ()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(path: &str, etag: &str) -> Validator {
        Validator {
            path: path.into(),
            headers: vec![],
            etag: etag.into(),
        }
    }

    #[tokio::test]
    async fn reads_are_recorded_per_scope_and_a_read_without_validator_makes_it_incomplete() {
        let (_, outside) = recording(async {}).await;
        assert!(outside.complete && outside.validators.is_empty());
        note(|| Some(v("/not/recorded", "x"))); // no scope: nothing happens
        let (one, two) = tokio::join!(
            recording(async {
                note(|| Some(v("/repos/a/b", "1")));
                tokio::task::yield_now().await;
                note(|| Some(v("/repos/a/b", "2")));
            }),
            recording(async {
                note(|| Some(v("/repos/c/d", "3")));
                note(|| Some(v("/repos/c/d", "3")));
                tokio::task::yield_now().await;
                note(|| None);
            }),
        );
        assert_eq!(one.1.validators, vec![v("/repos/a/b", "1")]);
        assert!(!one.1.complete, "read twice, with different answers");
        assert_eq!(two.1.validators, vec![v("/repos/c/d", "3")]);
        assert!(!two.1.complete, "a read without a validator");
    }
}
