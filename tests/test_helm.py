"""CardGuard's Helm chart (deploy/helm/cardguard), offline: rendered with helm-python-sdk (Helm v4 as a
library), linted strictly, every object validated strictly against the Kubernetes 1.33 schemas
(kubernetes-validate), and every property a rollout without downtime needs checked; a copy of the
chart with one property taken out fails that property's check. Then the server's side of the
contract: on SIGTERM /ready turns 503 at once and requests keep being answered during the drain."""

from __future__ import annotations

import shutil
import signal
import threading
import time

import httpx
import pytest

from mlops_lab import kubernetes as k8s
from mlops_lab.errors import LabError

from .conftest import using_home


@pytest.fixture(scope="module")
def default():
    return k8s.render()


def test_default_render_has_every_object(default):
    assert [o["kind"] for o in default] == ["Deployment", "Service", "HorizontalPodAutoscaler",
                                            "PodDisruptionBudget", "NetworkPolicy"]


def test_default_render_lints_clean_and_validates_strictly_against_1_33(default):
    assert k8s.lint() == []
    assert k8s.validate(default, "1.33") == []


def test_every_property_holds_in_the_default_render(default):
    assert k8s.properties(default) == {p.name: None for p in k8s.PROPERTIES}
    assert len(k8s.PROPERTIES) >= 17


VARIANTS = {
    "fixed replicas, no autoscaler": {"autoscaling": {"enabled": False}, "replicas": 3},
    "bundle on a volume": {"model": {"source": "persistentVolumeClaim", "claimName": "models", "subPath": "v5"}},
    "bundle in the image (lab 05's)": {"model": {"source": "image"}},
    "minAvailable budget, image by digest": {"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None},
                                             "image": {"digest": "sha256:" + "a" * 64}},
    "percentages, a wider autoscaler": {"strategy": {"rollingUpdate": {"maxSurge": "50%", "maxUnavailable": "0%"}},
                                        "autoscaling": {"minReplicas": 3, "maxReplicas": 12}},
    "longer drain, exposed as NodePort": {"shutdown": {"preStopSeconds": 20, "drainSeconds": 10,
                                                       "terminationGracePeriodSeconds": 45},
                                          "service": {"type": "NodePort", "port": 8080}},
}


@pytest.mark.parametrize("values", VARIANTS.values(), ids=VARIANTS.keys())
def test_variants_render_lint_validate_and_keep_the_properties(values):
    objects = k8s.render(values)
    assert k8s.validate(objects) == []
    assert k8s.lint(values) == []
    broken = {name: why for name, why in k8s.properties(objects).items() if why}
    if "autoscaling" in values and not values["autoscaling"].get("enabled", True):
        assert set(broken) == {"autoscaler"}  # the one property this variant gives up, on purpose
        assert k8s.find(objects, "Deployment")["spec"]["replicas"] == 3
    else:
        assert broken == {}


def test_the_bundle_reaches_the_server_from_each_source():
    for source, path in (("initContainer", "/models/bundle"), ("persistentVolumeClaim", "/models/bundle"),
                         ("image", "/app/bundle")):
        objects = k8s.render({"model": {"source": source, "claimName": "models"}})
        env = {e["name"]: e["value"] for e in k8s.container(objects)["env"]}
        assert env["MLOPS_LAB_BUNDLE"] == path
        pod = k8s.find(objects, "Deployment")["spec"]["template"]["spec"]
        assert ("initContainers" in pod) == (source == "initContainer")
    init = k8s.find(k8s.render({"model": {"version": "7"}}), "Deployment")["spec"]["template"]["spec"]["initContainers"]
    assert init[0]["image"] == "cardguard-model:7"  # a new model version is a new pod template: a rolling update


BAD_VALUES = [
    ({"replicas": "three"}, "/replicas': got string, want integer"),
    ({"replicsa": 3}, "additional properties 'replicsa' not allowed"),
    ({"resources": {"requests": {"memory": "320MB"}}}, "/resources/requests/memory"),
    ({"strategy": {"type": "BlueGreen"}}, "/strategy/type"),
    ({"shutdown": {"terminationGracePeriodSeconds": 10}}, "must cover shutdown.preStopSeconds"),
    ({"podDisruptionBudget": {"minAvailable": 2, "maxUnavailable": None}}, "no node could ever be drained"),
    ({"podDisruptionBudget": {"minAvailable": 1}}, "not both"),
    ({"model": {"source": "persistentVolumeClaim"}}, "set model.claimName"),
    ({"autoscaling": {"minReplicas": 8}}, "is above autoscaling.maxReplicas"),
    ({"model": {"version": 5}}, "/model/version"),
]


@pytest.mark.parametrize("values,words", BAD_VALUES, ids=[str(v) for v, _ in BAD_VALUES])
def test_bad_values_fail_at_render_time_naming_the_value(values, words):
    with pytest.raises(LabError, match="does not render") as caught:
        k8s.render(values)
    assert words in str(caught.value)


# One way to take each property out of a copy of the chart: (property, template, text, replacement).
REMOVALS = [
    ("rolling update with maxUnavailable 0", "values.yaml", "maxUnavailable: 0", "maxUnavailable: 1"),
    ("readiness probe on GET /ready", "values.yaml", "readiness:\n    httpGet: {path: /ready",
     "readiness:\n    httpGet: {path: /health"),
    ("liveness probe on /health", "values.yaml", "liveness:\n    httpGet: {path: /health",
     "liveness:\n    httpGet: {path: /ready"),
    ("startup probe covers model loading", "templates/deployment.yaml",
     "          startupProbe:\n            {{- toYaml .Values.probes.startup | nindent 12 }}\n", ""),
    ("resource requests and limits", "templates/deployment.yaml",
     "          resources:\n            {{- toYaml .Values.resources | nindent 12 }}\n", ""),
    ("runs as non-root", "templates/deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false"),
    ("read-only root filesystem", "templates/deployment.yaml", "readOnlyRootFilesystem: true",
     "readOnlyRootFilesystem: false"),
    ("no privilege escalation", "templates/deployment.yaml", "allowPrivilegeEscalation: false", ""),
    ("capabilities dropped", "templates/deployment.yaml", 'drop: ["ALL"]', 'drop: ["NET_RAW"]'),
    ("preStop pause", "templates/deployment.yaml",
     "          lifecycle:\n            preStop:\n              sleep:\n"
     "                seconds: {{ .Values.shutdown.preStopSeconds }}\n", ""),
    ("grace period covers preStop and drain", "templates/deployment.yaml",
     "terminationGracePeriodSeconds: {{ .Values.shutdown.terminationGracePeriodSeconds }}",
     "terminationGracePeriodSeconds: 10"),
    ("a Service in front of the pods", "templates/service.yaml", "kind: Service", "kind: Service\n# removed"),
    ("autoscaler", "templates/hpa.yaml", "{{- if .Values.autoscaling.enabled }}", "{{- if false }}"),
    ("disruption budget", "templates/pdb.yaml", "{{- if .Values.podDisruptionBudget.enabled }}", "{{- if false }}"),
    ("network policy", "templates/networkpolicy.yaml", 'policyTypes: ["Ingress", "Egress"]',
     'policyTypes: ["Ingress"]'),
    ("model bundle from a volume or an init container", "templates/deployment.yaml",
     "            - name: model\n              mountPath: /models/bundle\n              readOnly: true\n", ""),
    ("Prometheus scrapes /metrics", "templates/deployment.yaml", 'prometheus.io/scrape: "true"',
     'prometheus.io/scrape: "false"'),
]


def test_every_property_has_a_removal_below():
    assert {name for name, *_ in REMOVALS} == {p.name for p in k8s.PROPERTIES}


@pytest.mark.parametrize("name,file,text,replacement", REMOVALS, ids=[r[0] for r in REMOVALS])
def test_a_chart_without_the_property_fails_its_check(name, file, text, replacement, tmp_path):
    chart = tmp_path / "cardguard"
    shutil.copytree(k8s.CHART, chart)
    source = (chart / file).read_text()
    assert text in source, f"the chart changed: update this removal of {name!r}"
    (chart / file).write_text(source.replace(text, replacement))  # every occurrence
    if name == "a Service in front of the pods":  # take the Service out altogether
        (chart / file).unlink()
    objects = k8s.render(chart=chart)
    found = k8s.properties(objects)
    assert found[name], f"{name!r} still holds on a chart without it"


def test_strict_validation_names_an_unknown_field(tmp_path):
    chart = tmp_path / "cardguard"
    shutil.copytree(k8s.CHART, chart)
    path = chart / "templates" / "deployment.yaml"
    path.write_text(path.read_text().replace("readinessProbe:", "readinesProbe:"))
    problems = k8s.validate(k8s.render(chart=chart))
    assert len(problems) == 1 and "Deployment cardguard" in problems[0] and "'readinesProbe' was unexpected" in problems[0]


def test_a_rolling_update_never_drops_below_the_replica_count(default):
    timeline = k8s.rollout_timeline(default, pod_start_seconds=3)
    serving = timeline["old serving"] + timeline["new serving"]
    assert serving.min() >= 2 and timeline["new serving"].iloc[-1] == 2 and timeline["old serving"].iloc[-1] == 0
    assert (timeline["new starting"] + timeline["new serving"] + timeline["old serving"]).max() <= 3  # maxSurge 1
    recreate = k8s.rollout_timeline(k8s.render({"strategy": {"type": "Recreate", "rollingUpdate": None}}),
                                    pod_start_seconds=3)
    assert (recreate["old serving"] + recreate["new serving"]).min() == 0  # the gap a Recreate leaves


def test_quantities_and_percentages_follow_kubernetes():
    assert k8s.quantity("320Mi") == 320 * 2**20 and k8s.quantity("0.5Gi") == 2**29 and k8s.quantity("500m") == 0.5
    assert k8s.quantity("1e3") == 1000 and k8s.quantity("300M") == 300e6 and k8s.quantity(2) == 2
    for bad in ("320MB", "1.5 Gi", "", "Mi", True):
        with pytest.raises(ValueError):
            k8s.quantity(bad)
    assert k8s.resolve("25%", 6, round_up=False) == 1 and k8s.resolve("25%", 6, round_up=True) == 2
    assert k8s.resolve("10%", 6, round_up=False) == 0 and k8s.resolve(1, 6, round_up=True) == 1


# ------------------------------------------------------------------ the server's side: SIGTERM drains


@pytest.fixture(scope="module")
def bundle(course_home, tmp_path_factory):
    from mlops_lab.serving import export_bundle

    with using_home(course_home):
        return export_bundle(tmp_path_factory.mktemp("bundle"))


def test_sigterm_turns_ready_503_at_once_and_drops_no_request_while_draining(bundle, tmp_path):
    """Keep-alive clients keep sending through the drain window: every request sent in it is answered
    (zero resets), answers carry Connection: close, and /ready says 503 from the first probe on."""
    from mlops_lab import data
    from mlops_lab.serving import start_server, to_payload

    drain = 4.0
    payments = to_payload(data.simulate_transactions(200, start="2026-03-02", seed=11))
    with start_server(bundle=bundle, prediction_log=tmp_path / "log.jsonl", drain_seconds=drain) as server:
        signalled = threading.Event()
        sent_at: float = 0.0
        results: list[tuple[float, str, str]] = []  # (sent, outcome, connection header)
        lock = threading.Lock()

        def client(n: int):
            with httpx.Client(timeout=10) as c:  # one keep-alive connection per client
                i = 0
                while True:
                    now = time.monotonic()
                    if signalled.is_set() and now > sent_at + drain - 1.0:
                        return  # the window ends; after it the listening socket closes
                    try:
                        answer = c.post(f"{server.url}/predict", json=payments[(n * 37 + i) % len(payments)])
                        outcome, header = str(answer.status_code), answer.headers.get("connection", "")
                    except httpx.HTTPError as exc:
                        outcome, header = type(exc).__name__, ""
                    with lock:
                        results.append((now, outcome, header))
                    i += 1
                    time.sleep(0.005 * (n % 4))  # some connections sit idle between requests

        threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # every connection open and busy
        with httpx.Client(timeout=5) as probe:
            assert probe.get(f"{server.url}/ready").status_code == 200
            sent_at = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            signalled.set()
            time.sleep(0.2)
            ready = probe.get(f"{server.url}/ready")
            assert ready.status_code == 503 and "draining" in ready.json()["detail"]
            assert probe.get(f"{server.url}/health").status_code == 200  # alive: the kubelet must not restart it
            # what kubernetes.readiness_path_problem assumes of the real server while it drains
            for path in ("/ping", "/ready?probe=kubelet", "/ready/"):
                assert probe.get(f"{server.url}{path}", follow_redirects=True).status_code == 503, path
            assert probe.get(f"{server.url}/version").status_code == 200
        for t in threads:
            t.join(30)
        during = [r for r in results if r[0] > sent_at + 0.3]  # sent after the signal had been handled
        failed = [r for r in results if r[1] != "200"]
        assert len(during) >= 20, f"only {len(during)} requests were sent during the drain window"
        assert failed == [], f"{len(failed)} of {len(results)} requests failed: {failed[:5]}"
        assert all(r[2] == "close" for r in during), "answers during the drain must close their connection"
        assert server.process.wait(30) in (0, -15)
    assert "draining" in server.logs() and "Application shutdown complete" in server.logs()


@pytest.mark.parametrize("path,right", [
    ("/ready", True), ("/ping", True), ("/ready?probe=kubelet", True), ("/ready#frag", True), ("/ready/", True),
    ("/version", False), ("ready", False), ("/health", False), ("/metrics", False)])
def test_the_readiness_property_and_lab_10s_check_apply_one_rule(path, right, tmp_path):
    """A readiness path lab 10's check accepts is one the chart's property (the notebook's section 5) accepts."""
    from mlops_lab import exercises

    probe = {"httpGet": {"path": path, "port": "http"}, "periodSeconds": 2, "failureThreshold": 2}
    why = k8s.properties(k8s.render({"probes": {"readiness": probe}}))["readiness probe on GET /ready"]
    with using_home(tmp_path):
        status, message = exercises.evaluate("10.1", probe)
    assert (why is None, status) == (right, "correct" if right else "incorrect"), (why, message)


def test_the_workshop_values_kubernetes_parts_validate_in_a_pod():
    """docs/workshops.md says its config.yaml's volumes, mounts and quantities pass strict validation."""
    import re

    import yaml

    from .conftest import ROOT

    text = (ROOT / "docs" / "workshops.md").read_text()
    values = yaml.safe_load(re.search(r"\*\*The values file.*?```yaml\n(.*?)```", text, re.S).group(1))
    user, hub = values["singleuser"], values["hub"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "jupyter-learner"},
           "spec": {"volumes": hub["extraVolumes"], "containers": [{
               "name": "notebook", "image": f"{user['image']['name']}:{user['image']['tag']}",
               "volumeMounts": hub["extraVolumeMounts"],
               "resources": {"requests": {"memory": user["memory"]["guarantee"], "cpu": user["cpu"]["guarantee"]},
                             "limits": {"memory": user["memory"]["limit"], "cpu": user["cpu"]["limit"]}}}]}}
    assert k8s.validate([pod]) == []
    assert k8s.quantity(user["memory"]["guarantee"]) <= k8s.quantity(user["memory"]["limit"])
    broken = {**pod, "spec": {**pod["spec"], "volumes": [{"name": "credentials", "secret": {"secretname": "x"}}]}}
    assert "'secretname' was unexpected" in k8s.validate([broken])[0]
