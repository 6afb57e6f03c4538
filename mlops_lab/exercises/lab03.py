"""Lab 03: Registry. Pick the challenger, write the promotion rule the gate uses, follow the alias,
and choose the holdout the gate may honestly judge on."""

from __future__ import annotations

import dis
import functools

import pandas as pd

from .. import config, data, registry, training
from . import (
    NotAttempted,
    Trial,
    differential,
    exercise,
    get,
    require_attempt,
    right,
    same_rows,
    verdict,
    wrong,
)


def is_stub(func) -> bool:
    """A function whose body is empty (``...`` or ``pass``): the learner has not written it yet."""
    code = getattr(func, "__code__", None)
    if code is None:
        return False
    ops = [(i.opname, i.argval) for i in dis.get_instructions(code) if i.opname not in ("RESUME", "NOP")]
    return ops in ([("LOAD_CONST", None), ("RETURN_VALUE", None)], [("RETURN_CONST", None)])


def call(func, *args, **kwargs):
    """Run a learner's function: an empty one is not attempted; one that returns None forgot ``return``.
    (Lab 04's checks import this one.)"""
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
        wrong("the worst run", lambda: str(_runs()["valid_pr_auc"].idxmin()), "the challenger is the best run"),
        wrong("the run's name", lambda: str(_runs().loc[_best_run_id(), "run_name"]), "is not the id of a finished run"),
        wrong("a position", lambda: int(_runs()["valid_pr_auc"].to_numpy().argmax()), "the run id"),
        right("sorted, then the last", lambda: str(_runs().sort_values("valid_pr_auc").index[-1])),
        right("argmax into the index, with a stray space", lambda: f" {_runs().index[_runs()['valid_pr_auc'].argmax()]}\n"),
    ),
)
def _check_best_run(value) -> None:
    require_attempt(value)
    runs = _runs()
    value = value.strip() if isinstance(value, str) else value
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


def _rule_trials():
    """The stories first (the margin is about the mean gain; an interval reaching below zero is noise),
    then a grid: lower ends below, at and just above zero; mean gains just under and over the margin
    (never exactly on it: "at least" and "more than" the margin are both fair readings); margins of 0,
    0.005, 0.02 and 0.05, by keyword and by position, and numpy floats as the gate passes them."""
    import numpy as np

    trials = [
        Trial("should_promote(0.02, 0.05): better by 0.05, the interval above zero", (0.02, 0.05), size=0),
        Trial("should_promote(0.005, 0.03): the interval starts above zero and the mean gain beats the margin 0.01",
              (0.005, 0.03), size=0.1),
        Trial("should_promote(-0.01, 0.02): the interval reaches below zero", (-0.01, 0.02), size=0.2),
        Trial("should_promote(0.001, 0.004): a real gain smaller than the margin 0.01", (0.001, 0.004), size=0.3),
        Trial("should_promote(-0.08, -0.05): the challenger is worse", (-0.08, -0.05), size=0.4),
        Trial("should_promote(0.02, 0.05, margin=0.1)", (0.02, 0.05), {"margin": 0.1}, size=0.5),
    ]
    k = 0
    for margin in (None, 0.0, 0.005, 0.02, 0.05):
        m = 0.01 if margin is None else margin
        for low in (-0.03, 0.0, 1e-4):
            for mean in (m - 0.002, m + 0.002):
                if low > mean:
                    continue
                k += 1
                args, kwargs = (low, mean), {}
                shown = f"should_promote({low:g}, {mean:g}"
                if margin is not None:
                    if k % 2:
                        args, shown = (*args, margin), shown + f", {margin:g}"
                    else:
                        kwargs, shown = {"margin": margin}, shown + f", margin={margin:g}"
                if k % 3 == 0:
                    args = tuple(np.float64(a) for a in args)
                trials.append(Trial(shown + ")", args, kwargs, size=1 + k / 100))
    return trials


def _explain_rule(got, expected, trial):
    problem = verdict(got, expected, trial)
    if problem is None:
        return None
    low, mean = trial.args[:2]
    margin = trial.kwargs.get("margin", trial.args[2] if len(trial.args) > 2 else 0.01)
    if expected:
        why = (f"the interval's lower end {low:g} is above zero and the mean gain {mean:g} beats the margin "
               f"{margin:g}: the margin applies to the mean gain, not to the interval's lower end")
    elif low <= 0:
        why = f"the interval's lower end is {low:g}, not above zero: the improvement may be noise"
    else:
        why = f"the improvement is real but the mean gain {mean:g} is smaller than the margin {margin:g}"
        if margin != 0.01 and bool(got) == (mean >= 0.01):
            why += ": your rule ignores its margin argument"
    return f"{problem}: {why}"


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
    reference="should_promote",
    stub=lambda: _stub_rule,
    trials=_rule_trials,
    cases=(
        wrong("margin on the interval's lower end", lambda: lambda low, mean, margin=0.01: low > margin and mean >= margin,
              "the margin applies to the mean gain"),
        wrong("only the mean", lambda: lambda low, mean, margin=0.01: mean >= margin, "may be noise"),
        wrong("only the interval", lambda: lambda low, mean, margin=0.01: low > 0 and True, "smaller than the margin"),
        wrong("margin hard-coded", lambda: lambda low, mean, margin=0.01: low > 0 and mean >= 0.01,
              "ignores its margin"),
        wrong("forgot return", lambda: _forgot_return, "did you forget `return`"),
        wrong("a lower end of zero counts as real", lambda: lambda low, mean, margin=0.01: low >= 0 and mean >= margin,
              "lower end is 0, not above zero"),
        wrong("the mean minus the margin above zero on the interval",
              lambda: lambda low, mean, margin=0.01: low - margin > 0 or mean - margin > 0.01, "should_promote("),
        wrong("a word, not a verdict", lambda: lambda low, mean, margin=0.01: "promote" if low > 0 and mean >= margin
              else "keep", "return True or False"),
        right("strict mean, negated low", lambda: lambda low, mean, margin=0.01: not low <= 0 and mean - margin > 0),
        right("if/else", lambda: _rule_with_if),
        right("all() of the conditions, as numpy", lambda: lambda low, mean, margin=0.01: __import__("numpy").all(
            [low > 0, mean >= margin])),
    ),
)
def _check_rule(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function should_promote(interval_low, mean_difference, margin=0.01), got {func!r}"
    differential(func, get("3.2").reference(), _rule_trials_cached(), compare=_explain_rule, what="your should_promote")


@functools.cache
def _rule_trials_cached():
    return tuple(_rule_trials())


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
        wrong("the latest version", lambda: f"models:/{config.model_name()}/latest", "latest"),
        wrong("the model without an alias", lambda: f"models:/{config.model_name()}", "which version"),
        right("built from registry.model_uri", lambda: registry.model_uri("champion")),
        wrong("a trailing space", lambda: f"models:/{config.model_name()}@champion ", "space"),
        wrong("a trailing newline", lambda: f"models:/{config.model_name()}@champion\n", "space"),
        wrong("spaces around it", lambda: f"  models:/{config.model_name()}@champion\n", "space"),
        right("the alias from the registry's constant", lambda: f"models:/{config.model_name()}@{registry.CHAMPION}"),
    ),
)
def _check_champion_uri(uri) -> None:
    require_attempt(uri)
    name = config.model_name()
    assert isinstance(uri, str), (
        f"expected the URI (a string such as 'models:/{name}@...'), got {type(uri).__name__}: write the URI "
        "first, then load it"
    )
    assert uri == uri.strip(), (
        f"{uri!r} has white space (a space, a tab or a line break) around it: MLflow reads it as part of the "
        f"name or alias and would not find the model. Write the URI without it: models:/{name}@champion"
    )
    assert not uri.startswith("runs:/"), (
        f"{uri} is the model of one training run: it never changes when the gate promotes another. Ask the "
        "registry instead: models:/NAME@ALIAS"
    )
    assert uri.startswith("models:/"), f"{uri!r} is not a registry URI: they start with models:/"
    rest = uri.removeprefix("models:/")
    model, at, alias = rest.partition("@")
    if not at:
        model, _, version = rest.partition("/")
        assert version.lower() != "latest", (
            f"{uri} loads the newest version registered, whether or not the gate promoted it: a challenger "
            f"registered this morning would serve payments. Follow the alias: models:/{name}@champion"
        )
        assert version, f"{uri} does not say which version to load: follow the alias, models:/{name}@champion"
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
        try:
            mlflow.sklearn.load_model(uri)  # it must resolve in your registry
        except mlflow.exceptions.MlflowException as exc:
            raise AssertionError(
                f"your URI is right, but your registry has no {name}@champion to load yet ({exc}). Run the "
                "lab's cells above from the top (they register the runs and set the champion alias), then "
                "check again"
            ) from None


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


def _shifted_by_a_day(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of).normalize()  # whole days: drops the decision's time of day
    end = as_of - pd.Timedelta(days=30)
    window = frame[(frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)]
    return data.labels_known_at(window, as_of)


def _inclusive_end(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)
    window = frame[(frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] <= end)]
    return data.labels_known_at(window, as_of)


def _seven_days_always(frame, as_of, days=7):
    return registry.gate_holdout(frame, as_of, 7)


def _the_course_dates(frame, as_of, days=7):
    window = frame[(frame["timestamp"] >= "2026-02-09") & (frame["timestamp"] < "2026-02-16")]
    return data.labels_known_at(window, "2026-03-18")


def _drops_in_place(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)
    keep = ((frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)
            & (frame["label_available_at"] <= as_of))
    frame.drop(frame.index[~keep], inplace=True)
    return frame


def _between(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)
    window = frame[frame["timestamp"].between(end - pd.Timedelta(days=days), end, inclusive="left")]
    return window.loc[window["label_available_at"].le(as_of)].sort_values("timestamp")


def _exclusive_start(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)
    window = frame[(frame["timestamp"] > end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)]
    return data.labels_known_at(window, as_of)


def _label_strictly_before(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=30)
    keep = ((frame["timestamp"] >= end - pd.Timedelta(days=days)) & (frame["timestamp"] < end)
            & (frame["label_available_at"] < as_of))
    return frame[keep]


def _date_offset(frame, as_of, days=7):
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.DateOffset(days=30)
    keep = ((frame["timestamp"] >= end - pd.DateOffset(days=days)) & (frame["timestamp"] < end)
            & (frame["label_available_at"] <= as_of))
    return frame.loc[keep]


def _holdout_trials():
    """The planted payments (the story: decision time 2026-03-18, then a week later with days=14), then
    simulated payments with as_of at midnight and in the afternoon, days from 1 to 14, and payments planted
    exactly on the window's start and end and labels exactly at as_of and a second later."""
    import numpy as np

    planted = planted_frame()
    trials = [Trial(f"the planted payments and as_of = {_AS_OF}", (planted, _AS_OF), size=0),
              Trial(f"the planted payments, as_of one week later ({_AS_OF + pd.Timedelta(days=7)}) and days=14",
                    (planted, _AS_OF + pd.Timedelta(days=7)), {"days": 14}, size=0.1)]
    second = pd.Timedelta(seconds=1)
    frames = {}
    for k, (seed, start, as_of_at, days) in enumerate((
        (61, "2026-01-05", "2026-03-10 00:00", 7), (62, "2026-01-05", "2026-03-10 15:30", 7),
        (63, "2026-02-02", "2026-04-05 09:00", 1), (64, "2026-02-02", "2026-04-07 00:00", 3),
        (65, "2026-03-02", "2026-05-04 18:45", 14), (66, "2026-03-02", "2026-04-20 00:00", 10),
        (67, "2026-01-05", "2026-02-20 12:00", 7), (68, "2026-01-05", "2026-03-06 06:00", 2),
        (69, "2026-02-02", "2026-03-30 00:00", 5), (70, "2026-03-02", "2026-05-10 23:00", 7),
        (71, "2026-01-05", "2026-03-01 00:00", 14), (72, "2026-02-02", "2026-04-12 12:00", 4),
        (73, "2026-03-02", "2026-05-01 00:00", 7), (74, "2026-01-05", "2026-03-15 08:00", 6),
        (75, "2026-02-02", "2026-04-01 00:00", 7), (76, "2026-03-02", "2026-05-08 16:00", 9),
        (77, "2026-01-05", "2026-03-12 00:00", 3), (78, "2026-02-02", "2026-04-09 21:00", 12),
    )):
        if start not in frames:  # three simulated months, each judged at several decision times
            frames[start] = data.simulate_transactions(days=60, per_day=12, start=start, seed=60 + len(frames))
        frame = frames[start]
        as_of = pd.Timestamp(as_of_at)
        end = as_of - pd.Timedelta(days=30)
        begin = end - pd.Timedelta(days=days)
        rng = np.random.default_rng(seed)
        edges = frame.iloc[rng.choice(len(frame), 6, replace=False)].copy()
        edges["transaction_id"] = [f"edge-{seed}-{name}" for name in
                                   ("at-start", "at-end", "1s-before-end", "1s-before-start", "label-at-as_of",
                                    "label-1s-late")]
        edges["timestamp"] = [begin, end, end - second, begin - second, end - pd.Timedelta(hours=1),
                              begin + pd.Timedelta(hours=1)]
        edges["label_available_at"] = [as_of - pd.Timedelta(days=1)] * 4 + [as_of, as_of + second]
        case = pd.concat([frame, edges.astype(frame.dtypes.to_dict())])
        extra = ""
        if k % 3 == 1:
            case, extra = case.sample(frac=1, random_state=seed), ", rows shuffled"
        elif k % 3 == 2:
            case, extra = case.assign(note="x"), ", an extra column"
        case = case.reset_index(drop=True)
        case.attrs = {}  # the simulator's provenance: pandas deep-copies attrs on every operation
        shown = f"{len(case)} simulated payments (from {start}{extra}), as_of = {as_of}" + (
            f" and days={days}" if days != 7 else "")
        trials.append(Trial(shown, (case, as_of), {} if days == 7 and k % 2 else {"days": days}, size=1 + k / 100))
    return trials


def _explain_holdout(row, kept, trial) -> str:
    key = row["transaction_id"]
    as_of = pd.Timestamp(trial.args[1])
    days = trial.kwargs.get("days", 7)
    if key in _PLANTED and as_of == _AS_OF and days == 7:
        return f"at decision time {as_of.date()}: {_PLANTED[key][4]}"
    end = as_of - pd.Timedelta(days=30)
    start = end - pd.Timedelta(days=days)
    paid, arrived = pd.Timestamp(row["timestamp"]), pd.Timestamp(row["label_available_at"])
    window = f"the window is {start} <= timestamp < {end} (end = as_of - 30 days, start = end - {days} days)"
    if not start <= paid < end:
        where = ("exactly at the window's end, which is excluded" if paid == end else
                 "exactly at the window's start, which is included" if paid == start else
                 "before the window" if paid < start else "after the window")
        return f"it was paid at {paid}, {where}: {window}"
    if arrived > as_of:
        return f"its label arrived at {arrived}, after as_of = {as_of}: nobody knew it at decision time"
    inside = "exactly at the window's start, which is included" if paid == start else "inside the window"
    return (f"it was paid at {paid}, {inside}, and its label arrived at {arrived}, by as_of"
            + (" (exactly at as_of counts)" if arrived == as_of else "") + f": it belongs in the holdout; {window}")


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
    reference="gate_holdout",
    stub=lambda: _stub_holdout,
    trials=_holdout_trials,
    cases=(
        wrong("every labelled payment", lambda: _whole_known, "yours keeps the row 'recent-fast-fraud'"),
        wrong("the last 7 days before the decision", lambda: _last_days_known, "nearly all fraud"),
        wrong("the right week, every label", lambda: _window_unfiltered, "1 second after the decision time"),
        wrong("filters on payment time, not label time", lambda: _window_filtered_by_payment_time,
              "1 second after the decision time"),
        wrong("forgot return", lambda: _forgot_return_holdout, "did you forget `return`"),
        wrong("whole days only", lambda: _shifted_by_a_day, "15:30:00"),
        wrong("the window's end included", lambda: _inclusive_end, "exactly at the window's end, which is excluded"),
        wrong("ignores days", lambda: _seven_days_always, "days=14"),
        wrong("the course's dates, hard-coded", lambda: _the_course_dates, "one week later"),
        wrong("drops rows in place", lambda: _drops_in_place, "changed its input"),
        wrong("the window's start excluded (blind attack)", lambda: _exclusive_start,
              "exactly at the window's start, which is included"),
        wrong("a label exactly at as_of left out (blind attack)", lambda: _label_strictly_before,
              "exactly at as_of counts"),
        right("with DataFrame.query", lambda: _with_query),
        right("pd.DateOffset and one mask (blind attack)", lambda: _date_offset),
        right("Series.between, sorted", lambda: _between),
        right("the course's own", lambda: registry.gate_holdout),
    ),
)
def _check_gate_holdout(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function gate_holdout(frame, as_of, days=7), got {type(func).__name__}"
    differential(func, get("3.3").reference(), _holdout_trials_cached(),
                 compare=same_rows("transaction_id", _explain_holdout), what="your gate_holdout")


@functools.cache
def _holdout_trials_cached():
    return tuple(_holdout_trials())


def _forgot_return_holdout(frame, as_of, days=7):
    registry.gate_holdout(frame, as_of, days)


# --------------------------------------------------------------------------- 3.5

# What MLflow's classifier evaluator logs for a binary model (mlflow.models.evaluate(model_type="classifier")):
# the names a threshold may use.
_MLFLOW_METRICS = ("example_count", "accuracy_score", "recall_score", "precision_score", "f1_score", "log_loss",
                   "roc_auc", "precision_recall_auc", "score", "true_negatives", "false_positives",
                   "false_negatives", "true_positives")
_FLOOR, _GAIN, _MAX_LOG_LOSS = 0.25, 0.01, 0.05


def _evaluation(pr_auc: float, log_loss: float, seed: int, odd: int = 0) -> dict[str, float]:
    """A whole classifier evaluation as MLflow logs it: PR-AUC and log loss as the trial sets them, the
    rest drawn around the course's figures, or (``odd``) far from them: a bound on a metric the gate does
    not name would change the verdict there."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if odd:
        tp, fn = int(rng.integers(1, 4)), int(rng.integers(90, 110))
        fp = int(rng.integers(800, 1500)) if odd == 1 else int(rng.integers(8000, 9000))
    else:
        tp, fn, fp = int(rng.integers(15, 45)), int(rng.integers(50, 90)), int(rng.integers(10, 40))
    tn = 13979 - tp - fn - fp
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"example_count": 13979, "true_positives": tp, "false_negatives": fn, "false_positives": fp,
            "true_negatives": tn, "accuracy_score": (tp + tn) / 13979, "score": (tp + tn) / 13979,
            "precision_score": precision, "recall_score": recall,
            "f1_score": 2 * precision * recall / (precision + recall),
            "roc_auc": float((0.9, 0.55, 0.3)[odd] + rng.uniform(0, 0.07 if odd == 0 else 0.15)),
            "precision_recall_auc": pr_auc, "log_loss": log_loss}


def _threshold_trials() -> list[Trial]:
    """The baseline's PR-AUC below, near and above the floor; the challenger's gain below, exactly on, a
    hair under and above the margin (MLflow's own ``>=`` decides the boundary, the same for every answer);
    its log loss under, exactly on, a hair over and over the bound, beside a baseline's that is better or
    worse; a challenger a hair under the floor; and passing challengers whose other metrics are far from
    the course's (a bound the gate does not ask for fails them)."""
    trials = []
    k = 0
    for base in (0.2, 0.245, 0.32, 0.45):
        for gain in (-0.03, 0.0, 0.008, 0.0095, 0.00999, _GAIN, 0.012, 0.08):
            k += 1
            cand = base + gain
            cand_loss = (0.02, _MAX_LOG_LOSS, 0.052, 0.03, 0.09, 0.05005)[k % 6]
            base_loss = (0.03, 0.06, 0.01)[k % 3]
            label = (f"a challenger with precision_recall_auc {cand:.5g} and log_loss {cand_loss:g}, "
                     f"a baseline with {base:g} and {base_loss:g}")
            trials.append(Trial(label, (_evaluation(cand, cand_loss, k), _evaluation(base, base_loss, 100 + k)),
                                size=k))
    trials.append(Trial(f"a challenger exactly on the floor ({_FLOOR}), 0.03 above the baseline, log_loss 0.02",
                        (_evaluation(_FLOOR, 0.02, 200), _evaluation(_FLOOR - 0.03, 0.02, 201)), size=0.5))
    for n, (cand, base, loss) in enumerate(((0.24995, 0.2, 0.02), (0.30, 0.25, 0.05001), (0.2499, 0.1, 0.03))):
        trials.append(Trial(f"a challenger with precision_recall_auc {cand:g} and log_loss {loss:g}, a baseline "
                            f"with {base:g}", (_evaluation(cand, loss, 300 + n), _evaluation(base, 0.03, 310 + n)),
                            size=0.6 + n / 10))
    for n in range(3):
        trials.append(Trial(f"a challenger with precision_recall_auc 0.3 and log_loss 0.04, 0.05 above the baseline, "
                            f"whose other metrics are {'very ' if n == 2 else ''}unusual (case {n + 1}: ROC-AUC, "
                            "accuracy, recall, precision, F1 low)",
                            (_evaluation(0.3, 0.04, 400 + n, odd=1 + n // 2), _evaluation(0.25, 0.03, 410 + n, odd=1)),
                            size=0.9 + n / 10))
    return trials


@functools.cache
def _threshold_trials_cached():
    return tuple(_threshold_trials())


def _mlflow_validates(thresholds):
    """The learner's thresholds as a function of two evaluations, decided by MLflow itself: (passes?, what
    MLflow said when it failed the candidate)."""
    import mlflow
    from mlflow.models import EvaluationResult
    from mlflow.models.evaluation.validation import ModelValidationFailedException

    def passes(candidate: dict, baseline: dict) -> tuple[bool, str]:
        with training._quiet_mlflow():
            try:
                mlflow.validate_evaluation_results(thresholds, EvaluationResult(candidate, {}),
                                                   EvaluationResult(baseline, {}))
            except ModelValidationFailedException as failure:
                return False, " ".join(str(failure).split())
        return True, ""

    return passes


def _explain_thresholds(got, expected, trial) -> str | None:
    if got[0] == expected[0]:
        return None
    cand, base = (m["precision_recall_auc"] for m in trial.args)
    loss = trial.args[0]["log_loss"]
    if expected[0]:
        return (f"MLflow fails the challenger on your thresholds ({got[1]}), yet it meets all three conditions: "
                f"precision_recall_auc {cand:.5g} >= {_FLOOR}, at least {_GAIN} above the baseline's {base:.5g}, "
                f"log_loss {loss:g} <= {_MAX_LOG_LOSS}; and the gate asks for nothing else")
    failed = [f"its precision_recall_auc {cand:.5g} is under the floor {_FLOOR}" if cand < _FLOOR else "",
              f"its precision_recall_auc {cand:.5g} is only {cand - base:+.5g} against the baseline's {base:.5g} "
              f"(the margin is {_GAIN})" if cand < base + _GAIN else "",
              f"its log_loss {loss:g} is over {_MAX_LOG_LOSS} (lower is better)" if loss > _MAX_LOG_LOSS else ""]
    return "MLflow passes the challenger on your thresholds, but " + "; and ".join(f for f in failed if f)


@exercise(
    "3.5",
    "The gate in MLflow's terms",
    solution='''
from mlflow.models import MetricThreshold

thresholds = {
    "precision_recall_auc": MetricThreshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
    "log_loss": MetricThreshold(threshold=0.05, greater_is_better=False),
}
''',
    hints=(
        "A dict: MLflow's metric name (as in `results['challenger'].metrics`) -> `MetricThreshold(...)`.",
        "`threshold=` bounds the candidate's own value; `min_absolute_change=` is the gain it needs over the "
        "baseline; `greater_is_better=` says which way is better (True for PR-AUC, False for a loss).",
        "One MetricThreshold can hold both a threshold and a min_absolute_change for the same metric.",
    ),
    reference="thresholds",
    cases=(
        wrong("the margin as a threshold", lambda: {
            "precision_recall_auc": _threshold(threshold=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "under the floor 0.25"),
        wrong("a relative gain of 1%", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_relative_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "(the margin is 0.01)"),
        wrong("log loss as if greater were better", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=True)}, "yet it meets all three"),
        wrong("no floor", lambda: {
            "precision_recall_auc": _threshold(min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "under the floor 0.25"),
        wrong("no log loss bound", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True)},
            "is over 0.05"),
        wrong("log loss as a change against the baseline", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(min_absolute_change=0.05, greater_is_better=False)}, "yet it meets all three"),
        wrong("the prose's spelling as the key", lambda: {
            "PR-AUC": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "precision_recall_auc"),
        wrong("plain dicts, not MetricThreshold", lambda: {
            "precision_recall_auc": {"threshold": 0.25, "min_absolute_change": 0.01, "greater_is_better": True},
            "log_loss": {"threshold": 0.05, "greater_is_better": False}}, "MetricThreshold("),
        wrong("one MetricThreshold, not a dict", lambda: _threshold(threshold=0.25, greater_is_better=True),
              "a dict"),
        wrong("a margin a hair too small (blind attack)", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.009, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "(the margin is 0.01)"),
        wrong("a log loss bound a hair too loose (blind attack)", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.051, greater_is_better=False)}, "is over 0.05"),
        wrong("a floor a hair too low (blind attack)", lambda: {
            "precision_recall_auc": _threshold(threshold=0.249, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}, "under the floor 0.25"),
        wrong("an extra bound on ROC-AUC (blind attack)", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False),
            "roc_auc": _threshold(threshold=0.9, greater_is_better=True)}, "the gate asks for nothing else"),
        wrong("an OrderedDict (blind attack)", lambda: __import__("collections").OrderedDict({
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}), "plain dict"),
        right("a relative change of 1% beside the absolute one (blind attack: implied while PR-AUC <= 1)", lambda: {
            "precision_recall_auc": _threshold(threshold=0.25, min_absolute_change=0.01, min_relative_change=0.01,
                                               greater_is_better=True),
            "log_loss": _threshold(threshold=0.05, greater_is_better=False)}),
        right("fractions: 1/4, 0.1/10, 1/20 (blind attack)", lambda: {
            "precision_recall_auc": _threshold(threshold=1 / 4, min_absolute_change=0.1 / 10, greater_is_better=True),
            "log_loss": _threshold(threshold=1 / 20, greater_is_better=False)}),
        right("positional arguments, and dict()", lambda: dict(
            precision_recall_auc=_threshold(0.25, 0.01, None, True), log_loss=_threshold(5e-2, None, None, False))),
        right("log loss first, keywords in another order", lambda: {
            "log_loss": _threshold(greater_is_better=False, threshold=0.050),
            "precision_recall_auc": _threshold(greater_is_better=True, min_absolute_change=1e-2, threshold=0.25)}),
    ),
)
def _check_thresholds(thresholds) -> None:
    from mlflow.models import MetricThreshold

    require_attempt(thresholds)
    assert isinstance(thresholds, dict), (
        f"your thresholds are a {type(thresholds).__name__}; MLflow expects a dict from metric names to "
        "MetricThreshold, such as {'precision_recall_auc': MetricThreshold(...), 'log_loss': MetricThreshold(...)}")
    assert type(thresholds) is dict, (
        f"your thresholds are a {type(thresholds).__name__}, and MLflow only takes a plain dict (it checks "
        "type(thresholds) is dict): pass dict(thresholds)")
    for name, bound in thresholds.items():
        assert name in _MLFLOW_METRICS, (
            f"{name!r} is not a metric MLflow's classifier evaluation logs, so MLflow would fail every model "
            f"('metric {name} was missing from the evaluation result'). Its names are the keys of "
            "results['challenger'].metrics: PR-AUC is 'precision_recall_auc', log loss is 'log_loss'")
        assert isinstance(bound, MetricThreshold), (
            f"thresholds[{name!r}] is a {type(bound).__name__}, and MLflow only takes MetricThreshold objects: "
            "MetricThreshold(threshold=..., min_absolute_change=..., greater_is_better=...)")
    differential(_mlflow_validates(thresholds), _reference_validates(),
                 _threshold_trials_cached(), compare=_explain_thresholds, what="MLflow with your thresholds")


@functools.cache
def _reference_validates():
    return _mlflow_validates(get("3.5").reference())


def _threshold(*args, **kwargs):
    from mlflow.models import MetricThreshold

    return MetricThreshold(*args, **kwargs)
