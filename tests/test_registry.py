import pytest

from mlops_lab import data, registry, training
from mlops_lab.errors import LabError

from .conftest import using_home


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A workspace with three logged runs: baseline, boosted, and a near-copy of boosted."""
    with using_home(tmp_path_factory.mktemp("registry")):
        train, valid, holdout = data.time_split(data.course_dataset())
        runs = {
            "baseline": training.train_and_log("logistic_regression", train, valid),
            "boosted": training.train_and_log("gradient_boosting", train, valid),
            "boosted_twin": training.train_and_log("gradient_boosting", train, valid, learning_rate=0.105),
        }
        yield runs, holdout


def test_missing_champion_says_how_to_get_one(store):
    with pytest.raises(LabError, match=r"No champion yet .*run lab 03 or `lab.setup\(4\)`"):
        registry.load("champion", name="nobody")
    with pytest.raises(LabError, match="No champion yet"):
        registry.rollback(name="nobody")


def test_gate_story(store):
    runs, holdout = store
    name = "gate-story"
    first = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    assert first.verdict == "first model" and first.promoted
    assert registry.alias_version("champion", name) == first.challenger_version

    better = registry.promote_if_better(registry.register(runs["boosted"], name=name), holdout, name=name)
    assert better.verdict == "promoted" and better.interval[0] > 0 and better.difference > registry.MARGIN
    assert registry.alias_version("champion", name) == better.challenger_version
    record = registry.decision_record(better.challenger_version, name=name)
    assert record["data_fingerprint"] == data.fingerprint(holdout)
    assert record["champion_version"] == first.challenger_version
    assert record["challenger_pr_auc"] == pytest.approx(better.challenger_pr_auc)

    worse = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    assert worse.verdict == "kept champion" and worse.reason == "the challenger is worse"
    assert registry.alias_version("champion", name) == better.challenger_version

    twin = registry.promote_if_better(registry.register(runs["boosted_twin"], name=name), holdout, name=name)
    assert not twin.promoted and abs(twin.difference) < registry.MARGIN
    assert registry.alias_version("champion", name) == better.challenger_version

    # what models:/name@champion loads is what the gate chose
    mlflow = training.mlflow_client()
    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    chosen = registry.load(better.challenger_version, name=name)
    assert (training.predict_scores(loaded, holdout) == training.predict_scores(chosen, holdout)).all()

    assert registry.rollback(name=name) == first.challenger_version
    assert registry.alias_version("champion", name) == first.challenger_version
    with pytest.raises(LabError, match="first champion: there is no earlier champion"):
        registry.rollback(name=name)


def test_promotion_rule_needs_real_and_large_enough_gains():
    assert registry.should_promote(0.02, 0.05)
    assert not registry.should_promote(-0.001, 0.05)
    assert not registry.should_promote(0.001, 0.005)


def test_challenger_on_another_contract_is_refused(store):
    runs, holdout = store
    name = "contract-check"
    version = registry.register(runs["boosted"], name=name)
    mlflow = training.mlflow_client()
    mlflow.MlflowClient().set_model_version_tag(name, version, "data.contract_hash", "0123456789ab")
    with pytest.raises(LabError, match="trained on data contract .* retrain it on current data"):
        registry.promote_if_better(version, holdout, name=name)


def test_unknown_run_is_a_clear_error(store):
    with pytest.raises(LabError, match="no run 'nope'.*compare_runs"):
        registry.register("nope")
