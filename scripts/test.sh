#!/usr/bin/env bash
# Every test of the workspace against a real nats-server, then one summary
# line. The binaries are built first: the end-to-end tests also run them as
# processes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-nats-server.sh
cargo build --workspace --bins

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary="$(awk '/^test result:/ { passed += $4; failed += $6 } END { printf "%d passed, %d failed", passed, failed }' "$log")"
echo
echo "tests: ${summary}"
exit "$status"
