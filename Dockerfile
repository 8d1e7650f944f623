# syntax=docker/dockerfile:1.7
#
# One image for every Plumbline process. A container picks its binary through its command:
#   plumbline-ingest | plumbline-evaluator | plumbline-actuator | plumbline-reconciler
#   plumbline-control | plumb (CLI: `plumb migrate`, ...)
#
#   docker build -t plumbline:dev .
#
# Needs BuildKit (Docker 23+ uses it by default) for the cache mounts below.

ARG RUST_VERSION=1.95

############################################################################################
# Build stage
############################################################################################
FROM rust:${RUST_VERSION}-bookworm AS builder

# The rust image already has gcc, make, perl and python3. librdkafka is built from source by
# rdkafka-sys (its ./configure + make) and links the system zlib (rdkafka's `libz` feature),
# hence zlib1g-dev, and the system OpenSSL for TLS and SASL to the brokers (rdkafka's `ssl`
# feature), hence libssl-dev and pkg-config. Everything else speaks TLS through rustls.
# protobuf is compiled by protox in build.rs, so no system protoc is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# BuildKit sets TARGETPLATFORM; it keys the target cache so multi-arch builds do not share
# (and corrupt) one target directory.
ARG TARGETPLATFORM

# Only the shipped packages, without default features: `plumb` then has no `dev` (no `plumb dev`,
# no simulator), and the tests' and benchmarks' crates do not pull it back in.
# The registry and target directories are cache mounts: they survive between builds but are
# NOT part of the image layer, so the binaries must be copied out of target/ in this same RUN.
RUN --mount=type=cache,id=plumbline-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=plumbline-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=plumbline-target-${TARGETPLATFORM},target=/src/target,sharing=locked \
    set -eux; \
    cargo build --release --locked --no-default-features --bins \
        -p plumbline-ingest -p plumbline-evaluator -p plumbline-actuator -p plumbline-reconciler \
        -p plumbline-control -p plumb; \
    mkdir -p /out; \
    for bin in plumbline-ingest plumbline-evaluator plumbline-actuator plumbline-reconciler plumbline-control plumb; do \
        install -m 0755 "target/release/${bin}" "/out/${bin}"; \
    done

############################################################################################
# Runtime stage
############################################################################################
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to api.github.com (rustls reads the system roots via
#   rustls-native-certs / openssl-probe).
# libgcc-s1: unwinding for Rust panics.
# zlib1g: librdkafka's compression (linked dynamically against the system zlib).
# libssl3: librdkafka's TLS and SASL/SCRAM (linked dynamically against the system OpenSSL).
# If git ingestion ever shells out to `git`, add `git` here.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgcc-s1 zlib1g libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 plumbline \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin plumbline

COPY --from=builder /out/ /usr/local/bin/

LABEL org.opencontainers.image.title="plumbline" \
      org.opencontainers.image.description="Plumbline: GitHub security-posture control loop (ingest, evaluator, actuator, reconciler, control, plumb CLI)" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric UID/GID so Kubernetes' runAsNonRoot can verify the user without /etc/passwd.
USER 10001:10001
WORKDIR /tmp

ENV PLUMB_LOG_JSON=true

# 8080: ingest webhooks + health/metrics; 9090: health/metrics of the other services;
# 50051: control gRPC API.
EXPOSE 8080 9090 50051

# Every service drains on SIGTERM (the default stop signal); give it 30 s
# (compose stop_grace_period / k8s terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM

# No ENTRYPOINT: each service sets its command, e.g. ["plumbline-evaluator"].
CMD ["plumb", "--help"]
