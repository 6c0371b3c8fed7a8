#!/usr/bin/env bash
# Checks deploy/ without a cluster: lints every YAML file, validates every Kubernetes
# manifest against the Kubernetes schemas (offline: kubernetes-validate ships them),
# checks that the manifests agree with each other and with the Grafana dashboard
# (scripts/check_deploy.py), and has Compose parse the compose file when it is
# installed. Installs the pinned validators when they are missing. Exits non-zero on
# any error; scripts/test.sh runs it.
#
#   bash scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Pinned: a new yamllint can add rules and a new kubernetes-validate new schemas,
# and CI should change only when this file does.
KUBERNETES_VALIDATE_VERSION=1.37.0
YAMLLINT_VERSION=1.38.0
# The oldest Kubernetes the manifests promise to work on, and the newest
# kubernetes-validate knows.
KUBERNETES_VERSIONS=(1.29.0 1.37.0)

log() { printf '\n==> %s\n' "$*"; }

# pip_pin MODULE PACKAGE VERSION: installs PACKAGE==VERSION unless MODULE already
# reports that version (a Debian python refuses plain installs: retry with
# --break-system-packages).
pip_pin() {
    local module=$1 package=$2 version=$3 have
    have=$(python3 -c "import importlib.metadata as m; print(m.version('$package'))" 2>/dev/null || true)
    if [ "$have" = "$version" ] && python3 -c "import $module" >/dev/null 2>&1; then
        return 0
    fi
    log "installing $package==$version"
    python3 -m pip install --quiet "$package==$version" \
        || python3 -m pip install --quiet --break-system-packages "$package==$version"
}
pip_pin kubernetes_validate kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
pip_pin yamllint yamllint "$YAMLLINT_VERSION"

failed=()

log "yamllint deploy/"
python3 -m yamllint --strict -c deploy/.yamllint.yaml deploy/ || failed+=("yamllint")

# Every Kubernetes object except the kinds outside core Kubernetes (Kustomization,
# and the Prometheus Operator's ServiceMonitor and PrometheusRule), which
# scripts/check_deploy.py checks instead.
manifests=()
for f in deploy/kubernetes/*.yaml; do
    case $(basename "$f") in
        kustomization.yaml | servicemonitor.yaml | prometheusrule.yaml) ;;
        *) manifests+=("$f") ;;
    esac
done
for v in "${KUBERNETES_VERSIONS[@]}"; do
    log "kubernetes-validate --strict, Kubernetes $v"
    # It exits 0 when it finds no schema for a kind (only a WARN): such a line is a
    # failure here too.
    out=$(python3 -m kubernetes_validate --strict --kubernetes-version "$v" "${manifests[@]}" 2>&1) \
        || { echo "$out"; failed+=("kubernetes-validate $v"); continue; }
    echo "$out"
    if grep -q -v '^INFO ' <<<"$out"; then failed+=("kubernetes-validate $v"); fi
done

# With a binary that has the admin listener (the one scripts/test.sh just built), the
# cross-checks also compare the metric names in use with a live /metrics page.
binary=${RINGCACHE_BIN:-target/debug/ringcache}
live=()
if [ -x "$binary" ] && "$binary" --help 2>/dev/null | grep -q -- '--admin-addr'; then
    live=(--binary "$binary")
else
    echo "note: no $binary with --admin-addr: metric names are not compared with a live /metrics"
fi
log "cross-checks (scripts/check_deploy.py ${live[*]})"
python3 scripts/check_deploy.py "${live[@]}" || failed+=("cross-checks")

# Compose's own schema check, with whichever Compose is installed.
compose=()
if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
fi
if [ "${#compose[@]}" -gt 0 ]; then
    log "${compose[*]} config deploy/compose/compose.yaml"
    RINGCACHE_GOSSIP_KEY=not-a-secret "${compose[@]}" -f deploy/compose/compose.yaml config -q \
        || failed+=("compose config")
else
    log "no Compose installed: the compose file is only linted"
fi

if [ "${#failed[@]}" -gt 0 ]; then
    log "deploy checks FAILED: ${failed[*]}"
    exit 1
fi
log "deploy checks passed"
