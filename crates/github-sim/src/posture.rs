//! Posture seeding: many organizations and repositories in a chosen security posture, created
//! at once for benchmarks and fleet-scale tests.
//!
//! A fleet test wants, say, 10 organizations with 100 repositories each where 60% have branch
//! protection, 30% secret scanning, half have a `SECURITY.md`, and so on, reproducibly.
//! Seeding goes straight to the state under one lock and sends no webhooks (the repositories
//! exist "from before" the test, like a fleet Plumbline is pointed at), which keeps 1,000
//! repositories well under a second. Which repositories get which property is drawn from a
//! seeded generator, so the same request always yields the same fleet; each fraction is met
//! exactly (rounded to whole repositories).

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::api;
use crate::state::Actor;
use crate::{RepoOptions, SimError, Simulator, WorkflowPermissions};

/// Upper bound on repositories per seeding request, so a typo cannot exhaust memory.
const MAX_REPOSITORIES: usize = 100_000;

const CI_WORKFLOW: &str = "name: CI\n\non:\n  push:\n    branches: [main]\n  pull_request:\n\npermissions:\n  contents: read\n\njobs:\n  test:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: make test\n";

const DEPENDABOT: &str = "version: 2\nupdates:\n  - package-ecosystem: github-actions\n    directory: /\n    schedule:\n      interval: weekly\n";

const SECURITY_POLICY: &str = "# Security policy\n\nPlease report vulnerabilities privately through GitHub's \"Report a vulnerability\" button\non the Security tab of this repository. We answer within three working days.\n";

const MIT_LICENSE: &str = "MIT License\n\nCopyright (c) 2024 The Authors\n\nPermission is hereby granted, free of charge, to any person obtaining a copy\nof this software and associated documentation files (the \"Software\"), to deal\nin the Software without restriction, including without limitation the rights\nto use, copy, modify, merge, publish, distribute, sublicense, and/or sell\ncopies of the Software, and to permit persons to whom the Software is\nfurnished to do so, subject to the following conditions:\n\nThe above copyright notice and this permission notice shall be included in all\ncopies or substantial portions of the Software.\n\nTHE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR\nIMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,\nFITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE\nAUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER\nLIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,\nOUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE\nSOFTWARE.\n";

const CODEOWNERS: &str = "# Default owners of everything in the repository.\n* @platform-team\n";

/// Paths of the files posture seeding can put on the default branch.
pub const CI_WORKFLOW_PATH: &str = ".github/workflows/ci.yml";
pub const DEPENDABOT_PATH: &str = ".github/dependabot.yml";
pub const SECURITY_POLICY_PATH: &str = "SECURITY.md";
pub const LICENSE_PATH: &str = "LICENSE";
pub const README_PATH: &str = "README.md";
pub const CODEOWNERS_PATH: &str = "CODEOWNERS";

/// A fleet to seed: `orgs` organizations named "{org_prefix}-{i:03}" with `repos_per_org`
/// repositories each named "{repo_prefix}-{j:03}" (i, j from 1). Every fraction is in
/// 0.0..=1.0 (1.0 = all, 0.0 = none) of all seeded repositories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PostureSeed {
    pub orgs: usize,
    pub repos_per_org: usize,
    pub org_prefix: String,
    pub repo_prefix: String,
    /// Seed of the generator that decides which repositories get which property.
    pub seed: u64,
    /// Default branch protected with the typical protection of [`RepoOptions::protected`].
    #[serde(deserialize_with = "fraction")]
    pub branch_protection: f64,
    /// Secret scanning enabled.
    #[serde(deserialize_with = "fraction")]
    pub secret_scanning: f64,
    /// Actions `default_workflow_permissions` "read" (the others keep GitHub's legacy "write").
    #[serde(deserialize_with = "fraction")]
    pub workflow_permissions_read: f64,
    /// `.github/workflows/ci.yml` on the default branch.
    #[serde(deserialize_with = "fraction")]
    pub ci_workflow: f64,
    /// `.github/dependabot.yml` (version 2, github-actions, weekly).
    #[serde(deserialize_with = "fraction")]
    pub dependabot: f64,
    /// `SECURITY.md`.
    #[serde(deserialize_with = "fraction")]
    pub security_policy: f64,
    /// `LICENSE` with the MIT text.
    #[serde(deserialize_with = "fraction")]
    pub license: f64,
    /// `README.md`.
    #[serde(deserialize_with = "fraction")]
    pub readme: f64,
    /// `CODEOWNERS`.
    #[serde(deserialize_with = "fraction")]
    pub codeowners: f64,
}

impl Default for PostureSeed {
    /// One organization with ten bare repositories.
    fn default() -> Self {
        PostureSeed {
            orgs: 1,
            repos_per_org: 10,
            org_prefix: "org".to_owned(),
            repo_prefix: "repo".to_owned(),
            seed: 1,
            branch_protection: 0.0,
            secret_scanning: 0.0,
            workflow_permissions_read: 0.0,
            ci_workflow: 0.0,
            dependabot: 0.0,
            security_policy: 0.0,
            license: 0.0,
            readme: 0.0,
            codeowners: 0.0,
        }
    }
}

/// A fraction in JSON: a number in 0..=1, or "all" / "none".
fn fraction<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Spec {
        Number(f64),
        Word(String),
    }
    match Spec::deserialize(deserializer)? {
        Spec::Number(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Spec::Word(w) if w == "all" => Ok(1.0),
        Spec::Word(w) if w == "none" => Ok(0.0),
        _ => Err(serde::de::Error::custom(
            "a fraction must be a number in 0..=1, \"all\" or \"none\"",
        )),
    }
}

/// One seeded repository and the posture it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeededRepo {
    pub owner: String,
    pub name: String,
    pub id: u64,
    /// False if the repository existed already; it is then left as it was.
    pub created: bool,
    pub branch_protection: bool,
    pub secret_scanning: bool,
    pub workflow_permissions_read: bool,
    /// Paths of the seeded files on the default branch.
    pub files: Vec<String>,
}

/// SplitMix64: tiny, fast and fully determined by its seed, which is all seeding needs (and
/// keeps fleets identical across versions of any random number crate).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0); the modulo bias is irrelevant at fleet sizes.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Exactly round(fraction * total) of `total` indexes, chosen by a partial Fisher-Yates shuffle.
fn choose(rng: &mut SplitMix64, total: usize, fraction: f64) -> Vec<bool> {
    let wanted = ((fraction.clamp(0.0, 1.0) * total as f64).round() as usize).min(total);
    let mut order: Vec<usize> = (0..total).collect();
    for i in 0..wanted {
        let j = i + rng.below(total - i);
        order.swap(i, j);
    }
    let mut chosen = vec![false; total];
    for &index in &order[..wanted] {
        chosen[index] = true;
    }
    chosen
}

impl PostureSeed {
    fn validate(&self) -> Result<usize, SimError> {
        let total = self
            .orgs
            .checked_mul(self.repos_per_org)
            .filter(|t| *t <= MAX_REPOSITORIES)
            .ok_or_else(|| {
                SimError::Invalid(format!(
                    "orgs * repos_per_org must be at most {MAX_REPOSITORIES}"
                ))
            })?;
        let valid_prefix =
            |p: &str| !p.is_empty() && !p.contains('/') && !p.chars().any(char::is_whitespace);
        if !valid_prefix(&self.org_prefix) || !valid_prefix(&self.repo_prefix) {
            return Err(SimError::Invalid(
                "prefixes must be non-empty and contain no slashes or spaces".to_owned(),
            ));
        }
        let fractions = [
            self.branch_protection,
            self.secret_scanning,
            self.workflow_permissions_read,
            self.ci_workflow,
            self.dependabot,
            self.security_policy,
            self.license,
            self.readme,
            self.codeowners,
        ];
        if !fractions.iter().all(|f| (0.0..=1.0).contains(f)) {
            return Err(SimError::Invalid("fractions must be in 0..=1".to_owned()));
        }
        Ok(total)
    }
}

impl Simulator {
    /// Seeds a fleet in the posture `spec` asks for (see [`PostureSeed`]) without sending
    /// webhooks. Deterministic for a given `spec` (names and posture; ids depend on what
    /// existed before). Repositories that already exist are reported with `created: false` and
    /// left unchanged.
    pub fn seed_posture(&self, spec: &PostureSeed) -> Result<Vec<SeededRepo>, SimError> {
        let total = spec.validate()?;
        let mut rng = SplitMix64(spec.seed);
        let protect = choose(&mut rng, total, spec.branch_protection);
        let scanning = choose(&mut rng, total, spec.secret_scanning);
        let read_only = choose(&mut rng, total, spec.workflow_permissions_read);
        let files: Vec<(&str, &str, Vec<bool>)> = [
            (CI_WORKFLOW_PATH, CI_WORKFLOW, spec.ci_workflow),
            (DEPENDABOT_PATH, DEPENDABOT, spec.dependabot),
            (SECURITY_POLICY_PATH, SECURITY_POLICY, spec.security_policy),
            (LICENSE_PATH, MIT_LICENSE, spec.license),
            (README_PATH, "", spec.readme),
            (CODEOWNERS_PATH, CODEOWNERS, spec.codeowners),
        ]
        .into_iter()
        .map(|(path, text, fraction)| (path, text, choose(&mut rng, total, fraction)))
        .collect();

        let mut out = Vec::with_capacity(total);
        let mut st = self.lock();
        for o in 0..spec.orgs {
            let org = format!("{}-{:03}", spec.org_prefix, o + 1);
            for r in 0..spec.repos_per_org {
                let index = o * spec.repos_per_org + r;
                let name = format!("{}-{:03}", spec.repo_prefix, r + 1);
                let mut seeded = SeededRepo {
                    owner: org.clone(),
                    name: name.clone(),
                    id: 0,
                    created: false,
                    branch_protection: protect[index],
                    secret_scanning: scanning[index],
                    workflow_permissions_read: read_only[index],
                    files: Vec::new(),
                };
                let mut opts = RepoOptions {
                    protected: protect[index],
                    ..RepoOptions::default()
                };
                for (path, text, chosen) in &files {
                    if chosen[index] {
                        let contents = if *path == README_PATH {
                            format!("# {name}\n\nA service of {org}.\n").into_bytes()
                        } else {
                            text.as_bytes().to_vec()
                        };
                        opts.files.push(((*path).to_owned(), contents));
                        seeded.files.push((*path).to_owned());
                    }
                }
                // The events describe the repositories' creation, which predates the test.
                let (id, created, _events) = st.create_repo(&org, &name, &opts, Actor::Admin);
                seeded.id = id;
                seeded.created = created;
                if created {
                    let repo = st.repo_mut(&org, &name)?;
                    repo.security.secret_scanning = scanning[index];
                    if read_only[index] {
                        repo.actions.default_workflow_permissions = WorkflowPermissions::Read;
                    }
                }
                out.push(seeded);
            }
        }
        drop(st);
        tracing::info!(
            orgs = spec.orgs,
            repositories = total,
            seed = spec.seed,
            "posture seeded"
        );
        Ok(out)
    }
}

/// Whether a `/_admin/seed` body asks for posture seeding (it names `repos_per_org`) rather than
/// the single-organization seed.
pub(crate) fn is_posture_request(body: &Value) -> bool {
    body.get("repos_per_org").is_some()
}

/// `POST /_admin/seed` with a [`PostureSeed`] body: 201 with `{"repositories": [SeededRepo],
/// "counts": {property: n}}`.
pub(crate) fn seed_endpoint(sim: &Simulator, body: &Bytes) -> Response {
    let spec: PostureSeed = match crate::admin::parse(body) {
        Ok(spec) => spec,
        Err(response) => return *response,
    };
    let seeded = match sim.seed_posture(&spec) {
        Ok(seeded) => seeded,
        Err(SimError::Invalid(m) | SimError::NotFound(m)) => {
            return crate::admin::error(StatusCode::UNPROCESSABLE_ENTITY, m)
        }
    };
    let count = |f: &dyn Fn(&SeededRepo) -> bool| seeded.iter().filter(|r| f(r)).count();
    let file_count = |path: &str| count(&|r: &SeededRepo| r.files.iter().any(|f| f == path));
    let counts = json!({
        "repositories": seeded.len(),
        "created": count(&|r: &SeededRepo| r.created),
        "branch_protection": count(&|r: &SeededRepo| r.branch_protection),
        "secret_scanning": count(&|r: &SeededRepo| r.secret_scanning),
        "workflow_permissions_read": count(&|r: &SeededRepo| r.workflow_permissions_read),
        "ci_workflow": file_count(CI_WORKFLOW_PATH),
        "dependabot": file_count(DEPENDABOT_PATH),
        "security_policy": file_count(SECURITY_POLICY_PATH),
        "license": file_count(LICENSE_PATH),
        "readme": file_count(README_PATH),
        "codeowners": file_count(CODEOWNERS_PATH),
    });
    api::json_response(
        StatusCode::CREATED,
        &json!({ "repositories": seeded, "counts": counts }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_is_exact_and_deterministic() {
        let a = choose(&mut SplitMix64(7), 1000, 0.3);
        let b = choose(&mut SplitMix64(7), 1000, 0.3);
        let c = choose(&mut SplitMix64(8), 1000, 0.3);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.iter().filter(|x| **x).count(), 300);
        assert!(choose(&mut SplitMix64(1), 10, 1.0).iter().all(|x| *x));
        assert!(choose(&mut SplitMix64(1), 10, 0.0).iter().all(|x| !*x));
        assert!(choose(&mut SplitMix64(1), 0, 0.5).is_empty());
    }

    #[test]
    fn fractions_accept_words() {
        let spec: PostureSeed = serde_json::from_value(json!({
            "repos_per_org": 3, "branch_protection": "all", "readme": "none", "license": 0.5
        }))
        .unwrap();
        assert_eq!(spec.branch_protection, 1.0);
        assert_eq!(spec.readme, 0.0);
        assert_eq!(spec.license, 0.5);
        assert_eq!(spec.orgs, 1);
        assert!(serde_json::from_value::<PostureSeed>(json!({ "license": 2 })).is_err());
        assert!(serde_json::from_value::<PostureSeed>(json!({ "license": "most" })).is_err());
    }
}
