"""Lab 01: Data. The fraud rate, fixing a broken batch, a contract check of your own, labels that
arrive late, splitting by time, and a prediction about random versus time splits."""

from __future__ import annotations

import functools
import numbers

import numpy as np
import pandas as pd

from .. import data
from . import (
    Trial,
    close_to,
    differential,
    exercise,
    require_attempt,
    right,
    same_rows,
    solved,
    spelled_as,
    wrong,
)


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
        wrong("the training weeks only", lambda: float(data.time_split(_course_data())[0]["is_fraud"].mean()),
              "not the share of fraud"),
        wrong("frauds per legitimate payment", lambda: float(_cached_course_data()["is_fraud"].sum()
                                                              / (1 - _cached_course_data()["is_fraud"]).sum()),
              "not the share of fraud"),
        wrong("rounded to two places", lambda: round(_fraud_rate(), 2), "not the share of fraud"),
        wrong("a boolean", lambda: True, "expected a number"),
        wrong("0.1% off, not rounded (red team)", lambda: _fraud_rate() * 1.001,
              f"{_fraud_rate() * 1.001:.3g} is not the share"),
        right("rounded to 4 places", lambda: round(_fraud_rate(), 4)),
        right("numpy float", lambda: np.float32(_fraud_rate())),
        right("value_counts(normalize=True)", lambda: _cached_course_data()["is_fraud"].value_counts(normalize=True)[1]),
        right("as the notebook prints it, 0.89%", lambda: float(f"{_fraud_rate():.2%}".rstrip("%")) / 100),
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
    assert close_to(value, truth, digits=3), (  # rounded as a message prints it is fine
        f"{_shown(value, truth)} is not the share of fraud in `transactions`; compute it from the is_fraud "
        "column over every payment (a rounded share is fine, when it is the share rounded)"
    )


def _shown(value: float, truth: float) -> str:
    """``value`` with the fewest significant digits that the check would still refuse: a message never
    shows a number that is itself accepted ("0.0089" for 0.008914)."""
    for digits in range(2, 18):
        text = f"{value:.{digits}g}"
        if not close_to(float(text), truth, digits=3):
            return text
    return repr(value)


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
        wrong("kept the debugging column", lambda: _reference_fix(data.example_broken_batch())
              .assign(debug_trace_id="x"), "still breaks the contract"),
        wrong("capitalised the channel", lambda: _reference_fix(data.example_broken_batch())
              .assign(channel=lambda f: f["channel"].str.capitalize()), "still breaks the contract"),
        wrong("hours as text", lambda: _reference_fix(data.example_broken_batch()).astype({"hour": str}),
              "still breaks the contract"),
        right("astype(int) and a mapping", lambda: data.example_broken_batch().drop(columns="debug_trace_id")
              .assign(channel=lambda f: f["channel"].map({c.upper(): c for c in data.CHANNELS}),
                      hour=lambda f: f["hour"].round().astype(int))),
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


def _only_checks_columns(batch):
    known = {c.name for c in data.CONTRACT}
    return [f"{c}: not in the contract" for c in batch.columns if c not in known]


def _only_checks_categories(batch):
    return [f"{c.name}: unknown categories" for c in data.CONTRACT
            if c.categories and c.name in batch and not batch[c.name].isin(c.categories).all()]


def _flags_everything(batch):
    return [f"{c}: checked" for c in batch.columns]


def _substring_names(batch):
    known = " ".join(c.name for c in data.CONTRACT)
    problems = [f"{c}: not in the contract" for c in batch.columns if c not in known]  # 'amount' in 'avg_amount_30d'
    for c in data.CONTRACT:
        if c.name not in batch.columns:
            problems.append(f"{c.name}: missing")
        elif c.categories and not batch[c.name].isin(c.categories).all():
            problems.append(f"{c.name}: unknown categories")
        elif c.dtype == "int64" and not pd.api.types.is_integer_dtype(batch[c.name]):
            problems.append(f"{c.name}: not whole numbers")
    return problems


def _exactly_int64(batch):
    known = {c.name: c for c in data.CONTRACT}
    problems = [f"{c}: not in the contract" for c in batch.columns if c not in known]
    for c in data.CONTRACT:
        if c.name not in batch.columns:
            problems.append(f"{c.name}: missing")
        elif c.categories and not batch[c.name].isin(c.categories).all():
            problems.append(f"{c.name}: unknown categories")
        elif c.dtype == "int64" and str(batch[c.name].dtype) != "int64":
            problems.append(f"{c.name}: not int64")
    return problems


def _forgets_missing_columns(batch):
    return [p for p in _with_sets(batch) if not p.endswith("missing")]


def _the_planted_batch_only(batch):
    if "debug_trace_id" in batch:
        return ["debug_trace_id: not in the contract", "channel: unknown categories", "hour: not whole numbers"]
    return []


def _lowercases_first(batch):
    batch["channel"] = batch["channel"].str.lower()  # "fixes" the caller's batch while checking it
    batch["merchant_category"] = batch["merchant_category"].str.lower()
    return _with_sets(batch)


def _with_sets(batch):
    contract = {c.name: c for c in data.CONTRACT}
    problems = [f"{n}: not in the contract" for n in sorted(set(batch.columns) - set(contract))]
    problems += [f"{n}: missing" for n in sorted(set(contract) - set(batch.columns))]
    for c in data.CONTRACT:
        if c.name not in batch:
            continue
        if c.categories and not batch[c.name].isin(c.categories).all():
            problems.append(f"{c.name}: unknown categories")
        if c.dtype == "int64" and batch[c.name].dtype.kind not in "iu":
            problems.append(f"{c.name}: not whole numbers")
    return problems


def _sentences(batch):
    return [f"The column {p.split(':')[0]!r} breaks the contract ({p.split(': ', 1)[1]})." for p in _with_sets(batch)]


def _prefixed(batch):
    return [f"problem: {p}" for p in _with_sets(batch)]


def _joined(batch):
    problems = _with_sets(batch)
    return ["; ".join(problems)] if problems else []


def _twice(batch):
    return _with_sets(batch) * 2


def _quoted(batch):
    return [f"'{p.split(':')[0]}':{p.split(':', 1)[1]}" for p in _with_sets(batch)]


def _contract_trials():
    """The batches 1.3 is judged on: clean ones (seeds, scenarios, shuffled, reordered, an empty batch,
    plain bool yes/no columns) and ones with one planted problem of each of the four rules."""
    base = data.simulate_transactions(300, start="2026-03-02", seed=11)
    other = data.simulate_transactions(120, start="2026-05-04", seed=12, scenario="card_testing")
    holiday = data.simulate_transactions(60, start="2026-12-14", seed=13, scenario="holiday_season")
    trials = [Trial("the planted broken batch (300 payments)", (data.example_broken_batch(300),), size=300.5)]

    def add(label, frame, order=0.0):
        frame = frame.reset_index(drop=True)
        frame.attrs = {}  # the simulator's provenance: pandas deep-copies attrs on every operation
        trials.append(Trial(f"{label} ({len(frame)} payments)", (frame,), size=len(frame) + order))

    add("a clean batch of seed 11", base)
    add("a clean batch with card testing (seed 12)", other)
    add("a clean batch of the holiday season (seed 13)", holiday)
    add("a clean batch, rows shuffled and columns in reverse order", base.sample(frac=1, random_state=1).iloc[:, ::-1], 0.1)
    add("an empty batch with every column", base.head(0))
    add("a clean batch whose yes/no columns are plain bool", holiday.astype({"country_mismatch": bool,
                                                                               "new_device": bool}), 0.1)
    shouting = other.copy()
    shouting["merchant_category"] = shouting["merchant_category"].str.upper()
    add("a batch whose merchant_category is in capitals", shouting, 0.2)
    one_bad = holiday.copy()
    one_bad.loc[7, "merchant_category"] = "crypto"
    add("a batch with one payment in an unknown merchant_category 'crypto'", one_bad, 0.2)
    typo = base.head(40).copy()
    typo.loc[39, "channel"] = "on-line"
    add("a batch whose last payment has channel 'on-line'", typo)
    add("a batch without the amount column", base.drop(columns=["amount"]), 0.3)
    add("a batch without the channel and tx_count_24h columns", other.drop(columns=["channel", "tx_count_24h"]), 0.3)
    add("a batch whose customer_age_days are floats", holiday.astype({"customer_age_days": "float64"}), 0.3)
    add("a batch whose hour is a float", other.astype({"hour": "float64"}), 0.4)
    with_gap = base.head(80).astype({"tx_count_24h": "float64"})
    with_gap.loc[3, "tx_count_24h"] = np.nan
    add("a batch whose tx_count_24h has a missing value (so it became float)", with_gap)
    add("a batch with an extra column 'age_days'", holiday.assign(age_days=holiday["customer_age_days"]), 0.5)
    spike = data.simulate_transactions(150, start="2026-06-01", seed=14, scenario="fraud_rate_spike")
    add("a clean batch during a fraud ring (seed 14)", spike)
    add("a batch with an extra column 'notes'", other.head(50).assign(notes="checked"), 0.5)
    renamed = base.head(70).rename(columns={"hour": "hour_of_day"})
    add("a batch whose hour column is called hour_of_day", renamed)
    many = data.example_broken_batch(90, seed=3).drop(columns=["avg_amount_30d"])
    add("a broken batch of seed 3 that also lacks avg_amount_30d", many)
    return trials


_WORD = r"(?<![A-Za-z0-9_]){}(?![A-Za-z0-9_])"


def _named_columns(problems, batch) -> set[str]:
    """The columns a list of problems names, as whole words (amount is not named by avg_amount_30d)."""
    import re

    text = "\n".join(map(str, problems))
    names = {c.name for c in data.CONTRACT} | {str(c) for c in batch.columns}
    return {n for n in names if re.search(_WORD.format(re.escape(n)), text)}


def _leading_column(problem: str, batch) -> str | None:
    """The column a problem starts with (a quote or backtick around it is fine), or None."""
    import re

    names = sorted({c.name for c in data.CONTRACT} | {str(c) for c in batch.columns}, key=len, reverse=True)
    return next((n for n in names if re.match(r"\s*['\"`]?" + re.escape(n) + r"(?![A-Za-z0-9_])", problem)), None)


def _problem_per_string(got, right, batch) -> str | None:
    """The lab's form: one string per problem, each starting with the column's name."""
    for problem in got:
        if _leading_column(problem, batch) is None:
            return (f"{problem[:120]!r} does not start with a column's name: write one string per problem, each "
                    "starting with the column's name, e.g. 'channel: unknown categories ...' (the team sorts and "
                    "counts them by that name)")
    seen = set()
    for problem in got:
        if problem in seen:
            return f"{problem[:120]!r} is in the list twice: one string per problem"
        seen.add(problem)
    inside = sorted(right - {_leading_column(p, batch) for p in got})
    if inside:
        return (f"yours names {', '.join(inside)} only inside another problem's string (it returned "
                f"{list(got)[:4]!r}): one string per problem, each starting with the column's name")
    return None


def _compare_problems(got, expected, trial):
    batch = trial.args[0]
    if not isinstance(got, list | tuple) or not all(isinstance(p, str) for p in got):
        return f"contract_problems should return a list of strings, got {str(got)[:120]}"
    if not expected:
        if got:
            return (f"it is clean, but yours found {len(got)} problem(s), e.g. {str(got[0])[:120]!r}: a check that "
                    "cries wolf is switched off by the team; a clean batch must give an empty list")
        return None
    named, right = _named_columns(got, batch), _named_columns(expected, batch)
    if named == right:
        return _problem_per_string(got, right, batch)
    missed, extra = sorted(right - named), sorted(named - right)
    parts = []
    if missed:
        parts.append(f"yours did not name {', '.join(missed)}")
    if extra:
        parts.append(f"yours names {', '.join(extra)}, which {'is' if len(extra) == 1 else 'are'} fine here")
    return (f"{' and '.join(parts)} (it returned {list(got)[:4]!r}). The problems are: {list(expected)!r}; each "
            "should start with the column's name")


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
    reference="contract_problems",
    stub=lambda: _blank_contract_problems,
    trials=_contract_trials,
    cases=(
        wrong("only unknown columns", lambda: _only_checks_columns, "did not name channel"),
        wrong("only categories", lambda: _only_checks_categories, "did not name notes"),
        wrong("flags everything", lambda: _flags_everything, "clean batch"),
        wrong("forgot return", lambda: _forgot_return_problems, "did you forget `return`?"),
        wrong("unknown columns by substring", lambda: _substring_names, "yours did not name age_days"),
        wrong("never looks for missing columns", lambda: _forgets_missing_columns, "hour_of_day"),
        wrong("the planted batch's problems, hard-coded", lambda: _the_planted_batch_only, "on-line"),
        wrong("lower-cases the caller's batch", lambda: _lowercases_first, "changed its input"),
        right("set arithmetic and isin", lambda: _with_sets),
        wrong("whole sentences naming the column (the lab asks each to start with the name)", lambda: _sentences,
              "does not start with a column's name"),
        wrong("a prefix before the column's name (red team)", lambda: _prefixed, "does not start with a column's name"),
        wrong("one joined string (red team)", lambda: _joined, "one string per problem"),
        wrong("each problem twice (red team)", lambda: _twice, "twice"),
        right("the column's name in quotes", lambda: _quoted),
        # The prose's "(dtype == 'int64')" may be read as the batch's dtype too: no batch has int32 columns.
        right("whole numbers must be exactly int64", lambda: _exactly_int64),
    ),
)
def _check_contract_problems(func) -> None:
    from . import get

    require_attempt(func)
    assert callable(func), f"expected a function contract_problems(batch), got {type(func).__name__}"
    differential(func, get("1.3").reference(), _contract_trials_cached(), compare=_compare_problems,
                 what="your contract_problems")


@functools.cache
def _contract_trials_cached():
    return tuple(_contract_trials())


def _blank_contract_problems(batch):
    ...


def _forgot_return_problems(batch):
    problems = solved("1.3")["contract_problems"](batch)
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


def _swap(parts, i, j):
    parts = list(parts)
    parts[i], parts[j] = parts[j], parts[i]
    return tuple(parts)


def _split_by_dates():
    frame = _course_data()
    day = frame["timestamp"].dt.normalize()
    last = day.max()
    holdout_start, valid_start = last - pd.Timedelta(days=6), last - pd.Timedelta(days=13)
    return [frame[day < valid_start], frame[(day >= valid_start) & (day < holdout_start)], frame[day >= holdout_start]]


def _decision_time() -> pd.Timestamp:
    ts = _cached_course_data()["timestamp"]
    return ts.max().normalize() + pd.Timedelta(days=1 + data.LABEL_WINDOW_DAYS)


def _rows_of_transactions(parts) -> None:
    """The three parts hold rows of the given `transactions`, each at most once, with their values unchanged."""
    full = _cached_course_data()
    for name, part in zip(("train", "valid", "holdout"), parts, strict=True):
        lost = [c for c in full.columns if c not in part.columns]
        assert not lost, f"{name} lost the column(s) {', '.join(lost)}: split whole rows of `transactions`"
    rows = pd.concat([part[list(full.columns)] for part in parts], ignore_index=True)
    ids = rows["transaction_id"]
    twice = ids[ids.duplicated()]
    assert twice.empty, (
        f"payment {twice.iloc[0]} is in two parts ({ids.duplicated(keep=False).sum()} rows are repeated): every "
        "payment belongs to exactly one of train, valid and holdout"
    )
    known = full.set_index("transaction_id")
    foreign = ids[~ids.isin(known.index)]
    assert foreign.empty, (
        f"payment {foreign.iloc[0]} is not in `transactions` ({len(foreign)} such rows): split the frame the lab "
        "gives you, `transactions`, not another one"
    )
    original = known.loc[ids].reset_index()
    for column in full.columns:
        got, expected = rows[column], original[column]
        same = (got.to_numpy() == expected.to_numpy()) | (got.isna().to_numpy() & expected.isna().to_numpy())
        if not same.all():
            at = int(np.flatnonzero(~same)[0])
            raise AssertionError(
                f"payment {ids.iloc[at]} has {column} = {got.iloc[at]} in your parts but {expected.iloc[at]} in "
                f"`transactions` ({int((~same).sum())} rows differ): split the rows of `transactions` as they are, "
                "from the frame the lab gives you"
            )


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
        wrong("6 days of holdout", lambda: data.time_split(_course_data(), valid_days=7, holdout_days=6),
              "the holdout covers 6 days"),
        wrong("8 days of validation", lambda: data.time_split(_course_data(), valid_days=8, holdout_days=7),
              "validation covers 8 days"),
        wrong("validation and holdout swapped", lambda: _swap(data.time_split(_course_data()), 1, 2),
              "validation must end before the holdout starts"),
        wrong("a split of another seed (red team)", lambda: data.time_split(
            data.simulate_transactions(days=42, start="2026-01-05", seed=7)), "not in `transactions`"),
        wrong("a split with amounts doubled (red team)", lambda: data.time_split(
            _course_data().assign(amount=_course_data()["amount"] * 2)), "amount"),
        wrong("a split of the card_testing world (red team)", lambda: data.time_split(data.simulate_transactions(
            days=42, start="2026-01-05", seed=42, scenario="card_testing", drift_start="2026-02-09")),
              "`transactions`"),
        wrong("whole data as train (red team)", lambda: (_course_data(),) + data.time_split(_course_data())[1:],
              "two parts"),
        right("rolling 7 x 24 hours", _rolling_split),
        right("a list, by dates", _split_by_dates),
    ),
)
def _check_split(value) -> None:
    require_attempt(value)
    assert isinstance(value, tuple | list) and len(value) == 3, "expected three DataFrames: (train, valid, holdout)"
    train, valid, holdout = value
    for part in value:
        require_attempt(part)
    assert all(isinstance(p, pd.DataFrame) for p in value), "expected three DataFrames: (train, valid, holdout)"
    _rows_of_transactions(value)
    assert train["timestamp"].max() < valid["timestamp"].min(), (
        "some training payments happen after validation starts: a random split leaks the future into training"
    )
    assert valid["timestamp"].max() < holdout["timestamp"].min(), "validation must end before the holdout starts"
    last = holdout["timestamp"].max()
    for name, part, start_at_most in (("the holdout", holdout, 7), ("validation", valid, 14)):
        start_days = (last - part["timestamp"].min()) / pd.Timedelta(days=1)
        assert start_at_most - 1 < start_days <= start_at_most, (
            f"{name} covers {round(start_days + 7 - start_at_most) if name == 'validation' else round(start_days)} "
            f"days; the holdout should be the most recent 7 days and validation the 7 days before it"
        )
    full = _course_data()
    used = len(train) + len(valid) + len(holdout)
    assert len(full) - 20 <= used <= len(full), "the three parts should add up to the whole dataset"


# --------------------------------------------------------------------------- 1.5 labels arrive late


def _by_payment_time(frame, as_of):
    return frame[frame["timestamp"] <= as_of]


def _strictly_before(frame, as_of):
    return frame[frame["label_available_at"] < as_of]


def _only_frauds_wait(frame, as_of):
    return frame[(frame["is_fraud"] == 0) | (frame["label_available_at"] <= as_of)]


def _the_course_cutoff(frame, as_of):
    return frame[frame["label_available_at"] <= pd.Timestamp("2026-02-16")]  # ignores as_of


def _thirty_days_after_payment(frame, as_of):
    return frame[frame["timestamp"] + pd.Timedelta(days=30) <= as_of]  # every label final after 30 days


def _drops_in_place(frame, as_of):
    frame.drop(frame.index[frame["label_available_at"] > as_of], inplace=True)
    return frame


def _only_label_columns(frame, as_of):
    return frame.loc[frame["label_available_at"] <= as_of, ["transaction_id", "timestamp", "is_fraud"]]


def _sorted_and_reindexed(frame, as_of):
    known = frame[frame["label_available_at"].le(as_of)]
    return known.sort_values("timestamp").reset_index(drop=True)


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


def _label_trials():
    """The planted frame (the story), then simulated frames with as_of exactly on a label, a second either
    side, before every label and after all of them; rows shuffled, an extra column, an index of its own."""
    frame, as_of, _ = _label_cases()
    trials = [Trial(f"the planted frame of 5 payments and as_of = {as_of}", (frame, as_of), size=5)]
    second = pd.Timedelta(seconds=1)
    for seed, n, start in ((31, 60, "2026-01-05"), (32, 200, "2026-02-02"), (33, 300, "2026-03-02")):
        sim = data.simulate_transactions(n, start=start, seed=seed, scenario="card_testing" if seed == 32 else None)
        sim.attrs = {}  # the simulator's provenance: pandas deep-copies attrs on every operation
        labels = sim["label_available_at"].sort_values()
        on_a_label = labels.iloc[len(labels) // 3]
        fraud_label = sim.loc[sim["is_fraud"] == 1, "label_available_at"].min()
        moments = [(on_a_label, "exactly at one payment's label"), (on_a_label - second, "one second before a label"),
                   (on_a_label + second, "one second after a label"), (labels.iloc[0] - second, "before every label"),
                   (labels.iloc[-1], "at the last label"),
                   (sim["timestamp"].max().ceil("D"), "the day after the payments end, as in the notebook")]
        if pd.notna(fraud_label):
            moments.append((fraud_label, "exactly when the first chargeback arrived"))
        for k, (moment, why) in enumerate(moments):
            case = sim
            extra = ""
            if k % 3 == 1:
                case, extra = sim.sample(frac=1, random_state=seed), ", rows shuffled"
            elif k % 3 == 2:
                case = sim.assign(note="x").set_index(sim.index + 1000)
                extra = ", an extra column and an index from 1000"
            trials.append(Trial(f"{n} payments of seed {seed}{extra} and as_of = {moment} ({why})",
                                (case, moment), size=n + k / 10))
    return trials


def _explain_label(row, kept, trial) -> str:
    as_of = pd.Timestamp(trial.args[1])
    arrived = pd.Timestamp(row["label_available_at"])
    gap = arrived - as_of
    when = ("exactly at as_of" if gap == pd.Timedelta(0)
            else f"{_duration(abs(gap))} {'after' if gap > pd.Timedelta(0) else 'before'} as_of")
    if kept:
        return (f"paid {row['timestamp']}, its label arrived {arrived}, {when}: nobody knew it at decision time "
                "(compare label_available_at with as_of, not the payment time)")
    return (f"its label arrived {arrived}, {when}: it had arrived by as_of, so keep it"
            + (" (a label that arrives exactly at as_of is known: use <=)" if gap == pd.Timedelta(0) else ""))


def _duration(gap: pd.Timedelta) -> str:
    seconds = int(gap.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}{'s' if seconds // size > 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


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
    reference="no_future_labels",
    stub=lambda: _blank_no_future_labels,
    trials=_label_trials,
    cases=(
        wrong("filters on payment time", lambda: _by_payment_time, "not the payment time"),
        wrong("strictly before", lambda: _strictly_before, "on time"),
        wrong("legit labels never wait", lambda: _only_frauds_wait, "legit, window still open"),
        wrong("returns a count", lambda: lambda f, a: int((f["label_available_at"] <= a).sum()), "return the rows"),
        wrong("ignores as_of", lambda: _the_course_cutoff, "1 second after as_of"),
        wrong("every label final 30 days after the payment", lambda: _thirty_days_after_payment, "on time"),
        wrong("drops rows in place", lambda: _drops_in_place, "changed its input"),
        wrong("keeps only some columns", lambda: _only_label_columns, "lost the column(s) label_available_at"),
        right("query string", lambda: lambda f, a: f.query("label_available_at <= @a")),
        right("labels_known_at", lambda: data.labels_known_at),
        right("sorted and re-indexed", lambda: _sorted_and_reindexed),
    ),
)
def _check_no_future_labels(func) -> None:
    from . import get

    require_attempt(func)
    assert callable(func), f"expected a function no_future_labels(frame, as_of), got {type(func).__name__}"
    differential(func, get("1.5").reference(), _label_trials_cached(),
                 compare=same_rows("transaction_id", _explain_label), what="your no_future_labels")


@functools.cache
def _label_trials_cached():
    return tuple(_label_trials())


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
        wrong("the time split", lambda: "Time split", "the time split scored lower"),
        wrong("same", lambda: "same", "not the same"),
        wrong("both", lambda: "both", "one of"),
        right("capitalised", lambda: "Random"),
        right("the random split, as the prose says it", lambda: " the random split "),
        right("RANDOM", lambda: "RANDOM"),
    ),
)
def _check_prediction(value) -> None:
    require_attempt(value)
    choice = spelled_as(value, SPLIT_CHOICES, {
        "random": ("random split", "the random split", "random_split"),
        "time": ("time split", "the time split", "by time", "time-based", "time based split"),
        "about the same": ("same", "the same", "about same", "equal", "similar"),
    })
    assert choice is not None, f"answer with one of {SPLIT_CHOICES}, got {value!r}"
    value = choice
    assert value != "time", (
        "the time split scored lower: it tests the model on a week whose attack it never saw, as production "
        "would. The random split scored higher because the final week's attack leaked into training"
    )
    assert value != "about the same", (
        "they are not the same: the random split lets the model train on the final week's card-testing attack, "
        "so it scores far higher than it would on next week's payments"
    )
