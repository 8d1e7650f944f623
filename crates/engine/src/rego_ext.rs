//! Minder's Rego extension functions (`file.*`, `parse_yaml`, `parse_toml`, `jq.is_true`,
//! `github_workflow.ls_actions`), registered on regorus.
//!
//! A rule's policy is compiled once, but the files it reads belong to one evaluation. The
//! functions therefore read the current evaluation's [`EvalEnv`] from a thread-local that
//! [`with_env`] sets around the (synchronous) evaluation.
//!
//! Semantics follow Minder, including its quirks, because upstream rule types and their
//! expected outcomes depend on them. In Minder (OPA without strict builtin errors) a failing
//! function makes its call undefined rather than failing the evaluation, so runtime failures
//! here (missing file, unparsable YAML, a jq error, a bad glob pattern) return undefined. A
//! policy that passes an argument of the wrong type, or calls a file function when the rule's
//! ingest provides no files, gets an evaluation error instead: those are rule bugs.

use crate::files::FileTree;
use crate::jqlib;
use anyhow::{anyhow, bail};
use regorus::Value as RValue;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

/// What the extension functions may read during one evaluation.
#[derive(Clone, Default)]
pub struct EvalEnv {
    /// The repository tree of a git ingest; `None` for other ingest types.
    pub files: Option<Arc<FileTree>>,
    /// Performs data-source calls (`minder.datasource.*`); `None` makes them fail.
    pub fetcher: Option<Arc<dyn crate::datasource::Fetcher>>,
}

impl std::fmt::Debug for EvalEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvalEnv")
            .field("files", &self.files.as_ref().map(|t| t.len()))
            .field("fetcher", &self.fetcher.is_some())
            .finish()
    }
}

/// The current evaluation's data-source fetcher, if any.
pub fn current_fetcher() -> Option<Arc<dyn crate::datasource::Fetcher>> {
    ENV.try_with(|e| e.borrow().fetcher.clone()).ok().flatten()
}

thread_local! {
    static ENV: RefCell<EvalEnv> = RefCell::new(EvalEnv::default());
    /// Compiled `jq.is_true` queries: policies call it in loops with the same query.
    static JQ_CACHE: RefCell<HashMap<String, Rc<jqlib::Compiled>>> = RefCell::new(HashMap::new());
}

/// Bounds the jq cache; policies use a handful of distinct queries.
const JQ_CACHE_MAX: usize = 64;

/// Runs `f` with `env` visible to the extension functions on this thread. Nested calls see
/// the innermost environment; the previous one is restored afterwards, even on panic.
pub fn with_env<R>(env: EvalEnv, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<EvalEnv>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(prev) = self.0.take() {
                // The thread-local may already be gone while the thread exits.
                let _ = ENV.try_with(|e| *e.borrow_mut() = prev);
            }
        }
    }
    let prev = ENV.with(|e| std::mem::replace(&mut *e.borrow_mut(), env));
    let _restore = Restore(Some(prev));
    f()
}

type ExtFn = fn(Vec<RValue>) -> anyhow::Result<RValue>;

const FUNCTIONS: &[(&str, u8, ExtFn)] = &[
    ("file.exists", 1, file_exists),
    ("file.read", 1, file_read),
    ("file.ls", 1, file_ls),
    ("file.ls_glob", 1, file_ls_glob),
    ("file.walk", 1, file_walk),
    ("file.http_type", 1, file_http_type),
    ("parse_yaml", 1, parse_yaml),
    ("parse_toml", 1, parse_toml),
    ("jq.is_true", 2, jq_is_true),
    ("github_workflow.ls_actions", 1, ls_actions),
];

/// Registers every function on `engine`; call once per engine, before evaluation.
pub fn register(engine: &mut regorus::Engine) -> anyhow::Result<()> {
    for (name, nargs, f) in FUNCTIONS {
        engine.add_extension(name.to_string(), *nargs, Box::new(*f))?;
    }
    Ok(())
}

fn type_name(v: &RValue) -> &'static str {
    match v {
        RValue::Null => "null",
        RValue::Bool(_) => "boolean",
        RValue::Number(_) => "number",
        RValue::String(_) => "string",
        RValue::Array(_) => "array",
        RValue::Set(_) => "set",
        RValue::Object(_) => "object",
        RValue::Undefined => "undefined",
    }
}

fn string_arg<'a>(func: &str, args: &'a [RValue], i: usize) -> anyhow::Result<&'a str> {
    match args.get(i) {
        Some(RValue::String(s)) => Ok(s),
        Some(other) => bail!(
            "{func}: argument {} must be a string, got {}",
            i + 1,
            type_name(other)
        ),
        None => bail!("{func}: missing argument {}", i + 1),
    }
}

/// The repository tree of the evaluation running on this thread, if its ingest was git.
pub fn current_files() -> Option<Arc<FileTree>> {
    ENV.with(|e| e.borrow().files.clone())
}

fn files(func: &str) -> anyhow::Result<Arc<FileTree>> {
    ENV.with(|e| e.borrow().files.clone()).ok_or_else(|| {
        anyhow!("{func}: no repository files to read (the rule's ingest is not git)")
    })
}

/// A runtime failure: undefined, as in Minder; logged so a puzzling verdict can be explained.
fn undefined(func: &str, why: impl std::fmt::Display) -> anyhow::Result<RValue> {
    tracing::debug!(function = func, error = %why, "minder function failed; the call is undefined");
    Ok(RValue::Undefined)
}

fn string_array(items: impl IntoIterator<Item = String>) -> RValue {
    RValue::from(items.into_iter().map(RValue::from).collect::<Vec<_>>())
}

/// Go's `path.Clean`, which Minder's returned paths go through: unlike
/// [`crate::files::clean_path`] it keeps
/// a leading `/` and leading `..` elements, and spells the empty path `.`.
fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if rooted => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Join` of two elements.
fn go_join(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, true) => String::new(),
        (true, false) => go_clean(name),
        (false, true) => go_clean(dir),
        (false, false) => go_clean(&format!("{dir}/{name}")),
    }
}

/// `file.exists(path)`: whether a file or directory exists.
fn file_exists(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let path = string_arg("file.exists", &args, 0)?;
    Ok(RValue::from(files("file.exists")?.exists(path)))
}

/// `file.read(path)`: a file's contents as a string; undefined for a missing path or a
/// directory.
fn file_read(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let path = string_arg("file.read", &args, 0)?;
    match files("file.read")?.read(path) {
        Some(bytes) => Ok(RValue::from(String::from_utf8_lossy(bytes).into_owned())),
        None => undefined("file.read", format!("{path}: no such file")),
    }
}

/// `file.ls(path)`: for a directory, its direct children (files and directories) joined to
/// `path`; for a file, `[path]` as given; `null` when nothing is there.
fn file_ls(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let path = string_arg("file.ls", &args, 0)?;
    let tree = files("file.ls")?;
    if tree.is_file(path) {
        return Ok(string_array([path.to_string()]));
    }
    match tree.read_dir(path) {
        Some(entries) => Ok(string_array(entries.iter().map(|e| go_join(path, e.name)))),
        None => Ok(RValue::Null),
    }
}

/// `file.walk(path)`: every file under a directory, recursively, in Go's walk order (each
/// directory's entries by name); `[path]` for a file; `null` when nothing is there.
fn file_walk(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let path = string_arg("file.walk", &args, 0)?;
    let tree = files("file.walk")?;
    if tree.is_file(path) {
        return Ok(string_array([path.to_string()]));
    }
    if !tree.is_dir(path) {
        return Ok(RValue::Null);
    }
    let mut out = Vec::new();
    walk_files(&tree, path, &mut out);
    Ok(string_array(out))
}

fn walk_files(tree: &FileTree, dir: &str, out: &mut Vec<String>) {
    for entry in tree.read_dir(dir).unwrap_or_default() {
        let path = go_join(dir, entry.name);
        if entry.is_dir {
            walk_files(tree, &path, out);
        } else {
            out.push(path);
        }
    }
}

/// `file.ls_glob(pattern)`: paths matching a glob, matched one path segment at a time with
/// Go's `filepath.Match` (`*` and `?` stop at `/`, `[...]` classes, `\` escapes, no `**`).
/// Undefined for a malformed pattern.
fn file_ls_glob(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let pattern = string_arg("file.ls_glob", &args, 0)?;
    let tree = files("file.ls_glob")?;
    match glob::glob(&tree, pattern) {
        Ok(paths) => Ok(string_array(paths)),
        Err(glob::BadPattern) => undefined(
            "file.ls_glob",
            format!("{pattern:?}: syntax error in pattern"),
        ),
    }
}

/// `file.http_type(path)`: the MIME type sniffed from the first 512 bytes, as Go's
/// `http.DetectContentType` gives it; undefined for a missing path or a directory.
fn file_http_type(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let path = string_arg("file.http_type", &args, 0)?;
    match files("file.http_type")?.read(path) {
        Some(bytes) => Ok(RValue::from(sniff::detect_content_type(bytes))),
        None => undefined("file.http_type", format!("{path}: no such file")),
    }
}

/// `parse_yaml(text)`: the first YAML document as a value; undefined when it does not parse.
fn parse_yaml(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let text = string_arg("parse_yaml", &args, 0)?;
    match yaml_to_json(text) {
        Ok(v) => Ok(RValue::from(v)),
        Err(e) => undefined("parse_yaml", e),
    }
}

/// `parse_toml(text)`: a TOML document as an object; undefined when it does not parse.
fn parse_toml(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let text = string_arg("parse_toml", &args, 0)?;
    match toml_to_json(text) {
        Ok(v) => Ok(RValue::from(v)),
        Err(e) => undefined("parse_toml", e),
    }
}

/// `jq.is_true(data, query)`: whether the query's first output is `true`. No output is
/// `false`; an error or a first output that is not a boolean is undefined.
fn jq_is_true(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let query = string_arg("jq.is_true", &args, 1)?;
    let data = args
        .first()
        .ok_or_else(|| anyhow!("jq.is_true: missing argument 1"))?;
    let data = match serde_json::to_value(data) {
        Ok(v) => v,
        Err(e) => return undefined("jq.is_true", format!("data is not json: {e}")),
    };
    let compiled = match cached_jq(query) {
        Ok(c) => c,
        Err(e) => return undefined("jq.is_true", format!("query {query:?}: {e}")),
    };
    match compiled.first(data) {
        Ok(None) => Ok(RValue::from(false)),
        Ok(Some(Value::Bool(b))) => Ok(RValue::from(b)),
        Ok(Some(other)) => undefined(
            "jq.is_true",
            format!("query {query:?} gave {other}, not a boolean"),
        ),
        Err(e) => undefined("jq.is_true", format!("query {query:?}: {e}")),
    }
}

fn cached_jq(query: &str) -> Result<Rc<jqlib::Compiled>, jqlib::JqError> {
    if let Some(c) = JQ_CACHE.with(|c| c.borrow().get(query).cloned()) {
        return Ok(c);
    }
    let compiled = Rc::new(jqlib::compile(query)?);
    JQ_CACHE.with(|c| {
        let mut cache = c.borrow_mut();
        if cache.len() >= JQ_CACHE_MAX {
            cache.clear();
        }
        cache.insert(query.to_string(), compiled.clone());
    });
    Ok(compiled)
}

/// `github_workflow.ls_actions(path)`: the set of actions that YAML files (and Dockerfiles)
/// under `path` use; empty when `path` does not exist.
fn ls_actions(args: Vec<RValue>) -> anyhow::Result<RValue> {
    let base = string_arg("github_workflow.ls_actions", &args, 0)?;
    let tree = files("github_workflow.ls_actions")?;
    match actions::list(&tree, base) {
        Ok(names) => Ok(RValue::from(
            names.into_iter().map(RValue::from).collect::<BTreeSet<_>>(),
        )),
        Err(e) => undefined("github_workflow.ls_actions", e),
    }
}

/// Why `parse_yaml` / `parse_toml` leave their call undefined.
#[derive(Debug, thiserror::Error)]
enum DocumentError {
    #[error(transparent)]
    Yaml(#[from] serde_yaml_ng::Error),
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    #[error("{0} is not a json number")]
    NotJsonNumber(f64),
    #[error("mapping key {0} is not a string")]
    NonStringKey(String),
}

/// The first YAML document as JSON, as Minder's `yaml.v3` decode into `any` would give it.
fn yaml_to_json(text: &str) -> Result<Value, DocumentError> {
    use serde::Deserialize;
    // yaml.v3 reads the first document only, and an empty stream is null.
    let Some(doc) = serde_yaml_ng::Deserializer::from_str(text).next() else {
        return Ok(Value::Null);
    };
    let mut value = serde_yaml_ng::Value::deserialize(doc)?;
    value.apply_merge()?;
    yaml_value_to_json(value)
}

fn yaml_value_to_json(v: serde_yaml_ng::Value) -> Result<Value, DocumentError> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Value::Number(
                    serde_json::Number::from_f64(f).ok_or(DocumentError::NotJsonNumber(f))?,
                )
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_value_to_json)
                .collect::<Result<_, _>>()?,
        ),
        // Minder's conversion to a Rego value rejects maps with non-string keys.
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| match k {
                    Y::String(k) => Ok((k, yaml_value_to_json(v)?)),
                    other => Err(DocumentError::NonStringKey(format!("{other:?}"))),
                })
                .collect::<Result<_, _>>()?,
        ),
        Y::Tagged(t) => yaml_value_to_json(t.value)?,
    })
}

fn toml_to_json(text: &str) -> Result<Value, DocumentError> {
    let table: toml::Table = toml::from_str(text)?;
    toml_value_to_json(toml::Value::Table(table))
}

fn toml_value_to_json(v: toml::Value) -> Result<Value, DocumentError> {
    use toml::Value as T;
    Ok(match v {
        T::String(s) => Value::String(s),
        T::Integer(i) => Value::from(i),
        T::Float(f) => {
            Value::Number(serde_json::Number::from_f64(f).ok_or(DocumentError::NotJsonNumber(f))?)
        }
        T::Boolean(b) => Value::Bool(b),
        // Go marshals TOML dates and times to JSON as their RFC 3339 text.
        T::Datetime(d) => Value::String(d.to_string()),
        T::Array(items) => Value::Array(
            items
                .into_iter()
                .map(toml_value_to_json)
                .collect::<Result<_, _>>()?,
        ),
        T::Table(t) => Value::Object(
            t.into_iter()
                .map(|(k, v)| Ok((k, toml_value_to_json(v)?)))
                .collect::<Result<_, DocumentError>>()?,
        ),
    })
}

/// `filepath.Glob` over the tree, as go-billy implements it for Minder's in-memory clone.
mod glob {
    use super::go_join;
    use crate::files::FileTree;

    #[derive(Debug, PartialEq, Eq)]
    pub struct BadPattern;

    pub fn glob(tree: &FileTree, pattern: &str) -> Result<Vec<String>, BadPattern> {
        if !pattern.contains(['*', '?', '[']) {
            return Ok(if tree.exists(pattern) {
                vec![pattern.to_string()]
            } else {
                vec![]
            });
        }
        let (dir, file) = match pattern.rfind('/') {
            Some(i) => pattern.split_at(i + 1),
            None => ("", pattern),
        };
        // A pattern ending in `/` would recurse on itself.
        if file.is_empty() {
            return Err(BadPattern);
        }
        let dir = match dir {
            "" => ".",
            "/" => "/",
            d => &d[..d.len() - 1],
        };
        let mut matches = Vec::new();
        for d in glob(tree, dir)? {
            // Names come sorted bytewise, as Go sorts them.
            for entry in tree.read_dir(&d).unwrap_or_default() {
                if matches_name(file.as_bytes(), entry.name.as_bytes())? {
                    matches.push(go_join(&d, entry.name));
                }
            }
        }
        Ok(matches)
    }

    /// Go's `filepath.Match` on bytes: Go steps through strings bytewise when a `*` skips
    /// ahead, which can land inside a UTF-8 sequence.
    pub fn matches_name(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, BadPattern> {
        'pattern: while !pattern.is_empty() {
            let (star, chunk, rest) = scan_chunk(pattern);
            pattern = rest;
            if star && chunk.is_empty() {
                // A trailing `*` matches the rest unless it crosses a separator.
                return Ok(!name.contains(&b'/'));
            }
            if let Some(t) = match_chunk(chunk, name)? {
                // The last chunk must consume the whole name.
                if t.is_empty() || !pattern.is_empty() {
                    name = t;
                    continue;
                }
            }
            if star {
                let mut i = 0;
                while i < name.len() && name[i] != b'/' {
                    if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                        if !pattern.is_empty() || t.is_empty() {
                            name = t;
                            continue 'pattern;
                        }
                    }
                    i += 1;
                }
            }
            // No match: still report a malformed remainder of the pattern, as Go does.
            while !pattern.is_empty() {
                let (_, chunk, rest) = scan_chunk(pattern);
                pattern = rest;
                match_chunk(chunk, b"")?;
            }
            return Ok(false);
        }
        Ok(name.is_empty())
    }

    /// Splits off leading stars and the chunk up to the next star outside a class.
    fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
        let mut star = false;
        while let [b'*', rest @ ..] = pattern {
            pattern = rest;
            star = true;
        }
        let mut in_range = false;
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'\\' if i + 1 < pattern.len() => i += 1,
                b'[' => in_range = true,
                b']' => in_range = false,
                b'*' if !in_range => break,
                _ => {}
            }
            i += 1;
        }
        (star, &pattern[..i], &pattern[i..])
    }

    /// Matches `chunk` at the start of `s`: the rest of `s` on success, `None` on mismatch.
    /// After a mismatch the chunk is still parsed to the end, to catch malformed patterns.
    fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<Option<&'a [u8]>, BadPattern> {
        let mut failed = false;
        while let Some(&c) = chunk.first() {
            if !failed && s.is_empty() {
                failed = true;
            }
            match c {
                b'[' => {
                    let mut r = 0;
                    if !failed {
                        let (rune, n) = decode_rune(s);
                        r = rune;
                        s = &s[n..];
                    }
                    chunk = &chunk[1..];
                    let negated = chunk.first() == Some(&b'^');
                    if negated {
                        chunk = &chunk[1..];
                    }
                    let mut matched = false;
                    let mut ranges = 0;
                    loop {
                        if chunk.first() == Some(&b']') && ranges > 0 {
                            chunk = &chunk[1..];
                            break;
                        }
                        let (lo, rest) = get_esc(chunk)?;
                        chunk = rest;
                        let mut hi = lo;
                        if chunk.first() == Some(&b'-') {
                            let (h, rest) = get_esc(&chunk[1..])?;
                            hi = h;
                            chunk = rest;
                        }
                        if lo <= r && r <= hi {
                            matched = true;
                        }
                        ranges += 1;
                    }
                    if matched == negated {
                        failed = true;
                    }
                }
                b'?' => {
                    if !failed {
                        if s[0] == b'/' {
                            failed = true;
                        }
                        s = &s[decode_rune(s).1..];
                    }
                    chunk = &chunk[1..];
                }
                _ => {
                    if c == b'\\' {
                        chunk = &chunk[1..];
                        if chunk.is_empty() {
                            return Err(BadPattern);
                        }
                    }
                    if !failed {
                        if chunk[0] != s[0] {
                            failed = true;
                        }
                        s = &s[1..];
                    }
                    chunk = &chunk[1..];
                }
            }
        }
        Ok(if failed { None } else { Some(s) })
    }

    /// One possibly escaped character of a class; a class must not end right after it.
    fn get_esc(chunk: &[u8]) -> Result<(u32, &[u8]), BadPattern> {
        let mut c = match chunk.first() {
            None | Some(b'-') | Some(b']') => return Err(BadPattern),
            Some(_) => chunk,
        };
        if c[0] == b'\\' {
            c = &c[1..];
            if c.is_empty() {
                return Err(BadPattern);
            }
        }
        let (r, n) = decode_rune(c);
        if r == 0xFFFD && n == 1 {
            return Err(BadPattern);
        }
        let rest = &c[n..];
        if rest.is_empty() {
            return Err(BadPattern);
        }
        Ok((r, rest))
    }

    /// Go's `utf8.DecodeRune`: invalid input decodes as U+FFFD of width 1.
    fn decode_rune(s: &[u8]) -> (u32, usize) {
        let width = match s.first() {
            None => return (0xFFFD, 0),
            Some(&b) if b < 0x80 => return (u32::from(b), 1),
            Some(0xC2..=0xDF) => 2,
            Some(0xE0..=0xEF) => 3,
            Some(0xF0..=0xF4) => 4,
            Some(_) => return (0xFFFD, 1),
        };
        match s
            .get(..width)
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|t| t.chars().next())
        {
            Some(ch) => (u32::from(ch), width),
            None => (0xFFFD, 1),
        }
    }
}

/// Action references in workflow files, found as Minder finds them (frizbee's
/// `ListPathInFS`): line by line with a regular expression, not by parsing YAML.
mod actions {
    use super::go_join;
    use crate::files::{clean_path, FileTree};
    use std::collections::BTreeSet;

    /// Lines this long stop Go's `bufio.Scanner` (64 KiB buffer), failing the whole listing.
    const MAX_LINE: usize = 64 * 1024;

    /// Why a listing fails as a whole, as frizbee's does.
    #[derive(Debug, PartialEq, thiserror::Error)]
    pub enum ListError {
        #[error("{path}: line too long")]
        LineTooLong { path: String },
    }

    /// A line of [`MAX_LINE`] bytes or more.
    #[derive(Debug, PartialEq, thiserror::Error)]
    #[error("line too long")]
    pub struct LineTooLong;

    pub fn list(tree: &FileTree, base: &str) -> Result<BTreeSet<String>, ListError> {
        let mut paths = Vec::new();
        if tree.is_file(base) {
            let name = clean_path(base);
            let name = name.rsplit('/').next().unwrap_or_default();
            if is_yaml_or_dockerfile(name) {
                paths.push(base.to_string());
            }
        } else {
            collect(tree, base, &mut paths);
        }
        let mut names = BTreeSet::new();
        for path in paths {
            let Some(bytes) = tree.read(&path) else {
                continue;
            };
            scan(bytes, &mut names).map_err(|LineTooLong| ListError::LineTooLong { path })?;
        }
        Ok(names)
    }

    fn collect(tree: &FileTree, dir: &str, out: &mut Vec<String>) {
        for entry in tree.read_dir(dir).unwrap_or_default() {
            let path = go_join(dir, entry.name);
            if entry.is_dir {
                collect(tree, &path, out);
            } else if is_yaml_or_dockerfile(entry.name) {
                out.push(path);
            }
        }
    }

    fn is_yaml_or_dockerfile(name: &str) -> bool {
        name.ends_with(".yml")
            || name.ends_with(".yaml")
            || name.to_lowercase().contains("dockerfile")
    }

    /// Adds the action names referenced in `content`, skipping comment lines.
    pub fn scan(content: &[u8], names: &mut BTreeSet<String>) -> Result<(), LineTooLong> {
        let mut lines: Vec<&[u8]> = content.split(|&b| b == b'\n').collect();
        if content.ends_with(b"\n") {
            lines.pop();
        }
        for line in lines {
            if line.len() >= MAX_LINE {
                return Err(LineTooLong);
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let first = line
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
            if first.is_some_and(|i| line[i] == b'#') {
                continue;
            }
            for m in find_references(line) {
                if let Some(name) = entity_name(m) {
                    names.insert(String::from_utf8_lossy(name).into_owned());
                }
            }
        }
        Ok(())
    }

    /// Go's `\s`.
    fn is_space(b: u8) -> bool {
        matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
    }

    /// Every match of `uses:\s*[^\s]+/[^\s]+@[^\s]+|uses:\s*docker://[^\s]+:[^\s]+`, leftmost
    /// first and non-overlapping. Either alternative spans `uses:`, the spaces after it and the
    /// whole following run of non-spaces, so only that run decides whether it matches.
    pub fn find_references(line: &[u8]) -> Vec<&[u8]> {
        let mut found = Vec::new();
        let mut pos = 0;
        while let Some(off) = line[pos..].windows(5).position(|w| w == b"uses:") {
            let start = pos + off;
            let mut i = start + 5;
            while i < line.len() && is_space(line[i]) {
                i += 1;
            }
            let word_start = i;
            while i < line.len() && !is_space(line[i]) {
                i += 1;
            }
            let word = &line[word_start..i];
            if is_action_ref(word) || is_docker_ref(word) {
                found.push(&line[start..i]);
                pos = i;
            } else {
                pos = start + 1;
            }
        }
        found
    }

    /// `[^\s]+/[^\s]+@[^\s]+`: a `/` after the first byte, then an `@` at least two bytes
    /// later with something after it.
    fn is_action_ref(word: &[u8]) -> bool {
        let slash = word.iter().skip(1).position(|&b| b == b'/').map(|i| i + 1);
        let at = word.iter().rposition(|&b| b == b'@');
        matches!((slash, at), (Some(s), Some(a)) if a >= s + 2 && a + 1 < word.len())
    }

    /// `docker://[^\s]+:[^\s]+`.
    fn is_docker_ref(word: &[u8]) -> bool {
        word.strip_prefix(b"docker://")
            .is_some_and(|rest| rest.len() >= 3 && rest[1..rest.len() - 1].contains(&b':'))
    }

    /// The name part of a matched reference, as frizbee's `ConvertToEntityRef` cuts it: only an
    /// exact `uses: ` prefix is removed, and a reference must split into exactly two parts.
    fn entity_name(matched: &[u8]) -> Option<&[u8]> {
        let mut reference = matched.strip_prefix(b"uses: ").unwrap_or(matched);
        let mut sep = b'@';
        if reference.windows(9).any(|w| w == b"docker://") {
            reference = reference.strip_prefix(b"docker://").unwrap_or(reference);
            if !reference.contains(&b'@') && reference.contains(&b':') {
                sep = b':';
            }
        }
        let mut parts = reference.split(|&b| b == sep);
        let name = parts.next()?;
        parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        Some(name)
    }
}

/// Go's `http.DetectContentType`: the WHATWG MIME sniffing subset Go implements, in Go's order.
pub mod sniff {
    enum Sig {
        /// HTML tag, case-insensitive, after leading whitespace, followed by space or `>`.
        Html(&'static [u8]),
        /// Masked bytes, optionally after leading whitespace.
        Masked {
            mask: &'static [u8],
            pat: &'static [u8],
            skip_ws: bool,
            ct: &'static str,
        },
        Exact(&'static [u8], &'static str),
        Mp4,
        Text,
    }

    const SIGNATURES: &[Sig] = &[
        Sig::Html(b"<!DOCTYPE HTML"),
        Sig::Html(b"<HTML"),
        Sig::Html(b"<HEAD"),
        Sig::Html(b"<SCRIPT"),
        Sig::Html(b"<IFRAME"),
        Sig::Html(b"<H1"),
        Sig::Html(b"<DIV"),
        Sig::Html(b"<FONT"),
        Sig::Html(b"<TABLE"),
        Sig::Html(b"<A"),
        Sig::Html(b"<STYLE"),
        Sig::Html(b"<TITLE"),
        Sig::Html(b"<B"),
        Sig::Html(b"<BODY"),
        Sig::Html(b"<BR"),
        Sig::Html(b"<P"),
        Sig::Html(b"<!--"),
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\xFF", pat: b"<?xml", skip_ws: true, ct: "text/xml; charset=utf-8" },
        Sig::Exact(b"%PDF-", "application/pdf"),
        Sig::Exact(b"%!PS-Adobe-", "application/postscript"),
        // Byte order marks.
        Sig::Masked { mask: b"\xFF\xFF\x00\x00", pat: b"\xFE\xFF\x00\x00", skip_ws: false, ct: "text/plain; charset=utf-16be" },
        Sig::Masked { mask: b"\xFF\xFF\x00\x00", pat: b"\xFF\xFE\x00\x00", skip_ws: false, ct: "text/plain; charset=utf-16le" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\x00", pat: b"\xEF\xBB\xBF\x00", skip_ws: false, ct: "text/plain; charset=utf-8" },
        Sig::Exact(b"GIF87a", "image/gif"),
        Sig::Exact(b"GIF89a", "image/gif"),
        Sig::Exact(b"\x89PNG\x0D\x0A\x1A\x0A", "image/png"),
        Sig::Exact(b"\xFF\xD8\xFF", "image/jpeg"),
        Sig::Exact(b"BM", "image/bmp"),
        Sig::Masked {
            mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF\xFF\xFF",
            pat: b"RIFF\x00\x00\x00\x00WEBPVP",
            skip_ws: false,
            ct: "image/webp",
        },
        Sig::Exact(b"\x00\x00\x01\x00", "image/vnd.microsoft.icon"),
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF", pat: b"RIFF\x00\x00\x00\x00WAVE", skip_ws: false, ct: "audio/wave" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF", pat: b"FORM\x00\x00\x00\x00AIFF", skip_ws: false, ct: "audio/aiff" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF", pat: b".snd", skip_ws: false, ct: "audio/basic" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\xFF", pat: b"OggS\x00", skip_ws: false, ct: "application/ogg" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF", pat: b"MThd\x00\x00\x00\x06", skip_ws: false, ct: "audio/midi" },
        Sig::Masked { mask: b"\xFF\xFF\xFF", pat: b"ID3", skip_ws: false, ct: "audio/mpeg" },
        Sig::Masked { mask: b"\xFF\xFF\xFF\xFF\x00\x00\x00\x00\xFF\xFF\xFF\xFF", pat: b"RIFF\x00\x00\x00\x00AVI ", skip_ws: false, ct: "video/avi" },
        // Fonts; Embedded OpenType is 34 bytes of anything, then "LP".
        Sig::Masked {
            mask: b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xFF\xFF",
            pat: b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00LP",
            skip_ws: false,
            ct: "application/vnd.ms-fontobject",
        },
        Sig::Exact(b"\x00\x01\x00\x00", "font/ttf"),
        Sig::Exact(b"OTTO", "font/otf"),
        Sig::Exact(b"ttcf", "font/collection"),
        Sig::Exact(b"wOFF", "font/woff"),
        Sig::Exact(b"wOF2", "font/woff2"),
        Sig::Exact(b"\x1A\x45\xDF\xA3", "video/webm"),
        // Go's RAR signature has a space where the format has `!`; kept for identical results.
        Sig::Exact(b"Rar \x1A\x07\x00", "application/x-rar-compressed"),
        Sig::Exact(b"PK\x03\x04", "application/zip"),
        Sig::Exact(b"\x1F\x8B\x08", "application/x-gzip"),
        Sig::Exact(b"\x00asm", "application/wasm"),
        Sig::Mp4,
        Sig::Text,
    ];

    fn is_ws(b: u8) -> bool {
        matches!(b, b'\t' | b'\n' | b'\x0c' | b'\r' | b' ')
    }

    /// The MIME type of `data`, judged from its first 512 bytes; `application/octet-stream`
    /// when nothing more specific fits.
    pub fn detect_content_type(data: &[u8]) -> &'static str {
        let data = &data[..data.len().min(512)];
        let first_non_ws = data.iter().position(|&b| !is_ws(b)).unwrap_or(data.len());
        SIGNATURES
            .iter()
            .find_map(|sig| matches(sig, data, first_non_ws))
            .unwrap_or("application/octet-stream")
    }

    fn matches(sig: &Sig, data: &[u8], first_non_ws: usize) -> Option<&'static str> {
        match sig {
            Sig::Html(tag) => {
                let data = &data[first_non_ws..];
                if data.len() < tag.len() + 1 {
                    return None;
                }
                let same = tag.iter().zip(data).all(|(&t, &d)| {
                    let d = if t.is_ascii_uppercase() { d & 0xDF } else { d };
                    t == d
                });
                (same && matches!(data[tag.len()], b' ' | b'>'))
                    .then_some("text/html; charset=utf-8")
            }
            Sig::Masked {
                mask,
                pat,
                skip_ws,
                ct,
            } => {
                let data = if *skip_ws {
                    &data[first_non_ws..]
                } else {
                    data
                };
                if data.len() < mask.len() {
                    return None;
                }
                mask.iter()
                    .zip(pat.iter())
                    .zip(data)
                    .all(|((m, p), d)| d & m == *p)
                    .then_some(*ct)
            }
            Sig::Exact(sig, ct) => data.starts_with(sig).then_some(*ct),
            Sig::Mp4 => mp4(data).then_some("video/mp4"),
            Sig::Text => data[first_non_ws..]
                .iter()
                .all(|&b| !matches!(b, 0x00..=0x08 | 0x0B | 0x0E..=0x1A | 0x1C..=0x1F))
                .then_some("text/plain; charset=utf-8"),
        }
    }

    /// An ISO base media file whose brands include `mp4`.
    fn mp4(data: &[u8]) -> bool {
        if data.len() < 12 {
            return false;
        }
        let box_size = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        if !box_size.is_multiple_of(4) || data.len() < box_size || &data[4..8] != b"ftyp" {
            return false;
        }
        // Brands start at 8; bytes 12..16 are the minor version, not a brand.
        (8..box_size)
            .step_by(4)
            .any(|st| st != 12 && &data[st..st + 3] == b"mp4")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::Limits;
    use serde_json::json;

    fn tree(files: &[(&str, &[u8])]) -> Arc<FileTree> {
        let mut t = FileTree::new();
        for (p, c) in files {
            t.insert(p, c.to_vec(), &Limits::default()).unwrap();
        }
        Arc::new(t)
    }

    fn call(f: ExtFn, files: Option<Arc<FileTree>>, args: &[RValue]) -> anyhow::Result<Value> {
        let v = with_env(
            EvalEnv {
                files,
                ..Default::default()
            },
            || f(args.to_vec()),
        )?;
        if v == RValue::Undefined {
            return Ok(json!("<undefined>"));
        }
        Ok(serde_json::to_value(&v)?)
    }

    fn s(x: &str) -> RValue {
        RValue::from(x)
    }

    fn sample() -> Arc<FileTree> {
        tree(&[
            ("README.md", b"# hello"),
            (".github/workflows/ci.yml", b"on: push"),
            (".github/workflows/release.yaml", b"on: release"),
            (".github/dependabot.yml", b"version: 2"),
            ("a.txt", b"a"),
            ("a/b.txt", b"b"),
            ("a/c/d.txt", b"d"),
            ("bin/tool", b"\x7fELF\x02\x01\x01\x00\x00"),
        ])
    }

    #[test]
    fn go_paths() {
        assert_eq!(go_clean(""), ".");
        assert_eq!(go_clean("./a//b/../c/"), "a/c");
        assert_eq!(go_clean("/../x"), "/x");
        assert_eq!(go_clean("../x/.."), "..");
        assert_eq!(go_join(".", "x"), "x");
        assert_eq!(go_join("", "x"), "x");
        assert_eq!(
            go_join("./.github/workflows", "ci.yml"),
            ".github/workflows/ci.yml"
        );
        assert_eq!(go_join("/", "x"), "/x");
    }

    #[test]
    fn exists_and_read() {
        let t = Some(sample());
        assert_eq!(
            call(file_exists, t.clone(), &[s("./a/c")]).unwrap(),
            json!(true)
        );
        assert_eq!(
            call(file_exists, t.clone(), &[s("a/c/d.txt")]).unwrap(),
            json!(true)
        );
        assert_eq!(
            call(file_exists, t.clone(), &[s(".")]).unwrap(),
            json!(true)
        );
        assert_eq!(
            call(file_exists, t.clone(), &[s("nope")]).unwrap(),
            json!(false)
        );
        assert_eq!(
            call(file_read, t.clone(), &[s("/README.md")]).unwrap(),
            json!("# hello")
        );
        assert_eq!(
            call(file_read, t.clone(), &[s("nope")]).unwrap(),
            json!("<undefined>")
        );
        assert_eq!(
            call(file_read, t.clone(), &[s("a")]).unwrap(),
            json!("<undefined>")
        );
        // Wrong types and a missing tree are rule bugs: errors.
        let e = call(file_read, t, &[RValue::from(1i64)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "file.read: argument 1 must be a string, got number"
        );
        assert!(call(file_exists, None, &[s("x")])
            .unwrap_err()
            .to_string()
            .contains("no repository files"));
    }

    #[test]
    fn ls_and_walk() {
        let t = Some(sample());
        assert_eq!(
            call(file_ls, t.clone(), &[s("./.github/workflows")]).unwrap(),
            json!([".github/workflows/ci.yml", ".github/workflows/release.yaml"])
        );
        assert_eq!(
            call(file_ls, t.clone(), &[s(".github")]).unwrap(),
            json!([".github/dependabot.yml", ".github/workflows"])
        );
        assert_eq!(
            call(file_ls, t.clone(), &[s("./README.md")]).unwrap(),
            json!(["./README.md"])
        );
        assert_eq!(
            call(file_ls, t.clone(), &[s("missing")]).unwrap(),
            json!(null)
        );
        assert_eq!(
            call(file_ls, t.clone(), &[s("/a")]).unwrap(),
            json!(["/a/b.txt", "/a/c"])
        );
        assert_eq!(
            call(file_walk, t.clone(), &[s(".")]).unwrap(),
            json!([
                ".github/dependabot.yml",
                ".github/workflows/ci.yml",
                ".github/workflows/release.yaml",
                "README.md",
                "a/b.txt",
                "a/c/d.txt",
                "a.txt",
                "bin/tool"
            ])
        );
        assert_eq!(
            call(file_walk, t.clone(), &[s("a/b.txt")]).unwrap(),
            json!(["a/b.txt"])
        );
        assert_eq!(
            call(file_walk, t.clone(), &[s("./a")]).unwrap(),
            json!(["a/b.txt", "a/c/d.txt"])
        );
        assert_eq!(
            call(file_walk, t.clone(), &[s("missing")]).unwrap(),
            json!(null)
        );
        assert_eq!(
            call(file_walk, Some(tree(&[])), &[s(".")]).unwrap(),
            json!([])
        );
    }

    #[test]
    fn globs() {
        let t = Some(sample());
        let g = |p: &str| call(file_ls_glob, t.clone(), &[s(p)]).unwrap();
        assert_eq!(
            g(".github/workflows/*.yml"),
            json!([".github/workflows/ci.yml"])
        );
        assert_eq!(
            g(".github/*/*"),
            json!([".github/workflows/ci.yml", ".github/workflows/release.yaml"])
        );
        assert_eq!(g("*.md"), json!(["README.md"]));
        assert_eq!(g("./*.txt"), json!(["a.txt"]));
        assert_eq!(g("a/?.txt"), json!(["a/b.txt"]));
        assert_eq!(g("a/[a-c]*"), json!(["a/b.txt", "a/c"]));
        assert_eq!(g("a/[^b]*"), json!(["a/c"]));
        assert_eq!(g("**/*.txt"), json!(["a/b.txt"]));
        assert_eq!(g("README.md"), json!(["README.md"]));
        assert_eq!(g("nope*"), json!([]));
        assert_eq!(g("nope"), json!([]));
        assert_eq!(g("*"), json!([".github", "README.md", "a", "a.txt", "bin"]));
        assert_eq!(g("a/[z-"), json!("<undefined>"));
        assert_eq!(g("*/"), json!("<undefined>"));
    }

    #[test]
    fn go_match_semantics() {
        let m = |p: &str, n: &str| glob::matches_name(p.as_bytes(), n.as_bytes());
        assert_eq!(m("*", ".hidden"), Ok(true));
        assert_eq!(m("a*b", "axxb"), Ok(true));
        assert_eq!(m("a*b", "axxbc"), Ok(false));
        assert_eq!(m("a*b*c", "abxbc"), Ok(true));
        assert_eq!(m("a*", "a/b"), Ok(false));
        assert_eq!(m("[\\]]", "]"), Ok(true));
        assert_eq!(m("\\*", "*"), Ok(true));
        assert_eq!(m("[é]x", "éx"), Ok(true));
        assert_eq!(m("?x", "éx"), Ok(true));
        assert_eq!(m("*é", "aé"), Ok(true));
        assert_eq!(m("[]", "x"), Err(glob::BadPattern));
        assert_eq!(m("a\\", "a"), Err(glob::BadPattern));
        // The remainder of the pattern is checked even when matching already failed.
        assert_eq!(m("x[", "y"), Err(glob::BadPattern));
    }

    #[test]
    fn http_types() {
        let t = sample();
        let ty = |p: &str| call(file_http_type, Some(t.clone()), &[s(p)]).unwrap();
        assert_eq!(ty("README.md"), json!("text/plain; charset=utf-8"));
        assert_eq!(ty("bin/tool"), json!("application/octet-stream"));
        assert_eq!(ty("missing"), json!("<undefined>"));
        let d = sniff::detect_content_type;
        assert_eq!(d(b""), "text/plain; charset=utf-8");
        assert_eq!(d(b"  <!doctype html><p>"), "text/html; charset=utf-8");
        assert_eq!(d(b"<HTML>"), "text/html; charset=utf-8");
        assert_eq!(d(b"<a>"), "text/html; charset=utf-8");
        assert_eq!(d(b"<ab>"), "text/plain; charset=utf-8");
        assert_eq!(d(b"\n<?xml version=\"1.0\"?>"), "text/xml; charset=utf-8");
        assert_eq!(d(b"%PDF-1.7\n\x00\x01"), "application/pdf");
        assert_eq!(d(b"\x89PNG\r\n\x1a\n\x00\x00"), "image/png");
        assert_eq!(d(b"GIF89a"), "image/gif");
        assert_eq!(d(b"\xFF\xD8\xFF\xE0"), "image/jpeg");
        assert_eq!(d(b"RIFF\x10\x00\x00\x00WEBPVP8 "), "image/webp");
        assert_eq!(d(b"RIFF\x10\x00\x00\x00WAVEfmt "), "audio/wave");
        assert_eq!(d(b"ID3\x03"), "audio/mpeg");
        assert_eq!(
            d(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"),
            "video/mp4"
        );
        assert_eq!(d(b"PK\x03\x04\x14\x00"), "application/zip");
        assert_eq!(d(b"\x1F\x8B\x08\x00"), "application/x-gzip");
        assert_eq!(d(b"\x00asm\x01\x00\x00\x00"), "application/wasm");
        assert_eq!(d(b"wOF2\x00\x01"), "font/woff2");
        assert_eq!(d(b"\xEF\xBB\xBFhello"), "text/plain; charset=utf-8");
        assert_eq!(d(b"\xFE\xFF\x00h"), "text/plain; charset=utf-16be");
        assert_eq!(
            d("naïve ünïcode\x1b[0m".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(d(b"\x7fELF\x02\x01\x01"), "application/octet-stream");
        assert_eq!(d(b"text then \x00 nul"), "application/octet-stream");
        // Only the first 512 bytes count.
        let mut late_nul = vec![b'a'; 600];
        late_nul[550] = 0;
        assert_eq!(d(&late_nul), "text/plain; charset=utf-8");
    }

    #[test]
    fn yaml_and_toml() {
        let y = |t: &str| call(parse_yaml, None, &[s(t)]).unwrap();
        assert_eq!(
            y("on:\n  push: {}\nyes: no\nn: 1\nf: 1.5\nl: [a, ~]\n"),
            json!({"on": {"push": {}}, "yes": "no", "n": 1, "f": 1.5, "l": ["a", null]})
        );
        assert_eq!(y(""), json!(null));
        assert_eq!(y("a: 1\n---\nb: 2\n"), json!({"a": 1}));
        assert_eq!(
            y("base: &b {x: 1}\nd:\n  <<: *b\n  y: 2\n"),
            json!({"base": {"x": 1}, "d": {"x": 1, "y": 2}})
        );
        assert_eq!(y("tagged: !Ref thing\n"), json!({"tagged": "thing"}));
        assert_eq!(y("a: [unclosed"), json!("<undefined>"));
        assert_eq!(y("1: one\n"), json!("<undefined>"));
        assert_eq!(y("a: 1\na: 2\n"), json!("<undefined>"));

        let t = |text: &str| call(parse_toml, None, &[s(text)]).unwrap();
        assert_eq!(
            t("[project]\nname = \"x\"\ndeps = [\"a\", \"b\"]\n[tool.poetry]\nv = 1\nf = 0.5\nok = true\nd = 1979-05-27T07:32:00Z\n"),
            json!({"project": {"name": "x", "deps": ["a", "b"]}, "tool": {"poetry": {"v": 1, "f": 0.5, "ok": true, "d": "1979-05-27T07:32:00Z"}}})
        );
        assert_eq!(t("= broken"), json!("<undefined>"));
        assert!(call(parse_toml, None, &[RValue::Null]).is_err());
    }

    #[test]
    fn jq() {
        let q = |data: Value, query: &str| {
            call(jq_is_true, None, &[RValue::from(data), s(query)]).unwrap()
        };
        assert_eq!(
            q(
                json!({"on": {"pull_request": {}}}),
                ".on | has(\"pull_request\")"
            ),
            json!(true)
        );
        assert_eq!(
            q(json!({"on": "push"}), ".on == \"pull_request\""),
            json!(false)
        );
        assert_eq!(q(json!({}), "empty"), json!(false));
        assert_eq!(q(json!({"a": 1}), ".a"), json!("<undefined>"));
        assert_eq!(q(json!({"a": 1}), ".a |"), json!("<undefined>"));
        assert_eq!(q(json!([1]), ".a"), json!("<undefined>"));
        assert_eq!(q(json!({}), "true, error(\"x\")"), json!(true));
        assert!(call(jq_is_true, None, &[RValue::Null, RValue::from(1i64)]).is_err());
    }

    #[test]
    fn action_references() {
        let refs = |line: &str| {
            actions::find_references(line.as_bytes())
                .into_iter()
                .map(|m| String::from_utf8_lossy(m).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            refs("      - uses: actions/checkout@v4 # v4.1.1"),
            ["uses: actions/checkout@v4"]
        );
        assert_eq!(refs("uses: ./.github/actions/local"), Vec::<String>::new());
        assert_eq!(
            refs("uses: docker://alpine:3.8"),
            ["uses: docker://alpine:3.8"]
        );
        assert_eq!(refs("uses: a@b"), Vec::<String>::new());
        assert_eq!(
            refs("uses:x/y@z uses: p/q@r"),
            ["uses:x/y@z", "uses: p/q@r"]
        );

        let names = |content: &str| {
            let mut n = BTreeSet::new();
            actions::scan(content.as_bytes(), &mut n).unwrap();
            n.into_iter().collect::<Vec<_>>()
        };
        assert_eq!(
            names(
                "jobs:\n  a:\n    steps:\n      - uses: actions/checkout@v4\n      # - uses: evil/action@v1\n      - uses: github/codeql-action/init@v3\r\n      - uses: docker://ghcr.io/o/img:1.0\n      - uses: docker://alpine@sha256:abc\n      - uses: ./local\n      - uses: actions/checkout@v4\n    uses: o/r/.github/workflows/w.yml@main"
            ),
            ["actions/checkout", "alpine", "ghcr.io/o/img", "github/codeql-action/init", "o/r/.github/workflows/w.yml"]
        );
        // Quirks kept from Minder: only an exact "uses: " is trimmed; odd splits are dropped.
        assert_eq!(
            names("uses:  a/b@c\nuses: a/b@c@d\nuses: docker://h:5000/i:t"),
            [" a/b"]
        );
        let mut n = BTreeSet::new();
        assert!(actions::scan(&vec![b'x'; 70_000], &mut n).is_err());
    }

    #[test]
    fn ls_actions_walks_yaml_files() {
        let t = tree(&[
            (
                ".github/workflows/ci.yml",
                b"steps:\n  - uses: actions/checkout@v4\n",
            ),
            (
                ".github/workflows/sub/more.yaml",
                b"steps:\n  - uses: actions/setup-go@v5\n",
            ),
            (".github/workflows/notes.txt", b"uses: not/counted@v1\n"),
            (
                ".github/workflows/Dockerfile.ci",
                b"# uses: commented/out@v1\nRUN uses: x/y@z\n",
            ),
            ("other.yml", b"uses: elsewhere/action@v1\n"),
        ]);
        let set = call(ls_actions, Some(t.clone()), &[s("./.github/workflows")]).unwrap();
        assert_eq!(set, json!(["actions/checkout", "actions/setup-go", "x/y"]));
        assert_eq!(
            call(ls_actions, Some(t.clone()), &[s(".github/missing")]).unwrap(),
            json!([])
        );
        assert_eq!(
            call(ls_actions, Some(t.clone()), &[s("other.yml")]).unwrap(),
            json!(["elsewhere/action"])
        );
        // A set, so Rego's set operations work on it.
        let v = with_env(
            EvalEnv {
                files: Some(t),
                ..Default::default()
            },
            || ls_actions(vec![s(".github")]),
        )
        .unwrap();
        assert!(matches!(v, RValue::Set(_)));
    }

    #[test]
    fn env_is_scoped() {
        let t = sample();
        with_env(
            EvalEnv {
                files: Some(t.clone()),
                ..Default::default()
            },
            || {
                assert!(files("x").is_ok());
                with_env(EvalEnv::default(), || assert!(files("x").is_err()));
                assert!(files("x").is_ok());
            },
        );
        assert!(files("x").is_err());
        let r = std::panic::catch_unwind(|| {
            with_env(
                EvalEnv {
                    files: Some(t),
                    ..Default::default()
                },
                || panic!("boom"),
            )
        });
        assert!(r.is_err());
        assert!(files("x").is_err());
    }

    const POLICY: &str = r#"
package minder

import rego.v1

default allow := false

workflows := file.ls("./.github/workflows")

actions := github_workflow.ls_actions("./.github/workflows")

pr_workflows contains w if {
    some w in workflows
    parsed := parse_yaml(file.read(w))
    jq.is_true(parsed, ".on | (type == \"object\" and has(\"pull_request\"))")
}

allow if {
    file.exists("README.md")
    not file.exists("missing.txt")
    "actions/checkout" in actions
    count(pr_workflows) == 1
    startswith(file.http_type("README.md"), "text/plain")
    file.http_type("logo.png") == "image/png"
    file.ls_glob("*.toml") == ["pyproject.toml"]
    parse_toml(file.read("pyproject.toml")).project.name == "demo"
    count(file.walk(".")) == 5
    file.ls("nope") == null
    not file.read("nope")
}
"#;

    fn policy_tree() -> Arc<FileTree> {
        tree(&[
            ("README.md", b"hello"),
            ("logo.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR"),
            ("pyproject.toml", b"[project]\nname = \"demo\"\n"),
            (".github/workflows/pr.yml", b"on:\n  pull_request: {}\njobs:\n  t:\n    steps:\n      - uses: actions/checkout@v4\n"),
            (".github/workflows/push.yml", b"on: push\n"),
        ])
    }

    fn eval_allow(engine: &regorus::Engine, files: Arc<FileTree>) -> anyhow::Result<Value> {
        let mut engine = engine.clone();
        with_env(
            EvalEnv {
                files: Some(files),
                ..Default::default()
            },
            || {
                let v = engine.eval_rule("data.minder.allow".to_string())?;
                Ok(serde_json::to_value(&v)?)
            },
        )
    }

    #[test]
    fn minder_style_policy() {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(true);
        register(&mut engine).unwrap();
        engine
            .add_policy("minder.rego".into(), POLICY.into())
            .unwrap();

        assert_eq!(eval_allow(&engine, policy_tree()).unwrap(), json!(true));

        // The same compiled engine judges another tree differently.
        let mut other = (*policy_tree()).clone();
        other
            .insert(
                ".github/workflows/pr2.yaml",
                b"on: {pull_request: {}}".to_vec(),
                &Limits::default(),
            )
            .unwrap();
        assert_eq!(eval_allow(&engine, Arc::new(other)).unwrap(), json!(false));

        // Without files the file functions fail the evaluation.
        let mut e = engine.clone();
        assert!(e.eval_rule("data.minder.allow".to_string()).is_err());
    }

    #[test]
    fn registering_after_the_policy_also_works() {
        let mut engine = regorus::Engine::new();
        engine
            .add_policy("minder.rego".into(), POLICY.into())
            .unwrap();
        register(&mut engine).unwrap();
        assert_eq!(eval_allow(&engine, policy_tree()).unwrap(), json!(true));
    }

    #[test]
    fn wrong_argument_type_is_an_evaluation_error() {
        let mut engine = regorus::Engine::new();
        register(&mut engine).unwrap();
        engine
            .add_policy(
                "minder.rego".into(),
                "package minder\nimport rego.v1\nallow if file.exists(42)\n".into(),
            )
            .unwrap();
        let err = eval_allow(&engine, policy_tree()).unwrap_err().to_string();
        assert!(
            err.contains("file.exists: argument 1 must be a string"),
            "{err}"
        );
    }

    #[test]
    fn corpus_fixture_actions() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/minder-rules/rule-types/github");
        let load =
            |rel: &str| Arc::new(FileTree::from_dir(&base.join(rel), &Limits::default()).unwrap());
        if !base.exists() {
            return; // the shared corpus is not checked out here
        }
        let actions =
            |t: Arc<FileTree>| call(ls_actions, Some(t), &[s("./.github/workflows")]).unwrap();
        let t = load("trufflehog_github_action.testdata/github_action_with_trufflehog");
        assert_eq!(
            actions(t),
            json!(["actions/checkout", "trufflesecurity/trufflehog"])
        );
        let t = load("golangci-lint_github_action.testdata/repo_with_golangci-lint_gh_action");
        let found = actions(t);
        assert!(
            found
                .as_array()
                .unwrap()
                .contains(&json!("golangci/golangci-lint-action")),
            "{found}"
        );
        let t = load("grype_github_action_scan_repo.testdata/action_enabled");
        let ls = call(file_ls, Some(t), &[s("./.github/workflows")]).unwrap();
        assert_eq!(ls, json!([".github/workflows/wf.yml"]));
    }
}
