//! The route template of a request path, for metrics and span attributes: a label from a
//! fixed list whatever the path, with no repository, organisation, branch or file name in it.
//!
//! The list is the REST operations of GitHub's description that Plumbline calls or may
//! (`shared/github-openapi`), plus a few more that rule types read. A path matches a template
//! of the same shape (literal segments equal; a trailing `{path}` or `{ref}` takes the
//! rest, since file paths and refs contain slashes); any other path is `other`. Rule types
//! choose their endpoints, so a template built from the path itself would let a project's
//! editors mint series without bound.

/// Every template, as GitHub's description spells it.
pub const TEMPLATES: &[&str] = &[
    "/app",
    "/app/hook/deliveries",
    "/app/hook/deliveries/{delivery_id}/attempts",
    "/app/installations",
    "/app/installations/{installation_id}/access_tokens",
    "/installation/repositories",
    "/orgs/{org}",
    "/orgs/{org}/attestations/{subject_digest}",
    "/orgs/{org}/hooks",
    "/orgs/{org}/packages",
    "/orgs/{org}/packages/{package_type}/{package_name}",
    "/orgs/{org}/packages/{package_type}/{package_name}/versions",
    "/orgs/{org}/packages/{package_type}/{package_name}/versions/{package_version_id}",
    "/orgs/{org}/repos",
    "/rate_limit",
    "/repos/{owner}/{repo}",
    "/repos/{owner}/{repo}/actions/permissions",
    "/repos/{owner}/{repo}/actions/permissions/access",
    "/repos/{owner}/{repo}/actions/permissions/selected-actions",
    "/repos/{owner}/{repo}/actions/permissions/workflow",
    "/repos/{owner}/{repo}/actions/workflows",
    "/repos/{owner}/{repo}/attestations/{subject_digest}",
    "/repos/{owner}/{repo}/automated-security-fixes",
    "/repos/{owner}/{repo}/branches/{branch}",
    "/repos/{owner}/{repo}/branches/{branch}/protection",
    "/repos/{owner}/{repo}/check-runs",
    "/repos/{owner}/{repo}/check-runs/{check_run_id}",
    "/repos/{owner}/{repo}/code-scanning/default-setup",
    "/repos/{owner}/{repo}/collaborators",
    "/repos/{owner}/{repo}/commits/{ref}",
    "/repos/{owner}/{repo}/commits/{ref}/status",
    "/repos/{owner}/{repo}/commits/{ref}/statuses",
    "/repos/{owner}/{repo}/community/profile",
    "/repos/{owner}/{repo}/compare/{basehead}",
    "/repos/{owner}/{repo}/contents/{path}",
    "/repos/{owner}/{repo}/dependabot/alerts",
    "/repos/{owner}/{repo}/dependency-graph/sbom",
    "/repos/{owner}/{repo}/git/blobs",
    "/repos/{owner}/{repo}/git/blobs/{file_sha}",
    "/repos/{owner}/{repo}/git/commits",
    "/repos/{owner}/{repo}/git/ref/{ref}",
    "/repos/{owner}/{repo}/git/refs",
    "/repos/{owner}/{repo}/git/refs/{ref}",
    "/repos/{owner}/{repo}/git/tags/{tag_sha}",
    "/repos/{owner}/{repo}/git/trees",
    "/repos/{owner}/{repo}/git/trees/{tree_sha}",
    "/repos/{owner}/{repo}/hooks",
    "/repos/{owner}/{repo}/hooks/{hook_id}",
    "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries",
    "/repos/{owner}/{repo}/hooks/{hook_id}/deliveries/{delivery_id}/attempts",
    "/repos/{owner}/{repo}/issues",
    "/repos/{owner}/{repo}/issues/{issue_number}",
    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    "/repos/{owner}/{repo}/languages",
    "/repos/{owner}/{repo}/license",
    "/repos/{owner}/{repo}/private-vulnerability-reporting",
    "/repos/{owner}/{repo}/pulls",
    "/repos/{owner}/{repo}/pulls/{pull_number}",
    "/repos/{owner}/{repo}/pulls/{pull_number}/comments",
    "/repos/{owner}/{repo}/pulls/{pull_number}/files",
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews",
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}",
    "/repos/{owner}/{repo}/pulls/{pull_number}/reviews/{review_id}/dismissals",
    "/repos/{owner}/{repo}/readme",
    "/repos/{owner}/{repo}/releases",
    "/repos/{owner}/{repo}/releases/{release_id}",
    "/repos/{owner}/{repo}/releases/{release_id}/assets",
    "/repos/{owner}/{repo}/rules/branches/{branch}",
    "/repos/{owner}/{repo}/rulesets",
    "/repos/{owner}/{repo}/rulesets/{ruleset_id}",
    "/repos/{owner}/{repo}/secret-scanning/alerts",
    "/repos/{owner}/{repo}/security-advisories",
    "/repos/{owner}/{repo}/security-advisories/{ghsa_id}",
    "/repos/{owner}/{repo}/statuses/{sha}",
    "/repos/{owner}/{repo}/tarball/{ref}",
    "/repos/{owner}/{repo}/topics",
    "/repos/{owner}/{repo}/vulnerability-alerts",
    "/repos/{owner}/{repo}/zipball/{ref}",
    "/user",
    "/users/{username}",
    "/users/{username}/packages/{package_type}/{package_name}/versions",
];

/// The label of paths that match no template.
pub const OTHER: &str = "other";

/// The templates split into segments, once: [`template`] runs for every request.
static SPLIT: std::sync::LazyLock<Vec<(&'static str, Vec<&'static str>)>> =
    std::sync::LazyLock::new(|| {
        TEMPLATES
            .iter()
            .map(|t| (*t, t.split('/').filter(|s| !s.is_empty()).collect()))
            .collect()
    });

/// `/repos/acme/api/branches/main/protection?x=1` → `/repos/{owner}/{repo}/branches/{branch}/protection`.
pub fn template(path: &str) -> &'static str {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Exact shapes first, so `commits/{ref}/status` is not taken as a long `{ref}`.
    let find = |greedy| {
        SPLIT
            .iter()
            .find(|(_, parts)| fits(parts, &segments, greedy))
            .map(|(t, _)| *t)
    };
    find(false).or_else(|| find(true)).unwrap_or(OTHER)
}

fn fits(parts: &[&str], segments: &[&str], greedy: bool) -> bool {
    for (i, part) in parts.iter().enumerate() {
        let Some(segment) = segments.get(i) else {
            return false;
        };
        if part.starts_with('{') {
            let last = i + 1 == parts.len();
            if greedy && last && matches!(*part, "{path}" | "{ref}") {
                return true;
            }
        } else if part != segment {
            return false;
        }
    }
    segments.len() == parts.len()
}

#[cfg(test)]
mod tests {
    use super::template;

    #[test]
    fn paths_map_to_the_fixed_templates_or_other() {
        assert_eq!(
            template("/repos/acme/api/branches/main/protection?per_page=100"),
            "/repos/{owner}/{repo}/branches/{branch}/protection"
        );
        assert_eq!(
            template("/repos/acme/api/pulls/12/files"),
            "/repos/{owner}/{repo}/pulls/{pull_number}/files"
        );
        assert_eq!(
            template("/repos/acme/api/contents/a/b/c.yaml"),
            "/repos/{owner}/{repo}/contents/{path}"
        );
        assert_eq!(
            template("/repos/acme/api/commits/main/status"),
            "/repos/{owner}/{repo}/commits/{ref}/status"
        );
        assert_eq!(
            template("/repos/acme/api/commits/feature/x"),
            "/repos/{owner}/{repo}/commits/{ref}"
        );
        assert_eq!(
            template("/app/installations/7/access_tokens"),
            "/app/installations/{installation_id}/access_tokens"
        );
        // What a rule type may invent stays one series.
        assert_eq!(template("/repos/acme/api/actions/hooks/pages/x/y"), "other");
        assert_eq!(template("/"), "other");
    }
}
