#!/usr/bin/env bash
# Finds or installs promtool, and prints the path of the one to use (the
# only line on stdout; what it does goes to stderr):
#
#   1. a `promtool` on PATH, if it is at least PROMTOOL_MIN_VERSION;
#   2. else the one in .tools/bin, if it is;
#   3. else installs one into .tools/bin from Debian's package `prometheus`
#      (`apt-get download`, then only usr/bin/promtool out of the .deb:
#      nothing is installed system-wide and no service is started). Runs
#      `apt-get update` (as root) only when apt knows no `prometheus`
#      package yet.
#
# Debian bookworm's is 2.42: enough for `check config`, `check rules`,
# `test rules` and `check service-discovery`, but built without the
# Kubernetes service discovery (scripts/check-alerts.sh works around that).
set -euo pipefail

PROMTOOL_MIN_VERSION="${PROMTOOL_MIN_VERSION:-2.42.0}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin/promtool"

die() { echo "install-promtool: $*" >&2; exit 1; }

# `promtool, version 2.42.0+ds (branch: ...)` -> 2.42.0
version_of() { "$1" --version 2>/dev/null | sed -n 's/^promtool, version \([0-9][0-9.]*\).*/\1/p' | head -n 1; }
recent_enough() {
    [[ -n "$1" ]] && [[ "$(printf '%s\n%s\n' "$PROMTOOL_MIN_VERSION" "$1" | sort -V | head -n 1)" == "$PROMTOOL_MIN_VERSION" ]]
}

if on_path="$(command -v promtool 2>/dev/null)"; then
    if recent_enough "$(version_of "$on_path")"; then
        echo "$on_path"
        exit 0
    fi
    echo "install-promtool: $on_path is older than $PROMTOOL_MIN_VERSION: not used" >&2
fi
if [[ -x "$bin" ]] && recent_enough "$(version_of "$bin")"; then
    echo "$bin"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 \
    || die "needs apt-get and dpkg-deb (a Debian machine) to fetch Debian's package 'prometheus'"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# As root, apt would otherwise download as the user _apt, who cannot write here.
apt_opts=(-q)
[[ "$(id -u)" == 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)

download() { (cd "$tmp" && apt-get "${apt_opts[@]}" download prometheus) >"$tmp/apt.log" 2>&1; }

echo "installing promtool into .tools/bin (Debian package: prometheus)" >&2
if ! download; then
    if [[ "$(id -u)" != 0 ]]; then
        cat "$tmp/apt.log" >&2
        die "apt-get cannot download 'prometheus' and only root can run 'apt-get update': run it, then this again"
    fi
    echo "install-promtool: apt knows no 'prometheus' package yet: apt-get update" >&2
    apt-get -q update >"$tmp/update.log" 2>&1 || { cat "$tmp/update.log" >&2; die "apt-get update failed"; }
    download || { cat "$tmp/apt.log" >&2; die "apt-get download prometheus failed, even after apt-get update"; }
fi

deb="$(ls "$tmp"/prometheus_*.deb 2>/dev/null | head -n 1)"
[[ -n "$deb" ]] || die "apt-get download left no prometheus_*.deb"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./usr/bin/promtool \
    || die "$(basename "$deb") has no usr/bin/promtool"

version="$(version_of "$tmp/usr/bin/promtool")"
recent_enough "$version" \
    || die "$(basename "$deb") has promtool '${version:-unknown}', older than the $PROMTOOL_MIN_VERSION needed"
"$tmp/usr/bin/promtool" test rules --help >/dev/null 2>&1 || die "this promtool has no 'test rules'"

mkdir -p "$(dirname "$bin")"
install -m 0755 "$tmp/usr/bin/promtool" "$bin.new"
mv -f "$bin.new" "$bin"
echo "promtool $version ($(basename "$deb"))" >&2
echo "$bin"
