//! A git object model per repository: blobs, trees and commits addressed by the SHA-1 git
//! computes for them, so shas look real and identical content gets identical shas (a client
//! that compares blob shas to skip unchanged files behaves as it does against GitHub).
//!
//! Objects are encoded exactly as git encodes them (`"<type> <len>\0<body>"`, trees sorted in
//! git's order with binary shas, commits with `tree`/`parent`/`author`/`committer` headers), so
//! a sha computed here matches what `git hash-object` / `git mktree` / `git commit-tree` would
//! produce for the same input. Branches (refs) live on [`crate::state::Branch`]; this module
//! only stores and walks objects.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use sha1::{Digest, Sha1};

/// The all-zero sha GitHub reports for a side of a push that does not exist (branch created or
/// deleted).
pub(crate) const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// The mode of a file in a commit made through the simulator's admin API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FileMode {
    /// A regular file (`100644`).
    #[default]
    Regular,
    /// An executable file (`100755`).
    Executable,
    /// A symbolic link (`120000`); the contents are the link target.
    Symlink,
}

impl FileMode {
    /// GitHub's wire value, e.g. "100644".
    pub fn as_str(self) -> &'static str {
        match self {
            FileMode::Regular => "100644",
            FileMode::Executable => "100755",
            FileMode::Symlink => "120000",
        }
    }

    /// Parses GitHub's wire value of a file mode.
    pub fn parse(value: &str) -> Option<FileMode> {
        match value {
            "100644" => Some(FileMode::Regular),
            "100755" => Some(FileMode::Executable),
            "120000" => Some(FileMode::Symlink),
            _ => None,
        }
    }
}

/// One file of a commit made with [`crate::Simulator::commit_files`]: new contents with a mode,
/// or a deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitFile {
    /// Relative, `/`-separated path.
    pub path: String,
    /// New contents (for a symlink: the target); None deletes the file.
    pub contents: Option<Vec<u8>>,
    /// Mode of the written file; ignored for deletions.
    pub mode: FileMode,
}

impl CommitFile {
    /// A regular file (`100644`).
    pub fn file(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> CommitFile {
        CommitFile {
            path: path.into(),
            contents: Some(contents.into()),
            mode: FileMode::Regular,
        }
    }

    /// An executable file (`100755`).
    pub fn executable(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> CommitFile {
        CommitFile {
            mode: FileMode::Executable,
            ..CommitFile::file(path, contents)
        }
    }

    /// A symbolic link (`120000`) pointing at `target`.
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> CommitFile {
        CommitFile {
            mode: FileMode::Symlink,
            ..CommitFile::file(path, target.into().into_bytes())
        }
    }

    /// Deletes the file at `path`.
    pub fn delete(path: impl Into<String>) -> CommitFile {
        CommitFile {
            path: path.into(),
            contents: None,
            mode: FileMode::Regular,
        }
    }
}

/// The mode of a tree entry, which also decides the kind of object it points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EntryMode {
    File(FileMode),
    Tree,
    /// A gitlink: a commit of another repository.
    Submodule,
}

impl EntryMode {
    /// The mode as git writes it into tree objects (trees without the leading zero).
    fn git(self) -> &'static str {
        match self {
            EntryMode::File(mode) => mode.as_str(),
            EntryMode::Tree => "40000",
            EntryMode::Submodule => "160000",
        }
    }

    /// The mode as the REST API reports it (trees zero-padded to six digits).
    pub(crate) fn api(self) -> &'static str {
        match self {
            EntryMode::Tree => "040000",
            other => other.git(),
        }
    }

    /// Parses the REST API value (git's unpadded tree mode accepted too).
    pub(crate) fn parse(value: &str) -> Option<EntryMode> {
        match value {
            "040000" | "40000" => Some(EntryMode::Tree),
            "160000" => Some(EntryMode::Submodule),
            other => FileMode::parse(other).map(EntryMode::File),
        }
    }

    /// The type of the object the entry points at ("blob", "tree", "commit").
    pub(crate) fn kind(self) -> &'static str {
        match self {
            EntryMode::File(_) => "blob",
            EntryMode::Tree => "tree",
            EntryMode::Submodule => "commit",
        }
    }
}

/// One entry of a tree object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TreeEntry {
    pub name: String,
    pub mode: EntryMode,
    pub sha: String,
}

/// Author or committer of a commit. Times are UTC, so the zone is always `+0000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Person {
    pub name: String,
    pub email: String,
    pub date: DateTime<Utc>,
}

/// A commit object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Commit {
    pub tree: String,
    pub parents: Vec<String>,
    pub author: Person,
    pub committer: Person,
    pub message: String,
}

/// A stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Object {
    Blob(Vec<u8>),
    Tree(Vec<TreeEntry>),
    Commit(Commit),
}

/// A file of a flattened tree: its mode and the sha of its blob (or gitlink commit).
pub(crate) type FileEntry = (EntryMode, String);

/// All files of a tree by full path (trees themselves are not listed).
pub(crate) type Files = BTreeMap<String, FileEntry>;

/// How a path differs between two trees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Removed,
}

/// One changed path between two trees, with the old and new entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub path: String,
    pub kind: ChangeKind,
    pub old: Option<FileEntry>,
    pub new: Option<FileEntry>,
}

/// The object database of one repository. Objects are never removed, like in a git repository
/// without garbage collection, so shas handed out earlier stay readable.
#[derive(Debug, Clone, Default)]
pub(crate) struct Store {
    objects: HashMap<String, Object>,
}

/// The git sha of an object of `kind` with `body`.
pub(crate) fn hash_object(kind: &str, body: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(format!("{kind} {}\0", body.len()).as_bytes());
    hasher.update(body);
    hex::encode(hasher.finalize())
}

/// Whether `value` is a full sha: 40 lower-case hex digits.
pub(crate) fn is_sha(value: &str) -> bool {
    value.len() == 40
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// GitHub's file paths: relative, `/`-separated, no empty, `.` or `..` segments, no `.git`.
pub(crate) fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != ".." && s != ".git")
}

/// Git's order of tree entries: by name, with trees compared as if their name ended in `/`.
fn sort_key(entry: &TreeEntry) -> Vec<u8> {
    let mut key = entry.name.as_bytes().to_vec();
    if entry.mode == EntryMode::Tree {
        key.push(b'/');
    }
    key
}

fn encode_tree(entries: &[TreeEntry]) -> Vec<u8> {
    let mut body = Vec::new();
    for entry in entries {
        body.extend_from_slice(entry.mode.git().as_bytes());
        body.push(b' ');
        body.extend_from_slice(entry.name.as_bytes());
        body.push(0);
        // Entries only ever hold validated 40-hex shas; an undecodable one would be a bug, and
        // is hashed as zeros rather than panicking.
        body.extend_from_slice(&hex::decode(&entry.sha).unwrap_or_else(|_| vec![0; 20]));
    }
    body
}

fn signature(person: &Person) -> String {
    format!(
        "{} <{}> {} +0000",
        person.name,
        person.email,
        person.date.timestamp()
    )
}

fn encode_commit(commit: &Commit) -> Vec<u8> {
    let mut text = format!("tree {}\n", commit.tree);
    for parent in &commit.parents {
        text.push_str(&format!("parent {parent}\n"));
    }
    text.push_str(&format!("author {}\n", signature(&commit.author)));
    text.push_str(&format!("committer {}\n", signature(&commit.committer)));
    text.push('\n');
    text.push_str(&commit.message);
    text.into_bytes()
}

impl Store {
    /// Stores a blob and returns its sha.
    pub(crate) fn write_blob(&mut self, data: Vec<u8>) -> String {
        let sha = hash_object("blob", &data);
        self.objects
            .entry(sha.clone())
            .or_insert(Object::Blob(data));
        sha
    }

    /// Stores a tree (entries in any order; names must be unique) and returns its sha.
    pub(crate) fn write_tree(&mut self, mut entries: Vec<TreeEntry>) -> String {
        entries.sort_by_key(sort_key);
        let sha = hash_object("tree", &encode_tree(&entries));
        self.objects
            .entry(sha.clone())
            .or_insert(Object::Tree(entries));
        sha
    }

    /// Stores a commit and returns its sha.
    pub(crate) fn write_commit(&mut self, commit: Commit) -> String {
        let sha = hash_object("commit", &encode_commit(&commit));
        self.objects
            .entry(sha.clone())
            .or_insert(Object::Commit(commit));
        sha
    }

    pub(crate) fn get(&self, sha: &str) -> Option<&Object> {
        self.objects.get(sha)
    }

    pub(crate) fn blob(&self, sha: &str) -> Option<&[u8]> {
        match self.objects.get(sha)? {
            Object::Blob(data) => Some(data),
            _ => None,
        }
    }

    pub(crate) fn tree(&self, sha: &str) -> Option<&[TreeEntry]> {
        match self.objects.get(sha)? {
            Object::Tree(entries) => Some(entries),
            _ => None,
        }
    }

    pub(crate) fn commit(&self, sha: &str) -> Option<&Commit> {
        match self.objects.get(sha)? {
            Object::Commit(commit) => Some(commit),
            _ => None,
        }
    }

    /// The full sha of the only commit whose sha starts with `prefix` (at least 4 hex digits),
    /// the way GitHub accepts abbreviated shas.
    pub(crate) fn commit_by_prefix(&self, prefix: &str) -> Option<String> {
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let prefix = prefix.to_ascii_lowercase();
        let mut found = self
            .objects
            .iter()
            .filter(|(sha, object)| sha.starts_with(&prefix) && matches!(object, Object::Commit(_)))
            .map(|(sha, _)| sha);
        match (found.next(), found.next()) {
            (Some(sha), None) => Some(sha.clone()),
            _ => None,
        }
    }

    /// All files under a tree, by full path. Missing subtrees (which cannot occur for trees
    /// written through this store) are skipped.
    pub(crate) fn flatten(&self, tree_sha: &str) -> Files {
        let mut files = Files::new();
        self.flatten_into(tree_sha, "", &mut files);
        files
    }

    fn flatten_into(&self, tree_sha: &str, prefix: &str, files: &mut Files) {
        let Some(entries) = self.tree(tree_sha) else {
            return;
        };
        for entry in entries {
            let path = format!("{prefix}{}", entry.name);
            match entry.mode {
                EntryMode::Tree => self.flatten_into(&entry.sha, &format!("{path}/"), files),
                mode => {
                    files.insert(path, (mode, entry.sha.clone()));
                }
            }
        }
    }

    /// Writes the nested trees holding `files` and returns the root tree's sha.
    pub(crate) fn write_files(&mut self, files: &Files) -> String {
        /// A directory being assembled: its files and its subdirectories.
        #[derive(Default)]
        struct Dir {
            files: Vec<TreeEntry>,
            dirs: BTreeMap<String, Dir>,
        }
        fn write(store: &mut Store, dir: Dir) -> String {
            let mut entries = dir.files;
            for (name, sub) in dir.dirs {
                let sha = write(store, sub);
                entries.push(TreeEntry {
                    name,
                    mode: EntryMode::Tree,
                    sha,
                });
            }
            store.write_tree(entries)
        }
        let mut root = Dir::default();
        for (path, (mode, sha)) in files {
            let mut segments: Vec<&str> = path.split('/').collect();
            let Some(name) = segments.pop() else { continue };
            let mut dir = &mut root;
            for segment in segments {
                dir = dir.dirs.entry(segment.to_owned()).or_default();
            }
            dir.files.push(TreeEntry {
                name: name.to_owned(),
                mode: *mode,
                sha: sha.clone(),
            });
        }
        write(self, root)
    }

    /// The entry at `path` under a tree; "" is the tree itself.
    pub(crate) fn lookup(&self, tree_sha: &str, path: &str) -> Option<FileEntry> {
        let mut current = (EntryMode::Tree, tree_sha.to_owned());
        if path.is_empty() {
            return Some(current);
        }
        for segment in path.split('/') {
            if current.0 != EntryMode::Tree {
                return None;
            }
            let entry = self
                .tree(&current.1)?
                .iter()
                .find(|entry| entry.name == segment)?;
            current = (entry.mode, entry.sha.clone());
        }
        Some(current)
    }

    /// Every commit reachable from `sha` (itself included).
    pub(crate) fn ancestors(&self, sha: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([sha.to_owned()]);
        while let Some(next) = queue.pop_front() {
            if !seen.insert(next.clone()) {
                continue;
            }
            if let Some(commit) = self.commit(&next) {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    /// Whether `ancestor` is reachable from `descendant` (a commit is its own ancestor).
    pub(crate) fn is_ancestor(&self, ancestor: &str, descendant: &str) -> bool {
        self.ancestors(descendant).contains(ancestor)
    }

    /// Commits reachable from `head` but from none of `exclude`, oldest first (parents before
    /// children), at most `limit` of the newest.
    pub(crate) fn new_commits(&self, head: &str, exclude: &[&str], limit: usize) -> Vec<String> {
        let mut known = HashSet::new();
        for sha in exclude {
            known.extend(self.ancestors(sha));
        }
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([head.to_owned()]);
        while let Some(next) = queue.pop_front() {
            if known.contains(&next) || !seen.insert(next.clone()) {
                continue;
            }
            let Some(commit) = self.commit(&next) else {
                continue;
            };
            queue.extend(commit.parents.iter().cloned());
            out.push(next);
        }
        // Breadth-first from the head gives newest first; keep the newest `limit`, then flip.
        out.truncate(limit);
        out.reverse();
        out
    }

    /// The nearest common ancestor of two commits, if any.
    pub(crate) fn merge_base(&self, a: &str, b: &str) -> Option<String> {
        let of_a = self.ancestors(a);
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([b.to_owned()]);
        while let Some(next) = queue.pop_front() {
            if of_a.contains(&next) {
                return Some(next);
            }
            if !seen.insert(next.clone()) {
                continue;
            }
            if let Some(commit) = self.commit(&next) {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        None
    }

    /// The paths that differ between two trees (None = the empty tree), by path.
    pub(crate) fn diff(&self, old_tree: Option<&str>, new_tree: &str) -> Vec<Change> {
        let old = old_tree.map(|t| self.flatten(t)).unwrap_or_default();
        let new = self.flatten(new_tree);
        let mut changes = Vec::new();
        for (path, entry) in &new {
            match old.get(path) {
                None => changes.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Added,
                    old: None,
                    new: Some(entry.clone()),
                }),
                Some(previous) if previous != entry => changes.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Modified,
                    old: Some(previous.clone()),
                    new: Some(entry.clone()),
                }),
                Some(_) => {}
            }
        }
        for (path, entry) in &old {
            if !new.contains_key(path) {
                changes.push(Change {
                    path: path.clone(),
                    kind: ChangeKind::Removed,
                    old: Some(entry.clone()),
                    new: None,
                });
            }
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        changes
    }

    /// The changes a commit introduces relative to its first parent (everything for a root
    /// commit).
    pub(crate) fn commit_changes(&self, sha: &str) -> Vec<Change> {
        let Some(commit) = self.commit(sha) else {
            return Vec::new();
        };
        let parent_tree = commit
            .parents
            .first()
            .and_then(|p| self.commit(p))
            .map(|p| p.tree.clone());
        self.diff(parent_tree.as_deref(), &commit.tree)
    }

    /// Lines added and deleted by a change, for `stats` and pull request counters: the lines
    /// outside a longest common subsequence, like a diff counts them. Very large edited regions
    /// fall back to counting every line of the region (an upper bound) to bound the work.
    pub(crate) fn line_stats(&self, change: &Change) -> (u64, u64) {
        let lines = |entry: &Option<FileEntry>| -> Vec<&[u8]> {
            entry
                .as_ref()
                .filter(|(mode, _)| matches!(mode, EntryMode::File(_)))
                .and_then(|(_, sha)| self.blob(sha))
                .map(|data| data.split_inclusive(|b| *b == b'\n').collect())
                .unwrap_or_default()
        };
        let old = lines(&change.old);
        let new = lines(&change.new);
        let prefix = old.iter().zip(&new).take_while(|(a, b)| a == b).count();
        let suffix = old[prefix..]
            .iter()
            .rev()
            .zip(new[prefix..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let old_mid = &old[prefix..old.len() - suffix];
        let new_mid = &new[prefix..new.len() - suffix];
        let common = if old_mid.len().saturating_mul(new_mid.len()) <= MAX_LCS_CELLS {
            lcs_len(old_mid, new_mid)
        } else {
            0
        };
        (
            (new_mid.len() - common) as u64,
            (old_mid.len() - common) as u64,
        )
    }
}

/// Upper bound of the line-diff table (old lines x new lines) computed for `line_stats`.
const MAX_LCS_CELLS: usize = 4_000_000;

/// Length of the longest common subsequence of two line lists (one row of the classic table at
/// a time).
fn lcs_len(a: &[&[u8]], b: &[&[u8]]) -> usize {
    let mut previous = vec![0usize; b.len() + 1];
    let mut current = vec![0usize; b.len() + 1];
    for line in a {
        for (j, other) in b.iter().enumerate() {
            current[j + 1] = if line == other {
                previous[j] + 1
            } else {
                previous[j + 1].max(current[j])
            };
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Base64 as GitHub's contents and blob APIs return it: standard alphabet, a newline after every
/// 60 characters and at the end (none for empty content).
pub(crate) fn wrapped_base64(data: &[u8]) -> String {
    use base64::Engine;
    let flat = base64::engine::general_purpose::STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 60 + 1);
    for chunk in flat.as_bytes().chunks(60) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

/// Decodes base64 the way GitHub accepts it in request bodies: whitespace (line breaks of
/// wrapped content) ignored, padding optional.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(compact.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person() -> Person {
        Person {
            name: "A U Thor".to_owned(),
            email: "author@example.com".to_owned(),
            date: DateTime::from_timestamp(1_112_911_993, 0).unwrap(),
        }
    }

    #[test]
    fn shas_match_git() {
        let mut store = Store::default();
        // `printf 'hello\n' | git hash-object --stdin`
        assert_eq!(
            store.write_blob(b"hello\n".to_vec()),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        // The empty blob and the empty tree have well-known shas.
        assert_eq!(
            store.write_blob(Vec::new()),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        assert_eq!(
            store.write_tree(Vec::new()),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
        // `git mktree` of one file "hello" -> blob above.
        let tree = store.write_tree(vec![TreeEntry {
            name: "hello".to_owned(),
            mode: EntryMode::File(FileMode::Regular),
            sha: "ce013625030ba8dba906f756967f9e9ca394464a".to_owned(),
        }]);
        assert_eq!(tree, "b4d01e9b0c4a9356736dfddf8830ba9a54f5271c");
        // `git commit-tree` with fixed author/committer and date 1112911993 +0000.
        let commit = store.write_commit(Commit {
            tree: "4b825dc642cb6eb9a060e54bf8d69288fbee4904".to_owned(),
            parents: Vec::new(),
            author: person(),
            committer: person(),
            message: "initial\n".to_owned(),
        });
        assert_eq!(commit, "36d4cbed907cf96b8635be1d14f498331541b50b");
        assert!(is_sha(&commit));
    }

    #[test]
    fn trees_sort_directories_as_if_slash_terminated() {
        let mut store = Store::default();
        let blob = store.write_blob(b"x".to_vec());
        let mut files = Files::new();
        files.insert(
            "a.txt".to_owned(),
            (EntryMode::File(FileMode::Regular), blob.clone()),
        );
        files.insert(
            "a/b.sh".to_owned(),
            (EntryMode::File(FileMode::Executable), blob.clone()),
        );
        files.insert(
            "a-link".to_owned(),
            (EntryMode::File(FileMode::Symlink), blob.clone()),
        );
        let root = store.write_files(&files);
        let names: Vec<_> = store
            .tree(&root)
            .unwrap()
            .iter()
            .map(|e| e.name.as_str())
            .collect();
        // "a-link" < "a.txt" < "a/" in byte order ('-' 0x2d, '.' 0x2e, '/' 0x2f).
        assert_eq!(names, ["a-link", "a.txt", "a"]);
        assert_eq!(store.flatten(&root), files);
        assert_eq!(
            store.lookup(&root, "a/b.sh"),
            Some((EntryMode::File(FileMode::Executable), blob))
        );
        assert_eq!(store.lookup(&root, "a/nope"), None);
        assert_eq!(store.lookup(&root, "a.txt/x"), None);
        // Same content, same sha.
        assert_eq!(store.write_files(&files), root);
    }

    #[test]
    fn ancestry_and_diffs() {
        let mut store = Store::default();
        let empty = store.write_tree(Vec::new());
        let commit = |store: &mut Store, tree: &str, parents: Vec<String>| {
            store.write_commit(Commit {
                tree: tree.to_owned(),
                parents,
                author: person(),
                committer: person(),
                message: "m".to_owned(),
            })
        };
        let root = commit(&mut store, &empty, vec![]);
        let old = store.write_blob(b"a\nb\nc\n".to_vec());
        let new = store.write_blob(b"a\nB\nc\nd\n".to_vec());
        let file = EntryMode::File(FileMode::Regular);
        let t1 = store.write_files(&Files::from([("f".to_owned(), (file, old))]));
        let t2 = store.write_files(&Files::from([("f".to_owned(), (file, new))]));
        let c1 = commit(&mut store, &t1, vec![root.clone()]);
        let c2 = commit(&mut store, &t2, vec![c1.clone()]);
        let side = commit(&mut store, &empty, vec![root.clone()]);
        assert!(store.is_ancestor(&root, &c2));
        assert!(!store.is_ancestor(&c2, &root));
        assert_eq!(store.merge_base(&c2, &side), Some(root.clone()));
        assert_eq!(
            store.new_commits(&c2, &[&root], 20),
            [c1.clone(), c2.clone()]
        );
        assert_eq!(
            store.new_commits(&c2, &[&root], 1),
            std::slice::from_ref(&c2)
        );
        let changes = store.commit_changes(&c2);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, ChangeKind::Modified);
        assert_eq!(store.line_stats(&changes[0]), (2, 1));
        let added = &store.commit_changes(&c1)[0];
        assert_eq!(added.kind, ChangeKind::Added);
        assert_eq!(store.line_stats(added), (3, 0));
        assert_eq!(store.commit_by_prefix(&c2[..7]), Some(c2.clone()));
        assert_eq!(store.commit_by_prefix("zz"), None);
    }

    #[test]
    fn base64_is_wrapped_like_github() {
        let data = vec![b'x'; 50];
        let text = wrapped_base64(&data);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0].len(), 60);
        assert!(text.ends_with('\n'));
        assert_eq!(decode_base64(&text).unwrap(), data);
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("not base64!"), None);
        assert_eq!(wrapped_base64(b""), "");
    }
}
