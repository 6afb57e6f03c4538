"""Lab 06: CI for ML. The learner writes a data test, a model test and a behavioural test as
functions (each must pass the course's good batch or model and fail planted bad ones), then
completes a workflow job that actionlint and zizmor accept."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from .. import config
from ..errors import LabError
from . import NotAttempted, Trial, differential, exercise, require_attempt, right, wrong

MAX_AUC = 0.95
PR_AUC_FLOOR = 0.30
TOLERANCE = 0.001
MAX_FAILURE_RATE = 0.01


# --------------------------------------------------------------------------- what the checks run on


@functools.cache
def _split_for(home: str):
    from .. import data

    return data.time_split(data.load_snapshot())


def _split():
    return _split_for(str(config.home()))


def _fit_lr(frame):
    from .. import data, training

    return training.build_pipeline("logistic_regression").fit(frame[data.feature_columns()], frame["is_fraud"])


@functools.cache
def _models_for(home: str) -> dict:
    """The champion, the registered baseline, and two models trained on corrupted exports."""
    from .. import registry

    train, _, _ = _split()
    inverted_country = train.copy()
    inverted_country["country_mismatch"] = ~inverted_country["country_mismatch"]
    inverse_amount = train.copy()
    inverse_amount["amount"] = (1000 / inverse_amount["amount"]).clip(0.01, 50_000)
    return {
        "the champion": registry.load(registry.CHAMPION),
        "the logistic-regression baseline (version 1)": registry.load("1"),
        "a model trained on an export with the country flag inverted": _fit_lr(inverted_country),
        "a model trained on an export that sent 1000/amount": _fit_lr(inverse_amount),
    }


def _models() -> dict:
    return _models_for(str(config.home()))


def _blank(*args, **kwargs):
    ...


_STUB_CODE = _blank.__code__.co_code


def _is_stub(func) -> bool:
    """The lab's blank stub: a function whose body is only `...` (a real body that forgets to
    return is a mistake to report, not a blank)."""
    code = getattr(func, "__code__", None)
    return code is not None and code.co_code == _STUB_CODE and code.co_consts in ((None,), (Ellipsis,), (None, Ellipsis))


def _run(func, args: tuple, given: str) -> bool:
    """Call the learner's test; a crash, a missing return or an edited input becomes a message, not a traceback."""
    import pandas as pd

    # The learner gets copies: the frames passed in are the checks' shared (cached) data, and an answer
    # that edits its input must not spoil them for the next answer.
    given_args = tuple(a.copy() if isinstance(a, pd.DataFrame) else a for a in args)
    try:
        result = func(*given_args)
    except Exception as exc:
        raise AssertionError(f"your code raised {type(exc).__name__}: {exc} (when given {given}). The error is in "
                             "your function, not in what it was given: fix it so that the test answers True or "
                             "False") from None
    if result is None:
        raise AssertionError(f"your test returned nothing (None) for {given}: end it with `return <condition>`, "
                             "True when the test passes and False when it fails")
    if not isinstance(result, bool | np.bool_):
        raise AssertionError(f"your test returned {type(result).__name__} {result!r} for {given}; return True or "
                             "False")
    for after, before in zip(given_args, args, strict=True):
        if isinstance(before, pd.DataFrame) and not (after.columns.equals(before.columns) and after.equals(before)):
            raise AssertionError(f"given {given}, your test changed its input (the frame it was given): a test "
                                 "must leave the caller's data as it found it (work on a copy: "
                                 "`payments = payments.copy()`)")
    return bool(result)


def _attempted_function(func, signature: str) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function {signature}, got {type(func).__name__}"
    if _is_stub(func):
        raise NotAttempted


# --------------------------------------------------------------------------- 6.1 a data test


def _leaky(column: str, how):
    def plant(frame):
        frame = frame.copy()
        frame[column] = how(frame)
        return frame

    return plant


LEAKS = {
    "tx_count_24h recounted after the chargebacks (4 extra payments on every fraud)":
        _leaky("tx_count_24h", lambda f: f["tx_count_24h"] + 4 * f["is_fraud"]),
    "new_device set by the fraud team's review (True on every fraud)":
        _leaky("new_device", lambda f: (f["new_device"] | (f["is_fraud"] == 1)).astype("boolean")),
    "customer_age_days reset to 0 when a card is blocked after fraud (a leak downwards)":
        _leaky("customer_age_days", lambda f: f["customer_age_days"].where(f["is_fraud"] == 0, 0)),
}


def reference_no_leaky_feature(frame, max_auc=MAX_AUC):
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    for column in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h",
                   "distance_from_home_km", "country_mismatch", "new_device"]:
        values = pd.to_numeric(frame[column].astype("float64")).fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], values)
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _one_direction(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    columns = ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h", "distance_from_home_km",
               "country_mismatch", "new_device"]
    return all(roc_auc_score(frame["is_fraud"], frame[c].astype("float64").fillna(-1)) < max_auc for c in columns)


def _numbers_only(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    for c in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h", "distance_from_home_km"]:
        auc = roc_auc_score(frame["is_fraud"], frame[c].fillna(-1))
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _too_strict(frame, max_auc=MAX_AUC):
    return reference_no_leaky_feature(frame, max_auc=0.8)


@exercise(
    "6.1",
    "A data test: no feature leaks the label",
    solution='''
import pandas as pd
from sklearn.metrics import roc_auc_score

def no_leaky_feature(frame, max_auc=0.95):
    for column in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h",
                   "distance_from_home_km", "country_mismatch", "new_device"]:
        values = pd.to_numeric(frame[column].astype("float64")).fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], values)
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True
''',
    hints=(
        "Score each numeric or boolean feature alone: roc_auc_score(frame['is_fraud'], values). An honest "
        "feature is far from 1.0 here (amount, the strongest, reaches 0.86).",
        "A feature can leak downwards too (fraud rows all get a small value): its AUC is then close to 0. "
        "Use max(auc, 1 - auc).",
        "Booleans are features too, and some columns have gaps: .astype('float64').fillna(-1) before scoring.",
    ),
    reference="no_leaky_feature",
    trials=lambda: leak_trials(),
    stub=lambda: _stub_data_test,
    cases=(
        wrong("always passes", lambda: lambda frame, max_auc=MAX_AUC: True, "tx_count_24h recounted"),
        wrong("one direction only", lambda: _one_direction, "customer_age_days reset to 0"),
        wrong("numbers but not booleans", lambda: _numbers_only, "new_device set by the fraud team"),
        wrong("threshold too strict", lambda: _too_strict, "failed the clean training data"),
        wrong("forgets to return", lambda: _forgets_return, "returned nothing"),
        wrong("max_auc ignored (0.95 written in)", lambda: _ignores_max_auc, "`max_auc=0.85`"),
        wrong("`>` instead of `>=` at max_auc", lambda: _strictly_above, "at the bound counts"),
        wrong("only the columns the story leaks", lambda: _story_columns_only, "distance_from_home_km set to 9,000"),
        wrong("fills the caller's gaps in place", lambda: _fills_in_place, "changed its input"),
        wrong("every feature made a float in place", lambda: _every_feature_as_float_in_place, "changed its input"),
        wrong("gaps dropped, crashes on an empty column", lambda: _gaps_dropped_crashes, "device_feature_missing"),
        right("gaps dropped, both directions by 1 - max_auc", lambda: _gaps_dropped),
        right("each feature scored with both signs", lambda: _both_signs),
        right("with the course's helper", lambda: lambda frame, max_auc=MAX_AUC: bool(
            __import__("mlops_lab.testing", fromlist=["x"]).single_feature_auc(frame).max() < max_auc)),
    ),
)
def _check_data_test(func) -> None:
    _attempted_function(func, "no_leaky_feature(frame, max_auc=0.95)")
    train, _, _ = _split()
    assert _run(func, (train,), "the clean training data"), (
        "your test failed the clean training data (28 days of the course dataset). Its strongest honest feature, "
        "amount, reaches a ROC-AUC of 0.86 on its own: leakage is *almost perfect* separation (0.95 or more)"
    )
    for what, plant in LEAKS.items():
        assert not _run(func, (plant(train),), f"a batch with {what}"), (
            f"your test passed a batch with {what}: that feature now predicts fraud almost alone"
        )
    differential(func, _solution("6.1"), leak_trials(), compare=_compare_verdict(RULE_6_1), what="your test")


def _stub_data_test(frame, max_auc=0.95):
    ...


def _forgets_return(frame, max_auc=MAX_AUC):
    reference_no_leaky_feature(frame, max_auc)


# --------------------------------------------------------------------------- 6.2 a model test


def reference_good_enough(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    scores = model.predict_proba(holdout)[:, 1]
    return average_precision_score(holdout["is_fraud"], scores) >= floor


def _roc_instead(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(holdout["is_fraud"], model.predict_proba(holdout)[:, 1]) >= 0.8


def _accuracy_instead(model, holdout, floor=PR_AUC_FLOOR):
    return (model.predict(holdout) == holdout["is_fraud"]).mean() >= 0.99


def _decisions_instead(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    return average_precision_score(holdout["is_fraud"], model.predict(holdout)) >= floor


@exercise(
    "6.2",
    "A model test: a quality floor that means something for fraud",
    solution='''
from sklearn.metrics import average_precision_score

def good_enough(model, holdout, floor=0.30):
    scores = model.predict_proba(holdout)[:, 1]
    return average_precision_score(holdout["is_fraud"], scores) >= floor
''',
    hints=(
        "Fraud is under 1% of payments: accuracy and ROC-AUC look good for almost any model. Lab 02 chose "
        "PR-AUC (average precision) for a reason.",
        "PR-AUC needs scores, not decisions: model.predict_proba(holdout)[:, 1].",
    ),
    reference="good_enough",
    trials=lambda: quality_trials(),
    stub=lambda: _stub_model_test,
    cases=(
        wrong("ROC-AUC", lambda: _roc_instead, "ROC-AUC"),
        wrong("accuracy", lambda: _accuracy_instead, "accuracy"),
        wrong("decisions instead of scores", lambda: _decisions_instead, "predict_proba"),
        wrong("always passes", lambda: lambda model, holdout, floor=PR_AUC_FLOOR: True, "country flag inverted"),
        wrong("floor ignored (0.30 written in)", lambda: _ignores_floor, "(just above its PR-AUC)"),
        wrong("`>` instead of `>=` at the floor", lambda: _floor_exclusive, "(exactly its PR-AUC)"),
        wrong("the model's own decisions as labels", lambda: _own_decisions_as_labels, "its PR-AUC is only"),
        wrong("PR-AUC by the trapezoid rule", lambda: _trapezoid_pr_auc, "average precision"),
        wrong("refits the model on the holdout", lambda: _refits, "did it call fit?"),
        right("training.predict_scores and numpy labels", lambda: _with_predict_scores),
        right("through training.evaluate", lambda: lambda model, holdout, floor=PR_AUC_FLOOR: bool(
            __import__("mlops_lab.training", fromlist=["x"]).evaluate(model, holdout, 0.5)["pr_auc"] >= floor)),
    ),
)
def _check_model_test(func) -> None:
    _attempted_function(func, "good_enough(model, holdout, floor=0.30)")
    _, _, holdout = _split()
    _holdout_figures(str(config.home()))
    with _models_left_alone(), threadpool_limits_1():
        for name, model in _models().items():
            pr_auc, roc_auc, accuracy = _holdout_figures(str(config.home()))[name]
            verdict = _run(func, (model, holdout), name)
            if pr_auc >= PR_AUC_FLOOR:
                assert verdict, (f"your test failed {name}, whose holdout PR-AUC is {pr_auc:.3f} (above the floor "
                                 f"of {PR_AUC_FLOOR}). Judge the scores (predict_proba), not the 0/1 decisions of "
                                 "predict")
            else:
                assert not verdict, (f"your test passed {name}: its PR-AUC is only {pr_auc:.3f}, though its ROC-AUC "
                                     f"is {roc_auc:.2f} and its accuracy is {accuracy:.3f}. With under 1% fraud, "
                                     "ROC-AUC and accuracy flatter weak models")
        _judge_on_models(func, "6.2", quality_trials(), RULE_6_2)


@functools.cache
def _holdout_figures(home: str) -> dict:
    """PR-AUC, ROC-AUC and accuracy of each model on the course holdout (computed once)."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    _, _, holdout = _split()
    y = holdout["is_fraud"]
    out = {}
    for name, model in _models().items():
        scores = model.predict_proba(holdout)[:, 1]
        out[name] = (average_precision_score(y, scores), roc_auc_score(y, scores),
                     float((model.predict(holdout) == y).mean()))
    return out


def _stub_model_test(model, holdout, floor=0.30):
    ...


# --------------------------------------------------------------------------- 6.3 a behavioural test


def reference_riskier_is_not_lower(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.copy()
    riskier["amount"] = (riskier["amount"] * 5).clip(upper=50_000)
    riskier["country_mismatch"] = True
    riskier["hour"] = 2
    before = model.predict_proba(payments)[:, 1]
    after = model.predict_proba(riskier)[:, 1]
    return bool(((after - before) < -tolerance).mean() <= max_failure_rate)


def _verdict_misread(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    from .. import testing

    return testing.directional(model, payments, testing.risky_foreign_night, "riskier", tolerance=tolerance,
                               max_failure_rate=max_failure_rate).ok  # the Verdict has `passed`, not `ok`


def _strictly_higher(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5, country_mismatch=True, hour=2)
    return bool((model.predict_proba(riskier)[:, 1] >= model.predict_proba(payments)[:, 1]).all())


def _mean_only(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5, country_mismatch=True, hour=2)
    return bool(model.predict_proba(riskier)[:, 1].mean() >= model.predict_proba(payments)[:, 1].mean())


def _amount_only(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5)
    delta = model.predict_proba(riskier)[:, 1] - model.predict_proba(payments)[:, 1]
    return bool((delta < -tolerance).mean() <= max_failure_rate)


@exercise(
    "6.3",
    "A behavioural test: riskier payments do not score lower",
    solution='''
def riskier_is_not_lower(model, payments, tolerance=0.001, max_failure_rate=0.01):
    riskier = payments.copy()
    riskier["amount"] = (riskier["amount"] * 5).clip(upper=50_000)
    riskier["country_mismatch"] = True
    riskier["hour"] = 2
    before = model.predict_proba(payments)[:, 1]
    after = model.predict_proba(riskier)[:, 1]
    return bool(((after - before) < -tolerance).mean() <= max_failure_rate)
''',
    hints=(
        "Make one edited copy of the payments with all three changes (5x the amount, a foreign card, 02:00) and "
        "score both copies.",
        "Tree models are not monotone everywhere: count the payments whose score fell by more than the "
        "tolerance, and pass when that share is at most max_failure_rate.",
        "An average can rise while many payments fall: judge each payment, then the share.",
    ),
    reference="riskier_is_not_lower",
    trials=lambda: behaviour_trials(),
    stub=lambda: _stub_behaviour_test,
    cases=(
        wrong("every score strictly higher", lambda: _strictly_higher, "failed the champion"),
        wrong("compares the mean score", lambda: _mean_only, "1000/amount"),
        wrong("changes the amount only", lambda: _amount_only, "failed the champion"),
        wrong("always passes", lambda: lambda model, payments, tolerance=TOLERANCE, max_failure_rate=0.01: True,
              "country flag inverted"),
        wrong("max_failure_rate ignored (1% written in)", lambda: _ignores_rate, "`max_failure_rate=0.05`"),
        wrong("`<` instead of `<=` on the share", lambda: _share_strictly_under, "(exactly the share that fell)"),
        wrong("an unchanged score counted as fallen", lambda: _equal_counts_as_fallen, "has not fallen"),
        wrong("edits the caller's payments", lambda: _edits_payments, "changed its input"),
        wrong("the helper's verdict read by a wrong name", lambda: _verdict_misread,
              "your code raised AttributeError"),
        wrong("tolerance ignored (0.001 written in)", lambda: _ignores_tolerance, "`tolerance=0.0`"),
        right("a count with numpy, against rate x len", lambda: _counted_with_numpy),
        right("with the course's helper", lambda: lambda model, payments, tolerance=TOLERANCE,
              max_failure_rate=MAX_FAILURE_RATE: __import__("mlops_lab.testing", fromlist=["x"]).directional(
                  model, payments, __import__("mlops_lab.testing", fromlist=["x"]).risky_foreign_night, "d",
                  tolerance=tolerance, max_failure_rate=max_failure_rate).passed),
    ),
)
def _check_behaviour_test(func) -> None:
    _attempted_function(func, "riskier_is_not_lower(model, payments, tolerance=0.001, max_failure_rate=0.01)")
    payments = _story_payments()
    _fell(str(config.home()))
    with _models_left_alone(), threadpool_limits_1():
        for name, model in _models().items():
            fell = _fell(str(config.home()))[name]
            why = (f"{fell} of {len(payments)} of its scores fell by more than {TOLERANCE} when the payments became "
                   f"riskier (allowed: {MAX_FAILURE_RATE:.0%})")
            verdict = _run(func, (model, payments), name)
            if fell <= MAX_FAILURE_RATE * len(payments):
                assert verdict, (f"your test failed {name}, yet only {why}. Change all three (amount, foreign card, "
                                 "night) at once, and allow a small share of payments to fall by more than the "
                                 "tolerance")
            else:
                assert not verdict, f"your test passed {name}, but {why}"
        _judge_on_models(func, "6.3", behaviour_trials(), RULE_6_3)


def _story_payments():
    _, _, holdout = _split()
    return holdout.sample(1000, random_state=config.SEED)


@functools.cache
def _fell(home: str) -> dict:
    """How many of the story's payments each model scores lower, by more than the tolerance, once riskier."""
    from .. import testing

    payments = _story_payments()
    out = {}
    for name, model in _models().items():
        delta = (model.predict_proba(testing.risky_foreign_night(payments.copy()))[:, 1]
                 - model.predict_proba(payments)[:, 1])
        out[name] = int((delta < -TOLERANCE).sum())
    return out


def _stub_behaviour_test(model, payments, tolerance=0.001, max_failure_rate=0.01):
    ...


# --------------------------------------------------------------------------- generated inputs (differential)
# Each check first runs the story (the course's data and models, planted faults: its messages tell the
# story), then the learner's function beside the solution text on inputs the lab never showed: fresh
# simulator seeds and scenarios, arguments at and around their bounds, shuffled rows and columns, extra
# columns. What the learner tunes by looking at the lab's data is judged on data they did not see.


def _solution(id: str):
    from . import get

    return get(id).reference()


def _auc_table(frame) -> dict:
    from sklearn.metrics import roc_auc_score

    out = {}
    for column in FEATURES_6_1:
        values = frame[column].astype("float64")
        for how, filled in (("fill", values.fillna(-1)), ("drop", values.dropna())):
            auc = roc_auc_score(frame.loc[filled.index, "is_fraud"], filled)
            out[column, how] = max(auc, 1 - auc)
    return out


FEATURES_6_1 = ("amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h", "distance_from_home_km",
                "country_mismatch", "new_device")


def _partial_leak(frame, share: float, seed: int):
    """tx_count_24h raised on a share of the frauds: a leak as strong as you like, with no gaps."""
    frame = frame.copy()
    rng = np.random.default_rng(seed)
    hit = (frame["is_fraud"] == 1) & (rng.random(len(frame)) < share)
    frame.loc[hit, "tx_count_24h"] = frame.loc[hit, "tx_count_24h"] + 40
    return frame


@functools.cache
def leak_trials() -> tuple:
    from .. import data

    out = []

    def add(label, frame, max_auc=None):
        kwargs = {} if max_auc is None else {"max_auc": max_auc}
        shown = "" if max_auc is None else f"`max_auc={max_auc!r}`, "
        out.append(Trial(f"{shown}{label}", (frame,), kwargs, size=len(out)))

    frames = {(seed, scenario): data.simulate_transactions(3000, seed=seed, scenario=scenario)
              for seed, scenario in ((11, None), (12, "holiday_season"), (13, "card_testing"),
                                     (14, "device_feature_missing"), (15, "fraud_rate_spike"))}
    for (seed, scenario), frame in frames.items():
        add(f"3,000 fresh payments of seed {seed} (scenario {scenario or 'none'}), no leak", frame)
    clean = frames[11, None]
    for what, plant in LEAKS.items():
        add(f"3,000 fresh payments of seed 12 with {what}", plant(frames[12, "holiday_season"]))
    gaps = clean.copy()
    gaps.loc[gaps["is_fraud"] == 1, "distance_from_home_km"] = 9_000.0  # a leak in a column with gaps
    add("3,000 fresh payments of seed 11 with distance_from_home_km set to 9,000 on every fraud (a column with "
        "gaps)", gaps)
    add("3,000 fresh payments of seed 11, no leak", clean, 0.80)
    add("3,000 fresh payments of seed 15 (fraud_rate_spike), no leak", frames[15, "fraud_rate_spike"], 0.85)
    add("3,000 fresh payments of seed 11, no leak", clean, 0.90)
    add("3,000 fresh payments of seed 13 (card_testing), no leak", frames[13, "card_testing"], 0.80)
    perfect = clean.copy()
    perfect["new_device"] = (perfect["is_fraud"] == 1).astype("boolean")
    add("3,000 fresh payments of seed 11 where new_device is exactly is_fraud (ROC-AUC 1.0)", perfect, 1.0)
    partial = _partial_leak(clean, 0.8, 1)
    exact = max(_auc_table(partial)[("tx_count_24h", "fill")], 0.5)
    add(f"3,000 fresh payments of seed 11 where tx_count_24h alone reaches a ROC-AUC of exactly {exact!r}", partial,
        exact)
    add(f"3,000 fresh payments of seed 11 where tx_count_24h alone reaches a ROC-AUC of {exact!r} (just under the "
        "bound)", partial, float(np.nextafter(exact, 1.0)))
    add("3,000 fresh payments of seed 11 with a partial leak in tx_count_24h", partial, 0.99)
    shuffled = LEAKS[next(iter(LEAKS))](clean).sample(frac=1, random_state=3)
    add("3,000 fresh payments of seed 11, rows shuffled, with tx_count_24h recounted after the chargebacks",
        shuffled)
    extra = clean.assign(note="ok", row_number=np.arange(len(clean)), amount_cents=clean["amount"] * 100)
    extra = extra[["note", "row_number", "amount_cents", *reversed(clean.columns)]]
    add("3,000 fresh payments of seed 11 with extra columns first (note, row_number, amount_cents) and the "
        "columns in reverse order", extra)
    add("the same frame with extra columns, customer_age_days reset to 0 on every fraud",
        LEAKS[list(LEAKS)[2]](extra))
    small = data.simulate_transactions(600, seed=16, scenario="fraud_rate_spike")
    add("600 fresh payments of seed 16 (fraud_rate_spike), no leak", small)
    return tuple(out)


@functools.cache
def _fresh_frames() -> dict:
    """Payments the lab never showed: other seeds and scenarios, a few thousand rows each."""
    from .. import data

    _, _, holdout = _split()
    return {
        "1,500 payments of the course holdout": holdout.sample(1500, random_state=5),
        "1,500 fresh payments of seed 21": data.simulate_transactions(1500, seed=21, start="2026-03-02"),
        "1,500 fresh payments of seed 22 (fraud_rate_spike)":
            data.simulate_transactions(1500, seed=22, start="2026-03-02", scenario="fraud_rate_spike"),
        "1,500 fresh payments of seed 23 (card_testing)":
            data.simulate_transactions(1500, seed=23, start="2026-03-02", scenario="card_testing"),
    }


def _shape(frame, seed: int):
    """Rows shuffled, the columns in another order (an extra column would break the course's own
    `training.evaluate`, which holds a frame to the data contract)."""
    frame = frame.sample(frac=1, random_state=seed)
    return frame[list(reversed(frame.columns))]


@functools.cache
def quality_trials() -> tuple:
    from sklearn.metrics import average_precision_score

    models = _models()
    frames = _fresh_frames()
    out = []
    for (name, frame), floor in zip(frames.items(), (0.30, 0.30, 0.2, 0.30), strict=True):
        for model_name in models:
            out.append(Trial(f"{model_name} on {name}, `floor={floor}`", (model_name, frame, floor), size=len(out)))
    name, frame = next(iter(frames.items()))
    for model_name, model in list(models.items())[:2]:
        exact = float(average_precision_score(frame["is_fraud"], model.predict_proba(frame)[:, 1]))
        out.append(Trial(f"{model_name} on {name}, `floor={exact!r}` (exactly its PR-AUC)",
                         (model_name, frame, exact), size=len(out)))
        out.append(Trial(f"{model_name} on {name}, `floor={float(np.nextafter(exact, 1))!r}` (just above its PR-AUC)",
                         (model_name, frame, float(np.nextafter(exact, 1))), size=len(out)))
    for floor in (0.45, 0.10):
        out.append(Trial(f"the champion on {name}, `floor={floor}`", ("the champion", frame, floor), size=len(out)))
    shaped = _shape(frames["1,500 fresh payments of seed 22 (fraud_rate_spike)"], 1)
    for model_name in list(models)[:2]:
        out.append(Trial(f"{model_name} on 1,500 fresh payments of seed 22, rows shuffled, columns reordered",
                         (model_name, shaped, 0.30), size=len(out)))
    return tuple(out)


@functools.cache
def behaviour_trials() -> tuple:
    from .. import testing

    models = _models()
    out = []
    sources = {name: frame[frame["amount"] <= 10_000].head(512) for name, frame in _fresh_frames().items()}
    for (name, frame), (tolerance, rate) in zip(sources.items(), ((0.001, 0.01), (0.001, 0.01), (0.0, 0.05),
                                                                  (0.01, 0.02)), strict=True):
        for model_name in models:
            out.append(Trial(f"{model_name}, 512 {name.split(' ', 1)[1]}, `tolerance={tolerance}`, "
                             f"`max_failure_rate={rate}`", (model_name, frame, tolerance, rate), size=len(out)))
    name, frame = next(iter(sources.items()))
    for model_name in ("the champion", "a model trained on an export that sent 1000/amount"):
        model = models[model_name]
        delta = (model.predict_proba(testing.risky_foreign_night(frame.copy()))[:, 1] - model.predict_proba(frame)[:, 1])
        fell = int((delta < -0.001).sum())
        for k, why in ((fell, "exactly the share that fell"), (fell - 1, "one payment less than the share that fell")):
            if k >= 0:
                out.append(Trial(f"{model_name}, 512 {name.split(' ', 1)[1]}: {fell} scores fell by more than 0.001; "
                                 f"`max_failure_rate={k}/512` ({why})", (model_name, frame, 0.001, k / 512),
                                 size=len(out)))
        counts = {t: int((delta < -t).sum()) for t in (0.0, 0.001, 0.05)}
        for tolerance, k in ((0.0, counts[0.001]), (0.05, counts[0.05])):
            out.append(Trial(f"{model_name}, 512 {name.split(' ', 1)[1]}: {counts[0.0]} scores fell at all, "
                             f"{counts[0.001]} by more than 0.001, {counts[0.05]} by more than 0.05; "
                             f"`tolerance={tolerance}`, `max_failure_rate={k}/512`", (model_name, frame, tolerance,
                                                                                      k / 512), size=len(out)))
    out.append(Trial("the champion, 512 payments of seed 21, `tolerance=0.0` (a score that stays the same has not "
                     "fallen)", ("the champion", sources["1,500 fresh payments of seed 21"], 0.0, 0.05), size=len(out)))
    shaped = _shape(sources["1,500 fresh payments of seed 22 (fraud_rate_spike)"], 2)
    for model_name in list(models)[:2]:
        out.append(Trial(f"{model_name}, 512 payments of seed 22, rows shuffled, columns reordered",
                         (model_name, shaped, 0.001, 0.01), size=len(out)))
    return tuple(out)


def _on_models(func):
    """The learner's function called with a model named in the trial (the models are shared, not copied:
    ``_models_unchanged`` checks them afterwards)."""

    @functools.wraps(func)
    def by_name(model_name, *args):
        return func(_models()[model_name], *args)

    return by_name


def _model_digests() -> dict:
    import hashlib
    import pickle

    return {name: hashlib.sha256(pickle.dumps(model)).hexdigest() for name, model in _models().items()}


@functools.cache
def _solution_on_models(id: str):
    """One wrapper per exercise, so the solution's verdicts on the trials are computed once per process."""
    return _on_models(_solution(id))


def _judge_on_models(func, id: str, trials, rule: str) -> None:
    with threadpool_limits_1():
        differential(_on_models(func), _solution_on_models(id), trials, compare=_compare_verdict(rule),
                     what="your test")


def threadpool_limits_1():
    """One thread scores a few thousand rows faster than many that wait for a busy core."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


@contextlib.contextmanager
def _models_left_alone():
    """The models are shared between trials, not copied (a copy per trial costs seconds): afterwards each
    must be as it was, or the learner's test changed it."""
    before = _model_digests()
    try:
        yield
    finally:
        changed = [name for name, digest in _model_digests().items() if before[name] != digest]
        if changed:
            _models_for.cache_clear()  # the next check loads them again, untouched
            _holdout_figures.cache_clear()
            _fell.cache_clear()
            raise AssertionError(f"your test changed {changed[0]} it was given (did it call fit?): a test judges "
                                 "the model as it is, and leaves it as it found it")


def _compare_verdict(rule: str):
    def compare(got, expected, trial) -> str | None:
        if not isinstance(got, bool | np.bool_):
            return f"your test returned {type(got).__name__} {got!r}; return True or False"
        if bool(got) == bool(expected):
            return None
        return f"your test says {bool(got)}; it must say {bool(expected)} here: {rule}"

    return compare


RULE_6_1 = ("a feature that alone reaches a ROC-AUC of `max_auc` or more, in either direction, is a leak (at the "
            "bound counts), and the bound is the `max_auc` argument")
RULE_6_2 = "the PR-AUC (average precision of the predict_proba scores against is_fraud) at or above `floor` passes"
RULE_6_3 = ("count the payments whose score fell by more than `tolerance` (a score that stays the same has not "
            "fallen), and pass when their share is at most `max_failure_rate`")


# --------------------------------------------------------------------------- kept answers (6.1-6.3)


def _features_of(frame):
    import pandas as pd

    return {c: pd.to_numeric(frame[c].astype("float64")).fillna(-1) for c in FEATURES_6_1}


def _leak_rule(frame, max_auc, direction_both=True, strict=False, columns=FEATURES_6_1):
    from sklearn.metrics import roc_auc_score

    for column in columns:
        values = frame[column].astype("float64").fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], values)
        score = max(auc, 1 - auc) if direction_both else auc
        if (score > max_auc) if strict else (score >= max_auc):
            return False
    return True


def _ignores_max_auc(frame, max_auc=MAX_AUC):
    return _leak_rule(frame, 0.95)


def _strictly_above(frame, max_auc=MAX_AUC):
    return _leak_rule(frame, max_auc, strict=True)


def _story_columns_only(frame, max_auc=MAX_AUC):
    return _leak_rule(frame, max_auc, columns=("tx_count_24h", "new_device", "customer_age_days", "amount"))


def _fills_in_place(frame, max_auc=MAX_AUC):
    for column in ("avg_amount_30d", "distance_from_home_km"):
        frame[column] = frame[column].fillna(-1)
    return _leak_rule(frame, max_auc)


def _every_feature_as_float_in_place(frame, max_auc=MAX_AUC):
    """Turns the caller's booleans into floats: the check must not keep that frame for the next answer."""
    from sklearn.metrics import roc_auc_score

    for column in FEATURES_6_1:
        frame[column] = frame[column].astype("float64").fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], frame[column])
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _gaps_dropped_crashes(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    for column in FEATURES_6_1:
        values = frame[column].astype("float64").dropna()
        auc = roc_auc_score(frame.loc[values.index, "is_fraud"], values)
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _gaps_dropped(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    for column in FEATURES_6_1:
        values = frame[column].astype("float64").dropna()
        labels = frame.loc[values.index, "is_fraud"]
        if labels.nunique() < 2:  # an empty column (the device service down) cannot leak
            continue
        auc = roc_auc_score(labels, values)
        if auc >= max_auc or auc <= 1 - max_auc:
            return False
    return True


def _both_signs(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    numeric = frame[list(FEATURES_6_1)].astype("float64").fillna(-1)
    return not any(roc_auc_score(frame["is_fraud"], sign * numeric[c]) >= max_auc
                   for c in numeric for sign in (1, -1))


def _ignores_floor(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    return bool(average_precision_score(holdout["is_fraud"], model.predict_proba(holdout)[:, 1]) >= 0.30)


def _floor_exclusive(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    return bool(average_precision_score(holdout["is_fraud"], model.predict_proba(holdout)[:, 1]) > floor)


def _own_decisions_as_labels(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    return bool(average_precision_score(model.predict(holdout), model.predict_proba(holdout)[:, 1]) >= floor)


def _trapezoid_pr_auc(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(holdout["is_fraud"], model.predict_proba(holdout)[:, 1])
    return bool(auc(recall, precision) >= floor)


def _refits(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    from .. import data

    model.fit(holdout[data.feature_columns()], holdout["is_fraud"])
    return bool(average_precision_score(holdout["is_fraud"], model.predict_proba(holdout)[:, 1]) >= floor)


def _with_predict_scores(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    from .. import training

    return float(average_precision_score(holdout["is_fraud"].to_numpy(), training.predict_scores(model, holdout))) >= floor


def _riskier(payments):
    riskier = payments.copy()
    riskier["amount"] = riskier["amount"] * 5
    riskier["country_mismatch"] = True
    riskier["hour"] = 2
    return riskier


def _fell_share(model, payments, tolerance, strict_tolerance=True):
    delta = model.predict_proba(_riskier(payments))[:, 1] - model.predict_proba(payments)[:, 1]
    return ((delta < -tolerance) if strict_tolerance else (delta <= -tolerance)).mean()


def _ignores_rate(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    return bool(_fell_share(model, payments, tolerance) <= 0.01)


def _share_strictly_under(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    return bool(_fell_share(model, payments, tolerance) < max_failure_rate)


def _equal_counts_as_fallen(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    return bool(_fell_share(model, payments, tolerance, strict_tolerance=False) <= max_failure_rate)


def _ignores_tolerance(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    return bool(_fell_share(model, payments, 0.001) <= max_failure_rate)


def _edits_payments(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    before = model.predict_proba(payments)[:, 1]
    payments["amount"] = payments["amount"] * 5
    payments["country_mismatch"] = True
    payments["hour"] = 2
    return bool(((model.predict_proba(payments)[:, 1] - before) < -tolerance).mean() <= max_failure_rate)


def _counted_with_numpy(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    before = model.predict_proba(payments)[:, 1]
    after = model.predict_proba(payments.assign(amount=payments["amount"] * 5, country_mismatch=True, hour=2))[:, 1]
    fell = int(np.count_nonzero(before - after > tolerance))
    return fell <= max_failure_rate * len(payments)


# --------------------------------------------------------------------------- 6.4 a workflow job

CHECKOUT = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0"
SETUP_PYTHON = "actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c # v6.0.0"

WORKFLOW_START = f"""name: cardguard-ml
on:
  pull_request:
permissions: {{}}
jobs:
  ml-pipeline:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - uses: {SETUP_PYTHON}
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements.txt
"""

REFERENCE_WORKFLOW = WORKFLOW_START.replace("  pull_request:\n", '  pull_request:\n  schedule:\n    - cron: "17 5 * * 1"\n') + """\
      - run: pip install -r requirements.txt -e .
      - run: mlops-lab setup 5
      - run: mlops-lab ci --stage data --stage train --stage quality --stage latency --stage behaviour
"""


# How a workflow is judged: normalised first (a `run: |` block, `&&`-joined commands and separate steps are
# the same commands; `pip3` and `python -m pip` are pip; `MON` is day 1), then actionlint and zizmor speak,
# then the job runs (``run_job``): a job whose steps would fail on GitHub fails the check.

ML_STAGES_REQUIRED = ("data", "quality", "latency", "behaviour")  # the data test and the three model gates
ML_STAGES_ALLOWED = ML_STAGES_REQUIRED + ("train", "register")
DAYS = {name: str(i) for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_STATEFUL = {"cd", "pushd", "popd", "export", "source", ".", "set", "unset", "alias", "eval", "exec", "trap",
             "shopt", "ulimit", "umask", "declare", "local", "readonly"}


def _words(command: list[str]) -> list[str]:
    """One command's words with the spellings that mean the same program made one: ``pip3``,
    ``python -m pip`` and ``python3.11 -m pip`` are ``pip``; ``--stage=quality`` is ``--stage quality``."""
    words = list(command)
    while words and "=" in words[0] and words[0].split("=", 1)[0].isidentifier():  # FOO=1 pip ...: env prefix
        words = words[1:]
    if not words:
        return words
    program = words[0].rsplit("/", 1)[-1]
    if program.startswith("python") and words[1:3] == ["-m", "pip"]:
        words = ["pip", *words[3:]]
    elif program.startswith("pip") and program[3:].replace(".", "").isdigit() or program == "pip":
        words = ["pip", *words[1:]]
    elif program.startswith("python") and words[1:3] == ["-m", "mlops_lab.cli"]:
        words = ["mlops-lab", *words[3:]]
    else:
        words = [program, *words[1:]]
    out: list[str] = []
    for word in words:
        if word.startswith("--") and "=" in word:
            out += word.split("=", 1)
        else:
            out.append(word)
    return out


@dataclasses.dataclass(frozen=True)
class Script:
    """A ``run:`` script read as bash would run it under ``-e``: its commands in order, and what in
    it goes beyond one command after another (pipes, ``||``, redirections, subshells)."""

    commands: tuple[tuple[str, ...], ...]
    operators: frozenset = frozenset()

    @property
    def simple(self) -> bool:
        return not self.operators and not any(c and c[0] in _STATEFUL for c in self.commands)


def read_script(script: str) -> Script:
    import shlex

    text = str(script).replace("\\\r\n", " ").replace("\\\n", " ")
    commands: list[tuple[str, ...]] = []
    operators: set[str] = set()
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>()")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:  # an unclosed quote: let bash say so when the job runs
            operators.add("unparsed")
            continue
        current: list[str] = []
        for token in tokens:
            if token in ("&&", ";"):
                if current:
                    commands.append(tuple(_words(current)))
                current = []
            elif token and set(token) <= set(";&|<>()"):
                operators.add(token)
                current.append(token)
            else:
                current.append(token)
        if current:
            commands.append(tuple(_words(current)))
    return Script(tuple(c for c in commands if c), frozenset(operators))


def _triggers(doc: dict):
    triggers = doc.get(True, doc.get("on")) or {}
    if isinstance(triggers, str):
        return {triggers: None}
    if isinstance(triggers, list):
        return {name: None for name in triggers}
    return triggers


def weekly(cron: str) -> bool:
    """Once a week: one minute, one hour, every day of the month and month, one day of the week
    (``1``, ``MON`` or ``mon`` alike)."""
    parts = str(cron).split()
    if len(parts) != 5:
        return False
    minute, hour, dom, month, dow = parts
    dow = DAYS.get(dow.lower(), dow)
    return minute.isdigit() and hour.isdigit() and dom == "*" and month == "*" and dow.isdigit()


def _job(doc: dict, name: str = "ml-pipeline") -> dict:
    jobs = doc.get("jobs") or {}
    return jobs.get(name) or {}


def _run_steps(job: dict) -> list[tuple[dict, Script]]:
    return [(step, read_script(step["run"])) for step in job.get("steps") or [] if isinstance(step, dict)
            and "run" in step]


def _action(step: dict) -> str:
    return str(step.get("uses", "")).split("@")[0].strip().lower()


def _workflow_problems(text: str) -> list[str]:
    import yaml

    from .. import ci

    lines = ci.actionlint(text)
    if lines:
        return ["actionlint rejects it:\n  " + "\n  ".join(lines)]
    doc = yaml.safe_load(text)
    triggers = _triggers(doc)
    problems = []
    if not {"pull_request", "push"} & set(triggers):
        problems.append("the workflow no longer runs on `pull_request`: keep it, and *add* the weekly schedule")
    crons = [str(s.get("cron", "")) for s in (triggers.get("schedule") or []) if isinstance(s, dict)]
    if not crons:
        problems.append("there is no `schedule:` trigger: add a weekly cron so new library releases are caught")
    for cron in crons:
        if not weekly(cron):
            problems.append(f"the cron {cron!r} does not run once a week: a minute, an hour, * for day-of-month "
                            "and month, and one day of the week (for example \"17 5 * * 1\" or \"17 5 * * MON\")")
    if len(crons) > 1 and all(weekly(c) for c in crons):
        problems.append(f"{len(crons)} cron lines run the job {len(crons)} times a week: once a week is one line")
    job = _job(doc)
    if not job:
        return problems + ["there is no job `ml-pipeline` any more: complete the job the start gives, keep its name"]
    steps = [s for s in job.get("steps") or [] if isinstance(s, dict)]
    for step in steps:
        if "uses" not in step or str(step["uses"]).startswith(("./", "docker://")):
            continue
        ref = str(step["uses"]).split("@")[-1]
        if len(ref) == 40 and all(c in "0123456789abcdef" for c in ref):
            continue
        if 7 <= len(ref) < 40 and all(c in "0123456789abcdef" for c in ref.lower()):
            problems.append(f"`uses: {step['uses']}` is pinned by an abbreviated commit SHA ({len(ref)} characters): "
                            "GitHub does not accept a short SHA in `uses:`; pin the full 40-character commit SHA")
        else:
            problems.append(f"`uses: {step['uses']}` is pinned by a tag that can move: pin the full 40-character "
                            "commit SHA")
    actions = [_action(s) for s in steps]
    first_run = next((i for i, s in enumerate(steps) if "run" in s), len(steps))
    for action, why in (("actions/checkout", "without it the runner's folder is empty: no requirements.txt"),
                        ("actions/setup-python", "the runner's own Python refuses `pip install` (PEP 668)")):
        if action not in actions[:first_run]:
            problems.append(f"keep `{action}` before the run steps: {why}")
    runs = _run_steps(job)
    commands = [(step, c) for step, script in runs for c in script.commands]
    ci_at = next((i for i, (_, c) in enumerate(commands) if c[:2] == ("mlops-lab", "ci")), None)
    setup_at = next((i for i, (_, c) in enumerate(commands) if c[:2] == ("mlops-lab", "setup")), None)
    if ci_at is None:
        problems.append("no step runs `mlops-lab ci`: the job must run the pipeline's ML stages")
        return problems + _zizmor(text)
    stages = {c[i + 1] for _, c in commands if c[:2] == ("mlops-lab", "ci") for i, w in enumerate(c[:-1])
              if w == "--stage"}
    if not stages:
        problems.append("`mlops-lab ci` without `--stage` runs every stage, lint, unit tests and the container "
                        "build too (other jobs do those): name the ML stages, each as `--stage NAME`")
    else:
        missing = [s for s in ML_STAGES_REQUIRED if s not in stages]
        if missing:
            problems.append(f"`mlops-lab ci` runs {', '.join(sorted(stages))} but not {', '.join(missing)}: the ML "
                            f"stages are {', '.join(ML_STAGES_REQUIRED)} (train and register are optional), each "
                            "a gate the job exists to run")
        other = sorted(stages - set(ML_STAGES_ALLOWED))
        if other:
            problems.append(f"`--stage {other[0]}` is not an ML stage: lint, unit-tests and container are other jobs "
                            "of the project's workflow; this job runs "
                            f"{', '.join(ML_STAGES_ALLOWED)}")
    if setup_at is None or setup_at > ci_at:
        problems.append("the quality stage compares with the champion, and a fresh runner has none: run "
                        "`mlops-lab setup 5` before `mlops-lab ci`")
    if not any(c[:2] == ("pip", "install") for _, c in commands[:ci_at]):
        problems.append("nothing installs the project before `mlops-lab ci`: pip install -r requirements.txt -e .")
    for step, script in runs:
        if not any(c[:2] == ("mlops-lab", "ci") for c in script.commands):
            continue
        if "||" in script.operators or ("set", "+e") in script.commands:
            problems.append("`mlops-lab ci` runs where its failure is swallowed (`|| ...` or `set +e`): a gate "
                            "that fails must fail the job, or CI protects nothing")
        if step.get("continue-on-error") not in (None, False, "false"):
            problems.append("the `mlops-lab ci` step has `continue-on-error`: a failing gate would not fail the job")
        condition = str(step.get("if", "success()")).replace("${{", "").replace("}}", "").strip()
        if condition not in ("success()", "always()", "!cancelled()", "true"):
            problems.append(f"the `mlops-lab ci` step runs only `if: {step['if']}`: the gates must run on every "
                            "pull request and every scheduled run")
    return problems + _zizmor(text)


# --------------------------------------------------------------------------- running the job


@dataclasses.dataclass
class StepRun:
    number: int
    name: str
    status: str  # "pass", "fail", "emulated", "skipped"
    seconds: float = 0.0
    output: str = ""  # its last lines (all of them for a failing step)
    returncode: int | None = None


@dataclasses.dataclass
class JobRun:
    """A workflow job run the way a GitHub runner would, in a scratch copy of the repository."""

    job: str
    steps: list
    notes: list
    offline: bool = False  # pip needed the network, and it was out of reach: the run says nothing
    reused: bool = False

    @property
    def ok(self) -> bool:
        return self.offline or all(s.status != "fail" for s in self.steps)

    @property
    def failed(self) -> StepRun | None:
        return next((s for s in self.steps if s.status == "fail"), None)

    def __str__(self) -> str:
        width = max((len(s.name) for s in self.steps), default=4)
        lines = [f"job {self.job}: {'passed' if self.ok else 'failed'}" + (" (the result of an identical job run "
                                                                          "earlier, reused)" if self.reused else "")]
        lines += [f"  {s.number:>2}. {s.name:<{width}}  {s.status:<8} {s.seconds:6.1f} s" for s in self.steps]
        lines += [f"  note: {n}" for n in self.notes]
        if self.failed:
            lines.append(f"  output of step {self.failed.number} (exit code {self.failed.returncode}):")
            lines += ["    " + line for line in self.failed.output.splitlines()[-25:]]
        return "\n".join(lines)

    __repr__ = __str__

    def to_json(self) -> dict:
        return {"job": self.job, "steps": [dataclasses.asdict(s) for s in self.steps], "notes": self.notes,
                "offline": self.offline}

    @classmethod
    def from_json(cls, data: dict) -> JobRun:
        return cls(data["job"], [StepRun(**s) for s in data["steps"]], data["notes"], data["offline"], reused=True)


_JOB_RUNS: dict[str, JobRun] = {}
_OFFLINE = ("Failed to establish a new connection", "Temporary failure in name resolution", "Network is unreachable",
            "No matching distribution found for setuptools", "Could not find a version that satisfies the "
            "requirement setuptools")


_REPOSITORY_DOT_FOLDERS = {".ci", ".github"}
_REPOSITORY_DOT_FILES = {".gitignore", ".gitattributes", ".pre-commit-config.yaml"}
_NOT_THE_REPOSITORY = {"__pycache__", ".venv", "test-output", "node_modules", ".ipynb_checkpoints", "mlruns",
                       "mlops-lab-workspace", "build", "dist"}


def _repository_files() -> tuple[Path, list[str]] | None:
    """The course repository's files (tracked and changed, as a checkout of this tree would give), or None
    when the package runs without its source tree."""
    import subprocess

    from .. import ci

    root = ci._source_tree()
    if root is None:
        return None
    git = shutil.which("git")
    if git and (root / ".git").exists():
        out = subprocess.run([git, "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, text=True)
        if out.returncode == 0:
            return root, sorted(p for p in out.stdout.split("\0") if p and (root / p).is_file())
    return root, _files_without_git(root)


def _files_without_git(root: Path) -> list[str]:
    """The repository's files under ``root`` where git is missing.

    On Binder the clone is the home folder, without .git (binder/.dockerignore leaves it out of the image): keep
    the repository's own files, not the home's dot files and folders (~/.ipython's history changes under a
    running kernel, ~/.cache holds pip's wheels)."""
    files = []
    for folder, dirs, names in os.walk(root):
        top = Path(folder) == root
        dirs[:] = sorted(d for d in dirs if d not in _NOT_THE_REPOSITORY
                         and (not d.startswith(".") or (top and d in _REPOSITORY_DOT_FOLDERS)))
        files += [str((Path(folder) / n).relative_to(root)) for n in names
                  if (Path(folder) / n).is_file() and not n.endswith(".pyc")
                  and not (top and n.startswith(".") and n not in _REPOSITORY_DOT_FILES)]
    return sorted(files)


def _tree_digest(root: Path, files: list[str]) -> str:
    """What a job's result depends on in the repository: every file but notebooks and prose (storing a
    notebook's outputs must not make the job that notebook ran look new)."""
    import hashlib

    digest = hashlib.sha256()
    for name in files:
        if name.endswith((".ipynb", ".md")):
            continue
        with contextlib.suppress(FileNotFoundError):  # gone since it was listed: as if it never was
            digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()


def _normalised_job(doc: dict, job: dict) -> list:
    """What the job does, with equivalent spellings made one: run steps whose commands are plain (no pipes,
    no `cd`) are merged into one list of commands, so `run: |`, `&&` and separate steps give the same job."""
    form: list = [{"env": {**(doc.get("env") or {}), **(job.get("env") or {})}, "defaults": job.get("defaults")}]
    for step in job.get("steps") or []:
        if not isinstance(step, dict):
            continue
        if "uses" in step:
            form.append({"uses": _action(step), "with": {k: v for k, v in (step.get("with") or {}).items()
                                                          if k in ("python-version", "path", "ref", "repository")}})
            continue
        script = read_script(step.get("run", ""))
        defaults = {"shell": "bash", "if": "success()", "continue-on-error": False, "working-directory": "."}
        extra = {k: step[k] for k in ("env", "shell", "working-directory", "if", "continue-on-error",
                                      "timeout-minutes") if k in step and step[k] != defaults.get(k)}
        if script.simple and not extra:
            commands = [_stages_sorted(c) for c in script.commands]
            if form and isinstance(form[-1], dict) and "commands" in form[-1]:
                form[-1]["commands"] += commands
            else:
                form.append({"commands": commands})
        else:
            form.append({"run": str(step.get("run", "")), **extra})
    return form


def _stages_sorted(command: tuple) -> list:
    """`mlops-lab ci` runs its stages in pipeline order whatever order they are named in."""
    if command[:2] != ("mlops-lab", "ci"):
        return list(command)
    words, stages, i = list(command[2:]), [], 0
    rest = []
    while i < len(words):
        if words[i] == "--stage" and i + 1 < len(words):
            stages.append(words[i + 1])
            i += 2
        else:
            rest.append(words[i])
            i += 1
    return ["mlops-lab", "ci", *sorted(rest), *(w for s in sorted(stages) for w in ("--stage", s))]


def _expression(text: str, context: dict, notes: list) -> str:
    import re

    def value(match) -> str:
        expr = match.group(1).strip()
        if expr in context:
            return str(context[expr])
        if expr.startswith("env."):
            return str(context.get("env", {}).get(expr[4:], ""))
        notes.append(f"`${{{{ {expr} }}}}` has no value in this emulation: it became an empty string")
        return ""

    return re.sub(r"\$\{\{(.*?)\}\}", value, str(text))


def _python_for_the_job(folder: Path) -> Path:
    """Emulates actions/setup-python: a virtual environment of this machine's Python 3.11 that sees the
    course's installed packages (as a runner with a warm pip cache would get them at once), with its own
    pip, pip3 and python, so that the job installs into it and never into the course's environment."""
    import site
    import subprocess
    import sysconfig

    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(folder)], check=True, capture_output=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)}))
    course = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_course_packages.pth").write_text("\n".join(course) + "\n")  # paths only: not the course's
    # own editable mlops-lab, which a runner would not have before `pip install -e .`
    python = folder / "bin" / "python"
    for name in ("pip", "pip3", f"pip3.{sys.version_info.minor}"):
        script = folder / "bin" / name
        script.write_text(f"#!{python}\nimport sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n")
        script.chmod(0o755)
    (folder / "pip.conf").write_text("[global]\ndisable-pip-version-check = true\n")
    return folder / "bin"


def run_job(workflow: str, job: str = "ml-pipeline", *, report=print) -> JobRun:
    """Run ``job`` of ``workflow`` (YAML text) as a GitHub runner would: its steps in order, each `run:` in
    ``bash -eo pipefail`` with the workflow's, job's and step's ``env:``, in a scratch copy of this
    repository with a scratch home folder, all removed afterwards. ``actions/checkout`` (a copy of the
    repository's files) and ``actions/setup-python`` (a virtual environment of this machine's Python that
    sees the course's packages) are emulated and say so; other actions are skipped. An identical job
    (same commands, same environment, same repository) ran before gives its result again at once."""
    import json
    import os
    import subprocess
    import tempfile
    import time

    import yaml

    from .. import setup_steps

    doc = yaml.safe_load(workflow) if isinstance(workflow, str) else None
    if not isinstance(doc, dict) or not isinstance(doc.get("jobs"), dict) or job not in doc["jobs"]:
        raise LabError(f"run_job needs a workflow (YAML text) with a job {job!r} under `jobs:`; "
                       "pass the text you are building, e.g. run_job(workflow)")
    spec = doc["jobs"][job] or {}
    found = _repository_files()
    key = _job_key(doc, job)
    cache = setup_steps._cache_dir() / "jobs" / f"{key}.json"
    if key in _JOB_RUNS:
        return dataclasses.replace(_JOB_RUNS[key], reused=True)
    try:
        result = JobRun.from_json(json.loads(cache.read_text()))
        _JOB_RUNS[key] = result
        return result
    except (OSError, ValueError, KeyError, TypeError):
        pass

    steps = [s for s in spec.get("steps") or [] if isinstance(s, dict)]
    notes: list[str] = []
    runs: list[StepRun] = []
    scratch = Path(tempfile.mkdtemp(prefix="mlops-lab-job-"))
    home, temp = scratch / "home", scratch / "temp"
    workspace = home / "work" / "cardguard"
    for folder in (home / ".cache", temp, workspace):
        folder.mkdir(parents=True)
    course_cache = setup_steps._cache_dir()
    course_cache.mkdir(parents=True, exist_ok=True)
    (home / ".cache" / "mlops-lab").symlink_to(course_cache)  # trained models: a runner would train them
    files = {name: temp / name for name in ("env", "path", "output", "summary")}
    for f in files.values():
        f.touch()
    base_path = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    env = {"HOME": str(home), "PATH": "", "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux",
           "RUNNER_TEMP": str(temp), "GITHUB_WORKSPACE": str(workspace), "GITHUB_EVENT_NAME": "pull_request",
           "GITHUB_ENV": str(files["env"]), "GITHUB_PATH": str(files["path"]), "GITHUB_OUTPUT": str(files["output"]),
           "GITHUB_STEP_SUMMARY": str(files["summary"]), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
    extra_path: list[str] = []
    context = {"github.workspace": workspace, "runner.temp": temp, "runner.os": "Linux", "github.event_name":
               "pull_request", "github.ref": "refs/pull/1/merge", "github.sha": "0" * 40, "github.job": job}
    job_env = {**(doc.get("env") or {}), **(spec.get("env") or {})}
    defaults = ((spec.get("defaults") or {}).get("run") or {}) | {}
    budget = 60 * float(spec.get("timeout-minutes") or 20)
    started = time.monotonic()
    failed = False
    try:
        for number, step in enumerate(steps, 1):
            name = str(step.get("name") or (f"uses {_action(step)}" if "uses" in step else
                                            " && ".join(" ".join(c) for c in read_script(step["run"]).commands)
                                            or "run"))[:70]
            condition = str(step.get("if", "success()")).replace("${{", "").replace("}}", "").strip()
            if (failed and "always()" not in condition and "failure()" not in condition) or (
                    not failed and condition.startswith("failure()")):
                runs.append(StepRun(number, name, "skipped"))
                continue
            if "uses" in step:
                action, since = _action(step), time.monotonic()
                if action == "actions/checkout":
                    if found is None:
                        notes.append("actions/checkout: the course runs without its source tree here, so the "
                                     "runner's folder stays empty")
                    else:
                        root, names = found
                        for rel in names:
                            target = workspace / rel
                            target.parent.mkdir(parents=True, exist_ok=True)
                            with contextlib.suppress(FileNotFoundError):  # gone since it was listed
                                shutil.copy2(root / rel, target)
                        notes.append(f"actions/checkout emulated: a copy of this repository's {len(names)} files "
                                     "(no git history)")
                    runs.append(StepRun(number, name, "emulated", time.monotonic() - since))
                elif action == "actions/setup-python":
                    asked = str((step.get("with") or {}).get("python-version", ""))
                    bin_dir = _python_for_the_job(scratch / "python")
                    extra_path.insert(0, str(bin_dir))
                    env["pythonLocation"] = str(bin_dir.parent)
                    mine = f"{sys.version_info.major}.{sys.version_info.minor}"
                    notes.append(f"actions/setup-python emulated: Python {sys.version.split()[0]} in a fresh virtual "
                                 "environment that already sees the course's packages (a runner with a warm pip "
                                 "cache)" + ("" if asked.strip("'\"") in ("", mine, mine + ".x") or
                                             asked.startswith(mine + ".") else f"; the job asked for {asked}"))
                    runs.append(StepRun(number, name, "emulated", time.monotonic() - since))
                else:
                    notes.append(f"`uses: {step['uses']}` is not emulated here: skipped (only actions/checkout and "
                                 "actions/setup-python are)")
                    runs.append(StepRun(number, name, "skipped"))
                continue
            step_env = {**job_env, **(step.get("env") or {})}
            context["env"] = {**env, **step_env}
            for line in files["env"].read_text().splitlines():
                if "=" in line:
                    k, v = line.split("=", 1)
                    env[k] = v
            extra_path[:0] = [p for p in files["path"].read_text().splitlines() if p and p not in extra_path]
            run_env = {**env, **{k: _expression(v, context, notes) for k, v in step_env.items()}}
            run_env["PATH"] = os.pathsep.join(extra_path + base_path)
            shell = str(step.get("shell") or defaults.get("shell") or "bash")
            script = temp / f"step-{number}"
            script.write_text(_expression(step["run"], context, notes) + "\n")
            command = {"bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                       "sh": ["sh", "-e", str(script)],
                       "python": ["python", str(script)]}.get(shell.split()[0], ["bash", "-e", str(script)])
            cwd = workspace / str(step.get("working-directory") or defaults.get("working-directory") or ".")
            report(f"  step {number}/{len(steps)}: {name} ...")
            since = time.monotonic()
            left = max(1.0, budget - (since - started))
            try:
                process = subprocess.Popen(command, cwd=cwd, env=run_env, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True, errors="replace",
                                           start_new_session=True)
                output, last = [], since
                assert process.stdout is not None
                for line in process.stdout:  # read as it comes, so a long step shows it is alive
                    output.append(line)
                    if time.monotonic() - last > 15:
                        last = time.monotonic()
                        report(f"    ... still running ({last - since:.0f} s): {line.strip()[:100]}")
                    if time.monotonic() - since > left:
                        os.killpg(process.pid, 9)
                        output.append(f"\nthe job's timeout ({budget / 60:.0f} minutes) is over: step cancelled\n")
                        break
                returncode = process.wait()
                text = "".join(output)
            except (OSError, subprocess.SubprocessError) as exc:
                returncode, text = 127, f"{type(exc).__name__}: {exc}"
            seconds = time.monotonic() - since
            ok = returncode == 0 or step.get("continue-on-error") in (True, "true")
            if not ok and any(marker in text for marker in _OFFLINE):
                notes.append("pip needed the network (PyPI) and could not reach it: the job could not run here; "
                             "it is judged by actionlint and zizmor alone")
                runs.append(StepRun(number, name, "skipped", seconds, text[-4000:], returncode))
                return JobRun(job, runs, list(dict.fromkeys(notes)), offline=True)
            runs.append(StepRun(number, name, "pass" if ok else "fail", seconds,
                                text[-6000:] if not ok else text[-1500:], returncode))
            report(f"    {'passed' if ok else 'FAILED'} in {seconds:.1f} s")
            failed = failed or not ok
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = JobRun(job, runs, list(dict.fromkeys(notes)))
    _JOB_RUNS[key] = result
    if result.ok:  # a failure may be the machine's (a busy p99): only a pass is kept for later processes
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(result.to_json()))
        except OSError:
            pass
    return result


def _cached_run(workflow: str, job: str = "ml-pipeline") -> JobRun | None:
    """The result of an identical job run before (in this process, or a passing one in an earlier one)."""
    import json

    import yaml

    from .. import setup_steps

    try:
        key = _job_key(yaml.safe_load(workflow), job)
    except Exception:  # noqa: BLE001 - not a workflow: run_job says why
        return None
    if key in _JOB_RUNS:
        return _JOB_RUNS[key]
    try:
        return JobRun.from_json(json.loads((setup_steps._cache_dir() / "jobs" / f"{key}.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _job_key(doc: dict, job: str) -> str:
    import hashlib
    import json

    found = _repository_files()
    parts = {"job": _normalised_job(doc, doc["jobs"][job] or {}), "python": sys.version, "prefix": sys.prefix,
             "tree": _tree_digest(*found) if found is not None else None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


def _zizmor(text: str) -> list[str]:
    import subprocess

    from .. import ci

    exe = ci._tool("zizmor")
    if exe is None:
        return []  # optional here: the project's tests run it
    out = subprocess.run([exe, "--offline", "--no-progress", "--min-severity", "medium", "--format", "plain", "-"],
                         input=text, capture_output=True, text=True)
    if out.returncode == 0:
        return []
    found = [line for line in out.stdout.splitlines() if line.startswith(("error[", "warning["))]
    return ["zizmor (a security linter for workflows) reports: " + "; ".join(found or out.stdout.splitlines()[:3])]


@exercise(
    "6.4",
    "Complete a workflow job: weekly, pinned, and in the right order",
    solution=REFERENCE_WORKFLOW,
    hints=(
        "Three run steps after setup-python: install the project, prepare a workspace with a champion, run "
        "`mlops-lab ci` with the ML stages (each as --stage NAME).",
        "A weekly schedule: `schedule:` under `on:`, with `- cron: \"17 5 * * 1\"` (Mondays at 05:17 UTC).",
        "Run `lab.ci.actionlint(workflow)` to see actionlint's own lines before checking.",
    ),
    reference=lambda: REFERENCE_WORKFLOW,
    stub=lambda: WORKFLOW_START,
    cases=(
        wrong("daily instead of weekly", lambda: REFERENCE_WORKFLOW.replace("17 5 * * 1", "17 5 * * *"),
              "does not run once a week"),
        wrong("ci before setup", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: mlops-lab setup 5\n", "").replace("--stage behaviour\n", "--stage behaviour\n"
                                                              "      - run: mlops-lab setup 5\n"),
              "run `mlops-lab setup 5` before"),
        wrong("unpinned cache action", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: pip install", "      - uses: actions/cache@v5\n        with:\n          path: ~/.cache/pip\n"
            "          key: pip\n      - run: pip install"), "pin the full 40-character commit SHA"),
        wrong("an abbreviated commit SHA", lambda: REFERENCE_WORKFLOW.replace(
            "08c6903cd8c0fde910a37f88322edcfb5dd907a8", "08c6903"), "abbreviated commit SHA"),
        wrong("typo in a runner label", lambda: REFERENCE_WORKFLOW.replace("ubuntu-latest", "ubuntu-lastest"),
              "actionlint rejects it"),
        wrong("pull request title in a shell", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: mlops-lab setup 5\n",
            "      - run: mlops-lab setup 5\n      - run: echo \"testing ${{ github.event.pull_request.title }}\"\n"),
              "potentially untrusted"),
        wrong("a day range in the cron", lambda: REFERENCE_WORKFLOW.replace("17 5 * * 1", "17 5 * * 1-5"),
              "does not run once a week"),
        wrong("the schedule instead of pull requests", lambda: REFERENCE_WORKFLOW.replace("  pull_request:\n", "", 1),
              "no longer runs on `pull_request`"),
        wrong("a failing gate swallowed", lambda: REFERENCE_WORKFLOW.replace("--stage behaviour\n",
                                                                            "--stage behaviour || true\n"),
              "failure is swallowed"),
        wrong("the gates only on the weekly run", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: mlops-lab ci", "      - if: github.event_name == 'schedule'\n        run: mlops-lab ci"),
              "runs only `if:"),
        wrong("no setup-python", lambda: REFERENCE_WORKFLOW.replace(
            f"      - uses: {SETUP_PYTHON}\n        with:\n          python-version: \"3.11\"\n          cache: pip\n"
            "          cache-dependency-path: requirements.txt\n", ""), "keep `actions/setup-python`"),
        wrong("every stage, lint and container too", lambda: REFERENCE_WORKFLOW.replace(
            " --stage data --stage train --stage quality --stage latency --stage behaviour", ""), "without `--stage`"),
        wrong("a typo in the requirements file's name", lambda: REFERENCE_WORKFLOW.replace(
            "pip install -r requirements.txt", "pip install -r requirement.txt"), "would fail on GitHub: step 3"),
        right("one `run: |` block, pip3, cron MON", lambda: REFERENCE_WORKFLOW.replace(
            "17 5 * * 1", "17 5 * * MON").replace(
            "      - run: pip install -r requirements.txt -e .\n      - run: mlops-lab setup 5\n      - run: mlops-lab ci",
            "      - name: Install, prepare, run the ML stages\n        run: |\n          pip3 install -r requirements.txt "
            "-e .\n          mlops-lab setup 5\n          mlops-lab ci")),
        right("`&&`, python -m pip, --stage=NAME, named steps", lambda: REFERENCE_WORKFLOW.replace(
            "cron: \"17 5 * * 1\"", "cron: '17 5 * * mon'").replace(
            "      - run: pip install -r requirements.txt -e .\n      - run: mlops-lab setup 5\n",
            "      - name: Install and prepare\n        run: python -m pip install -r requirements.txt -e . && "
            "mlops-lab setup 5\n").replace(
            "--stage data --stage train --stage quality --stage latency --stage behaviour",
            "--stage=behaviour --stage=latency --stage=quality --stage=train --stage=data")),
        right("every stage, Sunday night", lambda: REFERENCE_WORKFLOW.replace("17 5 * * 1", "0 23 * * 0").replace(
            " --stage data --stage train --stage quality --stage latency --stage behaviour",
            " --stage data --stage train --stage quality --stage latency --stage behaviour --stage register")),
    ),
)
def _check_workflow(text) -> None:
    require_attempt(text)
    assert isinstance(text, str), f"expected the workflow as YAML text (a string), got {type(text).__name__}"
    if text.strip() == WORKFLOW_START.strip():
        raise NotAttempted
    problems = _workflow_problems(text)
    assert not problems, "\n".join(problems)
    if _repository_files() is None:
        return  # installed without its source tree: nothing to check out, the job cannot run here
    if _cached_run(text) is None:
        print("6.4: running your job ml-pipeline as a runner would, in a scratch copy of the repository (about "
              "a minute; an identical job is not run twice)...", flush=True)
    run = run_job(text, report=lambda line: print(line, flush=True))
    if run.failed is not None:
        step = run.failed
        tail = "\n".join("    " + line for line in step.output.strip().splitlines()[-15:])
        raise AssertionError(f"actionlint and zizmor accept it, but your job would fail on GitHub: step {step.number} "
                             f"(`{step.name}`) exited with code {step.returncode}. Its last lines:\n{tail}")
