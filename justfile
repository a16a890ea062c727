# Recipes for servicekonto. The README's two commands work without `just`.

# Start the server on the embedded default (SQLite, in-memory store).
serve:
    cargo run --release --bin servicekonto -- serve

# The test suite as the README runs it (PostgreSQL/Redis/browser tests skip with a reason).
test:
    cargo test --workspace

# The SAML service provider of the integration tests (pysaml2 from PyPI; needs Debian's xmlsec1).
saml-sp:
    python3 -m venv target/saml-venv && target/saml-venv/bin/pip install --quiet pysaml2==7.5.5

# The test suite against the local PostgreSQL and Redis; a missing backend fails.
test-pg:
    TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_REDIS_URL=redis://127.0.0.1:6379 TEST_REQUIRE_BACKENDS=1 cargo test --workspace

# What CI runs.
ci:
    bash .ci/run

# The fault suite with 30 s per fault (CI runs 3 s); needs PostgreSQL and redis-server.
faults seconds="30":
    FAULT_PHASE_SECONDS={{seconds}} TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres TEST_REDIS_URL=redis://127.0.0.1:6379 cargo test -p integration-tests --test faults -- --nocapture

# schemathesis against the admin API of a throwaway server (pip install schemathesis).
schemathesis examples="200":
    cargo build --bin servicekonto
    integration-tests/schemathesis/run.sh target/debug/servicekonto {{examples}}

# Coverage-guided fuzzing (cargo install cargo-afl): each target for SECONDS (CI runs 10).
fuzz seconds="300":
    fuzz/run.sh {{seconds}}

# The container image from the dist profile (fat LTO: built once, run everywhere), with buildah.
image tag="servicekonto:0.1.0":
    cargo build --profile dist --locked --bin servicekonto
    deploy/container/build-image.sh --binary target/dist/servicekonto --tag {{tag}}

# The compose deployment: https://localhost:8443 with two nodes (needs the image).
compose-up:
    deploy/compose/up.sh

# The compose test on this machine's podman, with the stand-in images (no registry needed):
# builds the image from the debug binary and the stand-ins, then runs up.sh and the flow.
compose-test:
    cargo build --bin servicekonto
    STORAGE_DRIVER=vfs deploy/container/build-image.sh --binary target/debug/servicekonto --tag localhost/servicekonto:ci
    STORAGE_DRIVER=vfs deploy/compose/local-images.sh
    python3 -m venv target/deploy-venv && target/deploy-venv/bin/pip install --quiet podman-compose
    STORAGE_DRIVER=vfs TEST_COMPOSE={{justfile_directory()}}/target/deploy-venv/bin/podman-compose TEST_COMPOSE_LOCAL_IMAGES=1 cargo test -p integration-tests --test compose

# Format the code.
fmt:
    cargo fmt --all

# Lints as CI checks them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the committed OpenAPI document of the admin API.
openapi:
    cargo run --quiet --bin servicekonto -- admin openapi > docs/admin-openapi.json

# Tenant-scale benchmark: 10,000 tenants × 3 clients (not a test; prints figures).
bench-tenants *ARGS:
    cargo run --release -p bench --bin tenant-scale -- {{ARGS}}

# servicekonto vs node oidc-provider in one run (`--smoke` for a quick check, `--without-peer`,
# `--scaling`; `--two-nodes` with BENCH_DATABASE_URL and BENCH_REDIS_URL: two nodes behind nginx
# against the peer's cluster mode). Built with the dist profile, as the container image is: what
# is measured is what ships.
bench *ARGS:
    cargo build --profile dist -p bench --bin side-by-side
    target/dist/side-by-side {{ARGS}}

# Bytes per live opaque access token in the in-memory store (100,000 and 1,000,000 tokens).
bench-memory:
    cargo run --release -p bench --bin token-memory

# Release profiles compared: cold build time and memory vs speed against the peer (~30 min).
bench-profiles:
    bench/release-profiles.sh

# Rewrite crates/server/link-order.txt, the code a node runs until its first answer, which the
# linker places first (two dist builds and two starts under valgrind; after dependency updates).
link-order:
    command -v valgrind > /dev/null || (apt-get update && apt-get install -y valgrind)
    bench/link-order.sh

# Signing one ID token per algorithm vs the raw signature (criterion).
bench-signing:
    cargo bench -p bench --bench signing
