#!/usr/bin/env bash
# Validates docker-compose.yml (or the file given) without Docker:
#   1. against the Compose Specification's JSON schema, vendored in scripts/compose-spec/
#      (origin and sha256 in its README.md; the digest is checked here);
#   2. against what this repository's image and stack need, which the schema cannot say:
#      - every depends_on names a service of the file;
#      - containers of the Plumbline image (distroless: no shell) run one of the binaries
#        scripts/build-release.sh ships, and have no healthcheck that needs a shell;
#      - every Plumbline service starts after the one-shot `migrate` (`plumb migrate`) and
#        kafka-init completed successfully;
#      - Kafka is the apache/kafka image in KRaft mode (no ZooKeeper);
#      - every file the stack bind-mounts from the repository exists.
# Needs python3 with jsonschema and PyYAML; when absent they are installed with pip from
# scripts/requirements-validate.txt, every package pinned by version and sha256 (--require-hashes).
# Prints "validate-compose: N passed, 0 failed" and exits 0, or lists what failed and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."

COMPOSE_FILE="${1:-docker-compose.yml}"
SCHEMA=scripts/compose-spec/compose-spec.json
SCHEMA_SHA256=46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496

actual="$(sha256sum "$SCHEMA" | cut -d' ' -f1)"
if [ "$actual" != "$SCHEMA_SHA256" ]; then
  echo "validate-compose: $SCHEMA has sha256 $actual, expected $SCHEMA_SHA256" >&2
  exit 1
fi

if ! python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "validate-compose: installing jsonschema and PyYAML with pip (scripts/requirements-validate.txt)" >&2
  python3 -m pip install -q --require-hashes --only-binary=:all: -r scripts/requirements-validate.txt >/dev/null
fi

PLUMBLINE_BINARIES="$(scripts/build-release.sh --packages | tr '\n' ' ')" \
  python3 - "$COMPOSE_FILE" "$SCHEMA" <<'PY'
import json, os, sys
import jsonschema, yaml

compose_path, schema_path = sys.argv[1], sys.argv[2]
binaries = set(os.environ["PLUMBLINE_BINARIES"].split())
with open(compose_path) as f:
    doc = yaml.safe_load(f)  # resolves anchors and `<<` merge keys, as compose does
with open(schema_path) as f:
    schema = json.load(f)

results = []  # (name, error or None)

def check(name, errors):
    results.append((name, errors))

validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
schema_errors = [
    f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
]
check("compose-spec schema", schema_errors)

services = doc.get("services", {})

def deps(svc):
    d = svc.get("depends_on", {})
    return {n: {"condition": "service_started"} for n in d} if isinstance(d, list) else d

errors = []
for name, svc in services.items():
    for dep in deps(svc):
        if dep not in services:
            errors.append(f"{name}: depends_on {dep}, which is not a service")
check("depends_on targets exist", errors)

ours = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("plumbline")}
errors = [] if ours else ["no service runs the plumbline image"]
for name, svc in ours.items():
    cmd = svc.get("command")
    if not isinstance(cmd, list) or not cmd or cmd[0] not in binaries:
        errors.append(f"{name}: command must be an exec-form list starting with one of {sorted(binaries)} (the image has no shell), got {cmd!r}")
    if isinstance(svc.get("entrypoint"), str):
        errors.append(f"{name}: a string entrypoint needs a shell")
    hc = svc.get("healthcheck")
    if hc and not hc.get("disable"):
        test = hc.get("test")
        if isinstance(test, str) or (isinstance(test, list) and test and test[0] == "CMD-SHELL") \
                or (isinstance(test, list) and len(test) > 1 and test[0] == "CMD" and test[1] not in binaries):
            errors.append(f"{name}: healthcheck {test!r} needs a program the distroless image lacks")
check("plumbline containers run the shipped binaries without a shell", errors)

errors = []
migrate = ours.get("migrate")
if not migrate or migrate.get("command") != ["plumb", "migrate"]:
    errors.append("a one-shot `migrate` service must run [\"plumb\", \"migrate\"]")
elif migrate.get("restart", "no") != "no":
    errors.append("migrate must not restart (it is one-shot)")
for name, svc in ours.items():
    if name == "migrate":
        continue
    d = deps(svc)
    for one_shot in ("migrate", "kafka-init"):
        cond = d.get(one_shot, {}).get("condition")
        if cond != "service_completed_successfully":
            errors.append(f"{name}: must depend on {one_shot} with condition service_completed_successfully (has {cond})")
check("services start after migrate and kafka-init", errors)

errors = []
kafka = services.get("kafka", {})
env = kafka.get("environment", {})
if not str(kafka.get("image", "")).startswith("apache/kafka:"):
    errors.append(f"kafka: image {kafka.get('image')!r} is not apache/kafka")
if not isinstance(env, dict) or "controller" not in str(env.get("KAFKA_PROCESS_ROLES", "")):
    errors.append("kafka: KAFKA_PROCESS_ROLES must include controller (KRaft)")
if any("zookeeper" in n for n in services) or "KAFKA_ZOOKEEPER_CONNECT" in (env or {}):
    errors.append("kafka: ZooKeeper found")
check("kafka is apache/kafka in KRaft mode", errors)

errors = []
base = os.path.dirname(os.path.abspath(compose_path))
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = v.split(":", 1)[0] if isinstance(v, str) else (v.get("source") if v.get("type") == "bind" else None)
        if src and src.startswith((".", "/")) and not os.path.exists(os.path.join(base, src)):
            errors.append(f"{name}: bind mount {src} does not exist")
check("bind-mounted files exist", errors)

failed = [(n, e) for n, e in results if e]
for n, e in results:
    print(f"validate-compose: {'FAIL' if e else 'PASS'} {n}")
    for line in e:
        print(f"    {line}")
print(f"validate-compose: {len(results) - len(failed)} passed, {len(failed)} failed")
sys.exit(1 if failed else 0)
PY
