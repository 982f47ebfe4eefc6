#!/usr/bin/env bash
# Validates every overlay under deploy/k8s/overlays, offline (no cluster):
#
#   1. `kubectl kustomize` (or `kustomize build`) renders it;
#   2. every object passes strict schema validation (kubernetes-validate,
#      from PyPI, for each Kubernetes version in K8S_VERSIONS), and a known
#      bad object is rejected, so strictness is proven, not assumed;
#   3. the rendered nats.conf passes `nats-server -t` (the project's pinned
#      nats-server, scripts/install-nats-server.sh);
#   4. the policy checks of scripts/k8s-policy.py (security context,
#      probes, resources, grace periods, Service, ConfigMap, PDB, HPA,
#      scrape annotations, NATS and replica expectations per overlay), and
#      its self-test (each of its breakages must be caught);
#   5. the tool manifests (deploy/k8s/tools): schema and container security.
#
# Tools go into .tools/ (a venv for kubernetes-validate). Renders are kept
# in target/k8s/<overlay>.yaml. Exits non-zero on the first failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
versions="${K8S_VERSIONS:-1.29.0 1.33.0 1.37.0}"
validate_version="1.37.0"
venv="$root/.tools/deploy-venv"
out="$root/target/k8s"
passed=0

say() { printf '[k8s-validate] %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; echo "k8s-validate: $passed passed, 1 failed"; exit 1; }
ok() { passed=$((passed + 1)); say "ok: $*"; }

# --- tools ----------------------------------------------------------------------
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$validate_version"; then
    say "installing kubernetes-validate $validate_version into .tools/deploy-venv (PyPI)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$validate_version"
fi
"$root/scripts/install-nats-server.sh"
nats_server="$root/.tools/bin/nats-server"

if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    render() { kubectl kustomize "$1"; }
    renderer="kubectl kustomize ($(kubectl version --client 2>/dev/null | grep -i kustomize || echo kustomize))"
elif command -v kustomize >/dev/null 2>&1; then
    render() { kustomize build "$1"; }
    renderer="kustomize build ($(kustomize version 2>/dev/null))"
else
    fail "neither kubectl (1.21 or newer) nor kustomize is installed: one is needed to render the overlays"
fi
say "renderer: $renderer"

mkdir -p "$out"
overlays=("$root"/deploy/k8s/overlays/*/)
[[ ${#overlays[@]} -gt 0 ]] || fail "no overlays under deploy/k8s/overlays"

# --- strict validation rejects what it should ------------------------------------
cat >"$out/strictness-probe.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: probe
  namespace: probe
  unknownField: this must be rejected
data: {}
EOF
if "$venv/bin/kubernetes-validate" --strict --quiet "$out/strictness-probe.yaml" >/dev/null 2>&1; then
    fail "kubernetes-validate --strict accepted an object with an unknown field"
fi
ok "strict schema validation rejects an unknown field"

# --- each overlay ------------------------------------------------------------------
for dir in "${overlays[@]}"; do
    overlay="$(basename "$dir")"
    rendered="$out/$overlay.yaml"

    render "$dir" >"$rendered" || fail "$overlay: does not render"
    ok "$overlay: renders, $(grep -c '^kind:' "$rendered") objects ($(grep '^kind:' "$rendered" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $3; sep = ", " }'))"

    for v in $versions; do
        if ! report="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered" 2>&1)"; then
            echo "$report" >&2
            fail "$overlay: strict schema validation against Kubernetes $v"
        fi
        ok "$overlay: every object valid (strict) against Kubernetes $v"
    done

    "$venv/bin/python" - "$rendered" "$out/$overlay.nats.conf" <<'EOF' || fail "$overlay: no nats.conf in the render"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
conf = next(d["data"]["nats.conf"] for d in docs if d["kind"] == "ConfigMap" and "nats.conf" in d.get("data", {}))
open(sys.argv[2], "w").write(conf)
EOF
    SERVER_NAME=nats-0 "$nats_server" -t -c "$out/$overlay.nats.conf" >/dev/null 2>&1 \
        || { SERVER_NAME=nats-0 "$nats_server" -t -c "$out/$overlay.nats.conf" || true; fail "$overlay: nats-server rejects nats.conf"; }
    ok "$overlay: nats-server $("$nats_server" --version | awk '{ print $2 }') accepts its nats.conf"

    "$venv/bin/python" scripts/k8s-policy.py --overlay "$overlay" "$rendered" >&2 || fail "$overlay: policy"
    ok "$overlay: policy"
    "$venv/bin/python" scripts/k8s-policy.py --overlay "$overlay" --self-test "$rendered" >"$out/$overlay.self-test.log" \
        || { cat "$out/$overlay.self-test.log" >&2; fail "$overlay: policy self-test"; }
    ok "$(tail -1 "$out/$overlay.self-test.log")"
done

# --- the tool manifests (applied by hand, into an overlay's namespace) --------------
for manifest in "$root"/deploy/k8s/tools/*.yaml; do
    [[ -e "$manifest" ]] || continue
    name="tools/$(basename "$manifest")"
    for v in $versions; do
        "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$manifest" >&2 \
            || fail "$name: strict schema validation against Kubernetes $v"
    done
    "$venv/bin/python" scripts/k8s-policy.py --security-only "$manifest" >&2 || fail "$name: policy"
    ok "$name: valid (strict, Kubernetes ${versions// /, }), non-root, read-only, no privileges"
done

say "all overlays valid; renders in target/k8s/"
echo "k8s-validate: $passed passed, 0 failed"
