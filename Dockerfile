# syntax=docker/dockerfile:1
#
# The messenger image: one static-ish Rust binary on debian-slim, run as a non-root user.
#
#   docker build -t messenger .
#   docker run --rm -p 8000:8000 --stop-timeout 30 messenger          # SQLite in /app
#   docker run --rm messenger migrate                                  # other subcommands
#
# Three stages:
#   assets  - `npm ci` fetches the pinned browser libraries (htmx, htmx-ext-sse);
#   build   - compiles the dependencies in a layer of their own, then the crate;
#   runtime - debian:bookworm-slim with the binary at /usr/local/bin/messenger.
# The build commands (`npm ci --ignore-scripts --no-audit --no-fund` and
# `cargo build --release --locked`) are the ones .ci/run exercises on every change.

# ---------------------------------------------------------------------------------------
FROM node:22-bookworm-slim AS assets
WORKDIR /assets
COPY package.json package-lock.json ./
# --ignore-scripts: the two packages are plain JS files; nothing needs to run at install.
RUN npm ci --ignore-scripts --no-audit --no-fund

# ---------------------------------------------------------------------------------------
# rust:1-bookworm tracks the latest stable toolchain (Cargo.toml needs >= 1.88) and the
# same Debian release as the runtime stage, so the binary links against the same glibc.
FROM rust:1-bookworm AS build
WORKDIR /src

# build.rs copies htmx out of node_modules and only calls npm itself when the files are
# missing; with node_modules taken from the assets stage this stage needs no Node at all.
COPY --from=assets /assets/node_modules ./node_modules
COPY Cargo.toml Cargo.lock build.rs package.json package-lock.json ./
# The load tool is the workspace's other member. Cargo reads every member's manifest to
# resolve the workspace, but the image builds the server alone: the load tool's sources
# stay out (.dockerignore) and nothing here compiles them.
COPY loadtest/Cargo.toml ./loadtest/

# Dependency layer: compile every dependency against empty stand-ins for the crate's own
# targets, so editing src/ does not rebuild the few hundred dependency crates. Cargo.toml names
# src/lib.rs, src/main.rs and tests/integration/main.rs explicitly, and refuses to load a
# manifest whose target files are missing, so all three are stubbed.
# `cargo clean -p messenger` then drops the stub's own artifacts (not the dependencies'),
# so the real build below cannot mistake them for up to date: COPY keeps the sources'
# modification times, which may be older than the stub's.
RUN mkdir -p src tests/integration \
    && echo 'fn main() {}' > src/main.rs \
    && cp src/main.rs tests/integration/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin messenger \
    && cargo clean --release --locked -p messenger

# The crate itself. migrations/ (sqlx::migrate!), templates/ (askama) and static/
# (rust-embed) are compiled into the binary, so the runtime image needs none of them.
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
COPY src ./src
RUN cargo build --release --locked --bin messenger

# ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime

# A fixed, unprivileged UID so volume permissions and ECS/Kubernetes runAsUser settings
# can name it. -l: do not write a huge sparse lastlog entry for a high UID.
# /app is its home and working directory: the default SQLite file (sqlite://messenger.db)
# lands there, which is what a quick `docker run` without a database uses.
RUN useradd --system -l --uid 10001 --user-group \
        --home-dir /app --create-home --shell /usr/sbin/nologin messenger

COPY --from=build /src/target/release/messenger /usr/local/bin/messenger
# The CA certificates S3 (attachments) is reached with over TLS: the build stage's bundle,
# so the runtime stage needs no package manager run.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

# Numeric, so Kubernetes' runAsNonRoot and similar checks can verify it without /etc/passwd.
USER 10001:10001
WORKDIR /app

# Listen on every interface inside the container (the binary's default is 127.0.0.1).
ENV BIND_ADDR=0.0.0.0:8000
EXPOSE 8000

# `messenger healthcheck` GETs /health on BIND_ADDR with its own tiny HTTP client (the
# image has no curl): exit 0 when the server answers 200, 1 otherwise. /health itself
# pings the database, so an instance that lost its database turns unhealthy too.
# start-period covers migrations on start (MIGRATE_ON_START=true by default).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/messenger", "healthcheck"]

# SIGTERM starts a graceful shutdown: event streams end with a retry hint and in-flight
# requests finish. Give it time: `docker run --stop-timeout 30`, and stopTimeout 30 in
# task-definition.json (Docker's default is 10 s).
ENTRYPOINT ["/usr/local/bin/messenger"]
CMD ["serve"]
