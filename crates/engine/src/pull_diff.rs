//! `diff` ingest (Minder's, for `in_entity: pull_request` rule types): what a pull request
//! changes, read from `GET /repos/{owner}/{repo}/pulls/{number}/files`.
//!
//! `type: full` gives every line the pull request adds, with its file and its line number in
//! the head version, as Minder's `PrContents`:
//!
//! ```json
//! {"pr": {"number": 7, "head_sha": "…", "base_sha": "…", "repo_owner": "o", "repo_name": "r",
//!         "author": "login", "author_id": 1},
//!  "files": [{"name": "src/a.js", "status": "modified", "whole_file": false,
//!             "patch_lines": [{"line_number": 3, "content": "…"}]}]}
//! ```
//!
//! Where GitHub leaves something out, the rule is not judged on less than the change:
//! - GitHub lists at most 3,000 files of a pull request. One that reaches that many is an
//!   `error` ("not inspected in full"), never a pass over the first 3,000.
//! - GitHub omits the `patch` of a file whose diff is too large, and of one git takes for binary
//!   (a NUL byte is enough). Such a file's head version is read (`git/blobs/{sha}`) and every
//!   one of its lines is taken as added (`whole_file: true`): a pre-existing line of a file the
//!   change touches may then be reported too, which is the safe side. Text is read as UTF-8
//!   (invalid bytes replaced), or as UTF-16 after a byte-order mark; only a file that starts
//!   like a known binary format and is not named like source code is left out. At most
//!   [`MAX_BLOB_READS`] files are read so per evaluation, so a change cannot spend the
//!   credential's quota; beyond that, an `error`.
//! - A patch GitHub sends that cannot be parsed is an `error` naming the file.
//! - Memory is bounded: each added line counts [`LINE_OVERHEAD`] bytes besides its text against
//!   [`MAX_ADDED_BYTES`], and an eval lists at most [`MAX_FINDINGS`] findings (then says how
//!   many more files had some), so a change of millions of empty lines or invisible characters
//!   is an `error` or a capped list, never an evaluator out of memory.

use crate::patch;
use crate::provider::Provider;
use crate::{EngineError, IngestError};
use base64::Engine as _;
use plumbline_domain::{Entity, EntityKind};
use serde::Deserialize;
use serde_json::{json, Value};

/// Files per page (GitHub's maximum).
const PER_PAGE: usize = 100;
/// GitHub lists at most this many files of a pull request.
pub const MAX_LISTED_FILES: usize = 3_000;
/// Added text kept for one evaluation, over all files, lines counted with their overhead: a
/// larger change is an `error`.
pub const MAX_ADDED_BYTES: usize = 64 << 20;
/// What one added line costs besides its text (its JSON object and allocations).
pub const LINE_OVERHEAD: usize = 256;
/// Files without a patch read whole per evaluation.
pub const MAX_BLOB_READS: usize = 100;
/// Findings one file contributes at most.
pub const MAX_FINDINGS_PER_FILE: usize = 100;
/// Findings an outcome lists at most (its details and line annotations).
pub const MAX_FINDINGS: usize = 1_000;

/// One entry of the files listing (GitHub's `diff-entry`, the fields used).
#[derive(Deserialize)]
struct DiffEntry {
    filename: String,
    status: String,
    /// The blob of the head version.
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    patch: Option<String>,
}

#[derive(Deserialize)]
struct Blob {
    content: String,
    #[serde(default)]
    encoding: String,
}

fn rule_error(message: String) -> IngestError {
    IngestError::Rule(EngineError::Ingest(message))
}

/// The pull request's number, from the entity the evaluator confirmed with GitHub.
fn number(entity: &Entity) -> Result<u64, IngestError> {
    if entity.entity_ref.kind != EntityKind::PullRequest {
        return Err(rule_error(format!(
            "diff ingest reads pull requests; this entity is a {}",
            entity.entity_ref.kind
        )));
    }
    entity
        .properties
        .get("number")
        .and_then(Value::as_u64)
        .ok_or_else(|| rule_error("the pull request has no number".into()))
}

async fn get_json<T: serde::de::DeserializeOwned>(
    provider: &dyn Provider,
    path: &str,
) -> Result<T, IngestError> {
    let r = provider
        .request("GET", path, None)
        .await
        .map_err(IngestError::from)?;
    if !(200..300).contains(&r.status) {
        return Err(rule_error(format!(
            "GET {path}: unexpected status {}",
            r.status
        )));
    }
    serde_json::from_slice(&r.body).map_err(|e| rule_error(format!("{path}: invalid json: {e}")))
}

/// The pull request's files listing, a page at a time (each page is handled before the next
/// is read), refusing a listing that reaches GitHub's [`MAX_LISTED_FILES`].
struct FilePages {
    path: String,
    page: usize,
    listed: usize,
    done: bool,
}

impl FilePages {
    fn new(root: &str, number: u64) -> Self {
        FilePages {
            path: format!("{root}/pulls/{number}/files?per_page={PER_PAGE}"),
            page: 0,
            listed: 0,
            done: false,
        }
    }

    /// The next page, `None` after the last one.
    async fn next(
        &mut self,
        provider: &dyn Provider,
    ) -> Result<Option<Vec<DiffEntry>>, IngestError> {
        if self.done {
            return Ok(None);
        }
        if self.listed >= MAX_LISTED_FILES {
            return Err(rule_error(format!(
                "GitHub lists at most {MAX_LISTED_FILES} files of a pull request and this one has that many: not inspected in full"
            )));
        }
        self.page += 1;
        let entries: Vec<DiffEntry> =
            get_json(provider, &format!("{}&page={}", self.path, self.page)).await?;
        self.listed += entries.len();
        self.done = entries.len() < PER_PAGE && self.listed < MAX_LISTED_FILES;
        Ok(Some(entries))
    }
}

/// What the ingested value says of the pull request itself (Minder's `pr`).
fn pr_summary(entity: &Entity, number: u64) -> Value {
    let props = &entity.properties;
    json!({
        "number": number,
        "head_sha": props.get("head_sha"),
        "base_sha": props.get("base_sha"),
        "repo_owner": entity.owner,
        "repo_name": entity.name,
        "author": props.get("author"),
        "author_id": props.get("author_id"),
    })
}

/// A blob's bytes (`git/blobs/{sha}`); `what` names it in errors.
async fn blob_bytes(
    provider: &dyn Provider,
    root: &str,
    sha: &str,
    what: &str,
) -> Result<Vec<u8>, IngestError> {
    let blob: Blob = get_json(provider, &format!("{root}/git/blobs/{sha}")).await?;
    base64_bytes(&blob.content, &blob.encoding, what)
}

/// Content GitHub sends base64-encoded (blobs, the contents API), decoded.
fn base64_bytes(content: &str, encoding: &str, what: &str) -> Result<Vec<u8>, IngestError> {
    if encoding != "base64" {
        return Err(rule_error(format!(
            "{what}: content in an unknown encoding {encoding:?}"
        )));
    }
    let compact: String = content.split_ascii_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| rule_error(format!("{what}: content is not base64: {e}")))
}

/// Every line the pull request adds (`type: full`).
pub(crate) async fn full(provider: &dyn Provider, entity: &Entity) -> Result<Value, IngestError> {
    let n = number(entity)?;
    let root = crate::scope::repository_root(entity);
    let mut files = Vec::new();
    let mut added_bytes = 0usize;
    let mut blob_reads = 0usize;
    let too_large = || {
        rule_error(format!(
            "the pull request adds more than {} MiB of text (lines counted with {LINE_OVERHEAD} bytes each): not inspected in full",
            MAX_ADDED_BYTES >> 20
        ))
    };
    let mut pages = FilePages::new(&root, n);
    while let Some(entries) = pages.next(provider).await? {
        for e in entries {
            let (lines, whole_file) = match (&e.patch, e.status.as_str()) {
                (_, "removed") => (Vec::new(), false),
                (Some(p), _) => (
                    patch::added_lines(p)
                        .map_err(|err| rule_error(format!("{}: {err}", e.filename)))?,
                    false,
                ),
                // No patch: binary, or a diff too large for GitHub to send.
                (None, _) => {
                    blob_reads += 1;
                    if blob_reads > MAX_BLOB_READS {
                        return Err(rule_error(format!(
                            "more than {MAX_BLOB_READS} files of the pull request have no patch to read (binary or too large): not inspected in full"
                        )));
                    }
                    let budget = MAX_ADDED_BYTES.saturating_sub(added_bytes);
                    (
                        whole_file_lines(provider, &root, &e, budget)
                            .await?
                            .ok_or_else(too_large)?,
                        true,
                    )
                }
            };
            added_bytes += lines
                .iter()
                .map(|l| l.content.len() + LINE_OVERHEAD)
                .sum::<usize>();
            if added_bytes > MAX_ADDED_BYTES {
                return Err(too_large());
            }
            files.push(json!({
                "name": e.filename,
                "status": e.status,
                "whole_file": whole_file,
                "patch_lines": lines
                    .into_iter()
                    .map(|l| json!({"line_number": l.line, "content": l.content}))
                    .collect::<Vec<_>>(),
            }));
        }
    }
    Ok(json!({"pr": pr_summary(entity, n), "files": files}))
}

/// Source and text file names read as text whatever their first bytes (a polyglot file that
/// starts like an image is still code to whoever runs it).
const TEXT_EXTENSIONS: &[&str] = &[
    "c", "cc", "cjs", "cpp", "cs", "css", "go", "h", "hpp", "htm", "html", "java", "js", "json",
    "jsx", "kt", "lock", "lua", "md", "mjs", "php", "pl", "ps1", "py", "rb", "rs", "scala", "sh",
    "sql", "svg", "swift", "toml", "ts", "tsx", "txt", "vue", "xml", "yaml", "yml",
];

/// Leading bytes of binary formats whose files are not inspected (images, archives,
/// executables, fonts, databases).
const BINARY_MAGIC: &[&[u8]] = &[
    b"\x89PNG",
    b"\xFF\xD8\xFF",
    b"GIF8",
    b"%PDF",
    b"PK\x03\x04",
    b"\x1F\x8B",
    b"\x7FELF",
    b"\0asm",
    b"\xCA\xFE\xBA\xBE",
    b"\xFE\xED\xFA",
    b"\xCF\xFA\xED\xFE",
    b"MZ",
    b"BZh",
    b"\xFD7zXZ\0",
    b"7z\xBC\xAF",
    b"SQLite format 3\0",
    b"\0\0\x01\0",
    b"RIFF",
    b"wOFF",
    b"wOF2",
    b"OTTO",
    b"\0\x01\0\0",
];

/// Whether a file is left out as binary: it starts like a known binary format and is not named
/// like source code.
fn skipped_as_binary(name: &str, bytes: &[u8]) -> bool {
    let extension = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    !TEXT_EXTENSIONS.contains(&extension.as_str())
        && BINARY_MAGIC.iter().any(|m| bytes.starts_with(m))
}

/// A file's bytes as text: UTF-16 after a byte-order mark, else UTF-8 with invalid bytes
/// replaced (a NUL stays, and is itself reported as invisible).
fn as_text(bytes: &[u8]) -> String {
    let utf16 = |le: bool| {
        let units = bytes[2..].chunks_exact(2).map(|p| {
            if le {
                u16::from_le_bytes([p[0], p[1]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        });
        char::decode_utf16(units)
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(true),
        [0xFE, 0xFF, ..] => utf16(false),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A file GitHub sent no patch for: its head version's lines, all taken as added (none for a
/// file left out as binary); `None` when they would cost more than `budget` bytes.
async fn whole_file_lines(
    provider: &dyn Provider,
    root: &str,
    e: &DiffEntry,
    budget: usize,
) -> Result<Option<Vec<patch::AddedLine>>, IngestError> {
    let Some(sha) = e
        .sha
        .as_deref()
        .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
    else {
        return Err(rule_error(format!(
            "{}: GitHub sent neither a patch nor a blob to read",
            e.filename
        )));
    };
    let bytes = blob_bytes(provider, root, sha, &e.filename).await?;
    if skipped_as_binary(&e.filename, &bytes) {
        return Ok(Some(Vec::new()));
    }
    let text = as_text(&bytes);
    let cost = text.len() + text.lines().count().saturating_mul(LINE_OVERHEAD);
    if cost > budget {
        return Ok(None);
    }
    Ok(Some(
        text.lines()
            .enumerate()
            .map(|(i, l)| patch::AddedLine {
                line: i as u64 + 1,
                content: l.to_string(),
            })
            .collect(),
    ))
}

/// `text` with every character a reader could not see or that could change what they see
/// (controls, invisibles, anything outside printable ASCII and letters) spelled `\u{XXXX}`.
fn shown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let plain = (c.is_ascii_graphic() || c == ' ' || (!c.is_ascii() && c.is_alphanumeric()))
            && !crate::homoglyphs::is_invisible(c);
        if plain {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        }
    }
    out
}

/// Findings listed in an outcome's message; the details list every one.
const FINDINGS_IN_MESSAGE: usize = 5;

/// The `homoglyphs` eval over a `diff` (`type: full`) ingest: `fail` naming each file, line,
/// column and what was found there; `pass` when no added line has any.
pub(crate) fn homoglyphs(check: crate::homoglyphs::Check, ingested: &Value) -> crate::Outcome {
    use crate::homoglyphs::{find_at_most, Check};
    use plumbline_domain::EvalStatus;
    let Some(files) = ingested.get("files").and_then(Value::as_array) else {
        return crate::Outcome::error(EngineError::Ingest(
            "the homoglyphs eval reads a pull request's added lines: use ingest type diff with type full".into(),
        ));
    };
    let mut details = Vec::new();
    let mut annotations = Vec::new();
    // Files with findings left out of the lists once they are full.
    let mut files_not_listed = 0usize;
    let describe = |f: &crate::homoglyphs::Finding| match check {
        Check::InvisibleCharacters => f.code_point.clone().unwrap_or_default(),
        Check::MixedScripts => format!(
            "\"{}\" mixes {}",
            shown(f.word.as_deref().unwrap_or_default()),
            f.scripts.join(", ")
        ),
    };
    for file in files {
        let raw_name = file.get("name").and_then(Value::as_str).unwrap_or("?");
        // The file name is the author's too: it is checked, and shown with what it hides
        // spelled out.
        let name = shown(raw_name);
        let in_diff = !file
            .get("whole_file")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let room = MAX_FINDINGS.saturating_sub(details.len());
        if room == 0 {
            let any = !find_at_most(check, raw_name, 1).is_empty()
                || file
                    .get("patch_lines")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|l| l.get("content").and_then(Value::as_str))
                    .any(|c| !find_at_most(check, c, 1).is_empty());
            files_not_listed += usize::from(any);
            continue;
        }
        let mut left = room.min(MAX_FINDINGS_PER_FILE);
        for f in find_at_most(check, raw_name, left) {
            details.push(format!(
                "{name}: in the file name, column {}: {}",
                f.column,
                describe(&f)
            ));
            annotations.push(crate::Annotation {
                path: raw_name.to_string(),
                line: 0,
                in_diff: false,
                message: format!("the file name, column {}: {}", f.column, describe(&f)),
            });
            left -= 1;
        }
        let lines = file.get("patch_lines").and_then(Value::as_array);
        for line in lines.into_iter().flatten() {
            if left == 0 {
                break;
            }
            let (Some(number), Some(content)) = (
                line.get("line_number").and_then(Value::as_u64),
                line.get("content").and_then(Value::as_str),
            ) else {
                continue;
            };
            for f in find_at_most(check, content, left) {
                let what = describe(&f);
                details.push(format!("{name}:{number}:{}: {what}", f.column));
                annotations.push(crate::Annotation {
                    path: raw_name.to_string(),
                    line: number,
                    in_diff,
                    message: format!("column {}: {what}", f.column),
                });
                left -= 1;
            }
        }
        if left == 0 {
            details.push(format!(
                "{name}: more than {MAX_FINDINGS_PER_FILE} findings; the rest are not listed"
            ));
        }
    }
    if files_not_listed > 0 {
        details.push(format!(
            "{files_not_listed} more file(s) have findings that are not listed (at most {MAX_FINDINGS} are)"
        ));
    }
    if details.is_empty() {
        return crate::Outcome::new(EvalStatus::Pass, "");
    }
    let found = match check {
        Check::InvisibleCharacters => "found invisible characters",
        Check::MixedScripts => "found words mixing scripts",
    };
    failing(found, details, annotations)
}

/// A `fail` outcome: `what`, then the first findings, in its message; every finding in its
/// details and annotations.
fn failing(
    what: &str,
    details: Vec<String>,
    annotations: Vec<crate::Annotation>,
) -> crate::Outcome {
    let mut message = format!(
        "{what}: {}",
        details[..details.len().min(FINDINGS_IN_MESSAGE)].join("; ")
    );
    if details.len() > FINDINGS_IN_MESSAGE {
        message.push_str(&format!(
            "; and {} more",
            details.len() - FINDINGS_IN_MESSAGE
        ));
    }
    let mut outcome = crate::Outcome::new(plumbline_domain::EvalStatus::Fail, message);
    outcome.details = details;
    outcome.annotations = annotations;
    outcome
}

/// The head-side line ranges a patch's hunks show (`+c,d` of each `@@` header): where a review
/// may comment.
fn right_side_ranges(patch: &str) -> Vec<(u64, u64)> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("@@ "))
        .filter_map(|h| h.split_whitespace().find(|t| t.starts_with('+')))
        .filter_map(|t| {
            let mut parts = t[1..].splitn(2, ',');
            let start: u64 = parts.next()?.parse().ok()?;
            let count: u64 = match parts.next() {
                Some(c) => c.parse().ok()?,
                None => 1,
            };
            (count > 0).then(|| (start, start + count - 1))
        })
        .collect()
}

/// Dependency files of one pull request read at most (head and base each count once).
pub const MAX_DEP_FILES: usize = 50;

/// Reads a file's bytes at `git_ref` through the contents API; `None` when it does not exist
/// there (a file the pull request adds).
async fn file_at(
    provider: &dyn Provider,
    root: &str,
    path: &str,
    git_ref: &str,
) -> Result<Option<Vec<u8>>, IngestError> {
    if path
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(rule_error(format!(
            "{}: not a plain file path",
            shown(path)
        )));
    }
    // The path is the author's: each segment encoded, so none can add a query or a segment.
    let encoded: Vec<String> = path.split('/').map(crate::scope::encode_segment).collect();
    let encoded = encoded.join("/");
    let url = format!("{root}/contents/{encoded}?ref={git_ref}");
    let r = provider
        .request("GET", &url, None)
        .await
        .map_err(IngestError::from)?;
    if r.status == 404 {
        return Ok(None);
    }
    if !(200..300).contains(&r.status) {
        return Err(rule_error(format!(
            "GET {url}: unexpected status {}",
            r.status
        )));
    }
    #[derive(Deserialize)]
    struct Contents {
        #[serde(default)]
        content: String,
        #[serde(default)]
        encoding: String,
        #[serde(default)]
        sha: String,
        #[serde(rename = "type", default)]
        kind: String,
        #[serde(default)]
        path: String,
    }
    let c: Contents = serde_json::from_slice(&r.body)
        .map_err(|e| rule_error(format!("{url}: invalid json: {e}")))?;
    if c.kind != "file" {
        return Err(rule_error(format!(
            "{}: not a file at {git_ref}",
            shown(path)
        )));
    }
    // GitHub answers a symlink with its target's content: a change to the target would then be
    // judged under the link's name, and the target's own changes never.
    if c.path != path {
        return Err(rule_error(format!(
            "{} is a link to {}: not read",
            shown(path),
            shown(&c.path)
        )));
    }
    // Over 1 MB GitHub sends no content here: the blob has it.
    if c.encoding == "base64" {
        return base64_bytes(&c.content, &c.encoding, &shown(path)).map(Some);
    }
    if !c.sha.bytes().all(|b| b.is_ascii_hexdigit()) || c.sha.is_empty() {
        return Err(rule_error(format!(
            "{}: no content and no blob",
            shown(path)
        )));
    }
    blob_bytes(provider, root, &c.sha, &shown(path))
        .await
        .map(Some)
}

/// The dependencies a pull request adds or changes (`diff` ingest, `type: dep`), as Minder's
/// `PrDependencies`: `{"pr": {...}, "deps": [{"dep": {"ecosystem", "name", "version"},
/// "file": {"name", "patch_url"}, "line"}]}`. Each changed dependency file is parsed at the
/// head and at the base; what the head declares that the base did not is reported, with the
/// line that declares it. `ecosystems` (the rule's `diff.ecosystems`: `[{name, depfile}]`)
/// limits which files count; empty, every file a parser knows.
pub(crate) async fn deps(
    provider: &dyn Provider,
    entity: &Entity,
    ecosystems: &[(String, String)],
) -> Result<Value, IngestError> {
    let n = number(entity)?;
    let root = crate::scope::repository_root(entity);
    let props = &entity.properties;
    let sha = |k: &str| {
        props
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(String::from)
            .ok_or_else(|| rule_error(format!("the pull request has no {k}")))
    };
    let (head, base) = (sha("head_sha")?, sha("base_sha")?);
    // A file counts when a parser knows it and its ecosystem is one the rule names: every
    // file of that ecosystem, not only the `depfile` named (npm reads npm-shrinkwrap.json
    // before package-lock.json, pip any requirements file), so a dependency cannot hide in a
    // sibling file the rule did not list.
    let wanted = |name: &str| {
        crate::deps::kind_of(name).is_some_and(|kind| {
            ecosystems.is_empty()
                || ecosystems
                    .iter()
                    .any(|(eco, _)| eco.eq_ignore_ascii_case(kind.ecosystem().as_str()))
        })
    };
    let mut found = Vec::new();
    let mut read = 0usize;
    let mut pages = FilePages::new(&root, n);
    while let Some(entries) = pages.next(provider).await? {
        for e in entries
            .iter()
            .filter(|e| e.status != "removed" && wanted(&e.filename))
        {
            read += 1;
            if read > MAX_DEP_FILES {
                return Err(rule_error(format!(
                    "the pull request changes more than {MAX_DEP_FILES} dependency files: not inspected in full"
                )));
            }
            let parse = |bytes: Option<Vec<u8>>| match bytes {
                None => Ok(Vec::new()),
                Some(b) => {
                    crate::deps::parse(&e.filename, &b).map_err(|err| rule_error(err.to_string()))
                }
            };
            let at_head = parse(file_at(provider, &root, &e.filename, &head).await?)?;
            let at_base = parse(file_at(provider, &root, &e.filename, &base).await?)?;
            let shown_lines = e
                .patch
                .as_deref()
                .map(right_side_ranges)
                .unwrap_or_default();
            for d in crate::deps::added_or_changed(&at_base, &at_head) {
                let in_diff = shown_lines
                    .iter()
                    .any(|(from, to)| (*from..=*to).contains(&d.line));
                found.push(json!({
                    "dep": {"ecosystem": d.ecosystem.as_str(), "name": d.name, "version": d.version},
                    "file": {"name": e.filename, "patch_url": ""},
                    "line": d.line,
                    "in_diff": in_diff,
                }));
            }
        }
    }
    Ok(json!({"pr": pr_summary(entity, n), "deps": found}))
}

/// A repository's dependencies (`deps` ingest), from its files, as Minder's node list:
/// `{"node_list": {"nodes": [{"name", "version", "type": "PACKAGE", "properties":
/// [{"name": "sourceFile", "data": <path>}]}]}}`. A dependency file that does not parse is an
/// `error` naming it.
pub(crate) fn repository_deps(files: &crate::files::FileTree) -> Result<Value, IngestError> {
    let mut nodes = Vec::new();
    let mut read = 0usize;
    for path in files.paths() {
        if crate::deps::kind_of(path).is_none() {
            continue;
        }
        let Some(bytes) = files.read(path) else {
            continue;
        };
        read += 1;
        if read > MAX_DEP_FILES * 20 {
            return Err(rule_error(format!(
                "the repository has more than {} dependency files: not inspected in full",
                MAX_DEP_FILES * 20
            )));
        }
        for d in crate::deps::parse(path, bytes).map_err(|e| rule_error(e.to_string()))? {
            nodes.push(json!({
                "type": "PACKAGE",
                "name": d.name,
                "version": d.version,
                "properties": [{"name": "sourceFile", "data": path}],
            }));
        }
    }
    Ok(json!({"node_list": {"nodes": nodes}}))
}

/// The `vulncheck` eval over a `diff` (`type: dep`) ingest: each dependency with an exact
/// version, in an ecosystem the rule checks, queried against its OSV endpoint; `fail` naming
/// each vulnerable package, its advisories and the versions that fix them.
pub(crate) fn vulncheck(
    fetcher: &dyn crate::datasource::Fetcher,
    ingested: &Value,
    def: &Value,
) -> crate::Outcome {
    use crate::vulncheck::{check, config_for, Package};
    use plumbline_domain::EvalStatus;
    use std::collections::BTreeMap;
    let Some(deps) = ingested.get("deps").and_then(Value::as_array) else {
        return crate::Outcome::error(EngineError::Ingest(
            "the vulncheck eval reads a pull request's dependencies: use ingest type diff with type dep"
                .into(),
        ));
    };
    // Per endpoint, the packages to ask about and where each is declared.
    type Declared = (Package, String, (u64, bool));
    let mut by_endpoint: BTreeMap<String, Vec<Declared>> = BTreeMap::new();
    for d in deps {
        let field = |k: &str| d["dep"][k].as_str().unwrap_or_default().to_string();
        let (ecosystem, name, spec) = (field("ecosystem"), field("name"), field("version"));
        let version = if ecosystem == "npm" {
            // package.json declares ranges; only a pinned version can be looked up.
            match crate::deps::exact_version(&spec) {
                Some(v) => v,
                None => continue,
            }
        } else {
            spec
        };
        if version.is_empty() {
            continue;
        }
        let Some(endpoint) = config_for(&ecosystem, def) else {
            continue;
        };
        let file = d["file"]["name"].as_str().unwrap_or_default().to_string();
        let line = d["line"].as_u64().unwrap_or(0);
        let in_diff = d["in_diff"].as_bool().unwrap_or(false);
        by_endpoint.entry(endpoint).or_default().push((
            Package {
                ecosystem,
                name,
                version,
            },
            file,
            (line, in_diff),
        ));
    }
    let mut details = Vec::new();
    let mut annotations = Vec::new();
    for (endpoint, packages) in &by_endpoint {
        let asked: Vec<Package> = packages.iter().map(|(p, _, _)| p.clone()).collect();
        let vulnerable = match check(fetcher, endpoint, &asked) {
            Ok(v) => v,
            Err(e) => return crate::Outcome::error(EngineError::Ingest(e.to_string())),
        };
        for v in vulnerable {
            let ids: Vec<String> = v
                .advisories
                .iter()
                .map(|a| match a.fixed.first() {
                    Some(f) => format!("{} (fixed in {f})", a.id),
                    None => format!("{} (no fix)", a.id),
                })
                .collect();
            let what = format!(
                "{} {} ({}) is vulnerable: {}",
                v.package.name,
                v.package.version,
                v.package.ecosystem,
                ids.join(", ")
            );
            for (_, file, (line, in_diff)) in packages.iter().filter(|(p, _, _)| *p == v.package) {
                details.push(format!("{}:{line}: {what}", shown(file)));
                if annotations.len() < MAX_FINDINGS {
                    annotations.push(crate::Annotation {
                        path: file.clone(),
                        line: *line,
                        in_diff: *in_diff,
                        message: what.clone(),
                    });
                }
            }
        }
    }
    if details.is_empty() {
        return crate::Outcome::new(EvalStatus::Pass, "");
    }
    details.truncate(MAX_FINDINGS);
    failing("vulnerable dependencies", details, annotations)
}

#[cfg(test)]
mod tests {
    use crate::files::FileTree;
    use crate::provider::{HttpResponse, Provider, ProviderError};
    use crate::{CompiledRule, Invocation, RuleType};
    use async_trait::async_trait;
    use plumbline_domain::{Entity, EntityKind, EntityRef, EvalStatus};
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    /// Answers GETs from a map of path → JSON; counts what was asked.
    #[derive(Default)]
    struct Pages {
        answers: HashMap<String, (u16, Value)>,
        asked: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Provider for Pages {
        async fn request(
            &self,
            _m: &str,
            path: &str,
            _b: Option<&Value>,
        ) -> Result<HttpResponse, ProviderError> {
            if let Ok(mut a) = self.asked.lock() {
                a.push(path.to_string());
            }
            match self.answers.get(path) {
                Some((status, v)) => Ok(HttpResponse {
                    status: *status,
                    body: serde_json::to_vec(v).unwrap_or_default(),
                }),
                None => Ok(HttpResponse {
                    status: 404,
                    body: b"{}".to_vec(),
                }),
            }
        }

        async fn fetch_tree(
            &self,
            _o: &str,
            _r: &str,
            _b: &str,
        ) -> Result<Arc<FileTree>, ProviderError> {
            Err(ProviderError::Failed("no trees here".into()))
        }
    }

    fn pull() -> Entity {
        Entity {
            entity_ref: EntityRef {
                provider: "github".into(),
                kind: EntityKind::PullRequest,
                upstream_id: "77".into(),
            },
            project: "default".into(),
            owner: "acme".into(),
            name: "app".into(),
            properties: json!({"number": 5, "head_sha": "h", "base_sha": "b"}),
            labels: vec![],
            credential: None,
        }
    }

    fn page(n: usize) -> String {
        format!("/repos/acme/app/pulls/5/files?per_page=100&page={n}")
    }

    fn rule(check: &str) -> CompiledRule {
        let yaml = format!(
            "version: v1\ntype: rule-type\nname: r\ndef:\n  in_entity: pull_request\n  rule_schema: {{}}\n  ingest:\n    type: diff\n    diff:\n      type: full\n  eval:\n    type: homoglyphs\n    homoglyphs:\n      type: {check}\n"
        );
        CompiledRule::compile(RuleType::from_yaml(&yaml).expect("yaml")).expect("compiles")
    }

    async fn run(check: &str, p: &Pages) -> crate::Outcome {
        let entity = pull();
        let inv = Invocation {
            entity: &entity,
            params: &Value::Null,
            def: &Value::Null,
        };
        rule(check).run(&inv, p).await.expect("no transient error")
    }

    #[tokio::test]
    async fn an_added_zero_width_space_fails_naming_file_line_and_column() {
        let mut p = Pages::default();
        p.answers.insert(
            page(1),
            (
                200,
                json!([
                    {"filename": "src/a.js", "status": "modified", "sha": "aa",
                     "patch": "@@ -1,2 +1,3 @@\n let a;\n+let is\u{200B}Admin;\n let b;"},
                    {"filename": "logo.png", "status": "added", "sha": "bb"},
                    {"filename": "old.txt", "status": "removed", "sha": "cc"},
                ]),
            ),
        );
        // logo.png has no patch: its blob is read, and it is not text.
        p.answers.insert(
            "/repos/acme/app/git/blobs/bb".into(),
            (
                200,
                json!({"content": "iVBORw0KGgoA\n", "encoding": "base64"}),
            ),
        );
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Fail, "{}", o.message);
        assert_eq!(o.details, vec!["src/a.js:2:7: U+200B".to_string()]);
        assert!(o.message.contains("src/a.js:2:7: U+200B"), "{}", o.message);
        // A removed line, or one only in context, is not the change's.
        let o = run("mixed_scripts", &p).await;
        assert_eq!(o.status, EvalStatus::Pass, "{}", o.message);
    }

    #[tokio::test]
    async fn a_file_without_a_patch_is_read_whole_and_pages_are_followed() {
        let mut p = Pages::default();
        let full: Vec<Value> = (0..100)
            .map(|i| json!({"filename": format!("f{i}.txt"), "status": "added", "patch": "@@ -0,0 +1 @@\n+ok"}))
            .collect();
        p.answers.insert(page(1), (200, Value::Array(full)));
        p.answers.insert(
            page(2),
            (
                200,
                json!([{"filename": "big.txt", "status": "modified", "sha": "dd"}]),
            ),
        );
        use base64::Engine as _;
        let text = "fine\nthe pаypal login\n";
        p.answers.insert(
            "/repos/acme/app/git/blobs/dd".into(),
            (
                200,
                json!({"content": base64::engine::general_purpose::STANDARD.encode(text), "encoding": "base64"}),
            ),
        );
        let o = run("mixed_scripts", &p).await;
        assert_eq!(o.status, EvalStatus::Fail, "{}", o.message);
        assert_eq!(
            o.details,
            vec!["big.txt:2:5: \"pаypal\" mixes Cyrillic, Latin".to_string()]
        );
        assert!(p.asked.lock().expect("lock").contains(&page(2)));
    }

    #[tokio::test]
    async fn what_cannot_be_inspected_in_full_is_an_error_not_a_pass() {
        // 3,000 files: GitHub's listing stops there, so the rest is unknown.
        let mut p = Pages::default();
        for n in 1..=30 {
            let files: Vec<Value> = (0..100)
                .map(|i| json!({"filename": format!("{n}/{i}"), "status": "added", "patch": "@@ -0,0 +1 @@\n+x"}))
                .collect();
            p.answers.insert(page(n), (200, Value::Array(files)));
        }
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("3000 files"), "{}", o.message);
        // A patch that does not parse names its file.
        let mut p = Pages::default();
        p.answers.insert(
            page(1),
            (
                200,
                json!([{"filename": "x.rs", "status": "modified", "patch": "+no header"}]),
            ),
        );
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("x.rs"), "{}", o.message);
        // GitHub refusing the listing is the rule's error, with the status.
        let mut p = Pages::default();
        p.answers
            .insert(page(1), (422, json!({"message": "Unprocessable"})));
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("422"), "{}", o.message);
    }

    fn blob(p: &mut Pages, sha: &str, bytes: &[u8]) {
        use base64::Engine as _;
        p.answers.insert(
            format!("/repos/acme/app/git/blobs/{sha}"),
            (
                200,
                json!({"content": base64::engine::general_purpose::STANDARD.encode(bytes), "encoding": "base64"}),
            ),
        );
    }

    #[tokio::test]
    async fn files_git_calls_binary_are_still_read_as_text_unless_they_are_binary_formats() {
        let mut p = Pages::default();
        p.answers.insert(
            page(1),
            (
                200,
                json!([
                    // A NUL in a comment makes git call it binary: no patch.
                    {"filename": "run.js", "status": "added", "sha": "a1"},
                    // UTF-16 with a byte-order mark.
                    {"filename": "Setup.ps1", "status": "added", "sha": "a2"},
                    // A script that starts like a GIF is still a script.
                    {"filename": "poly.js", "status": "added", "sha": "a3"},
                    // A real image is not inspected.
                    {"filename": "logo.gif", "status": "added", "sha": "a4"},
                ]),
            ),
        );
        blob(&mut p, "a1", b"// \0\nlet a\xE2\x80\x8B = 1;\n");
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "x\u{202E}y\n".encode_utf16() {
            utf16.extend(u.to_le_bytes());
        }
        blob(&mut p, "a2", &utf16);
        blob(&mut p, "a3", "GIF89a=1;\u{2066}evil();\n".as_bytes());
        blob(&mut p, "a4", b"GIF89a\x00\x01\xE2\x80\x8B");
        let o = run("invisible_characters", &p).await;
        assert_eq!(
            o.details,
            vec![
                "run.js:1:4: U+0000".to_string(),
                "run.js:2:6: U+200B".to_string(),
                "Setup.ps1:1:2: U+202E".to_string(),
                "poly.js:1:10: U+2066".to_string(),
            ]
        );
        // Lines of files read whole are not in GitHub's diff: no line comments there.
        assert!(o.annotations.iter().all(|a| !a.in_diff));
    }

    #[tokio::test]
    async fn what_a_change_costs_to_inspect_is_bounded() {
        // Millions of empty lines: an error, not gigabytes of lines.
        let mut p = Pages::default();
        p.answers.insert(
            page(1),
            (
                200,
                json!([{"filename": "empty.txt", "status": "added", "sha": "e1"}]),
            ),
        );
        blob(&mut p, "e1", "\n".repeat(1_000_000).as_bytes());
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("not inspected in full"), "{}", o.message);
        // More files without a patch than may be read.
        let mut p = Pages::default();
        let files: Vec<Value> = (0..super::MAX_BLOB_READS + 1)
            .map(|i| json!({"filename": format!("b{i}.bin"), "status": "added", "sha": format!("{i:x}")}))
            .collect();
        p.answers.insert(page(1), (200, Value::Array(files)));
        for i in 0..=super::MAX_BLOB_READS {
            blob(&mut p, &format!("{i:x}"), b"\x89PNG\r\n");
        }
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("no patch"), "{}", o.message);
        // A line of thousands of zero-width spaces: a capped list that says so.
        let mut p = Pages::default();
        let line = "\u{200B}".repeat(5_000);
        p.answers.insert(
            page(1),
            (
                200,
                json!([
                    {"filename": "a.js", "status": "added", "patch": format!("@@ -0,0 +1 @@\n+{line}")},
                    {"filename": "b.js", "status": "added", "patch": "@@ -0,0 +1 @@\n+x\u{200B}"},
                ]),
            ),
        );
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Fail);
        assert_eq!(o.annotations.len(), super::MAX_FINDINGS_PER_FILE + 1);
        assert!(o
            .details
            .iter()
            .any(|d| d.contains("more than 100 findings")));
        assert!(o.details.iter().any(|d| d.starts_with("b.js:1:2")));
    }

    #[tokio::test]
    async fn a_file_name_hiding_a_character_is_reported_and_shown_spelled_out() {
        let mut p = Pages::default();
        p.answers.insert(
            page(1),
            (
                200,
                json!([{"filename": "src/ad\u{200B}min.js", "status": "added", "patch": "@@ -0,0 +1 @@\n+ok"}]),
            ),
        );
        let o = run("invisible_characters", &p).await;
        assert_eq!(o.status, EvalStatus::Fail);
        assert_eq!(
            o.details,
            vec!["src/ad\\u{200B}min.js: in the file name, column 7: U+200B".to_string()]
        );
    }

    #[test]
    fn diff_and_homoglyphs_compile_only_where_they_apply() {
        let bad_entity = "version: v1\ntype: rule-type\nname: r\ndef:\n  in_entity: repository\n  ingest:\n    type: diff\n    diff:\n      type: full\n  eval:\n    type: homoglyphs\n    homoglyphs:\n      type: invisible_characters\n";
        assert!(CompiledRule::compile(RuleType::from_yaml(bad_entity).expect("yaml")).is_err());
        let bad_check = bad_entity
            .replace("repository", "pull_request")
            .replace("invisible_characters", "emoji");
        let e = CompiledRule::compile(RuleType::from_yaml(&bad_check).expect("yaml"))
            .err()
            .expect("refused");
        assert!(e.to_string().contains("invisible_characters"), "{e}");
    }

    #[tokio::test]
    async fn trusty_is_an_error_saying_the_service_is_gone_and_reads_nothing() {
        let yaml = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/minder-rules/rule-types/github/pr_trusty_check.yaml"
        ))
        .expect("corpus rule type");
        let rule =
            CompiledRule::compile(RuleType::from_yaml(&yaml).expect("yaml")).expect("compiles");
        let p = Pages::default();
        let entity = pull();
        let inv = Invocation {
            entity: &entity,
            params: &Value::Null,
            def: &Value::Null,
        };
        let o = rule.run(&inv, &p).await.expect("outcome");
        assert_eq!(o.status, EvalStatus::Error);
        assert!(o.message.contains("discontinued"), "{}", o.message);
        assert!(p.asked.lock().expect("lock").is_empty(), "nothing read");
    }
}
