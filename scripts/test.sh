#!/usr/bin/env bash
# The test command: installs what the tests need (only what is missing), builds the
# workspace, checks deploy/ and builds the container image (when a Docker daemon
# answers; before the tests, so tests can use ringcache:dev), runs every test (nextest
# if present, else cargo test), then checks formatting and lints. Exits non-zero if any step fails; later checks still run after a test failure
# so one run reports everything.
#
#   bash scripts/test.sh            # everything
#   RINGCACHE_DIFF_AGAINST=memcached bash scripts/test.sh
#                                   # harness self-check: tests that target ringcache run
#                                   # against a second memcached instead
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# --- system packages: memcached (the reference server) and libmemcached's tools ---
apt_packages=()
command -v memcached >/dev/null 2>&1 || apt_packages+=(memcached)
command -v memccp >/dev/null 2>&1 || apt_packages+=(libmemcached-tools)
command -v python3 >/dev/null 2>&1 || apt_packages+=(python3 python3-pip)
if [ "${#apt_packages[@]}" -gt 0 ]; then
    log "installing ${apt_packages[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
fi

# --- Python clients for the real-client tests: pymemcache (and pytest, which runs
# pymemcache's own integration tests, fetched by tests/tests/compat.rs into target/),
# emcache (asyncio); prometheus-client (the /metrics parser) ---
if ! python3 -m pip --version >/dev/null 2>&1; then
    log "installing pip"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-pip
fi

# pip_install MODULE PACKAGE [DEBIAN_PACKAGE]: installs PACKAGE unless MODULE imports;
# falls back to --break-system-packages (a Debian python refuses plain installs), then
# to the Debian package when there is one.
pip_install() {
    local module=$1 package=$2 deb=${3:-}
    python3 -c "import $module" >/dev/null 2>&1 && return 0
    log "installing $package"
    python3 -m pip install --quiet "$package" \
        || python3 -m pip install --quiet --break-system-packages "$package" \
        || { [ -n "$deb" ] && as_root apt-get update -qq \
            && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb"; } \
        || true
    python3 -c "import $module" || { echo "$package could not be installed" >&2; exit 1; }
}
pip_install pymemcache pymemcache python3-pymemcache
pip_install pytest pytest python3-pytest
pip_install emcache emcache
# Prometheus's own text-format parser, which reads the admin listener's /metrics in
# tests/tests/admin.rs.
pip_install prometheus_client prometheus-client python3-prometheus-client

log "building the workspace"
cargo build --workspace --all-targets

failed=()

# --- deploy/: lint, Kubernetes schemas, cross-checks (installs its pinned validators) ---
log "checking deploy/ (scripts/check-deploy.sh)"
RINGCACHE_BIN=target/debug/ringcache bash scripts/check-deploy.sh || failed+=("deploy checks")

# --- the container image, where a Docker daemon answers (a release build, then a few
# seconds of image work; bounded so a stuck daemon cannot hold CI) ---
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    log "building the container image (deploy/image/build.sh)"
    timeout 1200 bash deploy/image/build.sh || failed+=("container image")
else
    log "no Docker daemon: the container image is not built"
fi

log "running the tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast || failed+=("tests")
    # nextest does not run documentation examples; cargo test does.
    log "running the documentation examples"
    cargo test --workspace --doc --all-features || failed+=("doc tests")
else
    cargo test --workspace --no-fail-fast || failed+=("tests")
fi

# --- fuzzing (bounded): each target ~12 s, a little over a minute in all; any finding fails ---
# Longer runs and replaying a finding: docs/FUZZING.md.
log "fuzzing the decoders (bounded)"
fuzz_seed="${RINGCACHE_FUZZ_SEED:-$(date +%s)}"
echo "fuzz seed $fuzz_seed (replay this run with RINGCACHE_FUZZ_SEED=$fuzz_seed)"
cargo run --quiet -p ringcache-fuzz -- --target all --seconds "${RINGCACHE_FUZZ_SECONDS:-12}" \
    --seed "$fuzz_seed" --findings target/fuzz-findings || failed+=("fuzz")

log "checking formatting"
cargo fmt --all -- --check || failed+=("cargo fmt")

log "running clippy"
cargo clippy --workspace --all-targets -- -D warnings || failed+=("cargo clippy")

# --- no unused dependencies (cargo-machete reads each crate's sources for its imports) ---
log "checking for unused dependencies (cargo machete)"
if ! cargo machete --version >/dev/null 2>&1; then
    cargo install --quiet --locked cargo-machete@0.9.2 || failed+=("installing cargo-machete")
fi
cargo machete || failed+=("unused dependencies")

if [ "${#failed[@]}" -gt 0 ]; then
    log "FAILED: ${failed[*]}"
    exit 1
fi
log "all checks passed"
