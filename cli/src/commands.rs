//! Control-plane commands: what `plumb ruletype|profile|repo|status|reconcile` do.

use crate::client::Client;
use anyhow::Context as _;
use plumbline_proto::v1::*;
use std::fmt::Write as _;
use std::path::Path;

pub async fn apply_rule_type(
    c: &mut Client,
    project: &str,
    yaml: &str,
) -> anyhow::Result<ApplyRuleTypeResponse> {
    Ok(c.apply_rule_type(ApplyRuleTypeRequest {
        project: project.into(),
        yaml: yaml.into(),
    })
    .await?
    .into_inner())
}

pub async fn apply_profile(
    c: &mut Client,
    project: &str,
    yaml: &str,
) -> anyhow::Result<ApplyProfileResponse> {
    Ok(c.apply_profile(ApplyProfileRequest {
        project: project.into(),
        yaml: yaml.into(),
    })
    .await?
    .into_inner())
}

pub async fn register_repository(
    c: &mut Client,
    project: &str,
    full_name: &str,
    labels: Vec<String>,
    provider: &str,
) -> anyhow::Result<RegisterRepositoryResponse> {
    let (owner, name) = full_name
        .split_once('/')
        .filter(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'))
        .with_context(|| format!("{full_name:?} is not OWNER/NAME"))?;
    Ok(c.register_repository(RegisterRepositoryRequest {
        project: project.into(),
        owner: owner.into(),
        name: name.into(),
        labels,
        provider: provider.into(),
    })
    .await?
    .into_inner())
}

/// Registers every repository of the organisation `owner` (one GitHub request per 100).
pub async fn register_owner(
    c: &mut Client,
    project: &str,
    owner: &str,
    labels: Vec<String>,
    provider: &str,
) -> anyhow::Result<RegisterOwnerResponse> {
    Ok(c.register_owner(RegisterOwnerRequest {
        project: project.into(),
        owner: owner.into(),
        labels,
        provider: provider.into(),
    })
    .await?
    .into_inner())
}

/// Every latest verdict of a project (or of one entity, or in one status), page by page.
pub async fn status(
    c: &mut Client,
    project: &str,
    entity_id: &str,
) -> anyhow::Result<Vec<RuleStatus>> {
    status_filtered(c, project, entity_id, "").await
}

pub async fn status_filtered(
    c: &mut Client,
    project: &str,
    entity_id: &str,
    status: &str,
) -> anyhow::Result<Vec<RuleStatus>> {
    let mut all = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = c
            .list_status(ListStatusRequest {
                project: project.into(),
                entity_id: entity_id.into(),
                profile: String::new(),
                status: status.into(),
                page_size: 1000,
                page_token,
            })
            .await?
            .into_inner();
        all.extend(page.statuses);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        page_token = page.next_page_token;
    }
}

/// The posture of a project: entities per status, per profile and rule.
pub async fn posture(c: &mut Client, project: &str) -> anyhow::Result<String> {
    let response = get_posture(c, project).await?;
    let activity = crate::activity::lines(&response, chrono::Utc::now());
    let counts = response.counts;
    let mut rules: std::collections::BTreeMap<(String, String), [u64; 4]> =
        std::collections::BTreeMap::new();
    for c in counts {
        let slot = match EvalStatus::try_from(c.status).unwrap_or(EvalStatus::Unspecified) {
            EvalStatus::Pass => 0,
            EvalStatus::Fail => 1,
            EvalStatus::Error => 2,
            _ => 3,
        };
        rules.entry((c.profile, c.rule_name)).or_default()[slot] += c.count;
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24}  {:<48}  {:>8}  {:>8}  {:>8}  {:>8}",
        "PROFILE", "RULE", "PASS", "FAIL", "ERROR", "SKIPPED"
    );
    for ((profile, rule), n) in &rules {
        let _ = writeln!(
            out,
            "{profile:<24}  {rule:<48}  {:>8}  {:>8}  {:>8}  {:>8}",
            n[0], n[1], n[2], n[3]
        );
    }
    for line in activity {
        let _ = writeln!(out, "{line}");
    }
    Ok(out)
}

/// What waits in a project and how far the sweep is (the lines below a status table).
pub async fn activity(c: &mut Client, project: &str) -> anyhow::Result<Vec<String>> {
    let response = get_posture(c, project).await?;
    Ok(crate::activity::lines(&response, chrono::Utc::now()))
}

/// A project's posture counts, waits, quotas and sweep progress (`GetPosture`).
pub async fn get_posture(c: &mut Client, project: &str) -> anyhow::Result<GetPostureResponse> {
    Ok(c.get_posture(GetPostureRequest {
        project: project.into(),
    })
    .await?
    .into_inner())
}

/// `plumb ruletype test`: runs the suites and prints a line per case and a summary line.
/// Returns the number of failed cases.
pub async fn test_rule_types(
    paths: &[std::path::PathBuf],
    tests: Option<&Path>,
) -> anyhow::Result<usize> {
    use plumbline_engine::testsuite::{discover, run_suite, Suite};
    let suites = match tests {
        Some(t) => {
            let [rule_type] = paths else {
                anyhow::bail!(
                    "--tests runs against exactly one rule type file, got {}",
                    paths.len()
                );
            };
            vec![Suite {
                rule_type: rule_type.clone(),
                tests: t.to_path_buf(),
            }]
        }
        None => discover(paths)?,
    };
    if suites.is_empty() {
        anyhow::bail!(
            "no rule types with test suites (X.yaml beside X.test.yaml) under the given paths"
        );
    }
    let (mut passed, mut failed) = (0, 0);
    for s in &suites {
        for r in run_suite(s).await {
            println!("{}", r.line());
            if r.passed {
                passed += 1;
            } else {
                failed += 1;
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(failed)
}

pub fn read_file(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn status_word(s: i32) -> &'static str {
    match EvalStatus::try_from(s).unwrap_or(EvalStatus::Unspecified) {
        EvalStatus::Pass => "pass",
        EvalStatus::Fail => "FAIL",
        EvalStatus::Skipped => "skipped",
        EvalStatus::Error => "ERROR",
        EvalStatus::Unspecified => "?",
    }
}

/// The latest verdicts as an aligned text table.
/// One verdict as `-o wide|json|yaml` prints it.
pub fn status_row(r: &RuleStatus) -> crate::output::Row {
    use serde_json::json;
    vec![
        ("entity_id", json!(r.entity_id)),
        ("repository", json!(format!("{}/{}", r.owner, r.name))),
        ("profile", json!(r.profile)),
        ("rule", json!(r.rule_name)),
        ("status", json!(status_word(r.status))),
        ("message", json!(r.message)),
        ("rule_type", json!(r.rule_type)),
        ("evaluated_at", crate::output::time(&r.evaluated_at)),
    ]
}

pub fn status_table(rows: &[RuleStatus]) -> String {
    let headers = ["REPOSITORY", "PROFILE", "RULE", "STATUS", "MESSAGE"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                format!("{}/{}", r.owner, r.name),
                r.profile.clone(),
                r.rule_name.clone(),
                status_word(r.status).to_string(),
                r.message.clone(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[&str]| {
        let mut l = String::new();
        for (i, c) in row.iter().enumerate() {
            if i + 1 == row.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut out, &headers);
    for row in &cells {
        let refs: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &refs);
    }
    let passing = rows
        .iter()
        .filter(|r| r.status == EvalStatus::Pass as i32)
        .count();
    let _ = writeln!(out, "{passing}/{} rules passing", rows.len());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_counts() {
        let rows = vec![
            RuleStatus {
                owner: "acme".into(),
                name: "a".into(),
                profile: "p".into(),
                rule_name: "r".into(),
                status: EvalStatus::Pass as i32,
                ..Default::default()
            },
            RuleStatus {
                owner: "acme".into(),
                name: "longer-name".into(),
                profile: "p".into(),
                rule_name: "r".into(),
                status: EvalStatus::Fail as i32,
                message: "no protection".into(),
                ..Default::default()
            },
        ];
        let t = status_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("REPOSITORY        PROFILE"), "{t}");
        assert!(
            lines[2].contains("FAIL") && lines[2].ends_with("no protection"),
            "{t}"
        );
        assert_eq!(lines[3], "1/2 rules passing");
    }
}
