"""Lab 01: Data. The fraud rate, fixing a broken batch, a contract check of your own, labels that
arrive late, splitting by time, and a prediction about random versus time splits."""

from __future__ import annotations

import functools
import numbers

import numpy as np
import pandas as pd

from .. import data
from . import call, exercise, require_attempt, right, wrong


@functools.cache
def _cached_course_data() -> pd.DataFrame:
    return data.course_dataset()


def _course_data() -> pd.DataFrame:
    return _cached_course_data().copy()


def _fraud_rate() -> float:
    return float(_cached_course_data()["is_fraud"].mean())


@exercise(
    "1.1",
    "How rare is fraud?",
    solution='fraud_rate = transactions["is_fraud"].mean()',
    hints=(
        "The label column is `is_fraud`: 1 for fraud, 0 otherwise.",
        "The mean of a 0/1 column is the share of ones.",
    ),
    reference=_fraud_rate,
    cases=(
        wrong("a count", lambda: int(_cached_course_data()["is_fraud"].sum()), "looks like a count"),
        wrong("a percentage", lambda: 100 * _fraud_rate(), "percentage"),
        wrong("the legitimate share", lambda: 1 - _fraud_rate(), "share of legitimate payments"),
        wrong("the last week only", lambda: float(data.time_split(_course_data())[2]["is_fraud"].mean()),
              "not the share of fraud"),
        right("rounded to 4 places", lambda: round(_fraud_rate(), 4)),
        right("numpy float", lambda: np.float32(_fraud_rate())),
    ),
)
def _check_fraud_rate(value) -> None:
    require_attempt(value)
    truth = _fraud_rate()
    assert isinstance(value, numbers.Real) and not isinstance(value, bool), (
        f"expected a number (a share between 0 and 1), got {type(value).__name__}"
    )
    value = float(value)
    assert abs(value / 100 - truth) > 5e-4 or abs(value - truth) <= 5e-4, (
        f"{value:g} is the percentage; give the share, between 0 and 1 ({value / 100:.4f})"
    )
    assert value <= 1, (
        f"{value:g} looks like a count of frauds; give the share of payments, between 0 and 1"
    )
    assert abs(value - (1 - truth)) > 5e-4, (
        f"{value:.4f} is the share of legitimate payments; fraud is the rest"
    )
    assert abs(value - truth) <= 5e-4, (  # rounding to 3-4 decimals is fine
        f"{value:.4f} is not the share of fraud in `transactions`; compute it from the is_fraud column "
        "over every payment"
    )


def _reference_fix(broken: pd.DataFrame) -> pd.DataFrame:
    fixed = broken.drop(columns=["debug_trace_id"])
    fixed["channel"] = fixed["channel"].str.lower()
    fixed["hour"] = fixed["hour"].astype("int64")
    return fixed


def _fix_with_wrong_hours() -> pd.DataFrame:
    fixed = _reference_fix(data.example_broken_batch())
    fixed["hour"] = (fixed["hour"] + 1) % 24  # "fixed" time zones nobody asked for
    return fixed


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
    cases=(
        wrong("only dropped the extra column",
              lambda: data.example_broken_batch().drop(columns=["debug_trace_id"]), "still breaks the contract"),
        wrong("dropped the bad rows", lambda: _reference_fix(data.example_broken_batch()).head(1500),
              "fix the values instead of dropping rows"),
        wrong("shifted the hours", _fix_with_wrong_hours, "some values changed"),
        wrong("a report, not a frame", lambda: data.validate_batch(data.example_broken_batch()), "expected a DataFrame"),
        right("shuffled rows, int32 hours",
              lambda: _reference_fix(data.example_broken_batch()).sample(frac=1, random_state=0)
              .astype({"hour": "int32"}).reset_index(drop=True)),
        right("columns in another order", lambda: _reference_fix(data.example_broken_batch()).iloc[:, ::-1]),
    ),
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
    expected = _reference_fix(broken).set_index("transaction_id").sort_index()
    got = value.set_index("transaction_id").sort_index()[expected.columns]
    changed = [c for c in expected.columns if not _same_values(got[c], expected[c])]
    assert not changed, (
        f"the batch is valid but some values changed (in {', '.join(changed)}): fix the format only "
        "(lower-case, whole numbers), never the payments themselves"
    )


def _same_values(got: pd.Series, expected: pd.Series) -> bool:
    """Equal values whatever the dtype's width (int32 hours are as right as int64)."""
    try:
        return got.astype(expected.dtype).equals(expected)
    except (TypeError, ValueError):
        return False


# --------------------------------------------------------------------------- 1.3 a contract check


def _reference_contract_problems(batch):
    problems = []
    known = {c.name: c for c in lab_contract()}
    for name in batch.columns:
        if name not in known:
            problems.append(f"{name}: not in the contract")
    for name, column in known.items():
        if name not in batch:
            problems.append(f"{name}: missing")
        elif column.categories is not None:
            bad = set(batch[name].dropna()) - set(column.categories)
            if bad:
                problems.append(f"{name}: unknown categories {sorted(bad)[:3]}")
        elif column.kind == "numeric" and column.dtype == "int64":
            if not pd.api.types.is_integer_dtype(batch[name]):
                problems.append(f"{name}: expected whole numbers, got {batch[name].dtype}")
    return problems


def lab_contract():
    return data.CONTRACT


def _only_checks_columns(batch):
    known = {c.name for c in data.CONTRACT}
    return [f"{c}: not in the contract" for c in batch.columns if c not in known]


def _only_checks_categories(batch):
    return [f"{c.name}: unknown categories" for c in data.CONTRACT
            if c.categories and c.name in batch and not batch[c.name].isin(c.categories).all()]


def _flags_everything(batch):
    return [f"{c}: checked" for c in batch.columns]


def _case_batches():
    """Named batches the check runs a learner's contract check on, with the column that must be named."""
    clean = data.simulate_transactions(300, start="2026-03-02", seed=11)
    planted = data.example_broken_batch(300)
    cases = [("the planted broken batch", planted, ("channel", "hour", "debug_trace_id"))]
    shouting = clean.copy()
    shouting["merchant_category"] = shouting["merchant_category"].str.upper()
    cases.append(("a batch whose merchant_category is in capitals", shouting, ("merchant_category",)))
    no_amount = clean.drop(columns=["amount"])
    cases.append(("a batch without the amount column", no_amount, ("amount",)))
    float_age = clean.astype({"customer_age_days": "float64"})
    cases.append(("a batch whose customer_age_days are floats", float_age, ("customer_age_days",)))
    return clean, cases


@exercise(
    "1.3",
    "Write a contract check that catches the broken batch",
    solution='''
def contract_problems(batch):
    problems = []
    known = {column.name: column for column in lab.data.CONTRACT}
    for name in batch.columns:
        if name not in known:
            problems.append(f"{name}: not in the contract")
    for name, column in known.items():
        if name not in batch:
            problems.append(f"{name}: missing")
        elif column.categories is not None:
            unknown = set(batch[name].dropna()) - set(column.categories)
            if unknown:
                problems.append(f"{name}: unknown categories {sorted(unknown)[:3]}")
        elif column.dtype == "int64" and not pd.api.types.is_integer_dtype(batch[name]):
            problems.append(f"{name}: expected whole numbers, got {batch[name].dtype}")
    return problems
''',
    hints=(
        "Loop over `lab.data.CONTRACT`: each column has `.name`, `.dtype`, `.kind` and `.categories`.",
        "Four rules: a column the contract does not know; a contract column that is missing; a value outside "
        "`column.categories`; a whole-number column (`dtype == 'int64'`) that is not integer "
        "(`pd.api.types.is_integer_dtype`).",
        "Return one string per problem, starting with the column's name; a clean batch gives an empty list.",
    ),
    reference=lambda: _reference_contract_problems,
    stub=lambda: _blank_contract_problems,
    cases=(
        wrong("only unknown columns", lambda: _only_checks_columns, "did not name channel, hour"),
        wrong("only categories", lambda: _only_checks_categories, "debug_trace_id"),
        wrong("flags everything", lambda: _flags_everything, "clean batch"),
        wrong("forgot return", lambda: _forgot_return_problems, "did you forget `return`?"),
    ),
)
def _check_contract_problems(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function contract_problems(batch), got {type(func).__name__}"
    clean, cases = _case_batches()
    found = call(func, clean.copy())
    assert isinstance(found, list | tuple), f"contract_problems should return a list of strings, got {type(found).__name__}"
    assert len(found) == 0, (
        f"on a clean batch contract_problems found {len(found)} problem(s), e.g. {str(found[0])[:120]!r}: "
        "a check that cries wolf is switched off by the team; a clean batch must give an empty list"
    )
    for name, batch, columns in cases:
        found = call(func, batch.copy())
        text = " ".join(map(str, found))
        missed = [c for c in columns if c not in text]
        assert not missed, (
            f"on {name}, contract_problems did not name {', '.join(missed)} (it returned {list(found)[:4]!r}): "
            "every problem should start with the column's name"
        )


def _blank_contract_problems(batch):
    ...


def _forgot_return_problems(batch):
    problems = _reference_contract_problems(batch)
    problems.sort()


# --------------------------------------------------------------------------- 1.4 split by time


def _random_split():
    from sklearn.model_selection import train_test_split

    frame = _course_data()
    train, rest = train_test_split(frame, test_size=0.33, random_state=0)
    valid, holdout = train_test_split(rest, test_size=0.5, random_state=0)
    return train, valid, holdout


def _rolling_split():
    """Windows of exactly 7 x 24 hours back from the last payment (a right answer)."""
    frame = data.labels_known_at(_course_data(), _decision_time())
    end = frame["timestamp"].max()
    ts = frame["timestamp"]
    holdout_start, valid_start = end - pd.Timedelta(days=7), end - pd.Timedelta(days=14)
    return frame[ts < valid_start], frame[(ts >= valid_start) & (ts < holdout_start)], frame[ts >= holdout_start]


def _decision_time() -> pd.Timestamp:
    ts = _cached_course_data()["timestamp"]
    return ts.max().normalize() + pd.Timedelta(days=1 + data.LABEL_WINDOW_DAYS)


@exercise(
    "1.4",
    "Split by time",
    solution="train, valid, holdout = lab.data.time_split(transactions, valid_days=7, holdout_days=7)",
    hints=(
        "The package has a helper for this: `lab.data.time_split`.",
        "The holdout must be the most recent 7 days, and validation the 7 days before it.",
    ),
    reference=lambda: data.time_split(_course_data(), valid_days=7, holdout_days=7),
    stub=lambda: (..., ..., ...),
    cases=(
        wrong("a random split", _random_split, "a random split leaks the future"),
        wrong("14 days of holdout", lambda: data.time_split(_course_data(), valid_days=7, holdout_days=14),
              "the holdout covers 14 days"),
        wrong("train and holdout swapped", lambda: data.time_split(_course_data())[::-1],
              "some training payments happen after validation starts"),
        wrong("two parts", lambda: data.time_split(_course_data())[:2], "expected three DataFrames"),
        right("rolling 7 x 24 hours", _rolling_split),
    ),
)
def _check_split(value) -> None:
    require_attempt(value)
    assert isinstance(value, tuple | list) and len(value) == 3, "expected three DataFrames: (train, valid, holdout)"
    train, valid, holdout = value
    for part in value:
        require_attempt(part)
    assert all(isinstance(p, pd.DataFrame) for p in value), "expected three DataFrames: (train, valid, holdout)"
    assert train["timestamp"].max() < valid["timestamp"].min(), (
        "some training payments happen after validation starts: a random split leaks the future into training"
    )
    assert valid["timestamp"].max() < holdout["timestamp"].min(), "validation must end before the holdout starts"
    last = holdout["timestamp"].max()
    for name, part, start_at_most in (("the holdout", holdout, 7), ("validation", valid, 14)):
        start_days = (last - part["timestamp"].min()) / pd.Timedelta(days=1)
        assert start_at_most - 7 < start_days <= start_at_most, (
            f"{name} covers {round(start_days + 7 - start_at_most) if name == 'validation' else round(start_days)} "
            f"days; the holdout should be the most recent 7 days and validation the 7 days before it"
        )
    full = _course_data()
    used = len(train) + len(valid) + len(holdout)
    assert len(full) - 20 <= used <= len(full), "the three parts should add up to the whole dataset"


# --------------------------------------------------------------------------- 1.5 labels arrive late


def _reference_no_future_labels(frame, as_of):
    return frame[frame["label_available_at"] <= as_of]


def _by_payment_time(frame, as_of):
    return frame[frame["timestamp"] <= as_of]


def _strictly_before(frame, as_of):
    return frame[frame["label_available_at"] < as_of]


def _only_frauds_wait(frame, as_of):
    return frame[(frame["is_fraud"] == 0) | (frame["label_available_at"] <= as_of)]


def _label_cases():
    """A planted frame: one label exactly on time, one a second late, one payment made before as_of
    whose label only arrives after it, and a legitimate payment still inside the 30-day window."""
    as_of = pd.Timestamp("2026-02-01 12:00:00")
    second = pd.Timedelta(seconds=1)
    rows = [
        ("on time", "2026-01-20 10:00", as_of, 1, True),
        ("one second late", "2026-01-25 09:00", as_of + second, 1, False),
        ("paid before, label after", "2026-01-31 08:00", "2026-02-10 08:00", 1, False),
        ("legit, window still open", "2026-01-15 08:00", "2026-02-14 08:00", 0, False),
        ("legit, window closed", "2025-12-01 08:00", "2025-12-31 08:00", 0, True),
    ]
    frame = pd.DataFrame({
        "transaction_id": [r[0] for r in rows],
        "timestamp": pd.to_datetime([r[1] for r in rows]),
        "label_available_at": pd.to_datetime([r[2] for r in rows]),
        "is_fraud": [r[3] for r in rows],
        "amount": [10.0, 20.0, 30.0, 40.0, 50.0],
    })
    return frame, as_of, {r[0] for r in rows if r[4]}


@exercise(
    "1.5",
    "Use only the labels you had",
    solution='''
def no_future_labels(frame, as_of):
    return frame[frame["label_available_at"] <= as_of]
''',
    hints=(
        "A label is usable at `as_of` when it had *arrived* by then: compare `label_available_at`, not `timestamp`.",
        "Exactly on time counts as arrived: use <=.",
    ),
    reference=lambda: _reference_no_future_labels,
    stub=lambda: _blank_no_future_labels,
    cases=(
        wrong("filters on payment time", lambda: _by_payment_time, "its label arrived after as_of"),
        wrong("strictly before", lambda: _strictly_before, "on time"),
        wrong("legit labels never wait", lambda: _only_frauds_wait, "legit, window still open"),
        wrong("returns a count", lambda: lambda f, a: int((f["label_available_at"] <= a).sum()), "expected a DataFrame"),
        right("query string", lambda: lambda f, a: f.query("label_available_at <= @a")),
        right("labels_known_at", lambda: data.labels_known_at),
    ),
)
def _check_no_future_labels(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function no_future_labels(frame, as_of), got {type(func).__name__}"
    frame, as_of, expected = _label_cases()
    got = call(func, frame.copy(), as_of)
    assert isinstance(got, pd.DataFrame), f"expected a DataFrame of the usable rows, got {type(got).__name__}"
    kept = set(got["transaction_id"])
    for name in sorted(set(frame["transaction_id"])):
        if name in expected:
            assert name in kept, f"the row {name!r} was dropped, but its label had arrived by as_of: keep it"
        else:
            assert name not in kept, (
                f"the row {name!r} was kept, but its label arrived after as_of: nobody knew it at decision time"
            )


def _blank_no_future_labels(frame, as_of):
    ...


# --------------------------------------------------------------------------- 1.6 predict, then check

SPLIT_CHOICES = ("random", "time", "about the same")


@exercise(
    "1.6",
    "Predict: which split scores higher?",
    solution='higher = "random"',
    hints=(
        "In the random split, payments of the final week (and their attack) are in the training data.",
        "A model that has seen the test period's fraud pattern looks better than it will be next week.",
    ),
    reference=lambda: "random",
    cases=(
        wrong("time", lambda: "time", "the time split scored lower"),
        wrong("about the same", lambda: "about the same", "not the same"),
        wrong("a number", lambda: 0.5, "one of"),
        right("capitalised", lambda: "Random"),
    ),
)
def _check_prediction(value) -> None:
    require_attempt(value)
    assert isinstance(value, str) and value.strip().lower() in SPLIT_CHOICES, (
        f"answer with one of {SPLIT_CHOICES}, got {value!r}"
    )
    value = value.strip().lower()
    assert value != "time", (
        "the time split scored lower: it tests the model on a week whose attack it never saw, as production "
        "would. The random split scored higher because the final week's attack leaked into training"
    )
    assert value != "about the same", (
        "they are not the same: the random split lets the model train on the final week's card-testing attack, "
        "so it scores far higher than it would on next week's payments"
    )
