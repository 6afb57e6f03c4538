import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_lab import data, training
from mlops_lab.errors import LabError

FEATURES = data.feature_columns()


def test_same_arguments_give_identical_data():
    a = data.simulate_transactions(5_000, seed=3, scenario="holiday_season")
    b = data.simulate_transactions(5_000, seed=3, scenario="holiday_season")
    assert data.fingerprint(a) == data.fingerprint(b)
    assert data.fingerprint(a) != data.fingerprint(data.simulate_transactions(5_000, seed=4))


def test_fingerprint_is_stable_across_machines_and_runs():
    # A golden value: if it changes, every recorded training run loses its link to its data.
    frame = data.simulate_transactions(1_000, start="2026-01-05", seed=42)
    assert data.fingerprint(frame) == GOLDEN_FINGERPRINT


GOLDEN_FINGERPRINT = "1560ddf82d22bafc"


def test_fingerprint_sees_a_one_cent_change():
    frame = data.simulate_transactions(1_000)
    changed = frame.copy()
    changed.loc[10, "amount"] += 0.01
    assert data.fingerprint(frame) != data.fingerprint(changed)


def test_shape_types_and_rates():
    frame = data.simulate_transactions(days=14)
    assert list(frame.columns) == [c.name for c in data.CONTRACT]
    assert len(frame) == 14 * data.DEFAULT_PER_DAY
    assert frame["timestamp"].is_monotonic_increasing and frame["transaction_id"].is_unique
    assert 0.005 <= frame["is_fraud"].mean() <= 0.02
    assert data.validate_batch(frame).ok
    assert frame["avg_amount_30d"].isna().any() and frame["distance_from_home_km"].isna().any()
    assert set(frame["merchant_category"]) == set(data.MERCHANT_CATEGORIES)


def test_labels_arrive_late():
    frame = data.simulate_transactions(days=14)
    delay_days = (frame["label_available_at"] - frame["timestamp"]).dt.total_seconds() / 86_400
    fraud = frame["is_fraud"] == 1
    assert delay_days[fraud].between(2, 45).all() and delay_days[fraud].std() > 1
    assert (delay_days[~fraud] == 30).all()


def test_provenance_is_recorded():
    frame = data.simulate_transactions(days=3, seed=9, scenario="card_testing", drift_start="2026-01-06")
    record = data.dataset_record(frame, name="x")
    assert record["provenance"]["seed"] == 9 and record["provenance"]["scenario"] == "card_testing"
    assert record["provenance"]["drift_start"] == "2026-01-06"
    assert record["fingerprint"] == data.fingerprint(frame) and record["contract_hash"] == data.contract_hash()


def test_a_million_rows():
    # speed is measured by benchmarks/simulator.py, not asserted here
    frame = data.simulate_transactions(1_000_000)
    assert len(frame) == 1_000_000 and frame["transaction_id"].is_unique
    assert 0.005 <= frame["is_fraud"].mean() <= 0.02


def _pr_auc(kind, train, test):
    from sklearn.metrics import average_precision_score

    model = training.build_pipeline(kind).fit(train[FEATURES], train["is_fraud"])
    return average_precision_score(test["is_fraud"], model.predict_proba(test[FEATURES])[:, 1])


def test_learnable_but_not_trivial():
    train, _, holdout = data.time_split(data.course_dataset())
    base = holdout["is_fraud"].mean()
    lr = _pr_auc("logistic_regression", train, holdout)
    gb = _pr_auc("gradient_boosting", train, holdout)
    assert 10 * base < lr < gb < 0.8, (base, lr, gb)
    assert gb - lr > 0.03, (lr, gb)


# ------------------------------------------------------------------ drift ground truth


def _differs(ref: pd.Series, cur: pd.Series, kind: str) -> float:
    """p-value of a two-sample test on one column (missing values tested separately)."""
    pvalues = []
    missing = np.array([[ref.isna().sum(), ref.notna().sum()], [cur.isna().sum(), cur.notna().sum()]])
    if missing[:, 0].sum() > 0:
        pvalues.append(stats.chi2_contingency(missing)[1])
    ref, cur = ref.dropna(), cur.dropna()
    if len(ref) and len(cur):
        if kind == "numeric":
            pvalues.append(stats.ks_2samp(ref.astype(float), cur.astype(float)).pvalue)
        else:
            table = pd.crosstab(np.r_[np.zeros(len(ref)), np.ones(len(cur))], np.r_[ref.astype(str), cur.astype(str)])
            pvalues.append(stats.chi2_contingency(table)[1] if table.shape[1] > 1 else 1.0)
    return min(pvalues) * len(pvalues) if pvalues else 1.0


@pytest.mark.parametrize("name", list(data.SCENARIOS))
def test_scenario_ground_truth(name):
    truth = data.scenario_truth(name)
    reference = data.simulate_transactions(60_000, seed=1)
    current = data.simulate_transactions(60_000, seed=2, start="2026-03-02", scenario=name)
    kinds = {c.name: ("numeric" if c.kind == "numeric" else "categorical") for c in data.contract_columns("feature")}
    pvalues = pd.Series({col: _differs(reference[col], current[col], kinds[col]) for col in FEATURES})
    significant = pd.Series(stats.false_discovery_control(pvalues.clip(upper=1)) < 0.01, index=pvalues.index)
    assert set(significant[significant].index) == set(truth.drifted_columns), pvalues.round(4).to_dict()
    ref_rate, cur_rate = reference["is_fraud"].mean(), current["is_fraud"].mean()
    p_rate = stats.chi2_contingency([[reference["is_fraud"].sum(), len(reference)],
                                     [current["is_fraud"].sum(), len(current)]])[1]
    if truth.fraud_rate == "same":
        assert p_rate > 0.001, (ref_rate, cur_rate)
    else:
        assert p_rate < 0.001 and (cur_rate > ref_rate) == (truth.fraud_rate == "up"), (ref_rate, cur_rate)


def test_concept_drift_changes_the_mechanism_not_just_the_mix():
    old = data.simulate_transactions(60_000, seed=1)
    new = data.simulate_transactions(60_000, seed=2, scenario="card_testing")
    def tiny_night_online(f):
        return f[(f["amount"] < 5) & (f["hour"] < 6) & (f["channel"] == "online")]["is_fraud"].mean()
    assert tiny_night_online(new) > 0.3 > 3 * tiny_night_online(old)


def test_scenario_starts_at_its_date():
    frame = data.simulate_transactions(days=10, scenario="amount_in_cents", drift_start="2026-01-10")
    before = frame[frame["timestamp"] < "2026-01-10"]["amount"].median()
    after = frame[frame["timestamp"] >= "2026-01-10"]["amount"].median()
    assert 50 < after / before < 200


def test_scenarios_cover_the_required_kinds():
    truths = data.SCENARIOS.values()
    assert len(data.SCENARIOS) >= 5 and "none" in data.SCENARIOS
    assert any(t.concept_drift for t in truths) and any(t.data_bug for t in truths)
    assert any(not t.drifted_columns and t.fraud_rate == "up" for t in truths)
    assert any(t.drifted_columns and not t.concept_drift and not t.data_bug for t in truths)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"n": 0}, "n=0 must be a positive whole number"),
        ({"n": -5}, "n=-5 must be a positive whole number"),
        ({"n": 2.5}, "n=2.5 must be a positive whole number"),
        ({"days": 0}, "days=0 must be a positive whole number"),
        ({}, "Say how much data to simulate"),
        ({"n": 10, "start": "05/01/2026x"}, "is not a date. Give it as 'YYYY-MM-DD'"),
        ({"n": 10, "scenario": "alien_invasion"}, "Unknown drift scenario 'alien_invasion'. The scenarios are: none, holiday_season"),
    ],
)
def test_bad_simulator_arguments_say_what_to_do(kwargs, words):
    with pytest.raises(LabError) as info:
        data.simulate_transactions(**kwargs)
    assert words in str(info.value)


@pytest.fixture(scope="module")
def batch():
    return data.simulate_transactions(300)


def _violations(frame):
    report = data.validate_batch(frame)
    assert not report.ok
    return {(v.column, v.rule) for v in report.violations.itertuples()}


def test_missing_and_extra_columns(batch):
    found = _violations(batch.drop(columns=["amount"]).assign(promo_code="X"))
    assert ("amount", "is missing (required by the data contract)") in found
    assert ("promo_code", "is not in the data contract (unexpected column)") in found


def test_wrong_dtypes(batch):
    found = _violations(batch.assign(amount=batch["amount"].astype(str), tx_count_24h=batch["tx_count_24h"] + 0.5))
    assert ("amount", "must be numeric") in found
    assert ("tx_count_24h", "must be whole numbers (int)") in found


def test_out_of_range_unknown_category_and_nan(batch):
    bad = batch.copy()
    bad.loc[0, "amount"] = -3.0
    bad.loc[1, "amount"] = np.inf
    bad.loc[2, "hour"] = 24
    bad.loc[3, "merchant_category"] = "casino"
    bad.loc[4, "customer_age_days"] = -1
    bad.loc[5, "new_device"] = pd.NA
    report = data.validate_batch(bad)
    rows = {(v.column, v.rule): v for v in report.violations.itertuples()}
    assert rows[("amount", "must be between 0.01 and 50000")].count == 2
    assert "-3.0" in rows[("amount", "must be between 0.01 and 50000")].examples
    assert ("hour", "must be between 0 and 23") in rows
    assert "casino" in rows[("merchant_category", f"must be one of {', '.join(data.MERCHANT_CATEGORIES)}")].examples
    assert ("customer_age_days", "must be between 0 and 36500") in rows
    assert ("new_device", "must not be empty (NaN/None)") in rows
    assert len(report.violations) == 5
    with pytest.raises(LabError, match="amount: must be between"):
        report.raise_if_invalid()


def test_nullable_columns_may_be_empty(batch):
    assert data.validate_batch(batch.assign(avg_amount_30d=np.nan)).ok


# ------------------------------------------------------------------ split


def test_time_split_keeps_the_future_out_of_training():
    train, valid, holdout = data.time_split(data.simulate_transactions(days=30), valid_days=5, holdout_days=7)
    assert train["timestamp"].max() < valid["timestamp"].min() <= valid["timestamp"].max() < holdout["timestamp"].min()
    assert holdout["timestamp"].dt.normalize().nunique() == 7 and valid["timestamp"].dt.normalize().nunique() == 5
    frame = data.simulate_transactions(days=30)
    late = frame["label_available_at"] > frame["timestamp"].max().normalize() + pd.Timedelta(days=31)
    assert len(train) + len(valid) + len(holdout) == 30 * data.DEFAULT_PER_DAY - late.sum()


def test_time_split_uses_only_labels_known_at_the_decision_time():
    frame = data.simulate_transactions(days=30, start="2026-01-05", seed=3)
    as_of = pd.Timestamp("2026-02-04 12:00")  # the day the data ends: last week's labels mostly missing
    parts = data.time_split(frame, valid_days=5, holdout_days=7, as_of=as_of)
    for part in parts:
        assert (part["label_available_at"] <= as_of).all()
    assert sum(map(len, parts)) == len(data.labels_known_at(frame, as_of)) < len(frame)
    # by default the decision waits for the holdout's labels to mature: only the slowest chargebacks miss it
    default = data.time_split(frame, valid_days=5, holdout_days=7)
    assert len(frame) - sum(map(len, default)) < 10


def test_time_split_on_too_little_data():
    with pytest.raises(LabError, match="too few for 7 validation and 7 holdout days"):
        data.time_split(data.simulate_transactions(days=10))


@pytest.mark.parametrize("n", [1, 2, 10, 499])
def test_tiny_batches(n):
    frame = data.simulate_transactions(n)
    assert len(frame) == n and data.validate_batch(frame).ok


def test_labels_known_at_keeps_only_labels_that_had_arrived():
    frame = data.simulate_transactions(days=60, start="2026-01-05", seed=3)
    as_of = frame["timestamp"].max()  # the end of the data: recent payments have no label yet
    known = data.labels_known_at(frame, as_of)
    assert 0 < len(known) < len(frame)
    assert (known["label_available_at"] <= as_of).all()
    # a label one second late is excluded; exactly on time is included
    edge = frame["label_available_at"].iloc[0]
    assert frame["transaction_id"].iloc[0] in set(data.labels_known_at(frame, edge)["transaction_id"])
    late = data.labels_known_at(frame, edge - pd.Timedelta(seconds=1))
    assert frame["transaction_id"].iloc[0] not in set(late["transaction_id"])
    with pytest.raises(LabError, match="as_of"):
        data.labels_known_at(frame, "not a time")
