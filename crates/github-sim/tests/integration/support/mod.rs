//! Shared harness of the contract tests: GitHub's OpenAPI description, a seeded simulator on
//! port 0, and a checker that sends cases and validates every answer against the schema of the
//! same operation and status code.
//!
//! Each `contract*.rs` file drives one group of endpoint families with its own route table and
//! its own list of statuses GitHub answers but does not declare (`SpecGap`); `Checker::finish`
//! fails the test on any violation and on any listed route left without a successful case.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use jsonschema::Draft;
use plumbline_github_sim::{RepoOptions, SimConfig, Simulator};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use reqwest::Method;
use serde_json::{json, Map, Value};
use tokio_util::sync::CancellationToken;

/// (method, route, status, why): a status the simulator answers although the OpenAPI document
/// does not declare it for the operation, and real GitHub answers it all the same. Reported as a
/// finding, not a failure; any undeclared status not listed fails the test.
pub type SpecGap = (&'static str, &'static str, u16, &'static str);

/// The document: `PLUMBLINE_GITHUB_OPENAPI`, else `shared/github-openapi` beside the checkout.
fn spec_path() -> PathBuf {
    std::env::var_os("PLUMBLINE_GITHUB_OPENAPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/github-openapi/api.github.com.subset.json")
        })
}
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
pub fn openapi_to_json_schema(schema: &Value) -> Value {
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

pub fn compile(schema: &Value) -> jsonschema::Validator {
    let converted = openapi_to_json_schema(schema);
    jsonschema::options()
        .with_draft(Draft::Draft4)
        .should_validate_formats(true)
        .build(&converted)
        .unwrap_or_else(|e| panic!("schema does not compile: {e}"))
}

/// Errors of `instance` against `schema`, one line each: JSON pointer, keyword, schema path,
/// message.
pub fn schema_errors(schema: &Value, instance: &Value) -> Vec<String> {
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

pub struct Spec {
    pub doc: Value,
}

impl Spec {
    pub fn load() -> Spec {
        let path = spec_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read OpenAPI document {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).expect("OpenAPI document is JSON");
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.0")),
            "expected an OpenAPI 3.0 document (nullable conversion assumes it), got {}",
            doc["openapi"]
        );
        assert!(
            !text.contains("\"$ref\""),
            "the OpenAPI document must be dereferenced (found $ref)"
        );
        Spec { doc }
    }

    pub fn operation(&self, method: &str, route: &str) -> Option<&Value> {
        self.doc["paths"]
            .get(route)?
            .get(method.to_ascii_lowercase())
    }
}

pub struct Server {
    pub sim: Simulator,
    pub base: String,
    pub shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts a simulator with the seeded state: `acme/guarded` (protected `main`), `acme/open`
/// (unprotected), and three seeded repositories for the listings' pagination.
pub async fn start(config: SimConfig) -> Server {
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
pub struct Case<'a> {
    pub what: &'a str,
    pub method: &'a str,
    pub route: &'static str,
    pub path: String,
    pub body: Option<Body>,
    pub token: Option<&'a str>,
    pub if_none_match: Option<String>,
    pub expect: u16,
}

pub enum Body {
    Json(Value),
    Raw(&'static str),
}

impl<'a> Case<'a> {
    pub fn new(
        what: &'a str,
        method: &'a str,
        route: &'static str,
        path: &str,
        expect: u16,
    ) -> Self {
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
    pub fn json(mut self, body: Value) -> Self {
        self.body = Some(Body::Json(body));
        self
    }
    pub fn raw(mut self, body: &'static str) -> Self {
        self.body = Some(Body::Raw(body));
        self
    }
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    pub fn if_none_match(mut self, etag: Option<String>) -> Self {
        self.if_none_match = etag;
        self
    }
}

pub struct Checker {
    /// Statuses GitHub answers but the document does not declare (reported, not failing).
    pub spec_gaps: &'static [SpecGap],
    spec: Spec,
    client: reqwest::Client,
    /// Failures: schema violations, undeclared statuses not in the gap list, harness surprises.
    violations: Vec<String>,
    /// Undeclared statuses listed in the gap list (reported, not failing).
    gaps: BTreeSet<String>,
    /// (method, route) → statuses answered and checked.
    covered: BTreeMap<(String, String), BTreeSet<u16>>,
    /// Response bodies validated against a schema.
    bodies_validated: usize,
    /// Request bodies validated against the requestBody schema.
    requests_validated: usize,
}

impl Checker {
    /// A checker with its own list of statuses GitHub answers but the document does not declare.
    pub fn new(spec_gaps: &'static [SpecGap]) -> Checker {
        Checker {
            spec_gaps,
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
        }
    }

    /// Checks that every route of `routes` is an operation of the document; call first.
    pub fn expect_routes(&self, routes: &[(&str, &str)]) {
        for (method, route) in routes {
            assert!(
                self.spec.operation(method, route).is_some(),
                "simulator route {method} {route} has no operation in the OpenAPI document"
            );
        }
    }

    /// Each simulator's own request log must attribute every request to a route of `routes`
    /// (nothing unmatched), and together they must have exercised every route.
    pub fn check_request_logs(&mut self, servers: &[&Server], routes: &[(&str, &str)]) {
        let mut logged: BTreeSet<(String, String)> = BTreeSet::new();
        for server in servers {
            for entry in server.sim.request_log() {
                if !routes
                    .iter()
                    .any(|(m, r)| *m == entry.method && *r == entry.route)
                {
                    self.violations.push(format!(
                        "request {} {} was logged under route {:?}, not a route of the table",
                        entry.method, entry.path, entry.route
                    ));
                }
                logged.insert((entry.method, entry.route));
            }
        }
        for (method, route) in routes {
            let key = ((*method).to_owned(), (*route).to_owned());
            if !logged.contains(&key) {
                self.violations.push(format!(
                    "coverage: route {method} {route} never reached the simulator"
                ));
            }
            if !self.covered.contains_key(&key) {
                self.violations.push(format!(
                    "coverage: route {method} {route} has no response checked against the document"
                ));
            }
        }
    }

    /// Prints the coverage report and fails on any violation, or on a route of `routes` that no
    /// case answered with a success (2xx or 3xx).
    pub fn finish(mut self, routes: &[(&str, &str)]) {
        for (method, route) in routes {
            let ok = self
                .covered
                .get(&((*method).to_owned(), (*route).to_owned()))
                .is_some_and(|statuses| {
                    statuses.iter().any(|s| (200..400).contains(s) && *s != 304)
                });
            if !ok {
                self.violations.push(format!(
                    "{method} {route}: no case answered it with a success"
                ));
            }
        }
        let pairs: usize = self.covered.values().map(BTreeSet::len).sum();
        println!(
            "contract coverage: {} operations, {} (operation, status) pairs, {} response bodies and \
             {} request bodies validated",
            self.covered.len(),
            pairs,
            self.bodies_validated,
            self.requests_validated
        );
        for ((method, route), statuses) in &self.covered {
            let Some(op) = self.spec.operation(method, route) else {
                continue;
            };
            let declared: Vec<&String> = op["responses"]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            println!(
                "  {method:6} {route:55} {:45} answered {:?}; declared {:?}",
                op["operationId"].as_str().unwrap_or("?"),
                statuses,
                declared
            );
        }
        if !self.gaps.is_empty() {
            println!("spec gaps ({}, reported, not failing):", self.gaps.len());
            for gap in &self.gaps {
                println!("  - {gap}");
            }
        }
        if !self.violations.is_empty() {
            println!("contract violations ({}):", self.violations.len());
            for v in &self.violations {
                println!("  - {v}");
            }
        }
        assert!(
            self.violations.is_empty(),
            "{} contract violation(s):\n{}",
            self.violations.len(),
            self.violations.join("\n")
        );
    }

    /// Sends one case, checks its status, and validates request and response against the spec.
    /// Returns the response's ETag (for a following conditional request).
    pub async fn run(&mut self, server: &Server, case: Case<'_>) -> Option<String> {
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
                None => self.violations.push(format!(
                    "{label}: operation declares no JSON requestBody schema"
                )),
                Some(schema) => {
                    self.requests_validated += 1;
                    let errors = schema_errors(schema, body);
                    if case.expect < 300 {
                        for e in errors {
                            self.violations.push(format!(
                                "{label}: REQUEST body violates requestBody schema: {e}"
                            ));
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
            let gap = self
                .spec_gaps
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
            self.violations.push(format!(
                "{label}: content-type {content_type:?}, expected application/json"
            ));
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
