//! Small pieces shared by the endpoint families that keep objects inside a repository (issues,
//! releases, advisories, rulesets): who authored an object, object ids, and query parameters.

use std::collections::HashMap;

use serde_json::Value;

use crate::render;
use crate::state::{Actor, State};
use crate::webhooks::Event;

/// Who created or changed an object. REST clients and the admin user are the two actors of
/// webhooks; objects can also be attributed to any other login (a reporter, an uploader) seeded
/// through the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Person {
    Actor(Actor),
    User(String),
}

impl Person {
    /// The person in GitHub's "simple user" shape.
    pub(crate) fn json(&self, base: &str) -> Value {
        match self {
            Person::Actor(actor) => render::sender_json(base, *actor),
            Person::User(login) => render::user_json(base, login),
        }
    }

    /// The login, e.g. for filters like `creator=`.
    pub(crate) fn login(&self) -> &str {
        match self {
            Person::Actor(Actor::Admin) => "sim-admin",
            Person::Actor(Actor::Api) => "plumbline-sim[bot]",
            Person::User(login) => login,
        }
    }
}

impl From<Actor> for Person {
    fn from(actor: Actor) -> Self {
        Person::Actor(actor)
    }
}

impl State {
    /// A fresh id for an object inside a repository.
    pub(crate) fn next_object_id(&mut self) -> u64 {
        let id = self.next_object_id;
        self.next_object_id += 1;
        id
    }

    /// `{base}/repos/{owner}/{repo}` with the canonical spelling of both names.
    pub(crate) fn repo_api_url(&self, repo_id: u64) -> String {
        let base = self.base_url(None);
        match self
            .repos
            .get(&repo_id)
            .and_then(|repo| Some((self.orgs.get(&repo.owner_key)?, repo)))
        {
            Some((org, repo)) => format!("{base}/repos/{}/{}", org.login, repo.name),
            None => format!("{base}/repositories/{repo_id}"),
        }
    }

    /// A webhook event about something inside a repository: `action`, `repository`,
    /// `organization`, `sender` and `installation` like every repository event, plus the
    /// event's own `fields` (e.g. `issue`, `changes`). None if the repository is gone.
    pub(crate) fn repo_object_event(
        &self,
        repo_id: u64,
        name: &'static str,
        action: &str,
        actor: Actor,
        fields: Vec<(&str, Value)>,
    ) -> Option<Event> {
        let mut event = self.repository_event(repo_id, action, actor)?;
        event.name = name;
        if let Value::Object(payload) = &mut event.payload {
            for (key, value) in fields {
                payload.insert(key.to_owned(), value);
            }
        }
        Some(event)
    }
}

/// A query parameter restricted to a fixed set of values; absent means `default`. GitHub
/// answers an unknown value with 422 on most list endpoints; the error is the message.
pub(crate) fn choice<'a>(
    query: &'a HashMap<String, String>,
    name: &str,
    allowed: &[&'a str],
    default: &'a str,
) -> Result<&'a str, String> {
    match query.get(name) {
        None => Ok(default),
        Some(value) => allowed
            .iter()
            .find(|a| **a == value.as_str())
            .copied()
            .ok_or_else(|| format!("Invalid value for `{name}`: {value:?}")),
    }
}

/// The `reactions` rollup GitHub attaches to issues, comments and releases; the simulator has
/// no reactions, so every count is zero.
pub(crate) fn reactions_json(url: &str) -> Value {
    serde_json::json!({
        "url": format!("{url}/reactions"),
        "total_count": 0,
        "+1": 0,
        "-1": 0,
        "laugh": 0,
        "hooray": 0,
        "confused": 0,
        "heart": 0,
        "rocket": 0,
        "eyes": 0,
    })
}

/// A `field` that must be a string when present (None when absent or null).
pub(crate) fn opt_string(
    fields: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<String>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_type(field, other, "a string")),
    }
}

/// A `field` that must be a boolean when present.
pub(crate) fn opt_bool(
    fields: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<bool>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(invalid_type(field, other, "a boolean")),
    }
}

/// A `field` that must be an array of strings when present.
pub(crate) fn opt_strings(
    fields: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<Option<Vec<String>>, String> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(invalid_type(field, other, "a string")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(invalid_type(field, other, "an array")),
    }
}

/// GitHub's 422 message for a value of the wrong type.
pub(crate) fn invalid_type(field: &str, value: &Value, expected: &str) -> String {
    format!("Invalid request.\n\nFor 'properties/{field}', {value} is not {expected}.")
}

/// The body as an object, or GitHub's 422 message.
pub(crate) fn object(body: &Value) -> Result<&serde_json::Map<String, Value>, String> {
    body.as_object()
        .ok_or_else(|| format!("Invalid request.\n\n{body} is not an object."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_helpers_check_types() {
        let body = json!({ "a": "x", "b": true, "c": ["p"], "d": 1 });
        let fields = object(&body).unwrap();
        assert_eq!(opt_string(fields, "a").unwrap().as_deref(), Some("x"));
        assert!(opt_string(fields, "d").is_err());
        assert_eq!(opt_bool(fields, "b").unwrap(), Some(true));
        assert_eq!(
            opt_strings(fields, "c").unwrap(),
            Some(vec!["p".to_owned()])
        );
        assert!(opt_strings(fields, "a").is_err());
        assert_eq!(opt_bool(fields, "missing").unwrap(), None);
        assert!(object(&json!([])).is_err());
        let query: HashMap<String, String> = [("state".to_owned(), "x".to_owned())].into();
        assert!(choice(&query, "state", &["open"], "open").is_err());
        assert_eq!(
            choice(&query, "sort", &["created"], "created").unwrap(),
            "created"
        );
    }
}
