#!/usr/bin/env bash
# Offline validation of everything under deploy/: usable by CI, needs only python3 (and PyYAML, which
# it installs with pip when missing).
#
#   deploy/validate.sh
#
# Checks that every YAML and JSON file parses (YAML without duplicate keys), that the Kubernetes
# manifests in deploy/k8s/ hang together (every object named; Deployments with 2 replicas, /healthz
# liveness, /readyz readiness, resource requests and limits, non-root (or root with only the
# capabilities step_user needs), read-only root; a migration
# Job; Services selecting Deployments' pods and targeting their ports; Ingress backends naming
# existing Services and ports; referenced Secrets, ConfigMaps and volumes exist; the ConfigMaps' TOML
# parses; each bot's state_dir is on a sized volume of its own), that docker-compose.yml has the
# expected services wired together (state_dir on a named volume), and that the Dockerfile
# has both targets. The manifests are also checked against the Kubernetes API schemas, offline, with
# kubernetes-validate (PyPI; installed with pip when missing), and built with `kubectl kustomize` when
# kubectl is installed.
#
# Exits 1 and lists every problem found; prints one summary line on success.
set -euo pipefail

deploy=$(cd "$(dirname "$0")" && pwd)

if ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet pyyaml 2>/dev/null \
    || python3 -m pip install --quiet --user pyyaml 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages pyyaml
  python3 -c 'import yaml' || { echo "deploy/validate.sh: PyYAML is missing and could not be installed" >&2; exit 1; }
fi

# Schema check against the Kubernetes API's JSON schemas, offline: kubernetes-validate (PyPI) ships
# them. Installed with pip when missing; if it cannot be installed the structural checks below still
# run and the summary says the schema check was skipped (VALIDATE_SCHEMA=require makes that an error;
# VALIDATE_SCHEMA=skip skips it). Checked against the oldest Kubernetes we support and the newest.
schema="schema check skipped"
if [ "${VALIDATE_SCHEMA:-auto}" != skip ]; then
  if ! python3 -c 'import kubernetes_validate' 2>/dev/null; then
    python3 -m pip install --quiet kubernetes-validate >/dev/null 2>&1 \
      || python3 -m pip install --quiet --user kubernetes-validate >/dev/null 2>&1 || true
  fi
  if python3 -c 'import kubernetes_validate' 2>/dev/null; then
    for version in ${K8S_VERSIONS:-1.29.0 1.37.0}; do
      if ! out=$(python3 -m kubernetes_validate --strict --quiet -k "$version" "$deploy"/k8s/[0-9]*.yaml 2>&1); then
        echo "deploy/validate.sh: the Kubernetes manifests do not match the schemas of Kubernetes $version:" >&2
        printf '%s\n' "$out" | sed 's/^/  - /' >&2
        exit 1
      fi
    done
    versions=${K8S_VERSIONS:-1.29.0 1.37.0}
    schema="schema-valid for Kubernetes ${versions// / and }"
  elif [ "${VALIDATE_SCHEMA:-auto}" = require ]; then
    echo "deploy/validate.sh: kubernetes-validate is missing and could not be installed (VALIDATE_SCHEMA=require)" >&2
    exit 1
  fi
fi

# kustomize (built into kubectl) must be able to build the directory, when kubectl is here.
if command -v kubectl >/dev/null 2>&1; then
  if ! out=$(kubectl kustomize "$deploy/k8s" 2>&1 >/dev/null); then
    echo "deploy/validate.sh: kubectl kustomize deploy/k8s failed:" >&2
    printf '%s\n' "$out" | sed 's/^/  - /' >&2
    exit 1
  fi
fi

exec python3 - "$deploy" "$schema" <<'PY'
import json
import os
import re
import sys

import yaml

deploy = sys.argv[1]
schema = sys.argv[2]
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def rel(path):
    return os.path.relpath(path, os.path.dirname(deploy))


class StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys (Kubernetes and compose would keep only one)."""


def _mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def dig(obj, *path, default=None):
    for p in path:
        if isinstance(obj, dict) and p in obj:
            obj = obj[p]
        elif isinstance(obj, list) and isinstance(p, int) and -len(obj) <= p < len(obj):
            obj = obj[p]
        else:
            return default
    return obj


# ---------------------------------------------------------------------------------------------
# 1. Every YAML and JSON file parses.
yaml_docs = {}      # path -> [documents]
json_files = 0
for root, dirs, files in os.walk(deploy):
    dirs[:] = sorted(d for d in dirs if not d.startswith("."))
    for name in sorted(files):
        path = os.path.join(root, name)
        if name.endswith((".yml", ".yaml")):
            try:
                with open(path, encoding="utf-8") as f:
                    yaml_docs[path] = [d for d in yaml.load_all(f, Loader=StrictLoader) if d is not None]
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                err(rel(path), f"invalid YAML: {e}")
        elif name.endswith(".json"):
            try:
                with open(path, encoding="utf-8") as f:
                    json.load(f)
                json_files += 1
            except (ValueError, UnicodeDecodeError) as e:
                err(rel(path), f"invalid JSON: {e}")

# ---------------------------------------------------------------------------------------------
# 2. Kubernetes manifests.
k8s_dir = os.path.join(deploy, "k8s")
objects = []        # (file, doc)
kustomization = None
if not os.path.isdir(k8s_dir):
    err("deploy/k8s", "missing")
else:
    for path in sorted(yaml_docs):
        if os.path.dirname(path) != k8s_dir:
            continue
        if os.path.basename(path) == "kustomization.yaml":
            kustomization = (path, yaml_docs[path][0] if yaml_docs[path] else {})
            continue
        if not yaml_docs[path]:
            err(rel(path), "no Kubernetes objects in the file")
        for i, doc in enumerate(yaml_docs[path]):
            where = f"{rel(path)} document {i + 1}"
            if not isinstance(doc, dict):
                err(where, "is not a mapping")
                continue
            for key in ("apiVersion", "kind"):
                if not isinstance(doc.get(key), str) or not doc.get(key):
                    err(where, f"has no {key}")
            if not isinstance(dig(doc, "metadata", "name"), str):
                err(where, "has no metadata.name")
                continue
            objects.append((path, doc))

by_kind = {}
for path, doc in objects:
    by_kind.setdefault(doc.get("kind"), {})
    name = doc["metadata"]["name"]
    if name in by_kind[doc.get("kind")]:
        err(rel(path), f"{doc.get('kind')} {name} is defined twice")
    by_kind[doc.get("kind")][name] = (path, doc)


def where_of(path, doc):
    return f"{rel(path)} {doc.get('kind')}/{dig(doc, 'metadata', 'name')}"


# One namespace for everything namespaced.
namespaces = set(by_kind.get("Namespace", {}))
if not namespaces:
    err("deploy/k8s", "no Namespace")
for path, doc in objects if namespaces else []:
    if doc.get("kind") == "Namespace":
        continue
    ns = dig(doc, "metadata", "namespace")
    if ns not in namespaces:
        err(where_of(path, doc), f"metadata.namespace {ns!r} is not one of the Namespaces defined ({sorted(namespaces)})")

# The kustomization lists every manifest.
if kustomization is None:
    err("deploy/k8s/kustomization.yaml", "missing")
else:
    kpath, kdoc = kustomization
    listed = set(kdoc.get("resources") or []) if isinstance(kdoc, dict) else set()
    present = {f for f in os.listdir(k8s_dir) if f.endswith((".yaml", ".yml"))} - {"kustomization.yaml"}
    for f in sorted(present - listed):
        err(rel(kpath), f"does not list {f}")
    for f in sorted(listed - present):
        err(rel(kpath), f"lists {f}, which does not exist")

secrets = by_kind.get("Secret", {})
configmaps = by_kind.get("ConfigMap", {})


def secret_keys(name):
    doc = secrets[name][1]
    return set((doc.get("stringData") or {}).keys()) | set((doc.get("data") or {}).keys())


def configmap_keys(name):
    doc = configmaps[name][1]
    return set((doc.get("data") or {}).keys()) | set((doc.get("binaryData") or {}).keys())


def check_pod(where, pod_spec, containers_need_probes):
    """Common checks for a pod template's spec; returns the named container ports."""
    ports = {}
    if not isinstance(pod_spec, dict):
        err(where, "has no pod spec")
        return ports
    containers = pod_spec.get("containers") or []
    if not containers:
        err(where, "has no containers")
    volumes = {v.get("name"): v for v in pod_spec.get("volumes") or [] if isinstance(v, dict)}
    for vname, vol in volumes.items():
        if "configMap" in vol:
            cm = dig(vol, "configMap", "name")
            if cm not in configmaps:
                err(where, f"volume {vname} names ConfigMap {cm!r}, which is not defined")
            else:
                for item in dig(vol, "configMap", "items", default=[]) or []:
                    if item.get("key") not in configmap_keys(cm):
                        err(where, f"volume {vname} mounts key {item.get('key')!r}, which ConfigMap {cm} lacks")
        if "secret" in vol:
            sn = dig(vol, "secret", "secretName")
            if sn not in secrets and not dig(vol, "secret", "optional", default=False):
                err(where, f"volume {vname} names Secret {sn!r}, which is not defined")
    pod_non_root = dig(pod_spec, "securityContext", "runAsNonRoot") is True
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        if not c.get("image"):
            err(cw, "has no image")
        for p in c.get("ports") or []:
            if p.get("name"):
                ports[p["name"]] = p.get("containerPort")
        ports.update({p.get("containerPort"): p.get("containerPort") for p in c.get("ports") or []})
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if not dig(res, part, r):
                    err(cw, f"has no resources.{part}.{r}")
        # Non-root, or root only to run steps as another user (`step_user`): every capability
        # dropped but those that switching users and cleaning up after them need.
        step_caps = {"CHOWN", "DAC_OVERRIDE", "KILL", "SETGID", "SETUID"}
        caps = dig(c, "securityContext", "capabilities", default={}) or {}
        root_for_steps = (
            (dig(pod_spec, "securityContext", "runAsUser") == 0 or dig(c, "securityContext", "runAsUser") == 0)
            and "ALL" in (caps.get("drop") or [])
            and set(caps.get("add") or []) <= step_caps
        )
        if not (pod_non_root or dig(c, "securityContext", "runAsNonRoot") is True or root_for_steps):
            err(cw, "does not set runAsNonRoot: true (or run as root with capabilities dropped but "
                    + ", ".join(sorted(step_caps)) + ", for step_user)")
        if dig(c, "securityContext", "readOnlyRootFilesystem") is not True:
            err(cw, "does not set readOnlyRootFilesystem: true")
        if dig(c, "securityContext", "allowPrivilegeEscalation") is not False:
            err(cw, "does not set allowPrivilegeEscalation: false")
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                err(cw, f"mounts volume {m.get('name')!r}, which the pod does not define")
        for ef in c.get("envFrom") or []:
            sn = dig(ef, "secretRef", "name")
            if sn is not None and sn not in secrets and not dig(ef, "secretRef", "optional", default=False):
                err(cw, f"envFrom names Secret {sn!r}, which is not defined")
            cn = dig(ef, "configMapRef", "name")
            if cn is not None and cn not in configmaps:
                err(cw, f"envFrom names ConfigMap {cn!r}, which is not defined")
        for e in c.get("env") or []:
            ref = dig(e, "valueFrom", "secretKeyRef")
            if ref and (ref.get("name") not in secrets or ref.get("key") not in secret_keys(ref.get("name"))):
                err(cw, f"env {e.get('name')} references missing Secret key {ref.get('name')}/{ref.get('key')}")
        if containers_need_probes:
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                got = dig(c, probe, "httpGet", "path")
                if got != path:
                    err(cw, f"{probe} must be an httpGet of {path} (found {got!r})")
                port = dig(c, probe, "httpGet", "port")
                if port is not None and port not in ports:
                    err(cw, f"{probe} targets port {port!r}, which the container does not declare")
            # The config file the bot is told to read is mounted.
            for e in c.get("env") or []:
                if e.get("name", "").endswith("_CONFIG"):
                    mounts = [m.get("mountPath", "").rstrip("/") for m in c.get("volumeMounts") or []]
                    if not any(str(e.get("value", "")).startswith(m + "/") for m in mounts if m):
                        err(cw, f"{e['name']}={e.get('value')} is not under a mounted volume")
    return ports


deployments = by_kind.get("Deployment", {})
if not deployments:
    err("deploy/k8s", "no Deployment")
deployment_ports = {}
for name, (path, doc) in deployments.items():
    w = where_of(path, doc)
    if dig(doc, "spec", "replicas") != 2:
        err(w, f"spec.replicas must be 2 (found {dig(doc, 'spec', 'replicas')!r})")
    sel = dig(doc, "spec", "selector", "matchLabels") or {}
    labels = dig(doc, "spec", "template", "metadata", "labels") or {}
    if not sel:
        err(w, "has no spec.selector.matchLabels")
    elif any(labels.get(k) != v for k, v in sel.items()):
        err(w, "spec.selector.matchLabels does not match the pod template's labels")
    spec = dig(doc, "spec", "template", "spec")
    grace = dig(spec, "terminationGracePeriodSeconds")
    if not isinstance(grace, int) or grace < 25:
        err(w, f"terminationGracePeriodSeconds must be at least 25 (the bots drain within 20 s); found {grace!r}")
    deployment_ports[name] = check_pod(w, spec, True)

for name in ("bobby", "gandalf"):
    if name not in deployments:
        err("deploy/k8s", f"no Deployment named {name}")

jobs = by_kind.get("Job", {})
migration_jobs = []
for name, (path, doc) in jobs.items():
    spec = dig(doc, "spec", "template", "spec")
    check_pod(where_of(path, doc), spec, False)
    if dig(spec, "restartPolicy") not in ("Never", "OnFailure"):
        err(where_of(path, doc), "restartPolicy must be Never or OnFailure")
    for c in dig(spec, "containers", default=[]) or []:
        words = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
        if "migrate" in words:
            migration_jobs.append(name)
            env_names = {e.get("name") for e in c.get("env") or []}
            from_secrets = set()
            for ef in c.get("envFrom") or []:
                sn = dig(ef, "secretRef", "name")
                if sn in secrets:
                    from_secrets |= secret_keys(sn)
            if not ({"DATABASE_URL", "DATABASE_URL_FILE"} & (env_names | from_secrets)):
                err(where_of(path, doc), "the migration gets no DATABASE_URL")
if not migration_jobs:
    err("deploy/k8s", "no Job runs `migrate`")


def pods_selected(selector):
    return [n for n, (_, d) in deployments.items()
            if selector and all((dig(d, "spec", "template", "metadata", "labels") or {}).get(k) == v
                                for k, v in selector.items())]


services = by_kind.get("Service", {})
service_ports = {}
for name, (path, doc) in services.items():
    w = where_of(path, doc)
    selector = dig(doc, "spec", "selector") or {}
    selected = pods_selected(selector)
    if not selector:
        err(w, "has no selector")
    elif not selected:
        err(w, f"selector {selector} matches no Deployment's pod labels")
    ports = dig(doc, "spec", "ports") or []
    if not ports:
        err(w, "has no ports")
    service_ports[name] = set()
    for p in ports:
        service_ports[name] |= {p.get("name"), p.get("port")} - {None}
        target = p.get("targetPort", p.get("port"))
        for dep in selected:
            if target not in deployment_ports.get(dep, {}):
                err(w, f"targetPort {target!r} is not a port of Deployment {dep}'s containers")
for dep in deployments:
    if not any(dep in pods_selected(dig(d, "spec", "selector") or {}) for _, d in services.values()):
        err(f"Deployment/{dep}", "no Service selects its pods")

for name, (path, doc) in by_kind.get("PodDisruptionBudget", {}).items():
    if not pods_selected(dig(doc, "spec", "selector", "matchLabels") or {}):
        err(where_of(path, doc), "selects no Deployment's pods")

ingresses = by_kind.get("Ingress", {})
if not ingresses:
    err("deploy/k8s", "no Ingress")
routes = {}         # (host, path) -> service
for name, (path, doc) in ingresses.items():
    w = where_of(path, doc)
    backends = []
    if dig(doc, "spec", "defaultBackend"):
        backends.append(("*", "default", dig(doc, "spec", "defaultBackend")))
    for rule in dig(doc, "spec", "rules", default=[]) or []:
        for p in dig(rule, "http", "paths", default=[]) or []:
            if p.get("pathType") not in ("Prefix", "Exact", "ImplementationSpecific"):
                err(w, f"path {p.get('path')!r} has pathType {p.get('pathType')!r}")
            backends.append((rule.get("host", "*"), p.get("path"), p.get("backend")))
    if not backends:
        err(w, "routes nothing")
    for host, p, backend in backends:
        svc = dig(backend, "service", "name")
        port = dig(backend, "service", "port", "name") or dig(backend, "service", "port", "number")
        if svc not in services:
            err(w, f"{host}{p} goes to Service {svc!r}, which is not defined")
        elif port not in service_ports[svc]:
            err(w, f"{host}{p} goes to port {port!r} of Service {svc}, which has no such port")
        routes[(host, p)] = svc
    tls_hosts = {h for t in dig(doc, "spec", "tls", default=[]) or [] for h in t.get("hosts") or []}
    for rule in dig(doc, "spec", "rules", default=[]) or []:
        if tls_hosts and rule.get("host") not in tls_hosts:
            err(w, f"host {rule.get('host')} is not covered by spec.tls")


def route_for(host, path):
    """The Service the Ingress sends host+path to (longest matching prefix)."""
    best, best_len = None, -1
    for (h, p), svc in routes.items():
        if h != host or not isinstance(p, str):
            continue
        if path == p or path.startswith(p.rstrip("/") + "/") or p == "/":
            if len(p) > best_len:
                best, best_len = svc, len(p)
    return best


for host, path, want in (
    ("bobby.example.com", "/slack/commands", "bobby"),
    ("bobby.example.com", "/slack/interactions", "bobby"),
    ("bobby.example.com", "/api/v1/environments/env-1/deploy-check", "bobby"),
    ("bobby.example.com", "/", "bobby"),
    ("gandalf.example.com", "/github/webhook", "gandalf"),
    ("gandalf.example.com", "/slack/commands", "gandalf"),
    ("gandalf.example.com", "/slack/interactions", "gandalf"),
    ("gandalf.example.com", "/api/v1/repos/acme/platform/queue", "gandalf"),
    ("gandalf.example.com", "/", "gandalf"),
):
    got = route_for(host, path)
    if ingresses and got != want:
        err("deploy/k8s Ingress", f"{host}{path} must go to {want} (goes to {got})")

# The ConfigMaps' TOML parses and listens where the container port is.
try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None
for bot, port in (("bobby", 8081), ("gandalf", 8082)):
    cm = f"{bot}-config"
    if cm not in configmaps:
        err("deploy/k8s", f"no ConfigMap {cm}")
        continue
    text = (configmaps[cm][1].get("data") or {}).get(f"{bot}.toml")
    if not isinstance(text, str):
        err(f"ConfigMap/{cm}", f"has no {bot}.toml")
        continue
    if tomllib is not None:
        try:
            cfg = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            err(f"ConfigMap/{cm}", f"{bot}.toml is not valid TOML: {e}")
            continue
        listen = str(cfg.get("listen", ""))
        if not listen.endswith(f":{port}"):
            err(f"ConfigMap/{cm}", f"{bot}.toml listens on {listen!r}, not on :{port}")
        if bot in deployment_ports and port not in deployment_ports[bot]:
            err(f"Deployment/{bot}", f"does not declare containerPort {port}")
        # state_dir (mirrors and working copies, SPEC §5.8) is on a volume of the bot's own pods,
        # not the read-only root or the small /tmp.
        state_dir = str(cfg.get("state_dir", "")).rstrip("/")
        pod = dig(deployments.get(bot, ("", {}))[1], "spec", "template", "spec") or {}
        mounted = {
            m.get("mountPath", "").rstrip("/"): m.get("name")
            for c in pod.get("containers") or []
            for m in c.get("volumeMounts") or []
        }
        volumes = {v.get("name"): v for v in pod.get("volumes") or [] if isinstance(v, dict)}
        if not state_dir:
            err(f"ConfigMap/{cm}", f"{bot}.toml sets no state_dir (mirrors and working copies)")
        elif state_dir not in mounted:
            err(f"Deployment/{bot}", f"mounts no volume at state_dir {state_dir}")
        elif not ({"ephemeral", "persistentVolumeClaim"} & set(volumes.get(mounted[state_dir]) or {})):
            err(f"Deployment/{bot}", f"the volume at state_dir {state_dir} is not a sized claim (ephemeral or persistentVolumeClaim)")
        with open(os.path.join(deploy, f"{bot}.example.toml"), "rb") as f:
            example = tomllib.load(f)
        if set(example) != set(cfg):
            err(f"ConfigMap/{cm}", f"{bot}.toml and deploy/{bot}.example.toml have different keys: "
                                   f"{sorted(set(example) ^ set(cfg))}")

# ---------------------------------------------------------------------------------------------
# 3. docker-compose.yml and the Dockerfile.
dockerfile = os.path.join(deploy, "docker", "Dockerfile")
stages = set()
if not os.path.isfile(dockerfile):
    err("deploy/docker/Dockerfile", "missing")
else:
    text = open(dockerfile, encoding="utf-8").read()
    stages = {m.group(1) for m in re.finditer(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", text)}
    for s in ("bobby", "gandalf"):
        if s not in stages:
            err("deploy/docker/Dockerfile", f"has no `{s}` target")
    if not re.search(r"(?m)^USER\s+(?!0\b|root\b)\S+", text):
        err("deploy/docker/Dockerfile", "the runtime images do not switch to a non-root USER")
    if "--locked" not in text:
        err("deploy/docker/Dockerfile", "cargo build must use --locked")

compose_path = os.path.join(deploy, "docker-compose.yml")
compose = (yaml_docs.get(compose_path) or [None])[0]
expected = {"postgres", "migrate", "bobby", "gandalf"}
n_services = 0
if not os.path.isfile(compose_path):
    err("deploy/docker-compose.yml", "missing")
elif isinstance(compose, dict):
    svcs = compose.get("services") or {}
    n_services = len(svcs)
    for s in sorted(expected - set(svcs)):
        err("deploy/docker-compose.yml", f"has no service {s}")
    pg = svcs.get("postgres") or {}
    if not str(pg.get("image", "")).startswith("postgres:16"):
        err("deploy/docker-compose.yml", "postgres must use a postgres:16 image")
    if not dig(pg, "healthcheck", "test"):
        err("deploy/docker-compose.yml", "postgres has no healthcheck")
    mig = svcs.get("migrate") or {}
    cmd = mig.get("command")
    cmd_words = cmd.split() if isinstance(cmd, str) else [str(x) for x in cmd or []]
    if "migrate" not in cmd_words:
        err("deploy/docker-compose.yml", "the migrate service does not run `migrate`")
    if dig(mig, "depends_on", "postgres", "condition") != "service_healthy":
        err("deploy/docker-compose.yml", "migrate must wait for postgres to be healthy")
    for s, port in (("bobby", 8081), ("gandalf", 8082)):
        svc = svcs.get(s) or {}
        if dig(svc, "depends_on", "migrate", "condition") != "service_completed_successfully":
            err("deploy/docker-compose.yml", f"{s} must depend on migrate completing successfully")
        published = [str(p.get("target") if isinstance(p, dict) else str(p).split(":")[-1].split("/")[0])
                     for p in svc.get("ports") or []]
        if str(port) not in published:
            err("deploy/docker-compose.yml", f"{s} does not publish port {port}")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        if not ({"DATABASE_URL", "DATABASE_URL_FILE"} & set(env)):
            err("deploy/docker-compose.yml", f"{s} gets no DATABASE_URL")
        config_var = f"{s.upper()}_CONFIG"
        mounted = {}
        for v in svc.get("volumes") or []:
            parts = str(v).split(":")
            if len(parts) >= 2:
                mounted[parts[1]] = parts[0]
        target = env.get(config_var, f"/etc/{s}/{s}.toml")
        src = mounted.get(target)
        if src is None:
            err("deploy/docker-compose.yml", f"{s}: nothing is mounted at {target}")
        elif src.startswith(".") and not os.path.exists(os.path.join(deploy, src)):
            err("deploy/docker-compose.yml", f"{s} mounts {src}, which does not exist")
        # state_dir (mirrors and working copies) on a named volume of its own.
        if tomllib is not None:
            with open(os.path.join(deploy, f"{s}.example.toml"), "rb") as f:
                state_dir = str(tomllib.load(f).get("state_dir", "")).rstrip("/")
            named = set(compose.get("volumes") or {})
            if state_dir and mounted.get(state_dir) not in named:
                err("deploy/docker-compose.yml", f"{s}: no named volume is mounted at state_dir {state_dir}")
    for s in ("migrate", "bobby", "gandalf"):
        b = (svcs.get(s) or {}).get("build")
        if isinstance(b, dict):
            df = os.path.normpath(os.path.join(deploy, b.get("context", "."), b.get("dockerfile", "Dockerfile")))
            if not os.path.isfile(df):
                err("deploy/docker-compose.yml", f"{s} builds from {rel(df)}, which does not exist")
            elif b.get("target") and os.path.samefile(df, dockerfile) and b["target"] not in stages:
                err("deploy/docker-compose.yml", f"{s} builds target {b['target']}, which the Dockerfile lacks")
        elif b is None and not (svcs.get(s) or {}).get("image"):
            err("deploy/docker-compose.yml", f"{s} has neither build nor image")
elif compose is not None:
    err("deploy/docker-compose.yml", "is not a mapping")

# ---------------------------------------------------------------------------------------------
# 4. The Slack and GitHub manifests call paths the bots serve.
for bot in ("bobby", "gandalf"):
    p = os.path.join(deploy, "slack", f"{bot}.manifest.yml")
    docs = yaml_docs.get(p)
    if not docs:
        continue
    m = docs[0]
    urls = [c.get("url") for c in dig(m, "features", "slash_commands", default=[]) or []]
    if not any(str(u).endswith("/slack/commands") for u in urls):
        err(rel(p), "the slash command's url must end in /slack/commands")
    if not str(dig(m, "settings", "interactivity", "request_url", default="")).endswith("/slack/interactions"):
        err(rel(p), "the interactivity request_url must end in /slack/interactions")
gh = os.path.join(deploy, "github", "gandalf-app.manifest.json")
if os.path.isfile(gh):
    try:
        app = json.load(open(gh, encoding="utf-8"))
        if not str(dig(app, "hook_attributes", "url", default="")).endswith("/github/webhook"):
            err(rel(gh), "hook_attributes.url must end in /github/webhook")
    except ValueError:
        pass

# ---------------------------------------------------------------------------------------------
if errors:
    print(f"deploy/validate.sh: {len(errors)} problem(s):", file=sys.stderr)
    for e in errors:
        print(f"  - {e}", file=sys.stderr)
    sys.exit(1)

kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
n_yaml = sum(len(d) for d in yaml_docs.values())
print(f"deploy/validate.sh: ok — {len(yaml_docs)} YAML files ({n_yaml} documents) and {json_files} JSON "
      f"files parse; Kubernetes: {kinds} ({schema}); compose: {n_services} services; Dockerfile targets: bobby, gandalf")
PY
