//! JSON shapes of GitHub objects (users, organizations, repositories, branches).
//!
//! Objects are built field by field into a `Map` instead of one big `json!` literal because the
//! repository object has about a hundred fields, which overflows the macro recursion limit.
//! URLs are derived from a base URL (the simulator's own address), so clients that follow URLs
//! from responses (pagination, `url` fields) stay on the simulator.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::state::{Actor, Branch, Org, Repo};

/// Installation id reported in webhooks: the simulator behaves like a single GitHub App
/// installation that can see every repository.
pub(crate) const INSTALLATION_ID: u64 = 1;

/// GitHub's timestamp format in REST responses, e.g. "2011-01-26T19:01:12Z".
pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The timestamp format of branch protection rules in webhooks, e.g.
/// "2021-08-19T12:16:32.000-04:00".
pub(crate) fn rule_time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string()
}

/// GitHub's legacy global node id: base64 of "{len(type)}:{type}{id}" with a zero-padded length,
/// e.g. "MDEwOlJlcG9zaXRvcnkxNzI3MzA1MQ==" for Repository 17273051.
pub(crate) fn node_id(kind: &str, id: u64) -> String {
    base64(format!("{:03}:{kind}{id}", kind.len()).as_bytes())
}

pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A stable id for names the simulator has no record of (users, teams, apps in restrictions),
/// so repeated renders, and therefore ETags, do not change.
pub(crate) fn stable_id(kind: &str, name: &str) -> u64 {
    let digest = Sha256::digest(format!("{kind}:{name}").as_bytes());
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[..4]);
    10_000_000 + u64::from(u32::from_be_bytes(bytes))
}

fn account_json(base: &str, login: &str, id: u64, kind: &str) -> Value {
    let node_kind = if kind == "Organization" {
        "Organization"
    } else {
        "User"
    };
    // Bot logins end in "[bot]", which GitHub percent-encodes in URLs; a bot's page is its app's.
    let escaped = login.replace('[', "%5B").replace(']', "%5D");
    let u = format!("{base}/users/{escaped}");
    let html_url = match login.strip_suffix("[bot]") {
        Some(app) if kind == "Bot" => format!("{base}/apps/{app}"),
        _ => format!("{base}/{login}"),
    };
    let mut m = Map::new();
    m.insert("login".into(), json!(login));
    m.insert("id".into(), json!(id));
    m.insert("node_id".into(), json!(node_id(node_kind, id)));
    m.insert(
        "avatar_url".into(),
        json!(format!("https://avatars.githubusercontent.com/u/{id}?v=4")),
    );
    m.insert("gravatar_id".into(), json!(""));
    m.insert("url".into(), json!(u));
    m.insert("html_url".into(), json!(html_url));
    m.insert("followers_url".into(), json!(format!("{u}/followers")));
    m.insert(
        "following_url".into(),
        json!(format!("{u}/following{{/other_user}}")),
    );
    m.insert("gists_url".into(), json!(format!("{u}/gists{{/gist_id}}")));
    m.insert(
        "starred_url".into(),
        json!(format!("{u}/starred{{/owner}}{{/repo}}")),
    );
    m.insert(
        "subscriptions_url".into(),
        json!(format!("{u}/subscriptions")),
    );
    m.insert("organizations_url".into(), json!(format!("{u}/orgs")));
    m.insert("repos_url".into(), json!(format!("{u}/repos")));
    m.insert(
        "events_url".into(),
        json!(format!("{u}/events{{/privacy}}")),
    );
    m.insert(
        "received_events_url".into(),
        json!(format!("{u}/received_events")),
    );
    m.insert("type".into(), json!(kind));
    m.insert("site_admin".into(), json!(false));
    Value::Object(m)
}

/// A user ("simple user") object for a login.
pub(crate) fn user_json(base: &str, login: &str) -> Value {
    account_json(base, login, stable_id("user", login), "User")
}

/// A repository owner: an organization in "simple user" shape.
pub(crate) fn owner_json(base: &str, org: &Org) -> Value {
    account_json(base, &org.login, org.id, "Organization")
}

/// The `organization` object of webhook payloads.
pub(crate) fn org_json(base: &str, org: &Org) -> Value {
    let o = format!("{base}/orgs/{}", org.login);
    json!({
        "login": org.login,
        "id": org.id,
        "node_id": node_id("Organization", org.id),
        "url": o,
        "repos_url": format!("{o}/repos"),
        "events_url": format!("{o}/events"),
        "hooks_url": format!("{o}/hooks"),
        "issues_url": format!("{o}/issues"),
        "members_url": format!("{o}/members{{/member}}"),
        "public_members_url": format!("{o}/public_members{{/member}}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", org.id),
        "description": "",
    })
}

/// A team object for a slug in `org`.
pub(crate) fn team_json(base: &str, org: &str, slug: &str) -> Value {
    let id = stable_id("team", &format!("{org}/{slug}"));
    json!({
        "id": id,
        "node_id": node_id("Team", id),
        "url": format!("{base}/teams/{id}"),
        "html_url": format!("{base}/orgs/{org}/teams/{slug}"),
        "name": slug,
        "slug": slug,
        "description": null,
        "privacy": "closed",
        "notification_setting": "notifications_enabled",
        "permission": "push",
        "members_url": format!("{base}/teams/{id}/members{{/member}}"),
        "repositories_url": format!("{base}/teams/{id}/repos"),
        "parent": null,
        "type": "organization",
    })
}

/// A GitHub App ("integration") object for a slug.
pub(crate) fn app_json(base: &str, slug: &str) -> Value {
    let id = stable_id("app", slug);
    json!({
        "id": id,
        "slug": slug,
        "node_id": node_id("Integration", id),
        // Apps in restrictions belong to someone else; one fixed owner keeps renders stable.
        "owner": account_json(base, "sim-apps", 3, "Organization"),
        "name": slug,
        "description": "",
        "external_url": format!("{base}/apps/{slug}"),
        "html_url": format!("{base}/apps/{slug}"),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": {},
        "events": [],
    })
}

/// The `sender` of webhooks: who made the change. UI (admin) changes come from a human user,
/// REST changes from the app's bot user, which lets a control loop recognise its own writes.
pub(crate) fn sender_json(base: &str, actor: Actor) -> Value {
    match actor {
        Actor::Admin => account_json(base, "sim-admin", 1, "User"),
        Actor::Api => account_json(base, "plumbline-sim[bot]", 2, "Bot"),
    }
}

/// The `installation` object of webhooks sent to a GitHub App.
pub(crate) fn installation_json() -> Value {
    json!({
        "id": INSTALLATION_ID,
        "node_id": node_id("IntegrationInstallation", INSTALLATION_ID),
    })
}

/// The repository object as it appears in lists and webhook payloads.
pub(crate) fn repo_json(base: &str, org: &Org, repo: &Repo) -> Value {
    let full_name = format!("{}/{}", org.login, repo.name);
    let api = format!("{base}/repos/{full_name}");
    let html = format!("{base}/{full_name}");
    let host = base
        .split("://")
        .nth(1)
        .unwrap_or(base)
        .trim_end_matches('/');
    let mut m = Map::new();
    m.insert("id".into(), json!(repo.id));
    m.insert("node_id".into(), json!(node_id("Repository", repo.id)));
    m.insert("name".into(), json!(repo.name));
    m.insert("full_name".into(), json!(full_name));
    m.insert("private".into(), json!(repo.private));
    m.insert("owner".into(), owner_json(base, org));
    m.insert("html_url".into(), json!(html));
    m.insert("description".into(), json!(repo.settings.description));
    m.insert("fork".into(), json!(false));
    m.insert("url".into(), json!(api));
    let templated: [(&str, &str); 36] = [
        ("forks_url", "/forks"),
        ("keys_url", "/keys{/key_id}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("teams_url", "/teams"),
        ("hooks_url", "/hooks"),
        ("issue_events_url", "/issues/events{/number}"),
        ("events_url", "/events"),
        ("assignees_url", "/assignees{/user}"),
        ("branches_url", "/branches{/branch}"),
        ("tags_url", "/tags"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("trees_url", "/git/trees{/sha}"),
        ("statuses_url", "/statuses/{sha}"),
        ("languages_url", "/languages"),
        ("stargazers_url", "/stargazers"),
        ("contributors_url", "/contributors"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("commits_url", "/commits{/sha}"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("comments_url", "/comments{/number}"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("contents_url", "/contents/{+path}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("merges_url", "/merges"),
        ("archive_url", "/{archive_format}{/ref}"),
        ("downloads_url", "/downloads"),
        ("issues_url", "/issues{/number}"),
        ("pulls_url", "/pulls{/number}"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("labels_url", "/labels{/name}"),
        ("releases_url", "/releases{/id}"),
        ("deployments_url", "/deployments"),
    ];
    for (key, suffix) in templated {
        m.insert(key.into(), json!(format!("{api}{suffix}")));
    }
    m.insert("created_at".into(), json!(time(&repo.created_at)));
    m.insert("updated_at".into(), json!(time(&repo.updated_at)));
    m.insert("pushed_at".into(), json!(time(&repo.pushed_at)));
    m.insert(
        "git_url".into(),
        json!(format!("git://{host}/{full_name}.git")),
    );
    m.insert(
        "ssh_url".into(),
        json!(format!("git@{host}:{full_name}.git")),
    );
    m.insert("clone_url".into(), json!(format!("{html}.git")));
    m.insert("svn_url".into(), json!(html));
    m.insert("homepage".into(), Value::Null);
    m.insert("mirror_url".into(), Value::Null);
    m.insert("size".into(), json!(0));
    m.insert("stargazers_count".into(), json!(0));
    m.insert("watchers_count".into(), json!(0));
    m.insert("language".into(), Value::Null);
    m.insert("has_issues".into(), json!(repo.settings.has_issues));
    m.insert("has_projects".into(), json!(true));
    m.insert("has_downloads".into(), json!(true));
    m.insert("has_wiki".into(), json!(true));
    m.insert("has_pages".into(), json!(false));
    m.insert("has_discussions".into(), json!(false));
    m.insert("forks_count".into(), json!(0));
    m.insert("archived".into(), json!(false));
    m.insert("disabled".into(), json!(false));
    m.insert("open_issues_count".into(), json!(0));
    m.insert("license".into(), crate::license::repo_license(base, repo));
    m.insert("allow_forking".into(), json!(repo.settings.allow_forking));
    m.insert("is_template".into(), json!(false));
    m.insert("web_commit_signoff_required".into(), json!(false));
    m.insert("topics".into(), json!([]));
    m.insert("visibility".into(), json!(repo.visibility()));
    m.insert("forks".into(), json!(0));
    m.insert("open_issues".into(), json!(0));
    m.insert("watchers".into(), json!(0));
    m.insert("default_branch".into(), json!(repo.default_branch));
    m.insert("custom_properties".into(), json!({}));
    Value::Object(m)
}

/// The "full repository" object of `GET /repos/{owner}/{repo}`: the list shape plus the
/// settings only the single-repository endpoint reports.
pub(crate) fn full_repo_json(base: &str, org: &Org, repo: &Repo) -> Value {
    let mut value = repo_json(base, org, repo);
    if let Value::Object(m) = &mut value {
        m.insert(
            "permissions".into(),
            json!({ "admin": true, "maintain": true, "push": true, "triage": true, "pull": true }),
        );
        m.insert("allow_rebase_merge".into(), json!(true));
        m.insert("allow_squash_merge".into(), json!(true));
        m.insert("allow_merge_commit".into(), json!(true));
        m.insert("allow_auto_merge".into(), json!(false));
        m.insert("allow_update_branch".into(), json!(false));
        m.insert(
            "delete_branch_on_merge".into(),
            json!(repo.settings.delete_branch_on_merge),
        );
        m.insert("use_squash_pr_title_as_default".into(), json!(false));
        m.insert(
            "squash_merge_commit_title".into(),
            json!("COMMIT_OR_PR_TITLE"),
        );
        m.insert(
            "squash_merge_commit_message".into(),
            json!("COMMIT_MESSAGES"),
        );
        m.insert("merge_commit_title".into(), json!("MERGE_MESSAGE"));
        m.insert("merge_commit_message".into(), json!("PR_TITLE"));
        m.insert("temp_clone_token".into(), Value::Null);
        m.insert("organization".into(), owner_json(base, org));
        m.insert("network_count".into(), json!(0));
        m.insert("subscribers_count".into(), json!(0));
        m.insert("security_and_analysis".into(), security_json(repo));
    }
    value
}

/// The `security_and_analysis` object of the full repository.
pub(crate) fn security_json(repo: &Repo) -> Value {
    let status = |on: bool| json!({ "status": if on { "enabled" } else { "disabled" } });
    let mut security = Map::new();
    if repo.private {
        // Advanced Security is a paid add-on that only applies to private repositories.
        security.insert("advanced_security".into(), status(false));
    }
    security.insert(
        "dependabot_security_updates".into(),
        status(repo.security.dependabot_security_updates),
    );
    security.insert(
        "secret_scanning".into(),
        status(repo.security.secret_scanning),
    );
    security.insert(
        "secret_scanning_push_protection".into(),
        status(repo.security.secret_scanning_push_protection),
    );
    security.insert(
        "secret_scanning_non_provider_patterns".into(),
        status(false),
    );
    Value::Object(security)
}

/// The branch object of `GET /repos/{owner}/{repo}/branches/{branch}`.
pub(crate) fn branch_json(base: &str, org: &Org, repo: &Repo, branch: &Branch) -> Value {
    let api = format!("{base}/repos/{}/{}", org.login, repo.name);
    let html = format!("{base}/{}/{}", org.login, repo.name);
    let contexts: Vec<String> = branch
        .protection
        .as_ref()
        .and_then(|p| p.settings.required_status_checks.as_ref())
        .map(|c| c.checks.iter().map(|c| c.context.clone()).collect())
        .unwrap_or_default();
    let checks: Vec<Value> = branch
        .protection
        .as_ref()
        .and_then(|p| p.settings.required_status_checks.as_ref())
        .map(|c| {
            c.checks
                .iter()
                .map(|c| json!({ "context": c.context, "app_id": c.app_id }))
                .collect()
        })
        .unwrap_or_default();
    let enforcement = match &branch.protection {
        Some(p) if p.settings.required_status_checks.is_some() => {
            if p.settings.enforce_admins {
                "everyone"
            } else {
                "non_admins"
            }
        }
        _ => "off",
    };
    json!({
        "name": branch.name,
        "commit": crate::gitdata::commit_json(base, org, repo, &branch.sha, false),
        "_links": {
            "self": format!("{api}/branches/{}", branch.name),
            "html": format!("{html}/tree/{}", branch.name),
        },
        "protected": branch.protection.is_some(),
        "protection": {
            "enabled": branch.protection.is_some(),
            "required_status_checks": {
                "enforcement_level": enforcement,
                "contexts": contexts,
                "checks": checks,
            },
        },
        "protection_url": format!("{api}/branches/{}/protection", branch.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_match_github_legacy_format() {
        assert_eq!(
            node_id("Repository", 17273051),
            "MDEwOlJlcG9zaXRvcnkxNzI3MzA1MQ=="
        );
        assert_eq!(
            node_id("Organization", 6811672),
            "MDEyOk9yZ2FuaXphdGlvbjY4MTE2NzI="
        );
    }

    #[test]
    fn rule_time_has_millis_and_offset() {
        let t = DateTime::parse_from_rfc3339("2021-08-19T16:16:32Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(rule_time(&t), "2021-08-19T16:16:32.000+00:00");
    }
}
