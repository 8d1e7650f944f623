//! Minder data sources: named sets of REST functions that Rego policies call as
//! `minder.datasource.<name>.<function>(args)`.
//!
//! As in Minder: arguments are validated against the function's `input_schema`, the endpoint
//! is an RFC 6570 URI template expanded with the arguments, the body is fixed
//! (`body`/`bodyobj`) or taken from an argument (`body_from_field`), responses are read up to
//! 1 MiB, and the call returns `{"status_code": N, "body": parsed-or-text}`. Functions with
//! `providerAuth: true` are sent through the entity's provider with its credentials.
//!
//! Rego evaluation is synchronous, so calls go through a blocking [`Fetcher`] supplied by the
//! caller for each evaluation (the evaluator bridges it to its async provider client).
//!
//! `structured` data sources read a file of the entity's repository instead (the rule's git
//! ingest): the first of `file_name` and its `alternatives` that exists, parsed as JSON, YAML or
//! TOML (by its extension first, then the others, as Minder); `null` when none exists, an error
//! when it does not parse.

use crate::provider::{HttpResponse, ProviderError};
use crate::EngineError;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Responses are cut at 1 MiB, as in Minder.
pub const MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, Deserialize)]
pub struct DataSourceDoc {
    pub version: String,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub name: String,
    #[serde(default)]
    pub rest: Option<RestDataSource>,
    #[serde(default)]
    pub structured: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestDataSource {
    #[serde(default, rename = "providerAuth")]
    pub provider_auth: bool,
    #[serde(default)]
    pub def: BTreeMap<String, RestFunctionDef>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RestFunctionDef {
    pub endpoint: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub parse: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub bodyobj: Option<Value>,
    #[serde(default)]
    pub body_from_field: Option<String>,
    #[serde(default)]
    pub input_schema: Value,
}

/// One request a data-source function makes.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    pub method: String,
    /// Absolute URL.
    pub url: String,
    pub headers: BTreeMap<String, String>,
    pub body: Option<Vec<u8>>,
    /// Send through the provider, with its credentials.
    pub provider_auth: bool,
}

/// Performs data-source requests for one evaluation; blocking by design (see module docs).
pub trait Fetcher: Send + Sync {
    fn fetch(&self, req: &FetchRequest) -> Result<HttpResponse, ProviderError>;
}

/// A compiled data-source function.
pub struct RestFunction {
    pub source: String,
    pub name: String,
    def: RestFunctionDef,
    provider_auth: bool,
    schema: Option<jsonschema::Validator>,
}

/// One function of a `structured` data source: which file it reads.
#[derive(Debug, Clone)]
pub struct StructuredFunction {
    pub source: String,
    pub name: String,
    /// `file_name` first, then the `alternatives`, in order.
    pub paths: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct StructuredDataSource {
    #[serde(default)]
    def: BTreeMap<String, StructuredDef>,
}

#[derive(Debug, Deserialize)]
struct StructuredDef {
    path: StructuredPath,
}

#[derive(Debug, Deserialize)]
struct StructuredPath {
    #[serde(default)]
    file_name: String,
    #[serde(default)]
    alternatives: Vec<String>,
}

/// Why a structured data source's file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StructuredError {
    #[error("{function}: no repository files to read (the rule's ingest is not git)")]
    NoFiles { function: String },
    #[error("{function}: {path} is not JSON, YAML or TOML ({errors})")]
    Unparsable {
        function: String,
        path: String,
        errors: String,
    },
}

impl StructuredFunction {
    pub fn rego_name(&self) -> String {
        format!("minder.datasource.{}.{}", self.source, self.name)
    }

    /// The parsed contents of the first file that exists, or `null`.
    pub fn call(&self, files: Option<&crate::files::FileTree>) -> Result<Value, StructuredError> {
        let Some(files) = files else {
            return Err(StructuredError::NoFiles {
                function: self.rego_name(),
            });
        };
        let Some((path, bytes)) = self
            .paths
            .iter()
            .find_map(|p| files.read(p).map(|b| (p, b)))
        else {
            return Ok(Value::Null);
        };
        let ext = path
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        // The extension's decoder first, then the others (as Minder).
        let order = match ext.as_str() {
            "yaml" | "yml" => ["yaml", "json", "toml"],
            "toml" => ["toml", "yaml", "json"],
            _ => ["json", "yaml", "toml"],
        };
        let mut errors = Vec::new();
        for kind in order {
            let parsed = match kind {
                "json" => serde_json::from_slice::<Value>(bytes).map_err(|e| e.to_string()),
                "yaml" => serde_yaml_ng::from_slice::<Value>(bytes).map_err(|e| e.to_string()),
                _ => std::str::from_utf8(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|t| toml::from_str::<Value>(t).map_err(|e| e.to_string())),
            };
            match parsed {
                Ok(v) => return Ok(v),
                Err(e) => errors.push(format!("{kind}: {e}")),
            }
        }
        Err(StructuredError::Unparsable {
            function: self.rego_name(),
            path: path.clone(),
            errors: errors.join("; "),
        })
    }
}

/// A data-source function: a REST call, or a file of the repository parsed.
pub enum Function {
    Rest(Box<RestFunction>),
    Structured(StructuredFunction),
}

impl Function {
    pub fn rego_name(&self) -> String {
        match self {
            Function::Rest(f) => f.rego_name(),
            Function::Structured(f) => f.rego_name(),
        }
    }
}

/// Data sources by name.
#[derive(Default, Clone)]
pub struct DataSources {
    by_name: HashMap<String, Arc<Vec<Arc<Function>>>>,
}

impl DataSources {
    pub fn new() -> Self {
        DataSources::default()
    }

    /// Parses and adds one data-source document (`type: data-source`).
    pub fn add_yaml(&mut self, yaml: &str) -> Result<String, EngineError> {
        let doc: DataSourceDoc = serde_yaml_ng::from_str(yaml)
            .map_err(|e| EngineError::Parse(format!("data source: {e}")))?;
        if doc.doc_type != "data-source" {
            return Err(EngineError::Parse(format!(
                "type is {:?}, want data-source",
                doc.doc_type
            )));
        }
        if let Some(structured) = doc.structured {
            if doc.rest.is_some() {
                return Err(EngineError::Parse(format!(
                    "data source {}: rest and structured both given; a data source is one kind",
                    doc.name
                )));
            }
            let def: StructuredDataSource = serde_json::from_value(structured).map_err(|e| {
                EngineError::Parse(format!("data source {}: structured: {e}", doc.name))
            })?;
            let mut fns = Vec::new();
            for (name, d) in def.def {
                let paths: Vec<String> = std::iter::once(d.path.file_name)
                    .chain(d.path.alternatives)
                    .map(|p| p.trim_start_matches("./").to_string())
                    .filter(|p| !p.is_empty())
                    .collect();
                if paths.is_empty() {
                    return Err(EngineError::Parse(format!(
                        "data source {}.{name}: no file_name or alternatives",
                        doc.name
                    )));
                }
                fns.push(Arc::new(Function::Structured(StructuredFunction {
                    source: doc.name.clone(),
                    name,
                    paths,
                })));
            }
            self.by_name.insert(doc.name.clone(), Arc::new(fns));
            return Ok(doc.name);
        }
        let Some(rest) = doc.rest else {
            return Err(EngineError::Parse(format!(
                "data source {}: neither rest nor structured",
                doc.name
            )));
        };
        let mut fns = Vec::new();
        for (name, def) in rest.def {
            let schema = match &def.input_schema {
                Value::Null => None,
                Value::Object(m) if m.is_empty() => None,
                s => Some(jsonschema::validator_for(s).map_err(|e| {
                    EngineError::Parse(format!(
                        "data source {}.{name}: input_schema: {e}",
                        doc.name
                    ))
                })?),
            };
            fns.push(Arc::new(Function::Rest(Box::new(RestFunction {
                source: doc.name.clone(),
                name,
                def,
                provider_auth: rest.provider_auth,
                schema,
            }))));
        }
        self.by_name.insert(doc.name.clone(), Arc::new(fns));
        Ok(doc.name)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Vec<Arc<Function>>>> {
        self.by_name.get(name).cloned()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// RFC 6570 level-1/2 expansion: `{var}` (percent-encoded), `{+var}` (reserved kept).
pub fn expand_uri(
    template: &str,
    args: &serde_json::Map<String, Value>,
) -> Result<String, EngineError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(EngineError::Parse(format!(
                "uri template {template:?}: unclosed {{"
            )));
        };
        let expr = &rest[open + 1..open + close];
        let (reserved, names) = match expr.strip_prefix('+') {
            Some(n) => (true, n),
            None => (false, expr),
        };
        let mut first = true;
        for name in names.split(',') {
            let value = match args.get(name.trim()) {
                None | Some(Value::Null) => continue,
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            if !first {
                out.push(',');
            }
            first = false;
            for b in value.bytes() {
                let unreserved = b.is_ascii_alphanumeric() || b"-._~".contains(&b);
                let keep = unreserved || (reserved && b":/?#[]@!$&'()*+,;=".contains(&b));
                if keep {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Why a data-source call failed; each names the Rego function.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{function}: arguments must be an object")]
    NotAnObject { function: String },
    #[error("{function}: invalid arguments: {}", .errors.join("; "))]
    InvalidArguments {
        function: String,
        errors: Vec<String>,
    },
    #[error("{function}: {source}")]
    Endpoint {
        function: String,
        #[source]
        source: EngineError,
    },
    #[error("{function}: body field {field:?} is not a string or object")]
    BodyFieldType { function: String, field: String },
    #[error("{function}: body field {field:?} not found in arguments")]
    BodyFieldMissing { function: String, field: String },
    #[error("{function}: {source}")]
    Fetch {
        function: String,
        #[source]
        source: ProviderError,
    },
    #[error("{function}: cannot decode json: {source}")]
    Decode {
        function: String,
        #[source]
        source: serde_json::Error,
    },
}

impl RestFunction {
    /// The Rego function name.
    pub fn rego_name(&self) -> String {
        format!("minder.datasource.{}.{}", self.source, self.name)
    }

    /// Builds the request for `args` (validated against the input schema).
    pub fn request(&self, args: &Value) -> Result<FetchRequest, CallError> {
        let function = || self.rego_name();
        let Value::Object(map) = args else {
            return Err(CallError::NotAnObject {
                function: function(),
            });
        };
        if let Some(s) = &self.schema {
            let errors: Vec<String> = s.iter_errors(args).map(|e| e.to_string()).collect();
            if !errors.is_empty() {
                return Err(CallError::InvalidArguments {
                    function: function(),
                    errors,
                });
            }
        }
        let url = expand_uri(&self.def.endpoint, map).map_err(|source| CallError::Endpoint {
            function: function(),
            source,
        })?;
        let body = match (&self.def.body_from_field, &self.def.bodyobj, &self.def.body) {
            (Some(field), _, _) => match map.get(field) {
                Some(Value::String(s)) => Some(s.clone().into_bytes()),
                Some(v @ Value::Object(_)) => Some(v.to_string().into_bytes()),
                Some(_) => {
                    return Err(CallError::BodyFieldType {
                        function: function(),
                        field: field.clone(),
                    })
                }
                None => {
                    return Err(CallError::BodyFieldMissing {
                        function: function(),
                        field: field.clone(),
                    })
                }
            },
            (None, Some(obj), _) => Some(obj.to_string().into_bytes()),
            (None, None, Some(s)) if !s.is_empty() => Some(s.clone().into_bytes()),
            _ => None,
        };
        Ok(FetchRequest {
            method: self
                .def
                .method
                .clone()
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase(),
            url,
            headers: self.def.headers.clone(),
            body,
            provider_auth: self.provider_auth,
        })
    }

    /// Turns a response into Minder's `{"status_code", "body"}`.
    pub fn output(&self, resp: &HttpResponse) -> Result<Value, CallError> {
        let raw = &resp.body[..resp.body.len().min(MAX_BODY_BYTES)];
        let body = if self.def.parse.as_deref() == Some("json") {
            if raw.iter().all(u8::is_ascii_whitespace) {
                Value::Null
            } else {
                serde_json::from_slice(raw).map_err(|source| CallError::Decode {
                    function: self.rego_name(),
                    source,
                })?
            }
        } else {
            Value::String(String::from_utf8_lossy(raw).into_owned())
        };
        Ok(serde_json::json!({"status_code": resp.status, "body": body}))
    }

    /// A call: build the request, fetch it through `fetcher`, shape the output.
    pub fn call(&self, args: &Value, fetcher: &dyn Fetcher) -> Result<Value, CallError> {
        let req = self.request(args)?;
        let resp = fetcher.fetch(&req).map_err(|source| CallError::Fetch {
            function: self.rego_name(),
            source,
        })?;
        self.output(&resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    const GHAPI: &str = r#"
version: v1
type: data-source
name: ghapi
rest:
  providerAuth: true
  def:
    repo_config:
      endpoint: https://api.github.com/repos/{owner}/{repo}
      parse: json
      input_schema:
        type: object
        properties:
          owner: {type: string}
          repo: {type: string}
        required: [owner, repo]
    query:
      endpoint: https://api.osv.dev/v1/query
      method: POST
      body_from_field: query
      parse: json
      input_schema: {}
"#;

    struct Recorder(Mutex<Vec<FetchRequest>>);
    impl Fetcher for Recorder {
        fn fetch(&self, req: &FetchRequest) -> Result<HttpResponse, ProviderError> {
            if let Ok(mut v) = self.0.lock() {
                v.push(req.clone());
            }
            Ok(HttpResponse {
                status: 200,
                body: br#"{"ok": true}"#.to_vec(),
            })
        }
    }

    #[test]
    fn functions_expand_validate_and_shape_output() {
        let mut ds = DataSources::new();
        assert_eq!(ds.add_yaml(GHAPI).expect("loads"), "ghapi");
        let fns = ds.get("ghapi").expect("registered");
        let repo = fns
            .iter()
            .find_map(|f| match f.as_ref() {
                Function::Rest(r) if r.name == "repo_config" => Some(r),
                _ => None,
            })
            .expect("fn");
        let rec = Recorder(Mutex::new(vec![]));
        let out = repo
            .call(&json!({"owner": "acme", "repo": "a b"}), &rec)
            .expect("call");
        assert_eq!(out, json!({"status_code": 200, "body": {"ok": true}}));
        let sent = rec.0.lock().expect("lock")[0].clone();
        assert_eq!(
            (sent.method.as_str(), sent.url.as_str(), sent.provider_auth),
            ("GET", "https://api.github.com/repos/acme/a%20b", true)
        );
        assert!(
            repo.call(&json!({"owner": "acme"}), &rec).is_err(),
            "missing required arg"
        );
        assert!(
            repo.call(&json!("x"), &rec).is_err(),
            "args must be an object"
        );
        let q = fns
            .iter()
            .find_map(|f| match f.as_ref() {
                Function::Rest(r) if r.name == "query" => Some(r),
                _ => None,
            })
            .expect("fn");
        let r = q
            .request(&json!({"query": {"package": {"name": "x"}}}))
            .expect("request");
        assert_eq!(r.body, Some(br#"{"package":{"name":"x"}}"#.to_vec()));
        assert_eq!(r.method, "POST");
    }

    #[test]
    fn uri_templates() {
        let args = json!({"a": "x/y", "n": 3})
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(expand_uri("/p/{a}/{n}", &args).expect("ok"), "/p/x%2Fy/3");
        assert_eq!(expand_uri("/p/{+a}", &args).expect("ok"), "/p/x/y");
        assert_eq!(expand_uri("/p/{missing}", &args).expect("ok"), "/p/");
        assert!(expand_uri("/p/{a", &args).is_err());
    }
}

#[cfg(test)]
mod structured_tests {
    use super::*;
    use crate::files::{FileTree, Limits};
    use crate::{CompiledRule, Invocation, RuleType};
    use plumbline_domain::{Entity, EntityRef, EvalStatus};

    const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/minder-rules");

    fn tree(files: &[(&str, &str)]) -> FileTree {
        let mut t = FileTree::new();
        for (p, c) in files {
            t.insert(p, c.as_bytes().to_vec(), &Limits::default())
                .expect("insert");
        }
        t
    }

    #[test]
    fn every_corpus_data_source_loads() {
        let mut n = 0;
        for entry in std::fs::read_dir(format!("{CORPUS}/data-sources")).expect("corpus") {
            let path = entry.expect("entry").path();
            let yaml = std::fs::read_to_string(&path).expect("read");
            DataSources::new()
                .add_yaml(&yaml)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
        assert!(n >= 6, "{n}");
    }

    #[test]
    fn a_structured_source_reads_the_first_file_that_exists() {
        let yaml = std::fs::read_to_string(format!("{CORPUS}/data-sources/security-insights.yaml"))
            .expect("corpus");
        let mut sources = DataSources::new();
        assert_eq!(sources.add_yaml(&yaml).expect("loads"), "securityinsights");
        let f = sources.get("securityinsights").expect("functions");
        let Function::Structured(parse) = f[0].as_ref() else {
            panic!("structured");
        };
        assert_eq!(
            parse.rego_name(),
            "minder.datasource.securityinsights.parse"
        );
        // An alternative name, YAML.
        let t = tree(&[(
            "security-insights.yml",
            "header:\n  schema-version: 1.0.0\n",
        )]);
        assert_eq!(
            parse.call(Some(&t)).expect("parsed"),
            serde_json::json!({"header": {"schema-version": "1.0.0"}})
        );
        // The main name wins over an alternative.
        let t = tree(&[
            ("security-insights.yml", "a: 1\n"),
            ("SECURITY-INSIGHTS.yaml", "a: 2\n"),
        ]);
        assert_eq!(parse.call(Some(&t)).expect("parsed")["a"], 2);
        // None of them: null, as Minder.
        assert_eq!(
            parse
                .call(Some(&tree(&[("README.md", "x")])))
                .expect("null"),
            Value::Null
        );
        // Not parseable by any decoder: an error naming the file.
        let t = tree(&[("SECURITY-INSIGHTS.yaml", "a: [1\n\t{")]);
        let e = parse.call(Some(&t)).expect_err("unparsable");
        assert!(e.to_string().contains("SECURITY-INSIGHTS.yaml"), "{e}");
        // No files (the rule's ingest is not git): an error.
        assert!(parse.call(None).is_err());
    }

    #[test]
    fn a_policy_reads_a_structured_source_through_git_ingest() {
        let yaml = std::fs::read_to_string(format!("{CORPUS}/data-sources/security-insights.yaml"))
            .expect("corpus");
        let mut sources = DataSources::new();
        sources.add_yaml(&yaml).expect("loads");
        let rule = "version: v1\ntype: rule-type\nname: si\ndef:\n  in_entity: repository\n  rule_schema: {}\n  ingest:\n    type: git\n    git: {}\n  eval:\n    type: rego\n    data_sources:\n      - name: securityinsights\n    rego:\n      type: deny-by-default\n      def: |\n        package minder\n        import rego.v1\n        default allow := false\n        allow if {\n          si := minder.datasource.securityinsights.parse({})\n          si.header[\"schema-version\"] == \"1.0.0\"\n        }\n";
        let rule = CompiledRule::compile_with(RuleType::from_yaml(rule).expect("yaml"), &sources)
            .expect("compiles");
        let entity = Entity {
            entity_ref: EntityRef::repository("github", 1),
            project: "default".into(),
            owner: "o".into(),
            name: "r".into(),
            properties: serde_json::json!({"default_branch": "main"}),
            labels: vec![],
            credential: None,
        };
        let inv = Invocation {
            entity: &entity,
            params: &Value::Null,
            def: &Value::Null,
        };
        let run = |files: FileTree| {
            let ingested = crate::Ingested::new(Value::Null, Some(Arc::new(files)), String::new());
            rule.evaluate(&ingested, &inv).status
        };
        assert_eq!(
            run(tree(&[(
                "SECURITY_INSIGHTS.yml",
                "header:\n  schema-version: 1.0.0\n"
            )])),
            EvalStatus::Pass
        );
        assert_eq!(run(tree(&[("README.md", "x")])), EvalStatus::Fail);
    }
}
