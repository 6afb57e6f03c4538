"""Tests for ML systems, as small readable helpers: data tests, model tests and behavioural tests
in the CheckList style (invariance, directional expectations, minimum functionality).

Each helper returns a :class:`Verdict`: ``passed`` plus the evidence in words, so the same
function serves a notebook (print it), a test in ``tests/`` (``assert verdict, verdict``) and a
stage of ``mlops-lab ci`` (its reason). Lab 06 teaches them; ``tests/test_ml_*.py`` and
``mlops_lab.ci`` use them on the course's real data and models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import data


@dataclass(frozen=True)
class Verdict:
    """The outcome of one test: did it pass, and the evidence in words."""

    name: str
    passed: bool
    detail: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return f"[{'pass' if self.passed else 'FAIL'}] {self.name}: {self.detail}"

    __repr__ = __str__


def _examples(values, n: int = 3) -> str:
    values = list(values)
    more = f" (and {len(values) - n} more)" if len(values) > n else ""
    return ", ".join(str(v) for v in values[:n]) + more


# --------------------------------------------------------------------------- data tests


def follows_contract(frame: pd.DataFrame) -> Verdict:
    """Every column, type, range and category of the data contract (``data.validate_batch``)."""
    report = data.validate_batch(frame)
    if report.ok:
        return Verdict("contract", True, f"{len(frame)} rows valid against data contract v{data.CONTRACT_VERSION}")
    lines = [f"{v.column}: {v.rule}" + (f" ({int(v.count)} rows)" if pd.notna(v.count) else "")
             for v in report.violations.itertuples()]
    return Verdict("contract", False, "; ".join(lines))


def unique_ids(frame: pd.DataFrame, column: str = "transaction_id") -> Verdict:
    """No payment appears twice (a retried upstream export duplicates rows, and doubles their weight)."""
    dupes = frame.loc[frame[column].duplicated(keep=False), column]
    if dupes.empty:
        return Verdict("unique ids", True, f"{frame[column].nunique()} distinct {column}s")
    return Verdict("unique ids", False, f"{dupes.nunique()} {column}(s) appear more than once, e.g. "
                   f"{_examples(dupes.unique())}")


def consistent_times(frame: pd.DataFrame) -> Verdict:
    """``hour`` is the hour of ``timestamp``, and no label arrives before its payment."""
    problems = []
    wrong_hour = frame["hour"] != frame["timestamp"].dt.hour
    if wrong_hour.any():
        problems.append(f"{int(wrong_hour.sum())} rows whose hour is not the timestamp's hour")
    early = frame["label_available_at"] < frame["timestamp"]
    if early.any():
        problems.append(f"{int(early.sum())} rows whose label arrived before the payment")
    if problems:
        return Verdict("consistent times", False, "; ".join(problems))
    return Verdict("consistent times", True, "hour matches timestamp; every label arrives after its payment")


def labels_arrived(frame: pd.DataFrame, as_of) -> Verdict:
    """Only labels that had arrived by ``as_of`` (the snapshot time): a label from later is knowledge
    nobody had when the data was taken (see ``data.labels_known_at``)."""
    cutoff = pd.Timestamp(as_of)
    late = frame["label_available_at"] > cutoff
    if late.any():
        first = frame.loc[late, "label_available_at"].min()
        return Verdict("labels arrived", False, f"{int(late.sum())} rows carry a label that arrived after the "
                       f"snapshot time {cutoff} (the first at {first}): keep data.labels_known_at(frame, as_of)")
    return Verdict("labels arrived", True, f"every label had arrived by {cutoff}")


LEAKAGE_AUC = 0.95  # no honest single feature separates fraud this well here (the best, amount, reaches 0.86)


def single_feature_auc(frame: pd.DataFrame, label: str = "is_fraud") -> pd.Series:
    """ROC-AUC of each contract feature alone (either direction; categories by their fraud rate)."""
    from sklearn.metrics import roc_auc_score

    y = frame[label].to_numpy()
    out = {}
    for column in data.feature_columns():
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            values = values.map(frame.groupby(column, observed=True)[label].mean())
        x = pd.to_numeric(values.astype("float64"), errors="coerce").fillna(-1.0).to_numpy()
        auc = roc_auc_score(y, x)
        out[column] = max(auc, 1 - auc)
    return pd.Series(out, name="roc_auc").sort_values(ascending=False)


def no_leaky_features(frame: pd.DataFrame, max_auc: float = LEAKAGE_AUC) -> Verdict:
    """No feature alone predicts the label almost perfectly: the usual sign of a feature computed
    from the future (after the chargeback, or from the label itself)."""
    aucs = single_feature_auc(frame)
    leaky = aucs[aucs >= max_auc]
    if leaky.empty:
        return Verdict("no leaky features", True,
                       f"the strongest single feature is {aucs.index[0]} (ROC-AUC {aucs.iloc[0]:.2f} < {max_auc})")
    named = ", ".join(f"{c} (ROC-AUC {v:.3f})" for c, v in leaky.items())
    return Verdict("no leaky features", False, f"{named} predicts fraud almost alone: was it computed with "
                   "knowledge from after the payment?")


# --------------------------------------------------------------------------- model tests


def _scores(model, frame: pd.DataFrame) -> np.ndarray:
    # The whole row, as production sends it: a pipeline that picks up a column it should not
    # (the id, the timestamp, the label) shows it here. The course's pipelines select their features.
    return np.asarray(model.predict_proba(frame)[:, 1], dtype=float)


def quality_floor(model, holdout: pd.DataFrame, min_pr_auc: float) -> Verdict:
    """PR-AUC on a fixed holdout is at least ``min_pr_auc``."""
    from sklearn.metrics import average_precision_score

    pr_auc = float(average_precision_score(holdout["is_fraud"], _scores(model, holdout)))
    return Verdict("quality floor", pr_auc >= min_pr_auc, f"holdout PR-AUC {pr_auc:.3f} (floor {min_pr_auc})")


def beats_trivial_baseline(model, holdout: pd.DataFrame, factor: float = 5.0) -> Verdict:
    """PR-AUC well above a model that scores every payment the same (its PR-AUC is the fraud rate)."""
    from sklearn.metrics import average_precision_score

    base = float(holdout["is_fraud"].mean())
    pr_auc = float(average_precision_score(holdout["is_fraud"], _scores(model, holdout)))
    return Verdict("beats trivial baseline", pr_auc >= factor * base,
                   f"PR-AUC {pr_auc:.3f} vs {base:.4f} for a constant score (needs {factor:g}x)")


def reliability(scores, y, bins: int = 10) -> pd.DataFrame:
    """Decile bins of the score: mean predicted probability vs observed fraud rate, with the
    binomial standard error of the observed rate."""
    scores, y = np.asarray(scores, dtype=float), np.asarray(y, dtype=int)
    frame = pd.DataFrame({"score": scores, "y": y})
    frame["bin"] = pd.qcut(frame["score"].rank(method="first"), bins, labels=False)
    table = frame.groupby("bin").agg(predicted=("score", "mean"), observed=("y", "mean"), n=("y", "size"))
    table["std_error"] = np.sqrt(table["predicted"].clip(1e-6, 1) * (1 - table["predicted"]) / table["n"])
    return table


def calibrated(model, holdout: pd.DataFrame, tolerance: float = 0.01, n_se: float = 3.0) -> Verdict:
    """In every decile bin, the observed fraud rate is within ``tolerance`` (absolute) or ``n_se``
    binomial standard errors of the mean predicted probability, whichever is wider."""
    table = reliability(_scores(model, holdout), holdout["is_fraud"])
    allowed = np.maximum(tolerance, n_se * table["std_error"])
    gap = (table["observed"] - table["predicted"]).abs()
    bad = table[gap > allowed]
    if bad.empty:
        return Verdict("calibrated", True, f"all {len(table)} bins within tolerance (largest gap {gap.max():.4f})")
    b = bad.iloc[0]
    return Verdict("calibrated", False, f"{len(bad)} bin(s) off, e.g. predicted {b.predicted:.3f} but observed "
                   f"{b.observed:.3f} over {int(b.n)} payments (allowed {allowed[bad.index[0]]:.3f})")


# --------------------------------------------------------------------------- behavioural tests


def invariance(model, frame: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame], name: str,
               atol: float = 1e-9) -> Verdict:
    """Changing what should not matter (``change`` returns an edited copy) leaves every score as it was."""
    before = _scores(model, frame)
    after = _scores(model, change(frame.copy()))
    moved = np.abs(after - before) > atol
    if moved.any():
        return Verdict(name, False, f"{int(moved.sum())} of {len(frame)} scores changed (by up to "
                       f"{np.abs(after - before).max():.4f})")
    return Verdict(name, True, f"all {len(frame)} scores unchanged")


def directional(model, frame: pd.DataFrame, change: Callable[[pd.DataFrame], pd.DataFrame], name: str,
                direction: str = "not lower", tolerance: float = 0.001, max_failure_rate: float = 0.01) -> Verdict:
    """A change with a known effect moves scores the expected way: ``direction`` is "not lower" or
    "not higher". A payment fails when its score moves the wrong way by more than ``tolerance``;
    the test passes when at most ``max_failure_rate`` of payments fail (CheckList reports rates:
    tree models are not monotone everywhere)."""
    if direction not in ("not lower", "not higher"):
        raise ValueError("direction is 'not lower' or 'not higher'")
    delta = _scores(model, change(frame.copy())) - _scores(model, frame)
    wrong = delta < -tolerance if direction == "not lower" else delta > tolerance
    rate = float(wrong.mean())
    detail = (f"{int(wrong.sum())} of {len(frame)} scores moved the wrong way by more than {tolerance} "
              f"({rate:.1%}; allowed {max_failure_rate:.0%})")
    return Verdict(name, rate <= max_failure_rate, detail)


def minimum_functionality(model, cases: pd.DataFrame, expected: list[str], threshold: float,
                          name: str = "minimum functionality") -> Verdict:
    """Hand-written obvious cases get the obvious decision ("flag" or "approve") at ``threshold``."""
    scores = _scores(model, cases)
    got = np.where(scores >= threshold, "flag", "approve")
    wrong = [f"case {i} ({cases.index[i]}): expected {e}, got {g} (score {s:.4f})"
             for i, (e, g, s) in enumerate(zip(expected, got, scores, strict=True)) if e != g]
    if wrong:
        return Verdict(name, False, "; ".join(wrong))
    return Verdict(name, True, f"all {len(cases)} obvious cases decided as expected")


# The course's behavioural suite: each expectation comes from the simulator's documented mechanism
# (see the docstring of mlops_lab.data).


def new_transaction_id(frame: pd.DataFrame) -> pd.DataFrame:
    frame["transaction_id"] = "tx-renamed-" + frame["transaction_id"]
    return frame


def same_hour_other_minute(frame: pd.DataFrame) -> pd.DataFrame:
    frame["timestamp"] = frame["timestamp"].dt.floor("h") + pd.Timedelta(minutes=59, seconds=59)
    return frame


def risky_foreign_night(frame: pd.DataFrame) -> pd.DataFrame:
    """Five times the amount, on a foreign card, at 02:00: every documented risk goes up."""
    frame["amount"] = (frame["amount"] * 5).clip(upper=50_000)
    frame["country_mismatch"] = pd.array([True] * len(frame), dtype="boolean")
    frame["hour"] = 2
    frame["timestamp"] = frame["timestamp"].dt.normalize() + pd.Timedelta(hours=2)
    return frame


def obvious_cases() -> tuple[pd.DataFrame, list[str]]:
    """A handful of payments whose decision nobody would argue about, and that decision."""
    base = dict(transaction_id="mft", timestamp=pd.Timestamp("2026-02-20 12:00"), customer_age_days=2000,
                tx_count_24h=1, distance_from_home_km=5.0, country_mismatch=False, new_device=False,
                is_fraud=0, label_available_at=pd.Timestamp("2026-03-22 12:00"))
    rows = {
        "groceries at noon, usual amount": dict(amount=40.0, merchant_category="grocery", channel="chip", hour=12,
                                                avg_amount_30d=50.0),
        "fuel, contactless, small": dict(amount=30.0, merchant_category="fuel", channel="contactless", hour=9,
                                         avg_amount_30d=60.0),
        "restaurant dinner": dict(amount=55.0, merchant_category="restaurants", channel="chip", hour=20,
                                  avg_amount_30d=70.0),
        "jewelry online at 3am, 40x usual, new device, foreign card, 8th payment today": dict(
            amount=2400.0, merchant_category="jewelry", channel="online", hour=3, avg_amount_30d=60.0,
            country_mismatch=True, new_device=True, tx_count_24h=8),
        "electronics online at 1am, 20x usual, new device, new account": dict(
            amount=1500.0, merchant_category="electronics", channel="online", hour=1, avg_amount_30d=None,
            new_device=True, customer_age_days=5, tx_count_24h=6),
    }
    frame = pd.DataFrame([{**base, **r} for r in rows.values()], index=list(rows))
    expected = ["approve", "approve", "approve", "flag", "flag"]
    return data._with_contract_dtypes(frame), expected


def behavioural_suite(model, frame: pd.DataFrame, threshold: float) -> list[Verdict]:
    """The CheckList-style suite the pipeline runs: two invariances, one directional, one MFT."""
    cases, expected = obvious_cases()
    return [
        invariance(model, frame, new_transaction_id, "invariant to the transaction id"),
        invariance(model, frame, same_hour_other_minute, "invariant to the minute within the hour"),
        directional(model, frame, risky_foreign_night, "larger amount, foreign card, at night: not lower"),
        minimum_functionality(model, cases, expected, threshold),
    ]
