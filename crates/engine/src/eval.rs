//! Policy evaluation: Rego through regorus (compiled once per rule type).

use crate::datasource::Function;
use crate::{EngineError, Outcome};
use plumbline_domain::EvalStatus;
use serde_json::Value;
use std::sync::Arc;

/// Where regorus is told the policy lives; also the file name in error messages.
const POLICY_PATH: &str = "minder.rego";

/// A compiled Minder Rego policy.
///
/// Compiled and prepared once; each thread evaluates on its own prepared copy (kept in a
/// thread-local cache), so an evaluation costs only setting the input and evaluating the
/// declared rules — no re-analysis of the policy and no query parsing.
#[derive(Clone)]
pub struct RegoPolicy {
    id: u64,
    engine: regorus::Engine,
    kind: RegoKind,
    json_violations: bool,
    declares_skip: bool,
    declares_allow: bool,
    declares_message: bool,
    declares_violations: bool,
}

/// Wall-clock limit of one policy evaluation (each rule it evaluates).
pub const REGO_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Prepared engines per thread, by policy id. Bounded: a replica evaluates a few hundred
/// rule types at most, and a miss only costs one clone.
const THREAD_CACHE_MAX: usize = 512;

thread_local! {
    static PREPARED: std::cell::RefCell<std::collections::HashMap<u64, regorus::Engine>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

static NEXT_POLICY_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegoKind {
    DenyByDefault,
    Constraints,
}

impl RegoPolicy {
    pub fn compile(
        kind: &str,
        def: &str,
        violation_format: Option<&str>,
    ) -> Result<Self, EngineError> {
        Self::compile_with(kind, def, violation_format, &[])
    }

    /// Compiles with data-source functions available as `minder.datasource.<name>.<fn>`.
    pub fn compile_with(
        kind: &str,
        def: &str,
        violation_format: Option<&str>,
        functions: &[Arc<Function>],
    ) -> Result<Self, EngineError> {
        let kind = match kind {
            "deny-by-default" => RegoKind::DenyByDefault,
            "constraints" => RegoKind::Constraints,
            other => return Err(EngineError::Unsupported(format!("rego type {other:?}"))),
        };
        let mut engine = regorus::Engine::new();
        // One evaluation may not hold a thread of the blocking pool for long: a policy that loops
        // over a huge range (by mistake or on purpose) ends as an error verdict.
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: REGO_TIME_LIMIT,
            check_interval: std::num::NonZeroU32::MIN.saturating_add(63),
        });
        // Minder accepts both syntaxes; a policy with `import rego.v1` is parsed as v1 anyway.
        engine.set_rego_v0(true);
        crate::rego_ext::register(&mut engine)
            .map_err(|e| EngineError::Policy(format!("registering minder functions: {e}")))?;
        for f in functions {
            let func = f.clone();
            let call = move |args: Vec<regorus::Value>| -> anyhow::Result<regorus::Value> {
                let arg = args
                    .first()
                    .map(serde_json::to_value)
                    .transpose()?
                    .unwrap_or(Value::Null);
                let out = match func.as_ref() {
                    Function::Rest(rest) => {
                        let fetcher = crate::rego_ext::current_fetcher().ok_or_else(|| {
                            anyhow::anyhow!(
                                "{}: data sources are not available in this evaluation",
                                func.rego_name()
                            )
                        })?;
                        rest.call(&arg, fetcher.as_ref())?
                    }
                    Function::Structured(file) => {
                        file.call(crate::rego_ext::current_files().as_deref())?
                    }
                };
                Ok(regorus::Value::from(out))
            };
            engine
                .add_extension(f.rego_name(), 1, Box::new(call))
                .map_err(|e| EngineError::Policy(format!("registering {}: {e}", f.rego_name())))?;
        }
        engine
            .add_policy(POLICY_PATH.to_string(), def.to_string())
            .map_err(|e| EngineError::Policy(e.to_string()))?;
        let json_violations = match violation_format {
            None | Some("text") | Some("") => false,
            Some("json") => true,
            Some(other) => return Err(EngineError::Parse(format!("violation_format {other:?}"))),
        };
        // Whether the policy declares a rule (asking for one it does not declare costs an
        // error). When regorus cannot tell (it errors on some valid heads, such as functions
        // returning constants), the rule counts as declared and is evaluated: treating it as
        // absent would skip a constraints policy's violations and pass what it denies.
        let declared = |name: &str| {
            engine
                .has_declared_rule_rooted_at(POLICY_PATH, name)
                .unwrap_or(true)
        };
        let (declares_skip, declares_allow, declares_message, declares_violations) = (
            declared("skip"),
            declared("allow"),
            declared("message"),
            declared("violations"),
        );
        // Prepare (analyse and schedule) once, so clones start prepared. The result of this
        // evaluation against an empty input is irrelevant; only the preparation is kept.
        let entry = if kind == RegoKind::Constraints {
            "data.minder.violations"
        } else {
            "data.minder.allow"
        };
        let _ =
            crate::rego_ext::with_env(Default::default(), || engine.eval_rule(entry.to_string()));
        Ok(RegoPolicy {
            id: NEXT_POLICY_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            engine,
            kind,
            json_violations,
            declares_skip,
            declares_allow,
            declares_message,
            declares_violations,
        })
    }

    /// Runs `f` on this thread's prepared copy of the policy's engine.
    fn with_engine<R>(&self, f: impl FnOnce(&mut regorus::Engine) -> R) -> R {
        let cached = PREPARED.with(|c| c.borrow_mut().remove(&self.id));
        let mut engine = cached.unwrap_or_else(|| self.engine.clone());
        let r = f(&mut engine);
        PREPARED.with(|c| {
            let mut c = c.borrow_mut();
            if c.len() >= THREAD_CACHE_MAX {
                c.clear();
            }
            c.insert(self.id, engine);
        });
        r
    }

    /// Evaluates against `input` (`{ingested, profile, properties}`). CPU-bound: callers on an
    /// async runtime run it on a blocking thread.
    pub fn evaluate(&self, input: Value, short_failure_message: &str) -> Outcome {
        self.evaluate_value(crate::rego_value::to_rego(&input), short_failure_message)
    }

    /// Like [`evaluate`](Self::evaluate), with the input already converted for Rego.
    pub fn evaluate_value(&self, input: regorus::Value, short_failure_message: &str) -> Outcome {
        self.with_engine(|engine| {
            engine.set_input(input);
            self.judge(engine, short_failure_message)
        })
    }

    fn judge(&self, engine: &mut regorus::Engine, short_failure_message: &str) -> Outcome {
        match self.kind {
            RegoKind::DenyByDefault => {
                if self.declares_skip {
                    match rule(engine, "data.minder.skip") {
                        Ok(Some(Value::Bool(true))) => {
                            return Outcome::new(EvalStatus::Skipped, "rule skipped")
                        }
                        Ok(_) => {}
                        Err(e) => return Outcome::error(e),
                    }
                }
                let allowed = if self.declares_allow {
                    rule(engine, "data.minder.allow")
                } else {
                    Ok(None)
                };
                match allowed {
                    Ok(Some(Value::Bool(true))) => Outcome::new(EvalStatus::Pass, ""),
                    Ok(_) => {
                        let msg = match self
                            .declares_message
                            .then(|| rule(engine, "data.minder.message"))
                        {
                            Some(Ok(Some(Value::String(s)))) if !s.is_empty() => s,
                            _ => default_message(short_failure_message),
                        };
                        Outcome::new(EvalStatus::Fail, msg)
                    }
                    Err(e) => Outcome::error(e),
                }
            }
            RegoKind::Constraints => {
                let found = if self.declares_violations {
                    rule(engine, "data.minder.violations")
                } else {
                    Ok(None)
                };
                // `violations[x] if ...` under Rego v1 is an object of `x: true` (Minder queries
                // `data.minder.violations[results]`, which reads either): its keys are the
                // violations (regorus writes keys that are not strings as JSON text).
                let found = found.map(|v| match v {
                    Some(Value::Object(m)) if m.values().all(|x| *x == Value::Bool(true)) => {
                        Some(Value::Array(
                            m.into_iter()
                                .map(|(k, _)| serde_json::from_str(&k).unwrap_or(Value::String(k)))
                                .collect(),
                        ))
                    }
                    other => other,
                });
                match found {
                    Ok(None) | Ok(Some(Value::Null)) => Outcome::new(EvalStatus::Pass, ""),
                    Ok(Some(Value::Array(vs))) if vs.is_empty() => {
                        Outcome::new(EvalStatus::Pass, "")
                    }
                    Ok(Some(Value::Array(vs))) => {
                        let details: Vec<String> = vs
                            .iter()
                            .map(|v| match v.get("msg") {
                                Some(Value::String(s)) if !self.json_violations => s.clone(),
                                Some(m) => m.to_string(),
                                None => v.to_string(),
                            })
                            .collect();
                        // Minder's wording, which upstream test cases check verbatim.
                        let lines: Vec<String> =
                            details.iter().map(|d| format!(" - {d}")).collect();
                        let mut o = Outcome::new(
                            EvalStatus::Fail,
                            format!("Evaluation failures: \n{}", lines.join("\n")),
                        );
                        o.details = details;
                        o
                    }
                    Ok(Some(other)) => Outcome::error(EngineError::Policy(format!(
                        "violations is not a set: {other}"
                    ))),
                    Err(e) => Outcome::error(e),
                }
            }
        }
    }
}

fn default_message(short: &str) -> String {
    if short.is_empty() {
        "denied".to_string()
    } else {
        short.to_string()
    }
}

/// Evaluates a declared rule; `None` when undefined.
fn rule(engine: &mut regorus::Engine, path: &str) -> Result<Option<Value>, EngineError> {
    let v = engine
        .eval_rule(path.to_string())
        .map_err(|e| EngineError::Policy(e.to_string()))?;
    if v == regorus::Value::Undefined {
        return Ok(None);
    }
    // Sets (e.g. `violations contains ...`) serialise as arrays.
    serde_json::to_value(&v)
        .map(Some)
        .map_err(|e| EngineError::Policy(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Minder's `osv_vulnerabilities` shape: regorus cannot tell whether this module declares
    /// `violations` (it errors on the function heads); the violations must still be found.
    #[test]
    fn violations_are_found_where_regorus_cannot_list_the_rules() {
        let policy = r#"package minder
import rego.v1
default skip := false
violations[{"msg": msg}] if {
  node := input.ingested.nodes[_]
  eco := get_ecosystem(node.properties)
  msg := sprintf("%v in %v", [node.name, eco])
}
get_ecosystem(properties) := eco if {
  prop := properties[_]
  prop.name == "sourceFile"
  eco := get_ecosystem_from_file(prop.data)
}
get_ecosystem_from_file(file) := "PyPI" if {
  file == "requirements.txt"
}
get_ecosystem_from_file(file) := "npm" if {
  file == "package.json"
}
"#;
        let p = RegoPolicy::compile("constraints", policy, None).expect("compile");
        let o = p.evaluate(
            json!({"ingested": {"nodes": [{"name": "jinja2", "properties": [{"name": "sourceFile", "data": "requirements.txt"}]}]}}),
            "x",
        );
        assert_eq!(o.status, EvalStatus::Fail, "{o:?}");
        assert_eq!(o.details, vec!["jinja2 in PyPI".to_string()]);
        let o = p.evaluate(json!({"ingested": {"nodes": []}}), "x");
        assert_eq!(o.status, EvalStatus::Pass, "{o:?}");
    }

    #[test]
    fn deny_by_default_v1_and_v0() {
        let v1 = "package minder\nimport rego.v1\ndefault allow := false\nallow if input.ingested.ok\nmessage := \"nope\"";
        let p = RegoPolicy::compile("deny-by-default", v1, None).expect("compile");
        assert_eq!(
            p.evaluate(json!({"ingested": {"ok": true}}), "x").status,
            EvalStatus::Pass
        );
        let o = p.evaluate(json!({"ingested": {"ok": false}}), "x");
        assert_eq!((o.status, o.message.as_str()), (EvalStatus::Fail, "nope"));

        let v0 = "package minder\ndefault allow = false\nallow { input.ingested.ok }\nskip { input.ingested.skip }";
        let p = RegoPolicy::compile("deny-by-default", v0, None).expect("compile v0");
        assert_eq!(
            p.evaluate(json!({"ingested": {"ok": true}}), "").status,
            EvalStatus::Pass
        );
        let o = p.evaluate(json!({"ingested": {}}), "short");
        assert_eq!((o.status, o.message.as_str()), (EvalStatus::Fail, "short"));
        assert_eq!(
            p.evaluate(json!({"ingested": {"skip": true}}), "").status,
            EvalStatus::Skipped
        );
    }

    #[test]
    fn a_policy_that_runs_too_long_is_stopped_with_an_error() {
        let src = "package minder\nimport rego.v1\ndefault allow := false\nallow if count([x | some x in numbers.range(1, 100000000); x % 7 == 0]) > 0";
        let p = RegoPolicy::compile("deny-by-default", src, None).expect("compile");
        let started = std::time::Instant::now();
        let o = p.evaluate(json!({"ingested": {}}), "x");
        assert_eq!(o.status, EvalStatus::Error, "{o:?}");
        // Unbounded, this policy runs for minutes; the bound is loose because the suite shares
        // two cores with everything else (a stopped policy, not a timing, is what is tested).
        assert!(
            started.elapsed() < REGO_TIME_LIMIT * 10,
            "stopped after {:?}",
            started.elapsed()
        );
        // The engine is still usable afterwards for quick policies.
        let quick = RegoPolicy::compile(
            "deny-by-default",
            "package minder\nimport rego.v1\ndefault allow := true",
            None,
        )
        .expect("compile");
        assert_eq!(quick.evaluate(json!({}), "").status, EvalStatus::Pass);
    }

    #[test]
    fn constraints_collect_violations() {
        let src = "package minder\nimport rego.v1\nviolations contains {\"msg\": m} if { some x in input.ingested.bad; m := sprintf(\"bad %v\", [x]) }";
        let p = RegoPolicy::compile("constraints", src, None).expect("compile");
        assert_eq!(
            p.evaluate(json!({"ingested": {"bad": []}}), "").status,
            EvalStatus::Pass
        );
        let o = p.evaluate(json!({"ingested": {"bad": [1, 2]}}), "");
        assert_eq!(o.status, EvalStatus::Fail);
        assert_eq!(o.details, vec!["bad 1".to_string(), "bad 2".to_string()]);
    }

    #[test]
    fn go_regex_literal_braces_and_redeclared_locals_work_as_in_opa() {
        // Both differ in upstream regorus 0.14.1; see third_party/regorus/README.plumbline.md.
        let src = r#"package minder
import rego.v1
violations contains {"msg": m} if {
  some w
  wf := input.ingested.ws[w]
  some job
  wf.jobs[job]
  found := regex.find_all_string_submatch_n("\\${{(.*?)}}", wf.run, -1)
  some f in found
  m := sprintf("%s:%s", [job, trim_space(f[1])])
}"#;
        let p = RegoPolicy::compile("constraints", src, None).expect("compile");
        let input = json!({"ingested": {"ws": [
            {"jobs": {"a": 1}, "run": "echo ${{ github.event.issue.title }}"},
            {"jobs": {"b": 1}, "run": "echo ${{ env.X }}"}
        ]}});
        let o = p.evaluate(input, "");
        assert_eq!(o.status, EvalStatus::Fail, "{}", o.message);
        assert_eq!(
            o.details,
            vec![
                "a:github.event.issue.title".to_string(),
                "b:env.X".to_string()
            ]
        );
    }

    #[test]
    fn syntax_errors_are_compile_errors() {
        assert!(matches!(
            RegoPolicy::compile("deny-by-default", "package minder\nallow if {", None),
            Err(EngineError::Policy(_))
        ));
        assert!(matches!(
            RegoPolicy::compile("weird", "package minder", None),
            Err(EngineError::Unsupported(_))
        ));
    }
}
