//! An in-memory repository tree: what git ingest hands to the Rego file functions.
//!
//! Minder clones one branch into memory and lets policies read it; Plumbline gets the same
//! tree either from a GitHub tarball (production) or from a folder (upstream test fixtures).
//! Either way the tree is bounded by Minder's caps, so one huge repository cannot exhaust an
//! evaluator, and it is immutable once built so it can be shared between evaluations.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// Caps on what one tree may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_files: usize,
    pub max_bytes: u64,
}

impl Default for Limits {
    /// Minder's caps for a git ingest: 10,000 files and 100 MiB.
    fn default() -> Self {
        Limits {
            max_files: 10_000,
            max_bytes: 100 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("repository has more than {0} files")]
    TooManyFiles(usize),
    #[error("repository is larger than {0} bytes")]
    TooLarge(u64),
    #[error("io: {0}")]
    Io(String),
    #[error("archive: {0}")]
    Archive(String),
    /// The path names the root, or a file would also be a directory (or the reverse).
    #[error("invalid path: {0}")]
    InvalidPath(String),
}

/// Files by clean relative path (no leading `/` or `./`, no `.` or `..` segments).
///
/// Directories are implicit: a directory exists when some file lies under it, as in git.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileTree {
    files: BTreeMap<String, Arc<[u8]>>,
    total_bytes: u64,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirEntry<'a> {
    pub name: &'a str,
    pub is_dir: bool,
}

/// Cleans `path` relative to the tree's root, like Go's `path.Clean` except that the result is
/// never rooted and never climbs above the root: `a//b/../c` → `a/c`, `/x` and `../x` → `x`.
/// The root itself is the empty string.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

impl FileTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file, keeping the tree within `limits`.
    pub fn insert(
        &mut self,
        path: &str,
        bytes: Vec<u8>,
        limits: &Limits,
    ) -> Result<(), FilesError> {
        let path = clean_path(path);
        if path.is_empty() {
            return Err(FilesError::InvalidPath("a file cannot be the root".into()));
        }
        let replaced = self.files.get(&path).map(|b| b.len() as u64);
        if replaced.is_none() {
            if self.files.len() >= limits.max_files {
                return Err(FilesError::TooManyFiles(limits.max_files));
            }
            // A path cannot be both a file and a directory.
            if self.is_dir(&path) {
                return Err(FilesError::InvalidPath(format!("{path}: is a directory")));
            }
            let mut ancestor = path.as_str();
            while let Some((parent, _)) = ancestor.rsplit_once('/') {
                if self.files.contains_key(parent) {
                    return Err(FilesError::InvalidPath(format!(
                        "{path}: {parent} is a file"
                    )));
                }
                ancestor = parent;
            }
        }
        let total = self.total_bytes - replaced.unwrap_or(0) + bytes.len() as u64;
        if total > limits.max_bytes {
            return Err(FilesError::TooLarge(limits.max_bytes));
        }
        self.total_bytes = total;
        self.files.insert(path, Arc::from(bytes));
        Ok(())
    }

    /// Reads a folder recursively: a test fixture or a checkout.
    ///
    /// `.git` entries are skipped (git never tracks them) and symlinks are not followed, so a
    /// link cannot pull in files from outside the folder. A missing folder is an empty tree:
    /// git cannot store empty directories, so fixtures standing for empty repositories are
    /// missing from upstream checkouts.
    pub fn from_dir(dir: &Path, limits: &Limits) -> Result<Self, FilesError> {
        let mut tree = FileTree::new();
        match std::fs::metadata(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(tree),
            Err(e) => return Err(FilesError::Io(format!("{}: {e}", dir.display()))),
            Ok(m) if !m.is_dir() => {
                return Err(FilesError::Io(format!(
                    "{}: not a directory",
                    dir.display()
                )))
            }
            Ok(_) => {}
        }
        let io = |p: &Path, e: std::io::Error| FilesError::Io(format!("{}: {e}", p.display()));
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((abs, rel)) = pending.pop() {
            for entry in std::fs::read_dir(&abs).map_err(|e| io(&abs, e))? {
                let entry = entry.map_err(|e| io(&abs, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == ".git" {
                    continue;
                }
                let child_rel = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let kind = entry.file_type().map_err(|e| io(&entry.path(), e))?;
                if kind.is_dir() {
                    pending.push((entry.path(), child_rel));
                } else if kind.is_file() {
                    if tree.files.len() >= limits.max_files {
                        return Err(FilesError::TooManyFiles(limits.max_files));
                    }
                    let room = limits.max_bytes.saturating_sub(tree.total_bytes);
                    let file =
                        std::fs::File::open(entry.path()).map_err(|e| io(&entry.path(), e))?;
                    // Read at most one byte past the budget: enough to know it is exceeded.
                    let mut bytes = Vec::new();
                    file.take(room.saturating_add(1))
                        .read_to_end(&mut bytes)
                        .map_err(|e| io(&entry.path(), e))?;
                    if bytes.len() as u64 > room {
                        return Err(FilesError::TooLarge(limits.max_bytes));
                    }
                    tree.insert(&child_rel, bytes, limits)?;
                }
            }
        }
        Ok(tree)
    }

    /// Reads a GitHub tarball (`GET /repos/{o}/{r}/tarball/{ref}`): a gzip'd tar whose entries
    /// all sit under one top folder (`owner-repo-sha/`), which is stripped. Only regular files
    /// are kept. Limits are checked from each entry's header before its data is read, so an
    /// oversized archive fails early without buffering more than `max_bytes`.
    pub fn from_tar_gz(bytes: &[u8], limits: &Limits) -> Result<Self, FilesError> {
        let archive = |e: std::io::Error| FilesError::Archive(e.to_string());
        let mut tree = FileTree::new();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        for entry in tar.entries().map_err(archive)? {
            let mut entry = entry.map_err(archive)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let full = clean_path(&entry.path().map_err(archive)?.to_string_lossy());
            let Some((_top, rel)) = full.split_once('/') else {
                continue;
            };
            let rel = rel.to_string();
            let size = entry.size();
            if !tree.files.contains_key(&rel) && tree.files.len() >= limits.max_files {
                return Err(FilesError::TooManyFiles(limits.max_files));
            }
            if tree.total_bytes.saturating_add(size) > limits.max_bytes {
                return Err(FilesError::TooLarge(limits.max_bytes));
            }
            // `size` fits the budget checked above, which bounds this allocation.
            let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            (&mut entry)
                .take(size)
                .read_to_end(&mut data)
                .map_err(archive)?;
            tree.insert(&rel, data, limits)?;
        }
        Ok(tree)
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The memory the tree holds, estimated: contents, paths, and an overhead per file (its
    /// map entry and shared buffer) and per tree. What a cache of trees must weigh: a
    /// repository of many small or empty files holds far more than its contents, and weighed
    /// by contents alone a cache of such trees is not bounded at all (measured: 100,000 small
    /// trees kept whole under a 16 MiB budget).
    pub fn footprint(&self) -> u64 {
        const PER_FILE: u64 = 96;
        const PER_TREE: u64 = 256;
        PER_TREE
            + self.total_bytes
            + self
                .files
                .keys()
                .map(|p| p.len() as u64 + PER_FILE)
                .sum::<u64>()
    }

    /// The contents of a file; `None` for directories and missing paths.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.files.get(&clean_path(path)).map(|b| &b[..])
    }

    pub fn is_file(&self, path: &str) -> bool {
        self.files.contains_key(&clean_path(path))
    }

    /// The root is always a directory, even in an empty tree.
    pub fn is_dir(&self, path: &str) -> bool {
        let path = clean_path(path);
        if path.is_empty() {
            return true;
        }
        let prefix = format!("{path}/");
        self.files
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
    }

    /// A file or a directory.
    pub fn exists(&self, path: &str) -> bool {
        self.is_file(path) || self.is_dir(path)
    }

    /// The direct children of a directory, sorted by name (as Go's `ReadDir` lists them);
    /// `None` when `path` is not a directory.
    pub fn read_dir(&self, path: &str) -> Option<Vec<DirEntry<'_>>> {
        let path = clean_path(path);
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut children: BTreeMap<&str, bool> = BTreeMap::new();
        for (key, _) in self
            .files
            .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            match rest.split_once('/') {
                Some((dir, _)) => children.insert(dir, true),
                None => children.insert(rest, false),
            };
        }
        if children.is_empty() && !path.is_empty() {
            return None;
        }
        Some(
            children
                .into_iter()
                .map(|(name, is_dir)| DirEntry { name, is_dir })
                .collect(),
        )
    }

    /// Every file path, in byte order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(String::as_str)
    }

    /// Hex sha256 over the sorted paths and their contents: equal trees, equal digests, so a
    /// verdict computed for one tree can be reused for the other.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, bytes) in &self.files {
            // Length prefixes keep (path, content) boundaries unambiguous.
            h.update((path.len() as u64).to_le_bytes());
            h.update(path.as_bytes());
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tree(files: &[(&str, &str)]) -> FileTree {
        let mut t = FileTree::new();
        for (p, c) in files {
            t.insert(p, c.as_bytes().to_vec(), &Limits::default())
                .unwrap();
        }
        t
    }

    fn tar_gz(
        entries: &[(&str, &[u8])],
        extra: impl FnOnce(&mut tar::Builder<Vec<u8>>),
    ) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        extra(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("plumbline-files-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn cleans_paths() {
        assert_eq!(clean_path("a//b/../c"), "a/c");
        assert_eq!(clean_path("../x"), "x");
        assert_eq!(clean_path("/x/./y/"), "x/y");
        assert_eq!(clean_path("./.github/workflows"), ".github/workflows");
        assert_eq!(clean_path("."), "");
        assert_eq!(clean_path("/"), "");
        assert_eq!(clean_path(""), "");
        assert_eq!(clean_path("a/../../b"), "b");
    }

    #[test]
    fn lookups() {
        let t = tree(&[("README.md", "hi"), ("a/b/c.txt", "c"), ("a.txt", "x")]);
        assert_eq!(t.read("./README.md"), Some(&b"hi"[..]));
        assert_eq!(t.read("/a//b/../b/c.txt"), Some(&b"c"[..]));
        assert_eq!(t.read("a"), None);
        assert!(
            t.is_dir("a") && t.is_dir("a/b/") && t.is_dir("") && t.is_dir(".") && t.is_dir("/")
        );
        assert!(!t.is_dir("a.txt") && !t.is_dir("missing") && !t.is_dir("a/b/c"));
        assert!(t.exists("a/b") && t.exists("a.txt") && !t.exists("nope"));
        assert!(FileTree::new().is_dir("."));
        assert_eq!(t.len(), 3);
        assert_eq!(t.total_bytes(), 4);
        assert_eq!(
            t.paths().collect::<Vec<_>>(),
            ["README.md", "a.txt", "a/b/c.txt"]
        );
    }

    #[test]
    fn lists_directories_by_name() {
        let t = tree(&[("a.txt", ""), ("a/x", ""), ("a/y/z", ""), ("b", "")]);
        let names = |p: &str| {
            t.read_dir(p).map(|es| {
                es.iter()
                    .map(|e| (e.name.to_string(), e.is_dir))
                    .collect::<Vec<_>>()
            })
        };
        // "a" sorts before "a.txt" by name, though "a.txt" < "a/x" as paths.
        assert_eq!(
            names("."),
            Some(vec![
                ("a".into(), true),
                ("a.txt".into(), false),
                ("b".into(), false)
            ])
        );
        assert_eq!(
            names("a"),
            Some(vec![("x".into(), false), ("y".into(), true)])
        );
        assert_eq!(names("a.txt"), None);
        assert_eq!(names("missing"), None);
        assert_eq!(FileTree::new().read_dir("").map(|v| v.len()), Some(0));
    }

    #[test]
    fn a_tree_of_empty_files_still_weighs_its_paths() {
        let mut t = FileTree::new();
        for i in 0..100 {
            t.insert(&format!("dir/file-{i}"), vec![], &Limits::default())
                .expect("insert");
        }
        assert_eq!(t.total_bytes(), 0);
        assert!(t.footprint() > 100 * 96, "{}", t.footprint());
        assert!(FileTree::new().footprint() > 0);
    }

    #[test]
    fn insert_replaces_and_rejects_conflicts() {
        let l = Limits::default();
        let mut t = tree(&[("a/b", "12345")]);
        t.insert("a/b", b"1".to_vec(), &l).unwrap();
        assert_eq!((t.len(), t.total_bytes()), (1, 1));
        assert!(matches!(
            t.insert("a", vec![], &l),
            Err(FilesError::InvalidPath(_))
        ));
        assert!(matches!(
            t.insert("a/b/c", vec![], &l),
            Err(FilesError::InvalidPath(_))
        ));
        assert!(matches!(
            t.insert("./", vec![], &l),
            Err(FilesError::InvalidPath(_))
        ));
    }

    #[test]
    fn enforces_limits() {
        let l = Limits {
            max_files: 2,
            max_bytes: 10,
        };
        let mut t = FileTree::new();
        t.insert("a", vec![0; 4], &l).unwrap();
        t.insert("b", vec![0; 4], &l).unwrap();
        assert!(matches!(
            t.insert("c", vec![], &l),
            Err(FilesError::TooManyFiles(2))
        ));
        assert!(matches!(
            t.insert("b", vec![0; 7], &l),
            Err(FilesError::TooLarge(10))
        ));
        // Replacing within budget is fine.
        t.insert("b", vec![0; 6], &l).unwrap();
        assert_eq!(t.total_bytes(), 10);
    }

    #[test]
    fn digest_is_stable_and_content_sensitive() {
        let a = tree(&[("x", "1"), ("y", "2")]);
        let b = tree(&[("y", "2"), ("x", "1")]);
        let c = tree(&[("x", "12"), ("y", "")]);
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.digest().len(), 64);
    }

    #[test]
    fn missing_dir_is_empty() {
        let t = FileTree::from_dir(
            Path::new("/nonexistent/plumbline/fixture"),
            &Limits::default(),
        )
        .unwrap();
        assert!(t.is_empty());
    }

    #[test]
    fn from_dir_reads_recursively_skipping_git_and_symlinks() {
        let d = temp_dir("read");
        std::fs::create_dir_all(d.join(".github/workflows")).unwrap();
        std::fs::create_dir_all(d.join(".git/objects")).unwrap();
        std::fs::write(d.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(d.join(".github/workflows/ci.yml"), "on: push").unwrap();
        std::fs::write(d.join("README.md"), "hello").unwrap();
        std::fs::create_dir_all(d.join("empty")).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", d.join("link")).unwrap();
        let t = FileTree::from_dir(&d, &Limits::default()).unwrap();
        assert_eq!(
            t.paths().collect::<Vec<_>>(),
            [".github/workflows/ci.yml", "README.md"]
        );
        assert_eq!(t.read("README.md"), Some(&b"hello"[..]));

        let too_many = FileTree::from_dir(
            &d,
            &Limits {
                max_files: 1,
                max_bytes: 1000,
            },
        );
        assert!(matches!(too_many, Err(FilesError::TooManyFiles(1))));
        let too_large = FileTree::from_dir(
            &d,
            &Limits {
                max_files: 10,
                max_bytes: 10,
            },
        );
        assert!(matches!(too_large, Err(FilesError::TooLarge(10))));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn from_dir_loads_corpus_fixture() {
        let d = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/minder-rules/rule-types/github/grype_github_action_scan_repo.testdata/action_enabled");
        if !d.exists() {
            return; // the shared corpus is not checked out here
        }
        let t = FileTree::from_dir(&d, &Limits::default()).unwrap();
        assert!(t.is_file(".github/workflows/wf.yml"));
        assert!(t.is_dir("./.github/workflows"));
    }

    #[test]
    fn tarball_strips_top_folder() {
        let gz = tar_gz(
            &[
                ("acme-widgets-0123abc/README.md", b"hi"),
                ("acme-widgets-0123abc/.github/workflows/ci.yml", b"on: push"),
            ],
            |b| {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                b.append_link(&mut h, "acme-widgets-0123abc/link", "README.md")
                    .unwrap();
                let mut d = tar::Header::new_gnu();
                d.set_entry_type(tar::EntryType::Directory);
                d.set_size(0);
                b.append_data(&mut d, "acme-widgets-0123abc/docs/", std::io::empty())
                    .unwrap();
            },
        );
        let t = FileTree::from_tar_gz(&gz, &Limits::default()).unwrap();
        assert_eq!(
            t.paths().collect::<Vec<_>>(),
            [".github/workflows/ci.yml", "README.md"]
        );
        assert_eq!(t.read(".github/workflows/ci.yml"), Some(&b"on: push"[..]));
    }

    #[test]
    fn tarball_limits() {
        let gz = tar_gz(
            &[("top/a", b"1234"), ("top/b", b"5678"), ("top/c", b"9")],
            |_| {},
        );
        let r = FileTree::from_tar_gz(
            &gz,
            &Limits {
                max_files: 2,
                max_bytes: 100,
            },
        );
        assert!(matches!(r, Err(FilesError::TooManyFiles(2))));
        let r = FileTree::from_tar_gz(
            &gz,
            &Limits {
                max_files: 10,
                max_bytes: 6,
            },
        );
        assert!(matches!(r, Err(FilesError::TooLarge(6))));
        assert_eq!(
            FileTree::from_tar_gz(&gz, &Limits::default())
                .unwrap()
                .total_bytes(),
            9
        );
    }

    #[test]
    fn tarball_garbage_is_an_archive_error() {
        assert!(matches!(
            FileTree::from_tar_gz(b"not gzip", &Limits::default()),
            Err(FilesError::Archive(_))
        ));
    }
}
