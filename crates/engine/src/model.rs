//! Minder's rule-type and profile YAML, as data.
//!
//! Fields the engine acts on are typed; schemas and rule definitions stay JSON values because
//! they are user data. Unknown fields are accepted (Minder's format grows; a rule type written
//! for a newer Minder should still load and say what it cannot run, not fail to parse).

use crate::EngineError;
use plumbline_domain::{ActionMode, EntityKind};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RuleType {
    pub version: String,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub short_failure_message: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub guidance: String,
    #[serde(default)]
    pub release_phase: String,
    #[serde(default)]
    pub severity: Option<Severity>,
    #[serde(default)]
    pub context: Option<Context>,
    pub def: RuleTypeDef,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct Severity {
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
pub struct Context {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RuleTypeDef {
    pub in_entity: String,
    #[serde(default)]
    pub rule_schema: Value,
    #[serde(default)]
    pub param_schema: Value,
    pub ingest: Ingest,
    pub eval: Eval,
    #[serde(default)]
    pub remediate: Option<Remediate>,
    #[serde(default)]
    pub alert: Option<Alert>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Ingest {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub rest: Option<RestIngest>,
    #[serde(default)]
    pub git: Option<Value>,
    /// `diff` ingest (pull requests): `{type: full | dep | new-dep}`.
    #[serde(default)]
    pub diff: Option<Value>,
    /// `deps` ingest (repositories): `{repo: {branch}}`.
    #[serde(default)]
    pub deps: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RestIngest {
    pub endpoint: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub parse: Option<String>,
    #[serde(default)]
    pub fallback: Vec<Fallback>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Fallback {
    pub http_code: u16,
    #[serde(default)]
    pub body: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Eval {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub rego: Option<RegoEval>,
    #[serde(default)]
    pub jq: Option<Vec<Value>>,
    #[serde(default)]
    pub data_sources: Option<Vec<Value>>,
    /// `homoglyphs` eval: `{type: invisible_characters | mixed_scripts}`.
    #[serde(default)]
    pub homoglyphs: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RegoEval {
    #[serde(rename = "type")]
    pub kind: String,
    pub def: String,
    #[serde(default)]
    pub violation_format: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Remediate {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub gh_branch_protection: Option<BranchProtectionRemediation>,
    #[serde(default)]
    pub rest: Option<Value>,
    #[serde(default)]
    pub pull_request: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct BranchProtectionRemediation {
    /// A Go template producing a JSON merge-patch over the branch's protection.
    pub patch: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Alert {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub security_advisory: Option<Value>,
}

impl RuleType {
    pub fn from_yaml(yaml: &str) -> Result<Self, EngineError> {
        let rt: RuleType =
            serde_yaml_ng::from_str(yaml).map_err(|e| EngineError::Parse(e.to_string()))?;
        if rt.doc_type != "rule-type" && rt.doc_type != "rule_type" {
            return Err(EngineError::Parse(format!(
                "type is {:?}, want rule-type",
                rt.doc_type
            )));
        }
        if rt.name.is_empty() {
            return Err(EngineError::Parse("rule type has no name".into()));
        }
        Ok(rt)
    }

    pub fn entity_kind(&self) -> Result<EntityKind, EngineError> {
        self.def
            .in_entity
            .parse()
            .map_err(|e: plumbline_domain::DomainError| EngineError::Parse(e.to_string()))
    }

    /// Names of the data sources the rule's evaluation calls (`eval.data_sources[].name`).
    pub fn data_source_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .def
            .eval
            .data_sources
            .iter()
            .flatten()
            .filter_map(|d| d.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The parameter defaults from `param_schema` (`properties.*.default`), over which a
    /// profile's params are laid.
    pub fn param_defaults(&self) -> serde_json::Map<String, Value> {
        let mut out = serde_json::Map::new();
        if let Some(props) = self
            .def
            .param_schema
            .get("properties")
            .and_then(Value::as_object)
        {
            for (k, v) in props {
                if let Some(d) = v.get("default") {
                    out.insert(k.clone(), d.clone());
                }
            }
        }
        out
    }
}

/// One rule in a profile.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProfileRule {
    /// The rule type's name.
    #[serde(rename = "type")]
    pub rule_type: String,
    /// The rule's own name in the profile (Minder allows one rule type several times).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub def: Value,
    #[serde(default, rename = "displayName")]
    pub display_name: Option<String>,
}

impl ProfileRule {
    pub fn rule_name(&self) -> &str {
        self.name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.rule_type)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Selection {
    pub entity: String,
    pub selector: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Profile {
    pub version: String,
    #[serde(rename = "type")]
    pub doc_type: String,
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub context: Option<Context>,
    #[serde(default)]
    pub remediate: Option<String>,
    #[serde(default)]
    pub alert: Option<String>,
    #[serde(default)]
    pub labels: Vec<String>,
    #[serde(default)]
    pub selection: Vec<Selection>,
    #[serde(default)]
    pub repository: Vec<ProfileRule>,
    #[serde(default)]
    pub pull_request: Vec<ProfileRule>,
    #[serde(default)]
    pub artifact: Vec<ProfileRule>,
    #[serde(default)]
    pub release: Vec<ProfileRule>,
}

impl Profile {
    pub fn from_yaml(yaml: &str) -> Result<Self, EngineError> {
        let p: Profile =
            serde_yaml_ng::from_str(yaml).map_err(|e| EngineError::Parse(e.to_string()))?;
        if p.doc_type != "profile" {
            return Err(EngineError::Parse(format!(
                "type is {:?}, want profile",
                p.doc_type
            )));
        }
        if p.name.is_empty() {
            return Err(EngineError::Parse("profile has no name".into()));
        }
        p.remediate_mode()?;
        p.alert_mode()?;
        Ok(p)
    }

    /// Minder's default: remediation off unless the profile says otherwise.
    pub fn remediate_mode(&self) -> Result<ActionMode, EngineError> {
        mode(self.remediate.as_deref(), ActionMode::Off, "remediate")
    }

    /// Minder's default: alerts on unless the profile says otherwise.
    pub fn alert_mode(&self) -> Result<ActionMode, EngineError> {
        mode(self.alert.as_deref(), ActionMode::On, "alert")
    }

    pub fn rules_for(&self, kind: EntityKind) -> &[ProfileRule] {
        match kind {
            EntityKind::Repository => &self.repository,
            EntityKind::PullRequest => &self.pull_request,
            EntityKind::Artifact => &self.artifact,
            EntityKind::Release => &self.release,
        }
    }

    /// Every rule type the profile uses, once each.
    pub fn rule_type_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = [
            &self.repository,
            &self.pull_request,
            &self.artifact,
            &self.release,
        ]
        .into_iter()
        .flatten()
        .map(|r| r.rule_type.as_str())
        .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

fn mode(v: Option<&str>, default: ActionMode, field: &str) -> Result<ActionMode, EngineError> {
    match v {
        None => Ok(default),
        Some(s) => s.parse().map_err(|e: plumbline_domain::DomainError| {
            EngineError::Parse(format!("{field}: {e}"))
        }),
    }
}
