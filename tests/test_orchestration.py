"""Lab 09's Dagster definitions (mlops_lab.orchestration) against a real server and a real registry.

The loop (``run_loop``) and the Dagster assets call the same step functions of mlops_lab.pipeline;
here both run the same four weeks of card testing (from week 3) on their own registered models,
which start from copies of the same champion, and must reach the same decisions."""

import contextlib
import logging
import re

import pandas as pd
import pytest

dg = pytest.importorskip("dagster", reason="dagster is pinned in requirements.txt: pip install -r requirements.txt")

from mlops_lab import config, orchestration, pipeline  # noqa: E402
from mlops_lab.monitoring import AlertRule  # noqa: E402
from mlops_lab.serving.server import start_server  # noqa: E402

from .conftest import using_env, using_home  # noqa: E402

WEEKS, DRIFT, PER_DAY = 4, "card_testing@3", 300
KEYS = ["week", "day", "kind", "version", "ok"]


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The loop and the Dagster path on the same schedule, each on its own model; Dagster's runs in one
    instance, against a server the test started."""
    with using_home(tmp_path_factory.mktemp("orchestration-home")) as home:
        for name in ("cardguard-loop", "cardguard-dagster"):
            pipeline.run_loop(1, DRIFT, name=name, per_day=PER_DAY, stop_after_days=0, report=None)
        pipeline.run_loop(WEEKS, DRIFT, name="cardguard-loop", per_day=PER_DAY, report=None)
        instance = dg.DagsterInstance.ephemeral()
        log = home / "dagster-predictions.jsonl"
        # the Dagster path trains its own models (a cache of its own): the same decisions must come from the
        # same code on the same labels, not from reusing the loop's trained models
        with start_server(name="cardguard-dagster", admin_token="t0ken", prediction_log=log) as server, \
                _own_training_cache(tmp_path_factory.mktemp("dagster-cache")):
            loop = orchestration.CardGuardLoop(name="cardguard-dagster", schedule=DRIFT, per_day=PER_DAY,
                                               url=server.url, admin_token="t0ken", prediction_log=str(log))
            results = [orchestration.materialize_week(week, loop, instance=instance, raise_on_error=False)
                       for week in range(1, WEEKS + 1)]
            yield {"home": home, "instance": instance, "loop": loop, "results": results,
                   "loop_events": pipeline.events("cardguard-loop"), "dagster_events": pipeline.events("cardguard-dagster")}


@contextlib.contextmanager
def _own_training_cache(folder):
    with using_env("XDG_CACHE_HOME", folder):
        yield
    assert list((folder / "mlops-lab").glob("gradient_boosting-*.pkl")), "the Dagster path trained nothing of its own"


def _reasons(events: pd.DataFrame) -> list:
    judged = events["kind"].isin(["alert", "retrain", "ci", "gate", "shadow verdict", "canary verdict", "promotion",
                                  "rollback"])
    # latency is measured, so it varies from run to run; everything else may not
    return [[re.sub(r"(p99|p50) [\d.]+ ms", r"\1 (measured) ms", r) for r in rs] for rs in events.loc[judged, "reasons"]]


def test_the_loop_and_a_dagster_backfill_reach_the_same_decisions(both):
    loop, dagster = both["loop_events"], both["dagster_events"]
    # a run fails exactly where the loop's CI refused a candidate: the blocking check stopped it there
    refused = set(loop.loc[(loop["kind"] == "ci") & (loop["ok"] == False), "week"])  # noqa: E712
    assert [not r.success for r in both["results"]] == [w in refused for w in range(1, WEEKS + 1)]
    kinds = list(loop["kind"])
    for kind in ("alert", "retrain", "ci", "register", "gate"):
        assert kind in kinds, f"the four weeks should retrain after card testing starts: {kinds}"
    assert loop.loc[loop["kind"] == "alert", "week"].min() == 3
    pd.testing.assert_frame_equal(dagster[KEYS], loop[KEYS])
    assert _reasons(dagster) == _reasons(loop)
    assert list(dagster["holdout_digest"].dropna()) == list(loop["holdout_digest"].dropna())
    pd.testing.assert_frame_equal(pipeline.timeline(name="cardguard-dagster"), pipeline.timeline(name="cardguard-loop"))


def test_every_week_materialized_its_assets_and_checks(both):
    instance = both["instance"]
    for key in ("payments", "validated_batch", "rollout", "drift_report", "known_labels", "retrained_model"):
        done = instance.get_materialized_partitions(dg.AssetKey(key))
        assert done == {orchestration.partition_key_of(w) for w in range(1, WEEKS + 1)}, key
    week3 = both["results"][2]
    checks = {e.check_name: e.passed for e in week3.get_asset_check_evaluations()}
    assert checks == {"batch_passes_data_tests": True, "no_label_from_the_future": True, "candidate_passes_ci": True}
    gate = week3.output_for_node("gate_decision")
    assert gate["kind"] == "gate" and gate["week"] == 3


def test_a_step_run_again_decides_nothing_new(both):
    before = pipeline.events("cardguard-dagster")
    again = orchestration.materialize_week(3, both["loop"], instance=both["instance"])
    assert again.success
    pd.testing.assert_frame_equal(pipeline.events("cardguard-dagster"), before)
    assert again.output_for_node("gate_decision")["seq"] == before.loc[before["kind"] == "gate", "seq"].iloc[0]


def test_the_drift_sensor_requests_a_retrain_for_the_weeks_that_alert(both):
    context = dg.build_sensor_context(instance=both["instance"])
    result = orchestration.drift_alert_sensor(context)
    # (a week materialized again, as in the test above, is requested again: its retrain run decides nothing new)
    weeks = sorted({orchestration.week_of(r.partition_key) for r in result.run_requests})
    alerted = sorted(set(both["loop_events"].loc[both["loop_events"]["kind"] == "alert", "week"]))
    assert weeks == alerted and 3 in weeks
    assert all(r.job_name in (None, "retrain") for r in result.run_requests)
    # the cursor moves on: the same reports do not request the same runs twice
    later = orchestration.drift_alert_sensor(dg.build_sensor_context(instance=both["instance"], cursor=result.cursor))
    assert later.run_requests == []


def test_a_blocking_check_stops_a_bad_batch(both):
    week = WEEKS + 1

    @dg.asset(name="payments", partitions_def=orchestration.weekly)
    def duplicated_payments() -> pd.DataFrame:
        frame = pipeline.week_payments(week, "none", PER_DAY)
        return pd.concat([frame, frame.head(5)], ignore_index=True)  # a retried export doubled five rows

    before = pipeline.events("cardguard-dagster")
    result = dg.materialize([duplicated_payments, orchestration.validated_batch, orchestration.batch_passes_data_tests,
                             orchestration.rollout], partition_key=orchestration.partition_key_of(week),
                            resources={"loop": both["loop"]}, instance=both["instance"], raise_on_error=False)
    checks = result.get_asset_check_evaluations()
    assert [(c.check_name, c.passed) for c in checks] == [("batch_passes_data_tests", False)]
    assert "appear more than once" in checks[0].metadata["unique ids"].value
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "rollout" not in materialized  # the batch was never served
    pd.testing.assert_frame_equal(pipeline.events("cardguard-dagster"), before)


def test_the_workspace_instance_stores_dagsters_events_and_info_lines_but_no_debug_lines(tmp_path):
    """The workspace's dagster.yaml drops debug log lines before they reach the event log (the IO manager's
    "Loading 1 partitions...": a SQLite write each); Dagster's own events are kept at any level."""
    dagster_logger = logging.getLogger("dagster")
    level = dagster_logger.level  # the instance's python_log_level sets it, for the rest of the process
    with using_home(tmp_path / "workspace"), contextlib.ExitStack() as restore:
        restore.callback(dagster_logger.setLevel, level)
        settings = config.ensure_home() / "dagster" / "dagster.yaml"
        settings.parent.mkdir()
        settings.write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")  # an earlier version's
        instance = orchestration.instance()

        @dg.asset
        def talks(context) -> int:
            context.log.debug("a debug line")
            context.log.info("an info line")
            context.log.warning("a warning line")
            return 1

        assert dg.materialize([talks], instance=instance).success
        events = instance.all_logs(instance.get_run_records()[0].dagster_run.run_id)
        kinds = {e.dagster_event.event_type_value for e in events if e.dagster_event}
        lines = [e.user_message for e in events if not e.dagster_event]
        assert {"STEP_START", "STEP_SUCCESS", "ASSET_MATERIALIZATION", "PIPELINE_SUCCESS"} <= kinds
        assert "an info line" in lines and "a warning line" in lines
        assert "a debug line" not in lines and not any(line.startswith("Writing file at") for line in lines)
        settings.write_text("telemetry:\n  enabled: false\n# mine\n")  # a learner's own edit stays
        orchestration.instance()
        assert settings.read_text() == "telemetry:\n  enabled: false\n# mine\n"
        settings.write_text("telemetry:\n  enabled: false\n")  # the first version's
        orchestration.instance()
        assert "python_log_level: INFO" in settings.read_text() and "nux:\n  enabled: false" in settings.read_text()
        assert [f.name for f in settings.parent.glob(".dagster.yaml*")] == []


def test_definitions_load_and_say_when_they_run():
    dg.Definitions.validate_loadable(orchestration.defs)
    graph = orchestration.defs.resolve_asset_graph()
    assert {k.path[-1] for k in graph.get_all_asset_keys()} == {
        "payments", "validated_batch", "rollout", "drift_report", "known_labels", "retrained_model",
        "registered_version", "gate_decision"}
    assert graph.get(dg.AssetKey("drift_report")).parent_keys == {dg.AssetKey("rollout")}
    schedule = orchestration.defs.resolve_schedule_def("weekly_loop_schedule")
    assert schedule.cron_schedule == "0 6 * * 1"  # Mondays, the loop's weeks
    assert orchestration.defs.resolve_sensor_def("drift_alert_sensor").job_name == "retrain"
    policy = orchestration.defs.resolve_assets_def("rollout").op.retry_policy
    assert policy.max_retries == 3 and policy.backoff == dg.Backoff.EXPONENTIAL
    keys = orchestration.weekly.get_partition_keys()
    assert keys[0] == "2026-02-16" and len(keys) == orchestration.WEEKS
    assert [orchestration.week_of(k) for k in keys[:3]] == [1, 2, 3]
    with pytest.raises(pipeline.LabError, match="weeks start on Mondays"):
        orchestration.week_of("2026-02-18")


def test_the_sensors_condition_is_lab_07s_rules():
    rules = [AlertRule("drift", "drifted_columns", ">", 0), AlertRule("chargebacks up", "chargebacks_per_1000", ">=", 1.6)]
    assert orchestration.alerts_fired({"drifted_columns": 0, "chargebacks_per_1000": 1.6}, rules) == ["chargebacks up"]
    assert orchestration.alerts_fired({"drifted_columns": 2, "chargebacks_per_1000": 1.59}, rules) == ["drift"]
    assert orchestration.alerts_fired({"drifted_columns": float("nan")}, rules) == []  # missing: never fires
    assert orchestration.alerts_fired({"drifted_columns": 1}) == ["inputs drift"]  # the loop's own rules
    assert orchestration.alerts_fired({"drifted_columns": 4}, []) == []  # no rules: nothing fires
    assert orchestration.alerts_fired({"drifted_columns": 4}, ()) == []


def _frames_in_garbage() -> int:
    """DataFrames only reference cycles hold (unreachable, not yet collected); they are collected here."""
    import gc

    debug = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what the collector finds unreachable goes to gc.garbage, to be counted
    try:
        gc.collect()
        return sum(isinstance(o, pd.DataFrame) for o in gc.garbage)
    finally:
        gc.set_debug(debug)
        gc.garbage.clear()
        gc.collect()  # now freed for good


@pytest.mark.parametrize("frozen_before", [False, True], ids=["kernel", "binder-forked-kernel"])
def test_a_week_run_in_the_notebook_leaves_no_garbage_holding_its_data(both, frozen_before):
    """Dagster's in-process run leaves reference cycles that hold the week's frames and model; Python's collector
    may keep them for many weeks (lab 09's kernel grew by 30-40 MB a week of its backfill). materialize_week
    collects them when the run ends. In a kernel forked from a process that froze its preloaded libraries
    (Binder's), what was frozen stays frozen: unfreezing it would copy every preloaded object into the kernel."""
    import gc

    enabled = gc.isenabled()
    gc.collect()  # what earlier tests left, out of the way
    if frozen_before:
        gc.freeze()
    frozen = gc.get_freeze_count()
    gc.disable()  # nothing collects behind the test's back
    try:
        result = orchestration.materialize_week(3, both["loop"], instance=both["instance"])
        assert result.success
        # unfreezing would leave none; a few frozen objects may be freed by their reference counts meanwhile
        assert gc.get_freeze_count() >= 0.99 * frozen, "materialize_week unfroze the process's frozen objects"
        assert _frames_in_garbage() == 0
    finally:
        if frozen_before:
            gc.unfreeze()
        if enabled:
            gc.enable()
