//! The compose stack as shipped: `docker-compose.yml` validated against the Compose
//! Specification's JSON schema and against what the distroless image needs
//! (`scripts/validate-compose.sh`; no Docker engine needed), and its security rules checked
//! here: every container of the Plumbline image is read-only, without capabilities, unable to
//! gain privileges and not root; the GitHub credential reaches only the services that call
//! GitHub; the webhook secret and the control API tokens are files mounted into the one service
//! that reads each, never environment values. Deliberately broken copies must fail, so the
//! checks are known to bite.

use crate::common::assert_reported;
use serde_yaml_ng::Value;
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

/// The services that run the Plumbline image; each must be checked by the rules below.
const PLUMBLINE_SERVICES: &[&str] = &[
    "migrate",
    "ingest",
    "evaluator",
    "actuator",
    "reconciler",
    "control",
];

/// The services given a GitHub credential, and why each needs one: each builds its GitHub
/// client from the credential flags (`ServiceArgs::credentials`, crates/runtime). No other
/// service may see it: ingest checks webhook signatures with its own secret and calls no GitHub
/// API; reconciler sweeps the registered entities from Postgres onto Kafka; migrate applies the
/// schema; the third-party containers are not Plumbline's.
const GITHUB_CREDENTIAL_SERVICES: &[&str] = &[
    // Reads what the rules judge (settings, trees, pull requests, artifacts) and confirms
    // repository names.
    "evaluator",
    // Applies remediations (settings, files, pull requests) and opens alert issues.
    "actuator",
    // RegisterRepository and RegisterOwner read the repository, or list the organisation, with
    // the credential it will be acted on with.
    "control",
];

/// The variables that carry a GitHub credential or make a service use one (a GitHub App).
const GITHUB_CREDENTIAL_VARS: &[&str] = &[
    "PLUMB_GITHUB_TOKEN",
    "PLUMB_GITHUB_APP_ID",
    "PLUMB_GITHUB_APP_PRIVATE_KEY_FILE",
    "PLUMB_GITHUB_INSTALLATION_ID",
];

/// Secrets the services can read from a file: (the one service that reads it, the variable
/// naming the file, the variable that would carry the value itself and must not be used).
const FILE_SECRETS: &[(&str, &str, &str)] = &[
    (
        "ingest",
        "PLUMB_WEBHOOK_SECRETS_FILE",
        "PLUMB_WEBHOOK_SECRETS",
    ),
    (
        "control",
        "PLUMB_CONTROL_TOKENS_FILE",
        "PLUMB_CONTROL_TOKENS",
    ),
];

/// A compose file as compose reads it: YAML with its merge keys (`<<`) applied.
fn compose_file(text: &str) -> Value {
    let mut doc: Value = serde_yaml_ng::from_str(text).expect("the compose file is YAML");
    // One pass applies one level of merges: a merged mapping may bring a `<<` of its own (a
    // service merges x-plumbline-service, which merges x-plumbline-image).
    let mut passes = 0;
    while has_merge_key(&doc) {
        assert!(passes < 8, "merge keys nested more than 8 deep");
        doc.apply_merge().expect("merge keys");
        passes += 1;
    }
    doc
}

fn has_merge_key(v: &Value) -> bool {
    match v {
        Value::Mapping(m) => m.contains_key("<<") || m.iter().any(|(_, v)| has_merge_key(v)),
        Value::Sequence(s) => s.iter().any(has_merge_key),
        _ => false,
    }
}

fn shipped() -> Value {
    compose_file(
        &std::fs::read_to_string(repo().join("docker-compose.yml"))
            .expect("read docker-compose.yml"),
    )
}

/// A scalar as compose reads it into a string (empty for anything else).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// The strings of a list (none when it is absent).
fn strings(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// A service's environment as (name, value), from either of compose's two forms.
fn environment(service: &Value) -> Vec<(String, String)> {
    let env = &service["environment"];
    if let Some(map) = env.as_mapping() {
        map.iter().map(|(k, v)| (scalar(k), scalar(v))).collect()
    } else {
        strings(env)
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (e.to_string(), String::new()),
            })
            .collect()
    }
}

/// The secrets a service mounts, as (secret, path in the container), from either syntax.
fn secret_mounts(service: &Value) -> Vec<(String, String)> {
    service["secrets"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let (source, target) = match s {
                Value::String(name) => (name.as_str(), None),
                long => (long["source"].as_str()?, long["target"].as_str()),
            };
            let path = match target {
                Some(t) if t.starts_with('/') => t.to_string(),
                Some(t) => format!("/run/secrets/{t}"),
                None => format!("/run/secrets/{source}"),
            };
            Some((source.to_string(), path))
        })
        .collect()
}

/// Everything in a compose file (merge keys applied) that breaks the stack's security rules,
/// one line each (empty: none).
fn violations(doc: &Value) -> Vec<String> {
    let mut v = Vec::new();
    let Some(services) = doc["services"].as_mapping() else {
        return vec!["no services".to_string()];
    };
    let mut ours: Vec<&str> = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap_or("?");
        let env = environment(svc);
        let has = |var: &str| env.iter().any(|(k, _)| k == var);

        // Credentials, on every service (third-party ones included).
        if !svc["env_file"].is_null() {
            v.push(format!(
                "{name}: env_file hands it every variable of the file (the GitHub token among \
                 them); name the variables it needs under environment"
            ));
        }
        for &var in GITHUB_CREDENTIAL_VARS {
            if has(var) && !GITHUB_CREDENTIAL_SERVICES.contains(&name) {
                v.push(format!(
                    "{name}: gets {var}, but only {GITHUB_CREDENTIAL_SERVICES:?} call GitHub"
                ));
            }
        }
        for &(owner, file_var, value_var) in FILE_SECRETS {
            if has(value_var) {
                v.push(format!(
                    "{name}: {value_var} through the environment; mount it as a Compose secret \
                     named by {file_var}"
                ));
            }
            if has(file_var) && name != owner {
                v.push(format!("{name}: gets {file_var}, which only {owner} reads"));
            }
        }
        for (secret, path) in secret_mounts(svc) {
            if !env.iter().any(|(_, value)| *value == path) {
                v.push(format!(
                    "{name}: mounts the secret {secret} at {path}, which none of its settings reads"
                ));
            }
            if doc["secrets"][secret.as_str()]["file"].as_str().is_none() {
                v.push(format!(
                    "{name}: the secret {secret} is not a top-level secret read from a file"
                ));
            }
        }

        // The Plumbline containers' hardening.
        if !svc["image"]
            .as_str()
            .unwrap_or_default()
            .starts_with("plumbline")
        {
            continue;
        }
        ours.push(name);
        if svc["read_only"] != true {
            v.push(format!("{name}: read_only is not true"));
        }
        if !strings(&svc["cap_drop"]).contains(&"ALL") {
            v.push(format!("{name}: cap_drop does not drop ALL capabilities"));
        }
        if !strings(&svc["cap_add"]).is_empty() {
            v.push(format!(
                "{name}: adds capabilities {:?}",
                strings(&svc["cap_add"])
            ));
        }
        if svc["privileged"] == true {
            v.push(format!("{name}: privileged"));
        }
        if !strings(&svc["security_opt"]).iter().any(|o| {
            matches!(
                *o,
                "no-new-privileges:true" | "no-new-privileges=true" | "no-new-privileges"
            )
        }) {
            v.push(format!("{name}: no no-new-privileges:true in security_opt"));
        }
        let user = scalar(&svc["user"]);
        let uid = user.split(':').next().unwrap_or_default().parse::<u32>();
        if !matches!(uid, Ok(uid) if uid != 0) {
            v.push(format!(
                "{name}: user {user:?} is not a numeric non-root uid (the image's nonroot is 65532)"
            ));
        }
    }

    for &want in PLUMBLINE_SERVICES {
        if !ours.contains(&want) {
            v.push(format!(
                "{want}: not a service of the Plumbline image, so not checked"
            ));
        }
    }
    // The database roles of k8s/postgres-roles.sql: the schema owner for migrate alone, the
    // rows-only role for every service, never the superuser (which can run programs in the
    // postgres container); and postgres creates them when it initialises.
    for &name in PLUMBLINE_SERVICES {
        let want = if name == "migrate" {
            "plumbline_migrator"
        } else {
            "plumbline_app"
        };
        if let Some((_, url)) = environment(&doc["services"][name])
            .into_iter()
            .find(|(k, _)| k == "PLUMB_DATABASE_URL")
        {
            let user = url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('@'))
                .map_or("", |(info, _)| info.split(':').next().unwrap_or(""))
                .to_string();
            if user != want {
                v.push(format!(
                    "{name}: connects to Postgres as {user:?}, not {want}"
                ));
            }
        }
    }
    let roles_file = doc["configs"]
        .as_mapping()
        .into_iter()
        .flatten()
        .find(|(_, c)| scalar(&c["file"]) == "./k8s/postgres-roles.sql")
        .map(|(name, _)| scalar(name));
    let initialised = doc["services"]["postgres"]["configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .any(|c| {
            Some(scalar(&c["source"])) == roles_file
                && scalar(&c["target"]).starts_with("/docker-entrypoint-initdb.d/")
        });
    if !initialised {
        v.push(
            "postgres: does not run k8s/postgres-roles.sql from /docker-entrypoint-initdb.d/"
                .to_string(),
        );
    }
    // The list above stays true to the file: the services it names do get the token.
    for &name in GITHUB_CREDENTIAL_SERVICES {
        if !environment(&doc["services"][name])
            .iter()
            .any(|(k, _)| k == "PLUMB_GITHUB_TOKEN")
        {
            v.push(format!(
                "{name}: listed in GITHUB_CREDENTIAL_SERVICES but not given PLUMB_GITHUB_TOKEN"
            ));
        }
    }
    for &(owner, file_var, _) in FILE_SECRETS {
        let svc = &doc["services"][owner];
        let path = environment(svc)
            .into_iter()
            .find(|(k, _)| k == file_var)
            .map(|(_, p)| p);
        match path {
            None => v.push(format!("{owner}: no {file_var}")),
            Some(p) => {
                if !secret_mounts(svc).iter().any(|(_, mounted)| *mounted == p) {
                    v.push(format!(
                        "{owner}: {file_var}={p} is not the path of a secret it mounts"
                    ));
                }
            }
        }
    }
    v
}

#[test]
fn plumbline_containers_are_hardened_and_get_only_their_secrets() {
    let found = violations(&shipped());
    assert!(
        found.is_empty(),
        "docker-compose.yml:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_reports_a_weakened_compose_file() {
    let shipped = shipped();
    assert!(violations(&shipped).is_empty());

    // A writable, root, capable actuator; a migrate that may gain privileges.
    let mut doc = shipped.clone();
    let actuator = doc["services"]["actuator"]
        .as_mapping_mut()
        .expect("actuator");
    actuator.remove("read_only");
    actuator.insert("cap_add".into(), Value::Sequence(vec!["NET_ADMIN".into()]));
    actuator.insert("user".into(), "0:0".into());
    doc["services"]["migrate"]["security_opt"] = Value::Sequence(Vec::new());
    let found = violations(&doc);
    assert_reported(
        &found,
        &[
            "actuator: read_only is not true",
            "actuator: adds capabilities",
            "actuator: user \"0:0\"",
            "migrate: no no-new-privileges",
        ],
    );

    // The GitHub token on the reconciler, the webhook secret through the environment, the
    // control tokens mounted where nothing reads them, the whole .env handed to postgres.
    let mut doc = shipped.clone();
    doc["services"]["reconciler"]["environment"]["PLUMB_GITHUB_TOKEN"] = "ghp_x".into();
    doc["services"]["ingest"]["environment"]["PLUMB_WEBHOOK_SECRETS"] = "s3cret".into();
    doc["services"]["reconciler"]["secrets"] = Value::Sequence(vec!["control-tokens".into()]);
    doc["services"]["postgres"]["env_file"] = ".env".into();
    // The reconciler on the superuser, and postgres without the roles.
    doc["services"]["reconciler"]["environment"]["PLUMB_DATABASE_URL"] =
        "postgres://postgres:plumbline@postgres:5432/plumbline".into();
    doc["services"]["postgres"]["configs"] = Value::Sequence(Vec::new());
    let found = violations(&doc);
    assert_reported(
        &found,
        &[
            "reconciler: gets PLUMB_GITHUB_TOKEN",
            "ingest: PLUMB_WEBHOOK_SECRETS through the environment",
            "reconciler: mounts the secret control-tokens",
            "postgres: env_file",
            "reconciler: connects to Postgres as \"postgres\", not plumbline_app",
            "postgres: does not run k8s/postgres-roles.sql",
        ],
    );
}
