"""Lab 07: Monitoring. Write PSI, join labels as they arrive, tell what moved, and write alert
rules that are graded on every drift scenario's ground truth."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from . import exercise, require_attempt, right, wrong

# ------------------------------------------------------------------ 7.1 PSI


def _stub_function(*args, **kwargs):
    """What the generated lab holds: `def f(...): ...`, which returns None."""


def _reference_psi(reference, current, bins=10):
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_equal_width(reference, current, bins=10):
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins)
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_no_smoothing(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((q - p) * np.log(q / p)))


def _kl_not_psi(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.clip(np.histogram(reference, edges)[0] / len(reference), 1e-4, None)
    q = np.clip(np.histogram(current, edges)[0] / len(current), 1e-4, None)
    return float(np.sum(q * np.log(q / p)))


def _psi_with_histogram(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = (np.histogram(reference, edges)[0] + 0.5) / (len(reference) + 0.5 * bins)
    q = (np.histogram(current, edges)[0] + 0.5) / (len(current) + 0.5 * bins)
    return float(((q - p) * np.log(q / p)).sum())


def _psi_cases():
    rng = np.random.default_rng(7)
    amounts = np.exp(np.log(50) + 0.8 * rng.standard_normal(20_000))  # skewed, like payment amounts
    return [
        ("identical samples", amounts, amounts.copy(), None, "a window identical to the reference"),
        ("holiday baskets (amounts x 1.5)", amounts, np.exp(np.log(75) + 0.8 * rng.standard_normal(8_000)), None,
         "amounts 1.5 times larger"),
        ("amounts in cents", amounts, amounts[:5_000] * 100, None, "every current value above the reference's maximum"),
    ]


@exercise(
    "7.1",
    "Population stability index",
    solution='''
def psi(reference, current, bins=10):
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    # inner edges of the reference's quantile bins: each holds 1/bins of the reference
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)  # smoothing: an empty bin must not give infinity
    return float(np.sum((q - p) * np.log(q / p)))
''',
    hints=(
        "Bins come from the reference's quantiles (np.quantile at 0.1, 0.2, ..., 0.9), not from equal widths: "
        "each bin then holds a tenth of the reference, however skewed the column is.",
        "PSI = sum over bins of (q - p) * ln(q / p), with p the reference share and q the current share.",
        "A bin that is empty in one window makes ln(q / p) infinite: floor both shares at a small number "
        "such as 1e-4 before the logarithm.",
    ),
    reference=lambda: _reference_psi,
    stub=lambda: _stub_function,
    cases=(
        wrong("equal-width bins", lambda: _psi_equal_width, "quantile"),
        wrong("no smoothing", lambda: _psi_no_smoothing, "Smooth the shares"),
        wrong("one-sided KL divergence", lambda: _kl_not_psi, "(q - p)"),
        right("np.histogram with additive smoothing", lambda: _psi_with_histogram),
    ),
)
def _check_psi(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function psi(reference, current, bins=10) that returns a number"
    for label, reference, current, _, words in _psi_cases():
        got = func(reference, current)
        require_attempt(got)
        expected = _reference_psi(reference, current)
        assert isinstance(got, int | float | np.floating) and not isinstance(got, bool), (
            f"psi returned {type(got).__name__}; return a number (did you forget `return`?)")
        assert math.isfinite(got), (
            f"on {label} ({words}) psi returned {got}: a bin with no payments in one window gives ln(0). "
            "Smooth the shares (for example floor them at 1e-4) before the logarithm.")
        if label == "identical samples":
            assert abs(got) < 1e-3, f"on {label} psi returned {got:.4f}; identical windows have a PSI of 0"
            continue
        kl = _kl_not_psi(reference, current)
        if abs(got - kl) < 0.05 * abs(kl) and abs(kl - expected) > 0.1 * expected:
            raise AssertionError(
                f"on {label} psi returned {got:.3f}, which is the one-sided KL divergence. PSI weighs both "
                f"directions: sum of (q - p) * ln(q / p); expected about {expected:.3f}.")
        if label == "holiday baskets (amounts x 1.5)":
            assert abs(got - expected) <= 0.1 * expected, (
                f"on {label} psi returned {got:.3f}, expected about {expected:.3f}. Are the bins the reference's "
                "quantiles? Equal-width bins put almost every skewed amount into the first bin or two.")
        else:
            assert got > 2, (f"on {label} ({words}) psi returned {got:.3f}; every payment moved out of the "
                             "reference's range, which is a PSI far above 1")


# ------------------------------------------------------------------ 7.2 labels as they arrive

AS_OF = pd.Timestamp("2026-03-01 00:00:00")


def _planted():
    predictions = pd.DataFrame({
        "transaction_id": ["t1", "t2", "t3", "t4", "t5"],
        "score": [0.91, 0.02, 0.40, 0.75, 0.01],
        "decision": ["flag", "approve", "flag", "flag", "approve"],
    })
    labels = pd.DataFrame({
        "transaction_id": ["t1", "t2", "t3", "t4", "t9"],
        "timestamp": pd.to_datetime(["2026-02-10", "2026-02-11", "2026-02-27", "2026-02-12", "2026-02-01"]),
        "is_fraud": [1, 0, 1, 1, 0],
        # t1 arrived exactly at AS_OF (known), t4 one second late (not known), t2 long before
        "label_available_at": [AS_OF, AS_OF - pd.Timedelta(days=2), AS_OF - pd.Timedelta(hours=1),
                               AS_OF + pd.Timedelta(seconds=1), AS_OF - pd.Timedelta(days=20)],
    })
    return predictions, labels


def _reference_known_labels(predictions, labels, as_of):
    arrived = labels[labels["label_available_at"] <= pd.Timestamp(as_of)]
    return predictions.merge(arrived[["transaction_id", "is_fraud"]], on="transaction_id", how="inner")


@exercise(
    "7.2",
    "Only the labels that had arrived",
    solution='''
def known_labels(predictions, labels, as_of):
    arrived = labels[labels["label_available_at"] <= pd.Timestamp(as_of)]
    return predictions.merge(arrived[["transaction_id", "is_fraud"]], on="transaction_id", how="inner")
''',
    hints=(
        "A label is known at `as_of` when `label_available_at <= as_of`: the payment's own timestamp says "
        "nothing about when its chargeback came in.",
        "Filter the labels first, then join them to the predictions on `transaction_id`, keeping only "
        "predictions that got a label (an inner join).",
    ),
    reference=lambda: _reference_known_labels,
    stub=lambda: _stub_function,
    cases=(
        wrong("strictly before as_of", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] < t][["transaction_id", "is_fraud"]], on="transaction_id"), "exactly at"),
        wrong("filters on the payment time", lambda: lambda p, lab, t: p.merge(
            lab[lab["timestamp"] <= t][["transaction_id", "is_fraud"]], on="transaction_id"), "one second"),
        wrong("ignores as_of", lambda: lambda p, lab, t: p.merge(
            lab[["transaction_id", "is_fraud"]], on="transaction_id"), "one second"),
        wrong("left join keeps unlabelled rows", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] <= t][["transaction_id", "is_fraud"]], on="transaction_id", how="left"),
            "no label"),
        right("query and isin", lambda: lambda p, lab, t: p[p["transaction_id"].isin(
            lab.loc[lab["label_available_at"] <= t, "transaction_id"])].assign(
            is_fraud=lambda f: f["transaction_id"].map(lab.set_index("transaction_id")["is_fraud"]))),
    ),
)
def _check_known_labels(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function known_labels(predictions, labels, as_of) that returns a DataFrame"
    predictions, labels = _planted()
    before = (predictions.copy(), labels.copy())
    got = func(predictions, labels, AS_OF)
    require_attempt(got)
    assert isinstance(got, pd.DataFrame), f"known_labels returned {type(got).__name__}; return a DataFrame"
    pd.testing.assert_frame_equal(predictions, before[0], obj="predictions (your function changed its input)")
    assert {"transaction_id", "score", "is_fraud"} <= set(got.columns), (
        f"the result has columns {list(got.columns)}; keep the prediction's columns and add is_fraud")
    ids = set(got["transaction_id"])
    assert got["is_fraud"].notna().all(), (
        "some rows have no label (is_fraud is missing): keep only predictions whose label had arrived "
        "(an inner join)")
    assert "t4" not in ids, ("t4's label arrived one second after as_of: nobody knew it yet. Compare "
                             "label_available_at with as_of, not the payment time")
    assert "t1" in ids, "t1's label arrived exactly at as_of, so it is known (label_available_at <= as_of)"
    assert "t5" not in ids, "t5 has no label at all: keep only predictions that got a label (an inner join)"
    assert "t9" not in ids, "t9 was never predicted: labels without a prediction do not belong in the result"
    assert ids == {"t1", "t2", "t3"}, f"expected the rows t1, t2 and t3, got {sorted(ids)}"
    truth = dict(zip(got["transaction_id"], got["is_fraud"], strict=True))
    assert truth == {"t1": 1, "t2": 0, "t3": 1}, f"the labels are attached to the wrong rows: {truth}"


# ------------------------------------------------------------------ 7.3 what moved?


def _window(drifted_columns, chargebacks, score_ks, flag_rate):
    return pd.Series({"drifted_columns": drifted_columns, "drift_share": drifted_columns / 10,
                      "score_ks": score_ks, "score_drifted": int(score_ks > 0.02), "flag_rate": flag_rate,
                      "chargebacks_per_1000": chargebacks, "labelled": round(chargebacks * 14), "pr_auc": np.nan,
                      "recall": 0.9})


WHAT_MOVED_CASES = (
    # figures from the course's monitoring stream: the window before the drift, and two weeks into it
    ("none (the control)", _window(0, 1.35, 0.007, 0.153), _window(0, 1.29, 0.008, 0.150), "nothing"),
    ("fraud_rate_spike", _window(0, 1.35, 0.007, 0.153), _window(0, 2.10, 0.009, 0.153), "fraud only"),
    ("holiday_season", _window(0, 1.35, 0.007, 0.153), _window(3, 2.92, 0.212, 0.283), "inputs"),
    ("amount_in_cents", _window(0, 1.35, 0.007, 0.153), _window(1, 1.21, 0.672, 0.699), "inputs"),
    ("device_feature_missing", _window(0, 1.35, 0.007, 0.153), _window(1, 1.14, 0.024, 0.138), "inputs"),
    ("card_testing", _window(0, 1.21, 0.007, 0.153), _window(4, 4.40, 0.024, 0.150), "inputs"),
)


def _reference_what_moved(before, after):
    if after["drifted_columns"] > 0:
        return "inputs"
    if after["chargebacks_per_1000"] > 1.5 * before["chargebacks_per_1000"]:
        return "fraud only"
    return "nothing"


@exercise(
    "7.3",
    "Data drift or concept drift?",
    solution='''
def what_moved(before, after):
    if after["drifted_columns"] > 0:  # the inputs changed: data drift (whatever it does to fraud)
        return "inputs"
    if after["chargebacks_per_1000"] > 1.5 * before["chargebacks_per_1000"]:  # inputs still, fraud up
        return "fraud only"
    return "nothing"
''',
    hints=(
        "Look at the inputs first: when feature columns drift, that explains a change in fraud too "
        "(more online electronics means more fraud, with the same fraud mechanism).",
        "With inputs unchanged, only the labels can show a change: compare the chargeback rate with the "
        "window before, relatively: noise alone moves it by up to a third, so ask for half as much again.",
        "PR-AUC is missing in recent windows (legitimate payments are confirmed only after 30 days): "
        "a rule built on it never decides.",
    ),
    reference=lambda: _reference_what_moved,
    stub=lambda: _stub_function,
    cases=(
        wrong("fraud first", lambda: lambda b, a: "fraud only" if a["chargebacks_per_1000"] > 1.3 * b[
            "chargebacks_per_1000"] else ("inputs" if a["drifted_columns"] else "nothing"), "holiday_season"),
        wrong("waits for PR-AUC", lambda: lambda b, a: "inputs" if a["drifted_columns"] else (
            "fraud only" if a["pr_auc"] < 0.3 else "nothing"), "fraud_rate_spike"),
        wrong("absolute chargeback threshold", lambda: lambda b, a: "inputs" if a["drifted_columns"] else (
            "fraud only" if a["chargebacks_per_1000"] > 1.0 else "nothing"), "none (the control)"),
        wrong("flag rate as the input signal", lambda: lambda b, a: "inputs" if a["flag_rate"] > 1.2 * b[
            "flag_rate"] else ("fraud only" if a["chargebacks_per_1000"] > 1.3 * b["chargebacks_per_1000"]
                               else "nothing"), "device_feature_missing"),
        right("difference instead of ratio", lambda: lambda b, a: "inputs" if a["drift_share"] > 0 else (
            "fraud only" if a["chargebacks_per_1000"] - b["chargebacks_per_1000"] > 0.4 else "nothing")),
    ),
)
def _check_what_moved(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function what_moved(before, after) returning 'inputs', 'fraud only' or 'nothing'"
    for name, before, after, expected in WHAT_MOVED_CASES:
        got = func(before.copy(), after.copy())
        require_attempt(got)  # the lab's stub body `...` returns None
        assert got in ("inputs", "fraud only", "nothing"), (
            f"what_moved returned {got!r}; return one of 'inputs', 'fraud only', 'nothing'")
        assert got == expected, (
            f"on {name} (drifted columns {after['drifted_columns']}, chargebacks per 1,000 "
            f"{before['chargebacks_per_1000']:.2f} -> {after['chargebacks_per_1000']:.2f}, flag rate "
            f"{before['flag_rate']:.3f} -> {after['flag_rate']:.3f}) you said {got!r}; the answer is {expected!r}")


# ------------------------------------------------------------------ 7.4 alert rules graded on ground truth

MAX_MEAN_DELAY_DAYS = 7


def _rules(*specs):
    from ..monitoring import AlertRule

    return [AlertRule(*spec) for spec in specs]


def _reference_rules():
    return _rules(("inputs drift", "drifted_columns", ">", 0),
                  ("chargebacks up", "chargebacks_per_1000", ">", 1.6))


def grade(rules):
    """Grade alert rules on the course's monitoring stream of every scenario (lab 07, section 6)."""
    from ..monitoring import stream

    return stream.grade_rules(rules, stream.course_streams())


@exercise(
    "7.4",
    "Alert rules that wake you for the right reasons",
    solution='''
my_rules = [
    AlertRule("inputs drift", "drifted_columns", ">", 0),  # every data bug and covariate shift, in a day or two
    AlertRule("chargebacks up", "chargebacks_per_1000", ">", 1.6),  # fraud up with still inputs: only labels show it
]
''',
    hints=(
        "Grade a candidate with `grade(rules)` (`from mlops_lab.exercises.lab07 import grade`) and read delay_days and false_alarm_days.",
        "One rule per kind of change: the drift report catches what moves the inputs; only chargebacks catch "
        "a fraud ring whose payments look like everyone else's.",
        "The control's chargeback rate wanders between about 0.7 and 1.4 per 1,000; put the threshold above that.",
    ),
    reference=_reference_rules,
    cases=(
        wrong("inputs only", lambda: _rules(("inputs", "drifted_columns", ">", 0)), "fraud_rate_spike"),
        wrong("PR-AUC", lambda: _rules(("auc", "pr_auc", "<", 0.3)), "never known"),
        wrong("flag rate hair trigger", lambda: _rules(("inputs", "drifted_columns", ">", 0),
                                                       ("flags", "flag_rate", ">", 0.01)), "false alarm"),
        wrong("chargebacks too low", lambda: _rules(("inputs", "drifted_columns", ">", 0),
                                                    ("cb", "chargebacks_per_1000", ">", 1.0)), "false alarm"),
        wrong("not a list of rules", lambda: ["drifted_columns > 0"], "AlertRule"),
        right("score drift plus inputs plus chargebacks over two windows",
              lambda: _rules(("score", "score_drifted", ">=", 1), ("inputs", "drifted_columns", ">=", 1),
                             ("cb", "chargebacks_per_1000", ">", 1.5, 2))),
    ),
)
def _check_rules(rules) -> None:
    from ..monitoring import AlertRule

    require_attempt(rules)
    rules = [rules] if isinstance(rules, AlertRule) else rules
    assert isinstance(rules, list | tuple) and rules and all(isinstance(r, AlertRule) for r in rules), (
        "expected a list of AlertRule objects, e.g. [AlertRule('inputs drift', 'drifted_columns', '>', 0)]")
    grades = grade(rules).set_index("scenario")
    control = grades.loc["none"]
    noisy = grades[grades["false_alarm_days"] > 0]
    if len(noisy):
        where = ", ".join(f"{name} ({n} day(s))" for name, n in noisy["false_alarm_days"].items())
        raise AssertionError(f"false alarms: your rules fired with no drift on {where}. The control scenario "
                             f"never changes, so every firing there wakes someone for nothing "
                             f"({int(control['false_alarm_days'])} of {int(control['days_watched'])} control days).")
    missed = grades[grades["should_fire"] & ~grades["detected"]]
    if len(missed):
        words = []
        for name, row in missed.iterrows():
            why = {"fraud rate": "its payments look as before, so only labels (chargebacks) show it",
                   "concept drift": "watch the inputs it moves, or the chargebacks"}.get(row["kind"], "its inputs move")
            words.append(f"{name} ({row['kind']}: {why})")
        extra = ""
        if any(r.metric in ("pr_auc", "cost_per_1000") for r in rules):
            extra = (" PR-AUC is never known for recent windows: legitimate payments are confirmed only after "
                     "30 days, so a recent window has only fraud labels.")
        raise AssertionError(f"missed: {'; '.join(words)}.{extra}")
    delay = grades.loc[grades["should_fire"], "delay_days"].mean()
    assert delay <= MAX_MEAN_DELAY_DAYS, (
        f"every scenario is caught, but after {delay:.1f} days on average; aim for at most "
        f"{MAX_MEAN_DELAY_DAYS} (lower thresholds, as long as the control stays quiet)")
