//! Typed calls for the endpoint families Plumbline reads and changes, over [`GitHub::request`]
//! (so every one of them gets the conditional cache, rate-limit state, retries and the
//! concurrency bound).
//!
//! Rule types read GitHub through templated REST calls and need no code here; these are the
//! calls Plumbline makes itself: listing what to enrol, resolving a branch head, and the
//! changes remediations and alerts make (branches, commits, pull requests, advisories, issues,
//! settings).

use crate::client::{has_next_page_url, GitHub};
use crate::GitHubError;
use http::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// One file of a commit: its content (None deletes it) and git mode.
#[derive(Debug, Clone, PartialEq)]
pub struct FileChange {
    pub path: String,
    /// `100644` (file), `100755` (executable), `120000` (symlink).
    pub mode: String,
    pub content: Option<Vec<u8>>,
}

/// The fields of a pull request Plumbline acts on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PullRequest {
    pub id: u64,
    pub number: u64,
    /// "open" or "closed".
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub html_url: String,
    pub head: GitRef,
    pub base: GitRef,
    #[serde(default)]
    pub draft: bool,
    /// Absent for a deleted ("ghost") account.
    #[serde(default)]
    pub user: Option<User>,
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct User {
    pub login: String,
    pub id: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Label {
    pub name: String,
}

/// The repository one side of a pull request is in (a fork's, for a head from a fork).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct SideRepository {
    pub id: u64,
    pub full_name: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct GitRef {
    #[serde(rename = "ref")]
    pub name: String,
    pub sha: String,
    /// Absent when the repository (a fork) was deleted.
    #[serde(default)]
    pub repo: Option<SideRepository>,
}

/// The fields of an issue Plumbline acts on (alerts where advisories are unavailable).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Issue {
    pub number: u64,
    pub state: String,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub html_url: String,
}

/// The fields of a repository security advisory Plumbline acts on.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Advisory {
    pub ghsa_id: String,
    pub state: String,
    pub summary: String,
    #[serde(default)]
    pub description: Option<String>,
    pub html_url: String,
}

/// A new repository security advisory (GitHub requires at least one affected package).
#[derive(Debug, Clone, Serialize)]
pub struct NewAdvisory {
    pub summary: String,
    pub description: String,
    /// `critical`, `high`, `medium` or `low`.
    pub severity: String,
    pub vulnerabilities: Vec<Value>,
}

/// An installation of a GitHub App.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Installation {
    pub id: u64,
    pub account: crate::client::Owner,
    #[serde(default)]
    pub repository_selection: Option<String>,
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::Decode {
        path: path.to_string(),
        reason: e.to_string(),
    })
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl GitHub {
    /// `GET path` as JSON, a non-2xx status being an error.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, GitHubError> {
        let r = self.request_ok(Method::GET, path, None).await?;
        decode(path, &r.body)
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<T, GitHubError> {
        let r = self.request_ok(method, path, Some(body)).await?;
        decode(path, &r.body)
    }

    /// Every item of a list endpoint, following `Link: rel="next"` (at most `max_pages`).
    /// `items_key` names the array in wrapped answers (`repositories` for installations).
    pub async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        items_key: Option<&str>,
        max_pages: usize,
    ) -> Result<Vec<T>, GitHubError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_string());
        let mut pages = 0;
        while let Some(path) = next.take() {
            let r = self.request_ok(Method::GET, &path, None).await?;
            let page: Vec<T> = match items_key {
                None => decode(&path, &r.body)?,
                Some(key) => {
                    let mut v: Value = decode(&path, &r.body)?;
                    serde_json::from_value(
                        v.get_mut(key)
                            .map(Value::take)
                            .unwrap_or(Value::Array(Vec::new())),
                    )
                    .map_err(|e| GitHubError::Decode {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?
                }
            };
            let empty = page.is_empty();
            out.extend(page);
            pages += 1;
            if empty || pages >= max_pages {
                break;
            }
            next = has_next_page_url(&r.headers).and_then(|url| self.relative(&url));
        }
        Ok(out)
    }

    /// One page of a list (`path` as GitHub's first-page URL or a `next` path this returned)
    /// and the path of the next page, if any: for callers that handle a long list page by
    /// page instead of holding all of it.
    pub async fn page<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(Vec<T>, Option<String>), GitHubError> {
        let r = self.request_ok(Method::GET, path, None).await?;
        let page: Vec<T> = decode(path, &r.body)?;
        let next = if page.is_empty() {
            None
        } else {
            has_next_page_url(&r.headers).and_then(|url| self.relative(&url))
        };
        Ok((page, next))
    }

    /// The repositories an installation token can reach (`GET /installation/repositories`).
    pub async fn list_installation_repositories(
        &self,
    ) -> Result<Vec<crate::Repository>, GitHubError> {
        self.list_all(
            "/installation/repositories?per_page=100",
            Some("repositories"),
            1000,
        )
        .await
    }

    /// The installations of the App this client authenticates as (`GET /app/installations`).
    pub async fn list_app_installations(&self) -> Result<Vec<Installation>, GitHubError> {
        self.list_all("/app/installations?per_page=100", None, 1000)
            .await
    }

    /// The commit a branch points at, read conditionally (a 304 while it has not moved costs no
    /// quota). None when the branch or repository does not exist.
    pub async fn branch_head(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
    ) -> Result<Option<String>, GitHubError> {
        let path = format!("/repos/{owner}/{repo}/commits/{branch}");
        let accept = [(
            "Accept".to_string(),
            "application/vnd.github.sha".to_string(),
        )];
        let r = self
            .request_with_headers(Method::GET, &path, None, &accept)
            .await?;
        match r.status {
            200 => {
                let sha = String::from_utf8_lossy(&r.body).trim().to_string();
                if sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(Some(sha))
                } else {
                    Err(GitHubError::Decode {
                        path,
                        reason: "not a commit sha".into(),
                    })
                }
            }
            404 | 409 | 422 => Ok(None),
            status => Err(GitHubError::Status {
                status,
                method: "GET".into(),
                path,
                message: r.message(),
            }),
        }
    }

    /// Creates `branch` at `sha` (`POST /git/refs`). A branch that already exists is an error
    /// (GitHub's 422), so callers decide whether to reuse it.
    pub async fn create_branch(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        sha: &str,
    ) -> Result<(), GitHubError> {
        let path = format!("/repos/{owner}/{repo}/git/refs");
        self.request_ok(
            Method::POST,
            &path,
            Some(&json!({ "ref": format!("refs/heads/{branch}"), "sha": sha })),
        )
        .await
        .map(|_| ())
    }

    /// Commits `files` on top of `branch` as one commit (blobs, a tree on the head's tree, a
    /// commit, then a fast-forward of the branch) and returns the new commit's SHA.
    pub async fn commit_files(
        &self,
        owner: &str,
        repo: &str,
        branch: &str,
        message: &str,
        files: &[FileChange],
    ) -> Result<String, GitHubError> {
        // One read gives both the head commit and its tree.
        let head: Value = self
            .get_json(&format!("/repos/{owner}/{repo}/commits/{branch}"))
            .await?;
        let (Some(head_sha), Some(base_tree)) = (
            head.get("sha").and_then(Value::as_str),
            head.pointer("/commit/tree/sha").and_then(Value::as_str),
        ) else {
            return Err(GitHubError::Decode {
                path: format!("/repos/{owner}/{repo}/commits/{branch}"),
                reason: "commit without sha or tree".into(),
            });
        };
        #[derive(Deserialize)]
        struct Sha {
            sha: String,
        }
        let mut entries = Vec::new();
        for f in files {
            let sha = match &f.content {
                Some(bytes) => {
                    let blob: Sha = self
                        .send_json(
                            Method::POST,
                            &format!("/repos/{owner}/{repo}/git/blobs"),
                            &json!({ "content": b64(bytes), "encoding": "base64" }),
                        )
                        .await?;
                    Value::String(blob.sha)
                }
                None => Value::Null,
            };
            entries.push(json!({ "path": f.path, "mode": f.mode, "type": "blob", "sha": sha }));
        }
        let tree: Sha = self
            .send_json(
                Method::POST,
                &format!("/repos/{owner}/{repo}/git/trees"),
                &json!({ "base_tree": base_tree, "tree": entries }),
            )
            .await?;
        let commit: Sha = self
            .send_json(
                Method::POST,
                &format!("/repos/{owner}/{repo}/git/commits"),
                &json!({ "message": message, "tree": tree.sha, "parents": [head_sha] }),
            )
            .await?;
        self.request_ok(
            Method::PATCH,
            &format!("/repos/{owner}/{repo}/git/refs/heads/{branch}"),
            Some(&json!({ "sha": commit.sha, "force": false })),
        )
        .await?;
        Ok(commit.sha)
    }

    /// A pull request by number; `None` when this credential sees no such pull request.
    pub async fn get_pull_request(
        &self,
        owner: &str,
        name: &str,
        number: u64,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let path = format!("/repos/{owner}/{name}/pulls/{number}");
        match self.request_ok(http::Method::GET, &path, None).await {
            Ok(r) => serde_json::from_slice(&r.body)
                .map(Some)
                .map_err(|e| GitHubError::Decode {
                    path,
                    reason: e.to_string(),
                }),
            Err(GitHubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Open pull requests from `head_branch` (same repository) into `base`.
    pub async fn find_open_pulls(
        &self,
        owner: &str,
        repo: &str,
        head_branch: &str,
        base: &str,
    ) -> Result<Vec<PullRequest>, GitHubError> {
        let path = format!("/repos/{owner}/{repo}/pulls?state=open&head={owner}:{head_branch}&base={base}&per_page=100");
        self.list_all(&path, None, 10).await
    }

    pub async fn open_pull(
        &self,
        owner: &str,
        repo: &str,
        title: &str,
        body: &str,
        head_branch: &str,
        base: &str,
    ) -> Result<PullRequest, GitHubError> {
        self.send_json(
            Method::POST,
            &format!("/repos/{owner}/{repo}/pulls"),
            &json!({ "title": title, "body": body, "head": head_branch, "base": base }),
        )
        .await
    }

    /// Changes a pull request's title, body or state (`open`/`closed`).
    pub async fn update_pull(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        changes: &Value,
    ) -> Result<PullRequest, GitHubError> {
        self.send_json(
            Method::PATCH,
            &format!("/repos/{owner}/{repo}/pulls/{number}"),
            changes,
        )
        .await
    }

    pub async fn list_advisories(
        &self,
        owner: &str,
        repo: &str,
        state: Option<&str>,
    ) -> Result<Vec<Advisory>, GitHubError> {
        let filter = state.map(|s| format!("&state={s}")).unwrap_or_default();
        self.list_all(
            &format!("/repos/{owner}/{repo}/security-advisories?per_page=100{filter}"),
            None,
            100,
        )
        .await
    }

    pub async fn create_advisory(
        &self,
        owner: &str,
        repo: &str,
        advisory: &NewAdvisory,
    ) -> Result<Advisory, GitHubError> {
        let body =
            serde_json::to_value(advisory).map_err(|e| GitHubError::Config(e.to_string()))?;
        self.send_json(
            Method::POST,
            &format!("/repos/{owner}/{repo}/security-advisories"),
            &body,
        )
        .await
    }

    /// Changes an advisory; `{"state": "closed"}` closes it.
    pub async fn update_advisory(
        &self,
        owner: &str,
        repo: &str,
        ghsa_id: &str,
        changes: &Value,
    ) -> Result<Advisory, GitHubError> {
        self.send_json(
            Method::PATCH,
            &format!("/repos/{owner}/{repo}/security-advisories/{ghsa_id}"),
            changes,
        )
        .await
    }

    pub async fn list_issues(
        &self,
        owner: &str,
        repo: &str,
        state: &str,
        labels: &[&str],
    ) -> Result<Vec<Issue>, GitHubError> {
        let labels = if labels.is_empty() {
            String::new()
        } else {
            format!("&labels={}", labels.join(","))
        };
        self.list_all(
            &format!("/repos/{owner}/{repo}/issues?state={state}&per_page=100{labels}"),
            None,
            100,
        )
        .await
    }

    pub async fn create_issue(
        &self,
        owner: &str,
        repo: &str,
        title: &str,
        body: &str,
        labels: &[&str],
    ) -> Result<Issue, GitHubError> {
        self.send_json(
            Method::POST,
            &format!("/repos/{owner}/{repo}/issues"),
            &json!({ "title": title, "body": body, "labels": labels }),
        )
        .await
    }

    /// Changes an issue; `{"state": "closed", "state_reason": "completed"}` closes it.
    pub async fn update_issue(
        &self,
        owner: &str,
        repo: &str,
        number: u64,
        changes: &Value,
    ) -> Result<Issue, GitHubError> {
        self.send_json(
            Method::PATCH,
            &format!("/repos/{owner}/{repo}/issues/{number}"),
            changes,
        )
        .await
    }

    /// Turns a repository feature toggled by PUT/DELETE on or off: `vulnerability-alerts`,
    /// `automated-security-fixes`, `private-vulnerability-reporting`.
    pub async fn set_feature(
        &self,
        owner: &str,
        repo: &str,
        feature: &str,
        enabled: bool,
    ) -> Result<(), GitHubError> {
        let method = if enabled { Method::PUT } else { Method::DELETE };
        self.request_ok(method, &format!("/repos/{owner}/{repo}/{feature}"), None)
            .await
            .map(|_| ())
    }
}
