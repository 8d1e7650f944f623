//! Pull requests: what GitHub says of one now, before any rule is judged on it.
//!
//! Ingest enrolls a pull request from a `pull_request` webhook, which can be replayed; so the
//! evaluator reads the pull request itself (`GET /repos/{owner}/{repo}/pulls/{number}`, a
//! conditional request that costs no quota while nothing changed) and judges the head it finds
//! there, never the one a payload named. A pull request GitHub says is closed, or does not know,
//! is retired; one whose number now leads to another pull request is not evaluated.

use plumbline_domain::Entity;
use plumbline_github::{GitHub, GitHubError, PullRequest};
use serde_json::{json, Value};

/// What GitHub says of a pull request entity.
pub(crate) enum PullCheck {
    /// Open: the properties to keep (head and base, author, labels, draft).
    Open(Value),
    /// Closed, merged or gone: retire it.
    Gone(String),
    /// It cannot be judged (no number, or its number leads to another pull request).
    Problem(String),
}

/// The path of the read that confirms a pull request (the sweep's unchanged check needs it
/// among the stored validators, as it needs the repository's own read for a repository).
pub(crate) fn confirming_path(entity: &Entity) -> Option<String> {
    let number = entity.properties.get("number")?.as_u64()?;
    Some(format!(
        "/repos/{}/{}/pulls/{number}",
        entity.owner, entity.name
    ))
}

pub(crate) async fn confirm(github: &GitHub, entity: &Entity) -> Result<PullCheck, GitHubError> {
    let Some(number) = entity.properties.get("number").and_then(Value::as_u64) else {
        return Ok(PullCheck::Problem(
            "the pull request has no number: not evaluated".into(),
        ));
    };
    let expected = entity.entity_ref.upstream_id.parse::<u64>().unwrap_or(0);
    let full_name = entity.full_name();
    Ok(
        match github
            .get_pull_request(&entity.owner, &entity.name, number)
            .await?
        {
            None => PullCheck::Gone(format!("{full_name}#{number} is not found")),
            Some(p) if p.id != expected => PullCheck::Problem(format!(
                "{full_name}#{number} is pull request {}, not {expected}: not evaluated",
                p.id
            )),
            Some(p) if p.state != "open" => {
                PullCheck::Gone(format!("{full_name}#{number} is {}", p.state))
            }
            Some(p) => PullCheck::Open(properties(&p)),
        },
    )
}

/// The properties rules and selectors see of an open pull request (Minder's names where it has
/// them: `pull_request.properties` in a selector).
fn properties(p: &PullRequest) -> Value {
    json!({
        "number": p.number,
        "head_sha": p.head.sha,
        "head_ref": p.head.name,
        "head_repo": p.head.repo.as_ref().map(|r| r.full_name.clone()),
        "base_sha": p.base.sha,
        "base_ref": p.base.name,
        "repo_id": p.base.repo.as_ref().map(|r| r.id),
        "author": p.user.as_ref().map(|u| u.login.clone()),
        "author_id": p.user.as_ref().map(|u| u.id),
        "draft": p.draft,
        "labels": p.labels.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
        "html_url": p.html_url,
    })
}
