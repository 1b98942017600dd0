# syntax=docker/dockerfile:1.7
#
# The AuthStack images (and the example chat service), from one build of the workspace:
#
#   docker build --target auth-svc -t ghcr.io/authstack/auth-svc:0.1.0 .
#   docker build --target gateway  -t ghcr.io/authstack/gateway:0.1.0 .
#   docker build --target operator -t ghcr.io/authstack/operator:0.1.0 .
#   docker build --target chat     -t ghcr.io/authstack/chat:0.1.0 .
#
# (`make images` builds all four.) Runtime images are distroless (glibc, CA certificates, no
# shell), run as uid/gid 65532 and log JSON (LOG_FORMAT=json).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

# ---------------------------------------------------------------------------------------------
# Build: one `cargo build` for the three binaries (BuildKit caches the registry and target/).
FROM ${RUST_IMAGE} AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0 \
    CARGO_NET_RETRY=5
COPY . .
RUN --mount=type=cache,id=authstack-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=authstack-cargo-git,target=/usr/local/cargo/git \
    --mount=type=cache,id=authstack-target,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p auth-svc --bin auth-svc \
        -p gateway --bin gateway \
        -p authstack-operator --bin authstack-operator \
        -p authstack-chat --bin authstack-chat \
 && mkdir -p /out \
 && cp target/release/auth-svc target/release/gateway target/release/authstack-operator \
       target/release/authstack-chat /out/

# ---------------------------------------------------------------------------------------------
# Common runtime base.
FROM ${RUNTIME_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.vendor="AuthStack" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV LOG_FORMAT=json
USER 65532:65532

# ---------------------------------------------------------------------------------------------
FROM runtime AS auth-svc
LABEL org.opencontainers.image.title="auth-svc" \
      org.opencontainers.image.description="AuthStack authentication service: RPC server on RabbitMQ backed by PostgreSQL."
COPY --from=build --chown=0:0 --chmod=0755 /out/auth-svc /usr/local/bin/auth-svc
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/auth-svc"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS gateway
LABEL org.opencontainers.image.title="gateway" \
      org.opencontainers.image.description="AuthStack gateway: REST and WebSocket entry point; verifies JWTs, forwards calls to auth-svc over RabbitMQ."
COPY --from=build --chown=0:0 --chmod=0755 /out/gateway /usr/local/bin/gateway
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/gateway"]

# ---------------------------------------------------------------------------------------------
FROM runtime AS chat
LABEL org.opencontainers.image.title="authstack-chat" \
      org.opencontainers.image.description="Example chat service on AuthStack: trusts tokens from the gateway's JWKS; live messages over a WebSocket."
COPY --from=build --chown=0:0 --chmod=0755 /out/authstack-chat /usr/local/bin/authstack-chat
EXPOSE 8090
ENTRYPOINT ["/usr/local/bin/authstack-chat"]

# ---------------------------------------------------------------------------------------------
# Last, so a plain `docker build .` yields the operator.
FROM runtime AS operator
LABEL org.opencontainers.image.title="authstack-operator" \
      org.opencontainers.image.description="AuthStack operator: reconciles AuthStack resources into a running auth platform and rotates its signing keys."
COPY --from=build --chown=0:0 --chmod=0755 /out/authstack-operator /usr/local/bin/authstack-operator
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/authstack-operator"]
