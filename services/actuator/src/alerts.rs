//! Alerts: a repository security advisory (draft) opened when a rule fails and closed when it
//! passes again, or an issue where advisories are unavailable (the rule type says `issue`, or
//! GitHub refuses the advisory and the fallback is on).
//!
//! Each alert carries a marker naming (entity, profile, rule), so one left open by an attempt
//! that crashed before recording it is found and reused, never opened twice.

use plumbline_domain::Entity;
use plumbline_engine::CompiledRule;
use plumbline_github::{GitHub, GitHubError, Method};
use plumbline_proto::v1::Verdict;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Label of Plumbline's alert issues.
pub const ISSUE_LABEL: &str = "plumbline";

/// The marker of one rule's alert on one entity.
pub fn marker(entity_id: &str, profile: &str, rule_name: &str) -> String {
    let mut h = Sha256::new();
    for part in [entity_id, profile, rule_name] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    format!(
        "<!-- plumbline-alert: {} -->",
        &hex::encode(h.finalize())[..32]
    )
}

/// What an alert is about: the repository, or for an artifact the image in it (package, tags
/// and digest), since the advisory is opened on the repository that publishes the image.
pub fn subject(entity: &Entity) -> String {
    let repo = format!("{}/{}", entity.owner, entity.name);
    if entity.entity_ref.kind != plumbline_domain::EntityKind::Artifact {
        return repo;
    }
    let p = &entity.properties;
    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("");
    let tags: Vec<&str> = p
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{repo} image {}/{}:{} ({})",
        text("package_owner"),
        text("package_name"),
        if tags.is_empty() {
            "untagged".to_string()
        } else {
            tags.join(",")
        },
        text("digest")
    )
}

/// Summary (advisory) or title (issue).
pub fn summary(rule: &CompiledRule, v: &Verdict, entity: &Entity) -> String {
    let what = if rule.rule_type.display_name.is_empty() {
        v.rule_type.as_str()
    } else {
        rule.rule_type.display_name.as_str()
    };
    let s = format!(
        "Plumbline: {} fails \"{what}\" ({} in profile {})",
        subject(entity),
        v.rule_name,
        v.profile
    );
    s.chars().take(1000).collect()
}

/// What a verdict found, as a fenced code block: the message and details quote what the
/// evaluated state holds (a signer's branch name, a file's text), which must render as text,
/// never as Markdown or an @mention. The fence is longer than any run of backticks inside.
fn found_block(v: &Verdict) -> String {
    let mut text = if v.message.is_empty() {
        "the rule's policy denied the current state".to_string()
    } else {
        v.message.clone()
    };
    for detail in &v.details {
        text.push_str(&format!("\n- {detail}"));
    }
    let text: String = text
        .chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(20_000)
        .collect();
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}text\n{text}\n{fence}\n")
}

pub fn description(rule: &CompiledRule, v: &Verdict, entity: &Entity, marker: &str) -> String {
    let mut d = format!(
        "Plumbline evaluated **{}** against rule `{}` (rule type `{}`) of profile `{}`, and it fails.\n\n**What was found:**\n\n{}",
        subject(entity),
        v.rule_name,
        v.rule_type,
        v.profile,
        found_block(v)
    );
    if !rule.rule_type.description.trim().is_empty() {
        d.push_str(&format!(
            "\n**About the rule:** {}\n",
            rule.rule_type.description.trim()
        ));
    }
    if !rule.rule_type.guidance.trim().is_empty() {
        d.push_str(&format!(
            "\n**How to fix it:**\n\n{}\n",
            rule.rule_type.guidance.trim()
        ));
    }
    d.push_str("\nPlumbline closes this alert once the rule passes.\n\n");
    d.push_str(marker);
    d.push('\n');
    d
}

/// The request that opens an advisory.
pub fn advisory_request(
    owner: &str,
    repo: &str,
    summary: &str,
    description: &str,
    severity: &str,
) -> (String, Value) {
    (
        format!("/repos/{owner}/{repo}/security-advisories"),
        json!({
            "summary": summary,
            "description": description,
            "severity": severity,
            // GitHub wants an affected product; the repository itself is what is affected.
            "vulnerabilities": [{"package": {"ecosystem": "other", "name": format!("{owner}/{repo}")}}],
        }),
    )
}

pub fn issue_request(owner: &str, repo: &str, title: &str, body: &str) -> (String, Value) {
    (
        format!("/repos/{owner}/{repo}/issues"),
        json!({"title": title, "body": body, "labels": [ISSUE_LABEL]}),
    )
}

/// The request that closes the alert `provider_ref` (`advisory:GHSA-…` or `issue:N`).
pub fn close_request(owner: &str, repo: &str, provider_ref: &str) -> Option<(String, Value)> {
    if let Some(ghsa) = provider_ref.strip_prefix("advisory:") {
        return Some((
            format!("/repos/{owner}/{repo}/security-advisories/{ghsa}"),
            json!({"state": "closed"}),
        ));
    }
    let number = provider_ref.strip_prefix("issue:")?;
    Some((
        format!("/repos/{owner}/{repo}/issues/{number}"),
        json!({"state": "closed", "state_reason": "completed"}),
    ))
}

/// An open alert of Plumbline's bearing `marker`, if an earlier attempt left one: its reference.
pub async fn find_open(
    github: &GitHub,
    owner: &str,
    repo: &str,
    marker: &str,
) -> Result<Option<String>, GitHubError> {
    // Draft and triage advisories are the open ones; listing needs only reads.
    for state in ["draft", "triage"] {
        let found = github
            .list_advisories(owner, repo, Some(state))
            .await
            .or_else(|e| match e {
                // No advisories here (feature off, no access): nothing open there.
                GitHubError::Status {
                    status: 403 | 404 | 422,
                    ..
                } => Ok(vec![]),
                e => Err(e),
            })?
            .into_iter()
            .find(|a| a.description.as_deref().is_some_and(|d| d.contains(marker)));
        if let Some(a) = found {
            return Ok(Some(format!("advisory:{}", a.ghsa_id)));
        }
    }
    let issues = github
        .list_issues(owner, repo, "open", &[ISSUE_LABEL])
        .await
        .or_else(|e| match e {
            GitHubError::Status {
                status: 404 | 410, ..
            } => Ok(vec![]),
            e => Err(e),
        })?;
    Ok(issues
        .into_iter()
        .find(|i| i.body.as_deref().is_some_and(|b| b.contains(marker)))
        .map(|i| format!("issue:{}", i.number)))
}

/// Sends one alert request; answers (status, body).
pub async fn send(
    github: &GitHub,
    method: Method,
    path: &str,
    body: &Value,
) -> Result<(u16, Value), GitHubError> {
    let r = github.request(method, path, Some(body)).await?;
    let answer = r.json().unwrap_or(Value::Null);
    Ok((r.status, answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a signer or an author wrote (a branch named `@acme/security`, backticks) is shown
    /// as text: inside a fence no run of backticks can close.
    #[test]
    fn findings_render_as_text() {
        let v = Verdict {
            message: "Evaluation failures: \n - expected 'main', got '@acme/security'".into(),
            details: vec!["````\n@everyone".into()],
            ..Default::default()
        };
        let block = found_block(&v);
        let fence = block
            .lines()
            .next()
            .expect("fence")
            .trim_end_matches("text");
        assert!(
            fence.len() > 4,
            "longer than the four backticks inside: {block}"
        );
        assert!(block.trim_end().ends_with(fence));
        let inner: Vec<&str> = block.lines().collect();
        assert!(inner[1..inner.len() - 1]
            .iter()
            .all(|l| !l.starts_with(fence)));
        assert!(block.contains("@acme/security"));
    }

    #[test]
    fn markers_tell_rules_and_entities_apart() {
        let a = marker("github/repository/1", "p", "r");
        assert_eq!(a, marker("github/repository/1", "p", "r"));
        assert_ne!(a, marker("github/repository/2", "p", "r"));
        assert_ne!(a, marker("github/repository/1", "p", "s"));
        assert!(a.starts_with("<!-- plumbline-alert: ") && a.ends_with(" -->"));
    }

    #[test]
    fn close_requests_follow_the_reference() {
        let (p, b) = close_request("o", "r", "advisory:GHSA-1234-5678-9abc").expect("advisory");
        assert_eq!(p, "/repos/o/r/security-advisories/GHSA-1234-5678-9abc");
        assert_eq!(b, json!({"state": "closed"}));
        let (p, _) = close_request("o", "r", "issue:7").expect("issue");
        assert_eq!(p, "/repos/o/r/issues/7");
        assert_eq!(close_request("o", "r", "pull:3"), None);
    }
}
