# syntax=docker/dockerfile:1
#
# One image for every binary of the workspace; docker-compose.yml runs it as each service and
# picks the binary with `command:`.
#
#   docker build -t snykapps:local .        (BuildKit: the default of Docker 23 and later)
#
# Stages, in this order on purpose (Docker's legacy builder runs every stage before its target):
#   base      Debian slim with CA certificates and the non-root user; what ships.
#   prebuilt  base + binaries built outside Docker (context: a folder holding bin/<binary>).
#             For engines without BuildKit, where the builder stage cannot run; scripts/compose-test
#             uses it (docs/operations.md, "Docker Compose"). Nothing but the COPY differs from runtime.
#   builder   the release build, with BuildKit cache mounts.
#   runtime   base + the builder's binaries: the default target, what `docker compose up --build`
#             builds.
#
# The `--bin` list and the copies below must name every binary of the workspace: the system test
# tests/system/deploy.rs compares them with `cargo metadata` and fails when a binary is missing.

ARG RUST_VERSION=1.95

FROM debian:bookworm-slim AS base
# CA certificates for HTTPS to Snyk and nothing else: no shell tools are added, and healthchecks
# use each binary's own `healthcheck` subcommand (there is no curl or wget in this image). Not
# pinned: Debian's archive drops superseded versions, and a rebuild should get the current CAs.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 snykapps \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin snykapps \
 && install -d -o 10001 -g 10001 -m 0755 /var/lib/snykapps/tls \
        /var/lib/snykapps/tls/token-service /var/lib/snykapps/tls/projects-service \
        /var/lib/snykapps/tls/redis /var/lib/snykapps/tls/redis-auth \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/snykapps/ca
# Mount points of compose.real.yml's internal TLS volumes, owned by the services' user: Docker
# gives a new named volume the owner and mode of the directory it is mounted on, so
# `token-service certs`, running as 10001, can write there (tls: the CA's certificate; tls/NAME:
# one server's certificate and key; ca: the CA's key, mounted by that job only).
ENV RUST_LOG=info
# No default command: run it as `auth-service`, `token-service`, `projects-service` or
# `fake-snyk` (each also takes `healthcheck`; token-service also takes `reseal` and `certs`).

FROM base AS prebuilt
COPY bin/auth-service bin/token-service bin/projects-service bin/fake-snyk /usr/local/bin/
USER 10001:10001

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /app
# The sources (.dockerignore leaves out target/, .git/, docs/ and local files). The proto crate
# compiles its contract with protox, so no protoc is needed; the C parts of the TLS stack build
# with the gcc that the rust image ships.
COPY . .
# Dependencies are cached across builds in BuildKit cache mounts (the registry, git checkouts and
# the target directory), so a source change rebuilds only our crates. The target directory is a
# cache mount, not part of the image: the binaries are copied out of it in the same step.
# token-service is built on its own: cargo unifies dependency features per build, and built with
# actix's crates tracing and its dependents get features (among them `log`) that cost the token
# fetch about 8% more CPU per call (docs/benchmarks.md). scripts/image and scripts/bench do the same.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/app/target,sharing=locked \
    cargo build --release --locked --bin token-service \
 && cargo build --release --locked --bin auth-service --bin projects-service --bin fake-snyk \
 && mkdir -p /out \
 && cp target/release/auth-service target/release/token-service \
       target/release/projects-service target/release/fake-snyk /out/

FROM base AS runtime
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
