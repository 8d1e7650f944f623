//! Repository contents on top of the git model ([`crate::git`]): commits of file changes onto a
//! branch, the one place where a branch moves (with the `create` / `push` / `delete` webhooks
//! GitHub sends and the pull request `synchronize` / `closed` that follow), and the tarball
//! archive of a ref.
//!
//! Every path that moves a branch (admin commits, the contents API, `git/refs`) goes through
//! [`State::set_ref`], so the webhooks a client sees do not depend on which API made the change.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::git::{self, Commit, CommitFile, EntryMode, FileMode, Person, Store, ZERO_SHA};
use crate::render;
use crate::state::{Actor, Branch, Repo, State};
use crate::webhooks::{self, Event};
use crate::SimError;

/// Length of the abbreviated sha in the tarball's top folder, like GitHub's.
const SHORT_SHA: usize = 7;

/// GitHub lists at most this many commits in a `push` payload.
const MAX_PUSH_COMMITS: usize = 20;

/// Paths of a commit, grouped as in the `push` payload.
#[derive(Debug, Default)]
struct Touched {
    added: Vec<String>,
    modified: Vec<String>,
    removed: Vec<String>,
}

/// Optional commit metadata; what is missing is filled in for the acting user.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommitMeta {
    pub message: Option<String>,
    pub author: Option<Person>,
    pub committer: Option<Person>,
}

/// The first `len` characters of a (hex, so ASCII) sha.
pub(crate) fn short(sha: &str, len: usize) -> &str {
    sha.get(..len).unwrap_or(sha)
}

/// (login, display name) of the account behind an actor.
fn identity(actor: Actor) -> (&'static str, &'static str) {
    match actor {
        Actor::Admin => ("sim-admin", "Sim Admin"),
        Actor::Api => ("plumbline-sim[bot]", "plumbline-sim[bot]"),
    }
}

/// The no-reply email GitHub gives an account.
fn noreply(login: &str) -> String {
    format!("{login}@users.noreply.github.com")
}

/// The author/committer of commits made by `actor` at `date`.
pub(crate) fn person(actor: Actor, date: DateTime<Utc>) -> Person {
    let (login, name) = identity(actor);
    Person {
        name: name.to_owned(),
        email: noreply(login),
        date,
    }
}

/// Which simulated account an email belongs to; GitHub links commits to accounts by email.
fn actor_for_email(email: &str) -> Option<Actor> {
    [Actor::Admin, Actor::Api]
        .into_iter()
        .find(|actor| noreply(identity(*actor).0).eq_ignore_ascii_case(email))
}

/// The account object for a commit's email, or null when no account claims the email (GitHub
/// answers `author: null` then).
pub(crate) fn account_for_email(base: &str, email: &str) -> Value {
    actor_for_email(email)
        .map(|actor| render::sender_json(base, actor))
        .unwrap_or(Value::Null)
}

/// The object store and root commit of a new repository holding `files` (regular files). Paths
/// git cannot store are skipped.
pub(crate) fn initial_commit(files: &[(String, Vec<u8>)], at: DateTime<Utc>) -> (Store, String) {
    let mut store = Store::default();
    let mut tree_files = git::Files::new();
    for (path, contents) in files {
        if !git::valid_path(path) {
            tracing::warn!(path = %path, "skipping invalid path of initial commit");
            continue;
        }
        let sha = store.write_blob(contents.clone());
        tree_files.insert(path.clone(), (EntryMode::File(FileMode::Regular), sha));
    }
    let tree = store.write_files(&tree_files);
    let admin = person(Actor::Admin, at);
    let head = store.write_commit(Commit {
        tree,
        parents: Vec::new(),
        author: admin.clone(),
        committer: admin,
        message: "Initial commit".to_owned(),
    });
    (store, head)
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

/// Resolves a ref as GitHub's repository endpoints accept it: a branch name (also as
/// `heads/{branch}` or `refs/heads/{branch}`), or a full or abbreviated commit sha.
pub(crate) fn resolve_commit(repo: &Repo, reference: &str) -> Option<String> {
    let branch = reference
        .strip_prefix("refs/heads/")
        .or_else(|| reference.strip_prefix("heads/"))
        .unwrap_or(reference);
    if let Some(found) = repo.branches.get(branch) {
        return Some(found.sha.clone());
    }
    if git::is_sha(reference) && repo.git.commit(reference).is_some() {
        return Some(reference.to_owned());
    }
    repo.git.commit_by_prefix(reference)
}

impl State {
    /// Applies `files` to a branch as one commit and returns the commit sha and the webhooks
    /// (`push`, and `synchronize` of pull requests from the branch). Fails without changing
    /// anything if the repository or branch does not exist, a path is invalid or collides with
    /// a directory, or a file to delete does not exist.
    pub(crate) fn commit_files(
        &mut self,
        owner: &str,
        name: &str,
        branch: &str,
        files: Vec<CommitFile>,
        meta: CommitMeta,
        actor: Actor,
    ) -> Result<(String, Vec<Event>), SimError> {
        let repo = self.repo_mut(owner, name)?;
        let id = repo.id;
        let head = repo
            .branches
            .get(branch)
            .ok_or_else(|| SimError::NotFound("Branch not found".to_owned()))?
            .sha
            .clone();
        let parent_tree = repo
            .git
            .commit(&head)
            .map(|c| c.tree.clone())
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let mut tree = repo.git.flatten(&parent_tree);
        let mut touched = Touched::default();
        for file in &files {
            let path = &file.path;
            if !git::valid_path(path) {
                return Err(SimError::Invalid(format!("path is invalid: {path:?}")));
            }
            let dir_prefix = format!("{path}/");
            let is_dir = tree.keys().any(|p| p.starts_with(&dir_prefix));
            let under_file = path
                .match_indices('/')
                .any(|(i, _)| tree.contains_key(&path[..i]));
            if is_dir || under_file {
                return Err(SimError::Invalid(format!(
                    "path collides with an existing file or directory: {path:?}"
                )));
            }
            let seen = touched.added.contains(path)
                || touched.modified.contains(path)
                || touched.removed.contains(path);
            match (&file.contents, tree.contains_key(path)) {
                (_, _) if seen => {}
                (Some(_), false) => touched.added.push(path.clone()),
                (Some(_), true) => touched.modified.push(path.clone()),
                (None, true) => touched.removed.push(path.clone()),
                (None, false) => return Err(SimError::NotFound("Not Found".to_owned())),
            }
        }
        for file in files {
            match file.contents {
                Some(bytes) => {
                    let sha = repo.git.write_blob(bytes);
                    tree.insert(file.path, (EntryMode::File(file.mode), sha));
                }
                None => {
                    tree.remove(&file.path);
                }
            }
        }
        let tree_sha = repo.git.write_files(&tree);
        let now = Utc::now();
        let committer = meta.committer.unwrap_or_else(|| person(actor, now));
        let author = meta.author.unwrap_or_else(|| committer.clone());
        let sha = repo.git.write_commit(Commit {
            tree: tree_sha,
            parents: vec![head],
            author,
            committer,
            message: meta.message.unwrap_or_else(|| commit_message(&touched)),
        });
        let events = self.set_ref(id, branch, Some(sha.clone()), actor);
        Ok((sha, events))
    }

    /// Points `refs/heads/{branch}` at `new` (None deletes the branch) without any checks, and
    /// returns the webhooks GitHub sends for it: `create` + `push` for a new branch, `push` (and
    /// pull request `synchronize`) for a moved one, `delete` + `push` (and pull request `closed`)
    /// for a deleted one. Callers validate first.
    pub(crate) fn set_ref(
        &mut self,
        repo_id: u64,
        branch: &str,
        new: Option<String>,
        actor: Actor,
    ) -> Vec<Event> {
        let Some(repo) = self.repos.get_mut(&repo_id) else {
            return Vec::new();
        };
        let old = repo.branches.get(branch).map(|b| b.sha.clone());
        if old == new {
            return Vec::new();
        }
        match &new {
            Some(sha) => {
                repo.branches
                    .entry(branch.to_owned())
                    .or_insert_with(|| Branch {
                        name: branch.to_owned(),
                        sha: sha.clone(),
                        protection: None,
                    })
                    .sha = sha.clone();
            }
            None => {
                repo.branches.remove(branch);
            }
        }
        let now = Utc::now();
        repo.pushed_at = now;
        repo.updated_at = now;
        tracing::debug!(
            repo = %repo.name,
            branch,
            before = old.as_deref().unwrap_or(ZERO_SHA),
            after = new.as_deref().unwrap_or(ZERO_SHA),
            "branch moved"
        );

        let mut events = Vec::new();
        if old.is_none() {
            events.extend(self.ref_event(repo_id, "create", branch, actor));
        }
        if new.is_none() {
            events.extend(self.ref_event(repo_id, "delete", branch, actor));
        }
        events.extend(self.push_event(repo_id, branch, old.as_deref(), new.as_deref(), actor));
        match (old, new) {
            (Some(before), Some(after)) => {
                events.extend(self.pulls_after_push(repo_id, branch, &before, &after, actor));
            }
            (Some(_), None) => {
                events.extend(self.pulls_after_branch_deleted(repo_id, branch, actor))
            }
            _ => {}
        }
        events
    }

    /// A `create` or `delete` event for a branch.
    fn ref_event(
        &self,
        repo_id: u64,
        name: &'static str,
        branch: &str,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let base = self.base_url(None);
        let mut payload = webhooks::base_payload(&base, org, repo, "", actor);
        payload.remove("action");
        payload.insert("ref".into(), json!(branch));
        payload.insert("ref_type".into(), json!("branch"));
        if name == "create" {
            payload.insert("master_branch".into(), json!(repo.default_branch));
            payload.insert("description".into(), json!(repo.settings.description));
        }
        payload.insert("pusher_type".into(), json!("user"));
        Some(Event {
            name,
            payload: Value::Object(payload),
        })
    }

    /// A commit as listed in `push` payloads.
    fn push_commit(repo: &Repo, html: &str, sha: &str) -> Option<Value> {
        let commit = repo.git.commit(sha)?;
        let mut touched = Touched::default();
        for change in repo.git.commit_changes(sha) {
            let list = match change.kind {
                git::ChangeKind::Added => &mut touched.added,
                git::ChangeKind::Modified => &mut touched.modified,
                git::ChangeKind::Removed => &mut touched.removed,
            };
            list.push(change.path);
        }
        let who = |p: &Person| {
            let mut value = json!({ "name": p.name, "email": p.email });
            if let Some(actor) = actor_for_email(&p.email) {
                value["username"] = json!(identity(actor).0);
            }
            value
        };
        Some(json!({
            "id": sha,
            "tree_id": commit.tree,
            "distinct": true,
            "message": commit.message,
            "timestamp": render::time(&commit.committer.date),
            "url": format!("{html}/commit/{sha}"),
            "author": who(&commit.author),
            "committer": who(&commit.committer),
            "added": touched.added,
            "removed": touched.removed,
            "modified": touched.modified,
        }))
    }

    /// Builds the `push` event for a branch moving from `before` to `after` (None = the branch
    /// did not exist / no longer exists).
    fn push_event(
        &self,
        repo_id: u64,
        branch: &str,
        before: Option<&str>,
        after: Option<&str>,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let base = self.base_url(None);
        let html = format!("{base}/{}/{}", org.login, repo.name);
        let (commits, compare) = match (before, after) {
            (_, None) => (
                Vec::new(),
                format!(
                    "{html}/compare/{}...{}",
                    short(before.unwrap_or(ZERO_SHA), 12),
                    short(ZERO_SHA, 12)
                ),
            ),
            (None, Some(after)) => {
                let others: Vec<&str> = repo
                    .branches
                    .values()
                    .filter(|b| b.name != branch)
                    .map(|b| b.sha.as_str())
                    .collect();
                (
                    repo.git.new_commits(after, &others, MAX_PUSH_COMMITS),
                    format!("{html}/compare/{branch}"),
                )
            }
            (Some(before), Some(after)) => (
                repo.git.new_commits(after, &[before], MAX_PUSH_COMMITS),
                format!(
                    "{html}/compare/{}...{}",
                    short(before, 12),
                    short(after, 12)
                ),
            ),
        };
        let commits: Vec<Value> = commits
            .iter()
            .filter_map(|sha| State::push_commit(repo, &html, sha))
            .collect();
        let head_commit = after
            .and_then(|sha| State::push_commit(repo, &html, sha))
            .unwrap_or(Value::Null);
        let forced = match (before, after) {
            (Some(before), Some(after)) => !repo.git.is_ancestor(before, after),
            _ => false,
        };
        let (login, _) = identity(actor);
        let fields = json!({
            "ref": format!("refs/heads/{branch}"),
            "before": before.unwrap_or(ZERO_SHA),
            "after": after.unwrap_or(ZERO_SHA),
            "created": before.is_none(),
            "deleted": after.is_none(),
            "forced": forced,
            "base_ref": Value::Null,
            "compare": compare,
            "commits": commits,
            "head_commit": head_commit,
            "pusher": { "name": login, "email": noreply(login) },
        });
        Some(webhooks::push_event(&base, org, repo, fields, actor))
    }

    /// Resolves `reference` (see [`resolve_commit`]) and archives that commit as GitHub's
    /// tarball: a gzip'd tar under one top folder `{owner}-{repo}-{shortsha}/`, regular files
    /// with mode 0644 or 0755 and symlinks as symlink entries, as `git archive` writes them.
    pub(crate) fn tarball(
        &self,
        owner: &str,
        name: &str,
        reference: &str,
    ) -> Result<Vec<u8>, SimError> {
        let not_found = || SimError::NotFound("Not Found".to_owned());
        let (org, repo) = self.repo(owner, name).ok_or_else(not_found)?;
        let sha = resolve_commit(repo, reference).ok_or_else(not_found)?;
        let commit = repo.git.commit(&sha).ok_or_else(not_found)?;
        let top = format!("{}-{}-{}", org.login, repo.name, short(&sha, SHORT_SHA));
        let mtime = u64::try_from(commit.committer.date.timestamp()).unwrap_or(0);
        // Writing into memory only fails for entries tar cannot represent.
        archive(&top, &repo.git, &commit.tree, mtime, &sha)
            .map_err(|e| SimError::Invalid(format!("failed to build tarball: {e}")))
    }
}

/// Writes the gzip'd tar of a tree under `top/`. GitHub stores the commit sha as the archive's
/// comment (readable with `git get-tar-commit-id`); here it is the gzip header's comment.
/// Submodules are left out: their contents live in another repository.
fn archive(
    top: &str,
    store: &Store,
    tree: &str,
    mtime: u64,
    sha: &str,
) -> std::io::Result<Vec<u8>> {
    let encoder = flate2::GzBuilder::new()
        .comment(sha.as_bytes())
        .write(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (path, (mode, blob)) in store.flatten(tree) {
        let EntryMode::File(file_mode) = mode else {
            continue;
        };
        let contents = store.blob(&blob).unwrap_or_default();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(mtime);
        let entry_path = format!("{top}/{path}");
        match file_mode {
            FileMode::Symlink => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                let target = String::from_utf8_lossy(contents).into_owned();
                builder.append_link(&mut header, entry_path, target)?;
            }
            FileMode::Regular | FileMode::Executable => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if file_mode == FileMode::Executable {
                    0o755
                } else {
                    0o644
                });
                header.set_size(contents.len() as u64);
                builder.append_data(&mut header, entry_path, contents)?;
            }
        }
    }
    builder.into_inner()?.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoOptions;

    fn files(list: &[(&str, &[u8])]) -> Vec<CommitFile> {
        list.iter()
            .map(|(path, contents)| CommitFile::file(*path, contents.to_vec()))
            .collect()
    }

    #[test]
    fn commits_move_the_head_and_list_paths() {
        let mut st = State::new();
        let opts = RepoOptions {
            files: vec![("README.md".to_owned(), b"hi".to_vec())],
            ..RepoOptions::default()
        };
        st.create_repo("acme", "api", &opts, Actor::Admin);
        let changes = files(&[("README.md", b"hello"), ("src/a.rs", b"")]);
        let (sha, events) = st
            .commit_files(
                "acme",
                "api",
                "main",
                changes,
                CommitMeta::default(),
                Actor::Admin,
            )
            .unwrap();
        assert_eq!(events.len(), 1);
        let payload = &events[0].payload;
        assert_eq!(events[0].name, "push");
        assert_eq!(payload["ref"], "refs/heads/main");
        assert_ne!(payload["before"], payload["after"]);
        assert_eq!(payload["after"], sha);
        assert_eq!(payload["head_commit"]["added"], json!(["src/a.rs"]));
        assert_eq!(payload["head_commit"]["modified"], json!(["README.md"]));
        assert_eq!(payload["commits"].as_array().unwrap().len(), 1);
        let missing = vec![CommitFile::delete("nope")];
        assert!(st
            .commit_files(
                "acme",
                "api",
                "main",
                missing,
                CommitMeta::default(),
                Actor::Admin
            )
            .is_err());
        let bad = files(&[("../x", b"")]);
        assert!(matches!(
            st.commit_files(
                "acme",
                "api",
                "main",
                bad,
                CommitMeta::default(),
                Actor::Admin
            ),
            Err(SimError::Invalid(_))
        ));
        let onto_dir = files(&[("src", b"")]);
        assert!(matches!(
            st.commit_files(
                "acme",
                "api",
                "main",
                onto_dir,
                CommitMeta::default(),
                Actor::Admin
            ),
            Err(SimError::Invalid(_))
        ));
        assert!(st.tarball("acme", "api", "main").is_ok());
        assert!(st.tarball("acme", "api", &sha[..7]).is_ok());
        assert!(st.tarball("acme", "api", "nope").is_err());
    }

    #[test]
    fn branch_lifecycle_events() {
        let mut st = State::new();
        let (id, _, _) = st.create_repo("acme", "api", &RepoOptions::default(), Actor::Admin);
        let head = st.repo("acme", "api").unwrap().1.branches["main"]
            .sha
            .clone();
        let events = st.set_ref(id, "feature", Some(head.clone()), Actor::Api);
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(names, ["create", "push"]);
        assert_eq!(events[0].payload["ref"], "feature");
        assert_eq!(events[1].payload["created"], true);
        assert_eq!(events[1].payload["before"], ZERO_SHA);
        // The commit is already on main, so the push lists no new commits.
        assert_eq!(events[1].payload["commits"], json!([]));
        assert_eq!(events[1].payload["head_commit"]["id"], head.as_str());
        let events = st.set_ref(id, "feature", None, Actor::Api);
        let names: Vec<_> = events.iter().map(|e| e.name).collect();
        assert_eq!(names, ["delete", "push"]);
        assert_eq!(events[1].payload["deleted"], true);
        assert_eq!(events[1].payload["head_commit"], Value::Null);
        assert!(st.set_ref(id, "feature", None, Actor::Api).is_empty());
    }
}
