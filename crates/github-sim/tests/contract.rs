//! Contract tests: the simulator's answers checked against GitHub's own OpenAPI description.
//!
//! The document is `/work/shared/github-openapi/api.github.com.subset.json` (see `SOURCE.md`
//! beside it; override the location with `PLUMBLINE_GITHUB_OPENAPI`). For every route the
//! simulator serves, the test drives each status code the simulator can answer, then validates
//! the response body against the schema the document declares for the same operation (path
//! template + method) and status code. PUT bodies the test sends are validated against the
//! operation's `requestBody` schema, so the inputs are real GitHub requests (and the 422 input
//! is checked to be one GitHub's schema rejects too).
//!
//! Every problem is collected and printed; the test fails at the end if there is any. Statuses
//! the simulator answers but the document does not declare for the operation are findings too;
//! the few that real GitHub is known to answer anyway (see [`SPEC_GAPS`]) are printed but do not
//! fail the test, any other undeclared status does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use jsonschema::Draft;
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

const DEFAULT_SPEC: &str = "/work/shared/github-openapi/api.github.com.subset.json";

/// The simulator's REST route table (method, path template), as registered in `src/api.rs`.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/repos/{owner}/{repo}"),
    ("PATCH", "/repos/{owner}/{repo}"),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection"),
    ("PUT", "/repos/{owner}/{repo}/branches/{branch}/protection"),
    ("DELETE", "/repos/{owner}/{repo}/branches/{branch}/protection"),
    ("GET", "/orgs/{org}/repos"),
    ("GET", "/installation/repositories"),
    ("GET", "/rate_limit"),
];

/// (method, route, status) the simulator answers although the OpenAPI document does not declare
/// the status for the operation, and real GitHub answers them all the same. They are reported
/// as findings (spec gaps) but do not fail the test; any undeclared status not listed here does.
const SPEC_GAPS: &[(&str, &str, u16, &str)] = &[
    // Conditional requests: GitHub answers 304 to a matching If-None-Match on any GET, but the
    // description only declares 304 on a few operations.
    ("GET", "/repos/{owner}/{repo}", 304, "conditional GET"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}", 304, "conditional GET"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", 304, "conditional GET"),
    ("GET", "/orgs/{org}/repos", 304, "conditional GET"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow", 304, "conditional GET"),
    // Unknown repository or ref: GitHub answers 404 although only the 302 is declared.
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}", 404, "unknown repository or ref"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow", 404, "unknown repository"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow", 404, "unknown repository"),
    // A value outside the enum of the request schema is a validation failure like everywhere.
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow", 422, "invalid value"),
    // A bad token is answered 401 "Bad credentials" on every endpoint.
    ("GET", "/repos/{owner}/{repo}", 401, "bad credentials"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}", 401, "bad credentials"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", 401, "bad credentials"),
    ("PUT", "/repos/{owner}/{repo}/branches/{branch}/protection", 401, "bad credentials"),
    ("DELETE", "/repos/{owner}/{repo}/branches/{branch}/protection", 401, "bad credentials"),
    ("GET", "/orgs/{org}/repos", 401, "bad credentials"),
    ("GET", "/rate_limit", 401, "bad credentials"),
    ("PATCH", "/repos/{owner}/{repo}", 401, "bad credentials"),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}", 401, "bad credentials"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow", 401, "bad credentials"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow", 401, "bad credentials"),
    // An exhausted primary rate limit is answered 403 on every charged endpoint.
    ("GET", "/repos/{owner}/{repo}/branches/{branch}", 403, "rate limit exceeded"),
    ("GET", "/repos/{owner}/{repo}/branches/{branch}/protection", 403, "rate limit exceeded"),
    ("GET", "/orgs/{org}/repos", 403, "rate limit exceeded"),
    ("GET", "/repos/{owner}/{repo}/tarball/{ref}", 403, "rate limit exceeded"),
    ("GET", "/repos/{owner}/{repo}/actions/permissions/workflow", 403, "rate limit exceeded"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow", 403, "rate limit exceeded"),
    // Unparseable JSON bodies are answered 400 "Problems parsing JSON".
    ("PUT", "/repos/{owner}/{repo}/branches/{branch}/protection", 400, "malformed JSON body"),
    ("PATCH", "/repos/{owner}/{repo}", 400, "malformed JSON body"),
    ("PUT", "/repos/{owner}/{repo}/actions/permissions/workflow", 400, "malformed JSON body"),
    // Unknown organization.
    ("GET", "/orgs/{org}/repos", 404, "unknown organization"),
    // Unknown repository / "Branch not protected".
    ("DELETE", "/repos/{owner}/{repo}/branches/{branch}/protection", 404, "not found / branch not protected"),
];

// ---------------------------------------------------------------------------------------------
// OpenAPI 3.0 schema → JSON Schema draft 4
// ---------------------------------------------------------------------------------------------

/// Converts an OpenAPI 3.0 Schema Object into plain JSON Schema (draft 4, the dialect OpenAPI
/// 3.0 schemas extend: boolean `exclusiveMinimum`, no `const`). The only OpenAPI-specific
/// keyword that changes what validates is `nullable: true`, rewritten bottom-up:
///
/// - with a `type`: `type: T` becomes `type: [T, "null"]`; an `enum` gains `null` as well, as
///   GitHub uses `nullable` on enums to mean "one of these or null";
/// - without a `type` (only around `allOf`/`anyOf`/`oneOf` here): the schema becomes
///   `{"anyOf": [<schema>, {"type": "null"}]}`, since every branch of a combinator would
///   otherwise reject null.
///
/// `nullable: false` is dropped. Other OpenAPI keywords (`example`, `discriminator`, `readOnly`,
/// `deprecated`, `x-*`) are annotations that draft 4 ignores.
fn openapi_to_json_schema(schema: &Value) -> Value {
    match schema {
        Value::Array(items) => Value::Array(items.iter().map(openapi_to_json_schema).collect()),
        Value::Object(obj) => {
            let mut out = Map::new();
            for (key, value) in obj {
                let converted = match key.as_str() {
                    // Maps of schemas, where keys are property names, not keywords.
                    "properties" | "patternProperties" => match value {
                        Value::Object(props) => Value::Object(
                            props
                                .iter()
                                .map(|(k, v)| (k.clone(), openapi_to_json_schema(v)))
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    // Instance data, never schemas.
                    "enum" | "example" | "examples" | "default" | "required" => value.clone(),
                    _ => openapi_to_json_schema(value),
                };
                out.insert(key.clone(), converted);
            }
            let nullable = out.remove("nullable") == Some(Value::Bool(true));
            if !nullable {
                return Value::Object(out);
            }
            match out.get("type").cloned() {
                Some(Value::String(t)) => {
                    out.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(values)) = out.get_mut("enum") {
                        if !values.contains(&Value::Null) {
                            values.push(Value::Null);
                        }
                    }
                    Value::Object(out)
                }
                _ => json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
            }
        }
        other => other.clone(),
    }
}

fn compile(schema: &Value) -> jsonschema::Validator {
    let converted = openapi_to_json_schema(schema);
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .build(&converted)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// Errors of `instance` against `schema`, one line each: JSON pointer, keyword, schema path,
/// message.
fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
    let validator = compile(schema);
    validator
        .iter_errors(instance)
        .map(|e| {
            format!(
                "pointer `{}` keyword `{}` (schema path `{}`): {}",
                if e.instance_path().as_str().is_empty() {
                    "/"
                } else {
                    e.instance_path().as_str()
                },
                e.kind().keyword(),
                e.schema_path(),
                e.masked()
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Spec {
    doc: Value,
}

impl Spec {
    fn load() -> Spec {
        let path = std::env::var_os("PLUMBLINE_GITHUB_OPENAPI")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SPEC));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read OpenAPI document {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("OpenAPI document is JSON");
        assert!(
            doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.0")),
            "expected an OpenAPI 3.0 document (nullable conversion assumes it), got {}",
            doc["openapi"]
        );
        assert!(
            !text.contains("\"$ref\""),
            "the OpenAPI document must be dereferenced (found $ref)"
        );
        Spec { doc }
    }

    fn operation(&self, method: &str, route: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(route)?
            .get(method.to_ascii_lowercase())
    }
}

struct Server {
    sim: Simulator,
    base: String,
    shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulator with the seeded state: `acme/guarded` (protected `main`), `acme/open`
/// (unprotected), and three seeded repositories for the listings' pagination.
async fn start(config: SimConfig) -> Server {
    let sim = Simulator::new(config);
    sim.create_repo(
        "acme",
        "guarded",
        RepoOptions {
            protected: true,
            ..RepoOptions::default()
        },
    );
    sim.create_repo(
        "acme",
        "open",
        RepoOptions {
            private: true,
            ..RepoOptions::default()
        },
    );
    sim.seed("acme", 3, "svc", 0.5);
    let shutdown = CancellationToken::new();
    let addr = sim
        .serve("127.0.0.1:0".parse().unwrap(), shutdown.clone())
        .await
        .expect("simulator binds");
    Server {
        sim,
        base: format!("http://{addr}"),
        shutdown,
    }
}

/// One request of the contract run.
struct Case<'a> {
    what: &'a str,
    method: &'a str,
    route: &'static str,
    path: String,
    body: Option<Body>,
    token: Option<&'a str>,
    if_none_match: Option<String>,
    expect: u16,
}

enum Body {
    Json(Value),
    Raw(&'static str),
}

impl<'a> Case<'a> {
    fn new(what: &'a str, method: &'a str, route: &'static str, path: &str, expect: u16) -> Self {
        Case {
            what,
            method,
            route,
            path: path.to_owned(),
            body: None,
            token: None,
            if_none_match: None,
            expect,
        }
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }
    fn raw(mut self, body: &'static str) -> Self {
        self.body = Some(Body::Raw(body));
        self
    }
    fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    fn if_none_match(mut self, etag: Option<String>) -> Self {
        self.if_none_match = etag;
        self
    }
}

struct Checker {
    spec: Spec,
    client: reqwest::Client,
    /// Failures: schema violations, undeclared statuses not in SPEC_GAPS, harness surprises.
    violations: Vec<String>,
    /// Undeclared statuses listed in SPEC_GAPS (reported, not failing).
    gaps: BTreeSet<String>,
    /// (method, route) → statuses answered and checked.
    covered: BTreeMap<(String, String), BTreeSet<u16>>,
    /// Response bodies validated against a schema.
    bodies_validated: usize,
    /// Request bodies validated against the requestBody schema.
    requests_validated: usize,
}

impl Checker {
    /// Sends one case, checks its status, and validates request and response against the spec.
    /// Returns the response's ETag (for a following conditional request).
    async fn run(&mut self, server: &Server, case: Case<'_>) -> Option<String> {
        let label = format!(
            "{} {} → {} [{}: {} {}]",
            case.method, case.route, case.expect, case.what, case.method, case.path
        );
        let Some(op) = self.spec.operation(case.method, case.route).cloned() else {
            self.violations
                .push(format!("{label}: operation not in the OpenAPI document"));
            return None;
        };

        // The request body, if JSON, is checked against the operation's requestBody schema: a
        // request answered 2xx must be valid, the 422 input must be invalid there too.
        if let Some(Body::Json(body)) = &case.body {
            match op.pointer("/requestBody/content/application~1json/schema") {
                None => self
                    .violations
                    .push(format!("{label}: operation declares no JSON requestBody schema")),
                Some(schema) => {
                    self.requests_validated += 1;
                    let errors = schema_errors(schema, body);
                    if case.expect < 300 {
                        for e in errors {
                            self.violations
                                .push(format!("{label}: REQUEST body violates requestBody schema: {e}"));
                        }
                    } else if case.expect == 422 && errors.is_empty() {
                        self.violations.push(format!(
                            "{label}: the 422 input is valid per the requestBody schema \
                             (the simulator rejects a request GitHub's schema allows)"
                        ));
                    }
                }
            }
        }

        let method = Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}{}", server.base, case.path));
        if let Some(token) = case.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(etag) = &case.if_none_match {
            request = request.header(IF_NONE_MATCH, etag.as_str());
        }
        match &case.body {
            Some(Body::Json(v)) => {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(serde_json::to_vec(v).unwrap())
            }
            Some(Body::Raw(s)) => {
                request = request.header(CONTENT_TYPE, "application/json").body(*s)
            }
            None => {}
        }
        let response = request.send().await.expect("request reaches the simulator");
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let header_names: BTreeSet<String> = response
            .headers()
            .keys()
            .map(|name| name.as_str().to_owned())
            .collect();
        let bytes = response.bytes().await.expect("response body");

        if status != case.expect {
            self.violations.push(format!(
                "{label}: simulator answered {status} instead of {} (body: {})",
                case.expect,
                String::from_utf8_lossy(&bytes)
            ));
            return etag;
        }
        self.covered
            .entry((case.method.to_owned(), case.route.to_owned()))
            .or_default()
            .insert(status);

        let declared = op["responses"].get(status.to_string());
        let Some(declared) = declared else {
            let gap = SPEC_GAPS
                .iter()
                .find(|(m, r, s, _)| *m == case.method && *r == case.route && *s == status);
            match gap {
                Some((_, _, _, why)) => {
                    self.gaps.insert(format!(
                        "{} {} ({}) → {status}: status not declared by the OpenAPI document \
                         ({why}; real GitHub answers it)",
                        case.method,
                        case.route,
                        op["operationId"].as_str().unwrap_or("?")
                    ));
                }
                None => self.violations.push(format!(
                    "{label}: status {status} is not declared for operation {} in the OpenAPI \
                     document (declared: {:?})",
                    op["operationId"].as_str().unwrap_or("?"),
                    op["responses"]
                        .as_object()
                        .map(|m| m.keys().cloned().collect::<Vec<_>>())
                        .unwrap_or_default()
                )),
            }
            return etag;
        };

        // A redirect must carry the headers the document declares for it (`Location`). Other
        // declared headers are conditional (`Link` only when there is more than one page).
        let redirect = (300..400).contains(&status) && status != 304;
        if let (true, Some(Value::Object(declared_headers))) = (redirect, declared.get("headers")) {
            for name in declared_headers.keys() {
                if !header_names.contains(&name.to_ascii_lowercase()) {
                    self.violations
                        .push(format!("{label}: declared header `{name}` is missing"));
                }
            }
        }

        if status == 204 || status == 304 || declared.get("content").is_none() {
            if !bytes.is_empty() {
                self.violations
                    .push(format!("{label}: {status} answer carries a body"));
            }
            return etag;
        }

        let Some(schema) = declared.pointer("/content/application~1json/schema") else {
            self.violations.push(format!(
                "{label}: the document declares {status} without an application/json schema, \
                 but the simulator answered a body"
            ));
            return etag;
        };
        if !content_type
            .as_deref()
            .is_some_and(|ct| ct.starts_with("application/json"))
        {
            self.violations
                .push(format!("{label}: content-type {content_type:?}, expected application/json"));
        }
        let body: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                self.violations
                    .push(format!("{label}: response body is not JSON: {e}"));
                return etag;
            }
        };
        self.bodies_validated += 1;
        for e in schema_errors(schema, &body) {
            self.violations
                .push(format!("{label}: RESPONSE violates schema: {e}"));
        }
        etag
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies (GitHub's "update branch protection" shape)
// ---------------------------------------------------------------------------------------------

/// A minimal valid PUT: one approving review, admins enforced, nothing else.
fn minimal_protection() -> Value {
    json!({
        "required_status_checks": null,
        "enforce_admins": true,
        "required_pull_request_reviews": { "required_approving_review_count": 1 },
        "restrictions": null
    })
}

/// A PUT exercising every part of the response: status checks (with app), review dismissal and
/// bypass allowances, push restrictions and all the flags.
fn full_protection() -> Value {
    json!({
        "required_status_checks": {
            "strict": true,
            "contexts": [],
            "checks": [ { "context": "ci/build", "app_id": 15368 }, { "context": "ci/lint" } ]
        },
        "enforce_admins": false,
        "required_pull_request_reviews": {
            "dismissal_restrictions": { "users": ["octocat"], "teams": ["core"], "apps": [] },
            "dismiss_stale_reviews": true,
            "require_code_owner_reviews": true,
            "required_approving_review_count": 2,
            "require_last_push_approval": true,
            "bypass_pull_request_allowances": { "users": ["release-bot"], "teams": [], "apps": ["dependabot"] }
        },
        "restrictions": { "users": ["octocat"], "teams": ["core"], "apps": ["ci-app"] },
        "required_linear_history": true,
        "allow_force_pushes": false,
        "allow_deletions": false,
        "block_creations": true,
        "required_conversation_resolution": true,
        "lock_branch": false,
        "allow_fork_syncing": true
    })
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

const R_REPO: &str = "/repos/{owner}/{repo}";
const R_BRANCH: &str = "/repos/{owner}/{repo}/branches/{branch}";
const R_PROT: &str = "/repos/{owner}/{repo}/branches/{branch}/protection";
const R_ORG: &str = "/orgs/{org}/repos";
const R_INST: &str = "/installation/repositories";
const R_RATE: &str = "/rate_limit";
const R_TAR: &str = "/repos/{owner}/{repo}/tarball/{ref}";
const R_WF: &str = "/repos/{owner}/{repo}/actions/permissions/workflow";

#[tokio::test]
async fn simulator_honours_github_openapi_contract() {
    let mut c = Checker {
        spec: Spec::load(),
        // Redirects are answers to check (the tarball's 302), not something to follow.
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client builds"),
        violations: Vec::new(),
        gaps: BTreeSet::new(),
        covered: BTreeMap::new(),
        bodies_validated: 0,
        requests_validated: 0,
    };

    // Every route of the simulator is an operation of the document.
    for (method, route) in ROUTES {
        assert!(
            c.spec.operation(method, route).is_some(),
            "simulator route {method} {route} has no operation in the OpenAPI document"
        );
    }

    // --- Main simulator: open access, default rate limit. ------------------------------------
    let s = start(SimConfig::default()).await;

    // GET /repos/{owner}/{repo}
    let etag = c.run(&s, Case::new("protected repo", "GET", R_REPO, "/repos/acme/guarded", 200)).await;
    c.run(&s, Case::new("unprotected private repo", "GET", R_REPO, "/repos/acme/open", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_REPO, "/repos/acme/guarded", 304).if_none_match(etag)).await;
    c.run(&s, Case::new("unknown repo", "GET", R_REPO, "/repos/acme/nope", 404)).await;

    // PATCH /repos/{owner}/{repo}
    let patch = json!({
        "description": "Payments API",
        "has_issues": false,
        "delete_branch_on_merge": true,
        "allow_forking": false,
        "homepage": "https://example.com",
        "security_and_analysis": {
            "secret_scanning": { "status": "enabled" },
            "secret_scanning_push_protection": { "status": "enabled" }
        }
    });
    c.run(&s, Case::new("update settings", "PATCH", R_REPO, "/repos/acme/open", 200).json(patch.clone())).await;
    c.run(&s, Case::new("repeat (no change)", "PATCH", R_REPO, "/repos/acme/open", 200).json(patch.clone())).await;
    c.run(&s, Case::new("repo after PATCH", "GET", R_REPO, "/repos/acme/open", 200)).await;
    c.run(&s, Case::new("`has_issues` not a boolean", "PATCH", R_REPO, "/repos/acme/open", 422).json(json!({ "has_issues": "yes" }))).await;
    c.run(&s, Case::new("`description` not a string", "PATCH", R_REPO, "/repos/acme/open", 422).json(json!({ "description": 5 }))).await;
    c.run(&s, Case::new("malformed JSON", "PATCH", R_REPO, "/repos/acme/open", 400).raw("{not json")).await;
    c.run(&s, Case::new("unknown repo", "PATCH", R_REPO, "/repos/acme/nope", 404).json(patch)).await;

    // GET /repos/{owner}/{repo}/tarball/{ref}
    s.sim.put_file("acme", "open", "main", "README.md", b"hello".to_vec()).expect("put_file");
    c.run(&s, Case::new("branch", "GET", R_TAR, "/repos/acme/open/tarball/main", 302)).await;
    c.run(&s, Case::new("empty branch", "GET", R_TAR, "/repos/acme/guarded/tarball/main", 302)).await;
    c.run(&s, Case::new("unknown ref", "GET", R_TAR, "/repos/acme/open/tarball/nope", 404)).await;
    c.run(&s, Case::new("unknown repo", "GET", R_TAR, "/repos/acme/nope/tarball/main", 404)).await;

    // GET / PUT /repos/{owner}/{repo}/actions/permissions/workflow
    let etag = c.run(&s, Case::new("default permissions", "GET", R_WF, "/repos/acme/open/actions/permissions/workflow", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_WF, "/repos/acme/open/actions/permissions/workflow", 304).if_none_match(etag)).await;
    c.run(&s, Case::new("unknown repo", "GET", R_WF, "/repos/acme/nope/actions/permissions/workflow", 404)).await;
    let read_only = json!({ "default_workflow_permissions": "read", "can_approve_pull_request_reviews": false });
    c.run(&s, Case::new("read only", "PUT", R_WF, "/repos/acme/open/actions/permissions/workflow", 204).json(read_only.clone())).await;
    c.run(&s, Case::new("partial body", "PUT", R_WF, "/repos/acme/open/actions/permissions/workflow", 204).json(json!({ "can_approve_pull_request_reviews": true }))).await;
    c.run(&s, Case::new("read back", "GET", R_WF, "/repos/acme/open/actions/permissions/workflow", 200)).await;
    c.run(&s, Case::new("value outside the enum", "PUT", R_WF, "/repos/acme/open/actions/permissions/workflow", 422).json(json!({ "default_workflow_permissions": "admin" }))).await;
    c.run(&s, Case::new("malformed JSON", "PUT", R_WF, "/repos/acme/open/actions/permissions/workflow", 400).raw("{not json")).await;
    c.run(&s, Case::new("unknown repo", "PUT", R_WF, "/repos/acme/nope/actions/permissions/workflow", 404).json(read_only.clone())).await;

    // GET /repos/{owner}/{repo}/branches/{branch}
    let etag = c.run(&s, Case::new("protected branch", "GET", R_BRANCH, "/repos/acme/guarded/branches/main", 200)).await;
    c.run(&s, Case::new("unprotected branch", "GET", R_BRANCH, "/repos/acme/open/branches/main", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_BRANCH, "/repos/acme/guarded/branches/main", 304).if_none_match(etag)).await;
    c.run(&s, Case::new("unknown repo", "GET", R_BRANCH, "/repos/acme/nope/branches/main", 404)).await;
    c.run(&s, Case::new("unknown branch", "GET", R_BRANCH, "/repos/acme/guarded/branches/nope", 404)).await;

    // GET /repos/{owner}/{repo}/branches/{branch}/protection
    let etag = c.run(&s, Case::new("typical protection", "GET", R_PROT, "/repos/acme/guarded/branches/main/protection", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_PROT, "/repos/acme/guarded/branches/main/protection", 304).if_none_match(etag)).await;
    c.run(&s, Case::new("unprotected branch", "GET", R_PROT, "/repos/acme/open/branches/main/protection", 404)).await;
    c.run(&s, Case::new("unknown repo", "GET", R_PROT, "/repos/acme/nope/branches/main/protection", 404)).await;
    c.run(&s, Case::new("unknown branch", "GET", R_PROT, "/repos/acme/guarded/branches/nope/protection", 404)).await;

    // PUT /repos/{owner}/{repo}/branches/{branch}/protection
    c.run(&s, Case::new("protect unprotected branch (minimal)", "PUT", R_PROT, "/repos/acme/open/branches/main/protection", 200).json(minimal_protection())).await;
    c.run(&s, Case::new("replace protection (full)", "PUT", R_PROT, "/repos/acme/guarded/branches/main/protection", 200).json(full_protection())).await;
    c.run(&s, Case::new("full protection read back", "GET", R_PROT, "/repos/acme/guarded/branches/main/protection", 200)).await;
    c.run(&s, Case::new("protected branch after full PUT", "GET", R_BRANCH, "/repos/acme/guarded/branches/main", 200)).await;
    let mut missing_restrictions = minimal_protection();
    missing_restrictions.as_object_mut().unwrap().remove("restrictions");
    c.run(&s, Case::new("missing `restrictions`", "PUT", R_PROT, "/repos/acme/open/branches/main/protection", 422).json(missing_restrictions)).await;
    let mut wrong_type = minimal_protection();
    wrong_type["enforce_admins"] = json!("yes");
    c.run(&s, Case::new("`enforce_admins` not a boolean", "PUT", R_PROT, "/repos/acme/open/branches/main/protection", 422).json(wrong_type)).await;
    c.run(&s, Case::new("malformed JSON", "PUT", R_PROT, "/repos/acme/open/branches/main/protection", 400).raw("{not json")).await;
    c.run(&s, Case::new("unknown repo", "PUT", R_PROT, "/repos/acme/nope/branches/main/protection", 404).json(minimal_protection())).await;
    c.run(&s, Case::new("unknown branch", "PUT", R_PROT, "/repos/acme/open/branches/nope/protection", 404).json(minimal_protection())).await;

    // DELETE /repos/{owner}/{repo}/branches/{branch}/protection
    c.run(&s, Case::new("remove protection", "DELETE", R_PROT, "/repos/acme/open/branches/main/protection", 204)).await;
    c.run(&s, Case::new("branch not protected", "DELETE", R_PROT, "/repos/acme/open/branches/main/protection", 404)).await;
    c.run(&s, Case::new("unknown repo", "DELETE", R_PROT, "/repos/acme/nope/branches/main/protection", 404)).await;

    // GET /orgs/{org}/repos
    let etag = c.run(&s, Case::new("all org repos", "GET", R_ORG, "/orgs/acme/repos", 200)).await;
    c.run(&s, Case::new("second page", "GET", R_ORG, "/orgs/acme/repos?per_page=2&page=2", 200)).await;
    c.run(&s, Case::new("private only", "GET", R_ORG, "/orgs/acme/repos?type=private", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_ORG, "/orgs/acme/repos", 304).if_none_match(etag)).await;
    c.run(&s, Case::new("unknown org", "GET", R_ORG, "/orgs/nobody/repos", 404)).await;

    // GET /installation/repositories
    let etag = c.run(&s, Case::new("all repos", "GET", R_INST, "/installation/repositories", 200)).await;
    c.run(&s, Case::new("second page", "GET", R_INST, "/installation/repositories?per_page=2&page=2", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_INST, "/installation/repositories", 304).if_none_match(etag)).await;

    // GET /rate_limit
    let etag = c.run(&s, Case::new("budget", "GET", R_RATE, "/rate_limit", 200)).await;
    c.run(&s, Case::new("conditional", "GET", R_RATE, "/rate_limit", 304).if_none_match(etag)).await;

    // --- Authenticating simulator: 401 for missing and bad credentials. ----------------------
    let auth = start(SimConfig {
        tokens: vec!["good-token".to_owned()],
        ..SimConfig::default()
    })
    .await;
    c.run(&auth, Case::new("valid token", "GET", R_INST, "/installation/repositories", 200).token("good-token")).await;
    c.run(&auth, Case::new("no token", "GET", R_INST, "/installation/repositories", 401)).await;
    c.run(&auth, Case::new("bad token", "GET", R_INST, "/installation/repositories", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_REPO, "/repos/acme/guarded", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_BRANCH, "/repos/acme/guarded/branches/main", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_PROT, "/repos/acme/guarded/branches/main/protection", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "PUT", R_PROT, "/repos/acme/guarded/branches/main/protection", 401).token("bad").json(minimal_protection())).await;
    c.run(&auth, Case::new("bad token", "DELETE", R_PROT, "/repos/acme/guarded/branches/main/protection", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_ORG, "/orgs/acme/repos", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_RATE, "/rate_limit", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "PATCH", R_REPO, "/repos/acme/guarded", 401).token("bad").json(json!({ "has_issues": false }))).await;
    c.run(&auth, Case::new("bad token", "GET", R_TAR, "/repos/acme/guarded/tarball/main", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "GET", R_WF, "/repos/acme/guarded/actions/permissions/workflow", 401).token("bad")).await;
    c.run(&auth, Case::new("bad token", "PUT", R_WF, "/repos/acme/guarded/actions/permissions/workflow", 401).token("bad").json(read_only.clone())).await;

    // --- Exhausted simulator: 403 rate limit exceeded (rate_limit itself is free). -----------
    let exhausted = start(SimConfig::default()).await;
    exhausted.sim.set_rate_limit(0);
    c.run(&exhausted, Case::new("rate limited", "GET", R_REPO, "/repos/acme/guarded", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_BRANCH, "/repos/acme/guarded/branches/main", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_PROT, "/repos/acme/guarded/branches/main/protection", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "PUT", R_PROT, "/repos/acme/guarded/branches/main/protection", 403).json(minimal_protection())).await;
    c.run(&exhausted, Case::new("rate limited", "DELETE", R_PROT, "/repos/acme/guarded/branches/main/protection", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_ORG, "/orgs/acme/repos", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_INST, "/installation/repositories", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "PATCH", R_REPO, "/repos/acme/guarded", 403).json(json!({ "has_issues": false }))).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_TAR, "/repos/acme/guarded/tarball/main", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "GET", R_WF, "/repos/acme/guarded/actions/permissions/workflow", 403)).await;
    c.run(&exhausted, Case::new("rate limited", "PUT", R_WF, "/repos/acme/guarded/actions/permissions/workflow", 403).json(read_only)).await;
    c.run(&exhausted, Case::new("still answered when exhausted", "GET", R_RATE, "/rate_limit", 200)).await;

    // --- Coverage. -----------------------------------------------------------------------------
    // Each simulator's own request log must attribute every request to a route of the table
    // (nothing unmatched), and together they must have exercised every route.
    let mut logged: BTreeSet<(String, String)> = BTreeSet::new();
    for server in [&s, &auth, &exhausted] {
        for entry in server.sim.request_log() {
            if !ROUTES
                .iter()
                .any(|(m, r)| *m == entry.method && *r == entry.route)
            {
                c.violations.push(format!(
                    "request {} {} was logged under route {:?}, not a route of the table",
                    entry.method, entry.path, entry.route
                ));
            }
            logged.insert((entry.method, entry.route));
        }
    }
    for (method, route) in ROUTES {
        let key = ((*method).to_owned(), (*route).to_owned());
        if !logged.contains(&key) {
            c.violations
                .push(format!("coverage: route {method} {route} never reached the simulator"));
        }
        if !c.covered.contains_key(&key) {
            c.violations.push(format!(
                "coverage: route {method} {route} has no response checked against the document"
            ));
        }
    }

    // --- Report. ---------------------------------------------------------------------------------
    let pairs: usize = c.covered.values().map(BTreeSet::len).sum();
    println!(
        "contract coverage: {} operations, {} (operation, status) pairs, {} response bodies and \
         {} request bodies validated",
        c.covered.len(),
        pairs,
        c.bodies_validated,
        c.requests_validated
    );
    for ((method, route), statuses) in &c.covered {
        let op = c.spec.operation(method, route).unwrap();
        let declared: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
        println!(
            "  {method:6} {route:55} {:45} answered {:?}; declared {:?}",
            op["operationId"].as_str().unwrap_or("?"),
            statuses,
            declared
        );
    }
    if !c.gaps.is_empty() {
        println!("spec gaps ({}, reported, not failing):", c.gaps.len());
        for gap in &c.gaps {
            println!("  - {gap}");
        }
    }
    if !c.violations.is_empty() {
        println!("contract violations ({}):", c.violations.len());
        for v in &c.violations {
            println!("  - {v}");
        }
    }
    assert!(
        c.violations.is_empty(),
        "{} contract violation(s):\n{}",
        c.violations.len(),
        c.violations.join("\n")
    );
}

/// Guards against a vacuous contract run: the converted schemas must still reject wrong shapes,
/// and the `nullable` conversion must admit null exactly where the document allows it.
#[test]
fn schema_checks_are_not_vacuous() {
    let spec = Spec::load();
    let repo = spec
        .operation("GET", R_REPO)
        .and_then(|op| op.pointer("/responses/200/content/application~1json/schema"))
        .expect("repos/get 200 schema");
    let errors = schema_errors(repo, &json!({}));
    assert!(
        errors.iter().any(|e| e.contains("keyword `required`")),
        "an empty object must violate the repository schema: {errors:?}"
    );
    let errors = schema_errors(repo, &json!({ "id": "not-a-number" }));
    assert!(
        errors.iter().any(|e| e.contains("pointer `/id` keyword `type`")),
        "a string id must violate the repository schema: {errors:?}"
    );

    let nullable = json!({ "type": "string", "nullable": true, "enum": ["a"] });
    assert!(schema_errors(&nullable, &json!(null)).is_empty());
    assert!(schema_errors(&nullable, &json!("a")).is_empty());
    assert!(!schema_errors(&nullable, &json!("b")).is_empty());
    assert!(!schema_errors(&json!({ "type": "string" }), &json!(null)).is_empty());
    let composed = json!({ "nullable": true, "allOf": [ { "type": "object", "required": ["x"] } ] });
    assert!(schema_errors(&composed, &json!(null)).is_empty());
    assert!(!schema_errors(&composed, &json!({})).is_empty());
    // Property names that happen to be keywords are left alone.
    let props = json!({ "type": "object", "properties": { "nullable": { "type": "boolean" } } });
    assert!(!schema_errors(&props, &json!({ "nullable": "x" })).is_empty());
}
