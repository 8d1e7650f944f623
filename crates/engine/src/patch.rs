//! The lines a pull request adds to a file, read from GitHub's per-file `patch` text.
//!
//! `GET /repos/{owner}/{repo}/pulls/{number}/files` gives each file a `patch` field: the
//! unified-diff hunks of that file with no `diff --git`/`---`/`+++` header, and usually no
//! trailing newline, e.g. `"@@ -1,3 +1,4 @@\n a\n+b\n c\n d"`. [`added_lines`] returns each `+`
//! line with its 1-based line number in the new file.
//!
//! # Why this parser is hand-written
//!
//! The maintained unified-diff crates were measured on GitHub's header-less hunks (valid
//! patches with and without counts, section headings, `\ No newline at end of file`, several
//! hunks; and malformed ones):
//!
//! - `patch` 0.7.0 rejects every header-less patch; with synthesized `---`/`+++` headers it
//!   *panics* ("bug: failed to parse entire input") on valid patches that lack a final newline,
//!   which is how GitHub sends them.
//! - `unidiff` 0.4.1 rejects every header-less hunk ("Unexpected hunk found"); with synthesized
//!   headers it accepts a header with letters (`@@ -a,b +c,d @@`) and garbage as "no changes",
//!   and silently drops the lines of a hunk body longer than its header announces.
//! - `diffy` 0.5.2 parses header-less hunks correctly, but by design (GNU `patch` leniency) skips
//!   anything before the first `@@` (so garbage, or a `+` line before any header, gives
//!   `Ok` with no or fewer lines) and ignores lines after a hunk whose counts are met (a body
//!   longer than announced loses its extra `+` lines without an error); its errors carry a byte
//!   offset that is not public.
//!
//! For a security check over the added lines, silently dropping lines is the one failure that
//! must not happen, and re-checking a lenient parser's coverage would be a second parser. So
//! this module is a small strict parser of exactly the hunk grammar: every line of the patch is
//! accounted for or the patch is refused with its line number.

use std::fmt;

/// The largest patch [`added_lines`] reads, in bytes (GitHub itself omits `patch` for large
/// diffs, well under this).
pub const MAX_PATCH_BYTES: usize = 8 * 1024 * 1024;

/// A line the patch adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedLine {
    /// 1-based line number in the new file.
    pub line: u64,
    /// The line without its leading `+` and without the `\n` the patch is split on (a `\r`
    /// before it is content and is kept).
    pub content: String,
}

/// Why a patch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch is larger than [`MAX_PATCH_BYTES`].
    #[error("patch is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The patch is not a sequence of well-formed hunks; `line` is 1-based, in the patch text.
    #[error("patch line {line}: {reason}")]
    Malformed { line: usize, reason: Reason },
}

/// What was wrong with a patch line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A line before the first hunk header.
    NotInHunk,
    /// A hunk header that is not `@@ -a[,b] +c[,d] @@[ heading]`.
    BadHeader(&'static str),
    /// A hunk line that starts with none of ' ', '+', '-', '\', '@'.
    BadLineStart,
    /// More lines of a kind than the hunk header announced.
    TooManyLines { kind: &'static str, announced: u64 },
    /// The hunk ended (next header or end of patch) before the lines its header announced.
    TooFewLines { old_missing: u64, new_missing: u64 },
    /// A hunk whose new-file lines start before the previous hunk's end.
    OutOfOrder { start: u64, previous_end: u64 },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotInHunk => f.write_str("line is not in a hunk (no `@@` header before it)"),
            Reason::BadHeader(why) => write!(f, "malformed hunk header: {why}"),
            Reason::BadLineStart => f.write_str(
                "hunk line does not start with ' ', '+', '-', '\\' or a `@@` hunk header",
            ),
            Reason::TooManyLines { kind, announced } => write!(
                f,
                "more {kind} lines than the {announced} the hunk header announced"
            ),
            Reason::TooFewLines {
                old_missing,
                new_missing,
            } => write!(
                f,
                "hunk ended {old_missing} old-file and {new_missing} new-file line(s) short of \
                 what its header announced"
            ),
            Reason::OutOfOrder {
                start,
                previous_end,
            } => write!(
                f,
                "hunk starts at new-file line {start}, inside the previous hunk (which ends \
                 before line {previous_end})"
            ),
        }
    }
}

/// One side of a hunk header: (start, count).
type Range = (u64, u64);

/// One side of a hunk header: `start[,count]`, count 1 when omitted.
fn parse_range(s: &str) -> Result<Range, &'static str> {
    fn number(s: &str) -> Result<u64, &'static str> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err("a line number or count is not a decimal number");
        }
        s.parse().map_err(|_| "a line number or count is too large")
    }
    let (start, count) = match s.split_once(',') {
        Some((start, count)) => (number(start)?, number(count)?),
        None => (number(s)?, 1),
    };
    if start == 0 && count != 0 {
        return Err("a range of lines starts at line 0");
    }
    start
        .checked_add(count)
        .ok_or("a range of lines is too large")?;
    Ok((start, count))
}

/// `@@ -a[,b] +c[,d] @@[ heading]` → ((a, b), (c, d)).
fn parse_header(line: &str) -> Result<(Range, Range), &'static str> {
    let rest = line
        .strip_prefix("@@ -")
        .ok_or("it does not start with \"@@ -\"")?;
    let (old, rest) = rest
        .split_once(' ')
        .ok_or("no space after the old-file range")?;
    let rest = rest
        .strip_prefix('+')
        .ok_or("the new-file range does not start with '+'")?;
    let (new, rest) = rest
        .split_once(' ')
        .ok_or("no space after the new-file range")?;
    let heading = rest
        .strip_prefix("@@")
        .ok_or("the ranges are not followed by \"@@\"")?;
    if !(heading.is_empty() || heading.starts_with(' ')) {
        return Err("no space between the closing \"@@\" and the section heading");
    }
    Ok((parse_range(old)?, parse_range(new)?))
}

/// The current hunk: lines still expected and the next new-file line number.
struct Hunk {
    old_left: u64,
    new_left: u64,
    old_count: u64,
    new_count: u64,
    next_line: u64,
}

/// The lines `patch` (GitHub's per-file `patch` field) adds, in order, with their line numbers
/// in the new file. An empty patch adds nothing; a patch that is not well-formed hunks, or is
/// larger than [`MAX_PATCH_BYTES`], is an error.
pub fn added_lines(patch: &str) -> Result<Vec<AddedLine>, PatchError> {
    if patch.len() > MAX_PATCH_BYTES {
        return Err(PatchError::TooLarge {
            size: patch.len(),
            limit: MAX_PATCH_BYTES,
        });
    }
    // GitHub sends no final newline; tolerate one rather than reading an empty last line.
    let body = patch.strip_suffix('\n').unwrap_or(patch);
    let mut added = Vec::new();
    if body.is_empty() {
        return Ok(added);
    }
    let malformed = |line: usize, reason: Reason| PatchError::Malformed { line, reason };
    let mut hunk: Option<Hunk> = None;
    // The new-file line after the previous hunk, for the order check.
    let mut previous_end: u64 = 1;
    let mut last_index = 0;
    for (index, text) in body.split('\n').enumerate() {
        let number = index + 1;
        last_index = number;
        if text.starts_with('@') {
            if let Some(h) = &hunk {
                if h.old_left != 0 || h.new_left != 0 {
                    return Err(malformed(
                        number,
                        Reason::TooFewLines {
                            old_missing: h.old_left,
                            new_missing: h.new_left,
                        },
                    ));
                }
                previous_end = h.next_line;
            }
            let ((_, old_count), (new_start, new_count)) =
                parse_header(text).map_err(|why| malformed(number, Reason::BadHeader(why)))?;
            // With a count of 0 the start is the line before the (empty) range.
            let first_line = if new_count == 0 {
                new_start.saturating_add(1)
            } else {
                new_start
            };
            if first_line < previous_end {
                return Err(malformed(
                    number,
                    Reason::OutOfOrder {
                        start: first_line,
                        previous_end,
                    },
                ));
            }
            hunk = Some(Hunk {
                old_left: old_count,
                new_left: new_count,
                old_count,
                new_count,
                next_line: first_line,
            });
            continue;
        }
        let Some(h) = hunk.as_mut() else {
            return Err(malformed(number, Reason::NotInHunk));
        };
        let too_many = |kind: &'static str, announced: u64| {
            malformed(number, Reason::TooManyLines { kind, announced })
        };
        match text.as_bytes().first() {
            Some(b' ') => {
                if h.old_left == 0 {
                    return Err(too_many("old-file (context or '-')", h.old_count));
                }
                if h.new_left == 0 {
                    return Err(too_many("new-file (context or '+')", h.new_count));
                }
                h.old_left -= 1;
                h.new_left -= 1;
                h.next_line += 1;
            }
            Some(b'-') => {
                if h.old_left == 0 {
                    return Err(too_many("old-file (context or '-')", h.old_count));
                }
                h.old_left -= 1;
            }
            Some(b'+') => {
                if h.new_left == 0 {
                    return Err(too_many("new-file (context or '+')", h.new_count));
                }
                h.new_left -= 1;
                added.push(AddedLine {
                    line: h.next_line,
                    content: text[1..].to_string(),
                });
                h.next_line += 1;
            }
            // "\ No newline at end of file" (whatever its wording): not a line of either file.
            Some(b'\\') => {}
            _ => return Err(malformed(number, Reason::BadLineStart)),
        }
    }
    if let Some(h) = &hunk {
        if h.old_left != 0 || h.new_left != 0 {
            return Err(malformed(
                last_index,
                Reason::TooFewLines {
                    old_missing: h.old_left,
                    new_missing: h.new_left,
                },
            ));
        }
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(patch: &str) -> Vec<(u64, String)> {
        added_lines(patch)
            .unwrap()
            .into_iter()
            .map(|a| (a.line, a.content))
            .collect()
    }

    fn owned(v: &[(u64, &str)]) -> Vec<(u64, String)> {
        v.iter().map(|(n, s)| (*n, s.to_string())).collect()
    }

    fn err_line(patch: &str) -> usize {
        match added_lines(patch) {
            Err(PatchError::Malformed { line, .. }) => line,
            other => panic!("expected a malformed-patch error for {patch:?}, got {other:?}"),
        }
    }

    #[test]
    fn empty_patch_adds_nothing() {
        assert_eq!(lines(""), vec![]);
    }

    #[test]
    fn added_file() {
        let p = "@@ -0,0 +1,3 @@\n+# Title\n+\n+text";
        assert_eq!(lines(p), owned(&[(1, "# Title"), (2, ""), (3, "text")]));
    }

    #[test]
    fn modified_with_context() {
        let p = "@@ -1,3 +1,4 @@\n a\n+b\n c\n d";
        assert_eq!(lines(p), owned(&[(2, "b")]));
    }

    #[test]
    fn multiple_hunks_with_headings() {
        let p = "@@ -3,5 +3,6 @@ fn main() {\n     let a = 1;\n     let b = 2;\n+    let c = 3;\n     \
                 println!();\n-    old();\n+    new();\n }\n@@ -40,3 +41,4 @@ impl Foo {\n x\n y\n+z\n w";
        assert_eq!(
            lines(p),
            owned(&[(5, "    let c = 3;"), (7, "    new();"), (43, "z")])
        );
    }

    #[test]
    fn deleted_lines_do_not_advance_the_new_file() {
        let p = "@@ -1,5 +1,3 @@\n a\n-b\n-c\n+C\n d\n-e";
        assert_eq!(lines(p), owned(&[(2, "C")]));
        // A deleted file adds nothing.
        assert_eq!(lines("@@ -1,2 +0,0 @@\n-a\n-b"), vec![]);
    }

    #[test]
    fn no_newline_markers_are_ignored() {
        let p = "@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+c\n\\ No newline at end of file";
        assert_eq!(lines(p), owned(&[(2, "b"), (3, "c")]));
    }

    #[test]
    fn omitted_counts_mean_one() {
        assert_eq!(lines("@@ -1 +1 @@\n-a\n+b"), owned(&[(1, "b")]));
        assert_eq!(lines("@@ -7 +7,2 @@\n x\n+y"), owned(&[(8, "y")]));
    }

    #[test]
    fn crlf_content_keeps_the_carriage_return() {
        let p = "@@ -1,2 +1,3 @@\n a\r\n+b\r\n c\r";
        assert_eq!(lines(p), owned(&[(2, "b\r")]));
    }

    #[test]
    fn non_ascii_content() {
        let p = "@@ -0,0 +1,2 @@\n+pаypal — 日本語\n+\u{200B}x";
        assert_eq!(lines(p), owned(&[(1, "pаypal — 日本語"), (2, "\u{200B}x")]));
    }

    #[test]
    fn a_trailing_newline_is_tolerated() {
        assert_eq!(lines("@@ -1 +1 @@\n-a\n+b\n"), owned(&[(1, "b")]));
    }

    #[test]
    fn garbage_is_an_error() {
        assert_eq!(err_line("hello world"), 1);
        assert_eq!(err_line("diff --git a/x b/x\n@@ -1 +1 @@\n-a\n+b"), 1);
    }

    #[test]
    fn malformed_headers_are_errors() {
        for h in [
            "@@ -a,b +c,d @@",
            "@@ -1,2 +1,x @@",
            "@@ -1,2 1,2 @@",
            "@@ -1,2 +1,2",
            "@@ -1,2 +1,2 @@x",
            "@@ -+1 +1 @@",
            "@@ -1 +0,3 @@",
            "@@ -1 +99999999999999999999 @@",
            "@@@ -1 +1 @@",
            "@",
        ] {
            let p = format!("{h}\n-a\n+b");
            match added_lines(&p) {
                Err(PatchError::Malformed {
                    line: 1,
                    reason: Reason::BadHeader(_),
                }) => {}
                other => panic!("{h:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn body_longer_than_header_is_an_error() {
        assert_eq!(err_line("@@ -1 +1 @@\n-a\n+b\n+c"), 4);
        assert_eq!(err_line("@@ -1,2 +1,2 @@\n a\n b\n c"), 4);
        assert_eq!(err_line("@@ -1 +1 @@\n-a\n-b\n+c"), 3);
    }

    #[test]
    fn body_shorter_than_header_is_an_error() {
        assert_eq!(err_line("@@ -1,3 +1,3 @@\n a\n b"), 3);
        assert_eq!(err_line("@@ -1,3 +1,3 @@\n a\n b\n@@ -9 +9 @@\n x"), 4);
    }

    #[test]
    fn plus_before_any_header_is_an_error() {
        assert_eq!(err_line("+evil\n@@ -1 +1 @@\n-a\n+b"), 1);
        assert_eq!(err_line("\\ No newline at end of file"), 1);
    }

    #[test]
    fn other_line_starts_are_errors() {
        assert_eq!(err_line("@@ -1,2 +1,2 @@\n a\nb"), 3);
        assert_eq!(err_line("@@ -1,2 +1,2 @@\n a\n\n b"), 3);
    }

    #[test]
    fn overlapping_hunks_are_errors() {
        let p = "@@ -1,2 +1,2 @@\n a\n b\n@@ -2 +2 @@\n c";
        assert!(matches!(
            added_lines(p),
            Err(PatchError::Malformed {
                line: 4,
                reason: Reason::OutOfOrder { .. }
            })
        ));
    }

    #[test]
    fn an_empty_range_counts_for_the_order() {
        // Zero-count (pure deletion) hunks sit after the line they name.
        let p = "@@ -1,2 +1,3 @@\n a\n+b\n c\n@@ -10 +10,0 @@\n-x\n@@ -20 +19,2 @@\n+y\n z";
        assert_eq!(lines(p), owned(&[(2, "b"), (19, "y")]));
        let p = "@@ -1,3 +1,3 @@\n a\n b\n c\n@@ -5 +2,0 @@\n-x";
        assert_eq!(err_line(p), 5);
    }

    #[test]
    fn oversized_patches_are_refused() {
        let big = "x".repeat(MAX_PATCH_BYTES + 1);
        assert!(matches!(
            added_lines(&big),
            Err(PatchError::TooLarge { .. })
        ));
    }

    #[test]
    fn errors_say_where_and_why() {
        let e = added_lines("@@ -1 +1 @@\n-a\n+b\n+c").unwrap_err();
        assert_eq!(
            e.to_string(),
            "patch line 4: more new-file (context or '+') lines than the 1 the hunk header \
             announced"
        );
    }

    /// xorshift64*: a deterministic byte source for the no-panic property below.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_input_never_panics() {
        const ALPHABET: &[u8] = b"@@ -+,\\\n\n\n 0123456789aZ\r\xc3\xa9";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng.next();
                    if round % 2 == 0 {
                        r as u8
                    } else {
                        ALPHABET[(r % ALPHABET.len() as u64) as usize]
                    }
                })
                .collect();
            // Half of the inputs start like a hunk, to get past the first line.
            let text = String::from_utf8_lossy(&bytes);
            let text = if round % 4 == 1 {
                format!("@@ -1,3 +1,3 @@\n{text}")
            } else {
                text.into_owned()
            };
            if let Ok(added) = added_lines(&text) {
                assert!(added.windows(2).all(|w| w[0].line < w[1].line), "{text:?}");
                assert!(added.iter().all(|a| a.line >= 1), "{text:?}");
            }
        }
    }
}
