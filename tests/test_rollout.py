"""Safe rollout (issue 12): the rollout state in the real registry, then a real uvicorn server
following it under continuous traffic (shadow, canary, promotion, abort, rollback)."""

import json
import math
import os
import time

import httpx
import numpy as np
import pandas as pd
import psutil
import pytest

from mlops_lab import config, data, registry, training
from mlops_lab.errors import LabError
from mlops_lab.serving import start_server, to_payload
from mlops_lab.serving.app import canary_bucket

from .broken_models import CalibratesPerBatch, SqueezesItsInput
from .conftest import ROOT, Hammer, using_home


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A workspace with two logistic regressions, the weak one over-regularised (the gate tells them
    apart: +0.10 PR-AUC), and a third with a bug that only live traffic meets."""
    with using_home(tmp_path_factory.mktemp("rollout")) as home:
        train, valid, holdout = data.time_split(data.course_dataset())
        runs = {
            "baseline": training.train_and_log("logistic_regression", train, valid),
            "weak": training.train_and_log("logistic_regression", train, valid, C=0.01),
        }
        broken = training.train("logistic_regression", train, valid, C=0.1)
        broken.pipeline.steps[-1] = ("model", SqueezesItsInput(broken.pipeline.named_steps["model"]))
        runs["broken"] = training.log_training_run(broken, valid, run_name="breaks on one payment")
        nan = training.train("logistic_regression", train, valid, C=0.1)
        nan.pipeline.steps[-1] = ("model", CalibratesPerBatch(nan.pipeline.named_steps["model"]))
        runs["nan"] = training.log_training_run(nan, valid, run_name="NaN on one payment")
        yield home, runs, holdout


@pytest.fixture
def in_store(store, monkeypatch):
    home, runs, holdout = store
    monkeypatch.setenv("MLOPS_LAB_HOME", str(home))
    return runs, holdout


def test_no_model_means_no_rollout(in_store):
    assert registry.rollout("nobody") == registry.Rollout(None, None, "off", 0.0)
    with pytest.raises(LabError, match="No rollout in progress .*start_shadow"):
        registry.start_canary(0.1, name="nobody")


def test_rollout_story(in_store):
    runs, holdout = in_store
    name = "rollout-story"
    v1 = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    v1 = v1.challenger_version
    v2 = registry.register(runs["weak"], name=name)
    v3 = registry.register(runs["baseline"], name=name)
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)

    with pytest.raises(LabError, match=f"Version {v1} is already the champion"):
        registry.start_shadow(v1, name=name)
    with pytest.raises(LabError, match="has no version 99"):
        registry.start_shadow("99", name=name)
    for doing in (lambda: registry.start_canary(0.1, name=name), lambda: registry.promote_candidate(name=name),
                  lambda: registry.abort_rollout("why", name=name)):
        with pytest.raises(LabError, match="No rollout in progress"):
            doing()

    shadow = registry.start_shadow(v2, name=name)
    assert shadow == registry.rollout(name) == registry.Rollout(v1, v2, "shadow", 0.0)
    assert registry.start_shadow(v2, name=name) == shadow  # idempotent
    with pytest.raises(LabError, match=f"Version {v2} is already in shadow: promote it .* or abort it"):
        registry.start_shadow(v3, name=name)
    with pytest.raises(LabError, match="A rollout is in progress .*promote_candidate\\(\\) or .*abort_rollout"):
        registry.promote_if_better(v3, holdout, name=name)

    for share, fix in ((0, "go back to shadow"), (1, "promote the candidate instead"), (1.5, "promote"),
                       (-0.2, "abort")):
        with pytest.raises(LabError, match=f"strictly between 0 and 1 .*got {share}.*{fix}"):
            registry.start_canary(share, name=name)
    with pytest.raises(LabError, match="must be a number between 0 and 1"):
        registry.start_canary("ten percent", name=name)
    assert registry.rollout(name).mode == "shadow"  # refused changes changed nothing

    assert registry.start_canary(0.1, name=name) == registry.rollout(name) == registry.Rollout(v1, v2, "canary", 0.1)
    assert registry.start_canary(0.5, name=name) == registry.rollout(name) == registry.Rollout(v1, v2, "canary", 0.5)

    with pytest.raises(LabError, match="Say why the rollout is aborted"):
        registry.abort_rollout("  ", name=name)
    assert registry.abort_rollout("canary error rate 4% > 1%", name=name) == registry.Rollout(v1, None, "off", 0.0)
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)
    assert registry.alias_version("challenger", name) is None
    _, client = registry._client()
    tags = client.get_model_version(name, v2).tags
    assert tags["rollout.aborted_reason"] == "canary error rate 4% > 1%" and tags["rollout.aborted_at"]

    registry.start_shadow(v3, name=name)
    registry.start_canary(0.25, name=name)
    assert registry.promote_candidate(name=name) == registry.rollout(name) == registry.Rollout(v3, None, "off", 0.0)
    assert registry.alias_version("champion", name) == v3 and registry.alias_version("challenger", name) is None
    assert registry.rollback(name=name) == v1  # the promoted candidate remembers whom it replaced
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)


def test_a_challenger_the_gate_kept_out_is_no_rollout(in_store):
    runs, holdout = in_store
    name = "rollout-kept-out"
    good = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    weak = registry.promote_if_better(registry.register(runs["weak"], name=name), holdout, name=name)
    assert weak.verdict == "kept champion"
    assert registry.alias_version("challenger", name) == weak.challenger_version  # as lab 03 leaves it
    assert registry.rollout(name) == registry.Rollout(good.challenger_version, None, "off", 0.0)


def test_gate_judges_without_promoting(in_store):
    runs, holdout = in_store
    name = "rollout-gate"
    first = registry.gate(registry.register(runs["weak"], name=name), holdout, name=name)
    assert first.verdict == "first model" and registry.alias_version("champion", name) is None
    registry.promote_if_better(first.challenger_version, holdout, name=name)
    challenger = registry.register(runs["baseline"], name=name)
    passed = registry.gate(challenger, holdout, name=name)
    assert passed.verdict == "passed" and passed.promoted and passed.interval[0] > 0
    assert "Verdict: passed" in str(passed)
    assert registry.decision_record(challenger, name)["verdict"] == "passed"
    # nothing moved: the candidate goes on to shadow and canary, not straight to champion
    assert registry.alias_version("champion", name) == first.challenger_version
    assert registry.alias_version("challenger", name) is None
    assert registry.rollout(name) == registry.Rollout(first.challenger_version, None, "off", 0.0)
    assert registry.start_shadow(challenger, name=name).candidate == challenger
    worse = registry.gate(registry.register(runs["weak"], name=name), holdout, name=name)
    assert worse.verdict == "kept champion" and not worse.promoted
    assert registry.rollout(name).candidate == challenger  # the gate never touches a running rollout


def test_a_moved_challenger_alias_ends_in_the_champion_answering(in_store):
    # lab 06's CI registers its candidate as challenger: an ungated model must never take over a canary
    runs, holdout = in_store
    name = "rollout-moved"
    champion = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    candidate, stranger = registry.register(runs["weak"], name=name), registry.register(runs["baseline"], name=name)
    registry.start_shadow(candidate, name=name)
    registry.start_canary(0.2, name=name)
    registry.set_alias("challenger", stranger, name=name)
    assert registry.rollout(name) == registry.Rollout(champion.challenger_version, None, "off", 0.0)


# --------------------------------------------------------------------------- the server under traffic

TOKEN = "rollout-token"
ANSWER_KEYS = {"transaction_id", "request_id", "score", "decision", "threshold", "model_version"}


def test_canary_buckets_are_stable_across_processes():
    # blake2b of the transaction_id, not Python's salted hash(): every server process routes a payment alike
    assert canary_bucket("tx-20260302-5-00000000") == pytest.approx(0.436412874, abs=1e-9)
    buckets = np.array([canary_bucket(f"tx-{i}") for i in range(20_000)])
    assert abs((buckets < 0.1).mean() - 0.1) < 0.01 and abs((buckets < 0.5).mean() - 0.5) < 0.02


def test_rollout_under_traffic_fails_no_request(in_store, tmp_path, monkeypatch):
    runs, holdout = in_store
    name = "rollout-http"
    a = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name).challenger_version
    b = registry.register(runs["weak"], name=name)
    broken, nan = registry.register(runs["broken"], name=name), registry.register(runs["nan"], name=name)
    payments = data.simulate_transactions(1000, start="2026-03-02", seed=5)
    log_path = tmp_path / "predictions.jsonl"
    # URIs an earlier store exported into the environment (mlflow.set_registry_uri() does): start_server
    # passes this store's to the server instead
    stale = f"sqlite:///{tmp_path / 'another-store.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", stale)
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", stale)
    env = {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # tests.broken_models
    started = time.monotonic()
    with start_server(name=name, admin_token=TOKEN, poll_seconds=0.3, prediction_log=log_path, env=env) as server, \
            Hammer(server.url, to_payload(payments), pause=0, batch_every=25, timeout=10) as traffic, \
            httpx.Client(timeout=30) as admin:
        # The server's process gets this store's URIs, not the stale ones. (Serving this store's models
        # below cannot tell: the server's own mlflow_client() sets both URIs from MLOPS_LAB_HOME too.)
        server_env = psutil.Process(server.process.pid).environ()
        assert server_env["MLFLOW_TRACKING_URI"] == server_env["MLFLOW_REGISTRY_URI"] == config.tracking_uri()

        def version() -> dict:
            return admin.get(f"{server.url}/version").json()

        def change(step, phase: str, champion: str, mode: str = "off", share: float = 0.0, candidate=None,
                   reload: bool = True):
            """Change the registry (``step``), apply it (reload, or wait for the poller), check /version;
            answers to requests sent meanwhile belong to no phase."""
            traffic.phase = "changing"
            step()
            if reload:
                response = admin.post(f"{server.url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
                assert response.status_code == 200, response.text
            expected = {"mode": mode, "share": share, "candidate_version": candidate}
            deadline = time.monotonic() + 20
            while (version()["version"], version()["rollout"]) != (champion, expected):
                assert time.monotonic() < deadline, f"/version still says {version()}, expected v{champion} {expected}"
                time.sleep(0.1)
            traffic.phase = phase

        traffic.phase = "off-a"
        traffic.wait("off-a", 50)
        change(lambda: registry.start_shadow(b, name=name), "shadow-b", a, "shadow", 0.0, b)
        traffic.wait("shadow-b", 100)
        change(lambda: registry.start_canary(0.1, name=name), "canary-10", a, "canary", 0.1, b)
        traffic.wait("canary-10", 500)
        # the poller picks this one up on its own
        change(lambda: registry.start_canary(0.5, name=name), "canary-50", a, "canary", 0.5, b, reload=False)
        traffic.wait("canary-50", 500)
        change(lambda: registry.promote_candidate(name=name), "promoted-b", b)
        traffic.wait("promoted-b", 50)
        change(lambda: registry.rollback(name=name), "rolled-back-a", a, reload=False)
        traffic.wait("rolled-back-a", 50)
        change(lambda: registry.start_shadow(broken, name=name), "shadow-broken", a, "shadow", 0.0, broken)
        traffic.wait("shadow-broken", 50)
        change(lambda: registry.start_canary(0.5, name=name), "canary-broken", a, "canary", 0.5, broken)
        traffic.wait("canary-broken", 100)
        in_canary = admin.get(f"{server.url}/metrics").text
        change(lambda: registry.abort_rollout("raises on a single payment", name=name), "aborted", a)
        traffic.wait("aborted", 50)
        change(lambda: (registry.start_shadow(nan, name=name), registry.start_canary(0.5, name=name)),
               "canary-nan", a, "canary", 0.5, nan)
        traffic.wait("canary-nan", 100)
        change(lambda: registry.abort_rollout("NaN scores", name=name), "aborted-nan", a)
        traffic.wait("aborted-nan", 20)
        metrics = admin.get(f"{server.url}/metrics").text
    took = time.monotonic() - started

    # zero failed requests, every answer well-formed
    assert traffic.failures == [], traffic.failures[:5]
    for _, answer, _ in traffic.answers:
        assert set(answer) == ANSWER_KEYS and math.isfinite(answer["score"]) and 0 <= answer["score"] <= 1
        assert answer["decision"] == ("flag" if answer["score"] >= answer["threshold"] else "approve")
    served = lambda phase: {x["model_version"] for x in traffic.in_phase(phase)}  # noqa: E731
    assert served("off-a") == served("shadow-b") == served("rolled-back-a") == {a}
    assert served("promoted-b") == {b}
    # a candidate that raises (on single payments; it scores batches) never answers them, never fails one
    assert served("shadow-broken") == served("aborted") == served("aborted-nan") == {a}
    for phase in ("canary-broken", "canary-nan"):
        assert {x["model_version"] for x in traffic.in_phase(phase, alone=True)} == {a}

    # canary: the hash of the transaction_id decides, so routing is sticky, and raising the share keeps
    # the canary's payments; the share holds within 0.05 (any 500 consecutive payments of this pool
    # hash within 0.026 of the share)
    for phase, share in (("canary-10", 0.1), ("canary-50", 0.5)):
        answers = traffic.in_phase(phase)
        for x in answers:
            assert (x["model_version"] == b) == (canary_bucket(x["transaction_id"]) < share), (phase, x)
        observed = np.mean([x["model_version"] == b for x in answers])
        assert abs(observed - share) < 0.05, f"{phase}: the candidate answered {observed:.1%} of {len(answers)}"
        seen = {}
        for x in answers:
            seen.setdefault(x["transaction_id"], set()).add(x["model_version"])
        assert all(len(versions) == 1 for versions in seen.values())
        assert len(answers) > len(seen)  # some payments came back (batches repeat them), and stayed put

    # the log: shadow scores from the candidate's own pipeline, errors recorded, roles right
    records = {r["request_id"]: r for r in map(json.loads, log_path.read_text().splitlines())}
    shadow = [records[x["request_id"]] for x in traffic.in_phase("shadow-b")]
    assert {(r["role"], r["model_version"], r["shadow_version"]) for r in shadow} == {("champion", a, b)}
    sample = shadow[:40]
    frame = pd.DataFrame([r["features"] for r in sample], columns=data.feature_columns())
    expected = training.predict_scores(registry.load(b, name=name), frame)
    np.testing.assert_allclose([r["shadow_score"] for r in sample], expected, rtol=0, atol=1e-9)
    assert all(r["candidate_error"] is None and r["shadow_score_ms"] > 0 for r in shadow)
    canary = [records[x["request_id"]] for x in traffic.in_phase("canary-50")]
    assert all((r["role"] == "canary") == (r["model_version"] == b) and r["shadow_version"] is None for r in canary)
    singles = [records[x["request_id"]] for x in traffic.in_phase("shadow-broken", alone=True)]
    assert len(singles) >= 20 and all(r["shadow_score"] is None and r["shadow_version"] == broken and
                                      r["candidate_error"].startswith(f"v{broken} ValueError") for r in singles)
    routed = [records[x["request_id"]] for x in traffic.in_phase("canary-broken", alone=True)
              if canary_bucket(x["transaction_id"]) < 0.5]
    assert routed and all(r["role"] == "champion" and r["model_version"] == a for r in routed)
    assert all(r["candidate_error"].startswith(f"v{broken} ValueError") for r in routed)
    nan_routed = [records[x["request_id"]] for x in traffic.in_phase("canary-nan", alone=True)
                  if canary_bucket(x["transaction_id"]) < 0.5]
    assert nan_routed and all(r["candidate_error"] == f"v{nan} non-finite score nan" for r in nan_routed)
    for version, mode in ((broken, "shadow"), (broken, "canary"), (nan, "canary")):
        line = next(x for x in metrics.splitlines() if x.startswith("cardguard_candidate_errors_total")
                    and f'mode="{mode}"' in x and f'version="{version}"' in x)
        assert float(line.split()[-1]) > 0
    # memory: the server holds the champion and the candidate, and lets go of a candidate that left
    assert "cardguard_models_loaded 2.0" in in_canary and "cardguard_models_loaded 1.0" in metrics
    assert took < 90, f"the rollout walk-through took {took:.0f} s"
