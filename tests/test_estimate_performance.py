"""monitoring.estimate_performance: precision, recall, flag rate and cost of a window before its labels land."""

import numpy as np
import pandas as pd
import pytest

from mlops_lab import data
from mlops_lab.errors import LabError
from mlops_lab.monitoring import estimate_performance
from mlops_lab.monitoring.performance import expected_counts, realised_performance

from .conftest import using_home


def _calibrated_world(seed, n):
    """Scores that are honest probabilities: fraud happens with exactly the score's probability."""
    rng = np.random.default_rng(seed)
    scores = rng.beta(0.3, 12, n)
    return scores, (rng.random(n) < scores).astype(int), rng.lognormal(4, 1, n)


def test_expected_counts_add_probabilities_not_decisions():
    counts = expected_counts([0.9, 0.3, 0.2, 0.0], [0.8, 0.5, 0.1, 0.5], threshold=0.5)
    assert counts == pytest.approx({"tp": 1.2, "fp": 1.8, "fn": 0.2, "tn": 0.8})  # 0.5 is flagged: score >= threshold
    assert sum(counts.values()) == pytest.approx(4)


def test_interval_covers_the_truth_when_scores_are_calibrated():
    cal_scores, cal_labels, _ = _calibrated_world(0, 30_000)
    covered = {"precision": 0, "recall": 0, "cost_per_1000": 0}
    for seed in range(1, 21):
        scores, fraud, amounts = _calibrated_world(seed, 10_000)
        estimate = estimate_performance(scores, 0.1, cal_scores, cal_labels, amounts, draws=400, seed=seed)
        realised = realised_performance(scores, 0.1, fraud, amounts)
        for figure in covered:
            covered[figure] += estimate.loc[figure, "low"] <= realised[figure] <= estimate.loc[figure, "high"]
        assert estimate.loc["flag_rate", "estimate"] == realised["flag_rate"]  # no labels needed for that one
    assert min(covered.values()) >= 18, covered


def test_bad_input_says_what_to_pass():
    scores, labels, amounts = _calibrated_world(1, 2_000)
    with pytest.raises(LabError, match="threshold=1.5"):
        estimate_performance(scores, 1.5, scores, labels)
    with pytest.raises(LabError, match="one finite amount per score"):
        estimate_performance(scores, 0.1, scores, labels, amounts[:10])
    with pytest.raises(LabError, match="at least 10 of each"):
        estimate_performance(scores, 0.1, scores[:50], np.zeros(50))
    with pytest.raises(LabError, match="0 or 1"):
        estimate_performance(scores, 0.1, scores, labels * 2)
    table = estimate_performance(scores, 0.1, scores, labels)  # no amounts: no cost, said as NaN
    assert list(table.index) == ["precision", "recall", "flag_rate", "cost_per_1000"]
    assert np.isnan(table.loc["cost_per_1000", "estimate"])


@pytest.fixture(scope="module")
def champion_and_calibration(course_home):
    from mlops_lab.serving.model import load_from_registry

    with using_home(course_home):
        model = load_from_registry("champion")
        _, valid, holdout = data.time_split(data.load_snapshot())
    calibration = pd.concat([valid, holdout])
    scores = model.pipeline.predict_proba(calibration[data.feature_columns()])[:, 1]
    return model, scores, calibration["is_fraud"].to_numpy(), calibration["amount"].to_numpy()


def _week(model, cal_scores, cal_labels, cal_amounts, seed, scenario="none"):
    frame = data.simulate_transactions(days=14, start="2026-02-16", seed=seed, scenario=scenario,
                                       drift_start="2026-02-23", per_day=2_000)
    week = frame[frame["timestamp"] >= "2026-02-23"]
    scores = model.pipeline.predict_proba(week[data.feature_columns()])[:, 1]
    estimate = estimate_performance(scores, model.threshold, cal_scores, cal_labels, week["amount"],
                                    calibration_amounts=cal_amounts)
    return estimate, realised_performance(scores, model.threshold, week["is_fraud"], week["amount"])


def test_no_drift_weeks_are_covered_in_at_least_90_percent_of_20_seeds(champion_and_calibration):
    covered = {"precision": 0, "cost_per_1000": 0}
    for seed in range(100, 120):
        estimate, realised = _week(*champion_and_calibration, seed)
        for figure in covered:
            covered[figure] += estimate.loc[figure, "low"] <= realised[figure] <= estimate.loc[figure, "high"]
    assert covered["precision"] >= 18 and covered["cost_per_1000"] >= 18, covered


def test_concept_drift_is_missed_and_the_holiday_is_tracked(champion_and_calibration):
    estimate, realised = _week(*champion_and_calibration, 7, "card_testing")
    # concept drift: the new fraud scores low, so the scores cannot show it: recall falls, the estimate does not
    assert realised["recall"] < estimate.loc["recall", "low"] - 0.1
    estimate, realised = _week(*champion_and_calibration, 7, "fraud_rate_spike")
    # more fraud for the same inputs: the cost climbs far above what the scores say
    assert realised["cost_per_1000"] > estimate.loc["cost_per_1000", "high"] * 1.3
    estimate, realised = _week(*champion_and_calibration, 7, "holiday_season")
    # covariate shift: other payments, the same fraud given the inputs
    for figure in ("precision", "recall", "cost_per_1000"):
        assert estimate.loc[figure, "low"] <= realised[figure] <= estimate.loc[figure, "high"], figure
