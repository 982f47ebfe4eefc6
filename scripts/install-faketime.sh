#!/usr/bin/env bash
# Installs Debian's libfaketime into .tools/faketime (the package unpacked,
# not installed system-wide): the clock-skew test preloads it into a
# service to move its clock. Idempotent: does nothing when it is there.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dest="$root/.tools/faketime"

if find "$dest" -name 'libfaketime.so.1' 2>/dev/null | grep -q .; then
    exit 0
fi

echo "installing libfaketime into .tools/faketime (Debian: libfaketime)" >&2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download libfaketime >/dev/null 2>&1); then
    # The package lists may be missing on a fresh machine.
    apt-get update -qq
    (cd "$work" && apt-get download libfaketime)
fi
mkdir -p "$dest"
dpkg-deb -x "$work"/libfaketime_*.deb "$dest"
find "$dest" -name 'libfaketime.so.1'
