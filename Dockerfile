# jetsaga service images: one image per service, chosen by the build
# argument SERVICE (order-service, inventory-service, payment-service,
# saga-orchestrator, saga-console for the web console, or sagactl for the
# operator CLI).
#
# From source (pulls the Rust builder and the distroless runtime):
#
#   docker build --build-arg SERVICE=order-service -t jetsaga/order-service .
#
# The source build needs BuildKit (the default of Docker Engine 23+ and of
# `docker compose`; with docker-compose 1.x set DOCKER_BUILDKIT=1 and
# COMPOSE_DOCKER_CLI_BUILD=1): the classic builder would also build the
# `prebuilt` stage, whose files only the prepared context has.
#
# From binaries built outside Docker (CI, or a machine that cannot pull the
# builder image): the target `prebuilt`, whose build context is a folder
# holding bin/<SERVICE> and bin/healthcheck. scripts/build-offline-images.sh
# prepares that folder from target/release and builds every image this way,
# on a runtime base made from the host's own libraries:
#
#   docker build --target prebuilt --build-arg SERVICE=order-service \
#       -f Dockerfile -t jetsaga/order-service:local target/docker-context
#
# Every image runs the service as /usr/local/bin/service, as the non-root
# user 65532, and carries /usr/local/bin/healthcheck (a static probe for
# Compose healthchecks: the runtime image has no shell, curl or wget).
#
# Stage order matters: the classic builder (Docker without BuildKit, and
# docker-compose 1.x) builds every stage up to the target, so `prebuilt`
# comes first and needs nothing but RUNTIME_BASE.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot

# --- binaries built outside Docker -----------------------------------------
FROM ${RUNTIME_BASE} AS prebuilt
ARG SERVICE=order-service
LABEL org.opencontainers.image.title="jetsaga ${SERVICE}"
ENV JETSAGA_SERVICE=${SERVICE} LOG_FORMAT=json
COPY bin/healthcheck /usr/local/bin/healthcheck
COPY bin/${SERVICE} /usr/local/bin/service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]

# --- source build: dependency layer, then the workspace ---------------------
FROM ${RUST_IMAGE} AS chef
# make: tikv-jemalloc-sys builds jemalloc, the services' allocator, with it
# (the slim image has only the C compiler).
RUN apt-get update \
 && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
RUN cargo install cargo-chef --locked --version 0.1.77
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The dependency layer: rebuilt only when Cargo.toml or Cargo.lock change.
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --bins --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bins \
 && mkdir -p /out \
 && for bin in order-service inventory-service payment-service saga-orchestrator saga-console sagactl; do \
        objcopy --strip-debug "target/release/$bin" "/out/$bin"; \
    done \
 && rustc --edition 2021 -C opt-level=s -C strip=symbols -C target-feature=+crt-static \
        -o /out/healthcheck deploy/docker/healthcheck.rs

# --- runtime: the default target -------------------------------------------
FROM ${RUNTIME_BASE} AS runtime
ARG SERVICE=order-service
LABEL org.opencontainers.image.title="jetsaga ${SERVICE}"
ENV JETSAGA_SERVICE=${SERVICE} LOG_FORMAT=json
COPY --from=builder /out/healthcheck /usr/local/bin/healthcheck
COPY --from=builder /out/${SERVICE} /usr/local/bin/service
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/service"]
