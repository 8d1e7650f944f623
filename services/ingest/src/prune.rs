//! Parses a webhook body keeping only the fields the mapping reads.
//!
//! A GitHub payload is 5-25 KB of JSON of which the mapping reads about ten fields (ids, names,
//! the action). Building a whole `serde_json::Value` for it (a `BTreeMap` per object, a `String`
//! per key and value) was the largest single cost of a webhook: about a fifth of ingest's CPU in
//! a profile at saturation. This parser still reads and validates every byte (a malformed body
//! anywhere is the same error as before) but skips what the mapping does not read without
//! building it.
//!
//! The result is a `Value` that answers every question the mapping asks exactly as the full
//! value would: a kept key keeps its place, and a value whose shape is not the expected one
//! keeps its JSON type (an array where an object was expected becomes an empty array, an object
//! where a number was expected an empty object), so every "missing or invalid field" error is
//! the same one.

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// Which part of a JSON value to keep.
#[derive(Debug)]
enum Keep {
    /// A scalar, kept as it is; a container becomes an empty one of the same type.
    Leaf,
    /// An object's listed keys; anything else becomes an empty value of its own type.
    Keys(&'static [(&'static str, Keep)]),
    /// Every element of an array, each kept as the inner rule says.
    Items(&'static Keep),
}

const OWNER: Keep = Keep::Keys(&[("login", Keep::Leaf)]);

/// The full repository object of repository-scoped events.
const REPOSITORY: Keep = Keep::Keys(&[
    ("id", Keep::Leaf),
    ("name", Keep::Leaf),
    ("owner", OWNER),
    ("default_branch", Keep::Leaf),
    ("private", Keep::Leaf),
]);

/// The short repository entries of installation events.
const LISTED_REPOSITORY: Keep = Keep::Keys(&[
    ("id", Keep::Leaf),
    ("name", Keep::Leaf),
    ("full_name", Keep::Leaf),
    ("private", Keep::Leaf),
]);

/// Everything `map_event` reads, for every event.
const PAYLOAD: Keep = Keep::Keys(&[
    ("action", Keep::Leaf),
    ("ref", Keep::Leaf),
    ("repository", REPOSITORY),
    (
        "installation",
        Keep::Keys(&[("id", Keep::Leaf), ("account", OWNER)]),
    ),
    ("repositories", Keep::Items(&LISTED_REPOSITORY)),
    ("repositories_added", Keep::Items(&LISTED_REPOSITORY)),
    ("repositories_removed", Keep::Items(&LISTED_REPOSITORY)),
    (
        "pull_request",
        Keep::Keys(&[("id", Keep::Leaf), ("number", Keep::Leaf)]),
    ),
    ("release", Keep::Keys(&[("id", Keep::Leaf)])),
    ("package", PACKAGE),
    ("registry_package", PACKAGE),
]);

/// The package of `package` and `registry_package` events.
const PACKAGE: Keep = Keep::Keys(&[
    ("name", Keep::Leaf),
    ("package_type", Keep::Leaf),
    (
        "owner",
        Keep::Keys(&[("login", Keep::Leaf), ("type", Keep::Leaf)]),
    ),
    ("package_version", Keep::Keys(&[("id", Keep::Leaf)])),
]);

/// Parses `body` as JSON, keeping what the mapping reads. Errors are serde_json's.
pub(crate) fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = Pruned(&PAYLOAD).deserialize(&mut de)?;
    de.end()?; // trailing characters are an error, as in serde_json::from_slice
    Ok(value)
}

struct Pruned(&'static Keep);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        match self.0 {
            Keep::Items(inner) => {
                while let Some(v) = seq.next_element_seed(Pruned(inner))? {
                    out.push(v);
                }
            }
            Keep::Leaf | Keep::Keys(_) => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let keys: &[(&str, Keep)] = match self.0 {
            Keep::Keys(keys) => keys,
            Keep::Leaf | Keep::Items(_) => &[],
        };
        while let Some(i) = map.next_key_seed(KeyIndex(keys))? {
            match i {
                Some(i) => {
                    let (name, keep) = &keys[i];
                    // A repeated key: the last one wins, as in serde_json's own Value.
                    out.insert((*name).to_string(), map.next_value_seed(Pruned(keep))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Reads an object key and says which listed key it is, without allocating it.
struct KeyIndex(&'static [(&'static str, Keep)]);

impl<'de> DeserializeSeed<'de> for KeyIndex {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIndex {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|(k, _)| *k == v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The pruned value holds exactly the kept paths of the full value.
    fn project(full: &Value, keep: &Keep) -> Value {
        match (keep, full) {
            (Keep::Keys(keys), Value::Object(m)) => Value::Object(
                keys.iter()
                    .filter_map(|(k, inner)| {
                        m.get(*k).map(|v| ((*k).to_string(), project(v, inner)))
                    })
                    .collect(),
            ),
            (Keep::Items(inner), Value::Array(a)) => {
                Value::Array(a.iter().map(|v| project(v, inner)).collect())
            }
            (_, Value::Object(_)) => Value::Object(Map::new()),
            (_, Value::Array(_)) => Value::Array(vec![]),
            (_, scalar) => scalar.clone(),
        }
    }

    /// A mapping without what differs on every call (record ids and times).
    fn comparable(
        m: Result<crate::Mapped, crate::MappingError>,
    ) -> Result<crate::Mapped, crate::MappingError> {
        m.map(|m| match m {
            crate::Mapped::Plan(mut p) => {
                for ev in &mut p.events {
                    ev.event_id.clear();
                    ev.emitted_at = None;
                }
                crate::Mapped::Plan(p)
            }
            other => other,
        })
    }

    #[test]
    fn keeps_what_the_mapping_reads_from_every_corpus_payload() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/github-webhooks/api.github.com");
        let mut checked = 0;
        for dir in std::fs::read_dir(root).expect("the webhook corpus beside the checkout") {
            let dir = dir.expect("corpus folder");
            let event = dir.file_name().to_string_lossy().to_string();
            for file in std::fs::read_dir(dir.path()).expect("corpus folder") {
                let body = std::fs::read(file.expect("corpus file").path()).expect("corpus file");
                let full: Value = serde_json::from_slice(&body).expect("corpus payloads are json");
                let pruned = parse(&body).expect("parses");
                assert_eq!(pruned, project(&full, &PAYLOAD));
                // And so the mapping says the same of both.
                assert_eq!(
                    comparable(crate::map_event("github", &event, "d", &pruned)),
                    comparable(crate::map_event("github", &event, "d", &full)),
                    "{event}"
                );
                checked += 1;
            }
        }
        assert!(checked > 250, "only {checked} payloads found");
    }

    #[test]
    fn shapes_that_are_not_the_expected_one_keep_their_type() {
        let body = br#"{"repository": [1, {"id": 2}], "installation": "x", "ref": {"a": 1},
            "repositories": {"id": 3}, "release": {"id": [4]}, "action": "a", "action": "b",
            "pull_request": {"id": 5, "number": -6, "title": "t"}, "other": {"deep": [1, 2]}}"#;
        let v = parse(body).expect("parses");
        assert_eq!(
            v,
            serde_json::json!({"repository": [], "installation": "x", "ref": {},
                "repositories": {}, "release": {"id": []}, "action": "b",
                "pull_request": {"id": 5, "number": -6}})
        );
        assert_eq!(parse(b"[1, 2]").expect("parses"), serde_json::json!([]));
        assert_eq!(parse(b"7").expect("parses"), serde_json::json!(7));
    }

    #[test]
    fn malformed_json_anywhere_is_an_error() {
        for body in [
            &br#"{"zen": "x", "other": {"a": [1, 2,]}}"#[..],
            br#"{"other": tru}"#,
            br#"{"repository": {"id": 1}} trailing"#,
            br#"{"other": "\uZZZZ"}"#,
            b"",
        ] {
            assert!(
                parse(body).is_err(),
                "{:?} parsed",
                String::from_utf8_lossy(body)
            );
        }
    }
}
