"""Lab 02: Train & track. Pick the metric, log a run with its data, choose the threshold."""

from __future__ import annotations

import functools

import numpy as np

from .. import data, training
from . import exercise, require_attempt


@functools.cache
def _split():
    return data.time_split(data.course_dataset())


@exercise(
    "2.1",
    "Pick the metric for a rare class",
    solution='metric = "pr_auc"',
    hints=(
        "With under 1% fraud, a model that never flags anything is 99% accurate.",
        "You want a metric that looks only at how well fraud is ranked above legitimate payments, "
        "and punishes false alarms among the top scores.",
    ),
    reference=lambda: "pr_auc",
)
def _check_metric(value) -> None:
    require_attempt(value)
    choices = ("accuracy", "roc_auc", "pr_auc")
    assert value in choices, f"choose one of {choices}, got {value!r}"
    assert value != "accuracy", (
        "accuracy rewards a model that never flags fraud: with 0.9% fraud, 'never fraud' is 99.1% accurate"
    )
    assert value != "roc_auc", (
        "ROC-AUC is close to 1 for every model here (0.93-0.97): with so many legitimate payments, even "
        "thousands of false alarms barely move its false-positive rate. Look for the metric built on precision"
    )


def _reference_run() -> str:
    train, valid, _ = _split()
    return training.train_and_log("logistic_regression", train, valid, run_name="reference run (2.2)")


@exercise(
    "2.2",
    "Log a run with its data fingerprint",
    solution='''
mlflow = lab.training.use_tracking()  # the course's store and experiment
with mlflow.start_run(run_name="my first run") as run:
    mlflow.log_param("model_kind", "logistic_regression")
    mlflow.log_metric("valid_pr_auc", valid_pr_auc)
    mlflow.set_tag("data.fingerprint", lab.data.fingerprint(train))
my_run_id = run.info.run_id
''',
    hints=(
        "Start a run with `with mlflow.start_run() as run:`, then log inside the block.",
        "The fingerprint is `lab.data.fingerprint(train)`; store it as the tag `data.fingerprint`.",
        "Log the metric under the name `valid_pr_auc`, and return `run.info.run_id`.",
    ),
    reference=_reference_run,
)
def _check_logged_run(run_id) -> None:
    require_attempt(run_id)
    assert isinstance(run_id, str), f"expected the run id (a string, run.info.run_id), got {type(run_id).__name__}"
    mlflow = training.mlflow_client()
    try:
        run = mlflow.MlflowClient().get_run(run_id)
    except Exception:
        raise AssertionError(f"there is no run {run_id!r} in the course's tracking store") from None
    train, _, _ = _split()
    fingerprint = run.data.tags.get("data.fingerprint")
    assert fingerprint, "the run has no `data.fingerprint` tag: nobody could tell which data trained it"
    assert fingerprint == data.fingerprint(train), (
        f"the run's fingerprint {fingerprint} is not the training data's ({data.fingerprint(train)}): "
        "fingerprint `train`, not the whole dataset or the validation data"
    )
    assert "valid_pr_auc" in run.data.metrics, "log the validation PR-AUC as the metric `valid_pr_auc`"


def _costs(threshold: float) -> tuple[float, float]:
    """(cost at ``threshold``, cost at the best threshold) on the validation payments."""
    _, valid, _ = _split()
    scores = training.predict_scores(_trained_gb(), valid)
    curve = training.cost_curve(valid["is_fraud"], scores, valid["amount"])
    cost = training.metrics(valid["is_fraud"], scores, valid["amount"], threshold)["cost"]
    return cost, float(curve["cost"].min())


@functools.cache
def _trained_gb():
    train, valid, _ = _split()
    return training.train("gradient_boosting", train, valid).pipeline


def _reference_threshold() -> float:
    _, valid, _ = _split()
    scores = training.predict_scores(_trained_gb(), valid)
    return training.choose_threshold(valid["is_fraud"], scores, valid["amount"])


@exercise(
    "2.3",
    "Choose the threshold that minimises cost",
    solution='best_threshold = curve.loc[curve["cost"].idxmin(), "threshold"]',
    hints=(
        "`curve` has one row per threshold, with the expected cost in the column `cost`.",
        "`curve['cost'].idxmin()` is the row label of the cheapest threshold; read its `threshold` with .loc.",
    ),
    reference=_reference_threshold,
)
def _check_threshold(value) -> None:
    require_attempt(value)
    assert isinstance(value, int | float | np.floating) and 0 <= value <= 1, (
        f"expected a threshold between 0 and 1, got {value!r}"
    )
    cost, best = _costs(float(value))
    assert cost <= best * 1.005, (
        f"at threshold {value:.4g} the validation payments cost EUR {cost:,.0f}, but the best threshold costs "
        f"EUR {best:,.0f}. The default 0.5 ignores that a missed fraud costs its amount and a review costs "
        f"EUR {training.REVIEW_FEE:g}: pick the row of `curve` with the lowest cost"
    )
