#!/usr/bin/env python3
"""Policy checks for a rendered jetsaga overlay (`kubectl kustomize` output).

    k8s-policy.py --overlay prod rendered.yaml        check, exit 1 on a violation
    k8s-policy.py --overlay prod --tools deploy/k8s/tools/nats-box.yaml rendered.yaml
        the same, with the tool pods placed in the overlay's namespace (their
        network paths and Secrets are checked against it)
    k8s-policy.py --overlay prod --self-test rendered.yaml
        break the rendered objects in the ways below, one at a time, and fail
        unless the checks catch every one (and pass the unbroken render)
    k8s-policy.py --security-only deploy/k8s/tools/nats-box.yaml
        only the per-container checks (tool pods have no probes)
    k8s-policy.py --nats-files DIR rendered.yaml
        write the files NATS reads (nats.conf, auth.conf, tls/) and each
        identity's Secret under DIR, for nats-server -t and openssl
    k8s-policy.py --overlay prod --durable --reference prod.yaml prod-durable.yaml
        the prod overlay with deploy/k8s/components/durable: also
        `sync_interval: always` in nats.conf's jetstream block, and
        nats.conf otherwise the same as prod.yaml's (with --self-test too)

What is checked, for every container of every workload: resources requests
and limits (cpu, memory); runs as non-root; read-only root filesystem; no
privilege escalation; every capability dropped, none added, not
privileged; the RuntimeDefault seccomp profile; no host namespaces or host
ports; no service account token; a liveness and a readiness probe (not for
a Job). Secrets reach containers only as read-only file mounts: no Secret
in the environment (secretKeyRef, envFrom secretRef), no credential
material (a NATS JWT or seed, a private key) in an environment value or a
ConfigMap, no user/password/token/nkey variables, every Secret volume
mounted read-only; no operator or account seed, nor the CA's key, in any
Secret. No NodePort or LoadBalancer Service. One exception: the console's
sign-in token, CONSOLE_OPERATOR_TOKEN, on the saga-console Deployment
only, from an optional secretKeyRef (without the Secret the console only
shows) to a Secret that holds no NATS credential.

For each of the four services (docs/contract.md section 1), a Deployment whose
container probes /healthz (liveness) and /readyz (readiness) on the port of
HTTP_ADDR; terminationGracePeriodSeconds above SHUTDOWN_GRACE_SECONDS (from
its ConfigMaps, default 25); a Service for that port; its ConfigMaps present;
a PodDisruptionBudget and a HorizontalPodAutoscaler (or KEDA ScaledObject)
for it; Prometheus scrape annotations on that port (or a ServiceMonitor).
Its NATS identity: NATS_CREDS is a path into a Secret mounted read-only,
holding the credentials of that service's own identity (the name in the
user JWT) and of no other; in prod NATS_TLS_CA, NATS_TLS_CERT and
NATS_TLS_KEY likewise. The console (saga-console, section 8) the same
way, on port 8085, as the `operator` identity, but neither budgeted nor
scaled: one pod, which no saga step waits on. A provisioning Job runs
`sagactl provision` as `admin`, the same way, with STREAM_STORE_BYTES the
NATS store's max_file_store.

For NATS: JetStream's store_dir on a persistent volume claim template, a
grace period above the lame-duck time; nats.conf includes auth.conf, which
comes from a Secret mounted read-only. Per overlay: dev has one NATS node
and STREAM_REPLICAS=1; prod a 3-node cluster routed over the headless
Service, STREAM_REPLICAS=3, two or more pods of each service (replicas and
HPA minimum), pinned image tags, TLS for clients (a client certificate
required) and mutual TLS on the routes (verify, and the certificate must
name a route host), every TLS file from a Secret; against power loss, the
NATS nodes on distinct machines (required anti-affinity on the hostname)
and spread over zones (a topology spread on topology.kubernetes.io/zone,
maxSkew 1, DoNotSchedule), each rule selecting the NATS pods.

The network: a default-deny NetworkPolicy (ingress and egress, every pod),
and, evaluated path by path over the policies, what must be open (each
service, the console, the provisioning Job and the tool pods to NATS 4222
and to DNS; NATS to NATS 6222 in prod; Prometheus, in the namespace
`monitoring` with app.kubernetes.io/name=prometheus, to each service's and
the console's HTTP port and to NATS 8222) and what must not (another pod of
the namespace, or any pod of another namespace, to NATS, to a service or to
the console; a service or the console to the routes port, to another
service or to the internet).
"""

from __future__ import annotations

import argparse
import base64
import copy
import ipaddress
import json
import posixpath
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
# The web console (docs/contract.md section 8): deployed like a service,
# but as the `operator` identity and as one pod, neither budgeted nor
# scaled (no saga step waits on it).
CONSOLE = "saga-console"
CONSOLE_PORT = 8085
CONSOLE_IDENTITY = "operator"
# Its sign-in token: the one variable a Secret may give, on the console
# only (the console takes it from the environment).
CONSOLE_TOKEN_VAR = "CONSOLE_OPERATOR_TOKEN"
DEFAULT_SHUTDOWN_GRACE = 25
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "Pod"}
# The identity the provisioning Job connects as (docs/contract.md section 7).
PROVISIONER = "admin"
# Variables that would carry an identity themselves rather than name a file.
INLINE_IDENTITY_VARS = {"NATS_USER", "NATS_PASSWORD", "NATS_TOKEN", "NATS_NKEY", "NATS_JWT", "NATS_SEED"}
TLS_VARS = ("NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY")
# Credential material: a NATS JWT or credentials file, an nkey seed (user,
# account, operator), a PEM private key.
CREDENTIAL = re.compile(r"BEGIN NATS USER JWT|BEGIN [A-Z ]*PRIVATE KEY|\bS[UAO][A-Z2-7]{56}\b"
                        r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.")
# What must never leave the machine that ran `sagactl auth init`: the
# operator's and the accounts' seeds.
SIGNING_SEED = re.compile(r"\bS[AO][A-Z2-7]{56}\b")


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


def secrets(docs: list[dict]) -> dict[str, dict[str, str]]:
    """Every Secret's files, decoded."""
    out = {}
    for d in docs:
        if d["kind"] != "Secret":
            continue
        data = {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (d.get("data") or {}).items()}
        data.update(d.get("stringData") or {})
        out[d["metadata"]["name"]] = data
    return out


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


def parse_nats_conf(conf: str) -> dict:
    """The blocks, keys and includes of a nats-server configuration, in the
    subset of its format that jetsaga's files use (one statement a line,
    `name { ... }` blocks, `key: value`, multi-line `[ ... ]` lists)."""
    root: dict = {"include": []}
    stack = [root]
    lines = iter(conf.splitlines())
    for raw in lines:
        line = re.sub(r"(#|//).*$", "", raw).strip()
        if not line:
            continue
        if line == "}":
            if len(stack) > 1:
                stack.pop()
            continue
        m = re.fullmatch(r"include\s+[\"']?([^\"'\s]+)[\"']?;?", line)
        if m:
            stack[-1].setdefault("include", []).append(m.group(1))
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*[:=]?\s*\{", line)
        if m:
            block: dict = {}
            stack[-1][m.group(1)] = block
            stack.append(block)
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*[:=]?\s*\[(.*)", line)
        if m:
            items = m.group(2)
            while "]" not in items:
                items += " " + re.sub(r"(#|//).*$", "", next(lines, "]"))
            stack[-1][m.group(1)] = [i.strip("\"' ") for i in re.split(r"[\s,]+", items.split("]")[0]) if i.strip()]
            continue
        m = re.fullmatch(r"([A-Za-z_][\w.-]*)\s*[:=]?\s*(.+?),?", line)
        if m:
            stack[-1][m.group(1)] = m.group(2).strip().strip("\"'")
    return root


def creds_identity(text: str) -> str | None:
    """The name in the user JWT of a NATS credentials file."""
    jwt = next((line.strip() for line in text.splitlines() if line.strip().startswith("eyJ")), None)
    if jwt is None or "BEGIN NATS USER JWT" not in text:
        return None
    try:
        claims = jwt.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))).get("name")
    except (IndexError, ValueError):
        return None


# --- files in a pod -------------------------------------------------------------


@dataclass
class FileSource:
    """Where a file a container reads comes from."""
    mount: dict
    kind: str  # "Secret", "ConfigMap", or the volume's type ("emptyDir", ...)
    name: str | None  # the Secret's or ConfigMap's name
    key: str | None  # its key, None when the object does not hold the file

    @property
    def read_only(self) -> bool:
        return self.mount.get("readOnly") is True


def _object_key(items: list | None, rel: str, data: dict | None) -> str | None:
    if items:
        return next((i["key"] for i in items if i["path"] == rel), None)
    return rel if data is not None and rel in data else None


def file_source(docs: list[dict], pod: dict, c: dict, path: str) -> FileSource | None:
    """What provides the file `path` in container `c`: the mount it falls in
    (the longest mountPath above it) and the volume's Secret or ConfigMap key."""
    path = posixpath.normpath(path)
    mounts = [m for m in c.get("volumeMounts", [])
              if path == m["mountPath"].rstrip("/") or path.startswith(m["mountPath"].rstrip("/") + "/")]
    if not mounts:
        return None
    mount = max(mounts, key=lambda m: len(m["mountPath"]))
    volume = next((v for v in pod.get("volumes", []) if v["name"] == mount["name"]), None)
    if volume is None:
        return None
    rel = path[len(mount["mountPath"].rstrip("/")) + 1:]
    if mount.get("subPath"):
        rel = posixpath.join(mount["subPath"], rel) if rel else mount["subPath"]
    sec, cms = secrets(docs), config_maps(docs)
    if "secret" in volume:
        name = volume["secret"].get("secretName")
        return FileSource(mount, "Secret", name, _object_key(volume["secret"].get("items"), rel, sec.get(name)))
    if "configMap" in volume:
        name = volume["configMap"].get("name")
        return FileSource(mount, "ConfigMap", name, _object_key(volume["configMap"].get("items"), rel, cms.get(name)))
    if "projected" in volume:
        for source in volume["projected"].get("sources", []):
            for kind, objects in (("secret", sec), ("configMap", cms)):
                if kind in source:
                    name = source[kind].get("name")
                    key = _object_key(source[kind].get("items"), rel, objects.get(name))
                    if key is not None:
                        return FileSource(mount, "Secret" if kind == "secret" else "ConfigMap", name, key)
        return FileSource(mount, "projected", None, None)
    return FileSource(mount, next((k for k in volume if k != "name"), "unknown"), None, None)


def file_text(docs: list[dict], source: FileSource | None) -> str | None:
    if source is None or source.key is None:
        return None
    objects = secrets(docs) if source.kind == "Secret" else config_maps(docs)
    return objects.get(source.name, {}).get(source.key)


def secret_volume(volume: dict) -> bool:
    return "secret" in volume or any("secret" in s for s in volume.get("projected", {}).get("sources", []))


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
    r.check(not any("hostPort" in p for p in c.get("ports", [])), where, "a hostPort")


def check_secret_handling(r: Report, docs: list[dict], w: dict) -> None:
    """Secrets as read-only files only; nothing secret in the environment."""
    pod = pod_spec(w)
    name = f"{w['kind']}/{w['metadata']['name']}"
    cms = config_maps(docs)
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    r.check(pod.get("automountServiceAccountToken") is False, name, "automountServiceAccountToken is not false")
    for c in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name} container {c['name']}"
        for m in c.get("volumeMounts", []):
            if secret_volume(volumes.get(m["name"], {})):
                r.check(m.get("readOnly") is True, where, f"Secret volume {m['name']} is mounted writable (readOnly is not true)")
        for var in c.get("env", []):
            source = var.get("valueFrom", {})
            if console_token(w, var):
                check_console_token(r, docs, where, source["secretKeyRef"])
                continue
            r.check("secretKeyRef" not in source, where,
                    f"{var['name']} takes a Secret's value into the environment: mount it as a file")
        r.check(not any("secretRef" in s for s in c.get("envFrom", [])), where,
                "envFrom a Secret: its values land in the environment; mount it as a file")
        for var, value in container_env(c, cms).items():
            r.check(not CREDENTIAL.search(str(value)), where, f"{var} holds credential material (a JWT, seed or key)")
            r.check(var not in INLINE_IDENTITY_VARS, where, f"{var} is set: identities come from a credentials file (NATS_CREDS)")


def console_token(w: dict, var: dict) -> bool:
    """The console's sign-in token from a Secret: the exception to "no
    Secret in the environment", for that variable of that Deployment only."""
    return w["kind"] == "Deployment" and w["metadata"]["name"] == CONSOLE \
        and var.get("name") == CONSOLE_TOKEN_VAR and "secretKeyRef" in var.get("valueFrom", {})


def check_console_token(r: Report, docs: list[dict], where: str, ref: dict) -> None:
    """Optional, so that without the Secret the console starts and only
    shows; from a Secret of its own, never one holding NATS credentials,
    keys or certificates (those reach a pod only as files)."""
    r.check(ref.get("optional") is True, where,
            f"{CONSOLE_TOKEN_VAR} from Secret {ref.get('name')} is not optional: without it the console would not "
            "start, rather than only show")
    held = secrets(docs).get(ref.get("name"), {})
    r.check(not any(CREDENTIAL.search(v) or creds_identity(v) or "BEGIN CERTIFICATE" in v for v in held.values()), where,
            f"{CONSOLE_TOKEN_VAR} comes from Secret {ref.get('name')}, which holds NATS credentials or TLS material")


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
            # A Job's container runs to completion: no probes.
            if probes and w["kind"] != "Job" and c in pod["containers"]:
                r.check("livenessProbe" in c, where, "no livenessProbe")
                r.check("readinessProbe" in c, where, "no readinessProbe")
        check_secret_handling(r, docs, w)


def check_stored_material(r: Report, docs: list[dict]) -> None:
    """What Secrets and ConfigMaps hold: no signing seed, no CA key, no
    credential in a ConfigMap; no Service open outside the cluster."""
    for name, data in secrets(docs).items():
        for key, value in data.items():
            r.check(not SIGNING_SEED.search(value) and not key.endswith(".nk"), f"Secret/{name}",
                    f"{key} holds an operator or account seed: those stay with `sagactl auth init`'s keys/")
            r.check("ca-key" not in key, f"Secret/{name}", f"{key}: the CA's key stays with `sagactl auth init`'s tls/")
    for name, data in config_maps(docs).items():
        for key, value in data.items():
            r.check(not CREDENTIAL.search(str(value)), f"ConfigMap/{name}",
                    f"{key} holds credential material (a JWT, seed or key): it belongs in a Secret")
    for s in docs:
        if s["kind"] == "Service":
            kind = s["spec"].get("type", "ClusterIP")
            r.check(kind == "ClusterIP", f"Service/{s['metadata']['name']}", f"type {kind}: reachable from outside the cluster")
            r.check(not s["spec"].get("externalIPs"), f"Service/{s['metadata']['name']}", "externalIPs")


def check_identity(r: Report, docs: list[dict], where: str, pod: dict, c: dict, identity: str, tls: bool) -> None:
    """The container connects as `identity`, from files of Secrets mounted
    read-only: NATS_CREDS (and with `tls` NATS_TLS_*) are paths into them."""
    env = container_env(c, config_maps(docs))
    wanted = ("NATS_CREDS",) + (TLS_VARS if tls else ())
    for var in wanted:
        path = env.get(var)
        r.check(path is not None, where, f"{var} is not set")
        if path is None:
            continue
        r.check(path.startswith("/"), where, f"{var} is not a file path")
        source = file_source(docs, pod, c, path) if path.startswith("/") else None
        r.check(source is not None, where, f"{var} ({path[:40]}) is on no volume")
        if source is None:
            continue
        r.check(source.kind == "Secret", where, f"{var} ({path}) comes from a {source.kind}, not a Secret")
        r.check(source.kind != "Secret" or source.key is not None, where, f"{var} ({path}): Secret {source.name} has no such file")
        r.check(source.read_only, where, f"{var} ({path}) is on a writable mount")
        if var == "NATS_CREDS" and source.kind == "Secret" and source.key is not None:
            found = creds_identity(file_text(docs, source) or "")
            r.check(found == identity, where, f"NATS_CREDS holds the credentials of {found or 'nobody'}, not of {identity}")
    # Its own credentials and no one else's: every credentials file mounted.
    others = set()
    for m in c.get("volumeMounts", []):
        volume = next((v for v in pod.get("volumes", []) if v["name"] == m["name"]), {})
        for name in ([volume["secret"].get("secretName")] if "secret" in volume else
                     [s["secret"].get("name") for s in volume.get("projected", {}).get("sources", []) if "secret" in s]):
            for text in secrets(docs).get(name, {}).values():
                found = creds_identity(text)
                if found and found != identity:
                    others.add(found)
    r.check(not others, where, f"also mounts the credentials of {sorted(others)}")


def check_service(r: Report, docs: list[dict], name: str, port: int, overlay: str,
                  identity: str | None = None, scaled: bool = True) -> None:
    """A service's Deployment; `identity` when it connects as another
    identity than its own name (the console); `scaled` for the PDB and the
    HPA a service needs and the console does not."""
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

    # its NATS identity
    check_identity(r, docs, where, pod, c, identity or name, tls=overlay == "prod")

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
    if scaled:
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


def provision_jobs(docs: list[dict]) -> list[dict]:
    return [j for j in docs if j["kind"] == "Job"
            and any("provision" in (c.get("args", []) + c.get("command", [])) for c in pod_spec(j)["containers"])]


def check_provisioning(r: Report, docs: list[dict], overlay: str) -> None:
    """A Job provisions the streams as admin, with the services' settings."""
    jobs = provision_jobs(docs)
    r.check(len(jobs) == 1, overlay, f"{len(jobs)} Jobs run `sagactl provision`, not 1: the services create no stream")
    for j in jobs:
        where = f"Job/{j['metadata']['name']}"
        pod = pod_spec(j)
        c = next(c for c in pod["containers"] if "provision" in c.get("args", []) + c.get("command", []))
        r.check("sagactl" in c["image"], where, f"image {c['image']} is not sagactl's")
        r.check(pod.get("restartPolicy") in ("Never", "OnFailure"), where, "restartPolicy is neither Never nor OnFailure")
        r.check("backoffLimit" in j["spec"], where, "no backoffLimit: it retries while NATS is not up yet, within bounds")
        check_identity(r, docs, where, pod, c, PROVISIONER, tls=overlay == "prod")
        env = container_env(c, config_maps(docs))
        r.check(env.get("STREAM_REPLICAS") == ("3" if overlay == "prod" else "1"), where,
                f"STREAM_REPLICAS is {env.get('STREAM_REPLICAS')}, not the overlay's")
        # Each stream's byte limit is its share of the store: the store's
        # own size, so that a full store refuses whole atomic writes.
        sts = index(docs).get(("StatefulSet", "nats"))
        store = nats_conf_value(nats_conf(docs, sts), "max_file_store") if sts else None
        r.check(store is not None and env.get("STREAM_STORE_BYTES") == store, where,
                f"STREAM_STORE_BYTES is {env.get('STREAM_STORE_BYTES')}, not nats.conf's max_file_store "
                f"({store}): a full store could store an atomic write in part")


def nats_conf(docs: list[dict], sts: dict) -> str:
    cms = config_maps(docs)
    for v in pod_spec(sts).get("volumes", []):
        sources = [v] if "configMap" in v else v.get("projected", {}).get("sources", [])
        for source in sources:
            if "configMap" in source:
                data = cms.get(source["configMap"]["name"], {})
                if "nats.conf" in data:
                    return data["nats.conf"]
    return ""


def conf_path(c: dict) -> str:
    args = c.get("args", []) + c.get("command", [])
    for flag in ("--config", "-c"):
        if flag in args[:-1]:
            return args[args.index(flag) + 1]
    return "/etc/nats/nats.conf"


def check_nats_files(r: Report, docs: list[dict], sts: dict, overlay: str) -> None:
    """auth.conf included, from a Secret; in prod TLS for clients and mutual
    TLS on the routes, every file from a Secret."""
    where = "StatefulSet/nats"
    pod = pod_spec(sts)
    c = pod["containers"][0]
    conf = parse_nats_conf(nats_conf(docs, sts))
    base = posixpath.dirname(conf_path(c))
    includes = [posixpath.normpath(posixpath.join(base, i)) for i in conf.get("include", [])]
    auth = next((i for i in includes if i.endswith("/auth.conf")), None)
    r.check(auth is not None, where, "nats.conf does not include auth.conf: connections need no credentials")
    if auth:
        source = file_source(docs, pod, c, auth)
        r.check(source is not None and source.kind == "Secret" and source.key is not None, where,
                f"{auth} comes from {source.kind + ' ' + str(source.name) if source else 'nowhere'}, not a Secret")
        r.check(source is None or source.read_only, where, f"{auth} is on a writable mount")
        text = file_text(docs, source) or ""
        r.check("operator" in text and "resolver" in text, where, f"{auth} is not sagactl's auth.conf (no operator, no resolver)")

    def tls_files(block: dict, what: str) -> None:
        for key in ("cert_file", "key_file", "ca_file"):
            path = block.get(key)
            r.check(bool(path), where, f"{what} TLS has no {key}")
            if path:
                source = file_source(docs, pod, c, path)
                r.check(source is not None and source.kind == "Secret" and source.key is not None, where,
                        f"{what} TLS {key} {path} is not a file of a Secret")
                r.check(source is None or source.read_only, where, f"{what} TLS {key} {path} is on a writable mount")

    if overlay == "prod":
        tls = conf.get("tls")
        r.check(isinstance(tls, dict), where, "nats.conf has no tls block: clients connect in the clear")
        if isinstance(tls, dict):
            tls_files(tls, "client")
            r.check(tls.get("verify") == "true", where, "client TLS does not verify client certificates (verify: true)")
        route_tls = conf.get("cluster", {}).get("tls") if isinstance(conf.get("cluster"), dict) else None
        r.check(isinstance(route_tls, dict), where, "the cluster routes have no tls block")
        if isinstance(route_tls, dict):
            tls_files(route_tls, "route")
            r.check(route_tls.get("verify") == "true", where, "route TLS is not mutual (verify: true)")
            r.check(route_tls.get("verify_cert_and_check_known_urls") == "true", where,
                    "route TLS accepts any certificate of the CA (verify_cert_and_check_known_urls: true)")


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
    check_nats_files(r, docs, sts, overlay)

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
        check_nats_placement(r, sts)
    else:
        r.check(not cluster, where, "a single node with a cluster block")


ZONE = "topology.kubernetes.io/zone"
HOSTNAME = "kubernetes.io/hostname"
SYNC_KEYS = ("sync_interval", "sync")  # `sync` is nats-server's alias


def check_nats_placement(r: Report, sts: dict) -> None:
    """Power loss (docs/deployment.md, "What each deployment shape can
    lose"): a write is acknowledged once two of the three nodes hold it, in
    their page cache until the next sync. So no two nodes may share a
    machine (required anti-affinity on the hostname), and the nodes are
    spread over zones, as a requirement (DoNotSchedule), so that one zone's
    power loss takes one node. Each rule must select the NATS pods: a rule
    whose selector matches no pod constrains nothing."""
    where = "StatefulSet/nats"
    pod = pod_spec(sts)
    labels = pod_labels(sts)

    def selects_nats(rule: dict) -> bool:
        selector = rule.get("labelSelector")
        return bool(selector) and matches_selector(selector, labels)

    anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []
    r.check(any(t.get("topologyKey") == HOSTNAME and selects_nats(t) for t in anti), where,
            f"no required podAntiAffinity on {HOSTNAME} selecting the NATS pods: two nodes may share a machine, "
            "and its power loss would take the quorum")
    spread = [c for c in pod.get("topologySpreadConstraints") or [] if c.get("topologyKey") == ZONE]
    r.check(bool(spread), where, f"no topologySpreadConstraints on {ZONE}: the nodes may share a zone, "
            "and its power loss would take the quorum")
    for c in spread:
        r.check(c.get("maxSkew") == 1, where, f"the zone spread has maxSkew {c.get('maxSkew')}, not 1")
        r.check(c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule", where,
                f"the zone spread is {c.get('whenUnsatisfiable')}, not DoNotSchedule: a preference, "
                "which puts two nodes in one zone whenever that zone has more room")
        r.check(selects_nats(c), where, "the zone spread's labelSelector does not select the NATS pods: it spreads nothing")


def jetstream_sync(conf: dict) -> str | None:
    block = conf.get("jetstream") if isinstance(conf.get("jetstream"), dict) else {}
    return next((block[k] for k in SYNC_KEYS if k in block), None)


def without_sync(conf: dict) -> dict:
    conf = copy.deepcopy(conf)
    if isinstance(conf.get("jetstream"), dict):
        for k in SYNC_KEYS:
            conf["jetstream"].pop(k, None)
    return conf


def check_durable(r: Report, docs: list[dict], reference: list[dict] | None) -> None:
    """The durable component (deploy/k8s/components/durable): nats.conf
    fsyncs every write before acknowledging it (`sync_interval: always`,
    inside the jetstream block, where nats-server reads it) and is,
    otherwise, the overlay's own nats.conf (`reference`, the overlay
    rendered without the component): the component's copy has not
    drifted."""
    where = "StatefulSet/nats"
    sts = index(docs).get(("StatefulSet", "nats"))
    if sts is None:
        return
    conf = parse_nats_conf(nats_conf(docs, sts))
    sync = jetstream_sync(conf)
    r.check(str(sync).lower() == "always", where,
            f"jetstream sync_interval is {sync or 'unset (2m)'}, not always: a power loss can lose acknowledged writes")
    if reference is not None:
        ref_sts = index(reference).get(("StatefulSet", "nats"))
        ref = parse_nats_conf(nats_conf(reference, ref_sts)) if ref_sts else {}
        mine, theirs = without_sync(conf), without_sync(ref)
        differing = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        r.check(not differing, where,
                f"nats.conf differs from the overlay's own beyond sync_interval ({', '.join(differing)}): "
                "copy the change into deploy/k8s/components/durable/nats-cluster-durable.conf")


# --- the network ----------------------------------------------------------------


@dataclass
class Peer:
    """One end of a connection: a pod (namespace, labels, named ports) or an address outside."""
    name: str
    namespace: str | None = None
    labels: dict = field(default_factory=dict)
    ports: dict = field(default_factory=dict)  # port name -> number
    ip: str | None = None


# Stand-ins for what lives outside the render (deploy/k8s/base/network/networkpolicies.yaml).
DNS = Peer("kube-dns", "kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Peer("Prometheus", "monitoring", {"app.kubernetes.io/name": "prometheus"})
INTERNET = Peer("the internet (203.0.113.10)", ip="203.0.113.10")


def matches_selector(selector: dict | None, labels: dict) -> bool:
    """Kubernetes label selector semantics: {} (or absent) selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def peer_matches(rule_peer: dict, policy_ns: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        if peer.ip is None:
            return False  # pods are matched by selectors here, not by address
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        return address in ipaddress.ip_network(block["cidr"]) and \
            not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if peer.ip is not None:
        return False
    if "namespaceSelector" in rule_peer:
        if not matches_selector(rule_peer["namespaceSelector"], {"kubernetes.io/metadata.name": peer.namespace}):
            return False
    elif peer.namespace != policy_ns:
        return False
    return "podSelector" not in rule_peer or matches_selector(rule_peer["podSelector"], peer.labels)


def port_matches(rule_ports: list | None, target: Peer, port: int, protocol: str) -> bool:
    if not rule_ports:
        return True
    for p in rule_ports:
        if p.get("protocol", "TCP") != protocol:
            continue
        want = p.get("port")
        if want is None:
            return True
        number = target.ports.get(want) if isinstance(want, str) else want
        if number is not None and number <= port <= p.get("endPort", number):
            return True
    return False


def policy_types(np: dict) -> set[str]:
    spec = np["spec"]
    return set(spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else [])))


def sides(policies: list[dict], src: Peer, dst: Peer, port: int, protocol: str = "TCP") -> tuple[bool, bool]:
    """Whether the NetworkPolicies let src open port/protocol on dst: on the
    source's side (its egress) and on the destination's (its ingress). A pod
    that no policy of a direction selects is open in that direction; an
    address outside the cluster has no side of ours."""
    def side(direction: str, subject: Peer, other: Peer) -> bool:
        if subject.ip is not None:
            return True
        selecting = [np for np in policies if np["metadata"].get("namespace") == subject.namespace
                     and direction in policy_types(np) and matches_selector(np["spec"].get("podSelector"), subject.labels)]
        if not selecting:
            return True
        key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        for np in selecting:
            for rule in np["spec"].get(key) or []:
                peers = rule.get(peers_key)
                if (not peers or any(peer_matches(p, np["metadata"]["namespace"], other) for p in peers)) \
                        and port_matches(rule.get("ports"), dst, port, protocol):
                    return True
        return False
    return side("Egress", src, dst), side("Ingress", dst, src)


def workload_peer(w: dict, namespace: str) -> Peer:
    ports = {p["name"]: p["containerPort"] for c in pod_spec(w)["containers"] for p in c.get("ports", []) if "name" in p}
    return Peer(f"{w['kind']}/{w['metadata']['name']}", namespace, pod_labels(w), ports)


def check_network(r: Report, docs: list[dict], overlay: str, tools: list[dict]) -> None:
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    namespace = next((d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"), None)
    where = f"{overlay} NetworkPolicy"
    r.check(any(not (np["spec"].get("podSelector") or {}).get("matchLabels")
                and not (np["spec"].get("podSelector") or {}).get("matchExpressions")
                and {"Ingress", "Egress"} <= policy_types(np)
                and not np["spec"].get("ingress") and not np["spec"].get("egress") for np in policies),
            where, "no default deny: a policy selecting every pod, for Ingress and Egress, allowing nothing")
    objs = index(docs)
    sts = objs.get(("StatefulSet", "nats"))
    if sts is None:
        return
    nats = workload_peer(sts, namespace)
    stranger = Peer("another pod of the namespace", namespace, {"app.kubernetes.io/name": "stranger"})
    outsider = Peer("a pod of another namespace", "elsewhere",
                    {"app.kubernetes.io/name": "intruder", "jetsaga.io/nats-client": "true"})
    client = 4222
    paths: list[tuple[Peer, Peer, int, str, bool]] = []
    services = [workload_peer(objs[("Deployment", n)], namespace) for n in [*SERVICES, CONSOLE]
                if ("Deployment", n) in objs]
    jobs = [workload_peer(j, namespace) for j in provision_jobs(docs)]
    tool_pods = [workload_peer(t, namespace) for t in tools if t["kind"] in WORKLOAD_KINDS]
    for p in services + jobs + tool_pods:
        paths += [(p, nats, client, "TCP", True), (p, DNS, 53, "UDP", True), (p, DNS, 53, "TCP", True),
                  (p, INTERNET, 443, "TCP", False), (p, nats, 6222, "TCP", False)]
    for i, s in enumerate(services):
        http = s.ports.get("http", {**SERVICES, CONSOLE: CONSOLE_PORT}.get(s.labels.get("app.kubernetes.io/name"), 0))
        paths += [(PROMETHEUS, s, http, "TCP", True), (stranger, s, http, "TCP", False),
                  (outsider, s, http, "TCP", False), (services[i - 1], s, http, "TCP", False)]
    paths += [(PROMETHEUS, nats, 8222, "TCP", True), (nats, INTERNET, 443, "TCP", False),
              (stranger, INTERNET, 443, "TCP", False)]
    for port in (client, 6222, 8222):
        paths += [(stranger, nats, port, "TCP", False), (outsider, nats, port, "TCP", False)]
    if overlay == "prod":
        paths += [(nats, nats, 6222, "TCP", True), (nats, DNS, 53, "UDP", True)]
    for src, dst, port, protocol, want in paths:
        egress, ingress = sides(policies, src, dst, port, protocol)
        path = f"{src.name} -> {dst.name} {port}/{protocol}"
        if want:
            r.check(egress and ingress, where, f"{path} is closed ({'ingress' if egress else 'egress'}), must be open")
        elif dst.ip is None:
            # Closed by the destination's own ingress, whatever the source's
            # egress allows (another policy may open that some day).
            r.check(not ingress, where, f"{path}: {dst.name}'s ingress admits it, must refuse it")
        else:
            r.check(not egress, where, f"{path}: {src.name}'s egress allows it, must refuse it")

    # The tool pods mount Secrets of the overlay by their plain names.
    rendered = set(secrets(docs))
    for t in tools:
        if t["kind"] not in WORKLOAD_KINDS:
            continue
        for v in pod_spec(t).get("volumes", []):
            if "secret" in v:
                r.check(v["secret"]["secretName"] in rendered, f"tools {t['kind']}/{t['metadata']['name']}",
                        f"mounts Secret {v['secret']['secretName']}, which the {overlay} overlay does not render "
                        "(unhashed: disableNameSuffixHash)")


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


def check(docs: list[dict], overlay: str, tools: list[dict] | None = None,
          durable: bool = False, reference: list[dict] | None = None) -> Report:
    r = Report()
    check_workloads(r, docs)
    check_stored_material(r, docs)
    for name, port in SERVICES.items():
        check_service(r, docs, name, port, overlay)
    check_service(r, docs, CONSOLE, CONSOLE_PORT, overlay, identity=CONSOLE_IDENTITY, scaled=False)
    check_provisioning(r, docs, overlay)
    check_nats(r, docs, overlay)
    if durable:
        check_durable(r, docs, reference)
    check_network(r, docs, overlay, tools or [])
    check_overlay(r, docs, overlay)
    return r


# --- self-test: every breakage must be caught -----------------------------------


def find(docs, kind, name):
    """The object of that kind named `name`, or generated from it (`name-<hash>`)."""
    return next(d for d in docs if d["kind"] == kind and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?",
                                                                     d["metadata"]["name"]))


def container(docs, name):
    return pod_spec(find(docs, "Deployment", name))["containers"][0]


def common_cm(docs):
    return next(d for d in docs if d["kind"] == "ConfigMap" and "SHUTDOWN_GRACE_SECONDS" in d.get("data", {}))


def nats_cm(docs):
    return next(d for d in docs if d["kind"] == "ConfigMap" and "nats.conf" in d.get("data", {}))


def drop(docs, kind, name):
    docs[:] = [d for d in docs if not (d["kind"] == kind and d["metadata"]["name"] == name)]


def volume(docs, kind, name, volume_name):
    return next(v for v in pod_spec(find(docs, kind, name))["volumes"] if v["name"] == volume_name)


def creds_of(docs, identity):
    secret = find(docs, "Secret", f"nats-identity-{identity}")
    return base64.b64decode(secret["data"]["nats.creds"]).decode()


def console_token_ref(docs):
    return next(v for v in container(docs, "saga-console")["env"] if v["name"] == CONSOLE_TOKEN_VAR)["valueFrom"]["secretKeyRef"]


def creds_in_env(docs):
    """order-service's credentials as an environment value instead of a file."""
    c = container(docs, "order-service")
    pod = pod_spec(find(docs, "Deployment", "order-service"))
    c.setdefault("env", []).append({"name": "NATS_CREDS", "value": creds_of(docs, "order-service")})
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "nats-identity"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "nats-identity"]


def creds_in_config_map(docs):
    """inventory-service's credentials file from a ConfigMap instead of a Secret."""
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inventory-creds", "namespace":
                 common_cm(docs)["metadata"]["namespace"]}, "data": {"nats.creds": creds_of(docs, "inventory-service")}})
    v = volume(docs, "Deployment", "inventory-service", "nats-identity")
    v.pop("secret")
    v["configMap"] = {"name": "inventory-creds"}


def creds_from_secret_env(docs):
    """payment-service's credentials file's content from a secretKeyRef."""
    secret = find(docs, "Secret", "nats-identity-payment-service")["metadata"]["name"]
    container(docs, "payment-service").setdefault("env", []).append(
        {"name": "NATS_CREDS_CONTENT", "valueFrom": {"secretKeyRef": {"name": secret, "key": "nats.creds"}}})


def anothers_creds(docs):
    """payment-service mounting order-service's identity."""
    volume(docs, "Deployment", "payment-service", "nats-identity")["secret"]["secretName"] = \
        find(docs, "Secret", "nats-identity-order-service")["metadata"]["name"]


def auth_conf_from_config_map(docs):
    """NATS's auth.conf from a ConfigMap instead of the Secret nats-auth."""
    auth = find(docs, "Secret", "nats-auth")
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "nats-auth-plain", "namespace":
                 auth["metadata"]["namespace"]}, "data": {"auth.conf": base64.b64decode(auth["data"]["auth.conf"]).decode()}})
    sources = volume(docs, "StatefulSet", "nats", "config")["projected"]["sources"]
    for s in sources:
        if "secret" in s and s["secret"]["name"] == auth["metadata"]["name"]:
            s["configMap"] = {"name": "nats-auth-plain", "items": s["secret"]["items"]}
            s.pop("secret")


def route_tls_unverified(docs):
    conf = nats_cm(docs)["data"]["nats.conf"]
    at = conf.index("cluster {")
    nats_cm(docs)["data"]["nats.conf"] = conf[:at] + conf[at:].replace("verify: true", "verify: false")


def no_client_tls(docs):
    conf = nats_cm(docs)["data"]["nats.conf"]
    nats_cm(docs)["data"]["nats.conf"] = re.sub(r"(?ms)^tls \{.*?^\}\n", "", conf)


def provision_job(docs):
    return provision_jobs(docs)[0]


def policy(docs, name):
    return find(docs, "NetworkPolicy", name)


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
    # credentials and Secrets
    "credentials as an env value": creds_in_env,
    "credentials in a ConfigMap": creds_in_config_map,
    "a Secret's value in the environment": creds_from_secret_env,
    "a password in a ConfigMap": lambda docs: common_cm(docs)["data"].update(NATS_USER="jetsaga", NATS_PASSWORD="secret"),
    "credentials mounted writable": lambda docs: container(docs, "saga-orchestrator")["volumeMounts"][0].update(readOnly=False),
    "another service's credentials": anothers_creds,
    "no NATS_CREDS": lambda docs: common_cm(docs)["data"].pop("NATS_CREDS"),
    "auth.conf not included": lambda docs: nats_cm(docs)["data"].update(
        {"nats.conf": nats_cm(docs)["data"]["nats.conf"].replace("include ./auth.conf", "")}),
    "auth.conf from a ConfigMap": auth_conf_from_config_map,
    "auth.conf mounted writable": lambda docs: pod_spec(find(docs, "StatefulSet", "nats"))["containers"][0]["volumeMounts"][0].update(
        readOnly=False),
    "an account seed in a Secret": lambda docs: find(docs, "Secret", "nats-auth")["data"].update(
        {"account.nk": base64.b64encode(b"SA" + b"A" * 56).decode()}),
    "a service account token": lambda docs: pod_spec(find(docs, "Deployment", "inventory-service")).update(
        automountServiceAccountToken=True),
    "a NodePort": lambda docs: find(docs, "Service", "nats")["spec"].update(type="NodePort"),
    # the provisioning Job
    "no provisioning Job": lambda docs: docs.remove(provision_job(docs)),
    "provisioning as another identity": lambda docs: pod_spec(provision_job(docs))["volumes"][0]["secret"].update(
        secretName=find(docs, "Secret", "nats-identity-client")["metadata"]["name"]),
    "Job without a security context": lambda docs: (pod_spec(provision_job(docs)).pop("securityContext"),
                                                    pod_spec(provision_job(docs))["containers"][0].pop("securityContext")),
    "Job without resources": lambda docs: pod_spec(provision_job(docs))["containers"][0].pop("resources"),
    "streams' limits not the store's size": lambda docs: pod_spec(provision_job(docs))["containers"][0].update(
        env=[{"name": "STREAM_STORE_BYTES", "value": "64GB"}]),
    # the network
    "no default deny": lambda docs: docs.remove(policy(docs, "default-deny")),
    "NATS open to every pod": lambda docs: policy(docs, "nats")["spec"]["ingress"][0].pop("from"),
    "no DNS": lambda docs: docs.remove(policy(docs, "dns")),
    "clients cannot reach NATS": lambda docs: docs.remove(policy(docs, "nats-clients")),
    "metrics closed to Prometheus": lambda docs: docs.remove(policy(docs, "metrics")),
    "egress anywhere": lambda docs: policy(docs, "nats-clients")["spec"]["egress"].append({}),
    "monitoring open to the namespace": lambda docs: policy(docs, "nats")["spec"]["ingress"][2]["from"].append({"podSelector": {}}),
    # the console
    "the console missing": lambda docs: drop(docs, "Deployment", "saga-console"),
    "the console as another identity": lambda docs: volume(docs, "Deployment", "saga-console", "nats-identity")["secret"].update(
        secretName=find(docs, "Secret", "nats-identity-saga-orchestrator")["metadata"]["name"]),
    "the console's token required": lambda docs: console_token_ref(docs).update(optional=False),
    "the console's token from an identity's Secret": lambda docs: console_token_ref(docs).update(
        name=find(docs, "Secret", "nats-identity-operator")["metadata"]["name"], key="nats.creds"),
    "another Secret value in the console's environment": lambda docs: container(docs, "saga-console")["env"].append(
        {"name": "CONSOLE_SESSION_KEY", "valueFrom": {"secretKeyRef": {"name": "saga-console", "key": "session-key"}}}),
    "the console as a LoadBalancer": lambda docs: find(docs, "Service", "saga-console")["spec"].update(type="LoadBalancer"),
}
PROD_BREAKAGES = {
    "one replica in prod": lambda docs: find(docs, "Deployment", "order-service")["spec"].update(replicas=1),
    "HPA minimum 1 in prod": lambda docs: find(docs, "HorizontalPodAutoscaler", "saga-orchestrator")["spec"].update(minReplicas=1),
    "latest tag in prod": lambda docs: container(docs, "payment-service").update(image="jetsaga/payment-service:latest"),
    "no client TLS": no_client_tls,
    "routes without mutual TLS": route_tls_unverified,
    "a service without its client certificate": lambda docs: (common_cm(docs)["data"].pop("NATS_TLS_CERT"),
                                                              common_cm(docs)["data"].pop("NATS_TLS_KEY")),
    "the CA's key in a Secret": lambda docs: find(docs, "Secret", "nats-tls")["data"].update(
        {"ca-key.pem": find(docs, "Secret", "nats-tls")["data"]["server-key.pem"]}),
    "routes closed": lambda docs: policy(docs, "nats")["spec"]["ingress"].pop(1),
    # power loss
    "NATS nodes may share a machine": lambda docs: pod_spec(find(docs, "StatefulSet", "nats")).pop("affinity"),
    "NATS not spread over zones": lambda docs: pod_spec(find(docs, "StatefulSet", "nats")).pop("topologySpreadConstraints"),
    "zone spread only preferred": lambda docs: zone_spread(docs).update(whenUnsatisfiable="ScheduleAnyway"),
    "zone spread selecting other pods": lambda docs: zone_spread(docs).update(
        labelSelector={"matchLabels": {"app.kubernetes.io/name": "order-service"}}),
}
# The prod overlay with deploy/k8s/components/durable (--durable).
DURABLE_BREAKAGES = {
    "durable without sync_interval always": lambda docs: edit_nats_conf(
        docs, "\n  sync_interval: always\n", "\n  sync_interval: \"2m\"\n"),
    "sync_interval always outside the jetstream block": lambda docs: edit_nats_conf(
        docs, "\n  sync_interval: always\n", "\n", "\ncluster {\n", "\ncluster {\n  sync_interval: always\n"),
}
# ... and, given the overlay's own render (--reference), the copy's drift.
REFERENCE_BREAKAGES = {
    "the durable copy of nats.conf drifted": lambda docs: edit_nats_conf(docs, "max_file_store: 16GB", "max_file_store: 8GB"),
}


def zone_spread(docs):
    return next(c for c in pod_spec(find(docs, "StatefulSet", "nats"))["topologySpreadConstraints"] if c["topologyKey"] == ZONE)


def edit_nats_conf(docs, *pairs):
    """Replaces text in the rendered nats.conf, pair by pair (each must be there)."""
    cm = nats_cm(docs)
    conf = cm["data"]["nats.conf"]
    for old, new in zip(pairs[::2], pairs[1::2]):
        assert old in conf, f"{old!r} is not in nats.conf"
        conf = conf.replace(old, new, 1)
    cm["data"]["nats.conf"] = conf


def self_test(docs: list[dict], overlay: str, tools: list[dict], durable: bool = False,
              reference: list[dict] | None = None) -> int:
    clean = check(docs, overlay, tools, durable, reference)
    failures = [f"the unbroken render has violations: {clean.violations}"] if clean.violations else []
    breakages = dict(BREAKAGES, **(PROD_BREAKAGES if overlay == "prod" else {}),
                     **(DURABLE_BREAKAGES if durable else {}),
                     **(REFERENCE_BREAKAGES if durable and reference is not None else {}))
    for name, breaker in breakages.items():
        broken = copy.deepcopy(docs)
        breaker(broken)
        found = check(broken, overlay, tools, durable, reference).violations
        if not found:
            failures.append(f"not caught: {name}")
        else:
            print(f"  caught {name}: {found[0]}")
    label = f"{overlay} with the durable component" if durable else overlay
    for f in failures:
        print(f"FAIL {label} self-test: {f}", file=sys.stderr)
    print(f"{label}: policy self-test, {len(breakages) - len(failures)} of {len(breakages)} breakages caught")
    return 1 if failures else 0


def write_nats_files(docs: list[dict], out: str) -> int:
    """Writes, under `out`, the files NATS reads as the render gives them:
    the config volume of its container (nats.conf, with its /etc/nats/
    paths pointed at `out`; auth.conf; tls/) and, under identities/<name>/,
    each Secret holding credentials (named after the identity in them), for
    nats-server -t and the certificate checks."""
    import os
    sts = find(docs, "StatefulSet", "nats")
    pod = pod_spec(sts)
    c = pod["containers"][0]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == posixpath.dirname(conf_path(c)))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    sources = volume["projected"]["sources"] if "projected" in volume else [volume]
    sec, cms = secrets(docs), config_maps(docs)
    written = 0

    def write(path: str, text: str) -> None:
        nonlocal written
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        written += 1

    for source in sources:
        for kind, objects in (("secret", sec), ("configMap", cms)):
            if kind not in source:
                continue
            ref = source[kind]
            data = objects.get(ref.get("name") or ref.get("secretName"), {})
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                text = data[item["key"]]
                if item["path"] == posixpath.basename(conf_path(c)):
                    text = text.replace(mount["mountPath"].rstrip("/") + "/", out.rstrip("/") + "/")
                write(os.path.join(out, item["path"]), text)
    for name, data in sec.items():
        identity = next((creds_identity(v) for v in data.values() if creds_identity(v)), None)
        if identity:
            for key, text in data.items():
                write(os.path.join(out, "identities", identity, key), text)
    return written


def load(path: str) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--overlay", choices=["dev", "prod"])
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--security-only", action="store_true",
                        help="only the per-container security and resources checks (for tool manifests)")
    parser.add_argument("--tools", action="append", default=[], metavar="MANIFEST",
                        help="a tool manifest whose pods the overlay's network and Secrets must serve (repeat)")
    parser.add_argument("--nats-files", metavar="DIR",
                        help="only write NATS's files (its /etc/nats, and each identity's Secret) under DIR")
    parser.add_argument("--durable", action="store_true",
                        help="the render has deploy/k8s/components/durable: JetStream fsyncs every write (sync_interval: always)")
    parser.add_argument("--reference", metavar="RENDER",
                        help="with --durable: the overlay rendered without the component, whose nats.conf must be "
                             "the same apart from sync_interval")
    parser.add_argument("rendered")
    args = parser.parse_args()
    docs = load(args.rendered)
    if args.nats_files:
        print(f"{args.nats_files}: {write_nats_files(docs, args.nats_files)} files")
        return 0
    if args.security_only:
        r = Report()
        check_workloads(r, docs, probes=False)
        check_stored_material(r, docs)
        for v in r.violations:
            print(f"VIOLATION {args.rendered}: {v}", file=sys.stderr)
        print(f"{args.rendered}: security, {r.checks} checks, {len(r.violations)} violations")
        return 1 if r.violations else 0
    if not args.overlay:
        parser.error("--overlay is required")
    if args.reference and not args.durable:
        parser.error("--reference goes with --durable")
    tools = [d for path in args.tools for d in load(path)]
    reference = load(args.reference) if args.reference else None
    if args.self_test:
        return self_test(docs, args.overlay, tools, args.durable, reference)
    r = check(docs, args.overlay, tools, args.durable, reference)
    label = f"{args.overlay} with the durable component" if args.durable else args.overlay
    for v in r.violations:
        print(f"VIOLATION {label}: {v}", file=sys.stderr)
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    containers = sum(len(pod_spec(w)["containers"]) for w in workloads)
    print(f"{label}: policy, {len(docs)} objects, {len(workloads)} workloads, {containers} containers, "
          f"{r.checks} checks, {len(r.violations)} violations")
    return 1 if r.violations else 0


if __name__ == "__main__":
    sys.exit(main())
