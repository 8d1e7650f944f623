//! The line of each object key in a JSON text, by its path: what `serde_json` does not keep.
//!
//! A small tokenizer, run after `serde_json` has accepted the text (so it never judges
//! syntax): it walks strings (with their escapes), brackets, colons and commas, keeping the
//! path of keys from the root to where it is. A key is a string met where its object expects
//! one; its line is the line of its opening quote (a JSON string cannot hold a raw newline). An
//! array on the path is a `None` segment, so no key inside an array matches a key path. Keys
//! are decoded as `serde_json` decodes them, so `"node_modules/@a\/b"` is found as
//! `node_modules/@a/b`. Where an object repeats a key, the last wins, as in `serde_json`.
//!
//! It is iterative (no recursion to overflow) and total: on text that is not JSON it returns
//! whatever it found, without panicking.

use std::collections::HashMap;

/// The refusal of a file with more keys to locate than [`MAX_KEPT_KEYS`] or
/// [`MAX_KEPT_BYTES`] allow.
pub(super) fn too_many_keys(path: &str) -> super::DepError {
    super::DepError::Invalid {
        path: path.to_string(),
        what: format!(
            "more than {MAX_KEPT_KEYS} keys (or {} MiB of key paths) to locate: refused",
            MAX_KEPT_BYTES >> 20
        ),
    }
}

/// A key path: object keys from the root, `None` for an array element.
pub(super) type KeyPath = Vec<Option<String>>;

enum Frame {
    Object {
        /// The key whose value is being read, once read.
        key: Option<String>,
        expect_key: bool,
    },
    Array,
}

/// Key paths kept at most, and their bytes in all: a hostile file of millions of deeply nested
/// keys must not hold gigabytes of paths (each kept path copies its ancestors' keys).
pub(super) const MAX_KEPT_KEYS: usize = 500_000;
pub(super) const MAX_KEPT_BYTES: usize = 64 << 20;

/// The 1-based line of every key whose path `want` accepts; `None` when more than
/// [`MAX_KEPT_KEYS`] or [`MAX_KEPT_BYTES`] would be kept (the caller refuses the file).
pub(super) fn key_lines(
    text: &str,
    want: impl Fn(&[Option<&str>]) -> bool,
) -> Option<HashMap<KeyPath, u64>> {
    let mut kept_bytes = 0usize;
    let bytes = text.as_bytes();
    let mut found = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut line = 1u64;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\n' => line += 1,
            b'{' => stack.push(Frame::Object {
                key: None,
                expect_key: true,
            }),
            b'[' => stack.push(Frame::Array),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Frame::Object { expect_key, .. }) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            b'"' => {
                let end = string_end(bytes, i);
                if let Some(Frame::Object { expect_key, .. }) = stack.last() {
                    if *expect_key {
                        let key = decode(text.get(i..end).unwrap_or_default());
                        let mut path: Vec<Option<&str>> = stack
                            .iter()
                            .take(stack.len().saturating_sub(1))
                            .map(|f| match f {
                                Frame::Object { key, .. } => key.as_deref(),
                                Frame::Array => None,
                            })
                            .collect();
                        path.push(Some(&key));
                        if want(&path) {
                            kept_bytes += path
                                .iter()
                                .map(|s| {
                                    s.map_or(0, str::len) + std::mem::size_of::<Option<String>>()
                                })
                                .sum::<usize>();
                            if found.len() >= MAX_KEPT_KEYS || kept_bytes > MAX_KEPT_BYTES {
                                return None;
                            }
                            found
                                .insert(path.iter().map(|s| s.map(str::to_string)).collect(), line);
                        }
                        if let Some(Frame::Object { key: k, expect_key }) = stack.last_mut() {
                            *k = Some(key);
                            *expect_key = false;
                        }
                    }
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    Some(found)
}

/// The index just past the string that opens at `start` (its closing quote), or the end of
/// the text for an unterminated one.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// A JSON string literal (with its quotes) decoded; a literal `serde_json` would refuse is
/// taken as its raw text between the quotes.
fn decode(literal: &str) -> String {
    if !literal.contains('\\') {
        return literal
            .strip_prefix('"')
            .map(|s| s.strip_suffix('"').unwrap_or(s))
            .unwrap_or(literal)
            .to_string();
    }
    serde_json::from_str::<String>(literal).unwrap_or_else(|_| literal.trim_matches('"').into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(segments: &[Option<&str>]) -> KeyPath {
        segments.iter().map(|s| s.map(str::to_string)).collect()
    }

    #[test]
    fn keys_are_found_at_their_paths_and_lines() {
        let text = "{\n  \"a\": {\"x\": 1,\n    \"b\": [\n {\"b\": 2}],\n  \"c\\u0041\": \"}\\\"{\" },\n  \"d\": {\"e\": {}}\n}";
        let all = key_lines(text, |_| true).expect("small");
        assert_eq!(all.get(&path(&[Some("a")])), Some(&2));
        assert_eq!(all.get(&path(&[Some("a"), Some("x")])), Some(&2));
        assert_eq!(all.get(&path(&[Some("a"), Some("b")])), Some(&3));
        assert_eq!(
            all.get(&path(&[Some("a"), Some("b"), None, Some("b")])),
            Some(&4)
        );
        assert_eq!(all.get(&path(&[Some("a"), Some("cA")])), Some(&5));
        assert_eq!(all.get(&path(&[Some("d"), Some("e")])), Some(&6));
        assert_eq!(all.len(), 7, "{all:?}");
        let some = key_lines(text, |p| p.len() == 1).expect("small");
        assert_eq!(some.len(), 2);
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in [
            "",
            "\"",
            "{\"",
            "{\"a\\",
            "}}]]{{",
            "{\"a\":\"\\",
            "[{\"\\u12\":1}]",
        ] {
            key_lines(text, |_| true);
        }
    }

    #[test]
    fn deeply_nested_keys_in_numbers_are_refused_not_kept() {
        // 60 levels deep, then many siblings: each kept path would copy all 60 keys.
        let mut text = String::new();
        for _ in 0..60 {
            text.push_str("{\"dependencies\":");
        }
        text.push('{');
        for i in 0..(MAX_KEPT_KEYS + 10) {
            text.push_str(&format!("\"k{i}\":0,"));
        }
        text.push_str("\"z\":0}");
        assert!(key_lines(&text, |_| true).is_none());
    }
}
