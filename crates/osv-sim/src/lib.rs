//! An OSV API simulator for tests: <https://google.github.io/osv.dev/api/> over real HTTP,
//! serving the vulnerability records a test adds.
//!
//! Served (on 127.0.0.1, a port of its own):
//!
//! - `POST /v1/query`: one query, full records: `{"vulns": [...], "next_page_token"?}`.
//! - `POST /v1/querybatch`: up to [`MAX_BATCH_QUERIES`] queries, ids and `modified` only:
//!   `{"results": [{"vulns": [{"id", "modified"}], "next_page_token"?}, ...]}`, one result per
//!   query, in order.
//! - `GET /v1/vulns/{id}`: the full record, or 404 `{"code": 5, "message": "Bug not found."}`
//!   (naming the records that have `id` as an alias, as OSV does).
//!
//! As OSV (its protobuf JSON mapping), an empty list is left out: a result with no
//! vulnerability is `{}`, and so is the answer to a `/v1/query` that matches nothing. Results
//! are paginated per query at [`DEFAULT_PAGE_SIZE`] records ([`OsvSim::set_page_size`]); the
//! query is sent again with `page_token` for the next page. Bad requests (undecodable JSON,
//! unknown fields, a query that is neither a package nor a commit, too many queries, a bad page
//! token) are 400 with OSV's error shape `{"code": 3, "message": ...}`.
//!
//! Queries: a package by `name` (and `ecosystem`, optional as in OSV) or by `purl` (`npm`,
//! `pypi`, `golang`, `cargo`, `maven`, `gem`, `nuget`, `composer`, `hex`, `pub`), with or
//! without a `version` (without: every record of the package). A record affects a package
//! when an `affected[].package` has the query's ecosystem (exactly, or as the base of a
//! suffixed one such as `Debian:12`) and name (exactly; PyPI names normalized per PEP 503),
//! and the version is listed in its `versions` or inside one of its `ranges` that
//! [`version`] can evaluate (`SEMVER` anywhere; `ECOSYSTEM` for npm, crates.io, Go and PyPI;
//! `GIT` ranges ignored). Commit queries are accepted and match nothing.
//!
//! Records are checked against the OSV schema ([`OSV_SCHEMA`], version 1.7.3, see
//! `schema/README.md`) before they are accepted ([`OsvSim::add`]).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let (osv, base) = plumbline_osv_sim::OsvSim::start().await?;
//! osv.add(serde_json::json!({"id": "GHSA-aaaa-bbbb-cccc", "modified": "2024-01-01T00:00:00Z"}))
//!     .map_err(std::io::Error::other)?;
//! println!("OSV simulator on {base}");
//! # Ok(()) }
//! ```

pub mod version;

use std::collections::{BTreeMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use axum::body::Bytes;
use axum::extract::{Path, State as AxumState};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

/// The OSV schema records are validated against (osv-schema 1.7.3, draft 2020-12).
pub const OSV_SCHEMA: &str = include_str!("../schema/osv-schema.json");

/// The shapes of the API's answers (`$defs`: `batchResponse`, `queryResponse`, `error`),
/// written from OSV's API documentation; see `schema/README.md`.
pub const API_SCHEMA: &str = include_str!("../schema/osv-api.json");

/// OSV's limit on queries in one `/v1/querybatch` request.
pub const MAX_BATCH_QUERIES: usize = 1000;

/// Records per page of one query's results, as OSV's `/v1/query`.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

/// gRPC status codes OSV's JSON errors carry.
const INVALID_ARGUMENT: u16 = 3;
const NOT_FOUND: u16 = 5;

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsvSimError {
    /// The record does not follow the OSV schema; one entry per violation (JSON pointer and
    /// message).
    #[error("record {id} does not follow the OSV schema: {}", .errors.join("; "))]
    Invalid { id: String, errors: Vec<String> },
    /// The bundled schema did not compile (a defect of this crate).
    #[error("the bundled OSV schema does not compile: {0}")]
    Schema(String),
}

/// One API request as the simulator saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (percent-encoding kept), e.g. `/v1/vulns/GHSA-xxxx`.
    pub path: String,
    /// The JSON body, when there was one that parsed.
    pub body: Option<Value>,
    pub status: u16,
}

/// Validates `record` against the OSV schema (formats included: `date-time`, `uri`).
pub fn validate_record(record: &Value) -> Result<(), OsvSimError> {
    let validator = record_validator()?;
    let errors: Vec<String> = validator
        .iter_errors(record)
        .map(|e| format!("{}: {e}", pointer(e.instance_path().as_str())))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(OsvSimError::Invalid {
            id: record
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("(no id)")
                .to_string(),
            errors,
        })
    }
}

fn pointer(p: &str) -> &str {
    if p.is_empty() {
        "/"
    } else {
        p
    }
}

fn record_validator() -> Result<&'static jsonschema::Validator, OsvSimError> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(OSV_SCHEMA).map_err(|e| e.to_string())?;
            jsonschema::options()
                .should_validate_formats(true)
                .build(&schema)
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OsvSimError::Schema(e.clone()))
}

/// PEP 503 name normalization: lower case, runs of `-`, `_` and `.` as one `-`.
pub fn pep503(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut in_run = false;
    for ch in name.chars() {
        if matches!(ch, '-' | '_' | '.') {
            if !in_run {
                out.push('-');
            }
            in_run = true;
        } else {
            out.extend(ch.to_lowercase());
            in_run = false;
        }
    }
    out
}

/// A running simulator. Dropping it stops the server.
pub struct OsvSim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    records: BTreeMap<String, Value>,
    log: Vec<LoggedRequest>,
    page_size: usize,
    faults: VecDeque<u16>,
}

impl Drop for OsvSim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl OsvSim {
    /// Serves on 127.0.0.1 on a free port (on the current tokio runtime). Returns the simulator
    /// and its base URL, `http://127.0.0.1:PORT` (the API is under `/v1`).
    pub async fn start() -> std::io::Result<(OsvSim, String)> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                records: BTreeMap::new(),
                log: Vec::new(),
                page_size: DEFAULT_PAGE_SIZE,
                faults: VecDeque::new(),
            }),
        });
        let shutdown = CancellationToken::new();
        let app = Router::new()
            .route("/v1/query", post(query))
            .route("/v1/querybatch", post(querybatch))
            .route("/v1/vulns/{id}", get(vuln))
            .fallback(not_found)
            .with_state(shared.clone());
        let stop = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::warn!(%addr, %error, "osv simulator stopped with error");
            }
        });
        let sim = OsvSim {
            shared,
            addr,
            shutdown,
        };
        let base = sim.base_url();
        Ok((sim, base))
    }

    /// The address served on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds (or replaces, by `id`) a vulnerability record after validating it against the OSV
    /// schema.
    pub fn add(&self, record: Value) -> Result<(), OsvSimError> {
        validate_record(&record)?;
        let id = record
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.lock().records.insert(id, record);
        Ok(())
    }

    /// Every API request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.clone()
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// Records per page of a query's results (at least 1); OSV's is [`DEFAULT_PAGE_SIZE`].
    pub fn set_page_size(&self, size: usize) {
        self.lock().page_size = size.max(1);
    }

    /// The next API request is answered with `status` and an OSV-shaped error body (429:
    /// `RESOURCE_EXHAUSTED`, 503: `UNAVAILABLE`, others `INTERNAL`). Calls queue up.
    pub fn fail_next(&self, status: u16) {
        self.lock().faults.push_back(status);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs the request and shapes the answer.
    fn answer(
        &self,
        method: &Method,
        uri: &Uri,
        body: Option<Value>,
        (status, value): (u16, Value),
    ) -> Response {
        self.lock().log.push(LoggedRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            body,
            status,
        });
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(value)).into_response()
    }

    /// An injected fault, if one is queued.
    fn fault(&self) -> Option<(u16, Value)> {
        let status = self.lock().faults.pop_front()?;
        let (code, message) = match status {
            429 => (8, "Resource has been exhausted (e.g. check quota)."),
            503 => (14, "The service is currently unavailable."),
            _ => (13, "Internal error."),
        };
        Some((status, json!({"code": code, "message": message})))
    }
}

fn error(status: u16, code: u16, message: impl Into<String>) -> (u16, Value) {
    (status, json!({"code": code, "message": message.into()}))
}

fn bad_request(message: impl Into<String>) -> (u16, Value) {
    error(400, INVALID_ARGUMENT, message)
}

/// A query as sent (protobuf JSON: either field spelling is accepted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQuery {
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    package: Option<RawPackage>,
    #[serde(default, alias = "pageToken")]
    page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBatch {
    #[serde(default)]
    queries: Vec<RawQuery>,
}

/// What a query asks for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Package {
        ecosystem: Option<String>,
        name: String,
        version: Option<String>,
    },
    Commit(String),
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

fn target(q: RawQuery) -> Result<(Target, Option<String>), String> {
    let commit = non_empty(q.commit);
    let version = non_empty(q.version);
    let token = non_empty(q.page_token);
    if let Some(commit) = commit {
        if version.is_some() {
            return Err("Invalid query: commit and version cannot both be set.".into());
        }
        return Ok((Target::Commit(commit), token));
    }
    let Some(package) = q.package else {
        return Err("Invalid query.".into());
    };
    let (name, ecosystem) = (non_empty(package.name), non_empty(package.ecosystem));
    if let Some(purl) = non_empty(package.purl) {
        if name.is_some() || ecosystem.is_some() {
            return Err("name/ecosystem specified in PURL query".into());
        }
        let (ecosystem, name, purl_version) =
            parse_purl(&purl).ok_or_else(|| "Invalid Package URL.".to_string())?;
        if purl_version.is_some() && version.is_some() {
            return Err("version specified in params and PURL query".into());
        }
        return Ok((
            Target::Package {
                ecosystem: Some(ecosystem),
                name,
                version: version.or(purl_version),
            },
            token,
        ));
    }
    let Some(name) = name else {
        return Err("Invalid query.".into());
    };
    Ok((
        Target::Package {
            ecosystem,
            name,
            version,
        },
        token,
    ))
}

/// `pkg:TYPE/NAMESPACE/NAME@VERSION` → (OSV ecosystem, OSV package name, version).
fn parse_purl(purl: &str) -> Option<(String, String, Option<String>)> {
    let rest = purl.strip_prefix("pkg:")?;
    let rest = rest.split(['#', '?']).next().unwrap_or(rest);
    let (ty, path) = rest.split_once('/')?;
    let (path, version) = match path.rsplit_once('@') {
        Some((p, v)) if !v.contains('/') && !p.is_empty() => (p, Some(v)),
        _ => (path, None),
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode)
        .collect::<Option<_>>()?;
    let name = segments.join("/");
    let (ecosystem, name) = match ty.to_ascii_lowercase().as_str() {
        "npm" => ("npm", name),
        "pypi" => ("PyPI", name),
        "golang" => ("Go", name),
        "cargo" => ("crates.io", name),
        "gem" => ("RubyGems", name),
        "nuget" => ("NuGet", name),
        "composer" => ("Packagist", name),
        "hex" => ("Hex", name),
        "pub" => ("Pub", name),
        "maven" => ("Maven", segments.join(":")),
        _ => return None,
    };
    if name.is_empty() {
        return None;
    }
    let version = match version {
        Some(v) => Some(decode(v)?),
        None => None,
    };
    Some((ecosystem.to_string(), name, version))
}

fn ecosystem_matches(query: Option<&str>, record: &str) -> bool {
    match query {
        None => true,
        Some(q) => record == q || record.split_once(':').is_some_and(|(base, _)| base == q),
    }
}

fn name_matches(record_ecosystem: &str, query: &str, record: &str) -> bool {
    let base = record_ecosystem
        .split(':')
        .next()
        .unwrap_or(record_ecosystem);
    if base == "PyPI" {
        pep503(query) == pep503(record)
    } else {
        query == record
    }
}

/// Whether `record` affects the package `target` asks for.
fn affects(record: &Value, target: &Target) -> bool {
    let Target::Package {
        ecosystem,
        name,
        version,
    } = target
    else {
        return false;
    };
    let Some(affected) = record.get("affected").and_then(Value::as_array) else {
        return false;
    };
    affected.iter().any(|aff| {
        let package = aff.get("package");
        let field = |k: &str| {
            package
                .and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        let (eco, pkg) = (field("ecosystem"), field("name"));
        if !ecosystem_matches(ecosystem.as_deref(), eco) || !name_matches(eco, name, pkg) {
            return false;
        }
        let Some(version) = version else {
            return true;
        };
        let listed = aff
            .get("versions")
            .and_then(Value::as_array)
            .is_some_and(|vs| vs.iter().any(|v| v.as_str() == Some(version)));
        listed
            || aff
                .get("ranges")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|range| in_range(range, eco, version))
    })
}

fn in_range(range: &Value, ecosystem: &str, v: &str) -> bool {
    let ty = range
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let Some(scheme) = version::scheme_for(ty, ecosystem) else {
        return false;
    };
    let events: Vec<version::Event> = range
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(String::from);
            s("introduced")
                .map(version::Event::Introduced)
                .or_else(|| s("fixed").map(version::Event::Fixed))
                .or_else(|| s("last_affected").map(version::Event::LastAffected))
        })
        .collect();
    version::in_range(scheme, v, &events) == Some(true)
}

fn fingerprint(target: &Target) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    target.hash(&mut h);
    h.finish()
}

/// Page tokens: `OFFSET.FINGERPRINT`, bound to the query they continue.
fn page_start(target: &Target, token: Option<&str>) -> Option<usize> {
    let Some(token) = token else {
        return Some(0);
    };
    let (offset, fp) = token.split_once('.')?;
    let offset: usize = offset.parse().ok()?;
    (u64::from_str_radix(fp, 16).ok()? == fingerprint(target) && offset > 0).then_some(offset)
}

/// One page of the records matching `target`, and the token for the next page.
fn run_query(
    state: &State,
    target: &Target,
    token: Option<&str>,
) -> Option<(Vec<Value>, Option<String>)> {
    let start = page_start(target, token)?;
    let matching: Vec<&Value> = state
        .records
        .values()
        .filter(|r| affects(r, target))
        .collect();
    if start > 0 && start >= matching.len() {
        return None;
    }
    let end = (start + state.page_size).min(matching.len());
    let next = (end < matching.len()).then(|| format!("{end}.{:016x}", fingerprint(target)));
    Some((
        matching[start..end].iter().map(|r| (*r).clone()).collect(),
        next,
    ))
}

fn result_object(vulns: Vec<Value>, next: Option<String>) -> Value {
    let mut out = Map::new();
    if !vulns.is_empty() {
        out.insert("vulns".into(), Value::Array(vulns));
    }
    if let Some(next) = next {
        out.insert("next_page_token".into(), Value::String(next));
    }
    Value::Object(out)
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, (u16, Value)> {
    serde_json::from_slice(body)
        .map_err(|e| bad_request(format!("Invalid JSON payload received. {e}")))
}

async fn query(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let logged = serde_json::from_slice(&body).ok();
    let answer = shared.fault().unwrap_or_else(|| {
        let q: RawQuery = match parse_body(&body) {
            Ok(q) => q,
            Err(e) => return e,
        };
        let (target, token) = match target(q) {
            Ok(t) => t,
            Err(message) => return bad_request(message),
        };
        match run_query(&shared.lock(), &target, token.as_deref()) {
            Some((vulns, next)) => (200, result_object(vulns, next)),
            None => bad_request("Invalid page token."),
        }
    });
    shared.answer(&method, &uri, logged, answer)
}

async fn querybatch(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let logged = serde_json::from_slice(&body).ok();
    let answer = shared.fault().unwrap_or_else(|| {
        let batch: RawBatch = match parse_body(&body) {
            Ok(b) => b,
            Err(e) => return e,
        };
        if batch.queries.len() > MAX_BATCH_QUERIES {
            return bad_request("Too many queries.");
        }
        let state = shared.lock();
        let mut results = Vec::with_capacity(batch.queries.len());
        for (i, q) in batch.queries.into_iter().enumerate() {
            let (target, token) = match target(q) {
                Ok(t) => t,
                Err(message) => return bad_request(message),
            };
            let Some((vulns, next)) = run_query(&state, &target, token.as_deref()) else {
                return bad_request(format!("Invalid page token at index: {i}."));
            };
            let refs = vulns
                .iter()
                .map(|r| json!({"id": r["id"], "modified": r["modified"]}))
                .collect();
            results.push(result_object(refs, next));
        }
        (200, json!({ "results": results }))
    });
    shared.answer(&method, &uri, logged, answer)
}

async fn vuln(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Path(id): Path<String>,
) -> Response {
    let answer = shared.fault().unwrap_or_else(|| {
        let state = shared.lock();
        if let Some(record) = state.records.get(&id) {
            return (200, record.clone());
        }
        let aliased: Vec<&str> = state
            .records
            .iter()
            .filter(|(_, r)| {
                r.get("aliases")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(&id)))
            })
            .map(|(k, _)| k.as_str())
            .collect();
        if aliased.is_empty() {
            error(404, NOT_FOUND, "Bug not found.")
        } else {
            error(
                404,
                NOT_FOUND,
                format!(
                    "Bug not found, but the following aliases were: {}",
                    aliased.join(" ")
                ),
            )
        }
    });
    shared.answer(&method, &uri, None, answer)
}

async fn not_found(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
) -> Response {
    shared.answer(
        &method,
        &uri,
        None,
        error(404, NOT_FOUND, "Method does not exist."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ecosystem: &str, name: &str, ranges: Value) -> Value {
        json!({
            "id": id,
            "modified": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": ecosystem, "name": name}, "ranges": ranges}],
        })
    }

    fn pkg(ecosystem: Option<&str>, name: &str, version: Option<&str>) -> Target {
        Target::Package {
            ecosystem: ecosystem.map(String::from),
            name: name.into(),
            version: version.map(String::from),
        }
    }

    #[test]
    fn records_are_checked_against_the_schema() {
        let ok = record(
            "GHSA-35jh-r3h4-6jhm",
            "npm",
            "lodash",
            json!([{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}]),
        );
        assert_eq!(validate_record(&ok), Ok(()));
        let bad_id = json!({"id": "NOPE-1", "modified": "2024-01-01T00:00:00Z"});
        assert!(matches!(
            validate_record(&bad_id),
            Err(OsvSimError::Invalid { .. })
        ));
        let bad_time = json!({"id": "GHSA-1", "modified": "yesterday"});
        assert!(validate_record(&bad_time).is_err());
        let extra = json!({"id": "GHSA-1", "modified": "2024-01-01T00:00:00Z", "x": 1});
        assert!(validate_record(&extra).is_err());
        let no_introduced = record(
            "GHSA-1",
            "npm",
            "x",
            json!([{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}]),
        );
        assert!(validate_record(&no_introduced).is_err());
    }

    #[test]
    fn matching_by_ecosystem_name_and_version() {
        let r = record(
            "PYSEC-2021-1",
            "PyPI",
            "Jinja2",
            json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.11.3"}]}]),
        );
        assert!(affects(&r, &pkg(Some("PyPI"), "jinja2", Some("2.10"))));
        // A pre-release of the fixed version is still affected (PEP 440: rc1 < final).
        assert!(affects(&r, &pkg(Some("PyPI"), "JINJA2", Some("2.11.3rc1"))));
        assert!(affects(&r, &pkg(Some("PyPI"), "jinja2", Some("2.11.2"))));
        assert!(!affects(&r, &pkg(Some("PyPI"), "jinja2", Some("2.11.3"))));
        assert!(!affects(&r, &pkg(Some("npm"), "jinja2", Some("2.10"))));
        assert!(affects(&r, &pkg(None, "Jinja2", Some("2.10"))));
        assert!(affects(&r, &pkg(Some("PyPI"), "jinja2", None)));
        let r = record(
            "PYSEC-2021-2",
            "PyPI",
            "Foo_Bar",
            json!([{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}]}]),
        );
        assert!(affects(
            &r,
            &pkg(Some("PyPI"), "foo.bar", Some("1.0.post1"))
        ));
        assert!(!affects(&r, &pkg(Some("PyPI"), "foo.bar", Some("1.0rc1"))));
        let listed = json!({"id": "OSV-1", "modified": "2024-01-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "x"}, "versions": ["1.0-1"]}]});
        assert!(affects(&listed, &pkg(Some("Debian"), "x", Some("1.0-1"))));
        assert!(!affects(&listed, &pkg(Some("Debian"), "x", Some("1.0-2"))));
        assert!(!affects(&listed, &Target::Commit("abc".into())));
    }

    #[test]
    fn purls_name_packages() {
        assert_eq!(
            parse_purl("pkg:npm/%40babel/core@7.0.0"),
            Some(("npm".into(), "@babel/core".into(), Some("7.0.0".into())))
        );
        assert_eq!(
            parse_purl("pkg:maven/org.apache/commons@1?type=jar"),
            Some((
                "Maven".into(),
                "org.apache:commons".into(),
                Some("1".into())
            ))
        );
        assert_eq!(
            parse_purl("pkg:golang/github.com/a/b"),
            Some(("Go".into(), "github.com/a/b".into(), None))
        );
        assert_eq!(parse_purl("pkg:unknown/x@1"), None);
        assert_eq!(parse_purl("npm/x"), None);
    }

    #[test]
    fn names_normalize_per_pep503() {
        assert_eq!(pep503("Foo.Bar__baz--Qux"), "foo-bar-baz-qux");
    }
}
