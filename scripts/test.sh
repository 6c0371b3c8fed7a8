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

# --- fuzzing (bounded); any finding fails. Longer runs and replaying a finding:
# docs/FUZZING.md. First the stable runner (fuzz/src), a quick smoke test: each target
# ~6 s with a fresh seed it prints.
log "fuzzing: the stable-toolchain runner (bounded)"
fuzz_seed="${RINGCACHE_FUZZ_SEED:-$(date +%s)}"
echo "fuzz seed $fuzz_seed (replay this run with RINGCACHE_FUZZ_SEED=$fuzz_seed)"
cargo run --quiet -p ringcache-fuzz -- --target all --seconds "${RINGCACHE_FUZZ_SECONDS:-6}" \
    --seed "$fuzz_seed" --findings target/fuzz-findings || failed+=("fuzz")

# Then the same targets coverage-guided: libFuzzer through cargo-fuzz (pinned), on the
# stable toolchain with --sanitizer none (no -Z flag, so no RUSTC_BOOTSTRAP), in release
# with debug assertions as cargo fuzz builds; each target ~20 s from the seeds the stable
# runner exports (and whatever corpus/ a previous run here left), with its dictionary.
cargo_fuzz_version=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
    log "installing cargo-fuzz $cargo_fuzz_version"
    cargo install cargo-fuzz --version "$cargo_fuzz_version" --locked || failed+=("cargo-fuzz install")
fi
log "fuzzing: the libFuzzer targets (cargo fuzz, bounded)"
libfuzzer_dir=fuzz/libfuzzer
fuzz_seeds=target/fuzz-seeds
if cargo run --quiet -p ringcache-fuzz -- --target all --export "$fuzz_seeds" \
    && cargo fuzz build --fuzz-dir "$libfuzzer_dir" --sanitizer none; then
    for t in $(cargo fuzz list --fuzz-dir "$libfuzzer_dir"); do
        mkdir -p "$libfuzzer_dir/corpus/$t"
        echo "--- libFuzzer: $t"
        # libFuzzer's progress lines go to a log; its last lines (and any crash report)
        # are shown.
        # The cluster differential target (request streams through an in-process 3-node
        # cluster against one node) is slow per input and gets a minute of its own.
        seconds=${RINGCACHE_LIBFUZZER_SECONDS:-20}
        [ "$t" = cluster ] && seconds=${RINGCACHE_LIBFUZZER_CLUSTER_SECONDS:-60}
        if cargo fuzz run --fuzz-dir "$libfuzzer_dir" --sanitizer none "$t" \
            "$libfuzzer_dir/corpus/$t" "$fuzz_seeds/corpus/$t" -- \
            -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
            -dict="$fuzz_seeds/$t.dict" -print_final_stats=1 >"target/libfuzzer-$t.log" 2>&1; then
            grep -E "^#[0-9]+[[:space:]]+DONE|^Done" \
                "target/libfuzzer-$t.log" || tail -n 5 "target/libfuzzer-$t.log"
        else
            tail -n 60 "target/libfuzzer-$t.log"
            failed+=("libfuzzer $t")
        fi
    done
else
    failed+=("libfuzzer build")
fi

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
