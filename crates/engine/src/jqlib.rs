//! jq filters over JSON values, through jaq: shared by the `jq` evaluator and Rego's
//! `jq.is_true`.
//!
//! Minder runs jq with gojq; jaq implements the same language with its standard library, so
//! rule types' filters run unchanged. Filters are compiled once and can be run many times
//! from any thread: values only live for the duration of one run.

use jaq_core::data::JustLut;
use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Ctx, Vars};
use jaq_json::{Num, Val};
use serde_json::Value;

type Filter = jaq_core::compile::Filter<jaq_core::Native<JustLut<Val>>>;

/// Why a filter did not compile or run. jaq's own errors borrow the filter and its values, so
/// they are rendered here, once, rather than kept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JqError {
    /// The filter does not parse (each problem with a short excerpt of where).
    #[error("{}", .0.join("; "))]
    Syntax(Vec<String>),
    /// The filter calls filters or variables jq does not define.
    #[error("{}", .0.join("; "))]
    Undefined(Vec<String>),
    /// The filter raised an error on its input (`error(...)`, a type error, ...).
    #[error("{0}")]
    Raised(String),
    /// The filter called `halt` or `halt_error`.
    #[error("halted with exit code {0}")]
    Halted(String),
}

/// A compiled jq filter.
pub struct Compiled {
    filter: Filter,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled(..)")
    }
}

/// Parses and compiles `filter` with jq's standard library.
pub fn compile(filter: &str) -> Result<Compiled, JqError> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let arena = Arena::default();
    let modules = Loader::new(defs)
        .load(
            &arena,
            File {
                code: filter,
                path: (),
            },
        )
        .map_err(|errs| describe_load_errors(&errs))?;
    let filter = jaq_core::Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            let undefined: Vec<String> = errs
                .iter()
                .flat_map(|(_, es)| {
                    es.iter()
                        .map(|(name, u)| format!("undefined {} {name}", u.as_str()))
                })
                .collect();
            JqError::Undefined(undefined)
        })?;
    Ok(Compiled { filter })
}

/// Compiles and runs `filter` on `input` once; see [`Compiled::run`].
pub fn run(filter: &str, input: Value) -> Result<Vec<Value>, JqError> {
    compile(filter)?.run(input)
}

impl Compiled {
    /// Every output of the filter; the first error (or `halt`) fails the whole run.
    pub fn run(&self, input: Value) -> Result<Vec<Value>, JqError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, from_json(input)))
            .map(|r| r.map(|v| to_json(&v)).map_err(describe_exn))
            .collect()
    }

    /// The first output only, as gojq's iterator is read when a single value is wanted; later
    /// outputs (and their errors) are never computed. `None` when there is no output.
    pub fn first(&self, input: Value) -> Result<Option<Value>, JqError> {
        let ctx = Ctx::<JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        match self.filter.id.run((ctx, from_json(input))).next() {
            None => Ok(None),
            Some(Ok(v)) => Ok(Some(to_json(&v))),
            Some(Err(e)) => Err(describe_exn(e)),
        }
    }
}

fn describe_exn(e: jaq_core::Exn<'_, Val>) -> JqError {
    match e.get_err() {
        Ok(err) => JqError::Raised(err.to_string()),
        Err(e) => match e.get_halt() {
            Ok(code) => JqError::Halted(code.to_string()),
            Err(_) => JqError::Raised("uncaught exception".to_string()),
        },
    }
}

fn describe_load_errors(errs: &load::Errors<&str, ()>) -> JqError {
    // Lexer and parser report the rest of the input where they stopped; a short excerpt is
    // enough to point at the problem.
    let near = |s: &str| {
        let excerpt: String = s.chars().take(20).collect();
        if excerpt.is_empty() {
            "end of input".to_string()
        } else {
            format!("{excerpt:?}")
        }
    };
    let mut out = Vec::new();
    for (_, e) in errs {
        match e {
            load::Error::Io(es) => {
                out.extend(es.iter().map(|(path, msg)| format!("{path}: {msg}")))
            }
            load::Error::Lex(es) => out.extend(
                es.iter()
                    .map(|(exp, at)| format!("expected {} near {}", exp.as_str(), near(at))),
            ),
            load::Error::Parse(es) => out.extend(
                es.iter()
                    .map(|(exp, at)| format!("expected {} near {}", exp.as_str(), near(at))),
            ),
        }
    }
    if out.is_empty() {
        out.push("invalid filter".to_string());
    }
    JqError::Syntax(out)
}

fn from_json(v: Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(b),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Val::Num(Num::from_integral(i)),
            (None, Some(u)) => Val::Num(Num::from_integral(u)),
            _ => Val::Num(Num::Float(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Val::utf8_str(s.into_bytes()),
        Value::Array(a) => a.into_iter().map(from_json).collect(),
        Value::Object(o) => Val::obj(
            o.into_iter()
                .map(|(k, v)| (Val::utf8_str(k.into_bytes()), from_json(v)))
                .collect(),
        ),
    }
}

fn to_json(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => num_to_json(n),
        Val::TStr(s) | Val::BStr(s) => Value::String(String::from_utf8_lossy(s).into_owned()),
        Val::Arr(a) => Value::Array(a.iter().map(to_json).collect()),
        Val::Obj(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Val::TStr(s) | Val::BStr(s) => String::from_utf8_lossy(s).into_owned(),
                        other => other.to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
    }
}

fn num_to_json(n: &Num) -> Value {
    let float = |f: f64| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number);
    match n {
        Num::Int(i) => Value::from(*i as i64),
        // Big integers and decimal literals keep their digits when they fit JSON's usual ranges.
        other => {
            let text = other.to_string();
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::from(u)
            } else {
                match other {
                    Num::Float(f) => float(*f),
                    _ => text.parse::<f64>().map_or(Value::Null, float),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn runs_filters() {
        assert_eq!(run(".a.b", json!({"a": {"b": 1}})).unwrap(), vec![json!(1)]);
        assert_eq!(
            run(".[]", json!([1, "x", null])).unwrap(),
            vec![json!(1), json!("x"), json!(null)]
        );
        assert_eq!(run("empty", json!({})).unwrap(), Vec::<Value>::new());
        assert_eq!(run(".missing", json!({})).unwrap(), vec![Value::Null]);
        assert_eq!(
            run(
                "{a: (.x + 1), b: [.y[] | select(. > 1)], c: 1.5}",
                json!({"x": 2, "y": [1, 2, 3]})
            )
            .unwrap(),
            vec![json!({"a": 3, "b": [2, 3], "c": 1.5})]
        );
        assert_eq!(
            run("keys", json!({"b": 1, "a": 2})).unwrap(),
            vec![json!(["a", "b"])]
        );
        assert_eq!(
            run("map(. * 2)", json!([1, 2])).unwrap(),
            vec![json!([2, 4])]
        );
        assert_eq!(
            run(r#"test("^v[0-9]")"#, json!("v1.2")).unwrap(),
            vec![json!(true)]
        );
        assert_eq!(run("length", json!("héllo")).unwrap(), vec![json!(5)]);
        assert_eq!(
            run("1e1000 | . > 1", json!(null)).unwrap(),
            vec![json!(true)]
        );
    }

    #[test]
    fn reports_errors() {
        assert!(matches!(compile(".a |"), Err(JqError::Syntax(e)) if e[0].contains("expected")));
        assert!(matches!(
            compile("nosuchfn(1)"),
            Err(JqError::Undefined(e)) if e[0].contains("undefined filter nosuchfn")
        ));
        assert!(matches!(run(".a", json!([1])), Err(JqError::Raised(_))));
        assert!(matches!(
            run("error(\"boom\")", json!(null)),
            Err(JqError::Raised(e)) if e.contains("boom")
        ));
        assert_eq!(
            run("halt", json!(null)).unwrap_err().to_string(),
            "halted with exit code 0"
        );
    }

    #[test]
    fn first_stops_early() {
        let c = compile(r#"true, error("later")"#).unwrap();
        assert_eq!(c.first(json!(null)).unwrap(), Some(json!(true)));
        assert!(c.run(json!(null)).is_err());
        assert_eq!(compile("empty").unwrap().first(json!(1)).unwrap(), None);
        // An infinite stream is fine when only the first value is read.
        assert_eq!(
            compile("repeat(1)").unwrap().first(json!(null)).unwrap(),
            Some(json!(1))
        );
    }

    #[test]
    fn compiled_filters_are_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Compiled>();
        let c = std::sync::Arc::new(compile(".n + 1").unwrap());
        let handles: Vec<_> = (0..2)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || c.run(json!({"n": i})).unwrap())
            })
            .collect();
        let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(outs, vec![vec![json!(1)], vec![json!(2)]]);
    }
}
