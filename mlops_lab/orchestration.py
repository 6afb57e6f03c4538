"""Lab 09, orchestration: lab 08's weekly loop as Dagster definitions (``defs``).

Each week is a partition (``weekly``, Monday to Monday from the loop's START). The assets are the
things the loop produces each week, and each one calls one step of ``mlops_lab.pipeline`` (the same
functions ``mlops-lab loop`` runs, in the same order): the week's ``payments``, the
``validated_batch``, the ``rollout`` (the week served, with the rollout moved on at day boundaries),
the ``drift_report`` (lab 07's alert rules on it), the ``known_labels`` at the end of the week, the
``retrained_model``, the ``registered_version`` and the ``gate_decision``. Asset checks guard them
with lab 06's tests (``mlops_lab.testing``) and CI stages; blocking ones stop a bad batch or a failing
candidate before anything downstream runs. A weekly schedule runs the week's observation, a sensor on
lab 07's alert rules requests the retraining, and the steps that talk to servers retry with backoff.

The orchestration layer calls the package; it holds no logic of the loop. Where state lives: the
loop's files (``loop/<name>/``) and the registry, as for ``mlops-lab loop``; Dagster's own records
(runs, materializations, check results) in ``instance()``, a Dagster home inside the workspace.
"""

import contextlib
import shutil
import warnings

import dagster as dg
import pandas as pd
from pydantic import PrivateAttr

from . import config, contract, pipeline, testing
from .errors import LabError
from .monitoring import alerts

WEEKS = 12  # the weeks the partitions cover, from the loop's START (simulated time: no wall clock)
weekly = dg.WeeklyPartitionsDefinition(start_date=f"{pipeline.START:%Y-%m-%d}", day_offset=pipeline.START.dayofweek + 1,
                                       end_date=f"{pipeline.START + pd.Timedelta(weeks=WEEKS):%Y-%m-%d}")
# Steps that talk to the server or the registry: a dropped connection is retried, 1 s, 2 s, 4 s later.
SERVER_RETRY = dg.RetryPolicy(max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL)


def _weekly_check(**kwargs):
    """``@dg.asset_check`` partitioned by week, as its asset is (a preview feature in Dagster 1.13: without
    it a check of one week would load every week of its asset)."""

    def decorate(fn):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dg.PreviewWarning)
            return dg.asset_check(partitions_def=weekly, **kwargs)(fn)

    return decorate


def week_of(partition_key: str) -> int:
    """The loop's week number (1 = the week of START) of a partition key ('2026-02-16')."""
    days = (pd.Timestamp(partition_key) - pipeline.START).days
    if days < 0 or days % 7:
        raise LabError(f"{partition_key!r} is not a week of the loop: weeks start on Mondays from "
                       f"{pipeline.START:%Y-%m-%d} (e.g. {partition_key_of(1)!r}).")
    return days // 7 + 1


def partition_key_of(week: int) -> str:
    """The partition key of the loop's ``week``."""
    return f"{pipeline.START + pd.Timedelta(weeks=week - 1):%Y-%m-%d}"


class CardGuardLoop(dg.ConfigurableResource):
    """The loop the assets drive (``pipeline.open_loop``): its model, its weeks' scenarios, its traffic
    and its server (``url``, with the ``admin_token`` and ``prediction_log`` of a server you started;
    by default the loop starts its own on 127.0.0.1 for each run)."""

    name: str = "cardguard-dagster"
    schedule: str = "card_testing@3"
    per_day: int = 300
    retrain_every: int | None = None
    url: str | None = None
    admin_token: str | None = None
    prediction_log: str | None = None
    _run: pipeline.LoopRun | None = PrivateAttr(default=None)

    @contextlib.contextmanager
    def yield_for_execution(self, context):
        policy = pipeline.Policy(retrain_every=self.retrain_every)
        with pipeline.open_loop(self.schedule, policy, url=self.url, per_day=self.per_day, name=self.name,
                                admin_token=self.admin_token, prediction_log=self.prediction_log,
                                report=None) as run:
            self._run = run
            try:
                yield self
            finally:
                self._run = None

    @property
    def run(self) -> pipeline.LoopRun:
        if self._run is None:
            raise LabError("The loop is open only while Dagster runs an asset that uses it.")
        return self._run

    def scenario(self, week: int) -> str:
        return pipeline.parse_schedule(self.schedule)(week)


# --------------------------------------------------------------------------- the week: observe


@dg.asset(partitions_def=weekly, group_name="week", kinds={"pandas"})
def payments(context: dg.AssetExecutionContext, loop: CardGuardLoop) -> pd.DataFrame:
    """The week's payments, as the simulator makes them (the same every time: a seed per week)."""
    week = week_of(context.partition_key)
    frame = pipeline.week_payments(week, loop.scenario(week), loop.per_day)
    context.add_output_metadata({"week": week, "scenario": loop.scenario(week), "rows": len(frame),
                                 "fraud_rate": float(frame["is_fraud"].mean())})
    return frame


@dg.asset(partitions_def=weekly, group_name="week", kinds={"pandas"})
def validated_batch(context: dg.AssetExecutionContext, payments: pd.DataFrame) -> pd.DataFrame:
    """The week's payments in the data contract's types; its check says whether the batch may be served."""
    context.add_output_metadata({"rows": len(payments)})
    return contract.with_contract_dtypes(payments)


@_weekly_check(asset=validated_batch, blocking=True)
def batch_passes_data_tests(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
    """Lab 06's data tests on the batch: the contract, unique ids, consistent times. Blocking: a batch
    that fails is never served, and nothing downstream of it runs."""
    return _result([testing.follows_contract(validated_batch), testing.unique_ids(validated_batch),
                    testing.consistent_times(validated_batch)])


@dg.asset(partitions_def=weekly, group_name="week", retry_policy=SERVER_RETRY,
          deps=[dg.AssetDep("rollout", partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-1,
                                                                                       end_offset=-1))])
def rollout(context: dg.AssetExecutionContext, loop: CardGuardLoop, validated_batch: pd.DataFrame) -> dict:
    """The week served by the running server, day by day; a candidate the last gate passed goes
    through shadow and canary to promotion or rollback at day boundaries (the weeks run in order)."""
    week = week_of(context.partition_key)
    pipeline.serve_week(loop.run, week, validated_batch)
    served = pipeline.events(loop.name)
    served = served[(served["week"] == week) & served["kind"].isin(
        ["adopted", "shadow", "shadow verdict", "canary", "canary verdict", "promotion", "rollback"])]
    summary = {"week": week, "payments": len(validated_batch), "steps": [
        f"day {e['day']}: {e['kind']} v{e['version']}" for e in served.to_dict("records")]}
    context.add_output_metadata({"payments": len(validated_batch), "rollout_steps": len(summary["steps"]),
                                 "steps": dg.MetadataValue.md("\n".join(f"- {s}" for s in summary["steps"]) or "none")})
    return summary


@dg.asset(partitions_def=weekly, group_name="week")
def drift_report(context: dg.AssetExecutionContext, loop: CardGuardLoop, rollout: dict) -> dict:
    """The week's drift report against the champion's reference, and lab 07's alert rules on it."""
    report = pipeline.monitor_week(loop.run, week_of(context.partition_key))
    context.add_output_metadata({
        **{k: report[k] for k in FIGURES}, "drifted": str(report["drifted"] or "none"),
        "alerts": ", ".join(report["alerts"]) or "none", "retrain": report["retrain"] or "no"})
    return report


FIGURES = ("drifted_columns", "chargebacks_per_1000", "flag_rate", "cost_per_1000")  # what alert rules read


# --------------------------------------------------------------------------- the week: retrain and gate


@dg.asset(partitions_def=weekly, group_name="retrain", deps=[drift_report])
def known_labels(context: dg.AssetExecutionContext, loop: CardGuardLoop) -> dict | None:
    """The labels known at the end of the week (a chargeback counts once it has arrived), split into
    training days, validation days and the gate's holdout; None when the week retrains nothing."""
    sets = pipeline.retrain_data(loop.run, week_of(context.partition_key))
    if sets is None:
        context.add_output_metadata({"retrain": "no"})
        return None
    named = dict(zip(("train", "valid", "holdout"), sets, strict=True))
    context.add_output_metadata({name: len(frame) for name, frame in named.items()})
    return named


@_weekly_check(asset=known_labels)
def no_label_from_the_future(context: dg.AssetCheckExecutionContext, known_labels: dict | None) -> dg.AssetCheckResult:
    """Lab 06's label-arrival test: every label used was known at the end of the week."""
    if known_labels is None:
        return dg.AssetCheckResult(passed=True, description="no retraining this week")
    as_of = pipeline.START + pd.Timedelta(weeks=week_of(context.partition_key))  # the end of the week
    return _result([testing.labels_arrived(pd.concat(list(known_labels.values())), as_of)])


@dg.asset(partitions_def=weekly, group_name="retrain")
def retrained_model(context: dg.AssetExecutionContext, loop: CardGuardLoop, known_labels: dict | None):
    """A challenger trained on the known labels (threshold: the champion's flag rate); None when none."""
    if known_labels is None:
        return None
    trained = pipeline.train_candidate(loop.run, week_of(context.partition_key), known_labels["train"],
                                       known_labels["valid"])
    context.add_output_metadata({"valid_pr_auc": float(trained.valid_metrics["pr_auc"]),
                                 "threshold": float(trained.threshold)})
    return trained


@_weekly_check(asset=retrained_model, blocking=True,
                additional_ins={"known_labels": dg.AssetIn("known_labels")})
def candidate_passes_ci(context: dg.AssetCheckExecutionContext, loop: CardGuardLoop, retrained_model,
                        known_labels: dict | None) -> dg.AssetCheckResult:
    """Lab 06's CI stages (data, latency, behaviour) on the challenger. Blocking: a failing one is
    never registered."""
    if retrained_model is None:
        return dg.AssetCheckResult(passed=True, description="no candidate this week")
    week = week_of(context.partition_key)
    passed = pipeline.candidate_ci(loop.run, week, retrained_model, known_labels["train"], known_labels["valid"])
    ci = pipeline.events(loop.name)
    reasons = ci[(ci["week"] == week) & (ci["kind"] == "ci")]["reasons"]
    return dg.AssetCheckResult(passed=passed, description="\n".join(reasons.iloc[-1]) if len(reasons) else "")


@dg.asset(partitions_def=weekly, group_name="retrain", retry_policy=SERVER_RETRY)
def registered_version(context: dg.AssetExecutionContext, loop: CardGuardLoop, retrained_model,
                       known_labels: dict | None) -> str | None:
    """The challenger's run logged to MLflow and its version in the registry."""
    if retrained_model is None:  # nothing trained now: the version this week registered before, if any
        return loop.run.steps(week_of(context.partition_key)).get("version")
    version = pipeline.register_candidate(loop.run, week_of(context.partition_key), retrained_model,
                                          known_labels["train"], known_labels["valid"])
    context.add_output_metadata({"model": loop.name, "version": version})
    return version


@dg.asset(partitions_def=weekly, group_name="retrain", retry_policy=SERVER_RETRY)
def gate_decision(context: dg.AssetExecutionContext, loop: CardGuardLoop, registered_version: str | None,
                  known_labels: dict | None) -> dict | None:
    """The gate: challenger against champion on the week's known labels; a pass starts the rollout."""
    if known_labels is None or registered_version is None:  # nothing to judge now: the decision taken before, if any
        return loop.run.steps(week_of(context.partition_key)).get("gate")
    event = pipeline.gate_candidate(loop.run, week_of(context.partition_key), registered_version,
                                    known_labels["holdout"])
    context.add_output_metadata({"passed": bool(event.get("ok")),
                                 "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in event["reasons"]))})
    return event


def _result(verdicts: list[testing.Verdict]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=all(verdicts), metadata={v.name: str(v.detail) for v in verdicts},
                               description="; ".join(f"{v.name}: {'ok' if v else 'FAILED'}" for v in verdicts))


# --------------------------------------------------------------------------- when: schedule and sensor


week_job = dg.define_asset_job("weekly_loop", selection=dg.AssetSelection.groups("week"), partitions_def=weekly)
retrain_job = dg.define_asset_job("retrain", selection=dg.AssetSelection.groups("retrain"), partitions_def=weekly)
weekly_schedule = dg.build_schedule_from_partitioned_job(week_job, hour_of_day=6)


ALERT_RULES = pipeline.Policy().alert_rules  # the loop's rules (lab 07's)


def alerts_fired(report: dict, rules=ALERT_RULES) -> list[str]:
    """The sensor's condition: the names of lab 07's alert ``rules`` that fire on one week's figures
    (``report``: the drift report's metric values); a missing value never fires."""
    rules = list(rules)
    if not rules:  # no rule, no alert (lab 07's table has no columns then)
        return []
    week = pd.DataFrame([{metric: report.get(metric, float("nan")) for metric in alerts.METRICS}])
    return list(alerts.fired(rules, week)["rule"])


@dg.sensor(job=retrain_job, minimum_interval_seconds=60)
def drift_alert_sensor(context: dg.SensorEvaluationContext):
    """Request a retraining run for each week whose drift report fires one of lab 07's alert rules."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=drift_report.key, after_storage_id=int(context.cursor or 0)),
        limit=100, ascending=True).records
    requests = []
    for record in records:
        figures = {k: v.value for k, v in record.asset_materialization.metadata.items() if k in FIGURES}
        fired = alerts_fired(figures)
        if fired:
            requests.append(dg.RunRequest(run_key=f"retrain-{record.partition_key}-{record.storage_id}",
                                          partition_key=record.partition_key, tags={"alerts": ", ".join(fired)}))
    cursor = str(records[-1].storage_id) if records else context.cursor
    return dg.SensorResult(run_requests=requests, cursor=cursor)


ASSETS = [payments, validated_batch, rollout, drift_report, known_labels, retrained_model, registered_version,
          gate_decision]
CHECKS = [batch_passes_data_tests, no_label_from_the_future, candidate_passes_ci]

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, jobs=[week_job, retrain_job], schedules=[weekly_schedule],
                      sensors=[drift_alert_sensor], resources={"loop": CardGuardLoop()})


# --------------------------------------------------------------------------- running it in a notebook


def instance(fresh: bool = False) -> dg.DagsterInstance:
    """The workspace's Dagster instance (``$MLOPS_LAB_HOME/dagster``: runs, materializations, check
    results in SQLite), the one Dagster's UI shows (DAGSTER_HOME there). ``fresh``: forget its history."""
    if fresh and config.path("dagster").exists():
        shutil.rmtree(config.path("dagster"))
    return dg.DagsterInstance.local_temp(tempdir=str(config.dagster_home()))


# Run config that keeps Dagster's own log lines out of a notebook's output (the instance keeps its events and
# every line from INFO up, see config.dagster_home: the UI shows them); the results say what happened.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def materialize_week(week: int, loop: CardGuardLoop, selection=None, instance=None, raise_on_error: bool = True):
    """Materialize the loop's ``week`` (every asset, or ``selection``), in this process."""
    import gc

    # An in-process run leaves reference cycles that hold what it computed (the week's frames, the retrained
    # model: 30-40 MB a week), which Python's collector may keep for many weeks. They are collected when the run
    # ends. What existed before it is frozen meanwhile, so that collection looks only at the run's objects
    # (0.002 s; a full one takes 0.15-0.2 s in lab 09's kernel, and Python's own next one comes sooner after
    # it). Lab 09 on its own: kernel peak 631 -> 556 MB. A kernel that has frozen objects already (Binder's,
    # forked from a process that froze the libraries it preloaded) keeps them frozen: unfreezing them would
    # let the next collection write to, and so copy, every preloaded object into this kernel.
    ours = gc.get_freeze_count() == 0
    try:
        if ours:
            gc.freeze()
        return dg.materialize([*ASSETS, *CHECKS], partition_key=partition_key_of(week), resources={"loop": loop},
                              selection=selection, instance=instance, raise_on_error=raise_on_error, run_config=QUIET)
    finally:
        try:
            gc.collect()
        finally:  # also when an interrupt arrives during the collection
            if ours:
                gc.unfreeze()
