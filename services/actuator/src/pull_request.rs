//! Pull-request remediations, safe to run twice.
//!
//! One branch per (repository, rule): `<prefix><rule name>`. Before writing anything the live
//! state is read (free of the content budget): the base branch's head, the branch, an open pull
//! request from it. Then:
//!
//! - an open pull request whose branch already holds the files (same content, same mode) is
//!   reused as it is: nothing is written, so a redelivered verdict, or one redone after a crash
//!   between opening the pull request and recording it, never opens a second;
//! - an open pull request whose branch differs gets one commit on top of its branch;
//! - otherwise one commit on top of the base goes to the branch (created, or reset when it is
//!   left over from a closed pull request) and the pull request is opened.
//!
//! The writes are computed before the first is sent, so dry run publishes them exactly and the
//! content budget is reserved for all of them at once. A value only an earlier write returns
//! (the new tree's and commit's SHAs) reads `${tree.sha}` / `${commit.sha}` in the plan.

use plumbline_engine::PullRequestPlan;
use plumbline_github::{GitHub, GitHubError, Method, PullRequest};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::collections::HashMap;

/// One write of a plan; `name` is what later writes call its answer's `sha`.
#[derive(Debug, Clone, PartialEq)]
pub struct Write {
    pub name: Option<&'static str>,
    pub method: &'static str,
    pub path: String,
    pub body: Value,
}

/// What a pull request remediation will do.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub writes: Vec<Write>,
    /// The open pull request it updates or reuses.
    pub existing: Option<PullRequest>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrError {
    /// Rate limited, 5xx, timeouts: retry later (every step is safe to redo).
    #[error(transparent)]
    Transient(GitHubError),
    /// GitHub refused: the action failed.
    #[error("{0}")]
    Refused(String),
}

fn classify(e: GitHubError) -> PrError {
    match e {
        GitHubError::RateLimited { .. } | GitHubError::Transient(_) => PrError::Transient(e),
        other => PrError::Refused(other.to_string()),
    }
}

/// The branch name for a rule: `prefix` plus the rule's name, reduced to what git allows.
pub fn branch_for(prefix: &str, rule_name: &str) -> String {
    let clean: String = rule_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{prefix}{clean}")
}

/// Git's blob id of `content`: how GitHub's trees name it.
fn blob_sha(content: &[u8]) -> String {
    let mut h = Sha1::new();
    h.update(format!("blob {}\0", content.len()).as_bytes());
    h.update(content);
    hex::encode(h.finalize())
}

/// (commit sha, tree sha) of a branch's head; None when the branch does not exist.
async fn head(
    github: &GitHub,
    owner: &str,
    repo: &str,
    branch: &str,
) -> Result<Option<(String, String)>, PrError> {
    let path = format!("/repos/{owner}/{repo}/commits/{branch}");
    let r = github
        .request(Method::GET, &path, None)
        .await
        .map_err(classify)?;
    match r.status {
        200 => {
            let v = r
                .json()
                .map_err(|e| PrError::Refused(format!("{path}: {e}")))?;
            match (
                v.get("sha").and_then(Value::as_str),
                v.pointer("/commit/tree/sha").and_then(Value::as_str),
            ) {
                (Some(c), Some(t)) => Ok(Some((c.to_string(), t.to_string()))),
                _ => Err(PrError::Refused(format!(
                    "{path}: commit without sha or tree"
                ))),
            }
        }
        404 | 409 | 422 => Ok(None),
        s => Err(PrError::Refused(format!(
            "GET {path} answered {s}: {}",
            r.message()
        ))),
    }
}

/// Whether the tree at `tree_sha` holds every planned file with its content and mode.
async fn holds_files(
    github: &GitHub,
    owner: &str,
    repo: &str,
    tree_sha: &str,
    plan: &PullRequestPlan,
) -> Result<bool, PrError> {
    let path = format!("/repos/{owner}/{repo}/git/trees/{tree_sha}?recursive=1");
    let r = github
        .request(Method::GET, &path, None)
        .await
        .map_err(classify)?;
    if r.status != 200 {
        return Ok(false);
    }
    let v = r
        .json()
        .map_err(|e| PrError::Refused(format!("{path}: {e}")))?;
    let entries: HashMap<&str, (&str, &str)> = v
        .get("tree")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e.get("path")?.as_str()?,
                (e.get("mode")?.as_str()?, e.get("sha")?.as_str()?),
            ))
        })
        .collect();
    Ok(plan.files.iter().all(|f| {
        entries.get(f.path.as_str())
            == Some(&(f.mode.as_str(), blob_sha(f.content.as_bytes()).as_str()))
    }))
}

/// Reads live state and computes the writes.
pub async fn prepare(
    github: &GitHub,
    owner: &str,
    repo: &str,
    branch: &str,
    plan: &PullRequestPlan,
    commit_message: &str,
) -> Result<Prepared, PrError> {
    let Some((base_sha, base_tree)) = head(github, owner, repo, &plan.base).await? else {
        return Err(PrError::Refused(format!(
            "base branch {} does not exist",
            plan.base
        )));
    };
    let open = github
        .find_open_pulls(owner, repo, branch, &plan.base)
        .await
        .map_err(classify)?;
    let existing = open.into_iter().next();
    let branch_head = head(github, owner, repo, branch).await?;
    let tree_entries: Vec<Value> = plan
        .files
        .iter()
        .map(|f| json!({"path": f.path, "mode": f.mode, "type": "blob", "content": f.content}))
        .collect();
    let tree = |base: &str| Write {
        name: Some("tree"),
        method: "POST",
        path: format!("/repos/{owner}/{repo}/git/trees"),
        body: json!({"base_tree": base, "tree": tree_entries}),
    };
    let commit = |parent: &str| Write {
        name: Some("commit"),
        method: "POST",
        path: format!("/repos/{owner}/{repo}/git/commits"),
        body: json!({"message": commit_message, "tree": "${tree.sha}", "parents": [parent]}),
    };
    let mut writes = Vec::new();
    match (&existing, &branch_head) {
        (Some(pr), Some((head_sha, head_tree))) => {
            if !holds_files(github, owner, repo, head_tree, plan).await? {
                writes.push(tree(head_tree));
                writes.push(commit(head_sha));
                writes.push(Write {
                    name: None,
                    method: "PATCH",
                    path: format!("/repos/{owner}/{repo}/git/refs/heads/{branch}"),
                    body: json!({"sha": "${commit.sha}", "force": false}),
                });
            }
            if pr.title != plan.title || pr.body.as_deref().unwrap_or("") != plan.body {
                writes.push(Write {
                    name: None,
                    method: "PATCH",
                    path: format!("/repos/{owner}/{repo}/pulls/{}", pr.number),
                    body: json!({"title": plan.title, "body": plan.body}),
                });
            }
        }
        _ => {
            writes.push(tree(&base_tree));
            writes.push(commit(&base_sha));
            writes.push(match branch_head {
                // Left over from a closed pull request (or an attempt cut short): start it
                // again from the base.
                Some(_) => Write {
                    name: None,
                    method: "PATCH",
                    path: format!("/repos/{owner}/{repo}/git/refs/heads/{branch}"),
                    body: json!({"sha": "${commit.sha}", "force": true}),
                },
                None => Write {
                    name: None,
                    method: "POST",
                    path: format!("/repos/{owner}/{repo}/git/refs"),
                    body: json!({"ref": format!("refs/heads/{branch}"), "sha": "${commit.sha}"}),
                },
            });
            writes.push(Write {
                name: Some("pull"),
                method: "POST",
                path: format!("/repos/{owner}/{repo}/pulls"),
                body: json!({"title": plan.title, "body": plan.body, "head": branch, "base": plan.base}),
            });
        }
    }
    Ok(Prepared {
        writes,
        existing: if branch_head.is_some() {
            existing
        } else {
            None
        },
    })
}

/// Replaces `${name.sha}` strings with what earlier writes answered.
fn resolve(v: &Value, shas: &HashMap<&'static str, String>) -> Value {
    match v {
        Value::String(s) => match s.strip_prefix("${").and_then(|r| r.strip_suffix(".sha}")) {
            Some(name) => shas
                .get(name)
                .map(|sha| Value::String(sha.clone()))
                .unwrap_or_else(|| v.clone()),
            None => v.clone(),
        },
        Value::Array(a) => Value::Array(a.iter().map(|x| resolve(x, shas)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), resolve(x, shas)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// What the writes achieved.
#[derive(Debug, Clone)]
pub struct Applied {
    pub number: u64,
    pub html_url: String,
    /// Writes sent (for the content budget).
    pub sent: u32,
    /// The requests as sent, values resolved.
    pub requests: Vec<plumbline_domain::PlannedRequest>,
}

/// Sends the writes in order. On an error, `sent` so far is in the error's count.
pub async fn apply(github: &GitHub, prepared: &Prepared) -> Result<Applied, (PrError, u32)> {
    let mut shas: HashMap<&'static str, String> = HashMap::new();
    let mut sent = 0u32;
    let mut requests = Vec::new();
    let mut number = prepared.existing.as_ref().map(|p| p.number);
    let mut html_url = prepared.existing.as_ref().map(|p| p.html_url.clone());
    for w in &prepared.writes {
        let body = resolve(&w.body, &shas);
        let method = Method::from_bytes(w.method.as_bytes())
            .map_err(|_| (PrError::Refused(format!("bad method {}", w.method)), sent))?;
        sent += 1;
        let r = github
            .request(method, &w.path, Some(&body))
            .await
            .map_err(|e| (classify(e), sent))?;
        requests.push(plumbline_domain::PlannedRequest::new(
            w.method.to_string(),
            format!("{}{}", github.api_url(), w.path),
            body.to_string(),
        ));
        if !(200..300).contains(&r.status) {
            return Err((
                PrError::Refused(format!(
                    "{} {} answered {}: {}",
                    w.method,
                    w.path,
                    r.status,
                    r.message()
                )),
                sent,
            ));
        }
        let answer = r.json().unwrap_or(Value::Null);
        if let Some(name) = w.name {
            if let Some(sha) = answer.get("sha").and_then(Value::as_str) {
                shas.insert(name, sha.to_string());
            }
            if name == "pull" {
                number = answer.get("number").and_then(Value::as_u64);
                html_url = answer
                    .get("html_url")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
        }
    }
    match number {
        Some(number) => Ok(Applied {
            number,
            html_url: html_url.unwrap_or_default(),
            sent,
            requests,
        }),
        None => Err((PrError::Refused("no pull request was opened".into()), sent)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            blob_sha(b"hello\n"),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
    }

    #[test]
    fn branch_names_are_safe_for_git() {
        assert_eq!(
            branch_for("plumbline/", "dependabot_configured"),
            "plumbline/dependabot_configured"
        );
        assert_eq!(branch_for("plumbline/", "a b/../c"), "plumbline/a-b----c");
    }

    #[test]
    fn placeholders_take_earlier_answers() {
        let mut shas = HashMap::new();
        shas.insert("tree", "abc".to_string());
        let v = resolve(
            &json!({"tree": "${tree.sha}", "parents": ["${commit.sha}", "x"]}),
            &shas,
        );
        assert_eq!(v, json!({"tree": "abc", "parents": ["${commit.sha}", "x"]}));
    }
}
