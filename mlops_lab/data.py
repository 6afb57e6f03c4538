"""CardGuard's data: a transaction simulator with named drift scenarios, dataset fingerprints,
and a time-based split. The data contract and batch validation live in ``mlops_lab.contract``
(re-exported here).

Nothing is downloaded: the simulator *is* the course's dataset.

Ground-truth fraud mechanism (what the model has to learn). Each payment gets a fraud
log-odds made of:

* the amount relative to the customer's 30-day average, with a threshold effect (a payment
  more than ~3x the usual amount is much riskier; the effect is flat below that);
* channel ``online``, and the interactions *online at night* (00:00-05:59) and *online from
  a new device*;
* a foreign card (``country_mismatch``) only matters for payments over 200;
* velocity (``tx_count_24h`` above 3), risky merchant categories, very young accounts, and
  in-person payments far from home.

On top of that, stolen cards are used in short bursts (see ``_compromise_bursts``).

About 0.9% of payments are fraud. On the course dataset (42 days x 2,000 payments; train on
the first 28 days, score the last 7 with ``time_split``), the contract's pipeline reaches a
PR-AUC of about 0.33 with logistic regression and 0.41 with gradient boosting, against a base
rate of 0.009: learnable, clearly better with interactions, and far from perfect
(``tests/test_data.py`` checks the ordering).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from . import config
from .contract import (  # noqa: F401  (re-exported: the labs use mlops_lab.data.<name>)
    CHANNELS,
    CONTRACT,
    CONTRACT_VERSION,
    MERCHANT_CATEGORIES,
    Column,
    ValidationReport,
    contract_columns,
    contract_hash,
    describe_contract,
    feature_columns,
    validate_batch,
)
from .contract import with_contract_dtypes as _with_contract_dtypes
from .errors import LabError

# --------------------------------------------------------------------------- drift scenarios


@dataclass(frozen=True)
class Scenario:
    """A named change to the world, switched on from a date, with machine-readable ground truth."""

    name: str
    description: str
    drifted_columns: tuple[str, ...]  # feature columns whose distribution changes
    concept_drift: bool  # does the fraud mechanism P(fraud | features) itself change?
    fraud_rate: str  # "same", "up" or "down" (direction of the fraud rate change)
    data_bug: bool = False  # an upstream pipeline fault rather than a change in the world
    knobs: dict = field(default_factory=dict)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("none", "No change: the control scenario.", (), False, "same"),
        Scenario(
            "holiday_season",
            "Holiday shopping: bigger baskets, more online, more electronics and jewelry. The fraud "
            "mechanism is unchanged, but fraud rises because more payments look risky (covariate shift).",
            ("amount", "merchant_category", "channel"), False, "up",
        ),
        Scenario(
            "card_testing",
            "A new fraud pattern: bursts of tiny online payments at night, each stolen card tried "
            "once to see if it works. Payments that used to be harmless are now fraud (concept drift).",
            ("amount", "merchant_category", "channel", "hour"), True, "up",
        ),
        Scenario(
            "amount_in_cents",
            "Upstream bug: a payments service starts sending the amount in cents instead of euros. "
            "Nothing changed in the world; the amount column is 100x too large.",
            ("amount",), False, "same", data_bug=True,
        ),
        Scenario(
            "device_feature_missing",
            "Upstream bug: the device service times out and new_device arrives empty for every payment.",
            ("new_device",), False, "same", data_bug=True,
        ),
        Scenario(
            "fraud_rate_spike",
            "A fraud ring hits: the fraud rate roughly doubles, while the payments themselves look as before "
            "(a change in the fraud rate alone).",
            (), False, "up",
        ),
    )
}


def scenario_truth(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(
            f"Unknown drift scenario {name!r}. The scenarios are: {', '.join(SCENARIOS)}. "
            "Use scenario=None (or 'none') for data without drift."
        ) from None


# --------------------------------------------------------------------------- the simulator

_CATEGORY_P = np.array([0.24, 0.12, 0.17, 0.05, 0.08, 0.20, 0.08, 0.06])
_HOLIDAY_CATEGORY_P = np.array([0.18, 0.08, 0.14, 0.04, 0.16, 0.26, 0.06, 0.08])
_CATEGORY_MEDIAN = np.array([35, 50, 40, 300, 250, 60, 25, 400], dtype=float)
_CATEGORY_RISK = np.array([0.0, 0.0, 0.0, 0.3, 0.8, 0.3, 0.6, 1.0])
_CHANNEL_P = np.array([0.45, 0.30, 0.25])
_HOLIDAY_CHANNEL_P = np.array([0.35, 0.25, 0.40])
# payments per hour of day (UTC), busier in the day
_HOUR_P = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5, 5.5, 6, 6.5, 7, 6.5,
                    5.5, 4, 3, 2], dtype=float)
_HOUR_P /= _HOUR_P.sum()
_SIGNAL = 2.4  # scales every effect: learnable, not trivial (see the module docstring)
_INTERCEPT = -12.0  # calibrated for a fraud rate of about 1% in the control scenario
DEFAULT_PER_DAY = 2_000


def _parse_start(start) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(start)
    except (ValueError, TypeError):
        ts = None
    if ts is None or pd.isna(ts):
        raise LabError(
            f"start={start!r} is not a date. Give it as 'YYYY-MM-DD' (for example start='2026-01-05') "
            "or as a datetime."
        )
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _check_count(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise LabError(f"{name}={value!r} must be a positive whole number, for example {name}=10_000.")
    return int(value)


def simulate_transactions(
    n: int | None = None,
    *,
    days: int | None = None,
    start="2026-01-05",
    seed: int = config.SEED,
    scenario: str | None = None,
    drift_start=None,
    per_day: int = DEFAULT_PER_DAY,
) -> pd.DataFrame:
    """Simulate ``n`` card payments (or ``days`` x ``per_day``) from ``start``, sorted by time.

    ``scenario`` (see ``SCENARIOS``) switches a drift on from ``drift_start`` (default: from the
    start). The same arguments always give identical data. The result's ``attrs["provenance"]``
    records how it was made (see :func:`dataset_record`).
    """
    start_ts = _parse_start(start)
    name = "none" if scenario is None else scenario
    scenario_truth(name)  # an unknown name fails here, listing the valid ones
    per_day = _check_count("per_day", per_day)
    if n is None and days is None:
        raise LabError("Say how much data to simulate: n=10_000 payments, or days=28 (at per_day payments a day).")
    if days is not None:
        days = _check_count("days", days)
    if n is None:
        n = days * per_day
    n = _check_count("n", n)
    if days is None:
        days = max(1, math.ceil(n / per_day))
    drift_ts = start_ts if drift_start is None else _parse_start(drift_start)

    rng = np.random.default_rng([seed, 20260105])
    # when: a day, then an hour weighted by the daily rhythm, then the second
    day = rng.integers(0, days, n)
    hour = rng.choice(24, size=n, p=_HOUR_P)
    second = rng.integers(0, 3600, n)
    offsets = (day * 86_400 + hour * 3600 + second).astype("int64")
    order = np.argsort(offsets, kind="stable")
    offsets, hour = offsets[order], hour[order]
    timestamp = start_ts + pd.to_timedelta(offsets, unit="s")
    drifted = np.asarray(timestamp >= drift_ts) if name != "none" else np.zeros(n, dtype=bool)

    # what and how: drawn from the baseline and, for drifted rows, from the scenario's world
    u_cat, u_chan = rng.random(n), rng.random(n)
    holiday = drifted & (name == "holiday_season")
    category = np.where(holiday, _draw(u_cat, _HOLIDAY_CATEGORY_P), _draw(u_cat, _CATEGORY_P))
    channel = np.where(holiday, _draw(u_chan, _HOLIDAY_CHANNEL_P), _draw(u_chan, _CHANNEL_P))
    amount = np.exp(np.log(_CATEGORY_MEDIAN[category]) + 0.8 * rng.standard_normal(n))
    amount = np.where(holiday, amount * 1.5, amount)

    # who: a card from the bank's customer base, with its own history
    card_age, card_avg = _card_population()
    n_cards = len(card_age)
    card = rng.integers(0, n_cards, n)
    tx_count_24h = rng.poisson(1.5, n).astype("int64")
    # compromised cards: a fraudster uses a stolen card in a burst of payments within hours
    burst = _compromise_bursts(rng, offsets, card, n_cards, tx_count_24h)
    customer_age_days, avg_amount = card_age[card], card_avg[card]
    new_account = customer_age_days < 30
    distance = np.exp(np.log(8) + 1.2 * rng.standard_normal(n))
    distance_missing = rng.random(n) < 0.08
    country_mismatch = rng.random(n) < 0.04
    new_device = rng.random(n) < 0.06
    channel = np.where(burst & (rng.random(n) < 0.6), 2, channel)
    new_device |= burst & (rng.random(n) < 0.4)

    # card testing: a share of drifted traffic becomes bursts of tiny night-time online payments
    testing = drifted & (name == "card_testing") & (rng.random(n) < 0.03)
    k = int(testing.sum())
    if k:
        channel[testing] = 2
        category[testing] = np.where(rng.random(k) < 0.6, 6, 5)
        amount[testing] = rng.uniform(0.5, 5.0, k)
        night_hour = rng.integers(0, 5, k)
        offsets[testing] = offsets[testing] // 86_400 * 86_400 + night_hour * 3600 + rng.integers(0, 3600, k)
        hour[testing] = night_hour
    amount = np.round(np.maximum(amount, 0.5), 2)

    # the ground-truth mechanism
    online = channel == 2
    night = hour < 6
    usual = np.where(new_account, 60.0, avg_amount)
    ratio = np.log(amount / usual)
    logit = (
        _INTERCEPT
        + _SIGNAL * 2.2 / (1 + np.exp(-4 * (ratio - 1.1)))  # a step up past ~3x the usual amount
        + _SIGNAL * 0.9 * online
        + _SIGNAL * 1.4 * (online & night)
        + _SIGNAL * 1.7 * (online & new_device)
        + _SIGNAL * 1.6 * (country_mismatch & (amount > 200))
        + _SIGNAL * 0.45 * np.clip(tx_count_24h - 3, 0, 6)
        + _SIGNAL * _CATEGORY_RISK[category]
        + _SIGNAL * 0.8 * new_account
        + _SIGNAL * 0.7 * (~online & ~distance_missing & (distance > 150))
        + 4.5 * burst
    )
    if name == "card_testing":
        concept = drifted & online & night & (amount < 5)
        logit = logit + 6.0 * concept
    if name == "fraud_rate_spike":
        logit = logit + np.where(drifted, math.log(3.2), 0.0)
    is_fraud = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")

    # labels arrive late: chargebacks in 2-45 days; legitimate payments count as confirmed after 30
    delay_days = np.where(is_fraud == 1, np.clip(rng.gamma(2.0, 6.0, n), 2, 45), 30.0)

    # what the pipeline reports (after upstream bugs)
    reported_amount = np.where(drifted & (name == "amount_in_cents"), amount * 100, amount)
    new_device_col = pd.array(new_device, dtype="boolean")
    if name == "device_feature_missing":
        new_device_col[drifted] = pd.NA

    order2 = np.argsort(offsets, kind="stable")  # card-testing rows moved into the night
    timestamp = (start_ts + pd.to_timedelta(offsets, unit="s")).as_unit("us")
    frame = pd.DataFrame(
        {
            "timestamp": timestamp,
            "amount": reported_amount,
            "merchant_category": np.asarray(MERCHANT_CATEGORIES, dtype=object)[category],
            "channel": np.asarray(CHANNELS, dtype=object)[channel],
            "hour": hour.astype("int64"),
            "customer_age_days": customer_age_days,
            "avg_amount_30d": np.where(new_account, np.nan, np.round(avg_amount, 2)),
            "tx_count_24h": tx_count_24h,
            "distance_from_home_km": np.where(distance_missing, np.nan, np.round(distance, 1)),
            "country_mismatch": country_mismatch,
            "new_device": new_device_col,
            "is_fraud": is_fraud,
            "label_available_at": (timestamp + pd.to_timedelta(delay_days * 86_400, unit="s")).as_unit("us"),
        }
    )
    frame = frame.iloc[order2].reset_index(drop=True)
    frame.insert(0, "transaction_id", _ids(seed, start_ts, n))
    frame = _with_contract_dtypes(frame)
    frame.attrs["provenance"] = {
        "generator": "mlops_lab.data.simulate_transactions",
        "seed": seed,
        "start": str(start_ts.date()),
        "days": days,
        "rows": n,
        "per_day": per_day,
        "scenario": name,
        "drift_start": str(drift_ts.date()) if name != "none" else None,
        "contract_version": CONTRACT_VERSION,
        "contract_hash": contract_hash(),
    }
    return frame


@functools.cache
def _card_population(size: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """The bank's cards: account age and usual spend. One fixed population (whatever the seed),
    so batches simulated with different seeds are different payments by the same customers."""
    rng = np.random.default_rng([config.SEED, 1])
    age = np.minimum(rng.exponential(900, size).astype("int64") + 1, 36_000)
    avg = np.exp(np.log(60) + 0.6 * rng.standard_normal(size))
    age.flags.writeable = avg.flags.writeable = False
    return age, avg


def _compromise_bursts(rng, offsets, card, n_cards, tx_count_24h) -> np.ndarray:
    """Stolen cards: about 0.6% of payments belong to bursts of 3-7 payments that a fraudster
    makes with one card within hours. The burst's payments share that card's history features,
    and bursts are spread evenly over time. Fraud therefore clusters by card and time: a random
    split puts payments of the same burst on both sides and lets the model recognise the card,
    which production never can (see time_split). Changes ``card`` and ``tx_count_24h`` in place."""
    n = len(offsets)
    burst = np.zeros(n, dtype=bool)
    if int(n * 0.006) < 3:  # too few payments for a burst
        return burst
    chosen = np.sort(rng.choice(n, size=int(n * 0.006), replace=False))  # time-ordered rows
    size = int(rng.integers(3, 8))
    group = np.arange(len(chosen)) // size  # consecutive chosen payments form one burst
    card[chosen] = rng.integers(0, n_cards, group.max() + 1)[group]
    tx_count_24h[chosen] = np.arange(len(chosen)) % size + rng.poisson(1.0, len(chosen))
    burst[chosen] = True
    return burst


def _draw(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw of category codes from uniforms (vectorised, and stable across scenarios)."""
    return np.minimum(np.searchsorted(np.cumsum(p), u, side="right"), len(p) - 1)


def _ids(seed: int, start: pd.Timestamp, n: int) -> np.ndarray:
    prefix = f"tx-{start:%Y%m%d}-{seed}-"
    return (prefix + pd.Series(np.arange(n)).astype(str).str.zfill(8)).to_numpy(dtype=object)


# --------------------------------------------------------------------------- versioning


def fingerprint(frame: pd.DataFrame) -> str:
    """A content hash of a dataset: same rows, columns and types give the same 16 hex digits,
    on any machine and in any run. Row order matters (data is time-ordered)."""
    if not isinstance(frame, pd.DataFrame):
        raise LabError(f"fingerprint expects a pandas DataFrame, got {type(frame).__name__}.")
    digest = hashlib.sha256()
    digest.update(json.dumps([[str(c), str(frame[c].dtype)] for c in frame.columns]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def dataset_record(frame: pd.DataFrame, name: str | None = None) -> dict[str, Any]:
    """What to log with a training run: the fingerprint plus how the data was made."""
    record = {"name": name, "fingerprint": fingerprint(frame), "rows": len(frame),
              "fraud_rate": round(float(frame["is_fraud"].mean()), 5) if "is_fraud" in frame else None,
              "contract_version": CONTRACT_VERSION, "contract_hash": contract_hash()}
    if "timestamp" in frame and len(frame):
        record["from"], record["to"] = str(frame["timestamp"].min()), str(frame["timestamp"].max())
    record["provenance"] = dict(frame.attrs.get("provenance", {}))
    return record


# --------------------------------------------------------------------------- splitting


LABEL_WINDOW_DAYS = 30  # a payment nobody disputed within 30 days counts as legitimate


def time_split(frame: pd.DataFrame, valid_days: int = 7, holdout_days: int = 7, as_of=None):
    """Split by time into (train, valid, holdout): the last ``holdout_days`` are the recent
    held-out data the promotion gate uses, the ``valid_days`` before them tune thresholds.

    Only labels that had arrived by the decision time ``as_of`` are used: each part keeps the rows
    whose ``label_available_at <= as_of`` (see :func:`labels_known_at`). By default the decision is
    taken when the holdout's labels have matured, ``LABEL_WINDOW_DAYS`` after the data ends (a few
    slow chargebacks still arrive later and are left out, as they would be in production).

    Why not a random split? Fraud patterns change over time and neighbouring payments share
    cards, merchants and attacks, so a random split lets the model peek at the future and
    flatters it. A time split asks the question production asks: trained on the past, how
    well does it do next week?
    """
    if "timestamp" not in frame:
        raise LabError("time_split needs a 'timestamp' column; this frame has none.")
    for name, value in (("valid_days", valid_days), ("holdout_days", holdout_days)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise LabError(f"{name}={value!r} must be a whole number of days, at least 1.")
    end = frame["timestamp"].max().normalize() + pd.Timedelta(days=1)
    holdout_start = end - pd.Timedelta(days=holdout_days)
    valid_start = holdout_start - pd.Timedelta(days=valid_days)
    if "label_available_at" in frame:
        frame = labels_known_at(frame, end + pd.Timedelta(days=LABEL_WINDOW_DAYS) if as_of is None else as_of)
    ts = frame["timestamp"]
    parts = (frame[ts < valid_start], frame[(ts >= valid_start) & (ts < holdout_start)], frame[ts >= holdout_start])
    if any(len(p) == 0 for p in parts):
        days = (end - ts.min().normalize()).days if len(ts) else 0
        raise LabError(
            f"The data covers {days} day(s) with known labels, too few for {valid_days} validation and "
            f"{holdout_days} holdout days plus some training days. Simulate more days, shorten the windows, "
            "or decide later (as_of) so that more labels have arrived."
        )
    for part in parts:
        part.attrs = dict(frame.attrs)
    return tuple(p.reset_index(drop=True) for p in parts)


def labels_known_at(frame: pd.DataFrame, as_of) -> pd.DataFrame:
    """The rows whose label had arrived by ``as_of`` (``label_available_at <= as_of``).

    Labels arrive late (chargebacks take days to weeks), so any decision made at ``as_of`` (a
    split, a gate, a live metric) may only use these rows. Evaluating on rows whose label came
    later uses knowledge nobody had at decision time."""
    if "label_available_at" not in frame:
        raise LabError("labels_known_at needs a 'label_available_at' column; this frame has none.")
    try:
        cutoff = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise LabError(f"as_of={as_of!r} is not a time; pass a timestamp such as '2026-02-16 00:00'.") from exc
    if pd.isna(cutoff):
        raise LabError("as_of is missing (NaT); pass the decision time as a timestamp.")
    known = frame[frame["label_available_at"] <= cutoff].reset_index(drop=True)
    known.attrs = dict(frame.attrs)
    return known


# --------------------------------------------------------------------------- the workspace snapshot

COURSE_DATA = {"days": 42, "start": "2026-01-05", "seed": config.SEED}


def snapshot_path():
    return config.path("data", "transactions.parquet")


def save_snapshot(frame: pd.DataFrame) -> dict[str, Any]:
    """Write the course dataset and its record into the workspace (what lab 01 leaves behind)."""
    config.ensure_home()
    path = snapshot_path()
    path.parent.mkdir(exist_ok=True)
    frame.to_parquet(path, index=False)
    record = dataset_record(frame, name="course transactions")
    path.with_suffix(".json").write_text(json.dumps(record, indent=1, sort_keys=True))
    return record


def load_snapshot() -> pd.DataFrame:
    """The course dataset lab 01 saved (``lab.setup(2)`` makes it if it is missing)."""
    path = snapshot_path()
    if not path.exists():
        raise LabError(f"No course dataset at {path} yet: run lab 01, or call lab.setup(2) to create it.")
    frame = pd.read_parquet(path)
    frame = _with_contract_dtypes(frame)
    record = json.loads(path.with_suffix(".json").read_text())
    frame.attrs["provenance"] = record.get("provenance", {})
    return frame


def course_dataset() -> pd.DataFrame:
    return simulate_transactions(days=COURSE_DATA["days"], start=COURSE_DATA["start"], seed=COURSE_DATA["seed"])


def example_broken_batch(n: int = 2_000, seed: int = 7) -> pd.DataFrame:
    """A batch as a new upstream service sends it: channel in capitals, hour as a float, and a
    debugging column nobody asked for. Every row is a real payment; the values just need fixing."""
    batch = simulate_transactions(n, start="2026-02-16", seed=seed)
    broken = batch.copy()
    broken["channel"] = broken["channel"].str.upper()
    broken["hour"] = broken["hour"].astype("float64")
    broken["debug_trace_id"] = "trace-" + broken["transaction_id"].str[-6:]
    broken.attrs = {}
    return broken
