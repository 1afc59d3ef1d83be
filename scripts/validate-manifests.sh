#!/usr/bin/env bash
# Validates the Kubernetes manifests offline: lints every YAML file with yamllint (strict, with
# deploy/kubernetes/.yamllint), checks every object against the Kubernetes API schemas of one
# pinned Kubernetes version (kubernetes-validate ships them; strict, so a misspelt field fails
# as well as a wrong type), checks the Istio objects against schemas written here, parses the
# TOML and JSON held in ConfigMaps, and checks that the pieces fit together (selectors, ports,
# the config file's path, the termination grace period against the drain settings, each
# Kustomization's resources). When kubectl is installed, each Kustomization is also rendered
# (`kubectl kustomize`, offline), with every component enabled too, and the result checked.
#
#   scripts/validate-manifests.sh [DIRECTORY]     (default: deploy/kubernetes)
#
# Exits non-zero on any problem. The tools are installed into .venv-manifests at the
# repository root (Python 3 with venv and access to PyPI, the first time); idempotent and safe
# to run in parallel: a lock serialises installs, and a stamp skips work when the pins did not
# change.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$(cd "${1:-$root/deploy/kubernetes}" && pwd)"
venv="$root/.venv-manifests"
stamp="$venv/.installed"

# The Kubernetes version the manifests must be valid for: the oldest one they are meant to
# run on (every field used here exists in it; newer versions keep these stable APIs).
kubernetes_version="1.30.0"

# Exact versions, the transitive ones included, so every machine checks the same way.
requirements='kubernetes-validate==1.37.0
yamllint==1.38.0
attrs==26.1.0
importlib_resources==7.1.0
jsonschema==4.26.0
jsonschema-specifications==2025.9.1
packaging==26.4
pathspec==1.1.1
PyYAML==6.0.4
referencing==0.37.0
rpds-py==2026.9.1
typing_extensions==4.16.0
tomli==2.5.0 ; python_version < "3.11"'

mkdir -p "$venv"
exec 9>"$venv/.lock"
flock 9
inputs="$(python3 --version 2>&1)
$requirements"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$inputs" ]]; then
  # A fresh environment (the lock file stays: it is held).
  find "$venv" -mindepth 1 -maxdepth 1 ! -name .lock -exec rm -rf {} +
  python3 -m venv "$venv"
  printf '%s\n' "$requirements" >"$venv/requirements.txt"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$venv/requirements.txt"
  printf '%s\n' "$inputs" >"$stamp"
  echo "manifest tools installed in $venv" >&2
fi
flock -u 9
exec 9>&-

status=0

echo "== yamllint (strict) on $target"
if "$venv/bin/yamllint" --strict --format parsable -c "$root/deploy/kubernetes/.yamllint" "$target"; then
  echo "yamllint: clean"
else
  echo "yamllint: problems above"
  status=1
fi

echo "== schemas (Kubernetes $kubernetes_version, strict) and consistency"
if ! "$venv/bin/python" - "$target" "$kubernetes_version" <<'PYTHON'; then
"""Checks the manifests under a directory; prints each problem and exits 1 when there is one."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python before 3.11
    import tomli as tomllib

TARGET = Path(sys.argv[1])
VERSION = sys.argv[2]
KUSTOMIZE_FILES = ("Kustomization", "kustomization.yaml", "kustomization.yml")
CLUSTER_SCOPED = {
    "Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "StorageClass",
    "CustomResourceDefinition", "PersistentVolume", "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration", "IngressClass", "RuntimeClass",
}

problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def stopped(kind, value, traceback):
    """Input too malformed for a check (say, a list where a mapping belongs): report, exit 1."""
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"PROBLEM the checks stopped on malformed input ({kind.__name__}: {value})")


sys.excepthook = stopped


def shown(path):
    """A path as the person running this would type it: from the current directory when under it."""
    relative = os.path.relpath(path)
    return str(path) if relative.startswith("..") else relative


# --- Schemas for what kubernetes-validate has none of (written from the Istio and kustomize
# --- references; strict, like the Kubernetes ones).

STRINGS = {"type": "array", "items": {"type": "string"}}
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "namespace": {"type": "string"},
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
    },
    "additionalProperties": False,
}
SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": STRING_MAP},
    "additionalProperties": False,
}
TARGET_REF = {
    "type": "object",
    "required": ["kind", "name"],
    "properties": {k: {"type": "string"} for k in ("group", "kind", "name", "namespace")},
    "additionalProperties": False,
}
MTLS = {
    "type": "object",
    "properties": {"mode": {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}},
    "additionalProperties": False,
}
SOURCE_FIELDS = (
    "principals", "requestPrincipals", "namespaces", "ipBlocks", "remoteIpBlocks", "serviceAccounts",
)
SOURCE = {
    "type": "object",
    "properties": {
        **{f: STRINGS for f in SOURCE_FIELDS},
        **{"not" + f[0].upper() + f[1:]: STRINGS for f in SOURCE_FIELDS},
    },
    "additionalProperties": False,
}
OPERATION_FIELDS = ("hosts", "ports", "methods", "paths")
OPERATION = {
    "type": "object",
    "properties": {
        **{f: STRINGS for f in OPERATION_FIELDS},
        **{"not" + f[0].upper() + f[1:]: STRINGS for f in OPERATION_FIELDS},
    },
    "additionalProperties": False,
}
RULE = {
    "type": "object",
    "properties": {
        "from": {
            "type": "array",
            "items": {"type": "object", "required": ["source"], "properties": {"source": SOURCE},
                      "additionalProperties": False},
        },
        "to": {
            "type": "array",
            "items": {"type": "object", "required": ["operation"], "properties": {"operation": OPERATION},
                      "additionalProperties": False},
        },
        "when": {
            "type": "array",
            "items": {"type": "object", "required": ["key"],
                      "properties": {"key": {"type": "string"}, "values": STRINGS, "notValues": STRINGS},
                      "additionalProperties": False},
        },
    },
    "additionalProperties": False,
}


def istio_object(kind, spec):
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
        "additionalProperties": False,
    }


PEER_AUTHENTICATION = istio_object("PeerAuthentication", {
    "type": "object",
    "properties": {
        "selector": SELECTOR,
        "mtls": MTLS,
        "portLevelMtls": {
            "type": "object",
            "propertyNames": {"pattern": "^[1-9][0-9]{0,4}$"},
            "additionalProperties": MTLS,
        },
    },
    "additionalProperties": False,
})
AUTHORIZATION_POLICY = istio_object("AuthorizationPolicy", {
    "type": "object",
    "properties": {
        "selector": SELECTOR,
        "targetRef": TARGET_REF,
        "targetRefs": {"type": "array", "items": TARGET_REF},
        "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
        "provider": {"type": "object", "properties": {"name": {"type": "string"}},
                     "additionalProperties": False},
        "rules": {"type": "array", "items": RULE},
    },
    "additionalProperties": False,
})
LOCAL_SCHEMAS = {
    (f"security.istio.io/{v}", kind): schema
    for v in ("v1", "v1beta1")
    for kind, schema in (("PeerAuthentication", PEER_AUTHENTICATION),
                         ("AuthorizationPolicy", AUTHORIZATION_POLICY))
}

PATCH = {
    "type": "object",
    "properties": {
        "path": {"type": "string"},
        "patch": {"type": "string"},
        "target": {
            "type": "object",
            "properties": {k: {"type": "string"} for k in (
                "group", "version", "kind", "name", "namespace", "labelSelector", "annotationSelector")},
            "additionalProperties": False,
        },
        "options": {"type": "object"},
    },
    "additionalProperties": False,
}


def kustomize_schema(api_version, kind):
    return {
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "resources": STRINGS,
            "components": STRINGS,
            "patches": {"type": "array", "items": PATCH},
            "namespace": {"type": "string"},
            "namePrefix": {"type": "string"},
            "nameSuffix": {"type": "string"},
            "labels": {"type": "array", "items": {"type": "object"}},
            "commonAnnotations": STRING_MAP,
            "images": {"type": "array", "items": {
                "type": "object", "required": ["name"],
                "properties": {k: {"type": "string"} for k in ("name", "newName", "newTag", "digest")},
                "additionalProperties": False}},
            "replicas": {"type": "array", "items": {
                "type": "object", "required": ["name", "count"],
                "properties": {"name": {"type": "string"}, "count": {"type": "integer"}},
                "additionalProperties": False}},
            "configMapGenerator": {"type": "array", "items": {"type": "object"}},
            "secretGenerator": {"type": "array", "items": {"type": "object"}},
            "generatorOptions": {"type": "object"},
        },
        "additionalProperties": False,
    }


KUSTOMIZE_SCHEMAS = {
    "Kustomization": kustomize_schema("kustomize.config.k8s.io/v1beta1", "Kustomization"),
    "Component": kustomize_schema("kustomize.config.k8s.io/v1alpha1", "Component"),
}


def schema_errors(schema, document):
    errors = jsonschema.Draft202012Validator(schema).iter_errors(document)
    return [(".".join(str(p) for p in e.path) or "(top)", e.message)
            for e in sorted(errors, key=lambda e: [str(p) for p in e.path])]


# --- One object against its schema.

def check_object(document, where):
    """Validates one object; returns (kind, namespace, name) when it is well-formed enough."""
    if not isinstance(document, dict):
        problem(where, "a document that is not a mapping")
        return None
    api_version, kind = document.get("apiVersion"), document.get("kind")
    metadata = document.get("metadata")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        problem(where, "apiVersion and kind must both be set")
        return None
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        problem(where, f"{kind}: metadata.name must be set")
        return None
    name = f"{kind}/{metadata['name']}"
    local = LOCAL_SCHEMAS.get((api_version, kind))
    if local is not None:
        for path, message in schema_errors(local, document):
            problem(f"{where}: {name}", f"{path}: {message}")
    else:
        try:
            kubernetes_validate.validate(document, VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(p) for p in error.path) or "(top)"
            problem(f"{where}: {name}", f"{path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problem(f"{where}: {name}",
                    f"no schema for kind {kind} in {api_version} (Kubernetes {VERSION}): "
                    "a misspelt kind or apiVersion, or an API this version does not serve")
    return kind, metadata.get("namespace"), metadata["name"]


def load_documents(path):
    try:
        return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem(shown(path), f"not YAML: {error}")
        return []


# --- The files under the target.

def is_kustomize_file(path):
    return path.name in KUSTOMIZE_FILES


def is_manifest(path):
    return path.suffix in (".yaml", ".yml") and not is_kustomize_file(path)


files = sorted(p for p in TARGET.rglob("*") if p.is_file())
manifests = [p for p in files if is_manifest(p)]
kustomize_files = [p for p in files if is_kustomize_file(p)]
if not manifests:
    problem(str(TARGET), "no manifests (*.yaml, *.yml) found")

objects = {}  # (kind, namespace, name) -> (document, file)
for path in manifests:
    for document in load_documents(path):
        before = len(problems)
        key = check_object(document, shown(path))
        if key is None:
            continue
        kind, namespace, name = key
        if kind not in CLUSTER_SCOPED and not namespace:
            problem(f"{shown(path)}: {kind}/{name}",
                    "metadata.namespace is not set, so `kubectl apply -f` would put it in "
                    "whatever namespace the current context names")
        if key in objects:
            problem(f"{shown(path)}: {kind}/{name}", f"also defined in {shown(objects[key][1])}")
        objects[key] = (document, path)
        if len(problems) == before:
            print(f"schema ok  {shown(path)}  {kind}/{name}")


# --- ConfigMap contents that the workload parses.

def config_maps():
    for (kind, namespace, name), (document, path) in objects.items():
        if kind == "ConfigMap":
            yield namespace, name, document.get("data") or {}, path


for namespace, name, data, path in config_maps():
    for key, value in data.items():
        if not isinstance(value, str):
            continue  # reported by the schema
        where = f"{shown(path)}: ConfigMap/{name}: data.{key}"
        if key.endswith(".toml"):
            try:
                tomllib.loads(value)
            except tomllib.TOMLDecodeError as error:
                problem(where, f"not TOML: {error}")
        elif key.endswith(".json"):
            try:
                json.loads(value)
            except json.JSONDecodeError as error:
                problem(where, f"not JSON: {error}")


# --- Do the pieces fit together?

DURATION = re.compile(r"^(\d+)(ms|s|m|h)$")
SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def duration(text, default):
    if text is None:
        return default
    match = DURATION.match(str(text))
    return int(match.group(1)) * SECONDS[match.group(2)] if match else None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


workloads = [
    (namespace, name, document, path)
    for (kind, namespace, name), (document, path) in objects.items()
    if kind in ("Deployment", "StatefulSet", "DaemonSet")
]


def pod_of(document):
    template = (document.get("spec") or {}).get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


# The schemas take any string as a quantity; the API server would refuse "lots" or "128MB".
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+|[numkMGTPE]|[KMGTPE]i)?$")

for namespace, name, document, path in workloads:
    where = f"{shown(path)}: {document['kind']}/{name}"
    labels, pod = pod_of(document)
    for container in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        for bound in ("requests", "limits"):
            for resource, value in ((container.get("resources") or {}).get(bound) or {}).items():
                if not QUANTITY.match(str(value)):
                    problem(f"{where}: container {container.get('name')}",
                            f"resources.{bound}.{resource}: {value!r} is not a Kubernetes quantity")
    selector = ((document.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not selects(selector, labels):
        problem(where, "spec.selector does not select the pod template's labels")
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for container in pod.get("containers") or []:
        cwhere = f"{where}: container {container.get('name')}"
        ports = {p.get("containerPort") for p in container.get("ports") or []}
        names = {p.get("name") for p in container.get("ports") or []}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            for handler in ("grpc", "tcpSocket", "httpGet"):
                port = ((container.get(probe) or {}).get(handler) or {}).get("port")
                if port is not None and port not in ports and port not in names:
                    problem(cwhere, f"{probe} checks port {port}, which the container does not declare")
        arguments = list(container.get("command") or []) + list(container.get("args") or [])
        if "--config" not in arguments[:-1]:
            continue
        config_path = arguments[arguments.index("--config") + 1]
        mount = next((m for m in container.get("volumeMounts") or []
                      if config_path.startswith(m.get("mountPath", "").rstrip("/") + "/")), None)
        source = (volumes.get(mount.get("name")) or {}).get("configMap") if mount else None
        if source is None:
            problem(cwhere, f"--config {config_path} is not on a mounted ConfigMap")
            continue
        config_map = objects.get(("ConfigMap", namespace, source.get("name")))
        if config_map is None:
            continue  # defined elsewhere
        key = config_path[len(mount["mountPath"].rstrip("/")) + 1:]
        text = (config_map[0].get("data") or {}).get(key)
        if text is None:
            problem(cwhere, f"--config {config_path}: ConfigMap/{source.get('name')} has no key {key}")
            continue
        try:
            server = tomllib.loads(text).get("server") or {}
        except tomllib.TOMLDecodeError:
            continue  # reported above
        drain = duration(server.get("drain_delay"), 5)
        grace = duration(server.get("shutdown_grace"), 30)
        period = pod.get("terminationGracePeriodSeconds", 30)
        if not isinstance(period, int):
            continue  # reported by the schema
        if drain is None or grace is None:
            problem(cwhere, "server.drain_delay or server.shutdown_grace is not a duration such as \"10s\"")
        elif period <= drain + grace:
            problem(where, f"terminationGracePeriodSeconds ({period}) must exceed drain_delay + "
                           f"shutdown_grace ({drain + grace:g} s), or the kubelet kills calls in flight")


def check_selects_workload(kind, name, namespace, selector, path):
    candidates = [w for w in workloads if w[0] == namespace]
    if candidates and not any(selects(selector, pod_of(w[2])[0]) for w in candidates):
        problem(f"{shown(path)}: {kind}/{name}", f"selector {selector} matches no pods defined here")


for (kind, namespace, name), (document, path) in objects.items():
    spec = document.get("spec") or {}
    if kind == "Service" and spec.get("selector"):
        check_selects_workload(kind, name, namespace, spec["selector"], path)
        for w in workloads:
            if w[0] == namespace and selects(spec["selector"], pod_of(w[2])[0]):
                declared = {p.get("name") for c in pod_of(w[2])[1].get("containers") or []
                            for p in c.get("ports") or []}
                for port in spec.get("ports") or []:
                    target_port = port.get("targetPort")
                    if isinstance(target_port, str) and target_port not in declared:
                        problem(f"{shown(path)}: Service/{name}",
                                f"targetPort {target_port} is not a port name of {w[1]}")
    elif kind in ("PodDisruptionBudget", "NetworkPolicy"):
        field = "selector" if kind == "PodDisruptionBudget" else "podSelector"
        selector = (spec.get(field) or {}).get("matchLabels") or {}
        if selector:
            check_selects_workload(kind, name, namespace, selector, path)
    elif kind in ("PeerAuthentication", "AuthorizationPolicy"):
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        if selector:
            check_selects_workload(kind, name, namespace, selector, path)
    elif kind == "HorizontalPodAutoscaler":
        ref = spec.get("scaleTargetRef") or {}
        if workloads and not any(w[0] == namespace and w[1] == ref.get("name") and
                                 w[2].get("kind") == ref.get("kind") for w in workloads):
            problem(f"{shown(path)}: {kind}/{name}",
                    f"scaleTargetRef {ref.get('kind')}/{ref.get('name')} is not defined here")


# --- Kustomizations: well-formed, listing what exists, and missing nothing.

roots = []  # directories with a Kustomization (not a Component), to render
components = []
for path in kustomize_files:
    documents = load_documents(path)
    if len(documents) != 1 or not isinstance(documents[0], dict):
        problem(shown(path), "must hold exactly one mapping")
        continue
    document = documents[0]
    kind = document.get("kind")
    if kind not in KUSTOMIZE_SCHEMAS:
        problem(shown(path), "kind must be Kustomization or Component")
        continue
    for where, message in schema_errors(KUSTOMIZE_SCHEMAS[kind], document):
        problem(shown(path), f"{where}: {message}")
    (roots if kind == "Kustomization" else components).append(path.parent)
    here = path.parent
    listed = set()
    for entry in document.get("resources") or []:
        resource = (here / entry).resolve()
        listed.add(resource)
        if resource.is_dir():
            if not any((resource / n).is_file() for n in KUSTOMIZE_FILES):
                problem(shown(path), f"resource {entry} is a directory without a Kustomization")
        elif not resource.is_file():
            problem(shown(path), f"resource {entry} does not exist")
    for entry in document.get("components") or []:
        component = (here / entry).resolve()
        if not any((component / n).is_file() for n in KUSTOMIZE_FILES):
            problem(shown(path), f"component {entry} is not a directory with a Component")
    for manifest in manifests:
        if manifest.parent == here and manifest.resolve() not in listed:
            problem(shown(path), f"does not list {manifest.name}, so `kubectl apply -k` would leave it out")
    for sub in sorted(p for p in here.iterdir() if p.is_dir()):
        sub_file = next((sub / n for n in KUSTOMIZE_FILES if (sub / n).is_file()), None)
        if sub_file is None or sub.resolve() in listed:
            continue
        sub_docs = load_documents(sub_file)
        if sub_docs and isinstance(sub_docs[0], dict) and sub_docs[0].get("kind") == "Kustomization":
            problem(shown(path), f"does not include {sub.name}/, so `kubectl apply -k` would leave it out")


# --- Render with kubectl when it is here, and check what comes out.

def render_and_check(directory, label):
    result = subprocess.run(["kubectl", "kustomize", str(directory)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        problem(label, f"kubectl kustomize failed: {result.stderr.strip()}")
        return
    count = 0
    for document in yaml.safe_load_all(result.stdout):
        if document is not None:
            check_object(document, label)
            count += 1
    print(f"renders ok  {label}: {count} objects")


kubectl = shutil.which("kubectl")
if kustomize_files and kubectl is None:
    print("kubectl not found: Kustomizations checked for structure only, not rendered")
elif kubectl is not None:
    for directory in roots:
        render_and_check(directory, f"kubectl kustomize {shown(directory)}")
    top = TARGET if TARGET in roots else None
    if top is not None and components:
        # The top Kustomization with every component switched on, from a copy (kustomize
        # refuses a component that includes its parent, and the real files stay untouched).
        with tempfile.TemporaryDirectory() as scratch:
            tree = Path(scratch) / "tree"
            shutil.copytree(TARGET, tree)
            wrapper = Path(scratch) / "all"
            wrapper.mkdir()
            (wrapper / "kustomization.yaml").write_text(yaml.safe_dump({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../tree"],
                "components": [
                    os.path.join("../tree", os.path.relpath(c, TARGET)) for c in components
                ],
            }))
            names = ", ".join(shown(c) for c in components)
            render_and_check(wrapper, f"kubectl kustomize {shown(TARGET)} with {names}")

if problems:
    print()
    for line in problems:
        print(f"PROBLEM {line}")
    print(f"{len(problems)} problem(s) found")
    sys.exit(1)
print(f"{len(objects)} objects in {len(manifests)} files valid against Kubernetes {VERSION}")
PYTHON
  status=1
fi

if [[ $status -ne 0 ]]; then
  echo "manifest validation FAILED" >&2
  exit 1
fi
echo "manifests valid"
