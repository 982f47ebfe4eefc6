#!/usr/bin/env bash
# The whole test suite, then one summary line:
#   1. every cargo test of the workspace, against real nats-servers (the
#      binaries are built first: the end-to-end tests also run them; the
#      clock-skew test preloads Debian's libfaketime, unpacked into .tools/;
#      the console's browser test drives Debian's chromium, installed with
#      chromium-driver by scripts/install-chromium.sh);
#   2. the monitoring configuration (scripts/check-alerts.sh): the
#      Prometheus configs, the alert rules and their unit tests (promtool:
#      the one on PATH, else Debian's, installed into .tools/), the Grafana
#      dashboard;
#   3. the deployment: the Kubernetes overlays validated offline
#      (scripts/k8s-validate.sh: needs kubectl or kustomize), and the
#      Compose stack brought up for real from locally built images
#      (scripts/compose-test.sh: needs Docker with a running daemon).
# Where a tool is missing, the tests that need it are skipped and named,
# at the time and again under the summary; in CI (CI=true) a skip is a
# failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The release binaries of the Compose test, wherever cargo puts them.
RELEASE_DIR="${RELEASE_DIR:-$(scripts/target-dir.sh)/release}"
export RELEASE_DIR

scripts/install-nats-server.sh
scripts/install-faketime.sh
scripts/install-chromium.sh
cargo build --workspace --bins

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=1
scripts/check-alerts.sh 2>&1 | tee -a "$log" || status=1

skipped=()
# Skips the tests $1 (their script's name, then what they test) because
# $2, or fails them in CI.
skip() {
    if [[ "${CI:-}" == "true" ]]; then
        echo "FAIL: $1: $2, and CI must run every test" >&2
        echo "${1%%:*}: 0 passed, 1 failed" >>"$log"
        status=1
    else
        echo "SKIPPED: $1: $2" >&2
        skipped+=("$1 ($2)")
    fi
}

if command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1; then
    scripts/k8s-validate.sh 2>&1 | tee -a "$log" || status=1
else
    skip "k8s-validate: the Kubernetes overlays" "no kubectl or kustomize on PATH"
fi
if ! command -v docker >/dev/null 2>&1; then
    skip "compose-test: the Compose stack" "no docker on PATH"
elif ! docker info >/dev/null 2>&1; then
    skip "compose-test: the Compose stack" "docker is there, but its daemon does not answer"
else
    cargo build --release --bins
    scripts/compose-test.sh 2>&1 | tee -a "$log" || status=1
fi

summary="$(awk '
    /^test result:/ { passed += $4; failed += $6 }
    /^(check-alerts|k8s-validate|compose-test|deployment): [0-9]+ passed, [0-9]+ failed$/ { passed += $2; failed += $4 }
    END { printf "%d passed, %d failed", passed, failed }' "$log")"
echo
echo "tests: ${summary}"
for what in ${skipped[@]+"${skipped[@]}"}; do
    echo "  skipped: ${what}"
done
exit "$status"
