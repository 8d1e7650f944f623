//! The compose stack as shipped: `docker-compose.yml` validated against the Compose
//! Specification's JSON schema and against what the distroless image needs
//! (`scripts/validate-compose.sh`; no Docker engine needed). A deliberately broken copy must
//! fail, so the check is known to bite.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn validate(file: &Path) -> (bool, String) {
    let out = Command::new("bash")
        .arg(repo().join("scripts/validate-compose.sh"))
        .arg(file)
        .output()
        .expect("run scripts/validate-compose.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn docker_compose_yml_is_valid_compose_and_fits_the_image() {
    let (ok, text) = validate(&repo().join("docker-compose.yml"));
    assert!(ok, "scripts/validate-compose.sh failed:\n{text}");
    assert!(text.contains(" 0 failed"), "{text}");
}

#[test]
fn a_compose_file_the_image_cannot_run_is_refused() {
    let original = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    // A shell healthcheck (the image has none) and a depends_on condition the spec lacks.
    let broken = original
        .replacen(
            "    command: [\"plumbline-actuator\"]\n",
            "    command: [\"plumbline-actuator\"]\n    healthcheck:\n      test: [\"CMD-SHELL\", \"true\"]\n",
            1,
        )
        .replacen("condition: service_healthy", "condition: service_happy", 1);
    assert_ne!(
        broken, original,
        "the test's edits no longer apply to docker-compose.yml"
    );
    // In a directory of its own, beside links to the files the stack mounts, so only the two
    // edits can fail.
    let dir = tempfile::tempdir().unwrap();
    for mounted in ["deploy", "k8s"] {
        std::os::unix::fs::symlink(repo().join(mounted), dir.path().join(mounted)).unwrap();
    }
    let file = dir.path().join("docker-compose.yml");
    std::fs::write(&file, broken).unwrap();
    let (ok, text) = validate(&file);
    assert!(!ok, "a broken compose file passed:\n{text}");
    assert!(text.contains("FAIL compose-spec schema"), "{text}");
    assert!(
        text.contains("FAIL plumbline containers run the shipped binaries"),
        "{text}"
    );
}
