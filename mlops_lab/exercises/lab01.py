"""Lab 01: Data. The fraud rate, fixing a broken batch, splitting by time."""

from __future__ import annotations

import functools

import pandas as pd

from .. import data
from . import exercise, require_attempt


@functools.cache
def _cached_course_data() -> pd.DataFrame:
    return data.course_dataset()


def _course_data() -> pd.DataFrame:
    return _cached_course_data().copy()


@exercise(
    "1.1",
    "How rare is fraud?",
    solution='fraud_rate = transactions["is_fraud"].mean()',
    hints=(
        "The label column is `is_fraud`: 1 for fraud, 0 otherwise.",
        "The mean of a 0/1 column is the share of ones.",
    ),
    reference=lambda: float(_course_data()["is_fraud"].mean()),
)
def _check_fraud_rate(value) -> None:
    require_attempt(value)
    truth = float(_course_data()["is_fraud"].mean())
    assert isinstance(value, int | float) and not isinstance(value, bool), (
        f"expected a number (a share between 0 and 1), got {type(value).__name__}"
    )
    assert value <= 1, (
        f"{value} looks like a count of frauds (or a percentage); give the share of payments, between 0 and 1"
    )
    assert abs(value - truth) < 1e-9, (
        f"{value:.4f} is not the share of fraud in `transactions`; compute it from the is_fraud column"
    )


@exercise(
    "1.2",
    "Fix a broken batch",
    solution='''
fixed = broken.drop(columns=["debug_trace_id"])
fixed["channel"] = fixed["channel"].str.lower()
fixed["hour"] = fixed["hour"].astype("int64")
''',
    hints=(
        "Read the validation report: it names every column and rule that fails.",
        "Three fixes: drop the column the contract does not know, lower-case `channel`, make `hour` whole numbers.",
        "`frame.drop(columns=[...])`, `series.str.lower()`, `series.astype('int64')`.",
    ),
    reference=lambda: _reference_fix(data.example_broken_batch()),
)
def _check_fixed_batch(value) -> None:
    require_attempt(value)
    assert isinstance(value, pd.DataFrame), f"expected a DataFrame, got {type(value).__name__}"
    broken = data.example_broken_batch()
    report = data.validate_batch(value)
    assert report.ok, f"the batch still breaks the contract:\n{report}"
    assert len(value) == len(broken), (
        f"you kept {len(value)} of {len(broken)} payments: every row is a real payment, so fix the values "
        "instead of dropping rows"
    )
    expected = _reference_fix(broken)
    assert value[expected.columns].reset_index(drop=True).equals(expected), (
        "the batch is valid but some values changed: fix the format only (lower-case, whole numbers)"
    )


def _reference_fix(broken: pd.DataFrame) -> pd.DataFrame:
    fixed = broken.drop(columns=["debug_trace_id"])
    fixed["channel"] = fixed["channel"].str.lower()
    fixed["hour"] = fixed["hour"].astype("int64")
    return fixed


@exercise(
    "1.3",
    "Split by time",
    solution="train, valid, holdout = lab.data.time_split(transactions, valid_days=7, holdout_days=7)",
    hints=(
        "The package has a helper for this: `lab.data.time_split`.",
        "The holdout must be the most recent 7 days, and validation the 7 days before it.",
    ),
    reference=lambda: data.time_split(_course_data(), valid_days=7, holdout_days=7),
)
def _check_split(value) -> None:
    require_attempt(value)
    assert isinstance(value, tuple | list) and len(value) == 3, "expected three DataFrames: (train, valid, holdout)"
    train, valid, holdout = value
    require_attempt(train)
    full = _course_data()
    assert len(train) + len(valid) + len(holdout) == len(full), "the three parts should add up to the whole dataset"
    assert train["timestamp"].max() < valid["timestamp"].min(), (
        "some training payments happen after validation starts: a random split leaks the future into training"
    )
    assert valid["timestamp"].max() < holdout["timestamp"].min(), "validation must end before the holdout starts"
    days = (holdout["timestamp"].max().normalize() - holdout["timestamp"].min().normalize()).days + 1
    assert days == 7, f"the holdout covers {days} days; it should be the most recent 7"
    vdays = (valid["timestamp"].max().normalize() - valid["timestamp"].min().normalize()).days + 1
    assert vdays == 7, f"validation covers {vdays} days; it should be the 7 days before the holdout"
