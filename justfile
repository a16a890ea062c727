# Recipes for servicekonto. The README's two commands work without `just`.

# Start the server on the embedded default (SQLite, in-memory store).
serve:
    cargo run --release --bin servicekonto -- serve

# The test suite as the README runs it (PostgreSQL/Redis/browser tests skip with a reason).
test:
    cargo test --workspace

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

# The container image from a release build, with buildah (no registry needed).
image tag="servicekonto:0.1.0":
    cargo build --release --locked --bin servicekonto
    deploy/container/build-image.sh --tag {{tag}}

# The compose deployment: https://localhost:8443 with two nodes (needs the image).
compose-up:
    deploy/compose/up.sh

# Format the code.
fmt:
    cargo fmt --all

# Lints as CI checks them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the committed OpenAPI document of the admin API.
openapi:
    cargo run --quiet --bin servicekonto -- admin openapi > docs/admin-openapi.json

# Tenant-scale benchmark: 5,000 tenants × 3 clients (not a test; prints figures).
bench-tenants *ARGS:
    cargo run --release -p bench --bin tenant-scale -- {{ARGS}}

# servicekonto vs node oidc-provider in one run (`--smoke` for a quick check, `--without-peer`).
bench *ARGS:
    cargo build --release -p bench --bin side-by-side
    target/release/side-by-side {{ARGS}}

# Signing one ID token per algorithm vs the raw signature (criterion).
bench-signing:
    cargo bench -p bench --bench signing
