#!/usr/bin/env bash
# Generates the NATS credentials and TLS material of one deployment with
# `sagactl auth init` (docs/contract.md section 7), where that deployment
# reads it from (every one of these folders is git-ignored):
#
#   scripts/auth-init.sh compose   deploy/compose/auth, with TLS: the files
#                                  docker-compose.yml mounts as secrets
#   scripts/auth-init.sh dev       deploy/k8s/overlays/dev/auth: what the dev
#                                  overlay's secretGenerator reads
#   scripts/auth-init.sh prod      deploy/k8s/overlays/prod/auth, with TLS:
#                                  the prod overlay's
#
#   options: --out DIR (another folder; e.g. JETSAGA_AUTH_DIR for Compose)
#            --tls-host NAME (more names for the server certificate; repeat)
#
# Run it again at any time: sagactl keeps every key it finds (operator,
# accounts, users, CA, certificates) and signs the JWTs anew. To rotate one
# identity's key, delete its <identity>.creds and run it again; to give the
# server certificate other names, delete tls/server.pem and
# tls/server-key.pem and run it again. Then roll what uses them
# (docs/deployment.md, "Rotation").
#
# The server certificate also names the cluster's route hosts
# (nats-0.nats-headless, ... of the prod overlay and deploy/compose/cluster.yml),
# which mutual TLS on the routes checks.
#
# For Compose, the files the containers mount are made readable by the
# containers' user (65532, or nats's): Compose (file secrets) bind-mounts
# them as they are on the host, and cannot change their owner or mode. Their
# folders stay 0700, so on the host only their owner reaches them; the seeds
# in keys/ and the CA's key stay 0600 and are never mounted.
#
# sagactl is taken from $SAGACTL, else the workspace's build
# (release, then debug), else PATH, else the image jetsaga/sagactl
# (docker compose build provision), run as you with no network.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
route_hosts=(nats-0.nats-headless nats-1.nats-headless nats-2.nats-headless)

usage() { sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
say() { printf '[auth-init] %s\n' "$*" >&2; }

[[ $# -ge 1 ]] || usage
target="$1"
shift
case "$target" in
    compose) out="$root/deploy/compose/auth"; tls=1 ;;
    dev) out="$root/deploy/k8s/overlays/dev/auth"; tls=0 ;;
    prod) out="$root/deploy/k8s/overlays/prod/auth"; tls=1 ;;
    -h | --help) usage ;;
    *) say "unknown target '$target': compose, dev or prod"; exit 2 ;;
esac
hosts=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        --tls-host) hosts+=("$2"); shift 2 ;;
        *) say "unknown option '$1'"; exit 2 ;;
    esac
done

args=(auth init)
if [[ $tls == 1 ]]; then
    args+=(--tls)
    for host in "${route_hosts[@]}" ${hosts[@]+"${hosts[@]}"}; do
        args+=(--tls-host "$host")
    done
fi

# --- sagactl ------------------------------------------------------------------
find_sagactl() {
    if [[ -n "${SAGACTL:-}" ]]; then
        echo "$SAGACTL"
        return
    fi
    local dir
    dir="$("$root/scripts/target-dir.sh" 2>/dev/null || echo "$root/target")"
    for candidate in "$dir/release/sagactl" "$dir/debug/sagactl"; do
        if [[ -x "$candidate" ]]; then
            echo "$candidate"
            return
        fi
    done
    command -v sagactl || true
}

# `docker compose up` before this ran: Docker bind-mounts a missing file as
# an empty folder it creates in the file's place (as root).
if [[ -d "$out" ]] && stray="$(find "$out" -mindepth 1 -maxdepth 2 -type d \( -name '*.creds' -o -name '*.pem' -o -name '*.conf' \) | head -1)" \
    && [[ -n "$stray" ]]; then
    say "$stray is a folder: Compose was started before the material existed and Docker made folders in its place"
    say "remove $out (they may be root's: sudo rm -rf $out) and run this again"
    exit 1
fi

mkdir -p "$out"
chmod 0700 "$out"
out="$(cd "$out" && pwd)"
sagactl="$(find_sagactl)"
if [[ -n "$sagactl" ]]; then
    say "$sagactl ${args[*]} --out $out"
    "$sagactl" "${args[@]}" --out "$out" >&2
else
    image="jetsaga/sagactl:${JETSAGA_IMAGE_TAG:-latest}"
    docker image inspect "$image" >/dev/null 2>&1 || {
        say "no sagactl: build it (cargo build --bins), set SAGACTL, or build the image $image (docker compose build provision)"
        exit 1
    }
    say "$image ${args[*]} --out $out (in Docker, as $(id -u):$(id -g))"
    docker run --rm --network none --read-only --user "$(id -u):$(id -g)" \
        -v "$out:/out" "$image" "${args[@]}" --out /out >&2
fi

# --- what each deployment needs of the files ---------------------------------
[[ -f "$out/auth.conf" ]] || { say "sagactl wrote no $out/auth.conf"; exit 1; }
if [[ "$target" == compose ]]; then
    chmod 0700 "$out" "$out/tls" "$out/keys"
    for file in "$out"/auth.conf "$out"/*.creds "$out"/tls/*.pem; do
        case "$file" in
            */ca-key.pem) chmod 0600 "$file" ;;
            *) chmod 0644 "$file" ;;
        esac
    done
fi
say "done: $out ($(find "$out" -type f | wc -l) files)"
case "$target" in
    compose) say "next: docker compose up -d (or with JETSAGA_AUTH_DIR=$out)" ;;
    *) say "next: kubectl apply -k deploy/k8s/overlays/$target" ;;
esac
