import pandas as pd
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


def test_gate_holdout_uses_only_final_labels_and_rolls_forward():
    frame = data.course_dataset()
    as_of = registry.decision_time(frame)
    assert as_of == pd.Timestamp("2026-03-18")
    holdout = registry.gate_holdout(frame, as_of)
    assert holdout["timestamp"].min() >= pd.Timestamp("2026-02-09")
    assert holdout["timestamp"].max() < pd.Timestamp("2026-02-16")
    assert (holdout["label_available_at"] <= as_of).all()
    window = frame[frame["timestamp"] >= pd.Timestamp("2026-02-09")]
    assert 0 < len(window) - len(holdout) < 20  # only the few chargebacks later than 30 days are left out
    earlier = registry.gate_holdout(frame, as_of - pd.Timedelta(days=7))
    assert earlier["timestamp"].max() < holdout["timestamp"].min()  # a week earlier, a week earlier data


def test_gate_runs_the_rule_it_is_given(store):
    runs, holdout = store
    name = "gate-rule"
    registry.promote_if_better(registry.register(runs["boosted"], name=name), holdout, name=name)
    seen = []

    def always(low, mean, margin):
        seen.append((low, mean, margin))
        return True

    worse = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name, rule=always)
    assert worse.promoted and seen and seen[0][1] < 0  # the rule decided, even for a worse model
    report = worse.report()
    assert list(report.columns) == ["PR-AUC", "expected cost at threshold (EUR)", "p99 scoring latency (ms)",
                                    "trained on (digest)"]
    assert report.iloc[0]["expected cost at threshold (EUR)"] > 0 and report.iloc[0]["p99 scoring latency (ms)"] > 0
    assert len(worse.bootstrap) > 250 and worse.interval[0] <= worse.difference <= worse.interval[1]
    with pytest.raises(LabError, match="must return True or False"):
        registry.promote_if_better(registry.register(runs["boosted"], name=name), holdout, name=name,
                                   rule=lambda low, mean, margin: None)


def test_gate_refuses_holdouts_with_different_digests(store):
    runs, holdout = store
    name = "gate-digests"
    first = registry.register(runs["baseline"], name=name)
    second = registry.register(runs["boosted"], name=name)
    this_week = registry.evaluate_on_holdout(second, holdout, name=name)
    other_week = registry.evaluate_on_holdout(first, holdout.iloc[: len(holdout) // 2], name=name)
    with pytest.raises(LabError, match="scored on holdout .* but champion .* on holdout .*not comparable"):
        registry.compare(this_week, other_week)
    same_week = registry.evaluate_on_holdout(first, holdout, name=name)
    assert registry.compare(this_week, same_week)[0] in (True, False)


def test_gate_reads_data_versions_from_run_inputs_and_refuses_seen_data(store):
    runs, holdout = store
    mlflow = training.mlflow_client()
    train, valid, _ = data.time_split(data.course_dataset())
    with mlflow.start_run(run_id=runs["boosted_twin"]):
        for frame, context in ((train, "training"), (valid, "validation"), (holdout, "holdout")):
            mlflow.log_input(mlflow.data.from_pandas(frame, name=context, targets="is_fraud"), context=context)
    name = "gate-inputs"
    version = registry.register(runs["boosted_twin"], name=name)
    logged = registry.run_datasets(version, name=name)
    assert set(logged) == {"training", "validation", "holdout"}
    assert logged["holdout"]["digest"] in registry.dataset_digests(holdout)
    with pytest.raises(LabError, match="was tuned on this very data .*as validation"):
        registry.evaluate_on_holdout(version, valid, name=name)
    decision = registry.promote_if_better(version, holdout, name=name)
    assert decision.trained_on[version] == logged["training"]["digest"]


def test_start_over_removes_versions_and_aliases_but_keeps_runs(store):
    runs, holdout = store
    name = "start-over"
    registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    assert registry.start_over(name) == 1
    assert registry.alias_version("champion", name) is None and registry.versions(name).empty
    assert registry.start_over(name) == 0
    assert set(runs.values()) <= set(training.compare_runs().index)


def test_versions_of_a_registered_model_with_no_versions_is_an_empty_table(store):
    # a workshop server creates each learner's model before their first registration
    _, client = registry._client()
    client.create_registered_model("empty-model")
    table = registry.versions("empty-model")
    assert table.empty and table.index.name == "version" and "aliases" in table.columns
    assert registry.versions("no-such-model").empty
