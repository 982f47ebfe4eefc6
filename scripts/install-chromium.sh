#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver, the real browser the
# console's browser test drives over WebDriver. They are system packages
# (chromium needs some sixty libraries of the distribution), so this is
# the one tool installed system-wide: as root, or through sudo.
# Idempotent: does nothing when both are there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-chromium: not root and no sudo: install chromium and chromium-driver (Debian) by hand" >&2
        exit 1
    fi
    as_root=(sudo)
fi
echo "installing chromium and chromium-driver (Debian packages)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
    # The package lists may be missing or stale on a fresh machine.
    "${as_root[@]}" apt-get update -qq
    "${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
fi
chromium --version
chromedriver --version
