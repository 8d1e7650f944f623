# syntax=docker/dockerfile:1.7
#
# One image for every Plumbline process. A container picks its binary through its command:
#   plumbline-ingest | plumbline-evaluator | plumbline-actuator | plumbline-reconciler
#   plumbline-control | plumb (CLI: `plumb migrate`, ...)
#
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" -t plumbline:dev .
#
# Stages: chef (toolchain + cargo-chef, cargo-auditable, cargo-cyclonedx) -> planner (the
# dependency recipe) -> builder (dependencies cooked in a layer of their own, then the
# workspace) -> runtime (distroless, no shell, uid 65532).
#
# The build stage runs scripts/build-release.sh, the same script (same packages, features, lock
# and tools) that .ci/run runs with the `dev` profile: a change that breaks this build breaks CI.

ARG RUST_VERSION=1.95

############################################################################################
# chef: the toolchain and the build tools, a layer that changes only with their versions
############################################################################################
FROM rust:${RUST_VERSION}-bookworm AS chef

# librdkafka is built from source by rdkafka-sys and links the system zlib (rdkafka `libz`)
# and OpenSSL (rdkafka `ssl`; sigstore and oci-client through native-tls): zlib1g-dev,
# libssl-dev, pkg-config. protobuf is compiled by protox in build.rs: no protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

# Pinned, from crates.io, with their own lock files.
RUN cargo install --locked cargo-chef@0.1.78 \
 && cargo install --locked cargo-auditable@0.7.7 \
 && cargo install --locked cargo-cyclonedx@0.5.9 \
 && rm -rf /usr/local/cargo/registry

WORKDIR /src

############################################################################################
# planner: the recipe (manifests and lock) that keys the dependency layer
############################################################################################
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

############################################################################################
# builder
############################################################################################
FROM chef AS builder

# Dependencies only: rebuilt when Cargo.toml/Cargo.lock (or this script) change, not when
# the workspace's sources do.
COPY --from=planner /src/recipe.json recipe.json
COPY scripts/build-release.sh scripts/build-release.sh
RUN scripts/build-release.sh --cook release

# The workspace. build-release.sh builds the six binaries with `cargo auditable build`,
# copies the shared libraries they need beyond glibc and libgcc (OpenSSL, zlib: see ldd),
# smoke-runs each binary and writes the CycloneDX SBOMs, all under /out/rootfs.
COPY . .
RUN scripts/build-release.sh release /out/rootfs

############################################################################################
# runtime: glibc, libgcc, CA certificates, tzdata, /etc/passwd with nonroot; no shell
############################################################################################
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime

# REVISION: the commit built (git rev-parse HEAD); SOURCE: where the repository is published.
ARG REVISION=unknown
ARG VERSION=0.1.0
ARG SOURCE=https://github.com/plumbline/plumbline

# usr/local/bin: the binaries (stripped, with their dependency list embedded by
#   cargo-auditable). usr/local/lib/plumbline: libz.so.1 from the build stage, the one shared
#   library the base lacks (OpenSSL is the base's own Debian libssl3, so image scanners see it
#   and base-image updates patch it). usr/share/doc/plumbline: the SBOMs.
COPY --from=builder /out/rootfs/ /
ENV LD_LIBRARY_PATH=/usr/local/lib/plumbline \
    PLUMB_LOG_JSON=true

LABEL org.opencontainers.image.title="plumbline" \
      org.opencontainers.image.description="Plumbline: keeps source repositories in a declared security posture (ingest, evaluator, actuator, reconciler, control API, plumb CLI)" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# distroless's nonroot user, numeric so Kubernetes' runAsNonRoot can check it.
USER 65532:65532
WORKDIR /home/nonroot

# 8080: ingest webhooks; 9090: health (/healthz, /readyz) and /metrics of every service;
# 50051: control gRPC API.
EXPOSE 8080 9090 50051

# No HEALTHCHECK: the image has no shell and no HTTP client, and the binaries have no probe
# subcommand. Kubernetes probes GET /readyz and /healthz on :9090 (k8s/); compose relies on
# start order and restart policies (docker-compose.yml).

# Every service drains on SIGTERM (the default stop signal).
STOPSIGNAL SIGTERM

# No ENTRYPOINT: each container sets its command, e.g. ["plumbline-evaluator"].
CMD ["plumb", "--help"]
