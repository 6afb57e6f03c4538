"""This project's own ML tests: the course snapshot passes the data tests, and the champion
passes the model and behavioural tests (mlops_lab.testing on the real data and model)."""

import pandas as pd
import pytest

from mlops_lab import data, registry, testing


@pytest.fixture(scope="module")
def snapshot(course_home):
    from .conftest import using_home

    with using_home(course_home):
        return data.load_snapshot()


@pytest.fixture(scope="module")
def champion(course_home):
    from .conftest import using_home

    with using_home(course_home):
        version = registry.alias_version(registry.CHAMPION)
        _, client = registry._client()
        threshold = float(client.get_model_version("cardguard", version).tags["threshold"])
        return registry.load(registry.CHAMPION), threshold


@pytest.fixture(scope="module")
def holdout(snapshot):
    return data.time_split(snapshot)[2]


@pytest.mark.parametrize("test", [testing.follows_contract, testing.unique_ids, testing.consistent_times],
                         ids=lambda f: f.__name__)
def test_snapshot_passes_data_test(snapshot, test):
    verdict = test(snapshot)
    assert verdict, verdict


def test_snapshot_labels_had_all_arrived_when_it_was_taken(snapshot):
    # the course snapshot is read long after its last chargeback (at most 45 days after a payment)
    taken = snapshot["timestamp"].max() + pd.Timedelta(days=46)
    assert testing.labels_arrived(snapshot, taken)


def test_no_training_feature_leaks_the_label(snapshot):
    train = data.time_split(snapshot)[0]
    verdict = testing.no_leaky_features(train)
    assert verdict, verdict


def test_champion_clears_the_quality_floor_and_the_trivial_baseline(champion, holdout):
    model, _ = champion
    assert testing.quality_floor(model, holdout, 0.35)
    assert testing.beats_trivial_baseline(model, holdout, factor=20)


def test_champion_is_calibrated_on_decile_bins(champion, holdout):
    model, _ = champion
    verdict = testing.calibrated(model, holdout, tolerance=0.01, n_se=3)
    assert verdict, verdict


def test_champion_passes_the_behavioural_suite(champion, holdout):
    model, threshold = champion
    sample = holdout.sample(2000, random_state=0)
    for verdict in testing.behavioural_suite(model, sample, threshold):
        assert verdict, verdict
