//! Records the tests add, a checker of answers against the schemas, and a blocking
//! [`Fetcher`] over HTTP for the engine's check.

use plumbline_engine::datasource::{FetchRequest, Fetcher};
use plumbline_engine::{HttpResponse, ProviderError};
use plumbline_osv_sim::{validate_record, API_SCHEMA};
use serde_json::{json, Value};

/// lodash < 4.17.21 (npm), as GitHub's advisory database publishes it in OSV.
pub fn lodash() -> Value {
    json!({
        "schema_version": "1.6.0",
        "id": "GHSA-35jh-r3h4-6jhm",
        "modified": "2024-03-13T22:16:24Z",
        "published": "2021-05-06T16:05:51Z",
        "aliases": ["CVE-2021-23337"],
        "summary": "Command Injection in lodash",
        "details": "`lodash` versions prior to 4.17.21 are vulnerable to Command Injection via the template function.",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "npm", "name": "lodash", "purl": "pkg:npm/lodash"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "4.17.21"}]}],
            "database_specific": {"source": "https://github.com/github/advisory-database/blob/main/advisories/github-reviewed/2021/05/GHSA-35jh-r3h4-6jhm/GHSA-35jh-r3h4-6jhm.json"}
        }],
        "references": [
            {"type": "ADVISORY", "url": "https://nvd.nist.gov/vuln/detail/CVE-2021-23337"},
            {"type": "PACKAGE", "url": "https://github.com/lodash/lodash"}
        ],
        "database_specific": {"cwe_ids": ["CWE-77", "CWE-94"], "severity": "HIGH", "github_reviewed": true}
    })
}

/// Jinja2 < 2.10.1 (PyPI), a sandbox escape.
pub fn jinja2() -> Value {
    json!({
        "id": "PYSEC-2019-217",
        "modified": "2021-11-22T04:57:52.862665Z",
        "published": "2019-04-07T00:29:00Z",
        "aliases": ["CVE-2019-10906", "GHSA-462w-v97r-4m45"],
        "details": "In Pallets Jinja before 2.10.1, str.format_map allows a sandbox escape.",
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": "jinja2", "purl": "pkg:pypi/jinja2"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.10.1"}]}],
            "versions": ["2.0", "2.10", "2.9.6"]
        }],
        "references": [{"type": "ADVISORY", "url": "https://usn.ubuntu.com/4011-1/"}]
    })
}

/// A Go module with a SEMVER range and a last_affected bound.
pub fn go_module() -> Value {
    json!({
        "id": "GO-2024-0001",
        "modified": "2024-01-01T00:00:00Z",
        "summary": "Something in example.com/mod",
        "affected": [{
            "package": {"ecosystem": "Go", "name": "example.com/mod"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.2.0"}, {"last_affected": "1.4.0"}]}]
        }]
    })
}

/// Validates answers against `schema/osv-api.json` (and records against the OSV schema).
pub struct Contract {
    defs: Value,
}

impl Contract {
    pub fn new() -> Contract {
        let api: Value = serde_json::from_str(API_SCHEMA).expect("api schema is JSON");
        Contract {
            defs: api["$defs"].clone(),
        }
    }

    /// Errors of `instance` against the definition `def` of the API schema.
    pub fn errors(&self, def: &str, instance: &Value) -> Vec<String> {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": self.defs,
            "$ref": format!("#/$defs/{def}"),
        });
        let validator = jsonschema_validator(&schema);
        let mut errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{def} {}: {e}", e.instance_path()))
            .collect();
        // Full records in a query answer are records of the OSV schema.
        if def == "queryResponse" {
            for v in instance["vulns"].as_array().into_iter().flatten() {
                if let Err(e) = validate_record(v) {
                    errors.push(e.to_string());
                }
            }
        }
        errors
    }

    pub fn assert(&self, what: &str, def: &str, instance: &Value) {
        let errors = self.errors(def, instance);
        assert!(
            errors.is_empty(),
            "{what}: answer does not match {def}:\n{}\n{instance:#}",
            errors.join("\n")
        );
    }
}

fn jsonschema_validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema compiles: {e}"))
}

/// A blocking fetcher over HTTP, as a service's would be: async reqwest driven by the runtime
/// the test runs on, called from a blocking thread.
pub struct HttpFetcher {
    pub client: reqwest::Client,
    pub runtime: tokio::runtime::Handle,
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, req: &FetchRequest) -> Result<HttpResponse, ProviderError> {
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|e| ProviderError::Failed(format!("bad method {:?}: {e}", req.method)))?;
        let mut builder = self.client.request(method, &req.url);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        self.runtime.block_on(async move {
            let transient = |e: reqwest::Error| ProviderError::Transient {
                message: e.to_string(),
                until: None,
            };
            let resp = builder.send().await.map_err(transient)?;
            let status = resp.status().as_u16();
            let body = resp.bytes().await.map_err(transient)?.to_vec();
            Ok(HttpResponse { status, body })
        })
    }
}
