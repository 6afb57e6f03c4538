"""Lab 03: Registry. Pick the challenger, write the promotion rule the gate uses, follow the alias,
and choose the holdout the gate may honestly judge on."""

from __future__ import annotations

import dis

import pandas as pd

from .. import config, registry, training
from . import NotAttempted, exercise, require_attempt, right, wrong


def is_stub(func) -> bool:
    """A function whose body is empty (``...`` or ``pass``): the learner has not written it yet."""
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in ("RESUME", "NOP")]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


def call(func, *args, **kwargs):
    """Run a learner's function: an empty one is not attempted; one that returns None forgot ``return``."""
    require_attempt(func)
    assert callable(func), f"expected a function, got {type(func).__name__}"
    if is_stub(func):
        raise NotAttempted
    got = func(*args, **kwargs)
    assert got is not None, f"{getattr(func, '__name__', 'your function')} returned None: did you forget `return`?"
    return got


# --------------------------------------------------------------------------- 3.1


def _runs():
    return training.compare_runs("valid_pr_auc")


def _best_run_id() -> str:
    return str(_runs()["valid_pr_auc"].idxmax())


@exercise(
    "3.1",
    "Pick the challenger",
    solution='best_run_id = runs["valid_pr_auc"].idxmax()',
    hints=(
        "`runs` is indexed by run id and has a column `valid_pr_auc`.",
        "`runs['valid_pr_auc'].idxmax()` returns the run id of the best run.",
    ),
    reference=_best_run_id,
    cases=(
        wrong("the last run listed", lambda: str(_runs().index[-1]), "the challenger is the best run on validation"),
        wrong("the best score instead of its run", lambda: float(_runs()["valid_pr_auc"].max()), "the run id"),
        wrong("the model kind", lambda: "gradient_boosting", "is not the id of a finished run"),
        right("sorted, then the last", lambda: str(_runs().sort_values("valid_pr_auc").index[-1])),
    ),
)
def _check_best_run(value) -> None:
    require_attempt(value)
    runs = _runs()
    assert isinstance(value, str), (
        f"expected the run id (a string such as {runs.index[0]!r}), got {type(value).__name__} {value!r}: "
        "idxmax gives the index (the run id) of the largest value, max gives the value itself"
    )
    assert value in runs.index, f"{value!r} is not the id of a finished run in your experiment (see runs.index)"
    best = runs["valid_pr_auc"].idxmax()
    assert value == best, (
        f"run {value} has validation PR-AUC {runs.loc[value, 'valid_pr_auc']:.3f}, but run {best} has "
        f"{runs.loc[best, 'valid_pr_auc']:.3f}: the challenger is the best run on validation, not the latest"
    )


# --------------------------------------------------------------------------- 3.2


def _stub_rule(interval_low, mean_difference, margin=0.01):
    ...


@exercise(
    "3.2",
    "Write the promotion rule",
    solution='''
def should_promote(interval_low, mean_difference, margin=0.01):
    return interval_low > 0 and mean_difference >= margin
''',
    hints=(
        "Two conditions: the improvement is real (not noise) and it is big enough to be worth a release.",
        "Real: the whole bootstrap interval of the difference is above zero, so its lower end is > 0.",
        "Big enough: the mean difference is at least the margin (the margin is about the mean, not the interval).",
    ),
    reference=lambda: registry.should_promote,
    stub=lambda: _stub_rule,
    cases=(
        wrong("margin on the interval's lower end", lambda: lambda low, mean, margin=0.01: low > margin and mean >= margin,
              "the margin applies to the mean gain"),
        wrong("only the mean", lambda: lambda low, mean, margin=0.01: mean >= margin, "may be noise"),
        wrong("only the interval", lambda: lambda low, mean, margin=0.01: low > 0, "smaller than the margin"),
        wrong("margin hard-coded", lambda: lambda low, mean, margin=0.01: low > 0 and mean >= 0.01,
              "ignores its margin"),
        wrong("forgot return", lambda: _forgot_return, "did you forget `return`"),
        right("strict mean, negated low", lambda: lambda low, mean, margin=0.01: not low <= 0 and mean - margin > 0),
        right("if/else", lambda: _rule_with_if),
    ),
)
def _check_rule(func) -> None:
    cases = [
        ((0.02, 0.05), True, "the challenger is better by 0.05 and the interval [0.02, ...] is above zero"),
        ((0.005, 0.03), True, "the interval starts above zero (0.005) and the mean gain 0.03 beats the margin "
                              "0.01: the margin applies to the mean gain, not to the interval's lower end"),
        ((-0.01, 0.02), False, "the interval reaches below zero (-0.01): the improvement may be noise"),
        ((0.001, 0.004), False, "the improvement (0.004) is real but smaller than the margin (0.01)"),
        ((-0.08, -0.05), False, "the challenger is worse"),
    ]
    for (low, mean), expected, why in cases:
        got = call(func, low, mean)
        assert got in (True, False), f"should_promote({low}, {mean}) returned {got!r}; return True or False"
        assert bool(got) == expected, f"should_promote({low}, {mean}) returned {got!r}, but {why}"
    assert not call(func, 0.02, 0.05, margin=0.1), (
        "should_promote(0.02, 0.05, margin=0.1) returned True: a gain of 0.05 is below that margin, so your rule "
        "ignores its margin argument"
    )


def _forgot_return(interval_low, mean_difference, margin=0.01):
    promote = interval_low > 0 and mean_difference >= margin  # noqa: F841 (the mistake this case keeps)


def _rule_with_if(interval_low, mean_difference, margin=0.01):
    if interval_low <= 0:
        return False
    return bool(mean_difference >= margin)


# --------------------------------------------------------------------------- 3.4


def _champion_uri() -> str:
    return f"models:/{config.model_name()}@champion"


@exercise(
    "3.4",
    "Follow the alias",
    solution='''
champion_uri = f"models:/{name}@champion"
champion = mlflow.sklearn.load_model(champion_uri)
''',
    hints=(
        "Registry URIs look like `models:/NAME/VERSION` (one fixed version) or `models:/NAME@ALIAS`.",
        "Serving code should follow the alias, not a version number, so a promotion needs no code change.",
    ),
    reference=_champion_uri,
    cases=(
        wrong("pinned to the champion's version",
              lambda: f"models:/{config.model_name()}/{registry.alias_version(registry.CHAMPION)}", "pinned"),
        wrong("the challenger alias", lambda: f"models:/{config.model_name()}@challenger", "candidate"),
        wrong("a run URI", lambda: f"runs:/{_best_run_id()}/model", "one training run"),
        wrong("the loaded model instead of its URI", lambda: registry.load(registry.CHAMPION), "the URI"),
        wrong("another model's name", lambda: "models:/fraud@champion", "not the course's model"),
        right("built from registry.model_uri", lambda: registry.model_uri("champion")),
    ),
)
def _check_champion_uri(uri) -> None:
    require_attempt(uri)
    name = config.model_name()
    assert isinstance(uri, str), (
        f"expected the URI (a string such as 'models:/{name}@...'), got {type(uri).__name__}: write the URI "
        "first, then load it"
    )
    uri = uri.strip()
    assert not uri.startswith("runs:/"), (
        f"{uri} is the model of one training run: it never changes when the gate promotes another. Ask the "
        "registry instead: models:/NAME@ALIAS"
    )
    assert uri.startswith("models:/"), f"{uri!r} is not a registry URI: they start with models:/"
    rest = uri.removeprefix("models:/")
    model, at, alias = rest.partition("@")
    if not at:
        model, _, version = rest.partition("/")
        assert not version.isdigit(), (
            f"{uri} is pinned to version {version}: after the next promotion it would still load version "
            f"{version}. Follow the alias: models:/{name}@champion"
        )
    assert model == name, f"{model!r} is not the course's model: it is called {name!r} (see `name`)"
    assert alias == registry.CHAMPION, (
        f"@{alias} is {'the candidate the gate judges' if alias == registry.CHALLENGER else 'not an alias this lab sets'}"
        ", not what serves payments: follow @champion"
    )
    mlflow = training.mlflow_client()
    with training._quiet_mlflow():
        mlflow.sklearn.load_model(uri)  # it must resolve in your registry


# --------------------------------------------------------------------------- 3.3

_AS_OF = pd.Timestamp("2026-03-18")
# planted payments: id -> (timestamp, label arrives, is_fraud, belongs in the gate's holdout?, why)
_PLANTED = {
    "before-window": ("2026-02-01 12:00", "2026-03-03 12:00", 0, False,
                      "a payment older than the 7 days the gate judges on (Feb 9-15)"),
    "just-before-window": ("2026-02-08 23:00", "2026-03-10 23:00", 0, False,
                           "a payment of Feb 8, one hour before the 7-day window starts"),
    "chargeback-1s-late": ("2026-02-14 10:00", str(_AS_OF + pd.Timedelta(seconds=1)), 1, False,
                           "a fraud whose chargeback arrived 1 second after the decision time: nobody knew it then"),
    "recent-fast-fraud": ("2026-03-12 08:00", "2026-03-16 08:00", 1, False,
                          "a fraud of March: that week's genuine payments have no final label yet, so a recent "
                          "window holds only the quick chargebacks (nearly all fraud)"),
    "recent-genuine": ("2026-03-13 08:00", "2026-04-12 08:00", 0, False,
                       "a genuine payment of March whose label is not final before April"),
    "in-window-genuine": ("2026-02-10 12:00", "2026-03-12 12:00", 0, True,
                          "a genuine payment of the week Feb 9-15, its label final since Mar 12"),
    "in-window-fraud": ("2026-02-12 09:00", "2026-02-20 09:00", 1, True,
                        "a fraud of the week Feb 9-15 whose chargeback came on Feb 20"),
    "in-window-last-hour": ("2026-02-15 23:00", "2026-03-17 23:00", 0, True,
                            "a genuine payment late on Feb 15, label final one hour before the decision"),
}


def planted_frame() -> pd.DataFrame:
    """The payments 3.3's check runs a learner's gate_holdout on (decision time 2026-03-18)."""
    rows = [{"transaction_id": key, "timestamp": pd.Timestamp(ts), "label_available_at": pd.Timestamp(label),
             "is_fraud": fraud, "amount": 50.0} for key, (ts, label, fraud, _, _) in _PLANTED.items()]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3).reset_index(drop=True)


def _stub_holdout(frame, as_of, days=7):
    ...


def _whole_known(frame, as_of, days=7):
    from .. import data

    return data.labels_known_at(frame, as_of)


def _last_days_known(frame, as_of, days=7):
    from .. import data

    as_of = pd.Timestamp(as_of)
    return data.labels_known_at(frame[frame["timestamp"] >= as_of - pd.Timedelta(days=days)], as_of)


def _window_unfiltered(frame, as_of, days=7):
    end = pd.Timestamp(as_of) - pd.Timedelta(days=30)
    return frame[(frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)]


def _window_filtered_by_payment_time(frame, as_of, days=7):
    end = pd.Timestamp(as_of) - pd.Timedelta(days=30)
    window = frame[(frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)]
    return window[window["timestamp"] <= pd.Timestamp(as_of)]


def _with_query(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    window = {"start": as_of - pd.Timedelta(days=30 + days), "end": as_of - pd.Timedelta(days=30), "as_of": as_of}
    return frame.query("@start <= timestamp < @end and label_available_at <= @as_of", local_dict=window)


@exercise(
    "3.3",
    "The gate's holdout",
    solution='''
def gate_holdout(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)          # labels of later payments are not final yet
    start = end - pd.Timedelta(days=days)
    window = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
    return lab.data.labels_known_at(window, as_of)   # and only labels that had arrived
''',
    hints=(
        "A genuine payment's label is final only 30 days after it (no chargeback by then). So at `as_of`, the "
        "latest week you can judge on ends 30 days before `as_of`.",
        "Take the payments with start <= timestamp < end, where end = as_of - 30 days and start = end - days.",
        "Then keep only the rows whose label had arrived by `as_of`: `lab.data.labels_known_at(window, as_of)`.",
    ),
    reference=lambda: registry.gate_holdout,
    stub=lambda: _stub_holdout,
    cases=(
        wrong("every labelled payment", lambda: _whole_known, "older than the 7 days"),
        wrong("the last 7 days before the decision", lambda: _last_days_known, "nearly all fraud"),
        wrong("the right week, every label", lambda: _window_unfiltered, "1 second after the decision time"),
        wrong("filters on payment time, not label time", lambda: _window_filtered_by_payment_time,
              "1 second after the decision time"),
        wrong("forgot return", lambda: _forgot_return_holdout, "did you forget `return`"),
        right("with DataFrame.query", lambda: _with_query),
    ),
)
def _check_gate_holdout(func) -> None:
    frame = planted_frame()
    got = call(func, frame.copy(), _AS_OF)
    assert isinstance(got, pd.DataFrame), f"gate_holdout returned {type(got).__name__}; return the rows (a DataFrame)"
    assert "transaction_id" in got, "the rows lost their columns: return rows of `frame`, all columns kept"
    kept = set(got["transaction_id"])
    for key, (_, _, _, belongs, why) in _PLANTED.items():
        if not belongs and key in kept:
            raise AssertionError(f"at decision time {_AS_OF.date()} your holdout includes {key!r}: {why}.")
    for key, (_, _, _, belongs, why) in _PLANTED.items():
        if belongs and key not in kept:
            raise AssertionError(f"at decision time {_AS_OF.date()} your holdout leaves out {key!r}: {why}. "
                                 "It belongs in the gate's holdout.")
    assert len(got) == len(kept), "some payments appear twice in your holdout"
    other = call(func, frame.copy(), _AS_OF + pd.Timedelta(days=7), days=14)
    assert set(other["transaction_id"]) == {"in-window-genuine", "in-window-fraud", "in-window-last-hour",
                                            "chargeback-1s-late"}, (
        "with as_of one week later and days=14, the holdout should roll forward: the window is Feb 9-22 "
        "and the late chargeback has arrived by then. Use `as_of` and `days`, not fixed dates."
    )


def _forgot_return_holdout(frame, as_of, days=7):
    registry.gate_holdout(frame, as_of, days)
