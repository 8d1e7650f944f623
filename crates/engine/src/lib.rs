//! Plumbline's rule engine: Minder rule types and profiles, run unmodified.
//!
//! A rule type is compiled once ([`CompiledRule::compile`]: templates parsed, Rego compiled) and
//! then run many times. Running is split in two so callers can schedule each part well:
//! [`CompiledRule::ingest`] is I/O (provider calls), [`CompiledRule::evaluate`] is CPU-bound and
//! synchronous (callers on an async runtime put it on a blocking thread). This crate knows
//! nothing of Kafka, Postgres or the tokio runtime.

pub mod artifact;
pub mod datasource;
pub mod deps;
pub mod eval;
pub mod files;
pub mod homoglyphs;
pub mod jq;
pub mod jqlib;
pub mod model;
pub mod patch;
pub mod provider;
mod pull_diff;
pub mod rego_ext;
pub mod rego_value;
pub mod remediate;
pub mod scope;
pub mod selector;
pub mod template;
pub mod testsuite;
pub mod vulncheck;

pub use model::{Profile, ProfileRule, RuleType};
pub use provider::{HttpResponse, Provider, ProviderError};
pub use remediate::{AlertKind, PlannedFile, PlannedRequest, PullRequestPlan, Remediation};

use eval::RegoPolicy;
use files::FileTree;
use jq::JqEval;
use plumbline_domain::{Entity, EvalStatus};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use template::{Template, TemplateError};

#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum EngineError {
    #[error("parse: {0}")]
    Parse(String),
    #[error("policy: {0}")]
    Policy(String),
    #[error("{0}")]
    Template(#[from] TemplateError),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("ingest: {0}")]
    Ingest(String),
    /// A profile's `def` or `params` do not match the rule type's schema.
    #[error("invalid rule configuration: {0}")]
    Validation(String),
}

/// Why ingest could not produce input.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum IngestError {
    /// The provider is unavailable or rate limited: retry later, this says nothing of the rule.
    #[error(transparent)]
    Transient(ProviderError),
    /// The rule cannot be evaluated for this entity (bad template, HTTP error without fallback,
    /// unsupported ingest type): an `error` verdict.
    #[error(transparent)]
    Rule(EngineError),
    /// The rule is not about this entity (an artifact version its params do not choose): a
    /// `skipped` verdict, with the reason.
    #[error("not applicable: {0}")]
    NotApplicable(String),
}

/// A provider that is down or limiting us is worth trying again; any other failure is the
/// rule's `error`.
impl From<ProviderError> for IngestError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Transient { .. } => IngestError::Transient(e),
            ProviderError::Failed(m) => IngestError::Rule(EngineError::Ingest(m)),
        }
    }
}

/// The result of evaluating one rule for one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: EvalStatus,
    pub message: String,
    /// Constraint violations, one per entry.
    pub details: Vec<String>,
    /// Digest of ingested input, rule type and parameters (empty when ingest failed).
    pub input_digest: String,
    /// Where in a pull request's change each finding is (diff-based evals), for answers on the
    /// pull request itself (line comments of a review).
    pub annotations: Vec<Annotation>,
}

/// A finding at one line of a file a pull request changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Annotation {
    pub path: String,
    /// 1-based, in the head version of the file.
    pub line: u64,
    /// Whether the line is one GitHub's diff of the pull request shows (a review may comment
    /// there); false for lines of a file GitHub sent no patch for.
    pub in_diff: bool,
    pub message: String,
}

impl Outcome {
    pub fn new(status: EvalStatus, message: impl Into<String>) -> Self {
        Outcome {
            status,
            message: message.into(),
            details: vec![],
            input_digest: String::new(),
            annotations: vec![],
        }
    }

    pub fn error(e: impl std::fmt::Display) -> Self {
        Outcome::new(EvalStatus::Error, e.to_string())
    }

    /// The error Minder reports for this outcome (what upstream test cases' `error_text` holds):
    /// `evaluation failure: <message>` for a failure, the message itself otherwise.
    pub fn minder_error_text(&self) -> String {
        match self.status {
            EvalStatus::Fail => format!("evaluation failure: {}", self.message),
            _ => self.message.clone(),
        }
    }
}

/// A profile ready to apply: parsed, with its selectors compiled.
pub struct CompiledProfile {
    pub profile: Profile,
    selection: selector::Selection,
}

impl CompiledProfile {
    pub fn compile(profile: Profile) -> Result<Self, EngineError> {
        let entries: Vec<(String, String)> = profile
            .selection
            .iter()
            .map(|s| (s.entity.clone(), s.selector.clone()))
            .collect();
        let selection = selector::Selection::compile(&entries)
            .map_err(|e| EngineError::Parse(format!("profile {}: {e}", profile.name)))?;
        Ok(CompiledProfile { profile, selection })
    }

    /// Whether the profile applies to `entity` (every selector for its kind matches).
    pub fn selects(&self, entity: &Entity) -> Result<bool, EngineError> {
        self.selection
            .matches(entity.entity_ref.kind.as_str(), &selector_vars(entity))
            .map_err(|e| {
                EngineError::Policy(format!("profile {} selector: {e}", self.profile.name))
            })
    }
}

/// The entity properties Rego sees as `input.properties`: the entity's own, plus Minder's
/// standard names for repositories (`github/repo_owner`, `github/repo_name`, ...), which
/// corpus policies and data-source calls use.
pub fn minder_properties(entity: &Entity) -> Value {
    let mut p = entity.properties.as_object().cloned().unwrap_or_default();
    if entity.entity_ref.kind == plumbline_domain::EntityKind::Repository {
        let get = |k: &str| entity.properties.get(k).cloned();
        let defaults = [
            ("name", Some(Value::from(entity.full_name()))),
            (
                "upstream_id",
                Some(Value::from(entity.entity_ref.upstream_id.clone())),
            ),
            ("github/repo_owner", Some(Value::from(entity.owner.clone()))),
            ("github/repo_name", Some(Value::from(entity.name.clone()))),
            ("github/repo_id", get("repo_id")),
            ("github/default_branch", get("default_branch")),
            ("is_private", get("private")),
            ("is_fork", get("fork")),
            ("is_archived", get("archived")),
        ];
        for (k, v) in defaults {
            if let Some(v) = v {
                p.entry(k.to_string()).or_insert(v);
            }
        }
    }
    Value::Object(p)
}

/// What selectors see: `<kind>.name` (full name), `.is_private`, `.is_fork`, `.properties`,
/// and Plumbline's `.labels`.
pub fn selector_vars(entity: &Entity) -> Value {
    let p = &entity.properties;
    let mut m = serde_json::Map::new();
    m.insert(
        entity.entity_ref.kind.as_str().to_string(),
        json!({
            "name": entity.full_name(),
            "is_private": p.get("private").and_then(Value::as_bool).unwrap_or(false),
            "is_fork": p.get("fork").and_then(Value::as_bool).unwrap_or(false),
            "properties": p,
            "labels": entity.labels,
        }),
    );
    Value::Object(m)
}

/// One use of a rule: the entity, and the profile's params and def for the rule.
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    pub entity: &'a Entity,
    pub params: &'a Value,
    pub def: &'a Value,
}

/// What ingest produced, with the digest that decides whether a previous verdict can be reused.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub value: Value,
    /// The repository's files, for git ingest.
    pub files: Option<Arc<FileTree>>,
    pub digest: String,
    /// `value` converted for Rego, made on first use and kept: converting a GitHub repository
    /// object costs far more than evaluating a policy over it, so it is done once per input.
    rego_value: std::sync::OnceLock<regorus::Value>,
}

impl PartialEq for Ingested {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value && self.files == other.files && self.digest == other.digest
    }
}

impl Ingested {
    pub fn new(value: Value, files: Option<Arc<FileTree>>, digest: impl Into<String>) -> Self {
        Ingested {
            value,
            files,
            digest: digest.into(),
            rego_value: std::sync::OnceLock::new(),
        }
    }

    fn rego_value(&self) -> regorus::Value {
        self.rego_value
            .get_or_init(|| rego_value::to_rego(&self.value))
            .clone()
    }
}

enum CompiledIngest {
    Rest {
        endpoint: Template,
        method: String,
        headers: Vec<(String, Template)>,
        body: Option<Template>,
        parse_json: bool,
        fallback: Vec<(u16, String)>,
    },
    /// A branch's files; the template names the branch (default: params.branch, else the
    /// entity's default branch).
    Git {
        branch: Option<Template>,
    },
    /// A pull request's added lines (`diff` ingest, `type: full`).
    DiffFull,
    /// The dependencies a pull request adds or changes (`diff` ingest, `type: dep`), from the
    /// files of the rule's `diff.ecosystems` (`(name, depfile)`; empty: every known file).
    DiffDeps(Vec<(String, String)>),
    /// A repository's dependencies from its files (`deps` ingest).
    Deps {
        branch: Option<Template>,
    },
    /// A container image version and its Sigstore signatures (`artifact` ingest).
    Artifact,
    Unsupported(String),
}

enum CompiledEval {
    Rego(Box<RegoPolicy>),
    Jq(JqEval),
    Homoglyphs(homoglyphs::Check),
    /// Dependencies against OSV (through the data-source fetcher and its egress policy).
    Vulncheck,
    /// An eval type whose service is gone: every evaluation is an `error` saying so, before
    /// anything is read.
    Discontinued(String),
    Unsupported(String),
}

fn schema_validator(
    schema: &Value,
    what: &str,
) -> Result<Option<jsonschema::Validator>, EngineError> {
    match schema {
        Value::Null => Ok(None),
        Value::Object(m) if m.is_empty() => Ok(None),
        s => jsonschema::validator_for(s)
            .map(Some)
            .map_err(|e| EngineError::Parse(format!("{what} is not a valid JSON Schema: {e}"))),
    }
}

fn check(
    validator: &Option<jsonschema::Validator>,
    value: &Value,
    what: &str,
) -> Result<(), EngineError> {
    let Some(v) = validator else { return Ok(()) };
    let empty = Value::Object(Default::default());
    let value = if value.is_null() { &empty } else { value };
    let errors: Vec<String> = v
        .iter_errors(value)
        .map(|e| {
            let at = e.instance_path().to_string();
            let field = if at.is_empty() {
                what.to_string()
            } else {
                format!("{what}{}", at.replace('/', "."))
            };
            format!("{field}: {e}")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Validation(errors.join("; ")))
    }
}

/// A rule type ready to run.
pub struct CompiledRule {
    pub rule_type: RuleType,
    /// Content digest of the rule type (part of every input digest).
    pub digest: String,
    ingest: CompiledIngest,
    eval: CompiledEval,
    remediation: remediate::CompiledRemediation,
    rule_schema: Option<jsonschema::Validator>,
    param_schema: Option<jsonschema::Validator>,
}

/// Whether `word` occurs in `text` on its own, not inside a longer identifier.
fn names_word(text: &str, word: &str) -> bool {
    let ident = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    text.match_indices(word).any(|(i, _)| {
        !ident(text[..i].chars().next_back()) && !ident(text[i + word.len()..].chars().next())
    })
}

/// Hex sha256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of `value`'s compact JSON (as `serde_json::to_string` writes it), serialized
/// straight into the hash: no copy of the value, no string.
pub fn json_digest(value: &impl serde::Serialize) -> String {
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut h = Hashing(Sha256::new());
    // Serializing into a sink that cannot fail fails only for values JSON cannot hold (a map
    // with non-string keys), which none of the callers' types has.
    let _ = serde_json::to_writer(&mut h, value);
    hex::encode(h.0.finalize())
}

/// The digest of what a rule's verdict depends on: the [`json_digest`] of
/// `{"def", "files", "ingested", "params", "rule"}` (keys in that order, as a JSON object's are
/// kept). Building that document as a `Value` first copied the whole ingested input, and
/// measured with `evaluator_overhead` the copy and the string were 8% of the evaluator's CPU.
fn input_digest(ingested: &Value, files: &str, rule: &str, params: &Value, def: &Value) -> String {
    #[derive(serde::Serialize)]
    struct Doc<'a> {
        def: &'a Value,
        files: &'a str,
        ingested: &'a Value,
        params: &'a Value,
        rule: &'a str,
    }
    json_digest(&Doc {
        def,
        files,
        ingested,
        params,
        rule,
    })
}

impl CompiledRule {
    /// Compiles a rule type. Broken definitions (template or Rego syntax) are errors; types the
    /// engine does not implement compile into rules whose evaluation says so.
    pub fn compile(rule_type: RuleType) -> Result<Self, EngineError> {
        Self::compile_with(rule_type, &datasource::DataSources::new())
    }

    /// Compiles with the project's data sources. A data source the rule uses but `sources`
    /// lacks makes evaluation an `error` verdict naming it (the rule type still loads).
    pub fn compile_with(
        rule_type: RuleType,
        sources: &datasource::DataSources,
    ) -> Result<Self, EngineError> {
        let digest = digest(
            serde_json::to_string(&rule_type)
                .map_err(|e| EngineError::Parse(e.to_string()))?
                .as_bytes(),
        );
        let ingest = match (
            rule_type.def.ingest.kind.as_str(),
            &rule_type.def.ingest.rest,
        ) {
            ("rest", Some(rest)) => CompiledIngest::Rest {
                endpoint: Template::parse(&rest.endpoint)?,
                method: rest
                    .method
                    .clone()
                    .unwrap_or_else(|| "GET".into())
                    .to_ascii_uppercase(),
                headers: rest
                    .headers
                    .iter()
                    .flatten()
                    .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
                    .collect::<Result<_, EngineError>>()?,
                body: rest.body.as_deref().map(Template::parse).transpose()?,
                parse_json: rest.parse.as_deref() == Some("json"),
                fallback: rest
                    .fallback
                    .iter()
                    .map(|f| (f.http_code, f.body.clone()))
                    .collect(),
            },
            ("rest", None) => {
                return Err(EngineError::Parse(
                    "ingest type rest without a rest section".into(),
                ))
            }
            ("git", _) => CompiledIngest::Git {
                branch: rule_type
                    .def
                    .ingest
                    .git
                    .as_ref()
                    .and_then(|g| g.get("branch"))
                    .and_then(Value::as_str)
                    .filter(|b| !b.is_empty())
                    .map(Template::parse)
                    .transpose()?,
            },
            ("deps", _) => CompiledIngest::Deps {
                branch: rule_type
                    .def
                    .ingest
                    .deps
                    .as_ref()
                    .and_then(|g| g.get("repo"))
                    .and_then(|r| r.get("branch"))
                    .and_then(Value::as_str)
                    .filter(|b| !b.is_empty())
                    .map(Template::parse)
                    .transpose()?,
            },
            ("diff", _) => {
                if rule_type.def.in_entity != "pull_request" {
                    return Err(EngineError::Parse(format!(
                        "diff ingest reads pull requests; in_entity is {:?}",
                        rule_type.def.in_entity
                    )));
                }
                // Minder's default diff type is `dep`.
                match rule_type
                    .def
                    .ingest
                    .diff
                    .as_ref()
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("dep")
                {
                    "full" => CompiledIngest::DiffFull,
                    "dep" => CompiledIngest::DiffDeps(
                        rule_type
                            .def
                            .ingest
                            .diff
                            .as_ref()
                            .and_then(|d| d.get("ecosystems"))
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(|e| {
                                Some((
                                    e.get("name")?.as_str()?.to_string(),
                                    e.get("depfile")?.as_str()?.to_string(),
                                ))
                            })
                            .collect(),
                    ),
                    t @ "new-dep" => CompiledIngest::Unsupported(format!(
                        "diff ingest of type {t:?} is not supported yet"
                    )),
                    t => {
                        return Err(EngineError::Parse(format!(
                            "unknown diff type {t:?}: expected full, dep or new-dep"
                        )))
                    }
                }
            }
            ("artifact", _) => {
                if rule_type.def.in_entity != "artifact" {
                    return Err(EngineError::Parse(format!(
                        "artifact ingest reads artifacts; in_entity is {:?}",
                        rule_type.def.in_entity
                    )));
                }
                CompiledIngest::Artifact
            }
            (other, _) => {
                CompiledIngest::Unsupported(format!("ingest type {other:?} is not supported yet"))
            }
        };
        let eval = match (rule_type.def.eval.kind.as_str(), &rule_type.def.eval.rego) {
            ("rego", Some(r)) => {
                let mut functions = Vec::new();
                let mut missing = Vec::new();
                for name in rule_type.data_source_names() {
                    match sources.get(&name) {
                        Some(fns) => functions.extend(fns.iter().cloned()),
                        None => missing.push(name),
                    }
                }
                let policy = RegoPolicy::compile_with(
                    &r.kind,
                    &r.def,
                    r.violation_format.as_deref(),
                    &functions,
                )?;
                if missing.is_empty() {
                    CompiledEval::Rego(Box::new(policy))
                } else {
                    CompiledEval::Unsupported(format!(
                        "data source(s) not registered: {}",
                        missing.join(", ")
                    ))
                }
            }
            ("rego", None) => {
                return Err(EngineError::Parse(
                    "eval type rego without a rego section".into(),
                ))
            }
            ("jq", _) => CompiledEval::Jq(JqEval::compile(
                rule_type.def.eval.jq.as_deref().unwrap_or_default(),
            )?),
            ("homoglyphs", _) => {
                let kind = rule_type
                    .def
                    .eval
                    .homoglyphs
                    .as_ref()
                    .and_then(|d| d.get("type"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        EngineError::Parse(
                            "eval type homoglyphs without homoglyphs.type (invisible_characters or mixed_scripts)"
                                .into(),
                        )
                    })?;
                CompiledEval::Homoglyphs(
                    kind.parse()
                        .map_err(|e: homoglyphs::UnknownCheck| EngineError::Parse(e.to_string()))?,
                )
            }
            ("vulncheck", _) => CompiledEval::Vulncheck,
            ("trusty", _) => CompiledEval::Discontinued(
                "the trusty eval queried Stacklok's Trusty package-reputation service, which has been discontinued: this rule cannot be evaluated (remove it, or check dependencies with a vulncheck rule such as pr_vulnerability_check)"
                    .into(),
            ),
            (other, _) => {
                CompiledEval::Unsupported(format!("eval type {other:?} is not supported yet"))
            }
        };
        let remediation =
            remediate::CompiledRemediation::compile(rule_type.def.remediate.as_ref())?;
        let rule_schema = schema_validator(&rule_type.def.rule_schema, "rule_schema")?;
        let param_schema = schema_validator(&rule_type.def.param_schema, "param_schema")?;
        Ok(CompiledRule {
            rule_type,
            digest,
            ingest,
            eval,
            remediation,
            rule_schema,
            param_schema,
        })
    }

    pub fn name(&self) -> &str {
        &self.rule_type.name
    }

    /// Checks a profile's `def` against `rule_schema` and its `params` against `param_schema`;
    /// the error names the offending field (e.g. `def.required_approving_review_count`).
    pub fn validate(&self, def: &Value, params: &Value) -> Result<(), EngineError> {
        check(&self.rule_schema, def, "def")?;
        check(&self.param_schema, params, "params")
    }

    fn branch(
        &self,
        data: &Value,
        inv: &Invocation<'_>,
        template: Option<&Template>,
    ) -> Result<String, EngineError> {
        if let Some(t) = template {
            let b = t.render(data)?;
            if !b.is_empty() {
                return Ok(b);
            }
        }
        Ok(match data["Params"].get("branch").and_then(Value::as_str) {
            Some(b) if !b.is_empty() => b.to_string(),
            _ => inv.entity.default_branch().unwrap_or("main").to_string(),
        })
    }

    /// The data templates see: `.Entity`, `.Params` (defaults from `param_schema` under the
    /// profile's params) and `.Profile` (the profile's `def` for the rule).
    pub fn template_data(&self, inv: &Invocation<'_>) -> Value {
        let mut params = self.rule_type.param_defaults();
        if let Some(p) = inv.params.as_object() {
            for (k, v) in p {
                params.insert(k.clone(), v.clone());
            }
        }
        let e = inv.entity;
        let props = &e.properties;
        json!({
            "Entity": {
                "Owner": e.owner,
                "Name": e.name,
                "RepoId": props.get("repo_id").cloned().unwrap_or_else(|| Value::from(e.entity_ref.upstream_id.parse::<i64>().unwrap_or(0))),
                "DefaultBranch": e.default_branch().unwrap_or(""),
                "IsPrivate": props.get("private").and_then(Value::as_bool).unwrap_or(false),
                "IsFork": props.get("fork").and_then(Value::as_bool).unwrap_or(false),
                "Properties": props,
            },
            "Params": Value::Object(params),
            "Profile": if inv.def.is_null() { json!({}) } else { inv.def.clone() },
        })
    }

    /// Reads the live state the rule needs, through `provider`.
    pub async fn ingest(
        &self,
        inv: &Invocation<'_>,
        provider: &dyn Provider,
    ) -> Result<Ingested, IngestError> {
        if let CompiledEval::Discontinued(why) = &self.eval {
            return Err(IngestError::Rule(EngineError::Unsupported(why.clone())));
        }
        let mut files = None;
        let value = match &self.ingest {
            CompiledIngest::Unsupported(why) => {
                return Err(IngestError::Rule(EngineError::Unsupported(why.clone())))
            }
            CompiledIngest::DiffFull => pull_diff::full(provider, inv.entity).await?,
            CompiledIngest::Artifact => artifact::ingest(provider, inv.entity, inv.params).await?,
            CompiledIngest::DiffDeps(ecosystems) => {
                pull_diff::deps(provider, inv.entity, ecosystems).await?
            }
            CompiledIngest::Deps { branch } | CompiledIngest::Git { branch } => {
                let data = self.template_data(inv);
                let branch = self
                    .branch(&data, inv, branch.as_ref())
                    .map_err(IngestError::Rule)?;
                let tree = provider
                    .fetch_tree(&inv.entity.owner, &inv.entity.name, &branch)
                    .await
                    .map_err(IngestError::from)?;
                // Minder's git ingester produces files only (policies reach them through the
                // file.* functions); deps ingest, the dependencies found in them too.
                let value = match &self.ingest {
                    CompiledIngest::Deps { .. } => pull_diff::repository_deps(&tree)?,
                    _ => Value::Null,
                };
                files = Some(tree);
                value
            }
            CompiledIngest::Rest {
                endpoint,
                method,
                headers,
                body,
                parse_json,
                fallback,
            } => {
                // Evaluation only reads: a rule type cannot change anything with the provider's
                // credentials behind the back of dry-run, the content budget and idempotency.
                if method != "GET" && method != "HEAD" {
                    return Err(IngestError::Rule(EngineError::Ingest(format!(
                        "rest ingest may only read (GET or HEAD); {method} is refused during evaluation"
                    ))));
                }
                let data = self.template_data(inv);
                let path = endpoint
                    .render_url(&data)
                    .map_err(|e| IngestError::Rule(e.into()))?;
                let path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
                if let Some(roots) = provider.entity_scope(inv.entity) {
                    scope::confine(&path, &roots).map_err(|e| {
                        IngestError::Rule(EngineError::Ingest(format!("rest ingest endpoint {e}")))
                    })?;
                }
                let body = match body {
                    Some(t) => {
                        let s = t.render(&data).map_err(|e| IngestError::Rule(e.into()))?;
                        Some(serde_json::from_str(&s).unwrap_or(Value::String(s)))
                    }
                    None => None,
                };
                let headers = headers
                    .iter()
                    .map(|(k, t)| Ok((k.clone(), t.render(&data)?)))
                    .collect::<Result<Vec<_>, TemplateError>>()
                    .map_err(|e| IngestError::Rule(e.into()))?;
                let resp = provider
                    .request_with_headers(method, &path, body.as_ref(), &headers)
                    .await
                    .map_err(IngestError::from)?;
                let raw = match fallback.iter().find(|(code, _)| *code == resp.status) {
                    Some((_, fb)) => fb.as_bytes().to_vec(),
                    None if (200..300).contains(&resp.status) => resp.body,
                    None => {
                        return Err(IngestError::Rule(EngineError::Ingest(format!(
                            "{method} {path}: unexpected status {}",
                            resp.status
                        ))))
                    }
                };
                if *parse_json {
                    if raw.iter().all(u8::is_ascii_whitespace) {
                        Value::Null
                    } else {
                        serde_json::from_slice(&raw).map_err(|e| {
                            IngestError::Rule(EngineError::Ingest(format!(
                                "{path}: invalid json: {e}"
                            )))
                        })?
                    }
                } else {
                    Value::String(String::from_utf8_lossy(&raw).into_owned())
                }
            }
        };
        let digest = self.input_digest(&value, files.as_deref(), inv);
        Ok(Ingested::new(value, files, digest))
    }

    fn input_digest(
        &self,
        ingested: &Value,
        files: Option<&FileTree>,
        inv: &Invocation<'_>,
    ) -> String {
        let files = files.map(FileTree::digest).unwrap_or_default();
        input_digest(ingested, &files, &self.digest, inv.params, inv.def)
    }

    /// Judges ingested input. CPU-bound and synchronous. Data-source calls fail.
    pub fn evaluate(&self, ingested: &Ingested, inv: &Invocation<'_>) -> Outcome {
        self.evaluate_with(ingested, inv, None)
    }

    /// Like [`evaluate`](Self::evaluate), with `fetcher` serving the rule's data-source calls
    /// (it blocks: run this on a thread that may block).
    pub fn evaluate_with(
        &self,
        ingested: &Ingested,
        inv: &Invocation<'_>,
        fetcher: Option<Arc<dyn datasource::Fetcher>>,
    ) -> Outcome {
        let mut outcome = match &self.eval {
            CompiledEval::Unsupported(why) | CompiledEval::Discontinued(why) => {
                Outcome::error(EngineError::Unsupported(why.clone()))
            }
            CompiledEval::Homoglyphs(check) => pull_diff::homoglyphs(*check, &ingested.value),
            CompiledEval::Vulncheck => match &fetcher {
                Some(f) => pull_diff::vulncheck(f.as_ref(), &ingested.value, inv.def),
                None => Outcome::error(EngineError::Unsupported(
                    "vulncheck queries a vulnerability database, and this evaluation has no HTTP client"
                        .into(),
                )),
            },
            CompiledEval::Rego(p) => {
                let mut input = std::collections::BTreeMap::new();
                input.insert(regorus::Value::from("ingested"), ingested.rego_value());
                input.insert(
                    regorus::Value::from("profile"),
                    if inv.def.is_null() {
                        regorus::Value::new_object()
                    } else {
                        rego_value::to_rego(inv.def)
                    },
                );
                input.insert(
                    regorus::Value::from("properties"),
                    rego_value::to_rego(&minder_properties(inv.entity)),
                );
                let input = regorus::Value::from(input);
                let env = rego_ext::EvalEnv {
                    files: ingested.files.clone(),
                    fetcher,
                };
                rego_ext::with_env(env, || {
                    p.evaluate_value(input, &self.rule_type.short_failure_message)
                })
            }
            CompiledEval::Jq(j) => j.evaluate(&ingested.value, inv.def),
        };
        outcome.input_digest = ingested.digest.clone();
        outcome
    }

    /// Ingest and evaluate; ingest errors that are the rule's become `error` outcomes.
    pub async fn run(
        &self,
        inv: &Invocation<'_>,
        provider: &dyn Provider,
    ) -> Result<Outcome, ProviderError> {
        match self.ingest(inv, provider).await {
            Ok(i) => Ok(self.evaluate(&i, inv)),
            Err(IngestError::Rule(e)) => Ok(Outcome::error(e)),
            Err(IngestError::NotApplicable(why)) => Ok(Outcome::new(EvalStatus::Skipped, why)),
            Err(IngestError::Transient(e)) => Err(e),
        }
    }

    /// Whether the verdict is a function of the input digest alone, so a stored verdict with
    /// the same digest can stand for a new evaluation: not when the policy calls data sources
    /// (their answers are not in the digest) or reads the clock.
    pub fn verdict_reusable(&self) -> bool {
        let reads_clock = self
            .rule_type
            .def
            .eval
            .rego
            .as_ref()
            .is_some_and(|r| r.def.contains("time.now"))
            // jq's `now`: any jq expression naming it as a word (a false match, in a string,
            // only costs a re-evaluation).
            || self.rule_type.def.eval.jq.as_ref().is_some_and(|jq| {
                jq.iter().any(|e| names_word(&e.to_string(), "now"))
            });
        self.rule_type.data_source_names().is_empty()
            && !reads_clock
            && !matches!(
                self.eval,
                // A vulnerability database learns of new advisories: asked again each time.
                CompiledEval::Unsupported(_)
                    | CompiledEval::Discontinued(_)
                    | CompiledEval::Vulncheck
            )
    }

    /// The rule's remediation type, if it has one.
    pub fn remediation_type(&self) -> Option<&str> {
        self.rule_type
            .def
            .remediate
            .as_ref()
            .map(|r| r.kind.as_str())
    }

    /// Plans the remediation against live state. `Ok(None)`: nothing to change (the branch
    /// protection already has what the patch sets).
    pub async fn plan_remediation(
        &self,
        inv: &Invocation<'_>,
        provider: &dyn Provider,
    ) -> Result<Option<Remediation>, IngestError> {
        use remediate::CompiledRemediation as R;
        let rule = |e: EngineError| IngestError::Rule(e);
        let data = self.template_data(inv);
        let render = |t: &Template| t.render(&data).map_err(|e| IngestError::Rule(e.into()));
        match &self.remediation {
            R::None => Err(rule(EngineError::Unsupported(format!(
                "rule type {} has no remediation",
                self.name()
            )))),
            R::Unsupported(why) => Err(rule(EngineError::Unsupported(why.clone()))),
            R::Rest {
                method,
                endpoint,
                body,
            } => {
                let path = endpoint
                    .render_url(&data)
                    .map_err(|e| IngestError::Rule(e.into()))?;
                let path = if path.starts_with('/') {
                    path
                } else {
                    format!("/{path}")
                };
                if let Some(roots) = provider.entity_scope(inv.entity) {
                    scope::confine(&path, &roots).map_err(|e| {
                        rule(EngineError::Parse(format!("rest remediation endpoint {e}")))
                    })?;
                }
                let body = match body {
                    None => None,
                    Some(t) => {
                        let text = render(t)?;
                        if text.trim().is_empty() {
                            None
                        } else {
                            Some(serde_json::from_str(&text).map_err(|e| {
                                rule(EngineError::Parse(format!(
                                    "rest remediation body is not json: {e}"
                                )))
                            })?)
                        }
                    }
                };
                Ok(Some(Remediation::Request(PlannedRequest {
                    method: method.clone(),
                    path,
                    body,
                })))
            }
            R::PullRequest {
                title,
                body,
                contents,
            } => {
                let mut files = Vec::new();
                for (path, content, mode) in contents {
                    let path = render(path)?.trim().trim_start_matches('/').to_string();
                    if path.is_empty()
                        || path
                            .split('/')
                            .any(|s| s.is_empty() || s == "." || s == "..")
                    {
                        return Err(rule(EngineError::Parse(format!(
                            "pull_request remediation: {path:?} is not a file path"
                        ))));
                    }
                    files.push(PlannedFile {
                        path,
                        mode: mode.clone(),
                        content: render(content)?,
                    });
                }
                let base = self.branch(&data, inv, None).map_err(rule)?;
                Ok(Some(Remediation::PullRequest(PullRequestPlan {
                    title: render(title)?,
                    body: render(body)?,
                    base,
                    files,
                })))
            }
            R::BranchProtection { patch } => {
                let patch_s = render(patch)?;
                let patch: Value = serde_json::from_str(&patch_s).map_err(|e| {
                    rule(EngineError::Parse(format!(
                        "gh_branch_protection patch is not json: {e}"
                    )))
                })?;
                let branch = self.branch(&data, inv, None).map_err(rule)?;
                let path = Template::parse("/repos/{{.O}}/{{.N}}/branches/{{.B}}/protection")
                    .and_then(|t| {
                        t.render_url(
                            &json!({"O": inv.entity.owner, "N": inv.entity.name, "B": branch}),
                        )
                    })
                    .map_err(|e| rule(e.into()))?;
                if let Some(roots) = provider.entity_scope(inv.entity) {
                    scope::confine(&path, &roots).map_err(|e| {
                        rule(EngineError::Parse(format!("gh_branch_protection {e}")))
                    })?;
                }
                let resp = provider
                    .request("GET", &path, None)
                    .await
                    .map_err(IngestError::from)?;
                let current: Option<Value> = match resp.status {
                    404 => None,
                    200 => Some(serde_json::from_slice(&resp.body).map_err(|e| {
                        rule(EngineError::Ingest(format!("{path}: invalid json: {e}")))
                    })?),
                    s => {
                        return Err(rule(EngineError::Ingest(format!(
                            "GET {path}: unexpected status {s}"
                        ))))
                    }
                };
                Ok(
                    remediate::plan_branch_protection(&path, current.as_ref(), &patch)
                        .map(Remediation::Request),
                )
            }
        }
    }

    /// The rule type's alert: `None` when it has none; an error for an alert type Plumbline
    /// cannot open.
    pub fn alert_kind(&self) -> Option<Result<AlertKind, EngineError>> {
        let a = self.rule_type.def.alert.as_ref()?;
        Some(match a.kind.as_str() {
            "security_advisory" => Ok(AlertKind::SecurityAdvisory),
            "issue" => Ok(AlertKind::Issue),
            other => Err(EngineError::Unsupported(format!(
                "alert type {other:?} is not supported"
            ))),
        })
    }

    /// The advisory severity GitHub takes (`low`, `medium`, `high`, `critical`) for the rule
    /// type's Minder severity (`unknown`, `info`, `low`, `medium`, `high`, `critical`).
    pub fn alert_severity(&self) -> &'static str {
        match self
            .rule_type
            .severity
            .as_ref()
            .map(|s| s.value.to_ascii_lowercase())
            .as_deref()
        {
            Some("critical") => "critical",
            Some("high") => "high",
            Some("medium") => "medium",
            _ => "low",
        }
    }
}

#[cfg(test)]
mod word_tests {
    #[test]
    fn input_digest_is_the_digest_of_the_document() {
        use serde_json::json;
        let ingested = json!({"z": [1, 2.5, "é\"\n"], "a": {"b": null, "A": true}});
        let (params, def) = (json!({"branch": "main"}), json!(null));
        let doc =
            json!({"ingested": ingested, "files": "f", "rule": "r", "params": params, "def": def});
        assert_eq!(
            super::input_digest(&ingested, "f", "r", &params, &def),
            super::digest(doc.to_string().as_bytes())
        );
    }

    use super::names_word;

    #[test]
    fn the_clock_is_found_as_a_word_only() {
        assert!(names_word(".created | now - . > 86400", "now"));
        assert!(names_word("(now)", "now"));
        assert!(!names_word(".known_issues | length", "now"));
        assert!(!names_word(".snow_day", "now"));
        assert!(!names_word("nowhere", "now"));
    }
}
