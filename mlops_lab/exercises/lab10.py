"""Lab 10 (appendix): Kubernetes. Write the readiness probe and the rolling-update strategy of
CardGuard's Deployment, and size its memory from the server's measured peak.

Every answer is put into the course's Helm chart (``deploy/helm/cardguard``), rendered offline with
helm-python-sdk (its values.schema.json judges the values), the Deployment validated strictly against
the Kubernetes 1.33 schemas, and the chart's properties checked (``mlops_lab.kubernetes``). A
readiness probe's path is called, as the kubelet would call it, on the real app while its model is
still loading (FastAPI's TestClient, a throwaway prediction log): a probe that passes then is wrong."""

from __future__ import annotations

import functools
import math
import numbers

from .. import kubernetes as k8s
from ..errors import LabError
from . import Trial, _blank, differential, exercise, require_attempt, right, wrong

CONTAINER_PORT = k8s.PORT
SERVICE_PORT = 80
_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")


def _rendered(values: dict, what: str) -> list[dict]:
    """The chart rendered with ``values``, strictly validated; AssertionError in the learner's terms."""
    try:
        objects = k8s.render(values)
    except LabError as exc:
        text = str(exc).removeprefix("the chart does not render with these values: ").strip()
        found = [line.strip().removeprefix("- ") for line in text.splitlines() if line.strip().startswith("- at ")]
        if found:  # values.schema.json: one line per failed rule; the first names the value
            text = "; ".join(dict.fromkeys(found[1:] or found))
            raise AssertionError(f"the chart's values.schema.json refuses your {what}: {text}") from None
        raise AssertionError(f"the chart refuses your {what}: {text}") from None
    deployment = [k8s.find(objects, "Deployment")]
    problems = k8s.validate(deployment)
    if problems:
        detail = problems[0].split(": ", 1)[1]
        raise AssertionError(
            f"Kubernetes 1.33 would refuse the Deployment with your {what}: {detail}. Field names are camelCase "
            "(httpGet, periodSeconds, maxUnavailable), exactly as in the Kubernetes API reference")
    return objects


def _other_properties(objects: list[dict], mine: str) -> None:
    """Every other property of the chart still holds with the learner's answer in it."""
    for name, why in k8s.properties(objects).items():
        if why and name != mine:
            raise AssertionError(f"with your answer the chart loses a property it needs ({name}): {why}")


# ------------------------------------------------------------------ 10.1 the readiness probe


@functools.cache
def _while_loading(path: str) -> tuple[int, str]:
    """(status, where it ended) of GET ``path`` on the real app while its model cannot be loaded yet,
    following redirects to the same server as the kubelet does."""
    import logging
    import tempfile
    import warnings

    with warnings.catch_warnings():  # starlette's note about httpx2, for maintainers rather than learners
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from ..serving.app import create_app

    def still_loading():
        raise LabError("the model is still loading")

    server_log = logging.getLogger("mlops_lab.serving")
    level = server_log.level
    server_log.setLevel(logging.CRITICAL)  # "model not ready" is the point here, not news for the learner
    try:
        with tempfile.TemporaryDirectory(prefix="mlops-lab-probe-") as tmp:
            app = create_app(still_loading, prediction_log=f"{tmp}/predictions.jsonl")
            with TestClient(app, base_url=f"http://127.0.0.1:{CONTAINER_PORT}") as client:
                answer = client.get(path, follow_redirects=True)
                return answer.status_code, answer.url.path
    finally:
        server_log.setLevel(level)


def _yaml_text(value, what: str) -> None:
    if isinstance(value, str):
        raise AssertionError(
            f"this is YAML text; the chart's values are Python dicts here: `yaml.safe_load(text)` turns your text into "
            f"one, or write the dict directly, as `{what}`")


def _check_probe(probe) -> list[dict]:
    require_attempt(probe)
    _yaml_text(probe, "{'httpGet': {'path': ..., 'port': ...}, ...}")
    assert isinstance(probe, dict), (
        f"expected the probe as a dict, as it sits under `readinessProbe:` in YAML, e.g. "
        f"{{'httpGet': {{'path': ..., 'port': ...}}, 'periodSeconds': ...}}; got {type(probe).__name__}")
    handlers = [h for h in _HANDLERS if h in probe]
    objects = _rendered({"probes": {"readiness": probe}}, "readiness probe")
    assert len(handlers) == 1, (
        f"a probe has exactly one handler (httpGet, tcpSocket, exec or grpc); yours has "
        f"{' and '.join(handlers) if handlers else 'none'}: Kubernetes refuses it")
    handler = handlers[0]
    if handler == "tcpSocket":
        raise AssertionError(
            "a TCP probe passes as soon as uvicorn listens, seconds before the model has loaded: the pod would get "
            "payments it cannot score. Ask the server with httpGet on /ready")
    if handler == "grpc":
        raise AssertionError("the server speaks HTTP, not gRPC: use httpGet on /ready")
    if handler == "exec":
        command = " ".join(map(str, (probe["exec"] or {}).get("command") or []))
        if "curl" in command or "wget" in command:
            raise AssertionError("the serving image is a slim Python image with no curl or wget: this probe would "
                                 "fail forever and the pod never get traffic. Let the kubelet call /ready with httpGet")
        raise AssertionError(
            "an exec probe starts a process in the container every period (a Python one costs tens of MB and a tenth "
            "of a second of CPU, counted against the pod's limits); the kubelet can call /ready itself with httpGet")
    http = probe["httpGet"] or {}
    port = http.get("port")
    if port == SERVICE_PORT:
        raise AssertionError(
            f"port {SERVICE_PORT} is the Service's port; the kubelet calls the pod itself, on its containerPort "
            f"{CONTAINER_PORT} (named 'http' in the chart)")
    if isinstance(port, str) and port.isdigit():
        raise AssertionError(
            f"port {port!r} is a string: to Kubernetes a string names a port (the chart names {CONTAINER_PORT} 'http'), "
            f"and no port is named {port!r}. Write the number, {CONTAINER_PORT}, or the name, 'http'")
    if port not in (CONTAINER_PORT, "http"):
        raise AssertionError(
            f"the container listens on port {CONTAINER_PORT}, named 'http' in the chart; nothing answers on {port!r}")
    scheme = http.get("scheme", "HTTP")
    assert str(scheme).upper() == "HTTP", "uvicorn speaks plain HTTP inside the pod: leave scheme out"
    assert scheme == "HTTP", f"scheme {scheme!r}: Kubernetes accepts only 'HTTP' or 'HTTPS', in capitals (or leave it out)"
    assert "terminationGracePeriodSeconds" not in probe, (
        "terminationGracePeriodSeconds belongs to liveness and startup probes (how long a killed container gets); "
        "Kubernetes refuses it on a readiness probe, which never kills anything")
    assert not http.get("host"), (
        "leave host out: the kubelet then calls the pod's own IP; with a host it would ask another machine")
    path = http.get("path") or "/"
    assert isinstance(path, str) and path.startswith("/"), (
        f"the path {path!r} must start with '/': the kubelet sends it as it stands, and the server has no such "
        "route. Write '/ready'")
    status, landed = _while_loading(path)
    if 200 <= status < 400:
        raise AssertionError(
            f"while the model is still loading, GET {path} answers {status}, and the kubelet counts any answer from "
            "200 to 399 as success: the pod would get payments before it can score them. /ready answers 503 until "
            "the model has scored its serving examples")
    if status == 404:
        raise AssertionError(f"the server has no {path} (404): the probe would never pass. Probe /ready")
    if status == 405:
        raise AssertionError(f"{path} answers POST only: the kubelet sends GET. Probe /ready")
    why = k8s.readiness_path_problem(path)  # the chart's own rule, so §5's check_chart agrees
    assert landed in k8s.READY_ENDPOINTS and not why, why or (
        f"GET {path} answers {status} while loading, but never 200 later: probe /ready")
    return objects


def _timing(probe: dict) -> None:
    said = {}
    for field, default in k8s.PROBE_DEFAULTS.items():
        value = probe.get(field, default)
        assert isinstance(value, int) and not isinstance(value, bool) and value >= 0, (
            f"{field} is {value!r}: Kubernetes wants a whole number of seconds or times (0 or left out means its "
            f"default, {default})")
        said[field] = (f"{field} 0, which Kubernetes replaces by its default {default}" if value == 0 and field in probe
                       else f"{field} left out, Kubernetes' default {default}" if field not in probe else None)
    period, failures = k8s.probe_setting(probe, "periodSeconds"), k8s.probe_setting(probe, "failureThreshold")
    defaulted = ("Kubernetes' defaults, 10 s and 3" if "periodSeconds" not in probe and "failureThreshold" not in probe
                 else "; ".join(said[f] for f in ("periodSeconds", "failureThreshold") if said[f]))
    assert period * failures <= 10, (
        f"a pod that stops being ready keeps receiving payments for up to periodSeconds x failureThreshold = "
        f"{period} x {failures} = {period * failures} s"
        + (f" ({defaulted})" if defaulted else "")
        + ": take it out within 10 s (for example every 2 s, 2 failures)")
    timeout = k8s.probe_setting(probe, "timeoutSeconds")
    assert timeout <= period or failures * timeout <= 10, (  # the kubelet waits out a hung probe before the next
        f"timeoutSeconds {timeout} is longer than periodSeconds {period}: against a server that hangs, each probe "
        f"waits {timeout} s before it fails, so the pod keeps payments for {failures} x {timeout} = "
        f"{failures * timeout} s. Keep timeoutSeconds at most periodSeconds (1 s is plenty for /ready)")
    delay = probe.get("initialDelaySeconds", 0)
    assert not delay, (
        f"initialDelaySeconds {delay}: the startup probe already waits for the model to load, so a delay only adds "
        f"{delay} s before every new pod of every rollout can take traffic. Leave it out")
    successes = k8s.probe_setting(probe, "successThreshold")
    assert successes == 1, (
        f"successThreshold {successes}: a new pod needs {successes} successful probes in a row, so it waits "
        f"{successes - 1} more period(s) ({(successes - 1) * period} s) after /ready first answers 200 before it gets "
        "traffic, in every rollout. The probe must add no delay of its own: leave it out (1)")


@exercise(
    "10.1",
    "The readiness probe",
    solution='''
readiness_probe = {
    "httpGet": {"path": "/ready", "port": "http"},  # 200 only once the model has answered
    "periodSeconds": 2,
    "failureThreshold": 2,  # out of the Service within 2 x 2 = 4 s
    "timeoutSeconds": 1,
}
''',
    hints=(
        "Which endpoint answers 200 only once the model can score? Lab 04's /ready (not /health, which is up as soon "
        "as the process is).",
        "The kubelet calls the pod directly: the container's port (8000, named 'http' in the chart), not the "
        "Service's 80.",
        "Kubernetes' defaults are periodSeconds 10 and failureThreshold 3: a sick pod keeps traffic for 30 s. Set "
        "both so that their product is at most 10.",
    ),
    reference="readiness_probe",
    cases=(
        wrong("probes /health", lambda: {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2,
                                          "failureThreshold": 2}, "kubelet counts any answer from 200 to 399"),
        wrong("a TCP probe", lambda: {"tcpSocket": {"port": 8000}, "periodSeconds": 2, "failureThreshold": 2},
              "as soon as uvicorn listens"),
        wrong("the Service's port", lambda: {"httpGet": {"path": "/ready", "port": 80}, "periodSeconds": 2,
                                             "failureThreshold": 2}, "the Service's port"),
        wrong("curl in a slim image", lambda: {"exec": {"command": ["curl", "-f", "http://127.0.0.1:8000/ready"]},
                                               "periodSeconds": 2, "failureThreshold": 2}, "no curl"),
        wrong("lower-case field name", lambda: {"httpget": {"path": "/ready", "port": "http"}, "periodSeconds": 2},
              "camelCase"),
        wrong("Kubernetes' default timing", lambda: {"httpGet": {"path": "/ready", "port": "http"}},
              "Kubernetes' defaults"),
        wrong("a path the server does not have", lambda: {"httpGet": {"path": "/readiness", "port": "http"},
                                                          "periodSeconds": 2, "failureThreshold": 2}, "404"),
        wrong("a long initial delay", lambda: {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2,
                                               "failureThreshold": 2, "initialDelaySeconds": 30}, "startup probe"),
        wrong("the metrics endpoint", lambda: {"httpGet": {"path": "/metrics", "port": 8000}, "periodSeconds": 5,
                                               "failureThreshold": 2}, "before it can score"),
        wrong("YAML text instead of a dict", lambda: "httpGet:\n  path: /ready\n  port: http\nperiodSeconds: 2\n",
              "yaml.safe_load"),
        wrong("the port number as a string", lambda: {"httpGet": {"path": "/ready", "port": "8000"}, "periodSeconds": 2,
                                                      "failureThreshold": 2}, "names a port"),
        wrong("a short initial delay", lambda: {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2,
                                                "failureThreshold": 2, "initialDelaySeconds": 5}, "Leave it out"),
        wrong("the scheme in lower case", lambda: {"httpGet": {"path": "/ready", "port": 8000, "scheme": "http"},
                                                   "periodSeconds": 2, "failureThreshold": 2}, "in capitals"),
        wrong("a grace period on a readiness probe", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2,
            "terminationGracePeriodSeconds": 5}, "refuses it on a readiness probe"),
        wrong("two handlers", lambda: {"httpGet": {"path": "/ready", "port": "http"}, "tcpSocket": {"port": 8000},
                                       "periodSeconds": 2, "failureThreshold": 2}, "exactly one handler"),
        right("MLflow's /ping, by port number, every 5 s", lambda: {
            "httpGet": {"path": "/ping", "port": 8000, "scheme": "HTTP"}, "periodSeconds": 5, "failureThreshold": 2,
            "timeoutSeconds": 2, "successThreshold": 1}),
        right("a trailing slash (redirected to /ready, which the kubelet follows)", lambda: {
            "httpGet": {"path": "/ready/", "port": "http"}, "periodSeconds": 1, "failureThreshold": 3}),
        # a blind red team's answers (issue 27): the check and the chart's property apply one rule
        right("MLflow's /ping (503 while draining too), every 2 s", lambda: {
            "httpGet": {"path": "/ping", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2}),
        right("a query string (it reaches /ready, which ignores it)", lambda: {
            "httpGet": {"path": "/ready?probe=kubelet", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2}),
        right("a fragment (never sent)", lambda: {
            "httpGet": {"path": "/ready#frag", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2}),
        right("timeoutSeconds 0 (Kubernetes makes it 1)", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2,
            "timeoutSeconds": 0}),
        right("periodSeconds 0 (Kubernetes makes it 10) and one failure", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0, "failureThreshold": 1}),
        wrong("a timeout longer than the window", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2,
            "timeoutSeconds": 30}, "2 x 30 = 60 s"),
        wrong("/version (200 while the pod drains)", lambda: {
            "httpGet": {"path": "/version", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2},
            "while the pod drains"),
        wrong("a path without its leading slash", lambda: {
            "httpGet": {"path": "ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2},
            "must start with '/'"),
        wrong("successThreshold 2", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2,
            "successThreshold": 2}, "add no delay of its own"),
        wrong("successThreshold 3", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 2, "failureThreshold": 2,
            "successThreshold": 3}, "2 more period(s) (4 s)"),
        wrong("periodSeconds 0 is Kubernetes' 10 s", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 0, "failureThreshold": 3},
            "replaces by its default 10"),
        wrong("failureThreshold 0 is Kubernetes' 3", lambda: {
            "httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5, "failureThreshold": 0},
            "replaces by its default 3"),
    ),
)
def _check_readiness(probe) -> None:
    objects = _check_probe(probe)
    _timing(probe)
    _other_properties(objects, "readiness probe on GET /ready")


# ------------------------------------------------------------------ 10.2 the rolling-update strategy

HPA_RANGE = (2, 6)  # the chart's autoscaler: the strategy must hold at every replica count in it


@exercise(
    "10.2",
    "The rolling-update strategy",
    solution='''
strategy = {
    "type": "RollingUpdate",
    "rollingUpdate": {
        "maxSurge": 1,  # one extra pod at a time
        "maxUnavailable": 0,  # never fewer ready pods than replicas
    },
}
''',
    hints=(
        "Recreate stops every old pod before the first new one starts: CardGuard would answer nothing meanwhile.",
        "maxUnavailable says how many pods may be missing during the rollout; the promise is 'no disruption'. "
        "maxSurge says how many extra pods may start.",
        "Percentages are rounded: maxUnavailable down, maxSurge up, at the current replica count (2 to 6 here). "
        "Left out, both are 25%.",
    ),
    reference="strategy",
    cases=(
        wrong("Recreate", lambda: {"type": "Recreate"}, "answers nothing"),
        wrong("one pod unavailable", lambda: {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1,
                                                                                         "maxUnavailable": 1}},
              "before its replacement is ready"),
        wrong("only maxSurge (the 25% default)", lambda: {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
              "25%"),
        wrong("nothing may move", lambda: {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0,
                                                                                      "maxUnavailable": 0}},
              "cannot make progress"),
        wrong("a count written as a string", lambda: {"type": "RollingUpdate",
                                                      "rollingUpdate": {"maxSurge": "1", "maxUnavailable": 0}},
              "a percentage a string"),
        wrong("a typo in a field name", lambda: {"type": "RollingUpdate",
                                                 "rollingUpdate": {"maxSurge": 1, "maxUnavailible": 0}},
              "maxUnavailible"),
        wrong("25% unavailable", lambda: {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
              "at 4 replicas"),
        wrong("Recreate with rolling settings", lambda: {"type": "Recreate", "rollingUpdate": {"maxSurge": 1,
                                                                                               "maxUnavailable": 0}},
              "Recreate"),
        wrong("the bounds beside rollingUpdate, not in it", lambda: {"type": "RollingUpdate", "maxSurge": 1,
                                                                      "maxUnavailable": 0}, "go inside `rollingUpdate`"),
        wrong("minReadySeconds inside the strategy", lambda: {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}, "minReadySeconds": 5},
            "beside `strategy`"),
        right("only maxUnavailable (maxSurge's 25% rounds up to a pod)", lambda: {"rollingUpdate": {"maxUnavailable": 0}}),
        right("a float that is a whole number", lambda: {"type": "RollingUpdate",
                                                         "rollingUpdate": {"maxSurge": 1.0, "maxUnavailable": 0}}),
        right("no type, percentages", lambda: {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "0%"}}),
        right("two at a time, 10% that rounds down to none", lambda: {
            "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 2, "maxUnavailable": "10%"}}),
    ),
)
def _check_strategy(strategy) -> None:
    require_attempt(strategy)
    _yaml_text(strategy, "{'type': ..., 'rollingUpdate': {...}}")
    assert isinstance(strategy, dict), (
        f"expected the strategy as a dict, as it sits under `strategy:` in YAML, e.g. "
        f"{{'type': ..., 'rollingUpdate': {{...}}}}; got {type(strategy).__name__}")
    flat = sorted({"maxSurge", "maxUnavailable"} & set(strategy))
    if flat:
        raise AssertionError(f"{' and '.join(flat)} go inside `rollingUpdate`: {{'type': 'RollingUpdate', "
                             "'rollingUpdate': {'maxSurge': ..., 'maxUnavailable': ...}}")
    if "minReadySeconds" in strategy:
        raise AssertionError("minReadySeconds is a field of the Deployment's spec, beside `strategy`, not inside it "
                             "(the chart sets it to 5): leave it out of your strategy")
    kind = strategy.get("type", "RollingUpdate")
    if kind == "Recreate":
        extra = (" (and Kubernetes refuses rollingUpdate settings with type Recreate)"
                 if strategy.get("rollingUpdate") else "")
        raise AssertionError(
            "Recreate deletes every old pod, waits for them to exit, then starts the new ones: while the new model "
            f"loads, CardGuard answers nothing{extra}. Use type RollingUpdate")
    rolling = strategy.get("rollingUpdate") or {}
    if isinstance(rolling, dict) and rolling.get("maxSurge") in (0, "0%") and rolling.get("maxUnavailable") in (0, "0%"):
        raise AssertionError("maxSurge 0 and maxUnavailable 0: no pod may be added and none removed, so the rollout "
                             "cannot make progress; Kubernetes refuses it. Let one extra pod start: maxSurge 1")
    try:
        objects = _rendered({"strategy": strategy}, "strategy")
    except AssertionError as exc:
        if "maxSurge" in str(exc) or "maxUnavailable" in str(exc):
            raise AssertionError(f"{exc}. A number of pods is a number (1), a percentage a string ('25%')") from None
        raise
    low, high = HPA_RANGE
    for replicas in range(low, high + 1):
        unavailable = k8s.resolve(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
        surge = k8s.resolve(rolling.get("maxSurge", "25%"), replicas, round_up=True)
        given = rolling.get("maxUnavailable", "25%")
        default = " (left out, it is 25%)" if "maxUnavailable" not in rolling else ""
        assert unavailable == 0, (
            f"at {replicas} replicas (the autoscaler runs {low} to {high}) maxUnavailable {given!r}{default} lets "
            f"{unavailable} pod(s) stop before its replacement is ready: CardGuard would answer with "
            f"{replicas - unavailable} pods' capacity during every rollout. Set maxUnavailable to 0")
        assert surge >= 1, (
            f"at {replicas} replicas maxSurge {rolling.get('maxSurge', '25%')!r} is 0 pods: with maxUnavailable 0 the "
            "rollout cannot make progress. Let at least one extra pod start")
    _other_properties(objects, "rolling update with maxUnavailable 0")


# ------------------------------------------------------------------ 10.3 requests and limits from the measured peak

CPU_REQUEST_MAX = 4.0  # cores: more would not fit the course's example nodes


def _peak_trials() -> list[Trial]:
    peaks = [48.0, 64.0, 99.9, 100.0, 127.5, 128.0, 150.25, 199.99, 200.0, 233.1, 235.0, 256.0, 300.0, 333.33,
             400.0, 511.5, 512.0, 700.7, 1000.0, 1023.9, 1024.0, 1500.0, 2048.0, 3000.0, 4096.5]
    return [Trial(f"a measured peak of {p:g} MiB", (p,), size=p) for p in peaks]


def _memory(value, where: str, peak: float) -> float:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy's integers and floats too
        value = int(value) if isinstance(value, numbers.Integral) else float(value)
        if value < 2**20:
            raise AssertionError(
                f"{where} is {value!r}: a bare number is bytes to Kubernetes, so that is {value} bytes. Write the "
                f"unit: '{math.ceil(value)}Mi'")
        return value / 2**20
    try:
        mib = k8s.mib(value)
    except ValueError:
        raise AssertionError(
            f"{where} is {value!r}, which is not a Kubernetes quantity: write '320Mi' (mebibytes), '0.5Gi'; "
            "'MB' and spaces are refused") from None
    if isinstance(value, str) and value.endswith("m"):
        raise AssertionError(
            f"{where} is {value!r}: a lower-case m means milli, so that is {k8s.quantity(value):g} bytes. Mebibytes "
            "are 'Mi'")
    if mib < 1:
        raise AssertionError(f"{where} is {value!r}, {mib * 2**20:.0f} bytes: did you mean Mi?")
    return mib


def _judge_resources(got, expected, trial: Trial) -> str | None:
    peak = trial.args[0]
    unknown = sorted(set(got) - {"requests", "limits"}) if isinstance(got, dict) else []
    if unknown:
        return f"unknown key(s) {unknown}: resources has 'requests' and 'limits' (both plural)"
    if not isinstance(got, dict) or not isinstance(got.get("requests"), dict) or not isinstance(got.get("limits"),
                                                                                                 dict):
        return (f"returned {got!r}; return a dict as it sits under `resources:`: {{'requests': {{'cpu': ..., "
                f"'memory': ...}}, 'limits': {{'memory': ...}}}}")
    requests, limits = got["requests"], got["limits"]
    for part, where in ((requests, "requests"), (limits, "limits")):
        extra = set(part) - {"cpu", "memory"}
        if extra:
            return f"{where} has {sorted(extra)}: only 'cpu' and 'memory' are sized here"
    if "cpu" not in requests:
        return ("there is no CPU request: the autoscaler's target (70%) is a share of the CPU request, so without one "
                "it cannot scale, and the scheduler may pack the pod where it gets no CPU. Ask for '500m'")
    if "memory" not in requests or "memory" not in limits:
        return "requests and limits both need a 'memory'"
    try:
        request = _memory(requests["memory"], "the memory request", peak)
        limit = _memory(limits["memory"], "the memory limit", peak)
        cpu = k8s.quantity(requests["cpu"])
    except AssertionError as exc:
        return str(exc)
    except ValueError:
        return f"the CPU request {requests['cpu']!r} is not a Kubernetes quantity: write '500m' (half a core) or 0.5"
    if not 0 < cpu <= CPU_REQUEST_MAX:
        return (f"a CPU request of {cpu:g} cores{' (a bare number is cores: did you mean 500m?)' if cpu >= 100 else ''}; "
                f"ask for a share of one core ('500m'), at most {CPU_REQUEST_MAX:g}")
    if "cpu" in limits:
        try:
            if k8s.quantity(limits["cpu"]) < cpu:
                return "the CPU limit is below the CPU request: Kubernetes refuses it"
        except ValueError:
            return f"the CPU limit {limits['cpu']!r} is not a Kubernetes quantity"
    eps = 1e-9 * peak
    if request + eps < 1.25 * peak:
        return (f"the memory request is {request:.2f} MiB, {request / peak:.4f} times the peak: it needs at least 25% "
                f"headroom (>= {1.25 * peak:.2f} MiB), or the pod lands on a node where it cannot grow"
                + (". Round up (math.ceil), never to the nearest" if request > 1.2 * peak else ""))
    if request > 2 * peak + eps:
        return (f"the memory request is {request:.1f} MiB, {request / peak:.2f} times the peak: a request reserves that "
                f"memory on the node whether it is used or not; stay within twice the peak ({2 * peak:.1f} MiB)")
    if limit + eps < request:
        return f"the memory limit ({limit:.1f} MiB) is below the request ({request:.1f} MiB): Kubernetes refuses it"
    if limit + eps < 1.5 * peak:
        return (f"the memory limit is {limit:.2f} MiB, {limit / peak:.4f} times the peak: a pod over its limit is "
                f"OOM-killed and restarts with a cold model; keep it at least 1.5 times the peak ({1.5 * peak:.2f} MiB)"
                + (". Round up (math.ceil), never to the nearest" if limit > 1.45 * peak else ""))
    if limit > 3 * peak + eps:
        return (f"the memory limit is {limit:.1f} MiB, {limit / peak:.2f} times the peak: a leak would take that much "
                f"from the node's other pods before it is stopped; stay within 3 times the peak ({3 * peak:.1f} MiB)")
    return None


SOLUTION_10_3 = '''
import math


def size_resources(peak_mib):
    request = math.ceil(peak_mib * 1.25)  # 25% headroom over the measured peak
    limit = math.ceil(peak_mib * 1.5)  # OOM-killed only well above anything measured
    return {"requests": {"cpu": "500m", "memory": f"{request}Mi"},
            "limits": {"memory": f"{limit}Mi"}}
'''


def _mi(x: float) -> str:
    return f"{math.ceil(x)}Mi"


def _sized(request: float, limit: float, cpu="500m"):
    def size(peak_mib):
        return {"requests": {"cpu": cpu, "memory": _mi(peak_mib * request)}, "limits": {"memory": _mi(peak_mib * limit)}}
    return size


def _no_headroom(peak_mib):
    return {"requests": {"cpu": "500m", "memory": _mi(peak_mib)}, "limits": {"memory": _mi(peak_mib * 1.5)}}


def _milli(peak_mib):
    return {"requests": {"cpu": "500m", "memory": f"{math.ceil(peak_mib * 1.25)}m"},
            "limits": {"memory": f"{math.ceil(peak_mib * 1.5)}m"}}


def _megabytes(peak_mib):
    return {"requests": {"cpu": "500m", "memory": f"{math.ceil(peak_mib * 1.25)}MB"},
            "limits": {"memory": f"{math.ceil(peak_mib * 1.5)}MB"}}


def _bare_numbers(peak_mib):
    return {"requests": {"cpu": 0.5, "memory": math.ceil(peak_mib * 1.25)}, "limits": {"memory": math.ceil(peak_mib * 1.5)}}


def _no_cpu(peak_mib):
    return {"requests": {"memory": _mi(peak_mib * 1.25)}, "limits": {"memory": _mi(peak_mib * 1.5)}}


def _power_of_two(peak_mib):
    size = 2 ** math.floor(math.log2(peak_mib * 1.25))  # rounded to a power of two: down
    return {"requests": {"cpu": "500m", "memory": f"{size}Mi"}, "limits": {"memory": f"{2 * size}Mi"}}


def _hard_coded(peak_mib):
    return {"requests": {"cpu": "500m", "memory": "294Mi"}, "limits": {"memory": "353Mi"}}  # sized for 235 MiB


def _nearest(peak_mib):
    return {"requests": {"cpu": "500m", "memory": f"{round(peak_mib * 1.25)}Mi"},
            "limits": {"memory": f"{round(peak_mib * 1.5)}Mi"}}


def _singular(peak_mib):
    return {"request": {"cpu": "500m", "memory": _mi(peak_mib * 1.25)}, "limit": {"memory": _mi(peak_mib * 1.5)}}


def _unrounded(peak_mib):
    return {"requests": {"cpu": "0.5", "memory": f"{peak_mib * 1.25}Mi"}, "limits": {"memory": f"{peak_mib * 1.5}Mi"}}


def _gibibytes(peak_mib):
    return {"requests": {"cpu": 0.25, "memory": f"{peak_mib * 1.3 / 1024:.4f}Gi"},
            "limits": {"memory": f"{peak_mib * 2 / 1024:.4f}Gi", "cpu": "1"}}


def _numpy_bytes(peak_mib):
    import numpy as np

    return {"requests": {"cpu": "500m", "memory": np.int64(math.ceil(peak_mib * 1.5 * 2**20))},
            "limits": {"memory": np.int64(math.ceil(peak_mib * 2 * 2**20))}}


def _forgets_return(peak_mib):
    {"requests": {"cpu": "500m", "memory": _mi(peak_mib * 1.25)}, "limits": {"memory": _mi(peak_mib * 1.5)}}


def _guaranteed_in_bytes(peak_mib):
    size = math.ceil(peak_mib * 1.6 * 2**20)  # requests = limits: the Guaranteed QoS class for memory
    return {"requests": {"cpu": "1", "memory": size}, "limits": {"cpu": "1", "memory": size}}


@exercise(
    "10.3",
    "Requests and limits from the measured peak",
    solution=SOLUTION_10_3,
    hints=(
        "A request is what the scheduler reserves on a node; a limit is where the kernel kills the container. Both "
        "for memory come from the peak you measured, with headroom.",
        "Memory request: at least 1.25 x the peak (at most 2 x). Memory limit: at least 1.5 x the peak and the "
        "request (at most 3 x). Give a CPU request: the autoscaler's 70% is a share of it.",
        "Quantities are strings with a unit: '320Mi' (mebibytes). 'm' means milli, 'MB' is refused, and a bare "
        "number is bytes.",
    ),
    reference="size_resources",
    stub=lambda: _blank,
    trials=_peak_trials,
    cases=(
        wrong("no headroom", lambda: _no_headroom, "headroom"),
        wrong("milli instead of mebi", lambda: _milli, "milli"),
        wrong("MB is not a Kubernetes unit", lambda: _megabytes, "not a Kubernetes quantity"),
        wrong("bare numbers in MiB", lambda: _bare_numbers, "a bare number is bytes"),
        wrong("no CPU request", lambda: _no_cpu, "autoscaler"),
        wrong("a limit below the request", lambda: _sized(1.8, 1.6), "below the request"),
        wrong("rounded down to a power of two", lambda: _power_of_two, "headroom"),
        wrong("four times the peak", lambda: _sized(4, 4), "reserves"),
        wrong("the limit at the request", lambda: _sized(1.3, 1.3), "OOM-killed"),
        wrong("rounded to the nearest MiB", lambda: _nearest, "Round up"),
        wrong("figures hard-coded from this machine's peak", lambda: _hard_coded, "with a measured peak of 48 MiB"),
        wrong("singular keys", lambda: _singular, "both plural"),
        wrong("CPU in millicores without the m", lambda: _sized(1.25, 1.5, cpu=500), "did you mean 500m"),
        right("unrounded float quantities", lambda: _unrounded),
        right("fractions of a GiB, a CPU limit", lambda: _gibibytes),
        right("bytes, requests equal to limits", lambda: _guaranteed_in_bytes),
        right("bytes as numpy integers", lambda: _numpy_bytes),
        wrong("a body that returns None", lambda: (lambda peak_mib: None), "did you forget `return`"),
        wrong("a body that forgets return", lambda: _forgets_return, "did you forget `return`"),
    ),
)
def _check_resources(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function size_resources(peak_mib) that returns the resources dict"
    from . import get

    differential(func, get("10.3").reference(), _peak_trials(), compare=_judge_resources, what="size_resources")
    objects = _rendered({"resources": func(235.0)}, "resources")  # the chart takes them, Kubernetes too
    _other_properties(objects, "")

