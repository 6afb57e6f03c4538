"""The retraining loop of lab 08 (mlops_lab.pipeline) against a real server and a real registry.

One workspace for the module (setup runs once); each loop runs on its own registered model
(``run_loop(name=...)``), which starts from a copy of the course's champion, so the runs do not
touch each other and number their versions alike."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from mlops_lab import pipeline, registry, training
from mlops_lab.monitoring import AlertRule
from mlops_lab.serving.client import to_payload
from mlops_lab.serving.server import start_server

from .conftest import Hammer, run_cli, using_home

WEEKS, DRIFT = 6, "card_testing@3"  # the lab's run: two quiet weeks, then the new fraud pattern
FUTURE = "2099-01-01"  # every label has arrived: the ground truth, for judging the loop afterwards


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with using_home(tmp_path_factory.mktemp("loop-home")) as home:
        pipeline.run_loop(1, name="cardguard-prepare", stop_after_days=0, report=None)  # labs 01-07's leftovers
        yield home


@pytest.fixture(scope="module")
def drift_run(workspace):
    """The lab's run, against a server the test started and hammers with payments meanwhile."""
    name = "cardguard-drift"
    pipeline.run_loop(1, DRIFT, name=name, stop_after_days=0, report=None)  # its model and champion
    log = workspace / "drift-predictions.jsonl"
    frame = pipeline.week_payments(99, "none", 200)
    bodies = to_payload(frame.assign(transaction_id="hammer-" + frame["transaction_id"]))
    # a request every 0.05 s: at least 100 across the loop's six weeks, its shadow, canary and promotion
    with start_server(name=name, admin_token="t0ken", prediction_log=log) as server, \
            Hammer(server.url, bodies, pause=0.05) as hammer:
        lines = []
        pipeline.run_loop(WEEKS, DRIFT, name=name, url=server.url, admin_token="t0ken", prediction_log=log,
                          report=lines.append)
    return {"name": name, "hammer": hammer, "lines": lines, "events": pipeline.events(name),
            "now": pipeline.timeline(name=name), "truth": pipeline.timeline(FUTURE, name=name)}


def test_concept_drift_is_detected_retrained_promoted_and_pr_auc_recovers(drift_run):
    ev, truth = drift_run["events"], drift_run["truth"]
    assert sum(line.startswith("week ") for line in drift_run["lines"]) == WEEKS  # one progress line per week
    alerts = ev[ev["kind"] == "alert"]
    assert alerts["week"].min() == 3, "the drift alert fires in the first week of card testing, and not before"
    assert "hour" in truth.loc[3, "drift"] and "amount" in truth.loc[3, "drift"]
    kinds = list(ev["kind"])
    for kind in ("retrain", "ci", "register", "gate", "shadow", "shadow verdict", "canary", "canary verdict",
                 "promotion"):
        assert kind in kinds, f"no {kind} event: {kinds}"
    promotion = ev[ev["kind"] == "promotion"].iloc[0]
    for verdict in ev[ev["kind"].isin(["shadow verdict", "canary verdict"])].itertuples():
        assert verdict.ok and not any("not measured" in r for r in verdict.reasons), verdict.reasons  # p99 read
    order = [kinds.index(k) for k in ("alert", "gate", "shadow", "canary", "promotion")]
    assert order == sorted(order)
    passed = ev[(ev["kind"] == "gate") & (ev["ok"] == True)].iloc[0]  # noqa: E712
    assert passed["version"] == promotion["version"] and passed["week"] < promotion["week"]
    # the gate's holdout rolls: a new one at every gate, the most recent week before the decision
    gates = ev[ev["kind"] == "gate"]
    assert gates["holdout_digest"].is_unique and len(gates) >= 2
    # the promoted version answers every payment from its promotion on; the first champion the ones before
    served = _served(drift_run["name"], 7 * (promotion["week"] - 1) + promotion["day"], 7 * WEEKS)
    assert set(served["model_version"]) == {promotion["version"]}
    assert truth.loc[1, "champion"] == "v1" and promotion["previous"] == "1"
    # Figures on the ground truth (every label arrived). PR-AUC fell with the drift and recovers after
    # the promotion, back to (or above) its pre-drift level.
    before, during = truth.loc[[1, 2]], truth.loc[[3, 4]]
    after_pr_auc = average_precision_score(served["is_fraud"], served["score"])
    assert during["pr_auc"].mean() < before["pr_auc"].mean() - 0.10
    assert after_pr_auc > during["pr_auc"].mean() + 0.15
    assert after_pr_auc > before["pr_auc"].mean() - 0.05
    # Expected cost recovers too. The loop retrains cost-aware (frauds weighted by their amount) and its
    # gate refuses a challenger that costs more than the champion on the holdout, so the new champion does
    # not buy its PR-AUC with reviews of EUR 2 card tests. On the payments served after the promotion it
    # costs at least 10% less than the old champion would have (26% less in this run), and no more than
    # 10% above the pre-drift weeks' level (below it in this run).
    old = registry.load(promotion["previous"], drift_run["name"])
    threshold = float(registry._client()[1].get_model_version(drift_run["name"], promotion["previous"]).tags["threshold"])
    new_cost = _cost(served, served["decision"] == "flag")
    old_cost = _cost(served, training.predict_scores(old, served) >= threshold)
    before_cost = before["cost_per_1000"].mean()
    print(truth.drop(columns="events").to_string(), f"\nafter the promotion: PR-AUC {after_pr_auc:.3f}, cost per "
          f"1,000 EUR {new_cost:.0f} (the old champion on the same payments: EUR {old_cost:.0f}; weeks 1-2: EUR "
          f"{before_cost:.0f})")
    assert new_cost < 0.9 * old_cost
    assert new_cost < 1.1 * before_cost
    gate = ev[(ev["kind"] == "gate") & (ev["version"] == promotion["version"])].iloc[0]
    assert gate["challenger_cost_per_1000"] <= 1.1 * gate["champion_cost_per_1000"]
    assert any("expected cost on the holdout" in r for r in gate["reasons"])


def _cost(served: pd.DataFrame, flag) -> float:
    """Expected cost per 1,000 payments on the ground truth (missed fraud, review fee, declined customer)."""
    from mlops_lab.training import DECLINE_COST, REVIEW_FEE

    y, flag = served["is_fraud"].to_numpy() == 1, np.asarray(flag)
    cost = (served["amount"].to_numpy() * (y & ~flag)).sum() + REVIEW_FEE * flag.sum() + DECLINE_COST * (flag & ~y).sum()
    return 1000 * cost / len(served)


def _served(name: str, since: int, until: int) -> pd.DataFrame:
    """The payments served on absolute days [since, until), as the loop recorded them from the log."""
    return pd.concat([pd.read_parquet(pipeline.config.path("loop", name, "days", f"week{d // 7 + 1:02d}-day{d % 7}.parquet"))
                      for d in range(since, until)], ignore_index=True)


def test_zero_failed_requests_across_every_rollout_change(drift_run):
    hammer = drift_run["hammer"]
    assert len(hammer.statuses) > 100
    failures = [s for s in hammer.statuses if s != 200]
    assert failures == [], f"{len(failures)} failed requests: {failures[:5]}"
    promotion = drift_run["events"].query("kind == 'promotion'").iloc[0]
    assert promotion["version"] in hammer.versions  # the hammer met the new champion (and the old one)
    state = pipeline._read_json(pipeline.config.path("loop", drift_run["name"], "state.json"), {})
    assert state["failed_requests"] == 0


def test_canary_answers_its_share_and_no_more(drift_run):
    ev = drift_run["events"]
    verdict = ev[ev["kind"] == "canary verdict"].iloc[0]
    share = ev[ev["kind"] == "canary"].iloc[0]["share"]
    n = verdict["figures"]["requests"] + verdict["champion_figures"]["requests"]
    assert abs(verdict["answered_share"] - share) < 4 * np.sqrt(share * (1 - share) / n)
    assert verdict["ok"] and any("flag rate" in r for r in verdict["reasons"])


def test_the_gate_refuses_a_costlier_challenger(workspace):
    """The gate's cost question can say no: a policy that asks a challenger to halve the champion's expected
    cost on the holdout keeps the champion through the card-testing weeks, and says why."""
    name = "cardguard-cost"
    pipeline.run_loop(4, DRIFT, pipeline.Policy(max_cost_increase=-0.5), name=name, report=None)
    ev = pipeline.events(name)
    gates = ev[ev["kind"] == "gate"]
    assert len(gates) >= 1 and not gates["ok"].any()
    assert "promotion" not in set(ev["kind"])
    refused = [r for reasons in gates["reasons"] for r in reasons if "too costly, kept the champion" in r]
    assert refused and all("at most -50% allowed" in r for r in refused), list(gates["reasons"])
    assert (gates["challenger_cost_per_1000"] > 0.5 * gates["champion_cost_per_1000"]).all()


def test_no_drift_control_no_churn(workspace):
    name = "cardguard-control"
    rules = pipeline.Policy().alert_rules + (AlertRule("cost", "cost_per_1000", ">", 50_000),)  # any lab 07 metric
    table = pipeline.run_loop(4, "none", pipeline.Policy(alert_rules=rules, retrain_every=2), name=name, report=None)
    ev = pipeline.events(name)
    assert (ev["kind"] == "gate").sum() == 2  # retrained on schedule every other week, judged each time
    assert not ev["kind"].isin(["alert", "shadow", "canary", "promotion"]).any(), ev[["week", "kind", "reasons"]]
    assert set(table["champion"]) == {"v1"} and set(table["drift"]) == {"none"}
    assert registry.rollout(name).champion == "1"


@pytest.fixture(scope="module")
def worse_runs(workspace):
    """A worse challenger forced into canary by hand, then a week of the loop (retraining at its end):
    straight through, and stopped a day into the canary, resumed, killed in the middle of the rollback
    (the registry changed, the loop's state not saved), resumed again."""
    runs = {}
    for name, stop in (("cardguard-worse", None), ("cardguard-worse-resumed", 1)):
        pipeline.run_loop(1, name=name, stop_after_days=0, report=None)
        _, client = registry._client()
        run_id = client.get_model_version(name, "1").run_id
        worse = registry.register(run_id, name)  # the champion's model with a threshold that flags everything
        client.set_model_version_tag(name, worse, "threshold", "1e-9")
        registry.start_shadow(worse, name)
        registry.start_canary(0.2, name)
        policy = pipeline.Policy(retrain_every=1)
        if stop is not None:
            pipeline.run_loop(1, policy=policy, name=name, stop_after_days=stop, report=None)
            state = pipeline._read_json(pipeline.config.path("loop", name, "state.json"), {})
            assert state["day"] == stop and state["rollout"]["phase"] == "canary"
            # then the process dies right after the registry's rollback, before the loop saved its state
            abort = registry.abort_rollout

            def abort_then_die(reason, name=None, abort=abort):
                abort(reason, name)
                raise KeyboardInterrupt

            with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
                patch.setattr(registry, "abort_rollout", abort_then_die)
                pipeline.run_loop(1, policy=policy, name=name, report=None)
            assert registry.rollout(name).candidate is None
            assert "rollback" not in set(pipeline.events(name)["kind"])
        table = pipeline.run_loop(1, policy=policy, name=name, report=None)
        runs[name] = {"worse": worse, "table": table, "events": pipeline.events(name), "rollout": registry.rollout(name),
                      "truth": pipeline.timeline(FUTURE, name=name)}
    return runs


def test_a_worse_challenger_is_rolled_back_automatically(worse_runs):
    run = worse_runs["cardguard-worse"]
    ev, worse = run["events"], run["worse"]
    assert list(ev["kind"][:3]) == ["adopted", "canary verdict", "rollback"]
    verdict, rollback = ev.iloc[1], ev.iloc[2]
    assert not verdict["ok"] and rollback["day"] == 2  # after the policy's two canary days
    assert "flag rate 100.00% outside" in rollback["reasons"][0] and rollback["reasons"][0].startswith("canary verdict")
    # it never answered more than its canary share (20%, give or take binomial noise on 2,000 payments)
    assert 0.2 - 4 * np.sqrt(0.2 * 0.8 / 2000) <= verdict["answered_share"] <= 0.2 + 4 * np.sqrt(0.2 * 0.8 / 2000)
    # after the rollback the champion answers everything, and the registry says so
    assert set(_served("cardguard-worse", 2, 7)["model_version"]) == {"1"}
    assert run["rollout"].champion == "1" and run["rollout"].candidate is None
    assert run["table"].loc[1, "canary"] == f"v{worse}"


def test_stop_mid_week_and_resume_gives_the_same_final_state(worse_runs):
    straight, resumed = worse_runs["cardguard-worse"], worse_runs["cardguard-worse-resumed"]
    assert "gate" in set(straight["events"]["kind"])  # a retrain and a gate after the resume, too
    keys = ["week", "day", "kind", "version", "ok"]
    pd.testing.assert_frame_equal(resumed["events"][keys], straight["events"][keys])
    judged = straight["events"]["kind"].isin(["alert", "retrain", "gate", "canary verdict", "promotion", "rollback"])

    def reasons(run):  # latency is measured, so it varies from run to run; everything else may not
        return [[re.sub(r"p99 [\d.]+ ms", "p99 (measured) ms", r) for r in rs] for rs in run["events"].loc[judged, "reasons"]]

    assert reasons(resumed) == reasons(straight)
    assert list(resumed["events"]["holdout_digest"].dropna()) == list(straight["events"]["holdout_digest"].dropna())
    pd.testing.assert_frame_equal(resumed["truth"], straight["truth"])
    pd.testing.assert_frame_equal(resumed["table"], straight["table"])
    assert resumed["rollout"] == straight["rollout"]


def test_payments_whose_log_records_died_with_their_server_are_sent_again_on_resume(workspace):
    """A kernel restarted mid-week: the loop had saved days as sent whose log records were still in the dead
    server's buffer. The resumed loop sends those payments again (once, saying so) instead of waiting 30 s and
    failing on every resume."""
    name = "cardguard-lost-log"
    pipeline.run_loop(1, name=name, per_day=200, stop_after_days=0, report=None)
    pipeline.run_loop(1, name=name, per_day=200, stop_after_days=3, report=None)
    log = pipeline.config.path("loop", name, "predictions.jsonl")
    lines = log.read_text().splitlines(keepends=True)
    payments = pipeline.week_payments(1, "none", 200)
    day2 = set(payments.loc[pipeline._day_of(payments) == 2, "transaction_id"])
    kept = [line for line in lines if json.loads(line)["transaction_id"] not in day2]
    sizes = pipeline._day_of(payments).value_counts().sort_index().tolist()
    assert len(lines) == sum(sizes[:3]) and len(lines) - len(kept) == len(day2) == sizes[2]
    log.write_text("".join(kept))  # the records the dead server never wrote
    said = []
    pipeline.run_loop(1, name=name, per_day=200, report=said.append)
    assert sum(f"{len(day2)} payments sent before the last stop are missing" in line for line in said) == 1
    days = [pd.read_parquet(log.parent / "days" / f"week01-day{d}.parquet") for d in range(7)]
    assert [len(d) for d in days] == sizes
    assert set(days[2]["transaction_id"]) == day2 and days[2]["is_fraud"].notna().all()
    assert set(days[2]["model_version"]) == {"1"}


def test_schedule_and_canary_rule_errors_say_what_to_do():
    scenario = pipeline.parse_schedule("card_testing@3")
    assert [scenario(w) for w in (1, 2, 3, 9)] == ["none", "none", "card_testing", "card_testing"]
    assert pipeline.parse_schedule("none,holiday_season")(5) == "holiday_season"
    with pytest.raises(pipeline.LabError, match="scenarios are"):
        pipeline.parse_schedule("card_tests@3")
    champion = pipeline.LiveFigures("1", 1000, 0, 0.0, 3.0, 0.015)
    ok, reasons = pipeline.canary_verdict(champion, pipeline.LiveFigures("2", 200, 0, 0.0, 4.0, 0.02))
    assert ok, reasons
    ok, reasons = pipeline.canary_verdict(champion, pipeline.LiveFigures("2", 200, 3, 0.015, 4.0, 0.02))
    assert not ok and any("error rate 1.50% >" in r for r in reasons)
    ok, reasons = pipeline.canary_verdict(champion, pipeline.LiveFigures("2", 50, 0, 0.0, 4.0, 0.02))
    assert not ok and any("too few" in r for r in reasons)
    ok, reasons = pipeline.canary_verdict(champion, pipeline.LiveFigures("2", 200, 0, 0.0, float("nan"), 0.02))
    assert not ok and "p99 latency not measured" in reasons  # no evidence of the budget: no promotion
    # the loop takes any rule of that shape, and says how to fix one that answers otherwise
    with pytest.raises(pipeline.LabError, match=r"must return \(promote, reasons\)"):
        pipeline._verdict(lambda champion, canary, policy: True, champion, champion, pipeline.Policy())


def test_the_loop_command(workspace):
    result = run_cli("loop", "--weeks", "1", "--per-day", "200", env={"MLOPS_LAB_HOME": str(workspace)})
    assert result.returncode == 0, result.stderr
    assert "week 1 (none): 1400 payments" in result.stdout and "cost_per_1000" in result.stdout
    again = run_cli("loop", "--weeks", "1", "--per-day", "300", env={"MLOPS_LAB_HOME": str(workspace)})
    assert again.returncode == 2 and "per_day=200" in again.stderr  # resuming needs the same traffic


def test_live_figures_read_the_prediction_log():
    log = pd.DataFrame({
        "model_version": ["1", "1", "2", "1", "2"],
        "decision": ["approve", "flag", "flag", "approve", "approve"],
        "score_ms": [1.0, 2.0, 5.0, 1.0, 7.0],
        "candidate_error": [None, None, None, "v2 ValueError: boom", None],
    })
    two = pipeline.live_figures(log, "2")
    assert (two.requests, two.errors, two.flag_rate) == (3, 1, 0.5)
    assert two.error_rate == pytest.approx(1 / 3) and 5.0 < two.p99_ms <= 7.0
    assert pipeline.live_figures(log, "1").errors == 0
    shadow = log.assign(shadow_version="3", shadow_score=[0.9, 0.1, 0.2, None, 0.6],
                        shadow_score_ms=[2.0, 2.0, 3.0, 3.0, 9.0],
                        candidate_error=[None, None, None, "v3 ValueError: boom", None])
    three = pipeline.shadow_figures(shadow, "3", threshold=0.5)
    assert (three.requests, three.errors, three.flag_rate) == (5, 1, 0.5) and three.p99_ms > 8.0
