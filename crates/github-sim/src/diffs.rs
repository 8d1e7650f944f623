//! The changed files between two trees as GitHub reports them (`diff-entry`: the files of a pull
//! request, of a comparison), with the `patch` of each text file rendered like GitHub's.
//!
//! A `patch` is the hunks of git's unified diff of one file, without the `diff --git` / `---` /
//! `+++` header lines: each hunk starts with `@@ -a,b +c,d @@` (a one-line range is written
//! without its length, an empty one as `N,0`, as git writes them) followed by the hunk's lines
//! prefixed with ' ', '+' or '-', with 3 lines of context, hunks closer than 2 x 3 lines merged;
//! a side without a final newline gets git's `\ No newline at end of file` line after its last
//! line. Lines are joined with `\n` and the patch has no trailing newline. After the second `@@`
//! comes, as in git's default diff driver, the nearest line before the hunk (in the old file)
//! that starts with a letter, `_` or `$`, cut to 80 bytes and trailing whitespace removed.
//!
//! The line diff is `similar`'s Myers diff. Where several minimal diffs exist (a moved blank
//! line, repeated lines), git's slider heuristics may pick another one than `similar`; the
//! additions and deletions are the same either way. A diff taking longer than a second (huge
//! rewritten files) is finished coarser by `similar`.
//!
//! Binary files (a side that is not UTF-8 or contains a NUL byte) have no `patch` and count no
//! lines, like on GitHub. A file whose patch exceeds [`MAX_PATCH_LINES`] lines or
//! [`MAX_PATCH_BYTES`] bytes has its line counts but no `patch`. Renames are detected when a
//! removed and an added file have the same blob (git's exact renames; similarity renames are not
//! modelled): status `renamed`, `previous_filename`, no patch. A mode change alone is `changed`.

use std::time::Duration;

use serde_json::{json, Map, Value};
use similar::{Algorithm, ChangeTag, TextDiff};

use crate::api::encode_query_component;
use crate::git::{Change, ChangeKind, EntryMode, FileEntry};
use crate::state::Repo;

/// Most files `GET /repos/{owner}/{repo}/pulls/{pull_number}/files` lists, over all pages
/// (GitHub: "Responses include a maximum of 3000 files").
pub const MAX_PULL_FILES: usize = 3000;

/// Most files a comparison (`GET /repos/{owner}/{repo}/compare/{basehead}`) lists.
pub const MAX_COMPARE_FILES: usize = 300;

/// A file's `patch` is left out when it would have more lines than this (GitHub's diff limit
/// of 20,000 lines for one file). `additions`, `deletions` and `changes` are still reported.
pub const MAX_PATCH_LINES: usize = 20_000;

/// A file's `patch` is left out when it would be longer than this many bytes (GitHub's limit
/// of 1 MB of diff for one file). `additions`, `deletions` and `changes` are still reported.
pub const MAX_PATCH_BYTES: usize = 1024 * 1024;

/// Longest time one file's line diff may take before `similar` settles for a coarser diff.
const DIFF_TIMEOUT: Duration = Duration::from_secs(1);

/// Lines of context around each change, git's default.
const CONTEXT: usize = 3;

/// Longest hunk-header function context git's default driver copies.
const FUNC_LINE_MAX: usize = 80;

const NO_NEWLINE: &str = "\\ No newline at end of file";

/// What a line of a patch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    Hunk,
    Context,
    Added,
    Removed,
    NoNewline,
}

/// One line of a patch, with its line numbers (1-based) in the old and new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PatchLine {
    pub kind: LineKind,
    pub old: Option<u64>,
    pub new: Option<u64>,
    /// Index (in the patch's lines) of the `@@` line of the hunk this line belongs to.
    pub hunk: usize,
}

/// A changed path between two trees, renames paired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub path: String,
    pub previous: Option<String>,
    pub status: &'static str,
    pub old: Option<FileEntry>,
    pub new: Option<FileEntry>,
}

/// One file of a diff, with its rendered patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileDiff {
    pub entry: Entry,
    pub additions: u64,
    pub deletions: u64,
    /// The patch text; None for binary files, changes without lines, and too large diffs.
    pub patch: Option<String>,
    /// The lines of `patch`, one per text line (so the index is GitHub's diff `position`);
    /// empty when there is no patch.
    pub lines: Vec<PatchLine>,
}

/// The changed paths between two trees (None = the empty tree), by path, with exact renames
/// paired.
pub(crate) fn entries(repo: &Repo, old_tree: Option<&str>, new_tree: &str) -> Vec<Entry> {
    let changes = repo.git.diff(old_tree, new_tree);
    pair_renames(changes)
}

fn pair_renames(changes: Vec<Change>) -> Vec<Entry> {
    let blob = |entry: &Option<FileEntry>| {
        entry
            .as_ref()
            .filter(|(mode, _)| matches!(mode, EntryMode::File(_)))
            .map(|(_, sha)| sha.clone())
    };
    let mut removed: Vec<(String, FileEntry, bool)> = changes
        .iter()
        .filter(|c| c.kind == ChangeKind::Removed)
        .filter_map(|c| Some((c.path.clone(), c.old.clone()?, false)))
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    for change in &changes {
        match change.kind {
            ChangeKind::Removed => {}
            ChangeKind::Added => {
                let sha = blob(&change.new);
                let source = removed.iter_mut().find(|(_, old, used)| {
                    !*used && sha.is_some() && blob(&Some(old.clone())) == sha
                });
                match source {
                    Some((path, old, used)) => {
                        *used = true;
                        out.push(Entry {
                            path: change.path.clone(),
                            previous: Some(path.clone()),
                            status: "renamed",
                            old: Some(old.clone()),
                            new: change.new.clone(),
                        });
                    }
                    None => out.push(Entry {
                        path: change.path.clone(),
                        previous: None,
                        status: "added",
                        old: None,
                        new: change.new.clone(),
                    }),
                }
            }
            ChangeKind::Modified => {
                let same_content = matches!(
                    (&change.old, &change.new),
                    (Some((_, a)), Some((_, b))) if a == b
                );
                out.push(Entry {
                    path: change.path.clone(),
                    previous: None,
                    status: if same_content { "changed" } else { "modified" },
                    old: change.old.clone(),
                    new: change.new.clone(),
                });
            }
        }
    }
    for (path, old, used) in removed {
        if !used {
            out.push(Entry {
                path,
                previous: None,
                status: "removed",
                old: Some(old),
                new: None,
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// The text of one side of a change: None for a missing side, Err(()) for binary content.
fn text_of(repo: &Repo, entry: &Option<FileEntry>) -> Result<Option<String>, ()> {
    let Some((mode, sha)) = entry else {
        return Ok(None);
    };
    match mode {
        // git shows a gitlink as the commit it points at.
        EntryMode::Submodule => Ok(Some(format!("Subproject commit {sha}\n"))),
        EntryMode::Tree => Ok(None),
        EntryMode::File(_) => {
            let data = repo.git.blob(sha).unwrap_or_default();
            if data.contains(&0) {
                return Err(());
            }
            String::from_utf8(data.to_vec()).map(Some).map_err(|_| ())
        }
    }
}

/// The old and new text of an entry whose lines can be diffed: None for pure renames, mode
/// changes and binary files.
fn texts(repo: &Repo, entry: &Entry) -> Option<(String, String)> {
    // A pure rename or a mode change has no lines to show.
    if entry.status == "renamed" || entry.status == "changed" {
        return None;
    }
    let old = text_of(repo, &entry.old).ok()?;
    let new = text_of(repo, &entry.new).ok()?;
    Some((old.unwrap_or_default(), new.unwrap_or_default()))
}

/// The line diff of two texts. Myers' diff is quadratic on texts that share almost nothing; past
/// [`DIFF_TIMEOUT`] `similar` finishes with a coarser (still valid) diff.
fn text_diff<'a>(old: &'a str, new: &'a str) -> TextDiff<'a, 'a, str> {
    TextDiff::configure()
        .algorithm(Algorithm::Myers)
        .timeout(DIFF_TIMEOUT)
        .diff_lines(old, new)
}

/// Lines added and deleted by an entry, as its diff entry counts them (0 for binary files,
/// pure renames and mode changes).
pub(crate) fn line_counts(repo: &Repo, entry: &Entry) -> (u64, u64) {
    let Some((old, new)) = texts(repo, entry) else {
        return (0, 0);
    };
    counts(&text_diff(&old, &new))
}

fn counts(diff: &TextDiff<'_, '_, str>) -> (u64, u64) {
    let mut additions = 0;
    let mut deletions = 0;
    for change in diff.iter_all_changes() {
        match change.tag() {
            ChangeTag::Insert => additions += 1,
            ChangeTag::Delete => deletions += 1,
            ChangeTag::Equal => {}
        }
    }
    (additions, deletions)
}

/// The diff of one entry: line counts and patch.
pub(crate) fn file_diff(repo: &Repo, entry: &Entry) -> FileDiff {
    let Some((old, new)) = texts(repo, entry) else {
        return FileDiff {
            entry: entry.clone(),
            additions: 0,
            deletions: 0,
            patch: None,
            lines: Vec::new(),
        };
    };
    let rendered = render_patch(&old, &new);
    let too_large = rendered.lines.len() > MAX_PATCH_LINES || rendered.text.len() > MAX_PATCH_BYTES;
    let keep = !rendered.lines.is_empty() && !too_large;
    FileDiff {
        entry: entry.clone(),
        additions: rendered.additions,
        deletions: rendered.deletions,
        patch: keep.then_some(rendered.text),
        lines: if keep { rendered.lines } else { Vec::new() },
    }
}

/// A rendered patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    pub text: String,
    pub lines: Vec<PatchLine>,
    pub additions: u64,
    pub deletions: u64,
}

/// Git's default function-context line for a hunk starting at old line index `start`: the
/// nearest earlier line starting with a letter, `_` or `$`.
fn func_line(old_lines: &[&str], start: usize) -> Option<String> {
    let line = old_lines[..start.min(old_lines.len())]
        .iter()
        .rev()
        .find(|l| {
            l.as_bytes()
                .first()
                .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_' || *b == b'$')
        })?;
    let mut end = line.len().min(FUNC_LINE_MAX);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    let cut = line[..end].trim_end();
    (!cut.is_empty()).then(|| cut.to_owned())
}

/// The patch of `old` → `new` (see the module docs).
pub(crate) fn render_patch(old: &str, new: &str) -> Rendered {
    let diff = text_diff(old, new);
    let (additions, deletions) = counts(&diff);
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let mut text: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    let mut unified = diff.unified_diff();
    unified.context_radius(CONTEXT);
    for hunk in unified.iter_hunks() {
        let start = hunk.ops().first().map_or(0, |op| op.old_range().start);
        let mut header = hunk.header().to_string();
        if let Some(func) = func_line(&old_lines, start) {
            header.push(' ');
            header.push_str(&func);
        }
        let hunk_index = lines.len();
        text.push(header);
        lines.push(PatchLine {
            kind: LineKind::Hunk,
            old: None,
            new: None,
            hunk: hunk_index,
        });
        for change in hunk.iter_changes() {
            let (prefix, kind) = match change.tag() {
                ChangeTag::Equal => (' ', LineKind::Context),
                ChangeTag::Insert => ('+', LineKind::Added),
                ChangeTag::Delete => ('-', LineKind::Removed),
            };
            let value = change.value();
            let body = value.strip_suffix('\n').unwrap_or(value);
            text.push(format!("{prefix}{body}"));
            let number = |index: Option<usize>| index.map(|i| i as u64 + 1);
            lines.push(PatchLine {
                kind,
                old: number(change.old_index()),
                new: number(change.new_index()),
                hunk: hunk_index,
            });
            if change.missing_newline() {
                text.push(NO_NEWLINE.to_owned());
                lines.push(PatchLine {
                    kind: LineKind::NoNewline,
                    old: None,
                    new: None,
                    hunk: hunk_index,
                });
            }
        }
    }
    Rendered {
        text: text.join("\n"),
        lines,
        additions,
        deletions,
    }
}

/// A path in a URL: each segment percent-encoded, slashes kept.
fn url_path(path: &str) -> String {
    path.split('/')
        .map(encode_query_component)
        .collect::<Vec<_>>()
        .join("/")
}

/// A file in GitHub's `diff-entry` shape. `api` and `html` are the repository's API and web
/// URLs; `head` the commit the URLs of a present file point at, `base` the one of a removed
/// file.
pub(crate) fn entry_json(api: &str, html: &str, file: &FileDiff, head: &str, base: &str) -> Value {
    let entry = &file.entry;
    let at = if entry.new.is_some() { head } else { base };
    let path = url_path(&entry.path);
    let sha = entry
        .new
        .as_ref()
        .or(entry.old.as_ref())
        .map(|(_, sha)| sha.clone());
    let mut m = Map::new();
    m.insert("sha".into(), json!(sha));
    m.insert("filename".into(), json!(entry.path));
    m.insert("status".into(), json!(entry.status));
    m.insert("additions".into(), json!(file.additions));
    m.insert("deletions".into(), json!(file.deletions));
    m.insert("changes".into(), json!(file.additions + file.deletions));
    m.insert("blob_url".into(), json!(format!("{html}/blob/{at}/{path}")));
    m.insert("raw_url".into(), json!(format!("{html}/raw/{at}/{path}")));
    m.insert(
        "contents_url".into(),
        json!(format!("{api}/contents/{path}?ref={at}")),
    );
    if let Some(patch) = &file.patch {
        m.insert("patch".into(), json!(patch));
    }
    if let Some(previous) = &entry.previous {
        m.insert("previous_filename".into(), json!(previous));
    }
    Value::Object(m)
}

impl FileDiff {
    /// The index (GitHub's diff `position`) of the patch line showing `line` of the new file
    /// (`right`) or of the old file (not `right`).
    pub(crate) fn position_of(&self, line: u64, right: bool) -> Option<usize> {
        self.lines.iter().position(|l| match (right, l.kind) {
            (true, LineKind::Context | LineKind::Added) => l.new == Some(line),
            (false, LineKind::Context | LineKind::Removed) => l.old == Some(line),
            _ => false,
        })
    }

    /// GitHub's `diff_hunk` of a comment at `position`: the hunk's lines from its `@@` line up
    /// to and including the commented line.
    pub(crate) fn diff_hunk(&self, position: usize) -> String {
        let Some(patch) = &self.patch else {
            return String::new();
        };
        let Some(line) = self.lines.get(position) else {
            return String::new();
        };
        patch
            .split('\n')
            .skip(line.hunk)
            .take(position + 1 - line.hunk)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn added_file_patch() {
        let r = render_patch("", "a\nb\nc\n");
        assert_eq!(r.text, "@@ -0,0 +1,3 @@\n+a\n+b\n+c");
        assert_eq!((r.additions, r.deletions), (3, 0));
        assert_eq!(r.lines.len(), 4);
        assert_eq!(r.lines[1].new, Some(1));
    }

    #[test]
    fn removed_file_and_missing_newline() {
        let r = render_patch("x\ny", "");
        assert_eq!(
            r.text,
            "@@ -1,2 +0,0 @@\n-x\n-y\n\\ No newline at end of file"
        );
        assert_eq!((r.additions, r.deletions), (0, 2));
        let r = render_patch("a\nb", "a\nb\n");
        assert_eq!(
            r.text,
            "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b"
        );
        let r = render_patch("one\n", "two");
        assert_eq!(
            r.text,
            "@@ -1 +1 @@\n-one\n+two\n\\ No newline at end of file"
        );
    }

    #[test]
    fn context_and_hunks_like_git() {
        let old: String = (1..=20).map(|i| format!("l{i}\n")).collect();
        let new = old.replace("l2\n", "L2\n").replace("l17\n", "L17\n");
        let r = render_patch(&old, &new);
        // Two hunks (the gap between the changes is more than 2 x 3 lines); the second carries
        // the nearest earlier line starting with a letter, as git's default driver does.
        assert_eq!(
            r.text,
            "@@ -1,5 +1,5 @@\n l1\n-l2\n+L2\n l3\n l4\n l5\n\
             @@ -14,7 +14,7 @@ l13\n l14\n l15\n l16\n-l17\n+L17\n l18\n l19\n l20"
        );
        // Positions count the second `@@` line.
        let file = FileDiff {
            entry: Entry {
                path: "f".into(),
                previous: None,
                status: "modified",
                old: None,
                new: None,
            },
            additions: r.additions,
            deletions: r.deletions,
            patch: Some(r.text.clone()),
            lines: r.lines.clone(),
        };
        assert_eq!(file.position_of(2, true), Some(3));
        assert_eq!(file.position_of(2, false), Some(2));
        assert_eq!(file.position_of(17, true), Some(12));
        assert_eq!(file.position_of(10, true), None);
        assert_eq!(
            file.diff_hunk(12),
            "@@ -14,7 +14,7 @@ l13\n l14\n l15\n l16\n-l17\n+L17"
        );
        // Changes 6 lines apart share one hunk.
        let new = old.replace("l2\n", "L2\n").replace("l9\n", "L9\n");
        assert_eq!(render_patch(&old, &new).text.matches("@@ -").count(), 1);
    }

    #[test]
    fn func_line_is_cut_and_trimmed() {
        let long = format!("{}  \n", "f".repeat(100));
        let lines = vec!["  indented\n", long.as_str(), "  x\n"];
        assert_eq!(func_line(&lines, 2).unwrap().len(), 80);
        assert_eq!(func_line(&lines, 1), None);
        assert_eq!(
            func_line(&["fn main() {  \n"], 1).as_deref(),
            Some("fn main() {")
        );
    }
}
