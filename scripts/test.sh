#!/usr/bin/env bash
# The whole test suite, then one summary line:
#   1. every cargo test of the workspace, against real nats-servers (the
#      binaries are built first: the end-to-end tests also run them);
#   2. the monitoring configuration (scripts/check-alerts.sh): the
#      Prometheus configs, the alert rules and their unit tests (promtool,
#      installed from Debian's package), the Grafana dashboard;
#   3. the deployment: the Kubernetes overlays validated offline, and the
#      Compose stack brought up for real from locally built images.
# The deployment tests need Docker and kubectl; without them they are
# skipped with a warning, except in CI (CI=true), where that is a failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-nats-server.sh
cargo build --workspace --bins

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee -a "$log" || status=1
scripts/check-alerts.sh 2>&1 | tee -a "$log" || status=1

deployment_tools() {
    command -v docker >/dev/null && docker info >/dev/null 2>&1 \
        && command -v kubectl >/dev/null
}
if deployment_tools; then
    cargo build --release --bins
    scripts/k8s-validate.sh 2>&1 | tee -a "$log" || status=1
    scripts/compose-test.sh 2>&1 | tee -a "$log" || status=1
elif [[ "${CI:-}" == "true" ]]; then
    echo "deployment tests need docker (with a running daemon) and kubectl" >&2
    echo "deployment: 0 passed, 1 failed" >>"$log"
    status=1
else
    echo "WARNING: no docker daemon or kubectl here: deployment tests skipped" >&2
fi

summary="$(awk '
    /^test result:/ { passed += $4; failed += $6 }
    /^(check-alerts|k8s-validate|compose-test|deployment): [0-9]+ passed, [0-9]+ failed$/ { passed += $2; failed += $4 }
    END { printf "%d passed, %d failed", passed, failed }' "$log")"
echo
echo "tests: ${summary}"
exit "$status"
