"""The ML test helpers (mlops_lab.testing) catch what they claim to, on small simulated data.

Fast (no workspace, small models): `mlops-lab ci --stage unit-tests` runs this file."""

import pandas as pd
import pytest

from mlops_lab import data, testing, training


@pytest.fixture(scope="module")
def frame():
    return data.simulate_transactions(days=21, per_day=1_000, seed=3)


@pytest.fixture(scope="module")
def model(frame):
    return training.build_pipeline("logistic_regression").fit(frame[data.feature_columns()], frame["is_fraud"])


def test_clean_data_passes_every_data_test(frame):
    verdicts = [testing.follows_contract(frame), testing.unique_ids(frame), testing.consistent_times(frame),
                testing.labels_arrived(frame, frame["label_available_at"].max()), testing.no_leaky_features(frame)]
    assert all(verdicts), verdicts


def test_duplicated_payments_are_named(frame):
    doubled = pd.concat([frame, frame.iloc[[5, 9]]], ignore_index=True)
    verdict = testing.unique_ids(doubled)
    assert not verdict and "2 transaction_id(s) appear more than once" in verdict.detail
    assert frame["transaction_id"].iloc[5] in verdict.detail


def test_hour_that_disagrees_with_the_timestamp_fails(frame):
    shifted = frame.copy()
    shifted.loc[:9, "hour"] = (shifted.loc[:9, "hour"] + 1) % 24
    verdict = testing.consistent_times(shifted)
    assert not verdict and "10 rows whose hour is not the timestamp's hour" in verdict.detail


def test_a_label_from_after_the_snapshot_is_leakage(frame):
    as_of = frame["timestamp"].max()
    verdict = testing.labels_arrived(frame, as_of)
    late = int((frame["label_available_at"] > as_of).sum())
    assert not verdict and f"{late} rows carry a label that arrived after" in verdict.detail
    assert testing.labels_arrived(data.labels_known_at(frame, as_of), as_of)


def test_a_feature_computed_from_the_label_is_flagged(frame):
    leaky = frame.copy()
    leaky["new_device"] = (leaky["new_device"] | (leaky["is_fraud"] == 1)).astype("boolean")
    verdict = testing.no_leaky_features(leaky)
    assert not verdict and "new_device" in verdict.detail
    honest = testing.single_feature_auc(frame)
    assert honest.max() < testing.LEAKAGE_AUC and honest.index[0] in ("amount", "merchant_category")


def test_contract_verdict_names_the_broken_column(frame):
    broken = frame.copy()
    broken.loc[:4, "channel"] = "ONLINE"
    verdict = testing.follows_contract(broken)
    assert not verdict and "channel" in verdict.detail and "5 rows" in verdict.detail


def test_model_tests_separate_a_model_from_a_constant(frame, model):
    holdout = data.simulate_transactions(days=7, per_day=1_000, start="2026-02-16", seed=4)
    assert testing.beats_trivial_baseline(model, holdout)
    assert testing.quality_floor(model, holdout, 0.05)
    assert not testing.quality_floor(model, holdout, 0.99)

    class Constant:
        def predict_proba(self, x):
            import numpy as np

            return np.tile([0.99, 0.01], (len(x), 1))

    assert not testing.beats_trivial_baseline(Constant(), holdout)


def test_reliability_bins_are_deciles_and_overconfidence_fails(frame, model):
    table = testing.reliability(training.predict_scores(model, frame), frame["is_fraud"])
    assert len(table) == 10 and table["n"].sum() == len(frame)

    class Overconfident:
        def predict_proba(self, x):
            p = model.predict_proba(x)[:, 1] ** 0.3  # pushes every score up
            return pd.DataFrame({0: 1 - p, 1: p}).to_numpy()

    verdict = testing.calibrated(Overconfident(), frame)
    assert not verdict and "bin(s) off" in verdict.detail


def test_behavioural_helpers_catch_a_model_that_reads_what_it_should_not(frame, model):
    sample = frame.head(300)
    assert testing.invariance(model, sample, testing.new_transaction_id, "id")

    class ReadsTheMinute:  # a pipeline that (wrongly) uses the payment's minute
        def predict_proba(self, x):
            p = (x["timestamp"].dt.minute / 60.0).to_numpy()
            return pd.DataFrame({0: 1 - p, 1: p}).to_numpy()

    changed = testing.invariance(ReadsTheMinute(), sample, testing.same_hour_other_minute, "minute")
    assert not changed and "scores changed" in changed.detail


def test_directional_reports_a_failure_rate():
    class Inverted:  # lower scores for larger amounts: the wrong direction
        def predict_proba(self, x):
            p = 1 / (1 + x["amount"].to_numpy() / 100)
            return pd.DataFrame({0: 1 - p, 1: p}).to_numpy()

    sample = data.simulate_transactions(200, seed=8)
    verdict = testing.directional(Inverted(), sample, testing.risky_foreign_night, "bigger is riskier")
    assert not verdict and "moved the wrong way" in verdict.detail
    with pytest.raises(ValueError, match="not lower"):
        testing.directional(Inverted(), sample, testing.risky_foreign_night, "x", direction="up")


def test_obvious_cases_follow_the_contract():
    cases, expected = testing.obvious_cases()
    assert testing.follows_contract(cases) and len(cases) == len(expected) >= 5
