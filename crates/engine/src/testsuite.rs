//! Minder's rule-type test suites (`X.test.yaml` beside `X.yaml`, fixtures in `X.testdata/`),
//! and the runner behind `plumb ruletype test`.
//!
//! Matching, as upstream's own runner effectively does: `pass` needs pass, `skip` needs skip,
//! `error` needs error, and `fail` accepts fail *or* error, because upstream cases say `fail` for
//! provider errors (a 500 without a fallback) that Minder reports as errors. `error_text`, where
//! given, must equal Minder's message (`evaluation failure: …`), trailing whitespace aside.

use crate::files::{FileTree, Limits};
use crate::provider::{HttpResponse, Provider, ProviderError};
use crate::{CompiledRule, EngineError, Invocation, Outcome, RuleType};
use async_trait::async_trait;
use plumbline_domain::{Entity, EntityKind, EntityRef, EvalStatus};
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Clone, Deserialize)]
pub struct TestFile {
    #[serde(default)]
    pub tests: Vec<TestCase>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TestCase {
    pub name: String,
    #[serde(default)]
    pub def: Value,
    #[serde(default)]
    pub params: Value,
    #[serde(default)]
    pub entity: Option<TestEntity>,
    pub expect: String,
    #[serde(default)]
    pub error_text: Option<String>,
    #[serde(default)]
    pub http: Option<HttpFixture>,
    #[serde(default)]
    pub git: Option<GitFixture>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TestEntity {
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub entity: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct HttpFixture {
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub body_file: Option<String>,
    #[serde(default)]
    pub headers: Option<serde_json::Map<String, Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitFixture {
    pub repo_base: String,
}

/// One case's result.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    pub rule: String,
    pub case: String,
    pub expected: String,
    /// pass, fail, skip or error.
    pub actual: String,
    pub message: String,
    pub passed: bool,
    /// Why a case did not pass beyond the outcome (e.g. error text mismatch).
    pub note: Option<String>,
}

impl CaseResult {
    /// `PASS rule/case (expected fail, got error)`.
    pub fn line(&self) -> String {
        let mut l = format!(
            "{} {}/{} (expected {}, got {})",
            if self.passed { "PASS" } else { "FAIL" },
            self.rule,
            self.case,
            self.expected,
            self.actual
        );
        if !self.passed {
            if let Some(n) = &self.note {
                l.push_str(&format!(": {n}"));
            } else if !self.message.is_empty() {
                l.push_str(&format!(": {}", self.message.lines().next().unwrap_or("")));
            }
        }
        l
    }
}

/// Answers rest ingest from a case's `http` fixture, and git ingest from its `repo_base`.
struct FixtureProvider {
    http: Option<HttpResponse>,
    tree: Option<Arc<FileTree>>,
}

#[async_trait]
impl Provider for FixtureProvider {
    async fn request(
        &self,
        _method: &str,
        _path: &str,
        _body: Option<&Value>,
    ) -> Result<HttpResponse, ProviderError> {
        self.http
            .clone()
            .ok_or_else(|| ProviderError::Failed("the test case has no http fixture".into()))
    }

    async fn request_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        _headers: &[(String, String)],
    ) -> Result<HttpResponse, ProviderError> {
        self.request(method, path, body).await
    }

    async fn fetch_tree(
        &self,
        _owner: &str,
        _repo: &str,
        _branch: &str,
    ) -> Result<Arc<FileTree>, ProviderError> {
        self.tree
            .clone()
            .ok_or_else(|| ProviderError::Failed("the test case has no git fixture".into()))
    }

    /// Fixtures answer every path and reach no API (GitLab rule types address `/projects/…`).
    fn entity_scope(&self, _entity: &Entity) -> Option<Vec<String>> {
        None
    }
}

fn outcome_word(s: EvalStatus) -> &'static str {
    match s {
        EvalStatus::Pass => "pass",
        EvalStatus::Fail => "fail",
        EvalStatus::Skipped => "skip",
        EvalStatus::Error => "error",
    }
}

/// Whether `actual` satisfies `expected` under the matching rules above.
pub fn outcome_matches(expected: &str, actual: EvalStatus) -> bool {
    match expected {
        "pass" => actual == EvalStatus::Pass,
        "skip" => actual == EvalStatus::Skipped,
        "error" => actual == EvalStatus::Error,
        "fail" => matches!(actual, EvalStatus::Fail | EvalStatus::Error),
        _ => false,
    }
}

/// The entity a case describes (`entity.entity` uses Minder's protobuf field names).
fn case_entity(tc: &TestCase) -> Entity {
    let fields = tc
        .entity
        .as_ref()
        .map(|e| e.entity.clone())
        .unwrap_or_default();
    let s = |k: &str| {
        fields
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut props = serde_json::Map::new();
    for (k, v) in &fields {
        let key = match k.as_str() {
            "is_private" => "private",
            "is_fork" => "fork",
            other => other,
        };
        props.insert(key.to_string(), v.clone());
    }
    props
        .entry("default_branch")
        .or_insert_with(|| Value::from("main"));
    let kind = tc
        .entity
        .as_ref()
        .and_then(|e| e.kind.as_deref())
        .and_then(|k| k.parse().ok())
        .unwrap_or(EntityKind::Repository);
    let repo_id = fields.get("repo_id").and_then(Value::as_u64).unwrap_or(1);
    Entity {
        entity_ref: EntityRef {
            provider: "github".into(),
            kind,
            upstream_id: repo_id.to_string(),
        },
        project: "default".into(),
        credential: None,
        owner: if s("owner").is_empty() {
            "owner".into()
        } else {
            s("owner")
        },
        name: if s("name").is_empty() {
            "repo".into()
        } else {
            s("name")
        },
        properties: Value::Object(props),
        labels: vec![],
    }
}

/// Why a suite could not be found or a case's fixture read.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no test file beside it ({{name}}.test.yaml)", .0.display())]
    NoTestFile(PathBuf),
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
}

fn http_fixture(h: &HttpFixture, testdata: &Path) -> Result<HttpResponse, SuiteError> {
    let body = match (&h.body, &h.body_file) {
        (Some(b), _) => b.as_bytes().to_vec(),
        (None, Some(f)) => {
            let path = testdata.join(f);
            std::fs::read(&path).map_err(|source| SuiteError::Read { path, source })?
        }
        (None, None) => vec![],
    };
    Ok(HttpResponse {
        status: h.status.unwrap_or(200),
        body,
    })
}

/// Runs one case. `fixtures` is the folder fixture paths are relative to (`X.testdata/`).
pub async fn run_case(rule: &CompiledRule, tc: &TestCase, fixtures: &Path) -> CaseResult {
    let mut r = CaseResult {
        rule: rule.name().to_string(),
        case: tc.name.clone(),
        expected: tc.expect.clone(),
        actual: String::new(),
        message: String::new(),
        passed: false,
        note: None,
    };
    let http = match tc
        .http
        .as_ref()
        .map(|h| http_fixture(h, fixtures))
        .transpose()
    {
        Ok(h) => h,
        Err(e) => {
            r.actual = "error".into();
            r.note = Some(e.to_string());
            return r;
        }
    };
    let tree = match &tc.git {
        Some(g) => match FileTree::from_dir(&fixtures.join(&g.repo_base), &Limits::default()) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                r.actual = "error".into();
                r.note = Some(format!("repo_base {}: {e}", g.repo_base));
                return r;
            }
        },
        None => None,
    };
    let provider = FixtureProvider { http, tree };
    let entity = case_entity(tc);
    let inv = Invocation {
        entity: &entity,
        params: &tc.params,
        def: &tc.def,
    };
    let outcome = match rule.validate(&tc.def, &tc.params) {
        Err(e) => Outcome::error(e),
        Ok(()) => match rule.run(&inv, &provider).await {
            Ok(o) => o,
            Err(e) => Outcome::error(e),
        },
    };
    r.actual = outcome_word(outcome.status).to_string();
    r.message = outcome.message.clone();
    r.passed = outcome_matches(&tc.expect, outcome.status);
    if let (true, Some(want)) = (r.passed, &tc.error_text) {
        let got = outcome.minder_error_text();
        if got.trim_end() != want.trim_end() {
            r.passed = false;
            r.note = Some(format!("error text {got:?}, want {want:?}"));
        }
    }
    r
}

/// A rule type file and the test file whose cases run against it.
#[derive(Debug, Clone)]
pub struct Suite {
    pub rule_type: PathBuf,
    pub tests: PathBuf,
}

impl Suite {
    /// Fixtures of `X.test.yaml` live in `X.testdata/` beside it.
    pub fn fixtures(&self) -> PathBuf {
        let name = self
            .tests
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let stem = name
            .strip_suffix(".test.yaml")
            .or_else(|| name.strip_suffix(".test.yml"))
            .unwrap_or(name);
        self.tests.with_file_name(format!("{stem}.testdata"))
    }
}

/// Every `X.yaml` with an `X.test.yaml` beside it, under each path (a file or a folder
/// searched recursively), in path order.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<Suite>, SuiteError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let rd = std::fs::read_dir(&dir).map_err(|source| SuiteError::Read {
                    path: dir.clone(),
                    source,
                })?;
                for entry in rd.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if let Some(s) = suite_for(&path) {
                        out.push(s);
                    }
                }
            }
        } else if p.is_file() {
            match suite_for(p) {
                Some(s) => out.push(s),
                None => return Err(SuiteError::NoTestFile(p.clone())),
            }
        } else {
            return Err(SuiteError::NotFound(p.clone()));
        }
    }
    out.sort_by(|a, b| a.rule_type.cmp(&b.rule_type));
    Ok(out)
}

fn suite_for(path: &Path) -> Option<Suite> {
    let name = path.file_name()?.to_str()?;
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))?;
    if stem.ends_with(".test") || name.contains(".no-datasource-test") {
        return None;
    }
    let tests = path.with_file_name(format!("{stem}.test.yaml"));
    tests.is_file().then(|| Suite {
        rule_type: path.to_path_buf(),
        tests,
    })
}

/// Loads and compiles a rule type file.
pub fn load_rule_type(path: &Path) -> Result<CompiledRule, EngineError> {
    let yaml = std::fs::read_to_string(path)
        .map_err(|e| EngineError::Parse(format!("{}: {e}", path.display())))?;
    CompiledRule::compile(RuleType::from_yaml(&yaml)?)
}

/// Runs every case of `suite`. A rule type or test file that does not load is one failed case.
pub async fn run_suite(suite: &Suite) -> Vec<CaseResult> {
    let fail = |case: &str, note: String| {
        vec![CaseResult {
            rule: suite.rule_type.display().to_string(),
            case: case.to_string(),
            expected: "load".into(),
            actual: "error".into(),
            message: String::new(),
            passed: false,
            note: Some(note),
        }]
    };
    let rule = match load_rule_type(&suite.rule_type) {
        Ok(r) => r,
        Err(e) => return fail("(rule type)", e.to_string()),
    };
    let tests: TestFile = match std::fs::read_to_string(&suite.tests)
        .map_err(|e| e.to_string())
        .and_then(|s| serde_yaml_ng::from_str(&s).map_err(|e| e.to_string()))
    {
        Ok(t) => t,
        Err(e) => return fail("(test file)", format!("{}: {e}", suite.tests.display())),
    };
    let fixtures = suite.fixtures();
    let mut out = Vec::with_capacity(tests.tests.len());
    for tc in &tests.tests {
        out.push(run_case(&rule, tc, &fixtures).await);
    }
    out
}
