#!/usr/bin/env bash
# Validates every overlay under deploy/k8s/overlays, offline (no cluster):
#
#   1. its NATS credentials (and, for prod, its TLS material) are generated
#      by scripts/auth-init.sh with the workspace's debug sagactl (`make
#      test` builds it first) into a copy of deploy/k8s: the overlays' own
#      auth/ folders are neither read nor written;
#   2. `kubectl kustomize` (or `kustomize build`) renders it;
#   3. every object passes strict schema validation (kubernetes-validate,
#      from PyPI, for each Kubernetes version in K8S_VERSIONS), and a known
#      bad object is rejected, so strictness is proven, not assumed;
#   4. the rendered nats.conf, with the auth.conf and TLS files the
#      StatefulSet projects beside it, passes `nats-server -t` (the
#      project's pinned nats-server, scripts/install-nats-server.sh); where
#      there is TLS (prod), openssl checks that the server certificate
#      chains to the CA, serves both ends of a route and names `nats` and
#      every route host, and that each identity's is a client certificate
#      of that same CA;
#   5. the policy checks of scripts/k8s-policy.py (security context,
#      probes, resources, grace periods, Service, ConfigMap, PDB, HPA,
#      scrape annotations, Secrets only as read-only files of the pod's own
#      identity, the provisioning Job, NATS's auth and TLS, the
#      NetworkPolicies path by path, per-overlay expectations, in prod the
#      NATS nodes on distinct machines and spread over zones), with the
#      tool pods of deploy/k8s/tools placed in the overlay; and its
#      self-test (each of its breakages must be caught);
#   6. the kustomize component deploy/k8s/components/durable (JetStream
#      fsyncs every write), added to a copy of the prod overlay: it
#      renders, passes strict schema validation, `nats-server -t` and the
#      policy checks as prod does, has `sync_interval: always` in
#      nats.conf's jetstream block, and nats.conf otherwise prod's own
#      (its file is a copy: they must not drift apart); its self-test;
#   7. the tool manifests: schema and container security.
#
# Tools go into .tools/ (a venv for kubernetes-validate). Renders are kept
# in target/k8s/<overlay>.yaml (and prod-durable.yaml), with the throwaway
# credentials made for the run. SAGACTL names another sagactl. Exits non-zero on the first failure.
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
command -v openssl >/dev/null 2>&1 || fail "openssl is needed to check the TLS material"
sagactl="${SAGACTL:-$("$root/scripts/target-dir.sh")/debug/sagactl}"
[[ -x "$sagactl" ]] || fail "$sagactl is missing: build it first (cargo build --bins; make test does), or set SAGACTL"
export SAGACTL="$sagactl"

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
tools=()
for manifest in "$root"/deploy/k8s/tools/*.yaml; do
    [[ -e "$manifest" ]] && tools+=(--tools "$manifest")
done

# The copy that is rendered, with credentials of its own.
tree="$out/tree"
rm -rf "$tree"
mkdir -p "$tree"
cp -R "$root/deploy/k8s/." "$tree/"
rm -rf "$tree"/overlays/*/auth

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
    auth="$tree/overlays/$overlay/auth"

    "$root/scripts/auth-init.sh" "$overlay" --out "$auth" >"$out/$overlay.auth-init.log" 2>&1 \
        || { cat "$out/$overlay.auth-init.log" >&2; fail "$overlay: no credentials (scripts/auth-init.sh $overlay)"; }
    ok "$overlay: $(find "$auth" -name '*.creds' | wc -l) credentials files$([[ -d "$auth/tls" ]] && echo " and TLS material") from sagactl auth init"

    render "$tree/overlays/$overlay" >"$rendered" || fail "$overlay: does not render"
    ok "$overlay: renders, $(grep -c '^kind:' "$rendered") objects ($(grep '^kind:' "$rendered" | sort | uniq -c | awk '{ printf "%s%s %s", sep, $1, $3; sep = ", " }'))"

    for v in $versions; do
        if ! report="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered" 2>&1)"; then
            echo "$report" >&2
            fail "$overlay: strict schema validation against Kubernetes $v"
        fi
        ok "$overlay: every object valid (strict) against Kubernetes $v"
    done

    # /etc/nats as the StatefulSet projects it, and each identity's Secret.
    etc="$out/$overlay.nats"
    rm -rf "$etc"
    "$venv/bin/python" scripts/k8s-policy.py --nats-files "$etc" "$rendered" >/dev/null \
        || fail "$overlay: no nats.conf (or its files) in the render"
    [[ -f "$etc/auth.conf" ]] || fail "$overlay: the NATS pod gets no auth.conf"
    SERVER_NAME=nats-0 "$nats_server" -t -c "$etc/nats.conf" >/dev/null 2>&1 \
        || { SERVER_NAME=nats-0 "$nats_server" -t -c "$etc/nats.conf" || true; fail "$overlay: nats-server rejects nats.conf with its auth.conf and TLS files"; }
    ok "$overlay: nats-server $("$nats_server" --version | awk '{ print $2 }') accepts its nats.conf with auth.conf$([[ -d "$etc/tls" ]] && echo " and the TLS files")"

    if [[ -d "$etc/tls" ]]; then
        ca="$etc/tls/ca.pem"
        for purpose in sslserver sslclient; do
            openssl verify -purpose "$purpose" -CAfile "$ca" "$etc/tls/server.pem" >/dev/null 2>&1 \
                || fail "$overlay: the server certificate is not valid for $purpose under the CA (a route needs both)"
        done
        hosts=(nats)
        while read -r host; do hosts+=("$host"); done < <(grep -oE 'nats://[^:/ ]+:6222' "$etc/nats.conf" | sed -E 's#^nats://##; s#:6222$##')
        for host in "${hosts[@]}"; do
            openssl x509 -in "$etc/tls/server.pem" -noout -checkhost "$host" | grep -q "does match" \
                || fail "$overlay: the server certificate does not name $host"
        done
        count=0
        for id_dir in "$etc"/identities/*/; do
            id="$(basename "$id_dir")"
            [[ -f "$id_dir/tls.pem" && -f "$id_dir/tls-key.pem" ]] || fail "$overlay: identity $id has no client certificate and key"
            openssl verify -purpose sslclient -CAfile "$ca" "$id_dir/tls.pem" >/dev/null 2>&1 \
                || fail "$overlay: $id's certificate is not a client certificate of the CA"
            cmp -s "$id_dir/ca.pem" "$ca" || fail "$overlay: $id trusts another CA than the server's"
            count=$((count + 1))
        done
        ok "$overlay: TLS: the server certificate names ${hosts[*]} and serves both ends of a route; $count client certificates of the same CA"
    fi

    "$venv/bin/python" scripts/k8s-policy.py --overlay "$overlay" ${tools[@]+"${tools[@]}"} "$rendered" >&2 \
        || fail "$overlay: policy"
    ok "$overlay: policy"
    "$venv/bin/python" scripts/k8s-policy.py --overlay "$overlay" ${tools[@]+"${tools[@]}"} --self-test "$rendered" \
        >"$out/$overlay.self-test.log" || { cat "$out/$overlay.self-test.log" >&2; fail "$overlay: policy self-test"; }
    ok "$(tail -1 "$out/$overlay.self-test.log")"
done

# --- the durable component, on prod, enabled as its note says ------------------------
# deploy/k8s/components/durable (sync_interval: always) is enabled by adding
# it to the prod overlay's `components:`; here in a copy of the overlay, with
# the copy's credentials. Its render must pass what prod passes, carry
# `sync_interval: always` in nats.conf's jetstream block, and have the
# nats.conf of prod's own render in everything else (the component's file is
# a copy of nats-cluster.conf: this catches the two drifting apart).
[[ -f "$tree/components/durable/kustomization.yaml" ]] || fail "deploy/k8s/components/durable is missing"
[[ -f "$out/prod.yaml" ]] || fail "durable: needs the prod overlay's render"
variant="$tree/overlays/prod-durable"
rendered="$out/prod-durable.yaml"
rm -rf "$variant"
cp -R "$tree/overlays/prod" "$variant"
"$venv/bin/python" - "$variant/kustomization.yaml" <<'EOF_PY' || fail "durable: cannot add the component to a copy of the prod overlay"
import sys, yaml
path = sys.argv[1]
with open(path) as f:
    k = yaml.safe_load(f)
components = k.setdefault("components", [])
if "../../components/durable" not in components:
    components.append("../../components/durable")
with open(path, "w") as f:
    yaml.safe_dump(k, f, sort_keys=False)
EOF_PY
render "$variant" >"$rendered" || fail "prod with the durable component: does not render"
ok "prod with the durable component: renders, $(grep -c '^kind:' "$rendered") objects"
for v in $versions; do
    if ! report="$("$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$rendered" 2>&1)"; then
        echo "$report" >&2
        fail "prod with the durable component: strict schema validation against Kubernetes $v"
    fi
done
ok "prod with the durable component: every object valid (strict) against Kubernetes ${versions// /, }"
etc="$out/prod-durable.nats"
rm -rf "$etc"
"$venv/bin/python" scripts/k8s-policy.py --nats-files "$etc" "$rendered" >/dev/null \
    || fail "prod with the durable component: no nats.conf (or its files) in the render"
SERVER_NAME=nats-0 "$nats_server" -t -c "$etc/nats.conf" >/dev/null 2>&1 \
    || { SERVER_NAME=nats-0 "$nats_server" -t -c "$etc/nats.conf" || true; fail "prod with the durable component: nats-server rejects its nats.conf"; }
ok "prod with the durable component: nats-server accepts its nats.conf"
durable=(--overlay prod --durable --reference "$out/prod.yaml" ${tools[@]+"${tools[@]}"})
"$venv/bin/python" scripts/k8s-policy.py "${durable[@]}" "$rendered" >&2 \
    || fail "prod with the durable component: policy"
ok "prod with the durable component: policy (sync_interval: always in the jetstream block, nats.conf otherwise prod's)"
"$venv/bin/python" scripts/k8s-policy.py "${durable[@]}" --self-test "$rendered" >"$out/prod-durable.self-test.log" \
    || { cat "$out/prod-durable.self-test.log" >&2; fail "prod with the durable component: policy self-test"; }
ok "$(tail -1 "$out/prod-durable.self-test.log")"

# --- the tool manifests (applied by hand, into an overlay's namespace) --------------
for manifest in "$root"/deploy/k8s/tools/*.yaml; do
    [[ -e "$manifest" ]] || continue
    name="tools/$(basename "$manifest")"
    for v in $versions; do
        "$venv/bin/kubernetes-validate" --strict --quiet -k "$v" "$manifest" >&2 \
            || fail "$name: strict schema validation against Kubernetes $v"
    done
    "$venv/bin/python" scripts/k8s-policy.py --security-only "$manifest" >&2 || fail "$name: policy"
    ok "$name: valid (strict, Kubernetes ${versions// /, }), non-root, read-only, no privileges, Secrets read-only"
done

say "all overlays valid; renders in target/k8s/"
echo "k8s-validate: $passed passed, 0 failed"
