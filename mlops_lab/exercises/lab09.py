"""Lab 09: Orchestration. Write an asset, a blocking asset check and the drift sensor's condition.

Each answer is real Dagster code (or the plain function a sensor calls); the checks look at what the
definition declares (its name, its partitions, its upstream asset, whether a check blocks), then run
the learner's definition as Dagster's direct invocation does (a context if it takes one, `ins=`, a
returned or yielded `dg.Output`) beside the reference on generated weeks of payments and reports,
judged differentially. Nothing is read from or written to the learner's workspace."""

import functools
import inspect
import operator

import numpy as np
import pandas as pd

from . import (
    NotAttempted,
    Trial,
    differential,
    exercise,
    get,
    is_blank_function,
    require_attempt,
    right,
    same,
    solved,
    wrong,
)

# ------------------------------------------------------------------ shared: weeks of payments


@functools.cache
def _week(week: int, scenario: str, per_day: int) -> pd.DataFrame:
    from ..pipeline import week_payments

    return week_payments(week, scenario, per_day)


def _weeks() -> list[tuple[str, pd.DataFrame]]:
    """(label, frame): simulated weeks (seeds, scenarios, sizes), shuffled rows and an extra column."""
    out = []
    for week, scenario, per_day in ((1, "none", 40), (2, "none", 60), (3, "card_testing", 50), (4, "card_testing", 80),
                                    (2, "holiday_season", 40), (5, "none", 120), (6, "card_testing", 150),
                                    (7, "fraud_rate_spike", 40), (8, "amount_in_cents", 30),
                                    (9, "device_feature_missing", 30), (10, "none", 25), (11, "holiday_season", 35),
                                    (12, "card_testing", 20), (3, "none", 90)):
        out.append((f"week {week} ({scenario}, {per_day} payments a day)", _week(week, scenario, per_day)))
    base = _week(2, "none", 60)
    out.append(("week 2 with its rows shuffled", base.sample(frac=1.0, random_state=3).reset_index(drop=True)))
    out.append(("week 2 with an extra column 'note'", base.assign(note="from the export")))
    return out


def _body(answer):
    """The function inside a Dagster definition (an asset or an asset check), or None."""
    node = getattr(answer, "node_def", None)
    compute = getattr(node, "compute_fn", None)
    return getattr(compute, "decorated_fn", None)


def _require_definition(answer, kind) -> None:
    require_attempt(answer)
    body = _body(answer)
    if body is not None and is_blank_function(body):
        raise NotAttempted


@functools.cache
def _instance():
    """One ephemeral Dagster instance for every context the checks build (building one costs ~0.2 s)."""
    import dagster as dg

    return dg.DagsterInstance.ephemeral()


def _partition_key(frame: pd.DataFrame) -> str:
    """The weekly partition (orchestration.weekly) that holds the first of ``frame``'s payments."""
    from .. import orchestration

    first = pd.Timestamp(frame["timestamp"].min()).tz_localize(None)
    keys = [k for k in orchestration.weekly.get_partition_keys() if pd.Timestamp(k) <= first]
    return keys[-1] if keys else orchestration.weekly.get_first_partition_key()


def _run(answer, upstream: str, frame: pd.DataFrame):
    """Run the learner's asset or asset check on ``frame`` (the ``upstream`` asset's partition) the way
    Dagster runs it: the upstream's value under whatever name the definition reads it (`ins=` too), a
    context if the function takes one (bound to the definition, so `context.add_output_metadata` and
    `context.partition_key` work), and a returned or yielded `dg.Output` unwrapped to its value."""
    import dagster as dg

    name = next(n for n, key in answer.keys_by_input_name.items() if key == dg.AssetKey(upstream))
    if answer.node_def.compute_fn.has_context_arg():
        if isinstance(answer, dg.AssetChecksDefinition):
            context = dg.build_asset_check_context(instance=_instance())
        else:
            context = dg.build_asset_context(partition_key=_partition_key(frame), instance=_instance())
        result = answer(context, **{name: frame})
    else:  # Dagster's direct invocation without a context adds ~0.2 s a call: call the function itself
        result = _body(answer)(**{name: frame})
    if inspect.isgenerator(result):
        events = list(result)
        result = next((e for e in events if isinstance(e, dg.Output | dg.AssetCheckResult)), events)
    return result.value if isinstance(result, dg.Output) else result


@functools.cache
def _solution(id: str, name: str):
    """What exercise ``id``'s solution text defines as ``name``, executed once with the names a lab 09
    notebook has (dagster as dg, orchestration): the solution shown is the one the checks run."""
    import dagster as dg

    from .. import orchestration

    return solved(id, {**globals(), "dg": dg, "orchestration": orchestration})[name]


# ------------------------------------------------------------------ 9.1 an asset


SOLUTION_9_1 = '''
@dg.asset(partitions_def=orchestration.weekly)
def daily_summary(payments: pd.DataFrame) -> pd.DataFrame:
    day = payments["timestamp"].dt.floor("D").rename("day")  # the calendar day, midnight included
    return (payments.groupby(day)
            .agg(payments=("transaction_id", "size"), frauds=("is_fraud", "sum"), amount=("amount", "sum"))
            .sort_index())
'''


def _summary_trials() -> list[Trial]:
    trials = [Trial(label, kwargs={"payments": frame}, size=len(frame)) for label, frame in _weeks()]
    base = _week(1, "none", 40)
    midnight = base.copy()
    midnight.loc[:9, "timestamp"] = midnight.loc[:9, "timestamp"].dt.floor("D")  # payments at exactly 00:00:00
    trials.append(Trial("week 1 with ten payments at exactly midnight", kwargs={"payments": midnight}, size=10))
    late = base.copy()
    late.loc[:9, "timestamp"] = late.loc[:9, "timestamp"].dt.floor("D") - pd.Timedelta(milliseconds=1)
    trials.append(Trial("week 1 with ten payments one millisecond before midnight", kwargs={"payments": late},
                        size=11))
    mixed = _week(4, "card_testing", 80).sample(frac=1.0, random_state=9).assign(region="EU")
    trials.append(Trial("week 4 (card_testing) shuffled, with an extra column 'region'", kwargs={"payments": mixed},
                        size=len(mixed)))
    month = _week(2, "none", 30)  # 23 February to 1 March: day-of-month numbers go 23..28, then 1
    trials.append(Trial("week 2 (it crosses into March)", kwargs={"payments": month}, size=5))
    gap = _week(3, "none", 40)
    gap = gap[gap["timestamp"].dt.floor("D") != gap["timestamp"].dt.floor("D").min() + pd.Timedelta(days=3)]
    trials.append(Trial("week 3 with no payment on its fourth day", kwargs={"payments": gap.reset_index(drop=True)},
                        size=12))
    return trials


def _compare_summary(got, expected, trial) -> str | None:
    if not isinstance(got, pd.DataFrame):
        return f"your asset returned a {type(got).__name__}; return a DataFrame with one row per day"
    frame = got.set_index("day") if "day" in got.columns else got
    missing = [c for c in ("payments", "frauds", "amount") if c not in frame.columns]
    if missing:
        return f"your table has no column {missing[0]!r} (it has {list(frame.columns)})"
    if pd.api.types.is_numeric_dtype(frame.index):
        return (f"its rows are indexed by {list(frame.index[:3])}...: index them by the calendar day "
                "(payments['timestamp'].dt.floor('D')); a day of the month repeats across months")
    if not pd.api.types.is_datetime64_any_dtype(frame.index):
        return (f"its rows are indexed by {list(frame.index[:3])!r}... ({type(frame.index[0]).__name__}): index "
                "them by a Timestamp at midnight for each day (payments['timestamp'].dt.floor('D')), not dates "
                "or strings")
    days = pd.DatetimeIndex(frame.index)
    if (days != days.normalize()).any():
        return (f"its rows are indexed by {[str(d) for d in days[:2]]}...: label each day by its midnight, "
                "a Timestamp at 00:00:00 (payments['timestamp'].dt.floor('D'))")
    frame = frame.set_axis(days).sort_index()
    if list(frame.index) != list(expected.index):
        extra = sorted(set(frame.index) - set(expected.index))
        if extra and (frame.loc[extra, "payments"] == 0).all():
            return (f"your table has a row for {extra[0]:%m-%d}, a day without payments: one row per day "
                    "that has payments (resample('D') adds the empty days; group by the day instead)")
        return (f"your days are {[f'{d:%m-%d}' for d in frame.index]}, expected "
                f"{[f'{d:%m-%d}' for d in expected.index]}: the days of the payments' timestamps (a payment at "
                "00:00:00 belongs to the day that begins)")
    for column in ("payments", "frauds", "amount"):
        problem = same(frame[column].to_numpy(dtype=float), expected[column].to_numpy(dtype=float))
        if problem:
            words = {"payments": "count the day's payments", "frauds": "add up is_fraud (1 = fraud): count() counts "
                     "every payment", "amount": "add up the day's amounts (a sum, not a mean)"}[column]
            return f"column {column!r} {problem}: {words}"
    return None


def _summary(func):
    import dagster as dg

    from .. import orchestration

    return dg.asset(partitions_def=orchestration.weekly, name="daily_summary")(func)


def _day_of_month(payments):
    return payments.groupby(payments["timestamp"].dt.day.rename("day")).agg(
        payments=("transaction_id", "size"), frauds=("is_fraud", "sum"), amount=("amount", "sum"))


def _count_frauds(payments):
    day = payments["timestamp"].dt.floor("D").rename("day")
    return payments.groupby(day).agg(payments=("transaction_id", "size"), frauds=("is_fraud", "count"),
                                     amount=("amount", "sum"))


def _label_day(payments):
    day = payments["label_available_at"].dt.floor("D").rename("day")
    return payments.groupby(day).agg(payments=("transaction_id", "size"), frauds=("is_fraud", "sum"),
                                     amount=("amount", "sum"))


def _hours_shifted(payments):
    day = (payments["timestamp"] - pd.Timedelta(seconds=1)).dt.floor("D").rename("day")  # 00:00:00 counted as yesterday
    return payments.groupby(day).agg(payments=("transaction_id", "size"), frauds=("is_fraud", "sum"),
                                     amount=("amount", "sum"))


def _resampled(payments):
    frame = payments.set_index("timestamp").sort_index()
    out = frame.resample("D").agg({"transaction_id": "size", "is_fraud": "sum", "amount": "sum"})
    out = out[out["transaction_id"] > 0]  # resample adds a row for a day without payments
    return out.rename(columns={"transaction_id": "payments", "is_fraud": "frauds"}).rename_axis("day").reset_index()


def _red_team_9_1():
    """Answers a blind red team wrote from the lab's text (kept as they wrote them)."""
    import dagster as dg

    from .. import orchestration

    W = orchestration.weekly
    AGG = dict(payments=("transaction_id", "size"), frauds=("is_fraud", "sum"), amount=("amount", "sum"))

    @dg.asset(partitions_def=W, name="day_summary")
    def wrong_name(payments: pd.DataFrame) -> pd.DataFrame:
        return payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)

    @dg.asset(partitions_def=W)
    def date_objects(payments: pd.DataFrame) -> pd.DataFrame:
        return payments.groupby(payments["timestamp"].dt.date).agg(**AGG)

    @dg.asset(partitions_def=W)
    def noon(payments: pd.DataFrame) -> pd.DataFrame:
        out = payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)
        out.index = out.index + pd.Timedelta(hours=12)
        return out

    @dg.asset(partitions_def=W)
    def strings(payments: pd.DataFrame) -> pd.DataFrame:
        out = payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)
        out.index = out.index.strftime("%Y-%m-%d")
        return out

    @dg.asset(partitions_def=W)
    def first_payment(payments: pd.DataFrame) -> pd.DataFrame:
        p = payments.sort_values("timestamp")
        out = p.groupby(p["timestamp"].dt.floor("D")).agg(first=("timestamp", "min"), **AGG)
        return out.set_index("first")

    @dg.asset(partitions_def=W)
    def plain_resample(payments: pd.DataFrame) -> pd.DataFrame:
        return payments.resample("D", on="timestamp").agg(**AGG)

    @dg.asset(partitions_def=W, group_name="week", kinds={"pandas"}, description="per day", compute_kind=None)
    def context_metadata(context: dg.AssetExecutionContext, payments: pd.DataFrame) -> pd.DataFrame:
        out = payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)
        context.add_output_metadata({"days": len(out)})
        return out

    @dg.asset(partitions_def=W)
    def context_only(context: dg.AssetExecutionContext, payments: pd.DataFrame) -> pd.DataFrame:
        context.log.info(context.partition_key)
        return payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)

    @dg.asset(partitions_def=W, ins={"batch": dg.AssetIn("payments")})
    def ins_renamed(batch: pd.DataFrame) -> pd.DataFrame:
        return batch.groupby(batch["timestamp"].dt.floor("D")).agg(**AGG)

    @dg.asset(partitions_def=W)
    def returns_output(payments: pd.DataFrame):
        out = payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG)
        return dg.Output(out, metadata={"days": len(out)})

    @dg.asset(partitions_def=W)
    def yields_output(payments: pd.DataFrame):
        yield dg.Output(payments.groupby(payments["timestamp"].dt.floor("D")).agg(**AGG))

    answers = dict(wrong_name=wrong_name, date_objects=date_objects, noon=noon, strings=strings,
                   first_payment=first_payment, plain_resample=plain_resample, context_metadata=context_metadata,
                   context_only=context_only, ins_renamed=ins_renamed, returns_output=returns_output,
                   yields_output=yields_output)
    # every one but the misnamed one is keyed by its function's name: give them the asset's name
    return {k: v if k == "wrong_name" else v.with_attributes(asset_key_replacements={v.key: dg.AssetKey(
        "daily_summary")}) for k, v in answers.items()}


def _unpartitioned():
    import dagster as dg

    @dg.asset(name="daily_summary")
    def daily_summary(payments: pd.DataFrame) -> pd.DataFrame:
        return _reference_summary(payments)

    return daily_summary



def _other_upstream():
    import dagster as dg

    from .. import orchestration

    @dg.asset(name="daily_summary", partitions_def=orchestration.weekly)
    def daily_summary(drift_report: dict) -> pd.DataFrame:
        return pd.DataFrame()

    return daily_summary


def _reference_summary(payments):
    return _body(get("9.1").reference())(payments=payments)


def _blank_summary(payments: pd.DataFrame) -> pd.DataFrame:
    ...


@exercise(
    "9.1",
    "An asset: the week's payments, day by day",
    solution=SOLUTION_9_1,
    hints=(
        "An asset is a decorated function: `@dg.asset(partitions_def=orchestration.weekly)`; its argument "
        "`payments` names the upstream asset, and Dagster passes the same week's partition.",
        "`payments['timestamp'].dt.floor('D')` is each payment's calendar day (a payment at 00:00:00 opens "
        "its day); group by it.",
        "`.agg(payments=('transaction_id', 'size'), frauds=('is_fraud', 'sum'), amount=('amount', 'sum'))` "
        "names the three columns at once.",
    ),
    reference=lambda: _solution("9.1", "daily_summary"),
    stub=lambda: _summary(_blank_summary),  # the answer is an asset, not a function: its checker runs the trials
    cases=(
        wrong("grouped by the day of the month", lambda: _summary(_day_of_month), "day of the month repeats"),
        wrong("frauds counted with count()", lambda: _summary(_count_frauds), "count() counts"),
        wrong("grouped by the label's day", lambda: _summary(_label_day), "days of the payments' timestamps"),
        wrong("midnight counted as the day before", lambda: _summary(_hours_shifted), "00:00:00 belongs"),
        wrong("not partitioned by week", _unpartitioned, "partitions_def=orchestration.weekly"),
        wrong("another upstream asset", _other_upstream, "argument named `payments`"),
        right("resample by day without the empty days, the day as a column", lambda: _summary(_resampled)),
        wrong("asset named day_summary", lambda: _red_team_9_1()["wrong_name"], "name=\"daily_summary\""),
        wrong("index of datetime.date", lambda: _red_team_9_1()["date_objects"], "not dates or strings"),
        wrong("index at noon", lambda: _red_team_9_1()["noon"], "00:00:00"),
        wrong("index of strings", lambda: _red_team_9_1()["strings"], "not dates or strings"),
        wrong("index = first payment's time", lambda: _red_team_9_1()["first_payment"], "00:00:00"),
        wrong("resample keeps the empty days", lambda: _red_team_9_1()["plain_resample"], "a day without payments"),
        right("a context and output metadata", lambda: _red_team_9_1()["context_metadata"]),
        right("a context only", lambda: _red_team_9_1()["context_only"]),
        right("ins=AssetIn('payments') under another name", lambda: _red_team_9_1()["ins_renamed"]),
        right("returns dg.Output", lambda: _red_team_9_1()["returns_output"]),
        right("yields dg.Output", lambda: _red_team_9_1()["yields_output"]),
    ),
)
def _check_daily_summary(answer) -> None:
    import dagster as dg

    from .. import orchestration

    _require_definition(answer, "asset")
    assert isinstance(answer, dg.AssetsDefinition), (
        f"expected an asset (a function decorated with @dg.asset), got a {type(answer).__name__}")
    assert answer.partitions_def == orchestration.weekly, (
        "your asset is not partitioned by week: give it `partitions_def=orchestration.weekly`, so each week is "
        "a partition and Dagster hands it the same week of `payments`")
    assert dg.AssetKey("payments") in answer.keys_by_input_name.values(), (
        f"your asset reads {sorted(k for k in answer.keys_by_input_name)}: it needs an argument named `payments` "
        "(that is how an asset says which asset it is computed from)")
    assert dg.AssetKey("daily_summary") in answer.keys, (
        f"your asset is called {answer.key.to_user_string()!r}: the next cells read `daily_summary`; name the "
        'function daily_summary (or give the decorator name="daily_summary")')
    differential(lambda payments: _run(answer, "payments", payments), _reference_summary, _summary_trials(),
                 compare=_compare_summary, what="your asset")


# ------------------------------------------------------------------ 9.2 a blocking asset check

MAX_LABEL_DAYS = 45  # a chargeback arrives at most 45 days after its payment (data.simulate_transactions)

SOLUTION_9_2 = '''
@dg.asset_check(asset=orchestration.validated_batch, blocking=True, partitions_def=orchestration.weekly)
def labels_arrive_in_time(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
    delay = validated_batch["label_available_at"] - validated_batch["timestamp"]
    bad = (delay <= pd.Timedelta(0)) | (delay > pd.Timedelta(days=45))  # after the payment, within 45 days
    return dg.AssetCheckResult(passed=not bad.any(), metadata={"bad_labels": int(bad.sum())})
'''


def _label_trials() -> list[Trial]:
    trials = [Trial(label, kwargs={"validated_batch": frame}, size=len(frame)) for label, frame in _weeks()]
    base = _week(1, "none", 40)

    def planted(label, delay, size):
        frame = base.copy()
        frame.loc[5, "label_available_at"] = frame.loc[5, "timestamp"] + delay
        trials.append(Trial(f"week 1 with one label {label}", kwargs={"validated_batch": frame}, size=size))

    planted("exactly 45 days after its payment", pd.Timedelta(days=45), 1)
    planted("45 days and 1 second after its payment", pd.Timedelta(days=45, seconds=1), 2)
    planted("at the very second of its payment", pd.Timedelta(0), 3)
    planted("1 second after its payment", pd.Timedelta(seconds=1), 4)
    planted("an hour before its payment", -pd.Timedelta(hours=1), 5)
    planted("40 days after its payment", pd.Timedelta(days=40), 6)
    return trials


def _passed(result) -> bool:
    import dagster as dg

    if not isinstance(result, dg.AssetCheckResult):
        raise AssertionError(f"your check returned a {type(result).__name__}; return "
                             "dg.AssetCheckResult(passed=..., metadata=...)")
    return bool(result.passed)


def _compare_check(got, expected, trial) -> str | None:
    import dagster as dg

    ok, want = _passed(got), _passed(expected)
    if got.severity != dg.AssetCheckSeverity.ERROR:
        return (f"your check's result has severity {got.severity.value}: a failing WARN result is only recorded and "
                "does not stop the assets downstream; leave the default severity (ERROR) so the check blocks")
    if ok == want:
        return None
    return (f"your check {'passed' if ok else 'failed'} the batch, but it should "
            f"{'pass' if want else 'fail'}: a label arrives after its payment (not at the same second) and "
            f"at most {MAX_LABEL_DAYS} days later (exactly {MAX_LABEL_DAYS} days is in time)")


def _label_check(rule, blocking=True, asset="validated_batch"):
    import dagster as dg

    from .. import orchestration

    def labels_arrive_in_time(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        delay = validated_batch["label_available_at"] - validated_batch["timestamp"]
        return dg.AssetCheckResult(passed=bool(rule(delay)))

    return dg.asset_check(asset=asset, blocking=blocking, partitions_def=orchestration.weekly)(labels_arrive_in_time)


def _reference_label_check(validated_batch):
    return _body(get("9.2").reference())(validated_batch=validated_batch)


def _blank_check():
    import dagster as dg

    from .. import orchestration

    def labels_arrive_in_time(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        ...

    return dg.asset_check(asset="validated_batch", blocking=True, partitions_def=orchestration.weekly)(
        labels_arrive_in_time)


def _red_team_9_2():
    """Answers a blind red team wrote from the lab's text (kept as they wrote them)."""
    import dagster as dg

    from .. import orchestration

    W, VB = orchestration.weekly, orchestration.validated_batch
    D45, ZERO = pd.Timedelta(days=45), pd.Timedelta(0)

    def _delay(b):
        return b["label_available_at"] - b["timestamp"]

    @dg.asset_check(asset=VB, blocking=True, partitions_def=W)
    def warn_severity(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        d = _delay(validated_batch)
        return dg.AssetCheckResult(passed=bool(((d > ZERO) & (d <= D45)).all()),
                                   severity=dg.AssetCheckSeverity.WARN)

    @dg.asset_check(asset=VB, blocking=True)
    def no_partitions_def(validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        d = _delay(validated_batch)
        return dg.AssetCheckResult(passed=bool(((d > ZERO) & (d <= D45)).all()))

    @dg.asset_check(asset=VB, blocking=True, partitions_def=W)
    def yields(validated_batch: pd.DataFrame):
        d = _delay(validated_batch)
        yield dg.AssetCheckResult(passed=bool(d.between(ZERO, D45, inclusive="right").all()))

    @dg.asset_check(asset="validated_batch", blocking=True, partitions_def=W, name="labels_arrive_in_time",
                    description="labels in time")
    def explicit_fields(context: dg.AssetCheckExecutionContext, validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        b = validated_batch
        ok = (b["label_available_at"] > b["timestamp"]) & (b["label_available_at"] <= b["timestamp"] + D45)
        return dg.AssetCheckResult(passed=bool(ok.all()), severity=dg.AssetCheckSeverity.ERROR,
                                   asset_key=dg.AssetKey("validated_batch"), check_name="labels_arrive_in_time",
                                   metadata={"bad labels": int((~ok).sum()),
                                             "max delay (days)": float(_delay(b).max() / pd.Timedelta(days=1))},
                                   description=f"{int((~ok).sum())} labels out of time")

    @dg.asset_check(asset=VB, blocking=True, partitions_def=W)
    def context_only(context: dg.AssetCheckExecutionContext, validated_batch: pd.DataFrame) -> dg.AssetCheckResult:
        d = validated_batch["label_available_at"] - validated_batch["timestamp"]
        return dg.AssetCheckResult(passed=bool(((d > pd.Timedelta(0)) & (d <= pd.Timedelta(days=45))).all()))

    return dict(warn_severity=warn_severity, no_partitions_def=no_partitions_def, yields=yields,
                explicit_fields=explicit_fields, context_only=context_only)


@exercise(
    "9.2",
    "A blocking asset check: labels arrive in time",
    solution=SOLUTION_9_2,
    hints=(
        "`validated_batch['label_available_at'] - validated_batch['timestamp']` is each label's delay (a Timedelta).",
        "In time means after the payment (a delay above zero) and at most 45 days later: `pd.Timedelta(days=45)` "
        "itself is in time.",
        "Return `dg.AssetCheckResult(passed=..., metadata={...})`; `blocking=True` in the decorator is what "
        "stops the assets downstream when it fails.",
    ),
    reference=lambda: _solution("9.2", "labels_arrive_in_time"),
    stub=_blank_check,  # the answer is an asset check: its checker runs the trials
    cases=(
        wrong("45 days excluded", lambda: _label_check(
            lambda d: ((d > pd.Timedelta(0)) & (d < pd.Timedelta(days=45))).all()), "exactly 45 days is in time"),
        wrong("a label at the payment's second allowed", lambda: _label_check(
            lambda d: ((d >= pd.Timedelta(0)) & (d <= pd.Timedelta(days=45))).all()), "not at the same second"),
        wrong("30 days, the genuine payments' delay, as the maximum", lambda: _label_check(
            lambda d: ((d > pd.Timedelta(0)) & (d <= pd.Timedelta(days=30))).all()), "at most 45 days"),
        wrong("only the lower bound", lambda: _label_check(lambda d: (d > pd.Timedelta(0)).all()), "at most 45"),
        wrong("a check that does not block", lambda: _label_check(
            lambda d: ((d > pd.Timedelta(0)) & (d <= pd.Timedelta(days=45))).all(), blocking=False), "blocking=True"),
        wrong("a check on the raw payments", lambda: _label_check(
            lambda d: ((d > pd.Timedelta(0)) & (d <= pd.Timedelta(days=45))).all(), asset="payments"),
            "validated_batch"),
        right("the delays in days, as floats", lambda: _label_check(
            lambda d: d.dt.total_seconds().between(0, 45 * 86_400, inclusive="right").all())),
        wrong("severity WARN (does not block)", lambda: _red_team_9_2()["warn_severity"], "severity WARN"),
        wrong("no partitions_def", lambda: _red_team_9_2()["no_partitions_def"], "partitions_def=orchestration.weekly"),
        right("yields its result", lambda: _red_team_9_2()["yields"]),
        right("a context, name=, explicit key and severity", lambda: _red_team_9_2()["explicit_fields"]),
        right("a context only", lambda: _red_team_9_2()["context_only"]),
    ),
)
def _check_label_check(answer) -> None:
    import dagster as dg

    from .. import orchestration

    _require_definition(answer, "asset check")
    assert isinstance(answer, dg.AssetChecksDefinition), (
        f"expected an asset check (a function decorated with @dg.asset_check), got a {type(answer).__name__}")
    spec = next(iter(answer.check_specs))
    assert spec.asset_key == dg.AssetKey("validated_batch"), (
        f"your check guards {spec.asset_key.to_user_string()!r}: put it on `validated_batch`, the batch the "
        "rollout serves (asset=orchestration.validated_batch)")
    assert answer.partitions_def == orchestration.weekly, (
        "your check is not partitioned by week: give it `partitions_def=orchestration.weekly` (the partitions "
        "of validated_batch), or a real run of one week's batch fails")
    assert spec.blocking, ("your check does not block: with `blocking=True` a failing batch stops the assets "
                           "downstream (the rollout never serves it); without it the failure is only recorded")
    differential(lambda validated_batch: _run(answer, "validated_batch", validated_batch), _reference_label_check,
                 _label_trials(), compare=_compare_check, what="your check")


# ------------------------------------------------------------------ 9.3 the sensor's condition

SOLUTION_9_3 = '''
import operator


def alerts_fired(report, rules):
    fired = []
    for rule in rules:  # in the rules' order
        value = report.get(rule.metric, float("nan"))  # a metric the report lacks never fires
        compare = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[rule.op]
        if pd.notna(value) and compare(float(value), float(rule.threshold)):  # NaN: not enough data
            fired.append(rule.name)
    return fired
'''


def _rules(*specs):
    from ..monitoring import AlertRule

    return [AlertRule(name, metric, op, threshold) for name, metric, op, threshold in specs]


def _sensor_trials() -> list[Trial]:
    loop_rules = _rules(("inputs drift", "drifted_columns", ">", 0), ("chargebacks up", "chargebacks_per_1000", ">", 1.6))
    mixed = _rules(("flags up", "flag_rate", ">=", 0.03), ("flags down", "flag_rate", "<", 0.005),
                   ("cost", "cost_per_1000", "<=", -1.0), ("drift", "drifted_columns", ">=", 2))
    reports = [
        ("a quiet week", {"drifted_columns": 0, "chargebacks_per_1000": 0.9, "flag_rate": 0.012, "cost_per_1000": 310.0}),
        ("card testing: three columns drifted", {"drifted_columns": 3, "chargebacks_per_1000": 2.4, "flag_rate": 0.02,
                                                "cost_per_1000": 520.0}),
        ("chargebacks at exactly 1.6 per 1,000", {"drifted_columns": 0, "chargebacks_per_1000": 1.6, "flag_rate": 0.012,
                                                  "cost_per_1000": 300.0}),
        ("chargebacks at 1.6001 per 1,000", {"drifted_columns": 0, "chargebacks_per_1000": 1.6001, "flag_rate": 0.03,
                                             "cost_per_1000": 300.0}),
        ("a flag rate of exactly 3%", {"drifted_columns": 1, "chargebacks_per_1000": 1.0, "flag_rate": 0.03,
                                       "cost_per_1000": 300.0}),
        ("a flag rate of 0.4%", {"drifted_columns": 2, "chargebacks_per_1000": 1.0, "flag_rate": 0.004,
                                 "cost_per_1000": -1.0}),
        ("a flag rate of exactly 0.5%", {"drifted_columns": 2, "chargebacks_per_1000": 1.0, "flag_rate": 0.005,
                                         "cost_per_1000": -1.5}),
        ("no chargebacks known yet (NaN)", {"drifted_columns": 0, "chargebacks_per_1000": float("nan"),
                                            "flag_rate": 0.01, "cost_per_1000": float("nan")}),
        ("a report without cost_per_1000", {"drifted_columns": 0, "chargebacks_per_1000": 1.7, "flag_rate": 0.01}),
        ("an empty report", {}),
    ]
    trials = []
    for i, (label, report) in enumerate(reports):
        trials.append(Trial(f"{label}, the loop's rules (inputs drift: drifted_columns > 0; chargebacks up: "
                            "chargebacks_per_1000 > 1.6)", (report, loop_rules), size=i))
        trials.append(Trial(f"{label}, rules {', '.join(str(r) for r in mixed)}", (report, mixed), size=100 + i))
    trials.append(Trial("no rules at all", ({"drifted_columns": 4}, []), size=-1))
    twice = _rules(("drift", "drifted_columns", ">", 0), ("chargebacks up", "chargebacks_per_1000", ">", 1.6),
                   ("drift", "drifted_columns", ">=", 3))  # one name on two rules: each rule that fires is listed
    trials.append(Trial("card testing, two rules named 'drift' (drifted_columns > 0; drifted_columns >= 3) and "
                        "chargebacks up: chargebacks_per_1000 > 1.6", (reports[1][1], twice), size=200))
    return trials


def _compare_fired(got, expected, trial) -> str | None:
    if not isinstance(got, list | tuple) or not all(isinstance(n, str) for n in got):
        return f"returned {got!r}; return the list of the names of the rules that fire (e.g. ['inputs drift'])"
    if list(got) == list(expected):
        return None
    return (f"returned {list(got)}, expected {list(expected)}: each rule compares report[rule.metric] with "
            "rule.threshold using rule.op (at exactly the threshold, '>' does not fire and '>=' does); a "
            "missing or NaN value never fires; keep the rules' order, one name for each rule that fires (two rules "
            "with one name that both fire: the name twice)")


def _reference_alerts_fired(report, rules):
    return get("9.3").reference()(report, rules)


def _always_greater(report, rules):
    return [r.name for r in rules if pd.notna(report.get(r.metric, np.nan)) and report[r.metric] > r.threshold]


def _nan_fires(report, rules):

    ops = {">": operator.le, ">=": operator.lt, "<": operator.ge, "<=": operator.gt}  # "not quiet"
    return [r.name for r in rules if not ops[r.op](report.get(r.metric, np.nan), r.threshold)]


def _missing_raises(report, rules):

    ops = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
    return [r.name for r in rules if pd.notna(report[r.metric]) and ops[r.op](report[r.metric], r.threshold)]


def _sorted_names(report, rules):
    return sorted(_reference_alerts_fired(report, rules))


def _dedup_names(report, rules):  # the red team's: a name listed once
    OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
    return list(dict.fromkeys(r.name for r in rules
                              if pd.notna(report.get(r.metric, np.nan)) and OPS[r.op](report[r.metric], r.threshold)))


def _package_fired_guarded(report, rules):  # the red team's: lab 07's evaluator, no rules guarded
    from ..monitoring import alerts

    rules = list(rules)
    if not rules:
        return []
    row = pd.DataFrame([{m: report.get(m, np.nan) for m in alerts.METRICS}])
    return list(alerts.fired(rules, row)["rule"])


def _with_evaluate(report, rules):
    from ..monitoring.alerts import METRICS, evaluate

    if not rules:
        return []
    table = evaluate(rules, pd.DataFrame([{m: report.get(m, np.nan) for m in METRICS}]))
    return table.loc[table["fired"], "rule"].tolist()


@exercise(
    "9.3",
    "The drift sensor's condition",
    solution=SOLUTION_9_3,
    hints=(
        "Each `AlertRule` has `name`, `metric`, `op` ('>', '>=', '<' or '<=') and `threshold`; `report` is a "
        "dict of metric values, e.g. {'drifted_columns': 3, 'chargebacks_per_1000': 2.4}.",
        "Map the op to a comparison (`operator.gt`, `operator.ge`, ...): at exactly the threshold '>' does not "
        "fire, '>=' does.",
        "A NaN or missing value (no chargebacks known yet) never fires: check `pd.notna(value)` first; "
        "`report.get(rule.metric, float('nan'))` reads a missing one as NaN.",
    ),
    reference="alerts_fired",
    stub=lambda: _blank_sensor,
    trials=_sensor_trials,
    cases=(
        wrong("every op read as '>'", lambda: _always_greater, "'>=' does"),
        wrong("NaN fires", lambda: _nan_fires, "NaN value never fires"),
        wrong("a missing metric raises", lambda: _missing_raises, "raised KeyError"),
        wrong("names sorted", lambda: _sorted_names, "keep the rules' order"),
        right("lab 07's evaluate on a one-row table", lambda: _with_evaluate),
        wrong("a repeated rule name listed once", lambda: _dedup_names, "the name twice"),
        right("lab 07's alerts.fired, no rules guarded", lambda: _package_fired_guarded),
    ),
)
def _check_alerts_fired(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function alerts_fired(report, rules) returning the names of the rules that fire"
    differential(func, _reference_alerts_fired, _sensor_trials(), compare=_compare_fired, what="your condition")


def _blank_sensor(report, rules):
    ...
