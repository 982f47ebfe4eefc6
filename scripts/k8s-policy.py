#!/usr/bin/env python3
"""Policy checks for a rendered jetsaga overlay (`kubectl kustomize` output).

    k8s-policy.py --overlay prod rendered.yaml        check, exit 1 on a violation
    k8s-policy.py --overlay prod --self-test rendered.yaml
        break the rendered objects in the ways below, one at a time, and fail
        unless the checks catch every one (and pass the unbroken render)
    k8s-policy.py --security-only deploy/k8s/tools/nats-box.yaml
        only the per-container checks (tool pods have no probes)

What is checked (issue 6, item 4), for every container of every workload:
resources requests and limits (cpu, memory); runs as non-root; read-only
root filesystem; no privilege escalation; every capability dropped, none
added, not privileged; a liveness and a readiness probe; the RuntimeDefault
seccomp profile; no host namespaces.

For each of the four services (docs/contract.md section 1), a Deployment whose
container probes /healthz (liveness) and /readyz (readiness) on the port of
HTTP_ADDR; terminationGracePeriodSeconds above SHUTDOWN_GRACE_SECONDS (from
its ConfigMaps, default 25); a Service for that port; its ConfigMaps present;
a PodDisruptionBudget and a HorizontalPodAutoscaler (or KEDA ScaledObject)
for it; Prometheus scrape annotations on that port (or a ServiceMonitor).

For NATS: JetStream's store_dir on a persistent volume claim template, a
grace period above the lame-duck time. Per overlay: dev has one NATS node
and STREAM_REPLICAS=1; prod a 3-node cluster routed over the headless
Service, STREAM_REPLICAS=3, two or more pods of each service (replicas and
HPA minimum), pinned image tags.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from dataclasses import dataclass, field

import yaml

SERVICES = {
    "order-service": 8081,
    "inventory-service": 8082,
    "payment-service": 8083,
    "saga-orchestrator": 8084,
}
DEFAULT_SHUTDOWN_GRACE = 25
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    checks: int = 0

    def check(self, ok: bool, where: str, what: str) -> None:
        self.checks += 1
        if not ok:
            self.violations.append(f"{where}: {what}")


# --- reading the render -------------------------------------------------------


def index(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_spec(workload: dict) -> dict:
    return workload["spec"] if workload["kind"] == "Pod" else workload["spec"]["template"]["spec"]


def pod_labels(workload: dict) -> dict:
    meta = workload["metadata"] if workload["kind"] == "Pod" else workload["spec"]["template"]["metadata"]
    return meta.get("labels", {})


def selects(selector: dict | None, labels: dict) -> bool:
    """A label selector (matchLabels, or a Service's plain map) matches labels."""
    if not selector or selector.get("matchExpressions"):
        return False  # not used here; a selector with expressions counts as no match
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def config_maps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def container_env(container: dict, cms: dict[str, dict]) -> dict[str, str]:
    """The environment a container gets from envFrom ConfigMaps and env values."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref and ref["name"] in cms:
            env.update(cms[ref["name"]])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "configMapKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["configMapKeyRef"]
            if ref["key"] in cms.get(ref["name"], {}):
                env[var["name"]] = cms[ref["name"]][ref["key"]]
    return env


def port_number(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return None


def seconds(duration: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", duration)
    if not m:
        return 0.0
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def nats_conf_value(conf: str, key: str) -> str | None:
    m = re.search(rf"^\s*{key}\s*[:=]?\s*\"?([^\"\n#]+?)\"?\s*$", conf, re.M)
    return m.group(1).strip() if m else None


# --- the checks ---------------------------------------------------------------


def check_container_security(r: Report, where: str, pod: dict, c: dict) -> None:
    pod_sc = pod.get("securityContext", {})
    sc = c.get("securityContext", {})
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            r.check(resource in res.get(kind, {}), where, f"no resources.{kind}.{resource}")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    r.check(non_root is True, where, "runAsNonRoot is not true")
    r.check(user != 0, where, "runs as user 0")
    r.check(sc.get("readOnlyRootFilesystem") is True, where, "readOnlyRootFilesystem is not true")
    r.check(sc.get("allowPrivilegeEscalation") is False, where, "allowPrivilegeEscalation is not false")
    caps = sc.get("capabilities", {})
    r.check("ALL" in caps.get("drop", []), where, "capabilities.drop does not include ALL")
    r.check(not caps.get("add"), where, f"capabilities added: {caps.get('add')}")
    r.check(sc.get("privileged") is not True, where, "privileged")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
    r.check(seccomp in ("RuntimeDefault", "Localhost"), where, f"seccompProfile is {seccomp}, not RuntimeDefault")


def check_workloads(r: Report, docs: list[dict], probes: bool = True) -> None:
    for w in docs:
        if w["kind"] not in WORKLOAD_KINDS:
            continue
        pod = pod_spec(w)
        name = f"{w['kind']}/{w['metadata']['name']}"
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            r.check(pod.get(flag) is not True, name, f"{flag} is true")
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{name} container {c['name']}"
            check_container_security(r, where, pod, c)
            if probes and c in pod["containers"]:
                r.check("livenessProbe" in c, where, "no livenessProbe")
                r.check("readinessProbe" in c, where, "no readinessProbe")


def check_service(r: Report, docs: list[dict], name: str, port: int) -> None:
    objs = index(docs)
    cms = config_maps(docs)
    d = objs.get(("Deployment", name))
    r.check(d is not None, name, "no Deployment")
    if d is None:
        return
    where = f"Deployment/{name}"
    pod = pod_spec(d)
    labels = pod_labels(d)
    r.check(len(pod["containers"]) >= 1, where, "no container")
    c = pod["containers"][0]
    env = container_env(c, cms)

    # configuration: every referenced ConfigMap exists, HTTP_ADDR's port is the port
    refs = [s["configMapRef"]["name"] for s in c.get("envFrom", []) if "configMapRef" in s]
    r.check(bool(refs), where, "takes no ConfigMap (envFrom)")
    for ref in refs:
        r.check(ref in cms, where, f"ConfigMap {ref} is not in the render")
    http_port = int(env.get("HTTP_ADDR", f"0.0.0.0:{port}").rsplit(":", 1)[1])
    r.check(http_port == port, where, f"HTTP_ADDR port {http_port}, the contract says {port}")
    r.check(any(p["containerPort"] == http_port for p in c.get("ports", [])), where,
            f"container does not declare port {http_port}")

    # probes: /healthz liveness, /readyz readiness, on the HTTP port
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        r.check(get.get("path") == path, where, f"{probe} is not GET {path}")
        r.check(port_number(c, get.get("port")) == http_port, where, f"{probe} is not on port {http_port}")

    # shutdown: the kubelet waits longer than the service's own grace
    grace = int(env.get("SHUTDOWN_GRACE_SECONDS", DEFAULT_SHUTDOWN_GRACE))
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    r.check(tgps > grace, where, f"terminationGracePeriodSeconds {tgps} is not above SHUTDOWN_GRACE_SECONDS {grace}")

    # a Service for the HTTP port
    services = [s for s in docs if s["kind"] == "Service" and selects(s["spec"].get("selector"), labels)]
    r.check(any(port_number(c, p.get("targetPort", p["port"])) == http_port for s in services for p in s["spec"]["ports"]),
            where, f"no Service routes to port {http_port}")

    # disruption budget and autoscaling
    r.check(any(p["kind"] == "PodDisruptionBudget" and selects(p["spec"].get("selector"), labels) for p in docs),
            where, "no PodDisruptionBudget selects its pods")
    hpas = [h for h in docs if h["kind"] == "HorizontalPodAutoscaler"
            and h["spec"]["scaleTargetRef"]["kind"] == "Deployment" and h["spec"]["scaleTargetRef"]["name"] == name]
    keda = [k for k in docs if k["kind"] == "ScaledObject" and k["spec"]["scaleTargetRef"]["name"] == name]
    r.check(bool(hpas or keda), where, "no HorizontalPodAutoscaler (or KEDA ScaledObject) scales it")

    # metrics: scrape annotations on the HTTP port, or a ServiceMonitor
    ann = d["spec"]["template"]["metadata"].get("annotations", {})
    annotated = ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(http_port) \
        and ann.get("prometheus.io/path", "/metrics") == "/metrics"
    monitored = any(m["kind"] == "ServiceMonitor" and any(selects(m["spec"].get("selector"), s["metadata"].get("labels", {}))
                                                          for s in services) for m in docs)
    r.check(annotated or monitored, where, "no Prometheus scrape annotations for /metrics on the HTTP port, nor a ServiceMonitor")


def nats_conf(docs: list[dict], sts: dict) -> str:
    cms = config_maps(docs)
    for v in pod_spec(sts).get("volumes", []):
        if "configMap" in v:
            data = cms.get(v["configMap"]["name"], {})
            if "nats.conf" in data:
                return data["nats.conf"]
    return ""


def check_nats(r: Report, docs: list[dict], overlay: str) -> None:
    sts = index(docs).get(("StatefulSet", "nats"))
    r.check(sts is not None, "nats", "no StatefulSet nats")
    if sts is None:
        return
    where = "StatefulSet/nats"
    conf = nats_conf(docs, sts)
    r.check(bool(conf), where, "no nats.conf ConfigMap mounted")
    store = nats_conf_value(conf, "store_dir") or ""
    c = pod_spec(sts)["containers"][0]
    claims = {t["metadata"]["name"] for t in sts["spec"].get("volumeClaimTemplates", [])}
    on_claim = [m for m in c.get("volumeMounts", []) if m["name"] in claims
                and (store + "/").startswith(m["mountPath"].rstrip("/") + "/")]
    r.check(bool(store) and bool(on_claim), where, f"JetStream store_dir {store!r} is not on a persistent volume claim")
    lame = seconds(nats_conf_value(conf, "lame_duck_duration") or "120s") + \
        seconds(nats_conf_value(conf, "lame_duck_grace_period") or "10s")
    tgps = pod_spec(sts).get("terminationGracePeriodSeconds", 30)
    r.check(tgps > lame, where, f"terminationGracePeriodSeconds {tgps} is not above the lame-duck time {lame:.0f}s")

    replicas = sts["spec"].get("replicas", 1)
    cluster = re.search(r"^\s*cluster\s*\{", conf, re.M) is not None
    common = config_maps(docs)
    stream_replicas = {name: data.get("STREAM_REPLICAS") for name, data in common.items() if "STREAM_REPLICAS" in data}
    want = 3 if overlay == "prod" else 1
    r.check(replicas == want, where, f"{replicas} NATS nodes, the {overlay} overlay wants {want}")
    r.check(bool(stream_replicas) and all(v == str(want) for v in stream_replicas.values()),
            overlay, f"STREAM_REPLICAS is {stream_replicas or 'unset'}, the {overlay} overlay wants {want}")
    if overlay == "prod":
        r.check(cluster, where, "nats.conf has no cluster block")
        headless = sts["spec"]["serviceName"]
        for i in range(replicas):
            r.check(f"nats-{i}.{headless}:6222" in conf, where, f"no cluster route to nats-{i}.{headless}")
        r.check(any(s["kind"] == "Service" and s["metadata"]["name"] == headless and s["spec"].get("clusterIP") == "None"
                    for s in docs), where, f"no headless Service {headless}")
        r.check(any(p["kind"] == "PodDisruptionBudget" and selects(p["spec"].get("selector"), pod_labels(sts)) for p in docs),
                where, "no PodDisruptionBudget for the NATS nodes")
    else:
        r.check(not cluster, where, "a single node with a cluster block")


def check_overlay(r: Report, docs: list[dict], overlay: str) -> None:
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] not in ("Namespace",)}
    r.check(len(namespaces) == 1 and None not in namespaces, overlay, f"objects spread over namespaces {namespaces}")
    if overlay != "prod":
        return
    objs = index(docs)
    for name in SERVICES:
        d = objs.get(("Deployment", name))
        if d is None:
            continue
        r.check(d["spec"].get("replicas", 1) >= 2, f"Deployment/{name}", "fewer than 2 replicas in prod")
        for h in docs:
            if h["kind"] == "HorizontalPodAutoscaler" and h["spec"]["scaleTargetRef"]["name"] == name:
                r.check(h["spec"].get("minReplicas", 1) >= 2, f"HorizontalPodAutoscaler/{h['metadata']['name']}",
                        "minReplicas below 2 in prod")
    for w in docs:
        if w["kind"] in WORKLOAD_KINDS:
            for c in pod_spec(w)["containers"]:
                image = c["image"]
                tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
                r.check((tag and tag != "latest") or "@sha256:" in image,
                        f"{w['kind']}/{w['metadata']['name']}", f"image {image} is not pinned in prod")


def check(docs: list[dict], overlay: str) -> Report:
    r = Report()
    check_workloads(r, docs)
    for name, port in SERVICES.items():
        check_service(r, docs, name, port)
    check_nats(r, docs, overlay)
    check_overlay(r, docs, overlay)
    return r


# --- self-test: every breakage must be caught -----------------------------------


def find(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def container(docs, name):
    return pod_spec(find(docs, "Deployment", name))["containers"][0]


def common_cm(docs):
    return next(d for d in docs if d["kind"] == "ConfigMap" and "SHUTDOWN_GRACE_SECONDS" in d.get("data", {}))


def drop(docs, kind, name):
    docs[:] = [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


BREAKAGES = {
    "writable root filesystem": lambda docs: container(docs, "order-service")["securityContext"].update(readOnlyRootFilesystem=False),
    "privilege escalation": lambda docs: container(docs, "payment-service")["securityContext"].update(allowPrivilegeEscalation=True),
    "capabilities kept": lambda docs: container(docs, "inventory-service")["securityContext"].update(capabilities={"drop": []}),
    "a capability added": lambda docs: container(docs, "inventory-service")["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
    "runs as root": lambda docs: (pod_spec(find(docs, "Deployment", "saga-orchestrator"))["securityContext"].update(runAsUser=0),
                                  container(docs, "saga-orchestrator")["securityContext"].pop("runAsNonRoot")),
    "no limits": lambda docs: container(docs, "order-service")["resources"].pop("limits"),
    "no memory request": lambda docs: container(docs, "order-service")["resources"]["requests"].pop("memory"),
    "readiness on /healthz": lambda docs: container(docs, "payment-service")["readinessProbe"]["httpGet"].update(path="/healthz"),
    "no liveness probe": lambda docs: container(docs, "inventory-service").pop("livenessProbe"),
    "grace period too short": lambda docs: pod_spec(find(docs, "Deployment", "order-service")).update(terminationGracePeriodSeconds=25),
    "shutdown grace raised": lambda docs: common_cm(docs)["data"].update(SHUTDOWN_GRACE_SECONDS="40"),
    "no PodDisruptionBudget": lambda docs: drop(docs, "PodDisruptionBudget", "payment-service"),
    "no HorizontalPodAutoscaler": lambda docs: drop(docs, "HorizontalPodAutoscaler", "inventory-service"),
    "no Service": lambda docs: drop(docs, "Service", "saga-orchestrator"),
    "no scrape annotations": lambda docs: find(docs, "Deployment", "order-service")["spec"]["template"]["metadata"].pop("annotations"),
    "a ConfigMap missing": lambda docs: docs.remove(next(d for d in docs if d["kind"] == "ConfigMap"
                                                          and d["metadata"]["name"].startswith("saga-orchestrator"))),
    "a service missing": lambda docs: drop(docs, "Deployment", "payment-service"),
    "JetStream off the volume": lambda docs: pod_spec(find(docs, "StatefulSet", "nats"))["containers"][0]["volumeMounts"].__setitem__(
        1, {"name": "pid", "mountPath": "/data"}),
    "wrong NATS size": lambda docs: find(docs, "StatefulSet", "nats")["spec"].update(replicas=2),
    "wrong STREAM_REPLICAS": lambda docs: common_cm(docs)["data"].update(STREAM_REPLICAS="2"),
    "NATS privileged": lambda docs: pod_spec(find(docs, "StatefulSet", "nats"))["containers"][0]["securityContext"].update(privileged=True),
}
PROD_BREAKAGES = {
    "one replica in prod": lambda docs: find(docs, "Deployment", "order-service")["spec"].update(replicas=1),
    "HPA minimum 1 in prod": lambda docs: find(docs, "HorizontalPodAutoscaler", "saga-orchestrator")["spec"].update(minReplicas=1),
    "latest tag in prod": lambda docs: container(docs, "payment-service").update(image="jetsaga/payment-service:latest"),
}


def self_test(docs: list[dict], overlay: str) -> int:
    clean = check(docs, overlay)
    failures = [f"the unbroken render has violations: {clean.violations}"] if clean.violations else []
    breakages = dict(BREAKAGES, **(PROD_BREAKAGES if overlay == "prod" else {}))
    for name, breaker in breakages.items():
        broken = copy.deepcopy(docs)
        breaker(broken)
        found = check(broken, overlay).violations
        if not found:
            failures.append(f"not caught: {name}")
        else:
            print(f"  caught {name}: {found[0]}")
    for f in failures:
        print(f"FAIL {overlay} self-test: {f}", file=sys.stderr)
    print(f"{overlay}: policy self-test, {len(breakages) - len(failures)} of {len(breakages)} breakages caught")
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--overlay", choices=["dev", "prod"])
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--security-only", action="store_true",
                        help="only the per-container security and resources checks (for tool manifests)")
    parser.add_argument("rendered")
    args = parser.parse_args()
    with open(args.rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    if args.security_only:
        r = Report()
        check_workloads(r, docs, probes=False)
        for v in r.violations:
            print(f"VIOLATION {args.rendered}: {v}", file=sys.stderr)
        print(f"{args.rendered}: security, {r.checks} checks, {len(r.violations)} violations")
        return 1 if r.violations else 0
    if not args.overlay:
        parser.error("--overlay is required")
    if args.self_test:
        return self_test(docs, args.overlay)
    r = check(docs, args.overlay)
    for v in r.violations:
        print(f"VIOLATION {args.overlay}: {v}", file=sys.stderr)
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    containers = sum(len(pod_spec(w)["containers"]) for w in workloads)
    print(f"{args.overlay}: policy, {len(docs)} objects, {len(workloads)} workloads, {containers} containers, "
          f"{r.checks} checks, {len(r.violations)} violations")
    return 1 if r.violations else 0


if __name__ == "__main__":
    sys.exit(main())
