//! Minder's `jq` evaluator: a list of comparisons, all of which must hold.
//!
//! Each comparison reads a value from the ingested data (`ingested.def`, a jq filter) and
//! compares it with either a value read from the profile's rule definition (`profile.def`) or a
//! constant. As in Minder, a filter's first output is the value, no output is `null`, and
//! numbers compare by value (JSON has one number type).

use crate::jqlib;
use crate::{EngineError, Outcome};
use plumbline_domain::EvalStatus;
use serde_json::Value;

enum Expected {
    Profile {
        filter: String,
        compiled: jqlib::Compiled,
    },
    Constant(Value),
}

struct Comparison {
    ingested_filter: String,
    ingested: jqlib::Compiled,
    expected: Expected,
}

pub struct JqEval {
    comparisons: Vec<Comparison>,
}

fn compile(filter: &str) -> Result<jqlib::Compiled, EngineError> {
    jqlib::compile(filter).map_err(|e| EngineError::Policy(format!("jq filter {filter:?}: {e}")))
}

fn def_of(v: &Value, side: &str, i: usize) -> Result<String, EngineError> {
    v.get("def")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            EngineError::Parse(format!(
                "jq comparison {i}: {side}.def must be a jq filter string"
            ))
        })
}

/// The first output of `filter` on `input`, `null` when it has none. Later outputs are not
/// computed, so an error in one of them does not fail the comparison.
fn first(c: &jqlib::Compiled, input: &Value) -> Result<Value, jqlib::JqError> {
    Ok(c.first(input.clone())?.unwrap_or(Value::Null))
}

/// Equality with numbers compared by value (1 == 1.0), recursively.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Go's `%v` rendering, as Minder's failure messages show values.
fn go_value(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        other => crate::template::print_value(other),
    }
}

impl JqEval {
    pub fn compile(list: &[Value]) -> Result<Self, EngineError> {
        if list.is_empty() {
            return Err(EngineError::Parse(
                "jq evaluation needs at least one comparison".into(),
            ));
        }
        let mut comparisons = Vec::with_capacity(list.len());
        for (i, item) in list.iter().enumerate() {
            let ingested_filter =
                def_of(item.get("ingested").unwrap_or(&Value::Null), "ingested", i)?;
            let expected = match (item.get("profile"), item.get("constant")) {
                (Some(p), None) => {
                    let filter = def_of(p, "profile", i)?;
                    Expected::Profile {
                        compiled: compile(&filter)?,
                        filter,
                    }
                }
                (None, Some(c)) => Expected::Constant(c.clone()),
                _ => {
                    return Err(EngineError::Parse(format!(
                        "jq comparison {i}: exactly one of profile or constant is required"
                    )))
                }
            };
            comparisons.push(Comparison {
                ingested: compile(&ingested_filter)?,
                ingested_filter,
                expected,
            });
        }
        Ok(JqEval { comparisons })
    }

    pub fn evaluate(&self, ingested: &Value, def: &Value) -> Outcome {
        for c in &self.comparisons {
            let want = match &c.expected {
                Expected::Constant(v) => v.clone(),
                Expected::Profile { compiled, filter } => match first(compiled, def) {
                    Ok(v) => v,
                    Err(e) => {
                        return Outcome::error(format!(
                            "cannot get values from profile with {filter}: {e}"
                        ))
                    }
                },
            };
            let got = match first(&c.ingested, ingested) {
                Ok(v) => v,
                Err(e) => {
                    return Outcome::new(
                        EvalStatus::Fail,
                        format!("cannot get values from data: {e}"),
                    );
                }
            };
            if !json_eq(&got, &want) {
                return Outcome::new(
                    EvalStatus::Fail,
                    format!(
                        "data does not match profile: for path {} got {}, want {}",
                        c.ingested_filter,
                        go_value(&got),
                        go_value(&want)
                    ),
                );
            }
        }
        Outcome::new(EvalStatus::Pass, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn constant_and_profile_comparisons() {
        let e = JqEval::compile(&[
            json!({"ingested": {"def": ".allow_force_pushes.enabled"}, "constant": false}),
        ])
        .expect("compile");
        assert_eq!(
            e.evaluate(
                &json!({"allow_force_pushes": {"enabled": false}}),
                &json!({})
            )
            .status,
            EvalStatus::Pass
        );
        let o = e.evaluate(&json!({"http_status": 404}), &json!({}));
        assert_eq!(o.status, EvalStatus::Fail);
        assert_eq!(o.message, "data does not match profile: for path .allow_force_pushes.enabled got <nil>, want false");

        let e =
            JqEval::compile(&[json!({"ingested": {"def": ".n"}, "profile": {"def": ".count"}})])
                .expect("compile");
        assert_eq!(
            e.evaluate(&json!({"n": 1.0}), &json!({"count": 1})).status,
            EvalStatus::Pass
        );
        assert_eq!(
            e.evaluate(&json!({"n": 2}), &json!({"count": 1})).status,
            EvalStatus::Fail
        );
    }

    #[test]
    fn malformed_comparisons_are_parse_errors() {
        assert!(JqEval::compile(&[]).is_err());
        assert!(JqEval::compile(&[json!({"ingested": {"def": ".a"}})]).is_err());
        assert!(JqEval::compile(&[
            json!({"ingested": {"def": ".a"}, "constant": 1, "profile": {"def": ".b"}})
        ])
        .is_err());
        assert!(matches!(
            JqEval::compile(&[json!({"ingested": {"def": ".a |||"}, "constant": 1})]),
            Err(EngineError::Policy(_))
        ));
    }
}
