"""CardGuard on Kubernetes, offline: render the Helm chart (``deploy/helm/cardguard``) with
helm-python-sdk (Helm v4 as a library: no helm binary, no cluster), validate every object strictly
against the Kubernetes 1.33 schemas with kubernetes-validate, and check the properties a rollout
without downtime needs (``properties``). ``rollout_timeline`` computes what a rolling update does,
pod by pod, from the chart's values.

Nothing here talks to a cluster: lab 10 and ``tests/test_helm.py`` use it as they are.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import LabError

CHART = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "cardguard"
KUBERNETES_VERSION = "1.33"
RELEASE = "cardguard"
PORT = 8000


def _chart_dir(chart: str | Path | None) -> Path:
    path = Path(chart) if chart is not None else CHART
    if not (path / "Chart.yaml").is_file():
        raise LabError(f"No Helm chart at {path} (no Chart.yaml): the course's chart is deploy/helm/cardguard in the "
                       "repository; pass chart= the folder that holds Chart.yaml.")
    return path


def _helm():
    try:
        import helm_python
    except ImportError as exc:  # pragma: no cover - pinned in requirements.txt
        raise LabError("helm-python-sdk is not installed: `pip install -r requirements.txt` installs it "
                       "(Helm as a library; no helm binary is needed)") from exc
    return helm_python


def render(values: dict | None = None, *, chart: str | Path | None = None, name: str = RELEASE,
           namespace: str = "default") -> list[dict]:
    """The chart rendered offline with ``values`` (merged over its defaults, checked by its
    values.schema.json): the Kubernetes objects, as dicts, in template order. Bad values raise
    LabError with Helm's message, which names the value."""
    import yaml

    if values is not None and not isinstance(values, dict):
        raise LabError(f"values must be a dict of chart values (as in values.yaml), not {type(values).__name__}")
    helm = _helm()
    values = _plain(values)
    try:
        with helm.Chart.load(_chart_dir(chart)) as loaded:
            manifests = loaded.render(values=values or {}, name=name, namespace=namespace, is_install=True)
    except helm.HelmError as exc:
        raise LabError(f"the chart does not render with these values: {_helm_message(exc)}") from None
    objects = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    order = {"Deployment": 0, "Service": 1, "HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 3, "NetworkPolicy": 4}
    return sorted(objects, key=lambda o: order.get(o.get("kind"), 9))


def _plain(value: Any) -> Any:
    """Values with numpy's numbers as Python's (Helm takes them as JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        return int(value)
    if isinstance(value, numbers.Real) and not isinstance(value, int | float):
        return float(value)
    return value


def _helm_message(exc: Exception) -> str:
    text = str(exc)
    text = re.sub(r"^.*?error calling fail: ", "", text, flags=re.S)  # a template's own fail message
    return text.strip()


def notes(values: dict | None = None, *, chart: str | Path | None = None, name: str = RELEASE) -> str:
    """The chart's NOTES.txt as Helm prints it after an install."""
    helm = _helm()
    with helm.Chart.load(_chart_dir(chart)) as loaded:
        manifests = loaded.render(values=values or {}, name=name, is_install=True)
    return next((text for template, text in manifests.items() if template.endswith("NOTES.txt")), "")


def lint(values: dict | None = None, *, chart: str | Path | None = None) -> list[str]:
    """``helm lint --strict`` against Kubernetes 1.33: warnings and errors (an empty list: clean)."""
    helm = _helm()
    report = helm.lint(str(_chart_dir(chart)), values, strict=True, kube_version=f"v{KUBERNETES_VERSION}.0")
    found = [f"{m['path']}: {m['error']}" for m in report["messages"] if m["severity"] >= 2]
    return found + [str(e) for e in report.get("errors") or [] if str(e) not in " ".join(found)]


def validate(objects: list[dict], version: str = KUBERNETES_VERSION) -> list[str]:
    """Validate every object strictly (unknown fields are errors) against the official schemas of
    Kubernetes ``version``. Returns one line per problem, naming the object and the field."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        where = f"{obj.get('kind', '?')} {obj.get('metadata', {}).get('name', '?')}"
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "(top)"
            problems.append(f"{where}: {path}: {exc.message}")
        except (kubernetes_validate.SchemaNotFoundError, KeyError) as exc:
            problems.append(f"{where}: no Kubernetes {version} schema for it ({exc})")
    return problems


def find(objects: list[dict], kind: str) -> dict | None:
    """The first object of ``kind`` (``"Deployment"``, ``"Service"``, ...), or None."""
    return next((o for o in objects if o.get("kind") == kind), None)


def container(objects: list[dict], name: str = "server") -> dict:
    """The serving container of the rendered Deployment."""
    deployment = find(objects, "Deployment")
    if deployment is None:
        raise LabError("the rendered chart has no Deployment")
    containers = deployment["spec"]["template"]["spec"].get("containers", [])
    return next((c for c in containers if c.get("name") == name), containers[0] if containers else {})


# ------------------------------------------------------------------ quantities and int-or-percent

_SUFFIX = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
           "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000), "": 1,
           "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18}
_QUANTITY = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?\d+)?$")


def quantity(value: Any) -> float:
    """A Kubernetes quantity as a number: ``"320Mi"`` -> 335544320.0 (bytes), ``"500m"`` -> 0.5 (cores).
    Raises ValueError for what Kubernetes would refuse (``"320MB"``, ``"1.5 Gi"``)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a Kubernetes quantity")
    if isinstance(value, int | float):
        return float(value)
    match = _QUANTITY.match(value.strip()) if value == value.strip() else None
    if match is None:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (write 320Mi, 0.5Gi, 500m, 2)")
    number, suffix = Fraction(match.group(1)), match.group(2) or ""
    if suffix[:1] in ("e", "E"):
        return float(number * Fraction(10) ** int(suffix[1:]))
    return float(number * _SUFFIX[suffix])


def mib(value: Any) -> float:
    """A memory quantity in MiB."""
    return quantity(value) / 2**20


def resolve(value: Any, replicas: int, round_up: bool) -> int:
    """A Deployment's maxSurge/maxUnavailable (an int or ``"25%"``) as a number of pods at ``replicas``:
    Kubernetes rounds maxSurge up and maxUnavailable down."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is neither a number of pods nor a percentage")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # YAML and JSON may say 1.0; Kubernetes reads a whole number
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d+%", value):
        share = Fraction(int(value[:-1]), 100) * replicas
        return math.ceil(share) if round_up else math.floor(share)
    raise ValueError(f"{value!r} is neither a number of pods (1) nor a percentage ('25%')")


def replica_counts(objects: list[dict]) -> list[int]:
    """Every replica count the Deployment can run at: the HPA's range, else its ``replicas``."""
    hpa = find(objects, "HorizontalPodAutoscaler")
    if hpa is not None:
        return list(range(hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"] + 1))
    return [find(objects, "Deployment")["spec"].get("replicas", 1)]


# ------------------------------------------------------------------ the properties of a rollout without downtime


@dataclass(frozen=True)
class Property:
    name: str
    check: Callable[[list[dict]], str | None]  # None when it holds, else what is wrong


PROPERTIES: list[Property] = []


def _property(name: str):
    def register(func):
        PROPERTIES.append(Property(name, func))
        return func
    return register


def _pod(objects) -> dict:
    return find(objects, "Deployment")["spec"]["template"]["spec"]


def _http_path(probe: dict | None) -> str | None:
    return ((probe or {}).get("httpGet") or {}).get("path")


# What turns 503 both while the model loads and from the instant SIGTERM starts the drain (/ping calls
# /ready's handler; /version keeps answering 200 while the pod drains).
READY_ENDPOINTS = ("/ready", "/ping")


def ready_endpoint(path: Any) -> str | None:
    """The endpoint a kubelet's GET ``path`` reaches on CardGuard's server: the query string reaches
    the app (which ignores it), a fragment is never sent, and one trailing slash is redirected (307)
    to the path without it, a redirect the kubelet follows on the same host. None for a path that is
    not absolute (Kubernetes would send it as it stands, and the server has no such route)."""
    if not isinstance(path, str) or not path.startswith("/"):
        return None
    path = path.split("#", 1)[0].split("?", 1)[0]
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


# Kubernetes' SetDefaults_Probe: a field left out or set to 0 takes these values.
PROBE_DEFAULTS = {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 1, "successThreshold": 1}


def probe_setting(probe: dict, field: str) -> Any:
    """A probe's timing field as the kubelet uses it: left out or 0 means Kubernetes' default."""
    value = (probe or {}).get(field)
    return PROBE_DEFAULTS[field] if value in (None, 0) and not isinstance(value, bool) else value


def readiness_path_problem(path: Any) -> str | None:
    """Why a readiness probe on GET ``path`` would let traffic reach a pod that cannot score it (the one
    rule the chart's property and lab 10's check share), or None."""
    if not isinstance(path, str) or not path.startswith("/"):
        return f"the path {path!r} must start with '/': write '/ready'"
    endpoint = ready_endpoint(path)
    if endpoint == "/version":
        return ("GET /version answers 200 while the pod drains after SIGTERM: the Service would keep sending "
                "payments to a pod that is shutting down. /ready turns 503 at once")
    if endpoint not in READY_ENDPOINTS:
        return f"GET {path} is not /ready: it must call GET /ready (200 only once the model answers, 503 while draining)"
    return None


def _probe_port_ok(probe: dict, server: dict) -> bool:
    port = (probe.get("httpGet") or {}).get("port")
    names = {p.get("name"): p.get("containerPort") for p in server.get("ports", [])}
    return port in names.values() or (isinstance(port, str) and port in names)


@_property("rolling update with maxUnavailable 0")
def _rolling_update(objects):
    strategy = find(objects, "Deployment")["spec"].get("strategy") or {}
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return f"strategy type is {strategy.get('type')}: every old pod stops before a new one starts"
    rolling = strategy.get("rollingUpdate") or {}
    for replicas in replica_counts(objects):
        try:
            unavailable = resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
            surge = resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        except ValueError as exc:
            return str(exc)
        if unavailable != 0:
            return (f"at {replicas} replicas maxUnavailable allows {unavailable} pod(s) out of service during a "
                    "rollout: set it to 0")
        if surge < 1:
            return f"at {replicas} replicas maxSurge is 0 (with maxUnavailable 0, the rollout cannot start)"
    return None


@_property("readiness probe on GET /ready")
def _readiness(objects):
    server = container(objects)
    probe = server.get("readinessProbe")
    why = readiness_path_problem(_http_path(probe)) if (probe or {}).get("httpGet") else "it has no httpGet"
    if why:
        return f"readinessProbe is {probe!r}: {why}"
    if not _probe_port_ok(probe, server):
        return f"readinessProbe calls port {probe['httpGet'].get('port')!r}, not the container's port"
    return None


@_property("liveness probe on /health")
def _liveness(objects):
    server = container(objects)
    if _http_path(server.get("livenessProbe")) != "/health":
        return "livenessProbe must call /health (up while the process is up, whatever the model does)"
    return None


@_property("startup probe covers model loading")
def _startup(objects):
    probe = container(objects).get("startupProbe") or {}
    if ready_endpoint(_http_path(probe)) not in READY_ENDPOINTS:
        return "startupProbe must wait for /ready: liveness starts only after it, so a slow model load is not killed"
    budget = probe_setting(probe, "periodSeconds") * probe_setting(probe, "failureThreshold")
    if budget < 30:
        return f"the startup probe gives the model {budget} s to load; give it at least 30 s"
    return None


@_property("resource requests and limits")
def _resources(objects):
    resources = container(objects).get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    for key in ("cpu", "memory"):
        if key not in requests:
            return f"no {key} request: the scheduler and the autoscaler need resources.requests.{key}"
    if "memory" not in limits:
        return "no memory limit: a leak would take memory from every pod on the node"
    try:
        if quantity(limits["memory"]) < quantity(requests["memory"]):
            return "the memory limit is below the memory request"
    except ValueError as exc:
        return str(exc)
    return None


@_property("runs as non-root")
def _non_root(objects):
    pod = _pod(objects)
    server = container(objects)
    if not ((pod.get("securityContext") or {}).get("runAsNonRoot")
            or (server.get("securityContext") or {}).get("runAsNonRoot")):
        return "runAsNonRoot is not set: the kubelet would start the container as root if the image says so"
    return None


@_property("read-only root filesystem")
def _read_only(objects):
    if not (container(objects).get("securityContext") or {}).get("readOnlyRootFilesystem"):
        return "readOnlyRootFilesystem is not true"
    return None


@_property("no privilege escalation")
def _no_escalation(objects):
    if (container(objects).get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
        return "allowPrivilegeEscalation must be false"
    return None


@_property("capabilities dropped")
def _capabilities(objects):
    drop = ((container(objects).get("securityContext") or {}).get("capabilities") or {}).get("drop") or []
    if "ALL" not in drop:
        return "capabilities.drop must list ALL"
    return None


@_property("preStop pause")
def _pre_stop(objects):
    if _pre_stop_seconds(objects) <= 0:
        return "no preStop pause: SIGTERM would arrive while endpoints still send the pod traffic"
    return None


def _pre_stop_seconds(objects) -> int:
    pre_stop = ((container(objects).get("lifecycle") or {}).get("preStop")) or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"].get("seconds", 0))
    command = (pre_stop.get("exec") or {}).get("command") or []
    numbers = [int(w) for w in command if isinstance(w, str) and w.isdigit()]
    return numbers[0] if command and "sleep" in " ".join(map(str, command)) and numbers else 0


def _drain_seconds(objects) -> int:
    env = {e.get("name"): e.get("value") for e in container(objects).get("env") or []}
    try:
        return int(float(env.get("MLOPS_LAB_DRAIN_SECONDS") or 0))
    except ValueError:
        return 0


@_property("grace period covers preStop and drain")
def _grace(objects):
    grace = _pod(objects).get("terminationGracePeriodSeconds", 30)
    needed = _pre_stop_seconds(objects) + _drain_seconds(objects) + 5
    if grace < needed:
        return (f"terminationGracePeriodSeconds is {grace}: preStop ({_pre_stop_seconds(objects)} s) + drain "
                f"({_drain_seconds(objects)} s) + 5 s for in-flight requests need {needed}")
    return None


@_property("a Service in front of the pods")
def _service(objects):
    service, deployment = find(objects, "Service"), find(objects, "Deployment")
    if service is None:
        return "no Service"
    labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
    if not service["spec"].get("selector") or any(labels.get(k) != v for k, v in service["spec"]["selector"].items()):
        return "the Service's selector does not match the pods' labels"
    return None


@_property("autoscaler")
def _autoscaler(objects):
    hpa = find(objects, "HorizontalPodAutoscaler")
    if hpa is None:
        return "no HorizontalPodAutoscaler"
    if hpa["spec"]["scaleTargetRef"].get("name") != find(objects, "Deployment")["metadata"]["name"]:
        return "the autoscaler scales another Deployment"
    if "replicas" in find(objects, "Deployment")["spec"]:
        return "the Deployment sets replicas while an autoscaler owns the count (each upgrade would reset it)"
    return None


@_property("disruption budget")
def _budget(objects):
    pdb = find(objects, "PodDisruptionBudget")
    if pdb is None:
        return "no PodDisruptionBudget: a node drain could evict every pod at once"
    fewest = min(replica_counts(objects))
    spec = pdb["spec"]
    if "minAvailable" in spec and not isinstance(spec["minAvailable"], str) and spec["minAvailable"] >= fewest:
        return f"minAvailable {spec['minAvailable']} at {fewest} replicas: no node could ever be drained"
    if spec.get("maxUnavailable") == 0:
        return "maxUnavailable 0: no node could ever be drained"
    return None


@_property("network policy")
def _network_policy(objects):
    policy = find(objects, "NetworkPolicy")
    if policy is None:
        return "no NetworkPolicy: any pod in the cluster can call the API"
    if not {"Ingress", "Egress"} <= set(policy["spec"].get("policyTypes") or []):
        return "the NetworkPolicy must restrict both Ingress and Egress"
    if any(not rule.get("from") for rule in policy["spec"].get("ingress") or []):
        return "an ingress rule without `from` lets every pod in"
    return None


@_property("model bundle from a volume or an init container")
def _bundle(objects):
    server = container(objects)
    env = {e.get("name"): e.get("value") for e in server.get("env") or []}
    path = env.get("MLOPS_LAB_BUNDLE")
    if not path:
        return "MLOPS_LAB_BUNDLE is not set: the server would look for an MLflow registry that is not there"
    mounted = {m.get("mountPath") for m in server.get("volumeMounts") or []}
    if path != "/app/bundle" and path not in mounted:
        return f"the bundle path {path} is not a mounted volume"
    return None


@_property("Prometheus scrapes /metrics")
def _scrape(objects):
    notes = find(objects, "Deployment")["spec"]["template"]["metadata"].get("annotations") or {}
    if notes.get("prometheus.io/scrape") != "true" or notes.get("prometheus.io/path", "/metrics") != "/metrics":
        return "the pods lack prometheus.io/scrape: \"true\" and prometheus.io/path: /metrics annotations"
    if str(notes.get("prometheus.io/port")) != str(PORT):
        return f"prometheus.io/port must be the container's port {PORT}"
    return None


def properties(objects: list[dict]) -> dict[str, str | None]:
    """Each property of a rollout without downtime -> None when it holds, else what is wrong."""
    out = {}
    for prop in PROPERTIES:
        try:
            out[prop.name] = prop.check(objects)
        except (KeyError, TypeError, AttributeError) as exc:
            out[prop.name] = f"cannot be read from the rendered objects ({type(exc).__name__}: {exc})"
    return out


def problems(objects: list[dict]) -> list[str]:
    """Strict validation problems and failed properties, one line each (empty: all good)."""
    return validate(objects) + [f"{name}: {why}" for name, why in properties(objects).items() if why]


def check_chart(values: dict | None = None, *, chart: str | Path | None = None) -> list[dict]:
    """Render, validate and check every property; the objects, or LabError listing every problem."""
    objects = render(values, chart=chart)
    found = problems(objects)
    if found:
        raise LabError("the rendered chart has problems:\n  " + "\n  ".join(found))
    return objects


def summary(objects: list[dict]):
    """One row per rendered object: kind, name, and what matters about it."""
    import pandas as pd

    rows = []
    for obj in objects:
        spec, kind = obj.get("spec", {}), obj["kind"]
        if kind == "Deployment":
            strategy = spec.get("strategy", {})
            what = f"{strategy.get('type')} {strategy.get('rollingUpdate', {})}; image {container(objects)['image']}"
        elif kind == "Service":
            what = ", ".join(f"{p['port']} -> {p['targetPort']}" for p in spec["ports"])
        elif kind == "HorizontalPodAutoscaler":
            target = spec["metrics"][0]["resource"]["target"]["averageUtilization"]
            what = f"{spec['minReplicas']}-{spec['maxReplicas']} pods, CPU at {target}% of the request"
        elif kind == "PodDisruptionBudget":
            what = ", ".join(f"{k} {spec[k]}" for k in ("minAvailable", "maxUnavailable") if k in spec)
        elif kind == "NetworkPolicy":
            what = f"{len(spec.get('ingress') or [])} ingress rule(s), {len(spec.get('egress') or [])} egress rule(s)"
        else:
            what = ""
        rows.append({"kind": kind, "name": obj["metadata"]["name"], "what": what})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ a rolling update, step by step


def rollout_timeline(objects: list[dict], replicas: int | None = None, pod_start_seconds: float = 8.0):
    """What the Deployment controller does when the pod template changes (a new model version),
    computed from the rendered chart: ``replicas`` pods (default: the autoscaler's minimum), each new
    pod ready ``pod_start_seconds`` after it is created (image start + model load, then the first
    successful readiness probe) and available ``minReadySeconds`` later; an old pod leaves the
    Service's endpoints the moment it is deleted and exits after its preStop pause and drain.

    Returns a DataFrame, one row per moment something changes: seconds, what happened, and how
    many pods serve (old and new), start, and shut down."""
    import pandas as pd

    deployment = find(objects, "Deployment")
    spec = deployment["spec"]
    replicas = replicas or spec.get("replicas") or min(replica_counts(objects))
    strategy = spec.get("strategy") or {}
    probe = container(objects).get("readinessProbe") or {}
    period = probe_setting(probe, "periodSeconds")
    ready_after = math.ceil(pod_start_seconds / period) * period  # the first probe after the model loads
    min_ready = spec.get("minReadySeconds", 0)
    stop_after = _pre_stop_seconds(objects) + _drain_seconds(objects)
    recreate = strategy.get("type", "RollingUpdate") == "Recreate"
    rolling = strategy.get("rollingUpdate") or {}
    surge = 0 if recreate else resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = replicas if recreate else resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        raise LabError("maxSurge and maxUnavailable are both 0: Kubernetes refuses such a Deployment (no rollout "
                       "could make progress)")

    old = replicas  # old pods serving
    new_starting: list[float] = []  # creation times of new pods not yet available
    new_ready: list[float] = []  # creation times of new pods ready but not yet available (minReadySeconds)
    new_available = 0
    stopping: list[float] = []  # times old pods were deleted
    rows = []
    t = 0.0

    def row(event):
        rows.append({"second": round(t, 1), "event": event, "old serving": old,
                     "new serving": new_available + len(new_ready), "new starting": len(new_starting),
                     "old shutting down": len(stopping)})

    row(f"the pod template changes (new model): {replicas} old pods serve")
    for _ in range(10 * replicas + 10):
        # scale down old pods as far as availability allows
        if recreate:
            can_remove = old if not new_starting and not new_ready and new_available == 0 else 0
        else:
            can_remove = max(0, old + new_available - (replicas - unavailable))
        can_remove = min(can_remove, old)
        if can_remove:
            old -= can_remove
            stopping.extend([t] * can_remove)
            row(f"{can_remove} old pod(s) deleted: out of the endpoints at once, exit after {stop_after} s "
                "(preStop + drain)")
        # scale up new pods within the surge
        total = old + len(stopping) * 0 + len(new_starting) + len(new_ready) + new_available
        room = min(replicas + surge - total, replicas - len(new_starting) - len(new_ready) - new_available)
        if recreate and (old or stopping):
            room = 0
        if room > 0:
            new_starting.extend([t] * room)
            row(f"{room} new pod(s) created: starting, no traffic until /ready answers 200")
        if old == 0 and new_available == replicas and not stopping:
            break
        # the next moment something changes
        moments = [c + ready_after for c in new_starting] + [c + ready_after + min_ready for c in new_ready]
        moments += [s + stop_after for s in stopping]
        if not moments:
            break
        t = min(moments)
        for s in [s for s in stopping if s + stop_after <= t]:
            stopping.remove(s)
            row("an old pod exits (its in-flight requests finished)")
        for c in [c for c in new_starting if c + ready_after <= t]:
            new_starting.remove(c)
            new_ready.append(c)
            row("a new pod passes its readiness probe: it receives traffic"
                + (f" (available to the rollout {min_ready} s later)" if min_ready else ""))
        for c in [c for c in new_ready if c + ready_after + min_ready <= t]:
            new_ready.remove(c)
            new_available += 1
            if min_ready:
                row("a new pod has been ready for minReadySeconds: it counts as available")
    return pd.DataFrame(rows)


def with_values(base: dict | None = None, **paths: Any) -> dict:
    """A copy of ``base`` with values set by dotted path: ``with_values(probes__readiness=probe)``
    (double underscores stand for dots)."""
    out = copy.deepcopy(base or {})
    for dotted, value in paths.items():
        node = out
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return out


# ------------------------------------------------------------------ measured on the real server


def peak_memory(server, payments: list[dict], batch: int = 500) -> float:
    """The server's peak resident memory (MiB) while it answers ``payments`` one by one and then in
    batches of ``batch``: what a memory request is sized from. ``server`` is a running
    ``serving.start_server`` handle; its process is sampled every 10 ms."""
    import threading

    import httpx
    import psutil

    process = psutil.Process(server.process.pid)
    peak, done = [process.memory_info().rss], threading.Event()

    def sample():
        while not done.wait(0.01):
            try:
                peak.append(process.memory_info().rss)
            except psutil.Error:
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with httpx.Client(timeout=30) as client:
            for payment in payments:
                client.post(f"{server.url}/predict", json=payment).raise_for_status()
            for start in range(0, len(payments), batch):
                client.post(f"{server.url}/predict/batch",
                            json={"transactions": payments[start:start + batch]}).raise_for_status()
    finally:
        done.set()
        sampler.join()
    return max(peak) / 2**20


def sigterm_drill(server, payments: list[dict], clients: int = 4) -> dict:
    """Send the server SIGTERM, as the kubelet does after the preStop pause, while ``clients``
    keep-alive clients keep sending payments; return what was seen: /ready's answer right after the
    signal, and how the requests sent during the drain window fared. The server must have been
    started with ``drain_seconds`` (at least 2)."""
    import signal
    import threading
    import time

    import httpx

    window = 1.0  # requests are sent for this long after the signal: inside the drain window
    outcomes: list[tuple[str, str]] = []
    lock, signalled = threading.Lock(), threading.Event()
    stop_at = [float("inf")]

    def client(n: int):
        with httpx.Client(timeout=10) as c:
            i = n
            while time.monotonic() < stop_at[0]:
                try:
                    answer = c.post(f"{server.url}/predict", json=payments[i % len(payments)])
                    seen = (str(answer.status_code), answer.headers.get("connection", "keep-alive"))
                except httpx.HTTPError as exc:
                    seen = (type(exc).__name__, "")
                if signalled.is_set():
                    with lock:
                        outcomes.append(seen)
                i += clients
                time.sleep(0.005 * (n % 3))

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    with httpx.Client(timeout=5) as probe:
        before = probe.get(f"{server.url}/ready").status_code
        stop_at[0] = time.monotonic() + window
        server.process.send_signal(signal.SIGTERM)
        signalled.set()
        time.sleep(0.1)
        try:
            answer = probe.get(f"{server.url}/ready")
            after, reason = answer.status_code, answer.json().get("detail", "")
        except httpx.HTTPError as exc:  # without a drain the server may already be gone
            after, reason = type(exc).__name__, str(exc)
    for t in threads:
        t.join(30)
    exit_code = server.process.wait(30)
    statuses = [s for s, _ in outcomes]
    return {"/ready before SIGTERM": before, "/ready 0.1 s after SIGTERM": after,
            "its reason": reason, "requests sent while draining": len(outcomes),
            "answered 200": statuses.count("200"), "failed or reset": len(outcomes) - statuses.count("200"),
            "answers saying Connection: close": sum(1 for _, c in outcomes if c == "close"),
            "server exit code": exit_code}
