#!/usr/bin/env bash
# The one build command of the binaries Plumbline ships, so the image and CI cannot drift:
# the Dockerfile's build stage runs it with the `release` profile, .ci/run with `dev` (same
# packages, features, lock and tools; the profile only changes optimisation).
#
#   scripts/build-release.sh PROFILE [ROOTFS]      # e.g. scripts/build-release.sh release /out/rootfs
#   scripts/build-release.sh --cook PROFILE        # Dockerfile only: cargo-chef's dependency layer
#   scripts/build-release.sh --packages            # prints the shipped packages, one a line
#
# Builds only the shipped packages, without default features (`plumb` then has no `dev`: no
# `plumb dev`, no simulator); benchmarks, tests and simulators are not built.
# With `cargo auditable` (cargo-auditable) each binary carries its dependency list (a
# `.dep-v0` section: `cargo audit bin`, syft and trivy read it).
#
# With ROOTFS, also lays out the runtime image's files under it:
#   usr/local/bin/                     the six binaries
#   usr/local/lib/plumbline/           the shared libraries they need (ldd) beyond glibc and
#                                      libgcc, which the distroless base has: OpenSSL and zlib
#   usr/share/doc/plumbline/           sbom.cdx.json (CycloneDX, from Cargo.lock, every shipped
#                                      package) and <package>.cdx.json per binary
# and smoke-runs every binary from there (`--help`) with only those libraries added.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(plumbline-ingest plumbline-evaluator plumbline-actuator plumbline-reconciler plumbline-control plumb)
# package -> manifest directory (for the per-package SBOM)
declare -A MANIFEST_DIR=(
  [plumbline-ingest]=services/ingest [plumbline-evaluator]=services/evaluator
  [plumbline-actuator]=services/actuator [plumbline-reconciler]=services/reconciler
  [plumbline-control]=services/control [plumb]=cli
)
# The libraries a binary may take from the distroless base (gcr.io/distroless/cc-debian12):
# glibc's and libgcc's. Everything else ldd lists is copied into ROOTFS.
# libssl and libcrypto are the base image's own (distroless cc-debian12 ships Debian's libssl3):
# a private copy would hide the OpenSSL in use from image scanners and from base-image updates.
BASE_LIBS_RE='^(linux-vdso\.so|linux-gate\.so|ld-linux[^ ]*\.so|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libutil\.so|libgcc_s\.so|libssl\.so|libcrypto\.so)'

pkg_args=()
for p in "${PACKAGES[@]}"; do pkg_args+=(-p "$p"); done

log() { printf 'build-release.sh: %s\n' "$*" >&2; }

case "${1:-}" in
  --packages)
    printf '%s\n' "${PACKAGES[@]}"
    exit 0
    ;;
  --cook)
    profile="${2:?usage: $0 --cook PROFILE}"
    # Same packages and features as below, so the cooked dependencies are the ones reused.
    exec cargo chef cook --recipe-path recipe.json --locked --profile "$profile" \
      --no-default-features --bins "${pkg_args[@]}"
    ;;
  ""|-*)
    sed -n '2,20p' "$0" >&2
    exit 2
    ;;
esac

profile="$1"
rootfs="${2:-}"

if ! cargo auditable --version >/dev/null 2>&1; then
  log "cargo-auditable missing: cargo install --locked cargo-auditable@0.7.7"
  exit 1
fi

started=$(date +%s)
cargo auditable build --locked --profile "$profile" --no-default-features --bins "${pkg_args[@]}"
log "cargo auditable build --profile $profile took $(( $(date +%s) - started )) s"

[ -n "$rootfs" ] || exit 0

case "$profile" in
  dev|test) outdir=debug ;;
  *) outdir="$profile" ;;
esac
target_dir="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"

bin_dir="$rootfs/usr/local/bin"
lib_dir="$rootfs/usr/local/lib/plumbline"
doc_dir="$rootfs/usr/share/doc/plumbline"
rm -rf "$rootfs"
mkdir -p "$bin_dir" "$lib_dir" "$doc_dir"

for bin in "${PACKAGES[@]}"; do
  install -m 0755 "$target_dir/$outdir/$bin" "$bin_dir/$bin"
done

# Shared libraries: exactly what ldd resolves beyond glibc and libgcc, by soname.
for bin in "$bin_dir"/*; do
  if ldd "$bin" | grep -q 'not found'; then
    ldd "$bin" >&2
    log "$bin: a shared library is missing"
    exit 1
  fi
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }' | while read -r soname path; do
    if [[ "$soname" =~ $BASE_LIBS_RE ]]; then continue; fi
    [ -e "$lib_dir/$soname" ] || cp -L "$path" "$lib_dir/$soname"
  done
done
log "shared libraries copied beyond glibc/libgcc: $(cd "$lib_dir" && ls | tr '\n' ' ')"

# Each binary runs with only those libraries added (its --help needs no configuration).
for bin in "$bin_dir"/*; do
  LD_LIBRARY_PATH="$lib_dir" "$bin" --help >/dev/null
done

# SBOMs (CycloneDX 1.5, JSON) from Cargo.lock by cargo-cyclonedx: one per shipped package
# (<package>.cdx.json) and sbom.cdx.json, their union. cargo-cyclonedx (like cargo-auditable)
# reads `cargo metadata`, whose resolve is workspace-wide: e2e's dev-dependency on plumb with
# `dev` puts the simulator and the services under plumb there although the shipped plumb has
# none of them. So each package's list is cut down to what `cargo tree` (cargo's own feature
# resolution for exactly this build: these packages, no default features, no dev-dependencies,
# this platform) says its binary is built from; a crate of that tree that the SBOM lacks fails
# the build. Every binary must also carry cargo-auditable's .dep-v0 section.
if ! cargo cyclonedx --version >/dev/null 2>&1; then
  log "cargo-cyclonedx missing: cargo install --locked cargo-cyclonedx@0.5.9"
  exit 1
fi
host="$(rustc -vV | sed -n 's/^host: //p')"
tmp_name=plumbline-sbom-tmp
cargo cyclonedx --no-default-features --format json --spec-version 1.5 --target "$host" \
  --override-filename "$tmp_name.cdx" -q
trees="$(cargo tree --locked --no-default-features -e no-dev --target "$host" --prefix depth \
  -f '{p}' "${pkg_args[@]}")"
manifest_dirs="$(cargo metadata --format-version 1 --no-deps --locked | python3 -c '
import json, os, sys
for p in json.load(sys.stdin)["packages"]:
    print(p["name"], os.path.dirname(p["manifest_path"]))')"
python3 - "$doc_dir" "$bin_dir" "$tmp_name.cdx.json" "$manifest_dirs" "$trees" "${PACKAGES[@]}" <<'PY'
import json, os, pathlib, re, sys, zlib
doc, bin_dir, tmp_file, dirs_text, trees_text = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
packages = sys.argv[6:]
dirs = dict(line.split(" ", 1) for line in dirs_text.splitlines())

# `cargo tree --prefix depth -f '{p}'`: "0plumb v0.1.0 (/path)", "1anyhow v1.0.104", ... A
# node already expanded is printed again with "(*)" and no children: the edges are collected
# once (features are unified over the whole build, so a crate's dependencies are the same under
# every root) and each root's crates are what it reaches.
edges, roots, stack = {}, [], []
for line in trees_text.splitlines():
    m = re.match(r"^(\d+)(\S+) v(\S+)", line)
    if not m:
        continue
    depth, node = int(m.group(1)), (m.group(2), m.group(3))
    del stack[depth:]
    if depth == 0:
        roots.append(node)
    else:
        edges.setdefault(stack[-1], set()).add(node)
    stack.append(node)
built = {}
for root in roots:
    seen, todo = set(), [root]
    while todo:
        for child in edges.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    built[root[0]] = seen - {root}

def audit_data(binary):
    # cargo-auditable's zlib-compressed JSON, in the ELF section .dep-v0.
    import struct
    data = pathlib.Path(binary).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        sys.exit(f"build-release.sh: {binary} is not a 64-bit ELF file")
    end = "<" if data[5] == 1 else ">"
    shoff, = struct.unpack_from(end + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(end + "HHH", data, 0x3A)
    def section(i):
        name, _, _, _, off, size = struct.unpack_from(end + "IIQQQQ", data, shoff + i * shentsize)
        return name, off, size
    _, stroff, _ = section(shstrndx)
    for i in range(shnum):
        name, off, size = section(i)
        if data[stroff + name:data.index(b"\0", stroff + name)] == b".dep-v0":
            return json.loads(zlib.decompress(data[off:off + size]))
    sys.exit(f"build-release.sh: {binary} has no .dep-v0 section (not built by cargo auditable?)")

boms, union, seen = [], [], set()
for p in packages:
    generated = {}
    for name, d in dirs.items():
        f = pathlib.Path(d) / tmp_file
        if f.exists():
            generated[name] = json.loads(f.read_text())
    bom = generated[p]
    audit_data(bin_dir / p)  # present, or the build fails
    in_binary = built[p]
    by_key = {(c["name"], c["version"]): c for c in bom.get("components", [])}
    missing = sorted(in_binary - set(by_key))
    if missing:
        sys.exit(f"build-release.sh: {p}: crates of its build missing from the SBOM: {missing}")
    keep = {c.get("bom-ref") for k, c in by_key.items() if k in in_binary}
    bom["components"] = [c for c in bom.get("components", []) if c.get("bom-ref") in keep]
    if "dependencies" in bom:
        root = bom["metadata"]["component"].get("bom-ref")
        live = keep | {root}
        bom["dependencies"] = [
            dict(d, dependsOn=[x for x in d.get("dependsOn", []) if x in live])
            for d in bom["dependencies"] if d["ref"] in live
        ]
    (doc / f"{p}.cdx.json").write_text(json.dumps(bom, indent=1) + "\n")
    print(f"build-release.sh: {p}.cdx.json: {len(bom['components'])} components "
          f"(cargo-cyclonedx listed {len(by_key)})", file=sys.stderr)
    boms.append(bom)
    for c in bom["components"]:
        if c.get("bom-ref") not in seen:
            seen.add(c.get("bom-ref"))
            union.append(c)

for name, d in dirs.items():
    (pathlib.Path(d) / tmp_file).unlink(missing_ok=True)

merged = {
    "bomFormat": "CycloneDX",
    "specVersion": boms[0]["specVersion"],
    "version": 1,
    "metadata": {
        "component": {
            "type": "application",
            "bom-ref": "plumbline",
            "name": "plumbline",
            "version": boms[0]["metadata"]["component"].get("version", ""),
            "licenses": [{"expression": "Apache-2.0"}],
            "components": [b["metadata"]["component"] for b in boms],
        },
        "tools": boms[0]["metadata"].get("tools", []),
    },
    "components": sorted(union, key=lambda c: (c.get("name", ""), c.get("version", ""))),
}
(doc / "sbom.cdx.json").write_text(json.dumps(merged, indent=1) + "\n")
print(f"build-release.sh: sbom.cdx.json: {len(union)} components in {len(boms)} binaries", file=sys.stderr)
PY
log "rootfs laid out in $rootfs"
