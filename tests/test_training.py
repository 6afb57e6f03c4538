import numpy as np
import pandas as pd
import pytest

from mlops_lab import config, data, training
from mlops_lab.errors import LabError

from .conftest import using_home


@pytest.fixture(scope="module")
def split():
    return data.time_split(data.course_dataset())


@pytest.fixture(scope="module")
def boosted(split):
    train, valid, _ = split
    return training.train("gradient_boosting", train, valid)


def test_pipeline_is_built_from_the_contract():
    pipeline = training.build_pipeline("logistic_regression")
    columns = pipeline.named_steps["features"].transformers
    used = [c for _, _, cols in columns for c in cols]
    assert sorted(used) == sorted(data.feature_columns())


def test_threshold_minimises_cost(split, boosted):
    _, valid, _ = split
    scores = training.predict_scores(boosted.pipeline, valid)
    curve = training.cost_curve(valid["is_fraud"], scores, valid["amount"])
    y, a = valid["is_fraud"].to_numpy(), valid["amount"].to_numpy()

    def cost(t):
        flagged = scores >= t
        return ((a * (y == 1) * ~flagged).sum() + flagged.sum() * training.REVIEW_FEE
                + (flagged & (y == 0)).sum() * training.DECLINE_COST)

    best = boosted.threshold
    per_day = (scores >= best).sum() / training.days_covered(valid)
    assert per_day <= training.REVIEWS_PER_DAY
    affordable = curve[curve["flagged"] / training.days_covered(valid) <= training.REVIEWS_PER_DAY]
    assert cost(best) == pytest.approx(affordable["cost"].min())
    for t in (0.5, 0.1, best * 2):
        assert cost(best) <= cost(t) + 1e-6
    assert boosted.valid_metrics["cost"] == pytest.approx(cost(best))


def test_metrics_on_a_tiny_known_case():
    m = training.metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9], [10, 10, 100, 200], threshold=0.5, review_fee=5)
    assert m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["cost"] == 100 + 2 * 5 + 1 * training.DECLINE_COST  # missed the 100 fraud; reviewed two; held one customer
    assert m["roc_auc"] == 0.75


def test_boosted_beats_baseline_on_holdout(split, boosted):
    train, valid, holdout = split
    baseline = training.train("logistic_regression", train, valid)
    assert (training.evaluate(boosted.pipeline, holdout, boosted.threshold)["pr_auc"]
            > training.evaluate(baseline.pipeline, holdout, baseline.threshold)["pr_auc"])


def test_unfitted_pipeline_says_fit_first(split):
    with pytest.raises(LabError, match="not fitted yet: call pipeline.fit"):
        training.evaluate(training.build_pipeline(), split[2], 0.5)


def test_data_that_fails_the_contract_is_refused(split, boosted):
    bad = split[2].head(500).copy()
    bad.loc[3, "channel"] = "carrier pigeon"
    with pytest.raises(LabError, match=r"(?s)fails the contract.*channel: must be one of"):
        training.evaluate(boosted.pipeline, bad, 0.5)


def test_unknown_model_kind(split):
    with pytest.raises(LabError, match="Unknown model kind 'svm'; choose one of: logistic_regression"):
        training.build_pipeline("svm")


@pytest.fixture(scope="module")
def tracked(split, boosted, tmp_path_factory):
    with using_home(tmp_path_factory.mktemp("tracked")):
        yield training.log_training_run(boosted, split[1], run_name="boosted", holdout_frame=split[2])


def test_run_carries_its_fingerprint_threshold_and_model(tracked, split, boosted):
    mlflow = training.mlflow_client()
    run = mlflow.MlflowClient().get_run(tracked)
    assert run.data.tags["data.fingerprint"] == data.fingerprint(split[0])
    assert run.data.tags["data.contract_hash"] == data.contract_hash()
    assert float(run.data.params["threshold"]) == boosted.threshold
    assert run.data.metrics["valid_pr_auc"] == pytest.approx(boosted.valid_metrics["pr_auc"])
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(tracked, "plots")}
    assert artifacts == {"plots/pr_curve.png", "plots/cost_curve.png"}
    table = training.compare_runs()
    assert table.loc[tracked, "data_fingerprint"] == data.fingerprint(split[0])
    assert table.loc[tracked, "holdout_data"] == data.fingerprint(split[2])


def test_run_logs_its_three_datasets_and_links_metrics_to_validation(tracked, split):
    mlflow = training.mlflow_client()
    run = mlflow.get_run(tracked)
    inputs = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "validation", "holdout"}
    for context, part in zip(("training", "validation", "holdout"), split, strict=True):
        assert inputs[context].digest == data.fingerprint(part)  # the course fingerprint is the dataset digest
        assert f'"num_rows": {len(part)}' in inputs[context].profile
    assert training.data_versions(tracked) == {c: inputs[c].digest for c in inputs}
    model = mlflow.get_logged_model(run.outputs.model_outputs[0].model_id)
    linked = {m.key: (m.dataset_name, m.dataset_digest) for m in model.metrics}
    assert linked["valid_pr_auc"] == ("valid", data.fingerprint(split[1]))


def test_every_run_the_course_logs_has_its_three_datasets(use_course_home):
    mlflow = training.mlflow_client()
    runs = training.compare_runs()
    assert len(runs) >= 2
    for run_id in runs.index:
        versions = training.data_versions(run_id)
        assert set(versions) == {"training", "validation", "holdout"}, run_id
        assert all(len(d) == 16 for d in versions.values())
        assert mlflow.get_run(run_id).data.tags["data.fingerprint"] == versions["training"]


def test_logged_model_reloads_and_predicts_the_same(tracked, split, boosted):
    mlflow = training.mlflow_client()
    uri = mlflow.MlflowClient().get_run(tracked).data.tags["model_uri"]
    reloaded = mlflow.sklearn.load_model(uri)
    holdout = split[2]
    np.testing.assert_array_equal(training.predict_scores(reloaded, holdout),
                                  training.predict_scores(boosted.pipeline, holdout))
    pyfunc = mlflow.pyfunc.load_model(uri)
    probabilities = np.asarray(pyfunc.predict(holdout[data.feature_columns()].head(50)))
    np.testing.assert_allclose(probabilities[:, 1], training.predict_scores(boosted.pipeline, holdout.head(50)))


def test_corrupt_tracking_store_says_what_to_do(home):
    home.mkdir()
    (home / config.MARKER).write_text("")  # a workspace we made (the guard refuses a user's own folder)
    (home / "mlflow.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(LabError, match="not a readable MLflow database.*mlops-lab reset"):
        training.compare_runs()


def test_unwritable_tracking_store_says_what_to_do(unwritable_home):
    with pytest.raises(LabError, match="not writable"):
        training.compare_runs()


def test_cost_curve_handles_ties():
    curve = training.cost_curve([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9], [1, 10, 1, 20], review_fee=1)
    assert list(curve["threshold"]) == pytest.approx([1.0 + 1e-9, 0.9, 0.5, 0.2])
    assert list(curve["flagged"]) == [0, 1, 3, 4]
    assert isinstance(curve, pd.DataFrame)


def test_threshold_explorer_logic_and_widget(split, boosted):
    from mlops_lab import widgets

    _, valid, _ = split
    scores = training.predict_scores(boosted.pipeline, valid)
    m = training.metrics(valid["is_fraud"], scores, valid["amount"], boosted.threshold)
    text = widgets.describe_threshold(m, boosted.threshold, training.REVIEW_FEE)
    assert f"{m['recall']:.0%} of fraud" in text and f"EUR {m['cost']:,.0f}" in text
    box = widgets.threshold_explorer(boosted.pipeline, valid.head(3000))
    slider, fee, button = box.children[0].children
    before = box.children[1].value
    slider.value = 0.5  # moving the slider recomputes the text from metrics()
    after = box.children[1].value
    expected = training.metrics(valid.head(3000)["is_fraud"], training.predict_scores(boosted.pipeline, valid.head(3000)),
                                valid.head(3000)["amount"], 0.5)
    assert before != after and widgets.describe_threshold(expected, 0.5, fee.value) in after


def test_threshold_explorer_shows_the_figures_of_the_threshold_it_names(split, boosted):
    from mlops_lab import widgets

    valid = split[1].head(3000)
    box = widgets.threshold_explorer(boosted.pipeline, valid)
    slider, fee, button = box.children[0].children
    slider.value = 0.5
    button.click()  # jump to the cheapest threshold: the slider snaps to its step, the text must not
    scores = training.predict_scores(boosted.pipeline, valid)
    best = training.choose_threshold(valid["is_fraud"], scores, valid["amount"], days=training.days_covered(valid))
    expected = training.metrics(valid["is_fraud"], scores, valid["amount"], best)
    assert widgets.describe_threshold(expected, best, fee.value) in box.children[1].value


def test_threshold_respects_reviewer_capacity(split, boosted):
    _, valid, _ = split
    scores = training.predict_scores(boosted.pipeline, valid)
    days = training.days_covered(valid)
    free = training.choose_threshold(valid["is_fraud"], scores, valid["amount"], days=days, reviews_per_day=None)
    tight = training.choose_threshold(valid["is_fraud"], scores, valid["amount"], days=days, reviews_per_day=20)
    assert tight >= free
    assert (scores >= tight).sum() / days <= 20


def test_cost_aware_training_weighs_each_fraud_by_the_square_root_of_its_amount(split, boosted):
    train, valid, holdout = split
    frame = train.head(4).assign(is_fraud=[1, 1, 1, 0], amount=[900.0, 4.0, 0.5, 900.0])
    assert training.cost_weights(frame).tolist() == [30.0, 2.0, 1.0, 1.0]  # genuine payments weigh 1
    aware = training.train("gradient_boosting", train, valid, cost_aware=True)
    assert aware.weighting and boosted.weighting is None
    plain_scores, aware_scores = (training.predict_scores(m.pipeline, holdout) for m in (boosted, aware))
    assert not np.allclose(plain_scores, aware_scores)  # the weights reach the fit
    # on the holdout, the frauds it ranks highest are worth more than the plain model's
    fraud = holdout["is_fraud"].to_numpy() == 1
    top = lambda s: holdout["amount"].to_numpy()[fraud][np.argsort(-s[fraud])[:20]].mean()  # noqa: E731
    assert top(aware_scores) > top(plain_scores)
