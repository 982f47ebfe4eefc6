#!/usr/bin/env bash
# Prints cargo's target directory for this workspace, where `cargo build`
# puts the binaries: wherever CARGO_TARGET_DIR or a .cargo/config.toml sends
# them, as `cargo metadata` says; `target` under the root if it cannot say.
#   scripts/target-dir.sh            e.g. /home/me/.cache/cargo-target
# Honours CARGO (the cargo to run), like the Makefile.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if dir="$("${CARGO:-cargo}" metadata --format-version 1 --no-deps 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null)" \
    && [[ -n "$dir" ]]; then
    echo "$dir"
else
    # Relative to the root, as cargo run from it would take it.
    dir="${CARGO_TARGET_DIR:-target}"
    [[ "$dir" == /* ]] || dir="$root/$dir"
    echo "$dir"
fi
