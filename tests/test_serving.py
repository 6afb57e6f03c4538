"""The API against a real uvicorn server on 127.0.0.1, over HTTP."""

import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest

from mlops_lab import data, registry, training
from mlops_lab.errors import LabError
from mlops_lab.serving import export_bundle, start_server, to_payload
from mlops_lab.serving.schemas import MAX_BATCH

from .conftest import using_home


@pytest.fixture(scope="module")
def bundle(course_home, tmp_path_factory):
    with using_home(course_home):
        return export_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def server(bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("predlog") / "predictions.jsonl"
    with start_server(bundle=bundle, prediction_log=log) as handle:
        yield handle


@pytest.fixture(scope="module")
def payments():
    return data.simulate_transactions(300, start="2026-03-02", seed=5)


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=10) as c:
        yield c


def test_predict_one(server, client, payments):
    body = to_payload(payments.head(1))[0]
    response = client.post(f"{server.url}/predict", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["transaction_id"] == body["transaction_id"]
    assert 0 <= answer["score"] <= 1 and answer["decision"] == ("flag" if answer["score"] >= answer["threshold"] else "approve")
    assert answer["model_version"] == client.get(f"{server.url}/version").json()["version"]


def test_scores_match_the_pipeline(server, client, payments, bundle):
    import pickle

    pipeline = pickle.loads((bundle / "model.pkl").read_bytes())
    response = client.post(f"{server.url}/predict/batch", json={"transactions": to_payload(payments)})
    assert response.status_code == 200
    served = np.array([p["score"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(served, training.predict_scores(pipeline, payments), rtol=0, atol=1e-9)


def test_invocations_speaks_both_mlflow_formats(server, client, payments):
    records = to_payload(payments.head(20))
    columns = list(records[0])
    split = {"dataframe_split": {"columns": columns, "data": [[r[c] for c in columns] for r in records]}}
    a = client.post(f"{server.url}/invocations", json={"dataframe_records": records})
    b = client.post(f"{server.url}/invocations", json=split)
    batch = client.post(f"{server.url}/predict/batch", json={"transactions": records}).json()["predictions"]
    assert a.status_code == b.status_code == 200
    assert a.json() == b.json()
    assert [row[1] for row in a.json()["predictions"]] == pytest.approx([p["score"] for p in batch])


def _valid(payments):
    return to_payload(payments.head(1))[0]


BAD_REQUESTS = [
    # (name, how to break a valid body, status, field, rule)
    ("missing field", lambda b: {k: v for k, v in b.items() if k != "amount"}, 422, "amount", "missing"),
    ("extra field", lambda b: {**b, "cvv": "123"}, 422, "cvv", "extra_forbidden"),
    ("wrong type", lambda b: {**b, "amount": "12.50"}, 422, "amount", "float_type"),
    ("integer as float", lambda b: {**b, "hour": 3.5}, 422, "hour", "int_type"),
    ("unknown category", lambda b: {**b, "channel": "fax"}, 422, "channel", "literal_error"),
    ("negative amount", lambda b: {**b, "amount": -5.0}, 422, "amount", "greater_than_equal"),
    ("hour out of range", lambda b: {**b, "hour": 24}, 422, "hour", "less_than_equal"),
    ("null where not allowed", lambda b: {**b, "new_device": None}, 422, "new_device", "bool_type"),
]


@pytest.mark.parametrize("name, breaker, status, field, rule", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_payloads_name_the_field_and_rule(server, client, payments, name, breaker, status, field, rule):
    response = client.post(f"{server.url}/predict", json=breaker(_valid(payments)))
    assert response.status_code == status
    errors = response.json()["errors"]
    assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in errors], errors
    assert client.get(f"{server.url}/health").status_code == 200


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_rejected(server, client, payments, token):
    raw = json.dumps({**_valid(payments), "amount": 1.0}).replace('"amount": 1.0', f'"amount": {token}')
    response = client.post(f"{server.url}/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert [(e["field"], e["rule"]) for e in response.json()["errors"]] == [("amount", "finite_number")]


def test_empty_and_oversized_batches(server, client, payments):
    empty = client.post(f"{server.url}/predict/batch", json={"transactions": []})
    assert empty.status_code == 422 and empty.json()["errors"][0]["field"] == "transactions"
    assert empty.json()["errors"][0]["rule"] == "too_short"
    one = _valid(payments)
    big = client.post(f"{server.url}/predict/batch", json={"transactions": [one] * (MAX_BATCH + 1)})
    assert big.status_code == 422 and big.json()["errors"][0]["rule"] == "too_long"
    records = client.post(f"{server.url}/invocations", json={"dataframe_records": [{**one, "amount": -1}]})
    assert records.status_code == 422 and records.json()["errors"][0]["field"] == "dataframe_records[0].amount"


def test_malformed_json_and_wrong_content_type(server, client, payments):
    broken = client.post(f"{server.url}/predict", content=b'{"amount": 12.5,', headers={"content-type": "application/json"})
    assert broken.status_code == 400 and "malformed JSON" in broken.json()["detail"]
    text = client.post(f"{server.url}/predict", content=json.dumps(_valid(payments)), headers={"content-type": "text/plain"})
    assert text.status_code == 415 and "application/json" in text.json()["detail"]
    odd = client.post(f"{server.url}/invocations", json={"instances": [1, 2]})
    assert odd.status_code == 422 and "rows must be objects that name their columns" in odd.json()["detail"]
    assert client.get(f"{server.url}/ready").status_code == 200


def test_metrics_version_and_health(server, client, payments):
    client.post(f"{server.url}/predict", json=_valid(payments))
    text = client.get(f"{server.url}/metrics").text
    assert 'cardguard_requests_total{endpoint="/predict",status="200"}' in text
    assert 'cardguard_requests_total{endpoint="/predict",status="422"}' in text
    assert 'cardguard_request_duration_seconds_bucket{endpoint="/predict",le="0.01"}' in text
    assert "cardguard_predictions_total{decision=" in text
    version = client.get(f"{server.url}/version").json()
    assert f'cardguard_model_info{{alias="{version["alias"]}",contract_hash="{data.contract_hash()}"' in text
    assert version["contract_hash"] == data.contract_hash() and version["source"].startswith("bundle:")
    assert version["rollout"] == {"mode": "off", "share": 0.0, "candidate_version": None}  # a bundle has no rollout
    assert client.get(f"{server.url}/docs").status_code == 200


def test_prediction_log_loses_nothing_on_shutdown(bundle, tmp_path, payments):
    log = tmp_path / "log.jsonl"
    with start_server(bundle=bundle, prediction_log=log) as handle:
        with httpx.Client() as c:
            ids = []
            for i in range(0, 300, 50):
                answer = c.post(f"{handle.url}/predict/batch", json={"transactions": to_payload(payments.iloc[i:i + 50])})
                ids += [p["request_id"] for p in answer.json()["predictions"]]
    assert handle.stop() in (0, -15)  # uvicorn re-raises SIGTERM after its graceful shutdown
    assert "Application shutdown complete" in handle.logs()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["request_id"] for r in lines] == ids
    assert set(lines[0]) == {"request_id", "transaction_id", "timestamp", "features", "score", "decision", "model_version",
                             "score_ms", "role", "shadow_version", "shadow_score", "shadow_score_ms", "candidate_error"}
    assert lines[0]["role"] == "champion" and lines[0]["shadow_version"] is None and lines[0]["score_ms"] > 0
    assert set(lines[0]["features"]) == set(data.feature_columns())


def test_a_log_left_cut_short_by_a_stopped_server_loses_no_record_of_the_next(bundle, tmp_path, payments):
    """A server (or kernel) killed mid-write leaves the log's last line cut short. The next server starts a line
    of its own, so its first record is not glued to that fragment; the loop's reader skips the fragment and reads
    every record after it; read_prediction_log names the fragment's line."""
    from mlops_lab import pipeline
    from mlops_lab.monitoring import read_prediction_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"request_id":"r0","transaction_id":"t0","timestamp":"2026-02-16T10:00:00.000+00:00","feat')
    sent = payments.iloc[:50]
    with start_server(bundle=bundle, prediction_log=log, in_thread=True) as handle:
        httpx.post(f"{handle.url}/predict/batch", json={"transactions": to_payload(sent)}).raise_for_status()
    assert handle.stop() == 0
    lines = log.read_text().split("\n")
    assert lines[0].endswith('"feat') and len(lines) == 52 and lines[-1] == ""
    records, end = pipeline._read_log(log, 0, set(sent["transaction_id"]))
    assert [r["transaction_id"] for r in records] == list(sent["transaction_id"]) and end == log.stat().st_size
    with pytest.raises(LabError, match="Line 1 of the prediction log .* not one JSON object.*cut short"):
        read_prediction_log(log)


def test_no_model_at_the_alias_says_why(use_course_home):
    with pytest.raises(LabError) as info:
        start_server(alias="nonexistent", timeout=60)
    message = str(info.value)
    assert "cannot serve: model not ready: No nonexistent for model 'cardguard'" in message
    assert "ERROR mlops_lab.serving: model not ready" in message  # the server's own log line


def test_reload_needs_the_admin_token(server, client):
    assert client.post(f"{server.url}/admin/reload").status_code == 403


def test_hot_reload_under_load_fails_no_request(use_course_home, payments):
    """Steady concurrent load while the champion flips between two versions and the server reloads."""
    versions = registry.versions()
    champion = registry.alias_version("champion")
    other = next(v for v in versions.index if v != champion)
    bodies = to_payload(payments)
    failures, seen, stop = [], set(), threading.Event()
    counts = [0] * 4

    def load(worker):
        with httpx.Client(timeout=10) as c:
            i = worker
            while not stop.is_set():
                try:
                    r = c.post(f"{handle.url}/predict", json=bodies[i % len(bodies)])
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        seen.add(r.json()["model_version"])
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                counts[worker] += 1
                i += 4

    with start_server(admin_token="s3cret") as handle:
        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        try:
            with httpx.Client(timeout=60) as admin:
                assert admin.post(f"{handle.url}/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
                for target in [other, champion, other, champion]:
                    registry.set_alias("champion", target)
                    answer = admin.post(f"{handle.url}/admin/reload", headers={"Authorization": "Bearer s3cret"})
                    assert answer.status_code == 200 and answer.json()["new_version"] == target
                    time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
            registry.set_alias("champion", champion)
    assert failures == []
    assert sum(counts) > 200
    assert seen == {champion, other}


def test_mlops_lab_serve_command(bundle, tmp_path):
    import os
    import subprocess
    import sys

    from mlops_lab.serving.server import free_port, wait_until_ready

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "mlops_lab.cli", "serve", "--bundle", str(bundle), "--port", str(port)],
                               env={**os.environ, "MLOPS_LAB_PREDICTION_LOG": str(tmp_path / "log.jsonl")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, 60, alive=lambda: process.poll() is None)
        assert httpx.get(f"{url}/version").json()["source"] == f"bundle:{bundle}"
    finally:
        process.terminate()
        process.wait(30)


def test_alias_poller_swaps_to_the_new_champion(use_course_home, payments):
    champion = registry.alias_version("champion")
    other = next(v for v in registry.versions().index if v != champion)
    with start_server(poll_seconds=0.5) as handle:
        assert httpx.get(f"{handle.url}/version").json()["version"] == champion
        try:
            registry.set_alias("champion", other)
            deadline = time.monotonic() + 30
            while httpx.get(f"{handle.url}/version").json()["version"] != other:
                assert time.monotonic() < deadline, "the poller did not pick up the new champion"
                time.sleep(0.2)
            answer = httpx.post(f"{handle.url}/predict", json=to_payload(payments.head(1))[0]).json()
            assert answer["model_version"] == other
        finally:
            registry.set_alias("champion", champion)


def test_context_manager_stops_the_server_on_an_exception(bundle, tmp_path):
    with pytest.raises(RuntimeError, match="learner's mistake"):
        with start_server(bundle=bundle, prediction_log=tmp_path / "log.jsonl") as handle:
            assert httpx.get(f"{handle.url}/ready").status_code == 200
            raise RuntimeError("learner's mistake")
    assert not handle.running and handle.process.returncode is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.url}/health")


def test_a_server_in_a_thread_serves_logs_and_stops_as_one_of_its_own_does(bundle, tmp_path, payments):
    """start_server(in_thread=True), as the labs run it: the same app over HTTP, no second process, the prediction
    log flushed on stop, the port closed after it, and nothing left attached to the process's loggers."""
    import logging
    import shutil

    import psutil

    loggers = {name: list(logging.getLogger(name).handlers) for name in ("mlops_lab.serving", "uvicorn.error")}
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    log = tmp_path / "log.jsonl"
    with start_server(bundle=bundle, prediction_log=log, in_thread=True, report=None) as handle:
        assert handle.process is None and handle.running
        assert not {p.pid for p in psutil.Process().children(recursive=True)} - before, "it started a process"
        with httpx.Client() as c:
            ids = []
            for i in range(0, 200, 50):
                answer = c.post(f"{handle.url}/predict/batch", json={"transactions": to_payload(payments.iloc[i:i + 50])})
                ids += [p["request_id"] for p in answer.json()["predictions"]]
            bad = c.post(f"{handle.url}/predict", json={**to_payload(payments.head(1))[0], "amount": -3.0})
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "amount"
    handle.stop()  # stopping twice is fine
    assert not handle.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{handle.url}/health")
    assert [json.loads(line)["request_id"] for line in log.read_text().splitlines()] == ids
    assert {name: list(logging.getLogger(name).handlers) for name in loggers} == loggers

    # a model that cannot load: the same one-line reason as from a server of its own
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    (damaged / "model.pkl").write_bytes(b"garbage")
    threads = set(threading.enumerate())  # other tests' servers (lab 05's probe servers) live on in this process
    with pytest.raises(LabError, match="does not match the digest recorded at export"):
        start_server(bundle=damaged, prediction_log=tmp_path / "log2.jsonl", in_thread=True, timeout=60, report=None)
    # a port already taken: the bind error is in the message, from the server's own log
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(LabError, match="(?s)exited before it was ready.*address already in use"):
            start_server(bundle=bundle, port=taken.getsockname()[1], in_thread=True, timeout=30, report=None)
    assert not [t for t in set(threading.enumerate()) - threads if t.name.startswith("mlops-lab-uvicorn-")], \
        "the server that could not start left its thread running"

    # what only a process can do is refused, saying what to do instead
    for asked in ({"drain_seconds": 5}, {"env": {"MLOPS_LAB_MAX_BODY_BYTES": "10"}}):
        with pytest.raises(LabError, match=f"cannot take {next(iter(asked))}.*leave out in_thread=True"):
            start_server(bundle=bundle, in_thread=True, report=None, **asked)


def test_a_server_thread_that_will_not_end_is_reported_by_stop(tmp_path):
    """A thread cannot be killed as a process can: when uvicorn's thread outlives ``stop``'s wait and a forced
    exit (here a request whose handler blocks the event loop until the test lets it go), stop says so (1)
    instead of reporting a clean stop, and the server's log handler is detached all the same."""
    import asyncio
    import logging
    import time

    from fastapi import FastAPI

    from mlops_lab.serving.server import _ThreadServerHandle, free_port, wait_until_ready

    entered, release = threading.Event(), threading.Event()
    app = FastAPI()
    app.get("/ready")(lambda: {"ok": True})

    @app.get("/hang")
    async def hang():
        entered.set()
        release.wait(30)  # blocks the event loop itself: nothing uvicorn does can end it
        return {}

    handlers = list(logging.getLogger("uvicorn.error").handlers)
    handle = _ThreadServerHandle(app, free_port(), tmp_path / "server.log")
    client = threading.Thread(target=lambda: httpx.get(f"{handle.url}/hang", timeout=60), daemon=True)
    try:
        wait_until_ready(handle.url, 30, alive=lambda: handle.running)
        client.start()
        assert entered.wait(10)
        started = time.monotonic()
        assert handle.stop(timeout=0.3) == 1 and handle.running
        assert time.monotonic() - started < 2.5, "stop waited longer than asked"
        assert logging.getLogger("uvicorn.error").handlers == handlers
    finally:
        release.set()
    handle._thread.join(10)
    client.join(10)
    assert not handle.running and handle.stop() == 0  # once ended, stop has nothing left to do

    # a request that outlasts the wait, without blocking the loop: the exit is forced (it ends), and said
    in_flight = threading.Event()

    @app.get("/slow")
    async def slow():
        in_flight.set()
        await asyncio.sleep(20)

    handle = _ThreadServerHandle(app, free_port(), tmp_path / "server2.log")
    wait_until_ready(handle.url, 30, alive=lambda: handle.running)
    client = threading.Thread(target=lambda: httpx.get(f"{handle.url}/slow", timeout=60), daemon=True)
    client.start()
    assert in_flight.wait(10)
    assert handle.stop(timeout=0.3) == 1 and not handle.running


def test_quieting_mlflow_from_two_threads_at_once_leaves_the_process_as_it_was():
    """An in-thread server loads models (quieting MLflow) while the notebook does too: the two may leave in
    either order, and the process's stderr, warning filters and MLflow's log level must come back."""
    import logging
    import sys
    import warnings

    from mlops_lab.tracking import _quiet_mlflow

    before = (sys.stderr, logging.getLogger("mlflow").level, list(warnings.filters))
    entered, release = threading.Event(), threading.Event()

    def other():
        with _quiet_mlflow():
            entered.set()
            release.wait(10)

    mine = _quiet_mlflow()
    mine.__enter__()
    thread = threading.Thread(target=other)
    thread.start()
    assert entered.wait(10)
    mine.__exit__(None, None, None)  # this one leaves first: interleaved, not nested
    assert sys.stderr is not before[0], "quieting ended while the other thread still needs it"
    release.set()
    thread.join(10)
    assert (sys.stderr, logging.getLogger("mlflow").level, list(warnings.filters)) == before


@pytest.fixture
def plain_environment(monkeypatch):
    for name in ("JUPYTERHUB_SERVICE_PREFIX", "JPY_SESSION_NAME", "JPY_PARENT_PID"):
        monkeypatch.delenv(name, raising=False)


def test_browser_url_outside_jupyter_is_localhost(server, plain_environment):
    assert server.browser_url() == f"http://127.0.0.1:{server.port}/docs"
    assert server.browser_url("redoc") == f"{server.url}/redoc"


def test_browser_url_under_jupyter_goes_through_the_proxy(server, plain_environment, monkeypatch, tmp_path):
    from mlops_lab.serving import server as module

    # The kernel's environment as a Jupyter server (base URL /course/) gives it, and the server's runtime file.
    (tmp_path / "jpserver-4242.json").write_text(json.dumps({"base_url": "/course/", "pid": 4242, "port": 8888}))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/learner/labs/04_serving.ipynb")
    monkeypatch.setenv("JPY_PARENT_PID", "4242")
    monkeypatch.setattr(module, "proxy_installed", lambda: False)
    assert server.browser_url() == f"{server.url}/docs"  # no proxy: the only address there is
    monkeypatch.setattr(module, "proxy_installed", lambda: True)
    assert server.browser_url() == f"/course/proxy/{server.port}/docs"
    monkeypatch.setenv("JPY_PARENT_PID", "4243")  # a server without a runtime file: the default base URL
    assert server.browser_url("/openapi.json") == f"/proxy/{server.port}/openapi.json"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada")  # JupyterHub and Binder
    assert server.browser_url() == f"/user/ada/proxy/{server.port}/docs"


# --------------------------------------------------------------------------- hardening (issue 8)

SCORING = ["/predict", "/predict/batch", "/invocations"]


def _raw_bodies(payments, endpoint: str, record: str) -> bytes:
    """A request body for ``endpoint`` around one record given as raw JSON text."""
    return {"/predict": record, "/predict/batch": f'{{"transactions": [{record}]}}',
            "/invocations": f'{{"dataframe_records": [{record}]}}'}[endpoint].encode()


def _with_raw(payments, field: str, raw: str) -> str:
    """A valid record as JSON text, with ``field``'s value replaced by raw JSON text."""
    return json.dumps({**_valid(payments), field: "@@"}).replace('"@@"', raw)


@pytest.mark.parametrize("endpoint", SCORING)
@pytest.mark.parametrize("where", ["value", "key", "category"])
def test_a_lone_surrogate_gets_400_not_500(server, client, payments, endpoint, where):
    broken = {"value": _with_raw(payments, "transaction_id", '"\\ud800"'),
              "key": _with_raw(payments, "amount", "1.5").replace('"amount"', '"\\ud800"'),
              "category": _with_raw(payments, "channel", '"chip\\udfff"')}[where]
    assert "\\ud800" in broken or "\\udfff" in broken
    response = client.post(f"{server.url}{endpoint}", content=_raw_bodies(payments, endpoint, broken),
                           headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert "malformed JSON" in response.json()["detail"] and response.json()["errors"][0]["rule"] == "json_invalid"


@pytest.mark.parametrize("endpoint", SCORING)
def test_deep_nesting_gets_400(server, client, payments, endpoint):
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post(f"{server.url}{endpoint}", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400 and "recursion" in response.json()["detail"]
    nested = _with_raw(payments, "channel", "[" * 3000 + "]" * 3000)
    response = client.post(f"{server.url}{endpoint}", content=_raw_bodies(payments, endpoint, nested),
                           headers={"content-type": "application/json"})
    assert response.status_code == 400 and "recursion" in response.json()["detail"], response.text


def test_an_oversized_body_gets_413_before_it_is_read(server, client, payments):
    import socket

    from mlops_lab.serving.app import MAX_BODY_BYTES

    # Content-Length says 200 MB and nothing follows: the answer comes at once, without waiting for the body.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
        raw.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 200000000\r\n\r\n")
        head = raw.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413"), head
    # A chunked body (no Content-Length) is counted as it arrives and cut off at the limit.
    sent = []

    def chunks():
        for _ in range(50):  # 50 MB if it were all read
            sent.append(1)
            yield b" " * 1_000_000

    start = time.perf_counter()
    response = client.post(f"{server.url}/predict/batch", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "MLOPS_LAB_MAX_BODY_BYTES" in response.json()["detail"]
    assert time.perf_counter() - start < 10
    # A full batch of the largest payments fits well within the limit.
    one = {**_valid(payments), "transaction_id": "x" * 100}
    full = json.dumps({"transactions": [one] * MAX_BATCH}, indent=2)
    assert len(full) < MAX_BODY_BYTES
    assert client.post(f"{server.url}/predict/batch", content=full, headers={"content-type": "application/json"}).status_code == 200
    assert client.get(f"{server.url}/ready").status_code == 200


@pytest.fixture(scope="module")
def admin_server(bundle, tmp_path_factory):
    with start_server(bundle=bundle, admin_token="s3cret", prediction_log=tmp_path_factory.mktemp("admin") / "p.jsonl") as handle:
        yield handle


@pytest.mark.parametrize("header, status", [
    ("Bearer s3cret", 200), ("bearer s3cret", 200), ("BEARER  s3cret", 200),
    (None, 401), ("s3cret", 401), ("Basic s3cret", 401), ("Bearer", 401), ("Bearer wrong", 401),
])
def test_admin_token_follows_rfc_6750(admin_server, header, status):
    headers = {"Authorization": header} if header is not None else {}
    response = httpx.post(f"{admin_server.url}/admin/reload", headers=headers, timeout=60)
    assert response.status_code == status, response.text
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "Bearer <MLOPS_LAB_ADMIN_TOKEN>" in response.json()["detail"]


def test_a_corrupt_bundle_is_refused_with_one_line_and_the_fix(bundle, tmp_path):
    import shutil

    from mlops_lab.serving.model import load_from_bundle

    damaged = tmp_path / "damaged"
    shutil.copytree(bundle, damaged)
    pickled = (damaged / "model.pkl").read_bytes()
    (damaged / "model.pkl").write_bytes(pickled[: len(pickled) // 2])
    with pytest.raises(LabError, match="does not match the digest recorded at export.*mlops-lab container"):
        load_from_bundle(damaged)
    # A bundle without a digest is not unpickled either.
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["model_sha256"].startswith("sha256:")
    (damaged / "model.pkl").write_bytes(pickled)
    (damaged / "model.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "model_sha256"}))
    with pytest.raises(LabError, match="records no digest"):
        load_from_bundle(damaged)
    # Served: the server says why in one line, with no traceback in its log.
    (damaged / "model.pkl").write_bytes(b"garbage")
    (damaged / "model.json").write_text(json.dumps({**meta, "model_sha256": "sha256:" + __import__("hashlib").sha256(b"garbage").hexdigest()}))
    with pytest.raises(LabError) as info:
        start_server(bundle=damaged, prediction_log=tmp_path / "log.jsonl", timeout=60)
    message = str(info.value)
    assert "cannot be unpickled (UnpicklingError" in message and "lab.setup(5)" in message
    assert "Traceback" not in message


def test_serve_command_without_a_champion_says_the_shell_command(use_course_home):
    from .conftest import run_cli

    result = run_cli("serve", "--alias", "nonexistent", "--port", "1")
    assert result.returncode == 2
    assert "No nonexistent for model 'cardguard'" in result.stderr and "`mlops-lab setup 4`" in result.stderr
    assert "lab.setup" not in result.stderr


# --- slow clients (issue 23): headers and bodies that never finish are cut after a documented time


@pytest.fixture(scope="module")
def impatient_server(bundle, tmp_path_factory):
    """A server whose limits are short, so the test is too: 2 s for headers, 2 s for a body."""
    with start_server(bundle=bundle, env={"MLOPS_LAB_HEADER_SECONDS": "2", "MLOPS_LAB_BODY_SECONDS": "2"},
                      report=None) as handle:
        yield handle


def _until_closed(sock, limit: float = 30) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and after how long (bounded)."""
    import time

    sock.settimeout(1)
    start, got = time.monotonic(), b""
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return got, time.monotonic() - start


@pytest.mark.parametrize("opening", [b"", b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty"],
                         ids=["nothing-sent", "headers-half-sent"])
def test_slow_headers_are_cut(impatient_server, opening):
    import socket

    connections = []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5)
            sock.sendall(opening)
            connections.append(sock)
        for sock in connections:
            got, seconds = _until_closed(sock)
            assert seconds < 25, "the connection was still open"
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:200]
    finally:
        for sock in connections:
            sock.close()
    assert httpx.get(f"{impatient_server.url}/health", timeout=10).status_code == 200  # others are served


def test_slow_body_is_cut_with_a_408(impatient_server):
    import socket

    connections = []
    try:
        for _ in range(5):
            sock = socket.create_connection(("127.0.0.1", impatient_server.port), timeout=5)
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 400\r\n\r\n{\"amount\": 1")
            connections.append(sock)
        for sock in connections:
            got, seconds = _until_closed(sock)
            assert seconds < 25, "the connection was still open"
            assert got.startswith(b"HTTP/1.1 408"), got[:300]
            assert b"did not arrive within 2 s" in got
    finally:
        for sock in connections:
            sock.close()
    assert httpx.get(f"{impatient_server.url}/health", timeout=10).status_code == 200


def test_lab_setup_on_binder_stops_the_servers_other_kernels_left_running(bundle, tmp_path, monkeypatch):
    """On Binder every kernel a learner leaves running shares 2 GB: lab.setup stops the API servers that
    another process (an earlier lab's kernel) started in the workspace, and says so; its own it leaves alone."""
    import json as json_
    import os

    from mlops_lab import course
    from mlops_lab.serving.server import stop_servers_left_running

    monkeypatch.setenv("MLOPS_LAB_HOME", str(tmp_path / "workspace"))
    with start_server(bundle=bundle, prediction_log=tmp_path / "mine.jsonl") as mine, \
            start_server(bundle=bundle, prediction_log=tmp_path / "theirs.jsonl") as theirs:
        record = json_.loads(theirs.record.read_text())
        theirs.record.write_text(json_.dumps({**record, "owner": os.getppid()}))  # as if another kernel had
        assert stop_servers_left_running(report=None) == [theirs.url]
        assert theirs.process.wait(15) is not None and not theirs.record.exists()
        assert mine.running and httpx.get(f"{mine.url}/ready").status_code == 200
        theirs.record.write_text(json_.dumps({**record, "owner": os.getppid()}))  # its pid is gone: forgotten
        assert stop_servers_left_running(report=None) == [] and not theirs.record.exists()
        lines = []
        monkeypatch.setenv("MLOPS_LAB_BINDER", "1")
        mine.record.write_text(json_.dumps({**json_.loads(mine.record.read_text()), "owner": os.getppid()}))
        course.setup(0, report=lines.append)
        assert not mine.running or mine.process.wait(15) is not None
        assert any(f"stopped the API server an earlier lab left running at {mine.url}" in line for line in lines)
