//! The crates as layers (ARCHITECTURE.md): who may depend on whom, read from `cargo metadata`.
//!
//! A dependency that breaks a layer fails here with the edge that broke it, so the structure
//! the map describes is the structure the build has.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// Each workspace crate and the workspace crates it may depend on (normal dependencies).
/// `plumb` and the test and benchmark crates sit on top and may use anything.
const LAYERS: &[(&str, &[&str])] = &[
    // Foundation: what the rest speaks.
    ("plumbline-domain", &[]),
    ("plumbline-proto", &["plumbline-domain"]),
    ("plumbline-telemetry", &[]),
    ("plumbline-reload", &[]),
    // Adapters: one owner per heavy dependency (regorus/jaq, tokio-postgres, rdkafka, octocrab).
    // The engine's artifact ingest speaks the Sigstore crate's types (evidence, verification).
    (
        "plumbline-engine",
        &["plumbline-domain", "plumbline-sigstore"],
    ),
    ("plumbline-store", &["plumbline-domain"]),
    (
        "plumbline-bus",
        &["plumbline-domain", "plumbline-telemetry"],
    ),
    (
        "plumbline-github",
        &["plumbline-reload", "plumbline-telemetry"],
    ),
    // Sigstore signatures of container images: the one owner of sigstore-rs and oci-client.
    ("plumbline-sigstore", &["plumbline-domain"]),
    // The engine's provider, implemented on the GitHub client.
    (
        "plumbline-github-provider",
        &[
            "plumbline-domain",
            "plumbline-engine",
            "plumbline-github",
            "plumbline-sigstore",
        ],
    ),
    // What every service binary shares: flags, secrets files, the service main.
    (
        "plumbline-runtime",
        &[
            "plumbline-telemetry",
            "plumbline-github",
            "plumbline-reload",
            // Which credential an entity is acted on with is read from the store.
            "plumbline-store",
            "plumbline-domain",
            // A consuming service's producer and consumer are opened here (consuming.rs).
            "plumbline-bus",
        ],
    ),
    // A fake GitHub: depends on nothing of ours, and nothing that ships depends on it.
    ("plumbline-github-sim", &[]),
    // A fake OSV (vulnerability database API): depends on nothing of ours (the engine only as
    // a dev-dependency, for its tests), and nothing that ships depends on it.
    ("plumbline-osv-sim", &[]),
];

/// The services: each may use the layers below, never another service, the CLI or a simulator.
const SERVICES: &[&str] = &[
    "plumbline-ingest",
    "plumbline-evaluator",
    "plumbline-actuator",
    "plumbline-reconciler",
    "plumbline-control",
];
const BELOW_SERVICES: &[&str] = &[
    "plumbline-domain",
    "plumbline-proto",
    "plumbline-telemetry",
    "plumbline-reload",
    "plumbline-engine",
    "plumbline-store",
    "plumbline-bus",
    "plumbline-github",
    "plumbline-sigstore",
    "plumbline-github-provider",
    "plumbline-runtime",
];
/// Crates that never ship (tests, benchmarks): free to use anything.
const TOOLING: &[&str] = &["plumbline-e2e", "plumbline-bench"];

struct Dep {
    name: String,
    kind: Option<String>,
    optional: bool,
    features: Vec<String>,
}

fn workspace() -> BTreeMap<String, Vec<Dep>> {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is json");
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter_map(|d| {
                    let name = d["name"].as_str()?.to_string();
                    members.contains(&name).then(|| Dep {
                        name,
                        kind: d["kind"].as_str().map(String::from),
                        optional: d["optional"].as_bool().unwrap_or(false),
                        features: d["features"]
                            .as_array()
                            .map(|f| {
                                f.iter()
                                    .filter_map(|x| x.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                })
                .collect();
            (p["name"].as_str().unwrap_or_default().to_string(), deps)
        })
        .collect()
}

#[test]
fn every_crate_depends_only_on_the_layers_below_it() {
    let ws = workspace();
    let mut broken = Vec::new();
    for (name, deps) in &ws {
        let allowed: Vec<&str> = if let Some((_, below)) = LAYERS.iter().find(|(n, _)| n == name) {
            below.to_vec()
        } else if SERVICES.contains(&name.as_str()) {
            BELOW_SERVICES.to_vec()
        } else if name == "plumb" || TOOLING.contains(&name.as_str()) {
            continue;
        } else {
            broken.push(format!("{name}: not placed in a layer (add it to LAYERS, SERVICES or TOOLING, and to ARCHITECTURE.md)"));
            continue;
        };
        for d in deps.iter().filter(|d| d.kind.is_none()) {
            if !allowed.contains(&d.name.as_str()) {
                broken.push(format!("{name} -> {}", d.name));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependencies across layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn nothing_that_ships_carries_the_simulator_or_test_helpers() {
    let ws = workspace();
    let shipped: Vec<&str> = SERVICES
        .iter()
        .copied()
        .chain(BELOW_SERVICES.iter().copied())
        .chain(["plumb"])
        .collect();
    let mut broken = Vec::new();
    for name in &shipped {
        for d in ws
            .get(*name)
            .into_iter()
            .flatten()
            .filter(|d| d.kind.is_none())
        {
            if d.name == "plumbline-github-sim" && !(*name == "plumb" && d.optional) {
                broken.push(format!(
                    "{name} depends on the simulator (only `plumb`'s optional `dev` feature may)"
                ));
            }
            if d.name == "plumbline-osv-sim" {
                broken.push(format!("{name} depends on the OSV simulator (tests only)"));
            }
            if let Some(f) = d
                .features
                .iter()
                .find(|f| *f == "testing" || *f == "testkit")
            {
                broken.push(format!(
                    "{name} turns on {}'s `{f}` feature outside its tests",
                    d.name
                ));
            }
            if d.name == "plumb" || TOOLING.contains(&d.name.as_str()) {
                broken.push(format!("{name} depends on {}", d.name));
            }
        }
    }
    // No dev-dependency cycle through the CLI: the services' own tests do not need the whole system.
    for name in SERVICES.iter().chain(BELOW_SERVICES) {
        for d in ws.get(*name).into_iter().flatten() {
            if d.name == "plumb" || TOOLING.contains(&d.name.as_str()) {
                broken.push(format!(
                    "{name} ({}) depends on {}",
                    d.kind.as_deref().unwrap_or("normal"),
                    d.name
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// `plumb` as the image builds it (no default features) has no simulator in its tree.
#[test]
fn the_production_cli_has_no_simulator() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-e",
            "normal",
            "-p",
            "plumb",
            "--no-default-features",
            "--prefix",
            "none",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("plumbline-store ")),
        "the tree was read: {tree}"
    );
    for banned in [
        "plumbline-github-sim ",
        "plumbline-osv-sim ",
        "plumbline-ingest ",
        "plumbline-evaluator ",
        "plumbline-actuator ",
        // The Sigstore test kit's certificate builder.
        "rcgen ",
    ] {
        assert!(
            !tree.lines().any(|l| l.starts_with(banned)),
            "{banned}in `plumb --no-default-features`:\n{tree}"
        );
    }
}
