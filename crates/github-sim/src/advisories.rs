//! Repository security advisories (`/security-advisories`, `/security-advisories/{ghsa_id}`).
//!
//! Maintainers draft advisories (`POST`, state `draft`), publish or close them (`PATCH`);
//! outside reporters open them in state `triage` through private vulnerability reporting (the
//! admin side's [`Simulator::report_vulnerability`], refused unless reporting is enabled).
//! Allowed state changes are GitHub's: triage → draft (accepting the report) or closed, draft →
//! published or closed, closed → draft; a published advisory stays published (only GitHub
//! staff withdraw it, the admin side's [`Simulator::withdraw_advisory`]).
//!
//! Severity is either given directly or derived from a CVSS v3 vector (GitHub's base score
//! formula); giving both is refused, and so is changing the severity of an advisory that has a
//! vector. GHSA ids use GitHub's alphabet `23456789cfghjmpqrvwx`.
//!
//! The list is paginated with cursors (`before`/`after` in the `Link` header) like GitHub's.
//!
//! Webhooks: `repository_advisory` "published" and "reported", the two actions GitHub has for
//! repository advisories; drafting, editing and closing send nothing.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{patch, post};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::api::{
    base_of, encode_query_component, find_repo, json_response, parse_json, set_header, with_link,
    ApiError, Tag,
};
use crate::objects::{choice, invalid_type, object, Person};
use crate::render::{self, time};
use crate::state::{Actor, Org, Repo, State as SimState};
use crate::webhooks::Event;
use crate::{SimError, Simulator};

const ROUTE_ADVISORIES: &str = "/repos/{owner}/{repo}/security-advisories";
const ROUTE_ADVISORY: &str = "/repos/{owner}/{repo}/security-advisories/{ghsa_id}";

const DOCS_LIST: &str = "https://docs.github.com/rest/security-advisories/repository-advisories#list-repository-security-advisories";
const DOCS_CREATE: &str = "https://docs.github.com/rest/security-advisories/repository-advisories#create-a-repository-security-advisory";
const DOCS_GET: &str = "https://docs.github.com/rest/security-advisories/repository-advisories#get-a-repository-security-advisory";
const DOCS_UPDATE: &str = "https://docs.github.com/rest/security-advisories/repository-advisories#update-a-repository-security-advisory";

/// The characters of GHSA ids.
const GHSA_ALPHABET: &[u8; 20] = b"23456789cfghjmpqrvwx";

const SEVERITIES: [&str; 4] = ["critical", "high", "medium", "low"];
const ECOSYSTEMS: [&str; 13] = [
    "rubygems", "npm", "pip", "maven", "nuget", "composer", "go", "rust", "erlang", "actions",
    "pub", "other", "swift",
];
const CREDIT_TYPES: [&str; 10] = [
    "analyst",
    "finder",
    "reporter",
    "coordinator",
    "remediation_developer",
    "remediation_reviewer",
    "remediation_verifier",
    "tool",
    "sponsor",
    "other",
];

/// Names of common weaknesses, for the `cwes` list; others are named by their id.
const CWE_NAMES: [(&str, &str); 10] = [
    ("CWE-20", "Improper Input Validation"),
    ("CWE-22", "Improper Limitation of a Pathname to a Restricted Directory ('Path Traversal')"),
    ("CWE-78", "Improper Neutralization of Special Elements used in an OS Command ('OS Command Injection')"),
    ("CWE-79", "Improper Neutralization of Input During Web Page Generation ('Cross-site Scripting')"),
    ("CWE-89", "Improper Neutralization of Special Elements used in an SQL Command ('SQL Injection')"),
    ("CWE-94", "Improper Control of Generation of Code ('Code Injection')"),
    ("CWE-200", "Exposure of Sensitive Information to an Unauthorized Actor"),
    ("CWE-287", "Improper Authentication"),
    ("CWE-502", "Deserialization of Untrusted Data"),
    ("CWE-787", "Out-of-bounds Write"),
];

/// A repository security advisory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Advisory {
    pub ghsa_id: String,
    pub cve_id: Option<String>,
    pub summary: String,
    pub description: String,
    pub severity: Option<String>,
    pub cvss_vector: Option<String>,
    pub state: String,
    /// Normalized vulnerability objects (every field present, absent ones null).
    pub vulnerabilities: Vec<Value>,
    pub cwe_ids: Vec<String>,
    /// (login, credit type).
    pub credits: Vec<(String, String)>,
    pub author: Person,
    pub publisher: Option<Person>,
    /// Some(accepted) for advisories that came in through private vulnerability reporting.
    pub submission: Option<bool>,
    pub collaborating_users: Vec<String>,
    pub collaborating_teams: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub withdrawn_at: Option<DateTime<Utc>>,
}

/// The client-settable fields of a create or update body; None = not mentioned.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Fields {
    pub summary: Option<String>,
    pub description: Option<String>,
    /// Some(None) clears.
    pub cve_id: Option<Option<String>>,
    pub vulnerabilities: Option<Vec<Value>>,
    pub cwe_ids: Option<Vec<String>>,
    pub credits: Option<Vec<(String, String)>>,
    pub severity: Option<Option<String>>,
    pub cvss_vector: Option<Option<String>>,
    pub state: Option<String>,
    pub collaborating_users: Option<Vec<String>>,
    pub collaborating_teams: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// CVSS
// ---------------------------------------------------------------------------------------------

/// CVSS v3.x "Roundup": the smallest number with one decimal that is >= the input, computed on
/// integers as the specification prescribes to avoid floating point surprises.
fn roundup(value: f64) -> f64 {
    let int_input = (value * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

/// The CVSS v3.0/v3.1 base score of a vector like
/// "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"; None if it is not a valid v3 vector.
pub(crate) fn cvss3_score(vector: &str) -> Option<f64> {
    let rest = vector
        .strip_prefix("CVSS:3.1/")
        .or_else(|| vector.strip_prefix("CVSS:3.0/"))?;
    let mut metrics: BTreeMap<&str, &str> = BTreeMap::new();
    for part in rest.split('/') {
        let (key, value) = part.split_once(':')?;
        if metrics.insert(key, value).is_some() {
            return None;
        }
    }
    let get = |key: &str| metrics.get(key).copied();
    let scope_changed = match get("S")? {
        "U" => false,
        "C" => true,
        _ => return None,
    };
    let av = match get("AV")? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        _ => return None,
    };
    let ac = match get("AC")? {
        "L" => 0.77,
        "H" => 0.44,
        _ => return None,
    };
    let pr = match (get("PR")?, scope_changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        _ => return None,
    };
    let ui = match get("UI")? {
        "N" => 0.85,
        "R" => 0.62,
        _ => return None,
    };
    let cia = |key: &str| match get(key)? {
        "H" => Some(0.56),
        "L" => Some(0.22),
        "N" => Some(0.0),
        _ => None,
    };
    let (c, i, a) = (cia("C")?, cia("I")?, cia("A")?);
    let iss = 1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02_f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        return Some(0.0);
    }
    let raw = if scope_changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Some(roundup(raw.min(10.0)))
}

/// GitHub's severity for a CVSS score.
fn severity_of(score: f64) -> &'static str {
    if score >= 9.0 {
        "critical"
    } else if score >= 7.0 {
        "high"
    } else if score >= 4.0 {
        "medium"
    } else {
        "low"
    }
}

/// Checks a vector GitHub would take: a valid v3 vector, or a v4 one (stored, not scored: the
/// simulator does not implement the v4 formula).
fn check_vector(vector: &str) -> Result<(), String> {
    if vector.starts_with("CVSS:4.0/") || cvss3_score(vector).is_some() {
        Ok(())
    } else {
        Err(format!(
            "Invalid request.\n\n{vector:?} is not a valid CVSS vector string."
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

fn invalid(detail: impl std::fmt::Display) -> String {
    format!("Invalid request.\n\n{detail}")
}

fn nullable_string(
    fields: &Map<String, Value>,
    key: &str,
) -> Result<Option<Option<String>>, String> {
    match fields.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(invalid_type(key, other, "a string or null")),
    }
}

fn string_list(fields: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>, String> {
    match fields.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| invalid_type(key, item, "a string"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(invalid_type(key, other, "an array")),
    }
}

/// Validates one vulnerability and fills in absent fields with null.
fn vulnerability(item: &Value) -> Result<Value, String> {
    const KEYS: [&str; 4] = [
        "package",
        "vulnerable_version_range",
        "patched_versions",
        "vulnerable_functions",
    ];
    let fields = item
        .as_object()
        .ok_or_else(|| invalid_type("vulnerabilities", item, "an object"))?;
    if let Some(key) = fields.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "\"{key}\" is not a permitted key in a vulnerability."
        )));
    }
    let package = fields
        .get("package")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("\"package\" wasn't supplied."))?;
    let ecosystem = package
        .get("ecosystem")
        .and_then(Value::as_str)
        .filter(|e| ECOSYSTEMS.contains(e))
        .ok_or_else(|| {
            invalid_type(
                "vulnerabilities/package/ecosystem",
                package.get("ecosystem").unwrap_or(&Value::Null),
                "a supported ecosystem",
            )
        })?;
    let name = match package.get("name") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::String(s)) => json!(s),
        Some(other) => {
            return Err(invalid_type(
                "vulnerabilities/package/name",
                other,
                "a string",
            ))
        }
    };
    let text = |key: &str| -> Result<Value, String> {
        match fields.get(key) {
            None | Some(Value::Null) => Ok(Value::Null),
            Some(Value::String(s)) => Ok(json!(s)),
            Some(other) => Err(invalid_type(
                &format!("vulnerabilities/{key}"),
                other,
                "a string",
            )),
        }
    };
    let functions = match fields.get("vulnerable_functions") {
        None | Some(Value::Null) => Value::Null,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => {
            Value::Array(items.clone())
        }
        Some(other) => {
            return Err(invalid_type(
                "vulnerabilities/vulnerable_functions",
                other,
                "an array of strings",
            ))
        }
    };
    Ok(json!({
        "package": { "ecosystem": ecosystem, "name": name },
        "vulnerable_version_range": text("vulnerable_version_range")?,
        "patched_versions": text("patched_versions")?,
        "vulnerable_functions": functions,
    }))
}

/// Validates a create (`for_update` false) or update body; the error is GitHub's 422 message.
pub(crate) fn parse_fields(body: &Value, for_update: bool) -> Result<Fields, String> {
    const CREATE_KEYS: [&str; 9] = [
        "summary",
        "description",
        "cve_id",
        "vulnerabilities",
        "cwe_ids",
        "credits",
        "severity",
        "cvss_vector_string",
        "start_private_fork",
    ];
    const UPDATE_ONLY: [&str; 3] = ["state", "collaborating_users", "collaborating_teams"];
    let fields = object(body)?;
    if let Some(key) = fields.keys().find(|k| {
        let k = k.as_str();
        !(CREATE_KEYS.contains(&k) && (k != "start_private_fork" || !for_update)
            || for_update && UPDATE_ONLY.contains(&k))
    }) {
        return Err(invalid(format!("\"{key}\" is not a permitted key.")));
    }
    let mut parsed = Fields::default();
    for (key, slot) in [
        ("summary", &mut parsed.summary),
        ("description", &mut parsed.description),
    ] {
        match fields.get(key) {
            None if !for_update => return Err(invalid(format!("\"{key}\" wasn't supplied."))),
            None => {}
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Err(invalid(format!("{key} can't be blank.")))
            }
            Some(Value::String(s)) => *slot = Some(s.clone()),
            Some(other) => return Err(invalid_type(key, other, "a string")),
        }
    }
    if parsed
        .summary
        .as_ref()
        .is_some_and(|s| s.chars().count() > 1024)
    {
        return Err(invalid("summary is too long (maximum is 1024 characters)."));
    }
    parsed.cve_id = nullable_string(fields, "cve_id")?;
    if let Some(Some(cve)) = &parsed.cve_id {
        let valid = cve
            .strip_prefix("CVE-")
            .and_then(|rest| rest.split_once('-'))
            .is_some_and(|(year, number)| {
                year.len() == 4
                    && year.chars().all(|c| c.is_ascii_digit())
                    && number.len() >= 4
                    && number.chars().all(|c| c.is_ascii_digit())
            });
        if !valid {
            return Err(invalid(format!("{cve:?} is not a valid CVE id.")));
        }
    }
    match fields.get("vulnerabilities") {
        None if !for_update => return Err(invalid("\"vulnerabilities\" wasn't supplied.")),
        None => {}
        Some(Value::Array(items)) => {
            parsed.vulnerabilities =
                Some(items.iter().map(vulnerability).collect::<Result<_, _>>()?)
        }
        Some(other) => return Err(invalid_type("vulnerabilities", other, "an array")),
    }
    parsed.cwe_ids = string_list(fields, "cwe_ids")?;
    if let Some(bad) = parsed.cwe_ids.iter().flatten().find(|c| {
        !c.strip_prefix("CWE-")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|d| d.is_ascii_digit()))
    }) {
        return Err(invalid(format!("{bad:?} is not a valid CWE id.")));
    }
    match fields.get("credits") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            let mut credits = Vec::new();
            for item in items {
                let login = item.get("login").and_then(Value::as_str);
                let kind = item.get("type").and_then(Value::as_str);
                match (login, kind) {
                    (Some(login), Some(kind)) if CREDIT_TYPES.contains(&kind) => {
                        credits.push((login.to_owned(), kind.to_owned()))
                    }
                    _ => return Err(invalid_type("credits", item, "a credit")),
                }
            }
            parsed.credits = Some(credits);
        }
        Some(other) => return Err(invalid_type("credits", other, "an array")),
    }
    parsed.severity = nullable_string(fields, "severity")?;
    if let Some(Some(severity)) = &parsed.severity {
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(invalid(format!(
                "{severity:?} is not one of {SEVERITIES:?}."
            )));
        }
    }
    parsed.cvss_vector = nullable_string(fields, "cvss_vector_string")?;
    if let Some(Some(vector)) = &parsed.cvss_vector {
        check_vector(vector)?;
    }
    if matches!(
        (&parsed.severity, &parsed.cvss_vector),
        (Some(Some(_)), Some(Some(_)))
    ) {
        return Err("Cannot set both severity and cvss_vector_string.".to_owned());
    }
    match fields.get("state") {
        None => {}
        Some(Value::String(s)) if ["published", "closed", "draft"].contains(&s.as_str()) => {
            parsed.state = Some(s.clone())
        }
        Some(other) => {
            return Err(invalid_type(
                "state",
                other,
                "one of [\"published\", \"closed\", \"draft\"]",
            ))
        }
    }
    parsed.collaborating_users = string_list(fields, "collaborating_users")?;
    parsed.collaborating_teams = string_list(fields, "collaborating_teams")?;
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

fn cvss_json(vector: &Option<String>) -> Value {
    match vector {
        Some(v) => json!({
            "vector_string": v,
            "score": cvss3_score(v),
        }),
        None => json!({ "vector_string": null, "score": null }),
    }
}

pub(crate) fn advisory_json(base: &str, org: &Org, repo: &Repo, a: &Advisory) -> Value {
    let api = format!(
        "{base}/repos/{}/{}/security-advisories/{}",
        org.login, repo.name, a.ghsa_id
    );
    let html = format!(
        "{base}/{}/{}/security/advisories/{}",
        org.login, repo.name, a.ghsa_id
    );
    let mut identifiers = vec![json!({ "type": "GHSA", "value": a.ghsa_id })];
    if let Some(cve) = &a.cve_id {
        identifiers.push(json!({ "type": "CVE", "value": cve }));
    }
    let (v3, v4) = match &a.cvss_vector {
        Some(v) if v.starts_with("CVSS:4.0/") => (Value::Null, cvss_json(&a.cvss_vector)),
        Some(_) => (cvss_json(&a.cvss_vector), Value::Null),
        None => (Value::Null, Value::Null),
    };
    let cwes: Vec<Value> = a
        .cwe_ids
        .iter()
        .map(|id| {
            let name = CWE_NAMES
                .iter()
                .find(|(known, _)| known == id)
                .map_or(id.as_str(), |(_, name)| name);
            json!({ "cwe_id": id, "name": name })
        })
        .collect();
    let credits: Vec<Value> = a
        .credits
        .iter()
        .map(|(login, kind)| json!({ "login": login, "type": kind }))
        .collect();
    let credits_detailed: Vec<Value> = a
        .credits
        .iter()
        .map(|(login, kind)| {
            json!({ "user": render::user_json(base, login), "type": kind, "state": "pending" })
        })
        .collect();
    let mut m = Map::new();
    m.insert("ghsa_id".into(), json!(a.ghsa_id));
    m.insert("cve_id".into(), json!(a.cve_id));
    m.insert("url".into(), json!(api));
    m.insert("html_url".into(), json!(html));
    m.insert("summary".into(), json!(a.summary));
    m.insert("description".into(), json!(a.description));
    m.insert("severity".into(), json!(a.severity));
    m.insert("author".into(), a.author.json(base));
    m.insert(
        "publisher".into(),
        a.publisher.as_ref().map_or(Value::Null, |p| p.json(base)),
    );
    m.insert("identifiers".into(), Value::Array(identifiers));
    m.insert("state".into(), json!(a.state));
    m.insert("created_at".into(), json!(time(&a.created_at)));
    m.insert("updated_at".into(), json!(time(&a.updated_at)));
    m.insert(
        "published_at".into(),
        json!(a.published_at.as_ref().map(time)),
    );
    m.insert("closed_at".into(), json!(a.closed_at.as_ref().map(time)));
    m.insert(
        "withdrawn_at".into(),
        json!(a.withdrawn_at.as_ref().map(time)),
    );
    m.insert(
        "submission".into(),
        a.submission
            .map_or(Value::Null, |accepted| json!({ "accepted": accepted })),
    );
    m.insert(
        "vulnerabilities".into(),
        Value::Array(a.vulnerabilities.clone()),
    );
    m.insert(
        "cvss".into(),
        if v3.is_null() {
            cvss_json(&None)
        } else {
            v3.clone()
        },
    );
    m.insert(
        "cvss_severities".into(),
        json!({ "cvss_v3": v3, "cvss_v4": v4 }),
    );
    m.insert("cwes".into(), Value::Array(cwes));
    m.insert("cwe_ids".into(), json!(a.cwe_ids));
    m.insert("credits".into(), Value::Array(credits));
    m.insert("credits_detailed".into(), Value::Array(credits_detailed));
    m.insert(
        "collaborating_users".into(),
        Value::Array(
            a.collaborating_users
                .iter()
                .map(|u| render::user_json(base, u))
                .collect(),
        ),
    );
    m.insert(
        "collaborating_teams".into(),
        Value::Array(
            a.collaborating_teams
                .iter()
                .map(|t| render::team_json(base, &org.login, t))
                .collect(),
        ),
    );
    m.insert("private_fork".into(), Value::Null);
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------

/// A GHSA id from a seed: three groups of four characters of GitHub's alphabet.
fn ghsa_from_seed(seed: &str) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let chars: Vec<char> = digest
        .iter()
        .take(12)
        .map(|b| char::from(GHSA_ALPHABET[usize::from(*b) % GHSA_ALPHABET.len()]))
        .collect();
    let group = |i: usize| chars[i * 4..i * 4 + 4].iter().collect::<String>();
    format!("GHSA-{}-{}-{}", group(0), group(1), group(2))
}

/// Whether moving from `from` to `to` is one of GitHub's allowed state changes.
fn transition_allowed(from: &str, to: &str) -> bool {
    from == to
        || matches!(
            (from, to),
            ("triage", "draft")
                | ("triage", "closed")
                | ("draft", "published")
                | ("draft", "closed")
                | ("closed", "draft")
        )
}

/// Applies `fields` to an advisory; the error is GitHub's 422 message. Returns whether the
/// advisory was published by this change.
fn apply(a: &mut Advisory, fields: Fields, actor: Actor) -> Result<bool, String> {
    if matches!(fields.severity, Some(Some(_)))
        && a.cvss_vector.is_some()
        && fields.cvss_vector.is_none()
    {
        return Err("Cannot update severity value when CVSS is set.".to_owned());
    }
    let now = Utc::now();
    let mut published = false;
    if let Some(state) = &fields.state {
        if !transition_allowed(&a.state, state) {
            return Err(format!(
                "Invalid state transition from `{}` to `{state}`.",
                a.state
            ));
        }
        if *state != a.state {
            match state.as_str() {
                "published" => {
                    a.published_at = Some(now);
                    a.publisher = Some(Person::Actor(actor));
                    published = true;
                }
                "closed" => a.closed_at = Some(now),
                "draft" => {
                    a.closed_at = None;
                    if a.submission == Some(false) {
                        a.submission = Some(true);
                    }
                }
                _ => {}
            }
            a.state = state.clone();
        }
    }
    if let Some(summary) = fields.summary {
        a.summary = summary;
    }
    if let Some(description) = fields.description {
        a.description = description;
    }
    if let Some(cve) = fields.cve_id {
        a.cve_id = cve;
    }
    if let Some(vulnerabilities) = fields.vulnerabilities {
        a.vulnerabilities = vulnerabilities;
    }
    if let Some(cwes) = fields.cwe_ids {
        a.cwe_ids = cwes;
    }
    if let Some(credits) = fields.credits {
        a.credits = credits;
    }
    if let Some(users) = fields.collaborating_users {
        a.collaborating_users = users;
    }
    if let Some(teams) = fields.collaborating_teams {
        a.collaborating_teams = teams;
    }
    match (fields.cvss_vector, fields.severity) {
        (Some(Some(vector)), _) => {
            a.severity = cvss3_score(&vector)
                .map(|s| severity_of(s).to_owned())
                .or(a.severity.take());
            a.cvss_vector = Some(vector);
        }
        (Some(None), severity) => {
            a.cvss_vector = None;
            if let Some(severity) = severity {
                a.severity = severity;
            }
        }
        (None, Some(severity)) => a.severity = severity,
        (None, None) => {}
    }
    a.updated_at = now;
    Ok(published)
}

impl SimState {
    fn new_ghsa(&self, repo_id: u64) -> String {
        let mut attempt = 0u64;
        loop {
            let candidate = ghsa_from_seed(&format!("{repo_id}:{}:{attempt}", self.next_object_id));
            let taken = self
                .repos
                .values()
                .any(|r| r.advisories.iter().any(|a| a.ghsa_id == candidate));
            if !taken {
                return candidate;
            }
            attempt += 1;
        }
    }

    fn advisory_event(
        &self,
        repo_id: u64,
        ghsa: &str,
        action: &str,
        actor: Actor,
    ) -> Option<Event> {
        let repo = self.repos.get(&repo_id)?;
        let org = self.orgs.get(&repo.owner_key)?;
        let advisory = repo.advisories.iter().find(|a| a.ghsa_id == ghsa)?;
        let base = self.base_url(None);
        let value = advisory_json(&base, org, repo, advisory);
        self.repo_object_event(
            repo_id,
            "repository_advisory",
            action,
            actor,
            vec![("repository_advisory", value)],
        )
    }

    /// Creates an advisory in `state` ("draft", or "triage" for a report) from create fields.
    fn create_advisory(
        &mut self,
        owner: &str,
        name: &str,
        fields: Fields,
        author: Person,
        state: &str,
        actor: Actor,
    ) -> Result<(String, Vec<Event>), SimError> {
        let repo_id = self.repo_id(owner, name)?;
        let ghsa = self.new_ghsa(repo_id);
        // Ids only need to be unique; taking one keeps GHSA seeds from repeating.
        self.next_object_id();
        let repo = self.repo_mut(owner, name)?;
        if state == "triage" && !repo.private_vulnerability_reporting {
            return Err(SimError::Invalid(
                "Private vulnerability reporting is not enabled for this repository".to_owned(),
            ));
        }
        let now = Utc::now();
        let mut advisory = Advisory {
            ghsa_id: ghsa.clone(),
            cve_id: None,
            summary: String::new(),
            description: String::new(),
            severity: None,
            cvss_vector: None,
            state: state.to_owned(),
            vulnerabilities: Vec::new(),
            cwe_ids: Vec::new(),
            credits: Vec::new(),
            author,
            publisher: None,
            submission: (state == "triage").then_some(false),
            collaborating_users: Vec::new(),
            collaborating_teams: Vec::new(),
            created_at: now,
            updated_at: now,
            published_at: None,
            closed_at: None,
            withdrawn_at: None,
        };
        let creation = Fields {
            state: None,
            ..fields
        };
        apply(&mut advisory, creation, actor).map_err(SimError::Invalid)?;
        repo.advisories.push(advisory);
        let events = if state == "triage" {
            self.advisory_event(repo_id, &ghsa, "reported", actor)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        };
        Ok((ghsa, events))
    }

    fn update_advisory(
        &mut self,
        owner: &str,
        name: &str,
        ghsa: &str,
        fields: Fields,
        actor: Actor,
    ) -> Result<Vec<Event>, SimError> {
        let repo = self.repo_mut(owner, name)?;
        let repo_id = repo.id;
        let advisory = repo
            .advisories
            .iter_mut()
            .find(|a| a.ghsa_id.eq_ignore_ascii_case(ghsa))
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        let ghsa = advisory.ghsa_id.clone();
        // Validate on a copy so a refused change leaves the advisory as it was.
        let mut next = advisory.clone();
        let published = apply(&mut next, fields, actor).map_err(SimError::Invalid)?;
        *advisory = next;
        Ok(if published {
            self.advisory_event(repo_id, &ghsa, "published", actor)
                .into_iter()
                .collect()
        } else {
            Vec::new()
        })
    }
}

// ---------------------------------------------------------------------------------------------
// REST
// ---------------------------------------------------------------------------------------------

pub(crate) fn register(router: Router<Simulator>, tag: Tag<'_>) -> Router<Simulator> {
    router
        .route(
            ROUTE_ADVISORIES,
            tag(
                ROUTE_ADVISORIES,
                axum::routing::get(list_advisories).post(create_advisory),
            ),
        )
        .route(
            ROUTE_ADVISORY,
            tag(
                ROUTE_ADVISORY,
                axum::routing::get(get_advisory).patch(update_advisory),
            ),
        )
}

/// The opaque pagination cursor of an advisory.
fn cursor(a: &Advisory) -> String {
    render::base64(format!("cursor:v2:{}", a.ghsa_id).as_bytes())
}

async fn list_advisories(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (org, repo) = find_repo(&st, &owner, &name, DOCS_LIST)?;
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, message, DOCS_LIST);
    let sort = choice(
        &query,
        "sort",
        &["created", "updated", "published"],
        "created",
    )
    .map_err(bad)?;
    let direction = choice(&query, "direction", &["asc", "desc"], "desc").map_err(bad)?;
    let state = match query.get("state") {
        None => None,
        Some(s) if ["triage", "draft", "published", "closed"].contains(&s.as_str()) => Some(s),
        Some(s) => return Err(bad(format!("Invalid value for `state`: {s:?}"))),
    };
    let per_page = match query.get("per_page") {
        None => 30,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| bad(format!("Invalid value for `per_page`: {raw:?}")))?,
    };
    let mut advisories: Vec<&Advisory> = repo
        .advisories
        .iter()
        .filter(|a| state.is_none_or(|s| a.state == *s))
        .collect();
    match sort {
        "updated" => advisories.sort_by_key(|a| a.updated_at),
        // Unpublished advisories sort before published ones.
        "published" => advisories.sort_by_key(|a| a.published_at),
        _ => advisories.sort_by_key(|a| a.created_at),
    }
    if direction == "desc" {
        advisories.reverse();
    }
    let position = |raw: &String| {
        advisories
            .iter()
            .position(|a| cursor(a) == *raw)
            .ok_or_else(|| bad(format!("Invalid cursor: {raw:?}")))
    };
    let (start, end) = match (query.get("after"), query.get("before")) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "Only one of `before` and `after` may be given".to_owned()
            ))
        }
        (Some(after), None) => {
            let start = position(after)? + 1;
            (start, (start + per_page).min(advisories.len()))
        }
        (None, Some(before)) => {
            let end = position(before)?;
            (end.saturating_sub(per_page), end)
        }
        (None, None) => (0, per_page.min(advisories.len())),
    };
    let page = &advisories[start..end];
    let url = format!(
        "{base}/repos/{}/{}/security-advisories",
        org.login, repo.name
    );
    let kept: std::collections::BTreeMap<&String, &String> = query
        .iter()
        .filter(|(k, _)| !["before", "after", "per_page"].contains(&k.as_str()))
        .collect();
    let mut prefix = String::new();
    for (k, v) in kept {
        prefix.push_str(&format!(
            "{}={}&",
            encode_query_component(k),
            encode_query_component(v)
        ));
    }
    let mut links = Vec::new();
    if let (true, Some(first)) = (start > 0, page.first()) {
        links.push(format!(
            "<{url}?{prefix}per_page={per_page}&before={}>; rel=\"prev\"",
            encode_query_component(&cursor(first))
        ));
    }
    if let (true, Some(last)) = (end < advisories.len(), page.last()) {
        links.push(format!(
            "<{url}?{prefix}per_page={per_page}&after={}>; rel=\"next\"",
            encode_query_component(&cursor(last))
        ));
    }
    let body = Value::Array(
        page.iter()
            .map(|a| advisory_json(&base, org, repo, a))
            .collect(),
    );
    let link = (!links.is_empty()).then(|| links.join(", "));
    Ok(with_link(json_response(StatusCode::OK, &body), link))
}

fn found(
    st: &SimState,
    base: &str,
    owner: &str,
    name: &str,
    ghsa: &str,
    docs: &'static str,
) -> Result<(Value, String), ApiError> {
    let (org, repo) = find_repo(st, owner, name, docs)?;
    let advisory = repo
        .advisories
        .iter()
        .find(|a| a.ghsa_id.eq_ignore_ascii_case(ghsa))
        .ok_or_else(|| ApiError::not_found("Not Found", docs))?;
    let location = format!(
        "{base}/repos/{}/{}/security-advisories/{}",
        org.login, repo.name, advisory.ghsa_id
    );
    Ok((advisory_json(base, org, repo, advisory), location))
}

async fn create_advisory(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    find_repo(&st, &owner, &name, DOCS_CREATE)?;
    let value = parse_json(&body, DOCS_CREATE)?;
    let fields = parse_fields(&value, false)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m, DOCS_CREATE))?;
    let (ghsa, events) = st
        .create_advisory(
            &owner,
            &name,
            fields,
            Person::Actor(Actor::Api),
            "draft",
            Actor::Api,
        )
        .map_err(|e| ApiError::from_sim(e, DOCS_CREATE))?;
    sim.emit(&st, events);
    let (value, location) = found(&st, &base, &owner, &name, &ghsa, DOCS_CREATE)?;
    let mut response = json_response(StatusCode::CREATED, &value);
    set_header(response.headers_mut(), "location", location);
    Ok(response)
}

async fn get_advisory(
    State(sim): State<Simulator>,
    Path((owner, name, ghsa)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let st = sim.lock();
    let base = base_of(&st, &headers);
    let (value, _) = found(&st, &base, &owner, &name, &ghsa, DOCS_GET)?;
    Ok(json_response(StatusCode::OK, &value))
}

async fn update_advisory(
    State(sim): State<Simulator>,
    Path((owner, name, ghsa)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut st = sim.lock();
    let base = base_of(&st, &headers);
    found(&st, &base, &owner, &name, &ghsa, DOCS_UPDATE)?;
    let value = parse_json(&body, DOCS_UPDATE)?;
    let fields = parse_fields(&value, true)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m, DOCS_UPDATE))?;
    let events = st
        .update_advisory(&owner, &name, &ghsa, fields, Actor::Api)
        .map_err(|e| ApiError::from_sim(e, DOCS_UPDATE))?;
    sim.emit(&st, events);
    let (value, _) = found(&st, &base, &owner, &name, &ghsa, DOCS_UPDATE)?;
    Ok(json_response(StatusCode::OK, &value))
}

// ---------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------

impl Simulator {
    /// Drafts an advisory as the admin user from a body in the shape of GitHub's create
    /// request; returns its GHSA id. No webhook (GitHub sends none for drafts).
    pub fn create_advisory(
        &self,
        owner: &str,
        repo: &str,
        body: Value,
    ) -> Result<String, SimError> {
        let fields = parse_fields(&body, false).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let (ghsa, events) = st.create_advisory(
            owner,
            repo,
            fields,
            Person::Actor(Actor::Admin),
            "draft",
            Actor::Admin,
        )?;
        self.emit(&st, events);
        Ok(ghsa)
    }

    /// Files a private vulnerability report as `reporter` (body in the shape of the create
    /// request): an advisory in state `triage` with an unaccepted submission, and the
    /// `repository_advisory` "reported" webhook. Refused unless private vulnerability
    /// reporting is enabled.
    pub fn report_vulnerability(
        &self,
        owner: &str,
        repo: &str,
        reporter: &str,
        body: Value,
    ) -> Result<String, SimError> {
        let fields = parse_fields(&body, false).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let (ghsa, events) = st.create_advisory(
            owner,
            repo,
            fields,
            Person::User(reporter.to_owned()),
            "triage",
            Actor::Admin,
        )?;
        self.emit(&st, events);
        Ok(ghsa)
    }

    /// Changes an advisory as the admin user with a body in the shape of GitHub's update
    /// request; publishing sends `repository_advisory` "published".
    pub fn update_advisory(
        &self,
        owner: &str,
        repo: &str,
        ghsa_id: &str,
        body: Value,
    ) -> Result<(), SimError> {
        let fields = parse_fields(&body, true).map_err(SimError::Invalid)?;
        let mut st = self.lock();
        let events = st.update_advisory(owner, repo, ghsa_id, fields, Actor::Admin)?;
        self.emit(&st, events);
        Ok(())
    }

    /// Withdraws a published advisory, which only GitHub staff can do: state `withdrawn` and
    /// `withdrawn_at` set. No webhook.
    pub fn withdraw_advisory(
        &self,
        owner: &str,
        repo: &str,
        ghsa_id: &str,
    ) -> Result<(), SimError> {
        let mut st = self.lock();
        let repo = st.repo_mut(owner, repo)?;
        let advisory = repo
            .advisories
            .iter_mut()
            .find(|a| a.ghsa_id.eq_ignore_ascii_case(ghsa_id))
            .ok_or_else(|| SimError::NotFound("Not Found".to_owned()))?;
        if advisory.state != "published" {
            return Err(SimError::Invalid(
                "Only published advisories can be withdrawn".to_owned(),
            ));
        }
        let now = Utc::now();
        advisory.state = "withdrawn".to_owned();
        advisory.withdrawn_at = Some(now);
        advisory.updated_at = now;
        Ok(())
    }

    /// An advisory in the shape of GitHub's GET response; None if it does not exist.
    pub fn advisory(&self, owner: &str, repo: &str, ghsa_id: &str) -> Option<Value> {
        let st = self.lock();
        let base = st.base_url(None);
        found(&st, &base, owner, repo, ghsa_id, DOCS_GET)
            .ok()
            .map(|(value, _)| value)
    }
}

pub(crate) fn admin_routes() -> Router<Simulator> {
    Router::new()
        .route(
            "/repos/{owner}/{repo}/security-advisories",
            post(admin_create),
        )
        .route(
            "/repos/{owner}/{repo}/security-advisories/reports",
            post(admin_report),
        )
        .route(
            "/repos/{owner}/{repo}/security-advisories/{ghsa_id}",
            patch(admin_update),
        )
        .route(
            "/repos/{owner}/{repo}/security-advisories/{ghsa_id}/withdraw",
            post(admin_withdraw),
        )
}

fn admin_answer(
    sim: &Simulator,
    owner: &str,
    name: &str,
    ghsa: &str,
    status: StatusCode,
) -> Response {
    crate::admin::found(status, sim.advisory(owner, name, ghsa))
}

/// `POST /_admin/repos/{owner}/{repo}/security-advisories` with the REST create body: 201 with
/// the advisory.
async fn admin_create(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    match sim.create_advisory(&owner, &name, value) {
        Ok(ghsa) => admin_answer(&sim, &owner, &name, &ghsa, StatusCode::CREATED),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `POST /_admin/repos/{owner}/{repo}/security-advisories/reports` with the REST create body
/// plus `reporter` (a login): 201 with the advisory in state `triage`.
async fn admin_report(
    State(sim): State<Simulator>,
    Path((owner, name)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let mut value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    let reporter = match value.as_object_mut().and_then(|o| o.remove("reporter")) {
        Some(Value::String(login)) if !login.is_empty() => login,
        _ => {
            return crate::admin::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reporter must be a login",
            )
        }
    };
    match sim.report_vulnerability(&owner, &name, &reporter, value) {
        Ok(ghsa) => admin_answer(&sim, &owner, &name, &ghsa, StatusCode::CREATED),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `PATCH /_admin/repos/{owner}/{repo}/security-advisories/{ghsa_id}` with the REST update
/// body: 200 with the advisory.
async fn admin_update(
    State(sim): State<Simulator>,
    Path((owner, name, ghsa)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let value: Value = match crate::admin::parse(&body) {
        Ok(v) => v,
        Err(response) => return *response,
    };
    match sim.update_advisory(&owner, &name, &ghsa, value) {
        Ok(()) => admin_answer(&sim, &owner, &name, &ghsa, StatusCode::OK),
        Err(e) => crate::admin::sim_error(e),
    }
}

/// `POST /_admin/repos/{owner}/{repo}/security-advisories/{ghsa_id}/withdraw`: 200 with the
/// advisory.
async fn admin_withdraw(
    State(sim): State<Simulator>,
    Path((owner, name, ghsa)): Path<(String, String, String)>,
) -> Response {
    match sim.withdraw_advisory(&owner, &name, &ghsa) {
        Ok(()) => admin_answer(&sim, &owner, &name, &ghsa, StatusCode::OK),
        Err(e) => crate::admin::sim_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_scores_match_the_specification() {
        let score = |v: &str| cvss3_score(v).unwrap();
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), 9.8);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:L"), 7.3);
        assert_eq!(score("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N"), 6.1);
        assert_eq!(score("CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), 10.0);
        assert_eq!(score("CVSS:3.1/AV:L/AC:H/PR:H/UI:R/S:U/C:N/I:N/A:N"), 0.0);
        assert_eq!(score("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"), 1.6);
        assert!(cvss3_score("CVSS:3.1/AV:N").is_none());
        assert!(cvss3_score("CVSS:2.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H").is_none());
        assert_eq!(severity_of(9.8), "critical");
        assert_eq!(severity_of(6.1), "medium");
    }

    #[test]
    fn ghsa_ids_use_githubs_alphabet() {
        let id = ghsa_from_seed("x");
        assert_eq!(id.len(), "GHSA-xxxx-xxxx-xxxx".len());
        let body: String = id.trim_start_matches("GHSA-").replace('-', "");
        assert!(body.bytes().all(|b| GHSA_ALPHABET.contains(&b)), "{id}");
        assert_ne!(ghsa_from_seed("y"), id);
    }

    #[test]
    fn bodies_and_transitions() {
        let body = json!({
            "summary": "s", "description": "d",
            "vulnerabilities": [{ "package": { "ecosystem": "npm", "name": "p" } }],
            "cvss_vector_string": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        });
        let fields = parse_fields(&body, false).unwrap();
        assert_eq!(
            fields.vulnerabilities.as_ref().unwrap()[0]["patched_versions"],
            Value::Null
        );
        let mut both = body.clone();
        both["severity"] = json!("low");
        assert!(parse_fields(&both, false).is_err());
        assert!(parse_fields(&json!({ "summary": "s", "description": "d" }), false).is_err());
        assert!(parse_fields(&json!({ "state": "published", "unknown": 1 }), true).is_err());
        assert!(parse_fields(&json!({ "state": "triage" }), true).is_err());
        assert!(parse_fields(&json!({ "cve_id": "CVE-20-1" }), true).is_err());
        assert!(transition_allowed("draft", "published"));
        assert!(transition_allowed("triage", "draft"));
        assert!(!transition_allowed("published", "draft"));
        assert!(!transition_allowed("published", "closed"));
        assert!(!transition_allowed("triage", "published"));
    }
}
