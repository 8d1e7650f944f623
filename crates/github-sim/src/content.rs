//! Repository contents: files per branch, the commits that change them (with their `push`
//! webhooks) and the tarball archive of a ref.
//!
//! Commits are simulated just far enough for Plumbline: each change of files makes a new head
//! sha (derived from the previous head and the change, so it is deterministic per history) and
//! sends the `push` webhook GitHub would send. There is no history beyond the head.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::state::{Actor, State};
use crate::webhooks::{self, Event};
use crate::SimError;

/// Length of the abbreviated sha in the tarball's top folder, like GitHub's.
const SHORT_SHA: usize = 7;

/// One change of a commit: a path and its new contents, or None to delete the file.
pub(crate) type FileChange = (String, Option<Vec<u8>>);

/// Paths of a commit, grouped as in the `push` payload.
#[derive(Debug, Default)]
struct Touched {
    added: Vec<String>,
    modified: Vec<String>,
    removed: Vec<String>,
}

/// A new head sha after applying `changes` on top of `before`.
fn commit_sha(repo_id: u64, branch: &str, before: &str, changes: &[FileChange]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{repo_id}:{branch}:{before}").as_bytes());
    for (path, contents) in changes {
        hasher.update(path.as_bytes());
        match contents {
            Some(bytes) => {
                hasher.update(b"+");
                hasher.update(Sha256::digest(bytes));
            }
            None => hasher.update(b"-"),
        }
    }
    hex::encode(&hasher.finalize()[..20])
}

/// The first `len` characters of a (hex, so ASCII) sha.
fn short(sha: &str, len: usize) -> &str {
    sha.get(..len).unwrap_or(sha)
}

/// GitHub's file paths: relative, `/`-separated, no empty, `.` or `..` segments.
fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..")
}

/// The commit message the simulated UI writes for a change.
fn commit_message(touched: &Touched) -> String {
    let describe = |verb: &str, paths: &[String]| match paths {
        [] => None,
        [one] => Some(format!("{verb} {one}")),
        many => Some(format!("{verb} {} files", many.len())),
    };
    [
        describe("Create", &touched.added),
        describe("Update", &touched.modified),
        describe("Delete", &touched.removed),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(", ")
}

impl State {
    /// Applies `changes` to a branch as one commit and returns the `push` event. Fails without
    /// changing anything if the repository or branch does not exist, a path is invalid, or a
    /// file to delete does not exist.
    pub(crate) fn commit_files(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        changes: Vec<FileChange>,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let target = repo
            .branches
            .get_mut(branch)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?;
        let mut touched = Touched::default();
        for (path, contents) in &changes {
            if !valid_path(path) {
                return Err(SimError::Invalid(format!("path is invalid: {path:?}")));
            }
            match (contents, target.files.contains_key(path)) {
                (Some(_), false) => touched.added.push(path.clone()),
                (Some(_), true) => touched.modified.push(path.clone()),
                (None, true) => touched.removed.push(path.clone()),
                (None, false) => return Err(SimError::NotFound("Not Found".to_owned())),
            }
        }
        let before = target.sha.clone();
        let after = commit_sha(id, branch, &before, &changes);
        for (path, contents) in changes {
            match contents {
                Some(bytes) => {
                    target.files.insert(path, bytes);
                }
                None => {
                    target.files.remove(&path);
                }
            }
        }
        let now = Utc::now();
        target.sha = after.clone();
        target.committed_at = now;
        repo.pushed_at = now;
        repo.updated_at = now;
        let message = commit_message(&touched);
        Ok(self
            .push_event(id, branch, &before, &after, &message, touched, now, actor)
            .into_iter()
            .collect())
    }

    /// Builds a `push` event for a one-commit push to `branch`.
    #[allow(clippy::too_many_arguments)]
    fn push_event(
        &self,
        repo_id: u64,
        branch: &str,
        before: &str,
        after: &str,
        message: &str,
        touched: Touched,
        at: DateTime<Utc>,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let base = self.base_url(None);
        let html = format!("{base}/{}/{}", org.login, repo.name);
        let (login, name) = match actor {
            Actor::Admin => ("sim-admin", "Sim Admin"),
            Actor::Api => ("plumbline-sim[bot]", "plumbline-sim[bot]"),
        };
        let person = json!({
            "name": name,
            "email": format!("{login}@users.noreply.github.com"),
            "username": login,
        });
        let commit = json!({
            "id": after,
            "tree_id": commit_sha(repo_id, "tree", after, &[]),
            "distinct": true,
            "message": message,
            "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "url": format!("{html}/commit/{after}"),
            "author": person,
            "committer": person,
            "added": touched.added,
            "removed": touched.removed,
            "modified": touched.modified,
        });
        let payload = json!({
            "ref": format!("refs/heads/{branch}"),
            "before": before,
            "after": after,
            "created": false,
            "deleted": false,
            "forced": false,
            "base_ref": Value::Null,
            "compare": format!("{html}/compare/{}...{}", short(before, 12), short(after, 12)),
            "commits": [commit.clone()],
            "head_commit": commit,
            "pusher": { "name": login, "email": format!("{login}@users.noreply.github.com") },
        });
        Some(webhooks::push_event(&base, org, repo, payload, actor))
    }

    /// Resolves `reference` (a branch name, `heads/{branch}`, or the full sha of a branch head)
    /// in a repository and archives that branch as GitHub's tarball: a gzip'd tar whose regular
    /// files (mode 0644) sit under one top folder `{owner}-{repo}-{shortsha}/`.
    pub(crate) fn tarball(
        &self,
        owner: &str,
        name: &str,
        reference: &str,
    ) -> Result<Vec<u8>, SimError> {
        let not_found = || SimError::NotFound("Not Found".to_owned());
        let (org, repo) = self.repo(owner, name).ok_or_else(not_found)?;
        let wanted = reference
            .strip_prefix("refs/heads/")
            .or_else(|| reference.strip_prefix("heads/"))
            .unwrap_or(reference);
        let branch = repo
            .branches
            .get(wanted)
            .or_else(|| {
                (reference.len() == 40)
                    .then(|| repo.branches.values().find(|b| b.sha == reference))
                    .flatten()
            })
            .ok_or_else(not_found)?;
        let top = format!("{}-{}-{}", org.login, repo.name, short(&branch.sha, SHORT_SHA));
        let mtime = u64::try_from(branch.committed_at.timestamp()).unwrap_or(0);
        // Writing into memory only fails for entries tar cannot represent.
        archive(&top, &branch.files, mtime, &branch.sha)
            .map_err(|e| SimError::Invalid(format!("failed to build tarball: {e}")))
    }
}

/// Writes the gzip'd tar of `files` under `top/`. GitHub stores the commit sha as the archive's
/// comment (readable with `git get-tar-commit-id`); here it is the gzip header's comment.
fn archive(
    top: &str,
    files: &BTreeMap<String, Vec<u8>>,
    mtime: u64,
    sha: &str,
) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::GzBuilder::new()
        .comment(sha.as_bytes())
        .write(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(contents.len() as u64);
        header.set_mtime(mtime);
        builder.append_data(&mut header, format!("{top}/{path}"), contents.as_slice())?;
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoOptions;

    #[test]
    fn commits_move_the_head_and_list_paths() {
        let mut st = State::new();
        let opts = RepoOptions {
            files: vec![("README.md".to_owned(), b"hi".to_vec())],
            ..RepoOptions::default()
        };
        st.create_repo("acme", "api", &opts, Actor::Admin);
        let changes = vec![
            ("README.md".to_owned(), Some(b"hello".to_vec())),
            ("src/a.rs".to_owned(), Some(Vec::new())),
        ];
        let events = st
            .commit_files("acme", "api", "main", changes, Actor::Admin)
            .unwrap();
        assert_eq!(events.len(), 1);
        let payload = &events[0].payload;
        assert_eq!(events[0].name, "push");
        assert_eq!(payload["ref"], "refs/heads/main");
        assert_ne!(payload["before"], payload["after"]);
        assert_eq!(payload["head_commit"]["added"], json!(["src/a.rs"]));
        assert_eq!(payload["head_commit"]["modified"], json!(["README.md"]));
        let missing = vec![("nope".to_owned(), None)];
        assert!(st
            .commit_files("acme", "api", "main", missing, Actor::Admin)
            .is_err());
        let bad = vec![("../x".to_owned(), Some(Vec::new()))];
        assert!(matches!(
            st.commit_files("acme", "api", "main", bad, Actor::Admin),
            Err(SimError::Invalid(_))
        ));
        assert!(st.tarball("acme", "api", "main").is_ok());
        assert!(st.tarball("acme", "api", "nope").is_err());
    }
}
