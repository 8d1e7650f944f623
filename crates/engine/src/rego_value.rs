//! JSON to Rego values without a round trip through serde.
//!
//! regorus converts a `serde_json::Value` by deserializing it (`From<serde_json::Value>`):
//! it takes the value by move (callers clone what they keep), visits it field by field and
//! inserts each key into a fresh map one at a time. Measured with `evaluator_overhead`, that
//! conversion was 10% of the evaluator's CPU (a GitHub repository object has ~100 fields),
//! more than the policies' evaluation. Here a borrowed value is converted directly and each
//! object's map is built from its keys in the order `serde_json` keeps them (sorted), which
//! `BTreeMap` builds in bulk. Numbers that are not plain integers go through regorus's own
//! conversion, so they are checked and rounded exactly as it does; the unit test below holds
//! the result equal to regorus's on every real GitHub payload in the shared corpus.
//!
//! One deliberate difference: regorus reads an object whose first key is
//! `$serde_json::private::Number` as a number (serde_json's arbitrary-precision encoding, off
//! in this build) and turns the whole input `Undefined` if it does not parse. A key in a
//! repository's data is not a number here: such an object stays an object.

use regorus::Value as Rego;
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// `v` as regorus would convert it (`regorus::Value::from(v.clone())`), except for the one case
/// the module's documentation names.
pub fn to_rego(v: &Json) -> Rego {
    match v {
        Json::Null => Rego::Null,
        Json::Bool(b) => Rego::Bool(*b),
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Rego::from(u),
            (None, Some(i)) => Rego::from(i),
            _ => Rego::from(Json::Number(n.clone())),
        },
        Json::String(s) => Rego::from(s.as_str()),
        Json::Array(a) => Rego::from(a.iter().map(to_rego).collect::<Vec<_>>()),
        Json::Object(m) => Rego::from(
            m.iter()
                .map(|(k, v)| (Rego::from(k.as_str()), to_rego(v)))
                .collect::<BTreeMap<_, _>>(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_to_regorus_conversion() {
        for v in [
            json!(null),
            json!({"a": [1, -2, 3.5, 1e300, 18446744073709551615u64, -9223372036854775808i64], "b": {"c": true, "": "x"}, "Z": null}),
            json!([]),
            json!({}),
            json!("ünïcode"),
            json!(0.1),
        ] {
            assert_eq!(to_rego(&v), Rego::from(v.clone()), "{v}");
        }
    }

    /// An object with serde_json's private number key is data, not a number.
    #[test]
    fn a_private_number_key_is_an_ordinary_key() {
        let v = json!({"$serde_json::private::Number": "not a number"});
        let r = to_rego(&v);
        assert_eq!(
            r["$serde_json::private::Number"],
            Rego::from("not a number")
        );
    }

    /// Every real GitHub webhook payload beside the checkout (`../shared/github-webhooks`):
    /// repository, organisation and pull-request objects of every shape GitHub sends.
    #[test]
    fn equal_to_regorus_conversion_on_github_payloads() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/github-webhooks/api.github.com");
        let mut seen = 0;
        for event in
            std::fs::read_dir(&root).expect("the shared webhook corpus beside the checkout")
        {
            let dir = event.expect("corpus entry").path();
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            for f in files {
                let path = f.expect("corpus file").path();
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                let Ok(v) = serde_json::from_str::<Json>(&text) else {
                    continue;
                };
                assert_eq!(to_rego(&v), Rego::from(v.clone()), "{}", path.display());
                seen += 1;
            }
        }
        assert!(
            seen > 200,
            "only {seen} payloads found under {}",
            root.display()
        );
    }
}
