#!/usr/bin/env bash
# Checks the monitoring configuration, offline, with promtool (the one on
# PATH, else Debian's: scripts/install-promtool.sh) and python3:
#
#   1. deploy/prometheus/prometheus.yml (Compose) passes `promtool check
#      config`, its rule files included, and docker-compose.yml mounts each
#      file where the config expects it inside the container;
#   2. deploy/prometheus/prometheus-k8s.yml: Debian's promtool is built
#      without the Kubernetes service discovery, so its block is checked as
#      text (role pod, the overlays' namespaces), and a copy with that block
#      replaced by static targets carrying the labels the pod role gives
#      (the deploy/k8s pods, and pods it must drop) passes `promtool check
#      config`; `promtool check service-discovery` on it must give each
#      service pod the job, `service` label, address and path that
#      alerts.yml and the dashboard rely on;
#   3. deploy/prometheus/alerts.yml passes `promtool check rules`; every
#      alert has `for`, a severity, a summary and a description, and is
#      documented in docs/observability.md; it names only metrics
#      that exist;
#   4. deploy/prometheus/alerts.test.yml passes `promtool test rules`, and
#      fails for each deliberate break of alerts.yml listed below;
#   5. the Grafana dashboard: valid JSON on the provisioned data source, a
#      grid without overlaps, every query valid PromQL (`promtool check
#      rules` on them as recording rules) naming only metrics that exist,
#      and the panels operators need.
#
# One line per check, then `check-alerts: N passed, M failed`; exits 1 if
# any failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
prom="deploy/prometheus"

passed=0
failed=0
say() { printf '[check-alerts] %s\n' "$*" >&2; }
ok() { passed=$((passed + 1)); say "ok: $*"; }
bad() { failed=$((failed + 1)); say "FAIL: $*"; }
finish() {
    echo "check-alerts: $passed passed, $failed failed"
    exit $((failed > 0))
}
# Counts the `ok: ...` and `FAIL: ...` lines of a checker, passes the rest.
tally() {
    local line
    while IFS= read -r line; do
        case "$line" in
            "ok: "*) ok "${line#ok: }" ;;
            "FAIL: "*) bad "${line#FAIL: }" ;;
            *) say "   $line" ;;
        esac
    done
}

if ! promtool="$(scripts/install-promtool.sh)"; then
    bad "no promtool on PATH, and none could be installed (scripts/install-promtool.sh)"
    finish
fi
say "$promtool: $("$promtool" --version 2>&1 | head -n 1)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
py="$tmp/checks.py"
# Runs a check of checks.py below and counts its lines; a crash is a failure.
check_py() {
    local out rc=0
    out="$(python3 "$py" "$@" 2>&1)" || rc=$?
    tally <<<"$out"
    [[ "$rc" == 0 ]] || bad "checks.py $1 crashed (exit $rc)"
}
cat >"$py" <<'PYTHON'
"""The checks of check-alerts.sh that are not promtool's: `python3 checks.py MODE ...`.
Prints `ok: ...` or `FAIL: ...` per check (other lines are details)."""
import json, os, re, subprocess, sys

# Every metric a query may name: docs/contract.md section 6; beyond the
# contract, the orchestrator's step timeouts, the streams present and how full, the steps
# abandoned, the store's atomic batches and the clock offset; the process
# collector's; and `up`.
CONTRACT = {
    "jetsaga_messages_handled_total": "counter",
    "jetsaga_message_handle_duration_seconds": "histogram",
    "jetsaga_dead_letters_total": "counter",
    "jetsaga_sagas_started_total": "counter",
    "jetsaga_sagas_completed_total": "counter",
    "jetsaga_saga_duration_seconds": "histogram",
    "jetsaga_sagas_in_flight": "gauge",
    "jetsaga_circuit_breaker_state": "gauge",
    "jetsaga_sagas_stuck": "gauge",
    "jetsaga_saga_operator_actions_total": "counter",
}
BEYOND_CONTRACT = {"jetsaga_saga_step_timeouts_total": "counter",
                   "jetsaga_stream_present": "gauge",
                   "jetsaga_stream_bytes": "gauge",
                   "jetsaga_stream_messages": "gauge",
                   "jetsaga_stream_limit_bytes": "gauge",
                   "jetsaga_saga_steps_abandoned_total": "counter",
                   "jetsaga_store_batch_messages": "histogram",
                   "jetsaga_store_batch_duration_seconds": "histogram",
                   "jetsaga_store_batches_total": "counter",
                   "jetsaga_clock_offset_seconds": "gauge"}
PROCESS = {"process_cpu_seconds_total", "process_open_fds", "process_max_fds",
           "process_virtual_memory_bytes", "process_resident_memory_bytes",
           "process_start_time_seconds", "process_threads"}
SERVICES = ["order-service", "inventory-service", "payment-service", "saga-orchestrator"]


def known_series():
    names = set(PROCESS) | {"up"}
    for name, kind in {**CONTRACT, **BEYOND_CONTRACT}.items():
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


KEYWORDS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "group", "by", "without", "on", "ignoring",
            "group_left", "group_right", "and", "or", "unless", "offset", "bool",
            "atan2", "inf", "nan"}


def metric_names(expr):
    """The metric names a PromQL expression selects."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"'(?:[^'\\]|\\.)*'", "''", e)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()", e):
        if m.group(1).lower() not in KEYWORDS:
            names.add(m.group(1))
    return names


def grouping(expr):
    return {l.strip() for m in re.finditer(r"\bby\s*\(([^)]*)\)", expr) for l in m.group(1).split(",")}


def contract(path):
    """Section 6 of docs/contract.md against CONTRACT above."""
    if not os.path.exists(path):
        print(f"FAIL: no {path}: the metric list cannot be compared with the contract")
        return
    text = open(path).read()
    section = text[text.index("## 6."):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    found = {m.group(1): m.group(2) for m in re.finditer(r"^\| `(\w+)` \| (\w+)", section, re.M)}
    expected = dict(CONTRACT)
    if found == expected:
        print(f"ok: the metric list is docs/contract.md section 6's ({len(found)} metrics, their kinds)")
    else:
        print(f"FAIL: docs/contract.md section 6 has {sorted(found.items())}, check-alerts.sh knows {sorted(expected.items())}")


# --- alerts.yml, as text (no YAML library needed) -----------------------------------

def alert_blocks(text):
    parts = re.split(r"^(\s*)- alert: *(\S+)\s*$", text, flags=re.M)
    for i in range(1, len(parts), 3):
        yield parts[i + 1], parts[i + 2]


def block_expr(block):
    lines = block.split("\n")
    for n, line in enumerate(lines):
        m = re.match(r"^(\s*)expr: *(.*)$", line)
        if not m:
            continue
        if m.group(2).strip() not in ("|", "|-", ">", ">-"):
            return m.group(2).strip()
        indent, body = len(m.group(1)), []
        for more in lines[n + 1:]:
            if more.strip() and len(more) - len(more.lstrip()) <= indent:
                break
            body.append(more.strip())
        return " ".join(body).strip()
    return ""


def lint_alerts(path, doc):
    text = open(path).read()
    documented = open(doc).read() if os.path.exists(doc) else ""
    known = known_series()
    alerts = list(alert_blocks(text))
    if not alerts:
        print(f"FAIL: no alerts in {path}")
    names = [name for name, _ in alerts]
    if len(set(names)) != len(names):
        print(f"FAIL: alert names repeat: {names}")
    for name, block in alerts:
        problems = []
        if not re.search(r"^\s+for: *\d+[smh]\s*$", block, re.M):
            problems.append("no `for:`")
        if not re.search(r"^\s+severity: *(warning|critical)\s*$", block, re.M):
            problems.append("no severity (warning or critical)")
        for key in ("summary", "description"):
            if not re.search(rf"^\s+{key}: *\S", block, re.M):
                problems.append(f"no {key}")
        expr = block_expr(block)
        unknown = metric_names(expr) - known
        if not expr:
            problems.append("no expr")
        elif unknown:
            problems.append(f"unknown metrics {sorted(unknown)}")
        if f"`{name}`" not in documented:
            problems.append(f"not documented in {doc}")
        if problems:
            print(f"FAIL: {name}: " + "; ".join(problems))
        else:
            print(f"ok: {name}: for, severity, summary, description, documented, known metrics {sorted(metric_names(expr))}")
    # The services JetsagaServiceDown looks for are the services scraped.
    down = dict(alerts).get("JetsagaServiceDown", "")
    watched = sorted(set(re.findall(r'service="([\w-]+)"\} == 1', down)))
    if watched == sorted(SERVICES):
        print(f"ok: JetsagaServiceDown watches every service: {', '.join(watched)}")
    else:
        print(f"FAIL: JetsagaServiceDown watches {watched}, not {sorted(SERVICES)}")


# --- Compose: the config files are where Prometheus looks ------------------------------

def compose_mounts(compose, config):
    text = open(compose).read()
    m = re.search(r"^  prometheus:\n((?:    .*\n|\s*\n)+)", text, re.M)
    if not m:
        print(f"FAIL: no prometheus service in {compose}")
        return
    mounts = dict((dst, src) for src, dst in re.findall(r"^\s+- (\./[^:\s]+):(/[^:\s]+)(?::ro)?\s*$", m.group(1), re.M))
    want = {"/etc/prometheus/prometheus.yml": "./" + config}
    rules = re.search(r"^rule_files:\n((?:\s+- .*\n)+)", open(config).read(), re.M)
    for entry in re.findall(r"- *(\S+)", rules.group(1)) if rules else []:
        if entry.startswith("/"):
            print(f"FAIL: {config}: rule file {entry} is absolute: relative paths resolve both here and in the container")
            continue
        want[os.path.normpath("/etc/prometheus/" + entry)] = "./" + os.path.normpath(os.path.join(os.path.dirname(config), entry))
    if not rules:
        print(f"FAIL: {config} has no rule_files")
    for dst, src in want.items():
        if mounts.get(dst) != src:
            print(f"FAIL: {compose}: prometheus should mount {src} on {dst} (mounts: {mounts})")
        elif not os.path.isfile(src):
            print(f"FAIL: {src} does not exist")
        else:
            print(f"ok: {compose}: prometheus mounts {src} on {dst}")


# --- Kubernetes: the scrape config against the pods of deploy/k8s ---------------------

def k8s_pods():
    """(service, port, path) of each Deployment in deploy/k8s/base/services."""
    base = "deploy/k8s/base"
    kustomization = open(f"{base}/kustomization.yaml").read()
    if not re.search(r"app\.kubernetes\.io/part-of: *jetsaga", kustomization) or "includeTemplates: true" not in kustomization:
        print("FAIL: deploy/k8s/base no longer labels the pods app.kubernetes.io/part-of=jetsaga: update prometheus-k8s.yml")
    pods = []
    for name in sorted(os.listdir(f"{base}/services")):
        text = open(f"{base}/services/{name}").read()
        service = re.search(r"app\.kubernetes\.io/name: *(\S+)", text).group(1)
        ann = dict(re.findall(r'prometheus\.io/(\w+): *"?([^"\s]+)"?', text))
        port = re.search(r"containerPort: *(\d+)", text).group(1)
        pods.append((service, ann, port))
    return pods


def overlay_namespaces():
    out = set()
    for overlay in sorted(os.listdir("deploy/k8s/overlays")):
        m = re.search(r"^namespace: *(\S+)", open(f"deploy/k8s/overlays/{overlay}/kustomization.yaml").read(), re.M)
        if m:
            out.add(m.group(1))
    return out


def k8s_static(config, out):
    """Checks the SD block as text; writes the copy with static targets; writes the expected targets."""
    text = open(config).read()
    start, end = text.find("    kubernetes_sd_configs:"), text.find("    relabel_configs:")
    if start < 0 or end < start:
        print(f"FAIL: {config}: no kubernetes_sd_configs block before relabel_configs")
        sys.exit(0)
    block = text[start:end]
    roles = re.findall(r"role: *(\w+)", block)
    flow = re.findall(r"names: *\[([^\]]*)\]", block)
    names = set(flow[0].replace(" ", "").split(",")) if flow else None
    if roles != ["pod"]:
        print(f"FAIL: {config}: role {roles}, expected one `role: pod`")
    elif "names:" in block and not flow:
        print(f"FAIL: {config}: write the namespaces as a list on one line, names: [a, b]")
    elif names is not None and not names <= overlay_namespaces():
        print(f"FAIL: {config}: namespaces {sorted(names)}, but the overlays use {sorted(overlay_namespaces())}")
    else:
        print(f"ok: {config}: kubernetes_sd_configs role pod, namespaces {sorted(names) if names else 'all'}")
    ns = sorted(names)[0] if names else "jetsaga"
    targets, expected = [], {}

    def pod(name, address, meta):
        targets.append({"targets": [address], "labels": {"__meta_kubernetes_pod_name": name, **meta}})

    for i, (service, ann, port) in enumerate(k8s_pods()):
        meta = {f"__meta_kubernetes_pod_annotation_prometheus_io_{k}": v for k, v in ann.items()}
        meta.update({
            "__meta_kubernetes_pod_label_app_kubernetes_io_name": service,
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "jetsaga",
            "__meta_kubernetes_pod_phase": "Running",
            "__meta_kubernetes_namespace": ns,
        })
        ip, ip6 = f"10.1.0.{i + 10}", f"fd00::{i + 10}"
        pod(f"{service}-0", f"{ip}:{port}", {**meta, "__meta_kubernetes_pod_ip": ip})
        pod(f"{service}-6", f"[{ip6}]:{port}", {**meta, "__meta_kubernetes_pod_ip": ip6})
        want_port = ann.get("port", "")
        want_path = ann.get("path", "/metrics")
        for p, addr in ((f"{service}-0", f"{ip}:{want_port}"), (f"{service}-6", f"[{ip6}]:{want_port}")):
            expected[p] = {"job": "jetsaga", "service": service, "namespace": ns, "pod": p,
                           "instance": p, "__address__": addr, "__metrics_path__": want_path}
        # Pods the job must not scrape.
        pod(f"{service}-pending", f"10.2.0.{i + 10}:{port}", {**meta, "__meta_kubernetes_pod_phase": "Pending", "__meta_kubernetes_pod_ip": f"10.2.0.{i + 10}"})
    pod("nats-0", "10.3.0.1:4222", {"__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "jetsaga",
                                    "__meta_kubernetes_pod_label_app_kubernetes_io_name": "nats",
                                    "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_ip": "10.3.0.1"})
    pod("other-app-0", "10.3.0.2:8080", {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
                                         "__meta_kubernetes_pod_annotation_prometheus_io_port": "8080",
                                         "__meta_kubernetes_pod_label_app_kubernetes_io_name": "other-app",
                                         "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_ip": "10.3.0.2"})
    static = "    static_configs: " + json.dumps(targets) + "\n"
    open(out, "w").write(text[:start] + static + text[end:])
    json.dump(expected, open(out + ".expected.json", "w"))


def k8s_compare(discovered, expected):
    got = {}
    for t in json.load(open(discovered)):
        labels = t.get("labels") or {}
        if labels:
            pod = t["discoveredLabels"]["__meta_kubernetes_pod_name"]
            got[pod] = {k: v for k, v in labels.items() if k in ("job", "service", "namespace", "pod", "instance", "__address__", "__metrics_path__")}
    want = json.load(open(expected))
    for pod in sorted(set(got) | set(want)):
        if pod not in want:
            print(f"FAIL: prometheus-k8s.yml scrapes {pod}, which it must drop")
        elif pod not in got:
            print(f"FAIL: prometheus-k8s.yml drops {pod}, which it must scrape as {want[pod]}")
        elif got[pod] != want[pod]:
            print(f"FAIL: prometheus-k8s.yml gives {pod} {got[pod]}, expected {want[pod]}")
        else:
            print(f"ok: prometheus-k8s.yml scrapes {pod} as service={got[pod]['service']} at {got[pod]['__address__']}{got[pod]['__metrics_path__']}")
    if len(want) and set(got) == set(want):
        print("ok: prometheus-k8s.yml drops pending pods, pods without the scrape annotation, and other applications' pods")


# --- the Grafana dashboard ----------------------------------------------------------

PANEL_TYPES = {"stat", "timeseries", "state-timeline", "bargauge", "gauge", "table", "text", "row",
               "heatmap", "piechart", "status-history", "barchart", "histogram"}


def dashboard(path, datasources, provisioning, compose, rules_out):
    try:
        d = json.load(open(path))
    except (OSError, ValueError) as e:
        print(f"FAIL: {path} is not valid JSON: {e}")
        return
    print(f"ok: {path} is valid JSON ({len(d.get('panels', []))} panels)")
    problems = []
    if not d.get("uid") or not d.get("title") or not isinstance(d.get("schemaVersion"), int):
        problems.append("uid, title and schemaVersion are needed")
    ds = open(datasources).read()
    uid = re.search(r"^\s*uid: *(\S+)", ds, re.M).group(1)
    ds_type = re.search(r"^\s*type: *(\S+)", ds, re.M).group(1)
    panels = d.get("panels", [])
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids):
        problems.append(f"panel ids repeat: {ids}")
    cells = {}
    for p in panels:
        where = f"panel {p.get('id')} ({p.get('title')})"
        if p.get("type") not in PANEL_TYPES or not p.get("title"):
            problems.append(f"{where}: type {p.get('type')!r} or title missing")
        g = p.get("gridPos", {})
        if not all(isinstance(g.get(k), int) for k in "xywh") or g["x"] < 0 or g["w"] < 1 or g["h"] < 1 or g["x"] + g["w"] > 24:
            problems.append(f"{where}: gridPos {g} is not within 24 columns")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{where} overlaps panel {cells[(x, y)]}")
                    break
                cells[(x, y)] = p.get("id")
            else:
                continue
            break
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(set(refs)) != len(refs) or None in refs:
            problems.append(f"{where}: refIds missing or repeated: {refs}")
        for holder in [p] + p.get("targets", []):
            if holder.get("datasource") != {"type": ds_type, "uid": uid}:
                problems.append(f"{where}: data source {holder.get('datasource')}, provisioned is {{type: {ds_type}, uid: {uid}}}")
                break
    if problems:
        for problem in problems:
            print(f"FAIL: {problem}")
    else:
        print(f"ok: {path}: unique ids, a 24-column grid without overlaps, every query on the provisioned data source (uid {uid})")

    # Grafana finds it where Compose puts it.
    prov = open(provisioning).read()
    folder = re.search(r"^\s*path: *(\S+)", prov, re.M).group(1)
    comp = open(compose).read()
    mount = f"./{os.path.dirname(path)}:{folder}"
    home = re.search(r"GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH: *(\S+)", comp)
    if mount in comp and home and home.group(1) == f"{folder}/{os.path.basename(path)}":
        print(f"ok: Grafana provisions {folder} (Compose mounts ./{os.path.dirname(path)} there), home dashboard {home.group(1)}")
    else:
        print(f"FAIL: {compose} should mount ./{os.path.dirname(path)} on {folder} (provisioning) and make {folder}/{os.path.basename(path)} the home dashboard")

    # Every query: known metrics only, and valid PromQL (as recording rules for promtool).
    known = known_series()
    rules, unknown = [], []
    queries = [(p, t) for p in panels for t in p.get("targets", [])]
    for p, t in queries:
        expr = t.get("expr", "")
        names = metric_names(expr)
        if not expr or not names or names - known:
            unknown.append(f"panel {p['id']} {t.get('refId')}: {expr!r} names {sorted(names - known) or 'no metric'}")
        concrete = expr.replace("$__range", "15m").replace("$__rate_interval", "1m").replace("$__interval", "15s")
        if "$" in concrete:
            unknown.append(f"panel {p['id']} {t.get('refId')}: unknown variable in {expr!r}")
        if "histogram_quantile" in expr and ("_bucket" not in expr or "le" not in grouping(expr)):
            unknown.append(f"panel {p['id']} {t.get('refId')}: histogram_quantile needs _bucket series summed by (le, ...)")
        rules.append({"record": f"dashboard:panel_{p['id']}_{t.get('refId')}", "expr": concrete})
    json.dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(rules_out, "w"), indent=1)
    if unknown:
        for u in unknown:
            print(f"FAIL: {u}")
    else:
        print(f"ok: the dashboard's {len(queries)} queries name only metrics of the contract, those beyond it (step timeouts, streams, abandoned steps, batches, clock offset), process_* and up")

    # The panels operators need.
    def panels_with(pred):
        return [p for p in panels if pred(p, [t.get("expr", "") for t in p.get("targets", [])])]

    def quantiles(exprs, metric):
        return {m.group(1) for e in exprs for m in re.finditer(r"histogram_quantile\(\s*([0-9.]+)\s*,", e) if metric + "_bucket" in e}

    def rate_by(exprs, metric, labels):
        return any(metric in e and re.search(r"\b(rate|increase)\(", e) and grouping(e) & labels for e in exprs)

    needs = {
        "saga funnel (started, confirmed, cancelled)": lambda p, es: any("jetsaga_sagas_started_total" in e for e in es)
            and all(any("jetsaga_sagas_completed_total" in e and (f'outcome="{o}"' in e or "outcome" in grouping(e)) for e in es) for o in ("confirmed", "cancelled")),
        "saga latency p50, p90, p99 (histogram_quantile of jetsaga_saga_duration_seconds)":
            lambda p, es: {"0.5", "0.9", "0.99"} <= quantiles(es, "jetsaga_saga_duration_seconds"),
        "message handling latency p50, p90, p99 (histogram_quantile of jetsaga_message_handle_duration_seconds)":
            lambda p, es: {"0.5", "0.9", "0.99"} <= quantiles(es, "jetsaga_message_handle_duration_seconds"),
        "throughput per service (rate of jetsaga_messages_handled_total by service)":
            lambda p, es: rate_by(es, "jetsaga_messages_handled_total", {"service"}),
        "throughput per consumer (rate of jetsaga_messages_handled_total by consumer)":
            lambda p, es: rate_by(es, "jetsaga_messages_handled_total", {"consumer"}),
        "dead letters": lambda p, es: any("jetsaga_dead_letters_total" in e for e in es),
        "circuit breaker state, 0/1/2 shown as closed/half-open/open": lambda p, es: any("jetsaga_circuit_breaker_state" in e for e in es)
            and {"0": "closed", "1": "half-open", "2": "open"}.items() <= {k: v.get("text") for m in p.get("fieldConfig", {}).get("defaults", {}).get("mappings", []) for k, v in m.get("options", {}).items()}.items(),
        "sagas in flight": lambda p, es: any("jetsaga_sagas_in_flight" in e for e in es),
        "step timeouts by step": lambda p, es: rate_by(es, "jetsaga_saga_step_timeouts_total", {"step"}),
        "atomic batches: messages per batch, by stream": lambda p, es: any("jetsaga_store_batch_messages_sum" in e and "stream" in grouping(e) for e in es),
        "resident memory per service": lambda p, es: any("process_resident_memory_bytes" in e and "service" in grouping(e) for e in es),
        "each process's clock offset from the NATS server": lambda p, es: any("jetsaga_clock_offset_seconds" in e and "instance" in grouping(e) for e in es),
        "the stuck sagas": lambda p, es: any("jetsaga_sagas_stuck" in e for e in es),
        "each stream's storage against its limit": lambda p, es: any("jetsaga_stream_bytes" in e and "stream" in grouping(e) for e in es) and any("jetsaga_stream_limit_bytes" in e for e in es),
    }
    for need, pred in needs.items():
        found = panels_with(pred)
        if found:
            print(f"ok: dashboard shows {need}: " + ", ".join(repr(p["title"]) for p in found))
        else:
            print(f"FAIL: dashboard has no panel for {need}")


# --- alerts.yml broken on purpose ----------------------------------------------------------

def mutate(alerts, tests, workdir, promtool, mutations):
    """Each break of alerts.yml must make alerts.test.yml fail. For speed, a
    break of an alert runs only the scenarios that test that alert."""
    source = open(alerts).read()
    header, *scenarios = re.split(r"^(?=  - interval:)", open(tests).read(), flags=re.M)
    for line in open(mutations):
        if not line.strip() or line.startswith("#"):
            continue
        what, old, new = (s.strip().replace("\\n", "\n") for s in line.split("|||"))
        alert = what.split()[0]
        mine = [sc for sc in scenarios if re.search(rf"alertname: *{alert}\s*$", sc, re.M)]
        if source.count(old) != 1 or not mine:
            print(f"FAIL: break {what!r}: {old!r} is not in alerts.yml exactly once, or no test of {alert}: update the list in check-alerts.sh")
            continue
        open(os.path.join(workdir, "alerts.yml"), "w").write(source.replace(old, new))
        test = os.path.join(workdir, "alerts.test.yml")
        open(test, "w").write(header + "".join(mine))
        run = subprocess.run([promtool, "test", "rules", test], capture_output=True, text=True)
        if run.returncode != 0:
            print(f"ok: the tests catch {what}")
        else:
            print(f"FAIL: the tests pass although {what} ({old.strip()!r} -> {new.strip()!r})")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"contract": contract, "lint-alerts": lint_alerts, "compose-mounts": compose_mounts,
     "k8s-static": k8s_static, "k8s-compare": k8s_compare, "dashboard": dashboard,
     "mutate": mutate}[mode](*args)
PYTHON

# Deliberate breaks of alerts.yml: `what ||| text ||| replacement` (\n is a
# newline). Each must make alerts.test.yml fail; one that no longer applies
# (alerts.yml changed) fails too, so the list is kept up to date.
cat >"$tmp/mutations" <<'EOF'
JetsagaServiceDown not seeing a vanished service ||| absent(up{job="jetsaga", service="saga-orchestrator"} == 1) ||| absent(up{job="jetsaga", service="orchestrator"} == 1)
JetsagaServiceDown firing on one replica down ||| label_replace(absent(up{job="jetsaga", service="order-service"} == 1) ||| label_replace(absent(up{job="jetsaga", service="order-service"} == 0)
JetsagaTargetDown watching other jobs ||| expr: up{job="jetsaga"} == 0 ||| expr: up == 0
JetsagaTargetDown without its 2 minutes ||| == 0\n        for: 2m ||| == 0\n        for: 1m
JetsagaSagasStuck firing on none stuck ||| max(jetsaga_sagas_stuck{job="jetsaga"}) >= 1 ||| max(jetsaga_sagas_stuck{job="jetsaga"}) >= 0
JetsagaSagasStuck watching other jobs ||| max(jetsaga_sagas_stuck{job="jetsaga"}) ||| max(jetsaga_sagas_stuck)
JetsagaSagasStuck without its 10 minutes ||| >= 1\n        for: 10m ||| >= 1\n        for: 5m
JetsagaStreamNearlyFull threshold 0.8 -> 0.9 ||| limit_bytes{job="jetsaga"}) > 0.8 ||| limit_bytes{job="jetsaga"}) > 0.9
JetsagaStreamNearlyFull summing the replicas' reports ||| max by (stream) (jetsaga_stream_bytes{job="jetsaga"}) ||| sum by (stream) (jetsaga_stream_bytes{job="jetsaga"})
JetsagaSagasStalled threshold 5 -> 6 ||| sum(increase(jetsaga_sagas_started_total[10m])) >= 5 ||| sum(increase(jetsaga_sagas_started_total[10m])) >= 6
JetsagaSagasStalled threshold 5 -> 4 ||| sum(increase(jetsaga_sagas_started_total[10m])) >= 5 ||| sum(increase(jetsaga_sagas_started_total[10m])) >= 4
JetsagaSagasStalled blind before the first completion ||| [10m])) or vector(0)) == 0 ||| [10m]))) == 0
JetsagaSagasFallingBehind ratio 0.5 -> 0.3 ||| [15m])) < 0.5 ||| [15m])) < 0.3
JetsagaSagasFallingBehind ratio < -> <= ||| [15m])) < 0.5 ||| [15m])) <= 0.5
JetsagaSagasFallingBehind low-traffic guard 30 -> 10 ||| [15m])) >= 30 ||| [15m])) >= 10
JetsagaSagaFailureRatioHigh threshold 0.2 -> 0.35 ||| [10m])) > 0.2 ||| [10m])) > 0.35
JetsagaSagaFailureRatioHigh threshold > -> >= ||| [10m])) > 0.2 ||| [10m])) >= 0.2
JetsagaSagaFailureRatioHigh low-traffic guard 20 -> 10 ||| completed_total[10m])) >= 20 ||| completed_total[10m])) >= 10
JetsagaSagaFailureRatioHigh low-traffic guard >= -> > ||| completed_total[10m])) >= 20 ||| completed_total[10m])) > 20
JetsagaSagaStepTimeouts threshold 5 -> 6 ||| increase(jetsaga_saga_step_timeouts_total[10m])\n          ) >= 5 ||| increase(jetsaga_saga_step_timeouts_total[10m])\n          ) >= 6
JetsagaSagaStepTimeouts threshold 5 -> 4 ||| increase(jetsaga_saga_step_timeouts_total[10m])\n          ) >= 5 ||| increase(jetsaga_saga_step_timeouts_total[10m])\n          ) >= 4
JetsagaSagaStepTimeouts alerting again after a restart of Prometheus ||| and on() count(up{job="jetsaga"} offset 10m)\n            )\n            or increase(jetsaga_saga_step_timeouts_total ||| )\n            or increase(jetsaga_saga_step_timeouts_total
JetsagaSagaLatencyHigh threshold 5s -> 10s ||| [10m]))) > 5 ||| [10m]))) > 10
JetsagaSagaLatencyHigh threshold 5s -> 3s ||| [10m]))) > 5 ||| [10m]))) > 3
JetsagaSagaLatencyHigh counting cancelled sagas ||| rate(jetsaga_saga_duration_seconds_bucket{outcome="confirmed"}[10m]) ||| rate(jetsaga_saga_duration_seconds_bucket[10m])
JetsagaSagaLatencyHigh low-traffic guard 0.05/s -> 0.01/s ||| [10m])) > 0.05 ||| [10m])) > 0.01
JetsagaDeadLetters missing a counter's first dead letter ||| (jetsaga_dead_letters_total unless jetsaga_dead_letters_total offset 10m) ||| (jetsaga_dead_letters_total unless jetsaga_dead_letters_total)
JetsagaDeadLetters threshold > 0 -> > 1 ||| increase(jetsaga_dead_letters_total[10m])\n          ) > 0 ||| increase(jetsaga_dead_letters_total[10m])\n          ) > 1
JetsagaDeadLetters alerting again after a restart of Prometheus ||| and on() count(up{job="jetsaga"} offset 10m)\n            )\n            or increase(jetsaga_dead_letters_total ||| )\n            or increase(jetsaga_dead_letters_total
JetsagaDeadLetters one alert per replica ||| sum by (service, consumer) ||| sum by (service, consumer, instance)
JetsagaSagaStepsAbandoned missing a counter's first ||| (jetsaga_saga_steps_abandoned_total unless jetsaga_saga_steps_abandoned_total offset 10m) ||| (jetsaga_saga_steps_abandoned_total unless jetsaga_saga_steps_abandoned_total)
JetsagaSagaStepsAbandoned alerting again after a restart of Prometheus ||| and on() count(up{job="jetsaga"} offset 10m)\n            )\n            or increase(jetsaga_saga_steps_abandoned_total ||| )\n            or increase(jetsaga_saga_steps_abandoned_total
JetsagaStreamMissing watching other jobs ||| min by (stream) (jetsaga_stream_present{job="jetsaga"}) ||| min by (stream) (jetsaga_stream_present)
JetsagaStreamMissing without its minute ||| == 0\n        for: 1m\n        labels:\n          severity: critical\n        annotations:\n          summary: "Stream ||| == 0\n        for: 0m\n        labels:\n          severity: critical\n        annotations:\n          summary: "Stream
JetsagaStreamMissing one alert per service ||| min by (stream) ||| min by (stream, service)
JetsagaCircuitBreakerOpen firing on half-open ||| [1m])) == 2 ||| [1m])) >= 1
JetsagaCircuitBreakerOpen losing a flapping breaker ||| max by (name) (max_over_time(jetsaga_circuit_breaker_state[1m])) ||| max by (name) (jetsaga_circuit_breaker_state)
JetsagaCircuitBreakerOpen firing on one short opening ||| == 2\n        for: 2m ||| == 2\n        for: 1m
JetsagaClockSkew losing the abs() ||| and abs(jetsaga_clock_offset_seconds{job="jetsaga"}) > 2 ||| and jetsaga_clock_offset_seconds{job="jetsaga"} > 2
JetsagaClockSkew reporting the offset without its sign ||| expr: |\n          jetsaga_clock_offset_seconds{job="jetsaga"}\n          and abs( ||| expr: |\n          abs(
JetsagaClockSkew threshold 2s -> 1s ||| {job="jetsaga"}) > 2 ||| {job="jetsaga"}) > 1
JetsagaClockSkew threshold 2s -> 3s ||| {job="jetsaga"}) > 2 ||| {job="jetsaga"}) > 3
JetsagaClockSkew without its 10 minutes ||| > 2\n        for: 10m ||| > 2\n        for: 0m
JetsagaClockSkew 10 minutes -> 9 ||| > 2\n        for: 10m ||| > 2\n        for: 9m
JetsagaClockSkew watching other jobs ||| jetsaga_clock_offset_seconds{job="jetsaga"}\n          and abs(jetsaga_clock_offset_seconds{job="jetsaga"}) ||| jetsaga_clock_offset_seconds\n          and abs(jetsaga_clock_offset_seconds)
EOF

# --- 1. Compose ------------------------------------------------------------------------
if out="$("$promtool" check config "$prom/prometheus.yml" 2>&1)"; then
    ok "promtool check config $prom/prometheus.yml ($(grep -c 'SUCCESS' <<<"$out") parts: the config and its rule files)"
else
    echo "$out" >&2
    bad "promtool check config $prom/prometheus.yml"
fi
check_py compose-mounts docker-compose.yml "$prom/prometheus.yml"

# --- 2. Kubernetes ---------------------------------------------------------------------
mkdir -p "$tmp/k8s"
cp "$prom/alerts.yml" "$tmp/k8s/"
check_py k8s-static "$prom/prometheus-k8s.yml" "$tmp/k8s/prometheus.yml"
if [[ -f "$tmp/k8s/prometheus.yml" ]]; then
    if out="$("$promtool" check config "$tmp/k8s/prometheus.yml" 2>&1)"; then
        ok "promtool check config $prom/prometheus-k8s.yml (with static targets for the pod role), its rule files included"
    else
        echo "$out" >&2
        bad "promtool check config $prom/prometheus-k8s.yml (with static targets for the pod role)"
    fi
    # Static targets are there at once; promtool waits (busy) until the timeout.
    if "$promtool" check service-discovery --timeout=2s "$tmp/k8s/prometheus.yml" jetsaga >"$tmp/k8s/discovered.json" 2>"$tmp/k8s/sd.log"; then
        check_py k8s-compare "$tmp/k8s/discovered.json" "$tmp/k8s/prometheus.yml.expected.json"
    else
        cat "$tmp/k8s/sd.log" >&2
        bad "promtool check service-discovery on $prom/prometheus-k8s.yml"
    fi
fi

# --- 3. the rules --------------------------------------------------------------------------
if out="$("$promtool" check rules "$prom/alerts.yml" 2>&1)"; then
    ok "promtool check rules $prom/alerts.yml: $(grep -o '[0-9]* rules found' <<<"$out")"
else
    echo "$out" >&2
    bad "promtool check rules $prom/alerts.yml"
fi
check_py lint-alerts "$prom/alerts.yml" docs/observability.md
check_py contract "$root/docs/contract.md"

# --- 4. their tests --------------------------------------------------------------------------
if out="$("$promtool" test rules "$prom/alerts.test.yml" 2>&1)"; then
    ok "promtool test rules $prom/alerts.test.yml: $(grep -c 'eval_time:' "$prom/alerts.test.yml") evaluations of $(grep -c '^  - interval:' "$prom/alerts.test.yml") scenarios"
else
    echo "$out" >&2
    bad "promtool test rules $prom/alerts.test.yml"
fi
mkdir -p "$tmp/mutants"
check_py mutate "$prom/alerts.yml" "$prom/alerts.test.yml" "$tmp/mutants" "$promtool" "$tmp/mutations"

# --- 5. the dashboard --------------------------------------------------------------------------
check_py dashboard deploy/grafana/dashboards/jetsaga.json \
    deploy/grafana/provisioning/datasources/prometheus.yml \
    deploy/grafana/provisioning/dashboards/jetsaga.yml \
    docker-compose.yml "$tmp/dashboard-rules.json"
if [[ -s "$tmp/dashboard-rules.json" ]]; then
    if out="$("$promtool" check rules "$tmp/dashboard-rules.json" 2>&1)"; then
        ok "every dashboard query is valid PromQL (promtool check rules: $(grep -o '[0-9]* rules found' <<<"$out"))"
    else
        echo "$out" >&2
        bad "dashboard queries that promtool rejects"
    fi
fi

finish
