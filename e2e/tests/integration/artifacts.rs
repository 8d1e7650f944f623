//! Artifacts end to end: container images in a real OCI registry (Debian's docker-registry,
//! started by `scripts/test.sh`), signed in the test by a private Sigstore (a Fulcio-style CA,
//! a CT log and a Rekor log of the test kit), published as GitHub packages in the simulator,
//! enrolled from `package` webhooks or found by a sweep, and judged by the corpus's
//! `artifact_signature` and `artifact_attestation_slsa` rule types unmodified.

use crate::common;

use common::*;
use plumb::stack::{Stack, StackConfig};
use plumbline_github_sim::RepoOptions;
use plumbline_sigstore::testkit::{TestSigstore, WorkflowIdentity};
use std::time::{Duration, Instant};

const CORPUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/minder-rules/rule-types/github"
);

/// The private root's name in the evaluator's configuration.
const ROOT: &str = "test-sigstore";

fn registry() -> String {
    std::env::var("PLUMB_TEST_REGISTRY").unwrap_or_else(|_| "127.0.0.1:5000".into())
}

fn profile(owner: &str) -> String {
    format!(
        r#"
version: v1
type: profile
name: signed-images
context:
  provider: github
alert: "on"
remediate: "off"
artifact:
  - type: artifact_signature
    params:
      tags: [latest]
      sigstore: {ROOT}
    def:
      is_signed: true
      is_verified: true
      repository: https://github.com/{owner}/app
      branch: main
      signer_identity: /.github/workflows/build.yml
      runner_environment: github-hosted
      cert_issuer: https://token.actions.githubusercontent.com
  - type: artifact_attestation_slsa
    params:
      tags: [attested]
      sigstore: {ROOT}
    def:
      workflow_repository: https://github.com/{owner}/app
      workflow_ref: refs/heads/main
      signer_identity: .github/workflows/build.yml
      event: ["push"]
      runner_environment: github-hosted
"#
    )
}

async fn status(
    store: &plumbline_store::Store,
    entity: &str,
    rule: &str,
) -> Option<(String, String)> {
    store
        .list_status("default", Some(entity), None)
        .await
        .ok()?
        .into_iter()
        .find(|r| r.rule_name == rule)
        .map(|r| (r.status.as_str().to_string(), r.message))
}

/// Waits for `rule`'s status of `entity` to be `want`; its message.
async fn wait_for(store: &plumbline_store::Store, entity: &str, rule: &str, want: &str) -> String {
    eventually(
        Duration::from_secs(60),
        &format!("{entity} {rule} = {want}"),
        || async {
            let (s, m) = status(store, entity, rule).await?;
            (s == want).then_some(m)
        },
    )
    .await
}

struct World {
    stack: Stack,
    store: plumbline_store::Store,
    _db: TestDb,
    _root_dir: tempfile::TempDir,
    sigstore: TestSigstore,
    owner: String,
    registry: String,
}

impl World {
    async fn start() -> World {
        let db = TestDb::new().await;
        let (prefix, _topics) = topics(3).await;
        let sigstore = TestSigstore::new();
        let root_dir = tempfile::tempdir().expect("tempdir");
        let root_path = root_dir.path().join("trusted_root.json");
        std::fs::write(&root_path, sigstore.trusted_root_json()).expect("write root");
        let mut config = StackConfig::local(&kafka(), &db.url, &prefix);
        config.artifact_registry = Some(registry());
        config.sigstore_roots = vec![(ROOT.to_string(), root_path)];
        let stack = Stack::start(config).await.expect("stack starts");
        // The registry is shared by the tests running at once: an account of this test's own.
        let owner = unique("acme-");
        stack.sim.create_repo(&owner, "app", RepoOptions::default());
        enroll(&stack, &[(&owner, "app")]).await;
        let mut c = plumb::client::connect(&stack.control_url(), None)
            .await
            .expect("control api");
        for name in ["artifact_signature", "artifact_attestation_slsa"] {
            let yaml = std::fs::read_to_string(format!("{CORPUS}/{name}.yaml")).expect("corpus");
            plumb::commands::apply_rule_type(&mut c, "default", &yaml)
                .await
                .expect("apply rule type");
        }
        plumb::commands::apply_profile(&mut c, "default", &profile(&owner))
            .await
            .expect("apply profile");
        World {
            store: db.store(),
            stack,
            _db: db,
            _root_dir: root_dir,
            sigstore,
            owner,
            registry: registry(),
        }
    }

    /// Pushes an image to the registry as `package:tag`; its digest.
    async fn push(&self, package: &str, tag: &str) -> String {
        TestSigstore::push_image(
            &self.registry,
            &format!("{}/{package}", self.owner),
            tag,
            unique(package).as_bytes(),
        )
        .await
    }

    /// Publishes the version in the simulator's packages (a `package` webhook, unless
    /// webhooks are off); the artifact entity's id.
    fn publish(&self, package: &str, digest: &str, tags: &[&str]) -> String {
        let id = self
            .stack
            .sim
            .add_container_version(
                &self.owner,
                package,
                Some(&format!("{}/app", self.owner)),
                digest,
                tags,
            )
            .expect("package version");
        format!("github/artifact/{id}")
    }

    fn identity(&self) -> WorkflowIdentity {
        WorkflowIdentity::github(&format!("{}/app", self.owner))
    }

    async fn sign(&self, package: &str, digest: &str, id: &WorkflowIdentity) {
        self.sigstore
            .push_cosign_signature(
                &self.registry,
                &format!("{}/{package}", self.owner),
                digest,
                digest,
                id,
            )
            .await;
    }

    async fn reconcile(&self) {
        let mut c = plumb::client::connect(&self.stack.control_url(), None)
            .await
            .expect("control api");
        c.reconcile(plumbline_proto::v1::ReconcileRequest {
            project: "default".into(),
            entity_id: String::new(),
        })
        .await
        .expect("reconcile");
    }
}

const SIGNATURE: &str = "artifact_signature";

#[tokio::test]
async fn images_pass_only_when_signed_by_the_expected_workflow() {
    let w = World::start().await;
    let store = &w.store;

    // Signed by the repository's own build workflow on main (cosign's `.sig` tag).
    let good = w.push("good", "latest").await;
    w.sign("good", &good, &w.identity()).await;
    let good_id = w.publish("good", &good, &["latest"]);

    // Not signed at all.
    let unsigned = w.push("unsigned", "latest").await;
    let unsigned_id = w.publish("unsigned", &unsigned, &["latest"]);

    // Signed, but by another repository's workflow, and by this one's on another branch.
    let fork = w.push("fork", "latest").await;
    w.sign(
        "fork",
        &fork,
        &WorkflowIdentity::github(&format!("{}/fork", w.owner)),
    )
    .await;
    let fork_id = w.publish("fork", &fork, &["latest"]);
    let branch = w.push("branch", "latest").await;
    let feature = WorkflowIdentity {
        git_ref: "refs/heads/feature".into(),
        ..w.identity()
    };
    w.sign("branch", &branch, &feature).await;
    let branch_id = w.publish("branch", &branch, &["latest"]);

    // A valid signature of another image, copied beside this one (its payload names the
    // other digest).
    let tampered = w.push("tampered", "latest").await;
    w.sigstore
        .push_cosign_signature(
            &w.registry,
            &format!("{}/tampered", w.owner),
            &tampered,
            &good,
            &w.identity(),
        )
        .await;
    let tampered_id = w.publish("tampered", &tampered, &["latest"]);

    // Signed by the right workflow, with a certificate from a CA the evaluator does not trust.
    let rogue = TestSigstore::new();
    let untrusted = w.push("untrusted", "latest").await;
    rogue
        .push_cosign_signature(
            &w.registry,
            &format!("{}/untrusted", w.owner),
            &untrusted,
            &untrusted,
            &w.identity(),
        )
        .await;
    let untrusted_id = w.publish("untrusted", &untrusted, &["latest"]);

    // Signed through a Sigstore bundle attached as an OCI referrer.
    let referred = w.push("referred", "latest").await;
    w.sigstore
        .push_referrer_bundle(
            &w.registry,
            &format!("{}/referred", w.owner),
            &referred,
            &w.identity(),
        )
        .await;
    let referred_id = w.publish("referred", &referred, &["latest"]);

    wait_for(store, &good_id, SIGNATURE, "pass").await;
    wait_for(store, &referred_id, SIGNATURE, "pass").await;
    let m = wait_for(store, &unsigned_id, SIGNATURE, "fail").await;
    assert!(
        m.contains("'is_signed': expected 'true', got 'false'"),
        "{m}"
    );
    let m = wait_for(store, &fork_id, SIGNATURE, "fail").await;
    assert!(
        m.contains(&format!("got 'https://github.com/{}/fork'", w.owner)),
        "the other repository is named: {m}"
    );
    let m = wait_for(store, &branch_id, SIGNATURE, "fail").await;
    assert!(
        m.contains("got 'feature'"),
        "the other branch is named: {m}"
    );
    let m = wait_for(store, &tampered_id, SIGNATURE, "fail").await;
    assert!(
        m.contains("'is_verified': expected 'true', got 'false'"),
        "{m}"
    );
    assert!(!m.contains("'is_signed'"), "it is signed: {m}");
    let m = wait_for(store, &untrusted_id, SIGNATURE, "fail").await;
    assert!(
        m.contains("'is_verified': expected 'true', got 'false'"),
        "{m}"
    );

    // The attestation rule is about other tags: skipped here.
    let (s, _) = status(store, &good_id, "artifact_attestation_slsa")
        .await
        .expect("attestation rule judged");
    assert_eq!(s, "skipped");

    // Failing images are alerted on their repository, by image and tag.
    let alert = eventually(Duration::from_secs(30), "an advisory opened", || async {
        store
            .list_actions(&unsigned_id)
            .await
            .ok()?
            .into_iter()
            .find(|a| {
                a.kind.as_str() == "alert"
                    && a.operation.as_str() == "open"
                    && a.status.as_str() == "applied"
            })
    })
    .await;
    assert_eq!(alert.action_type, "security_advisory");
    let ghsa = alert
        .provider_ref
        .strip_prefix("advisory:")
        .expect("advisory reference")
        .to_string();
    let advisory = w
        .stack
        .sim
        .advisory(&w.owner, "app", &ghsa)
        .expect("the advisory is on the image's repository");
    let summary = advisory["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains(&format!("image {}/unsigned:latest", w.owner)),
        "{summary}"
    );
    assert!(
        advisory["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&unsigned),
        "the digest is named"
    );
}

#[tokio::test]
async fn new_tags_are_judged_on_their_webhook_and_sweeps_find_what_webhooks_lost() {
    let w = World::start().await;
    let store = &w.store;

    // Attested through GitHub's attestations API (no signature in the registry).
    let attested = w.push("web", "attested").await;
    w.stack
        .sim
        .add_attestation(
            &w.owner,
            "app",
            &attested,
            w.sigstore.attestation_bundle(&attested, &w.identity()),
        )
        .expect("attestation");
    let attested_id = w.publish("web", &attested, &["attested"]);
    wait_for(store, &attested_id, "artifact_attestation_slsa", "pass").await;

    // A new image tagged latest: its webhook gets it judged within seconds.
    let pushed = Instant::now();
    let latest = w.push("web", "latest").await;
    w.sign("web", &latest, &w.identity()).await;
    let latest_id = w.publish("web", &latest, &["latest"]);
    wait_for(store, &latest_id, SIGNATURE, "pass").await;
    let took = pushed.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "judged {took:?} after the push"
    );

    // A version whose webhook is lost: the next sweep enrolls and judges it.
    w.stack.sim.set_webhooks_enabled(false);
    let lost = w.push("api", "latest").await;
    let lost_id = w.publish("api", &lost, &["latest"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        w.store.get_entity(&lost_id).await.expect("store").is_none(),
        "nothing knows of it yet"
    );
    w.stack.sim.set_webhooks_enabled(true);
    w.reconcile().await;
    let m = wait_for(store, &lost_id, SIGNATURE, "fail").await;
    assert!(
        m.contains("'is_signed': expected 'true', got 'false'"),
        "{m}"
    );

    // A deleted version is retired on the next sweep.
    let again = w.push("api", "latest").await;
    let again_id = w.publish("api", &again, &["latest"]);
    wait_for(store, &again_id, SIGNATURE, "fail").await;
    let version: u64 = lost_id
        .rsplit('/')
        .next()
        .and_then(|v| v.parse().ok())
        .expect("version id");
    w.stack
        .sim
        .delete_container_version(&w.owner, "api", version)
        .expect("delete the untagged version");
    w.reconcile().await;
    eventually(
        Duration::from_secs(60),
        "the deleted version retired",
        || async {
            w.store
                .get_entity(&lost_id)
                .await
                .ok()
                .flatten()
                .is_none()
                .then_some(())
        },
    )
    .await;
}
