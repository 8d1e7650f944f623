//! The route template of a request path, for metrics and span names: a bounded label whatever
//! the fleet, with no repository, organisation, branch or file name in it.
//!
//! A segment stays only when it is a word of GitHub's REST paths (`repos`, `branches`,
//! `protection`, ...); every other segment (names, numbers, SHAs, file paths) becomes `{}`.
//! The query is dropped.

/// Words of the REST paths Plumbline calls (and the rest of GitHub's path vocabulary it may).
const WORDS: &[&str] = &[
    "access_tokens",
    "actions",
    "advisories",
    "alerts",
    "app",
    "attestations",
    "automated-security-fixes",
    "blobs",
    "branches",
    "check-runs",
    "check-suites",
    "code-scanning",
    "collaborators",
    "comments",
    "commits",
    "community",
    "compare",
    "contents",
    "default_workflow_permissions",
    "dependabot",
    "dependency-graph",
    "enforce_admins",
    "environments",
    "files",
    "git",
    "heads",
    "hooks",
    "installation",
    "installations",
    "issues",
    "keys",
    "labels",
    "languages",
    "latest",
    "license",
    "merge",
    "orgs",
    "packages",
    "pages",
    "permissions",
    "private-vulnerability-reporting",
    "profile",
    "protection",
    "pulls",
    "rate_limit",
    "readme",
    "refs",
    "releases",
    "repos",
    "repositories",
    "required_pull_request_reviews",
    "required_signatures",
    "required_status_checks",
    "restrictions",
    "reviews",
    "rules",
    "rulesets",
    "runs",
    "sbom",
    "search",
    "secret-scanning",
    "security-advisories",
    "selected-actions",
    "status",
    "statuses",
    "tags",
    "tarball",
    "teams",
    "topics",
    "trees",
    "user",
    "users",
    "versions",
    "vulnerability-alerts",
    "workflow",
    "workflows",
    "zipball",
];

/// `/repos/acme/api/branches/main/protection?x=1` → `/repos/{}/{}/branches/{}/protection`.
pub fn template(path: &str) -> String {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(if WORDS.contains(&segment) {
            segment
        } else {
            "{}"
        });
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn names_numbers_and_queries_leave_the_template() {
        assert_eq!(
            template("/repos/acme/api/branches/main/protection?per_page=100"),
            "/repos/{}/{}/branches/{}/protection"
        );
        assert_eq!(
            template("/repos/acme/api/pulls/12/files"),
            "/repos/{}/{}/pulls/{}/files"
        );
        assert_eq!(
            template("/repos/acme/protection/contents/a/b/c.yaml"),
            "/repos/{}/protection/contents/{}/{}/{}",
            "a word as a name stays a word: still no name in the label"
        );
        assert_eq!(template("/"), "/");
        assert_eq!(
            template("/app/installations/7/access_tokens"),
            "/app/installations/{}/access_tokens"
        );
    }
}
