"""Safe rollout (issue 12): the rollout state in the real registry, then a real uvicorn server
following it under continuous traffic (shadow, canary, promotion, abort, rollback)."""

import pytest

from mlops_lab import data, registry, training
from mlops_lab.errors import LabError

from .conftest import using_home


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A workspace with two logistic regressions (different regularisation) and a boosted model."""
    with using_home(tmp_path_factory.mktemp("rollout")) as home:
        train, valid, holdout = data.time_split(data.course_dataset())
        runs = {
            "baseline": training.train_and_log("logistic_regression", train, valid),
            "weak": training.train_and_log("logistic_regression", train, valid, C=0.01),
            "boosted": training.train_and_log("gradient_boosting", train, valid, max_iter=60),
        }
        yield home, runs, holdout


@pytest.fixture
def in_store(store, monkeypatch):
    home, runs, holdout = store
    monkeypatch.setenv("MLOPS_LAB_HOME", str(home))
    return runs, holdout


def test_no_model_means_no_rollout(in_store):
    assert registry.rollout("nobody") == registry.Rollout(None, None, "off", 0.0)
    with pytest.raises(LabError, match="No rollout in progress .*start_shadow"):
        registry.start_canary(0.1, name="nobody")


def test_rollout_story(in_store):
    runs, holdout = in_store
    name = "rollout-story"
    v1 = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    v1 = v1.challenger_version
    v2 = registry.register(runs["weak"], name=name)
    v3 = registry.register(runs["boosted"], name=name)
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)

    with pytest.raises(LabError, match=f"Version {v1} is already the champion"):
        registry.start_shadow(v1, name=name)
    with pytest.raises(LabError, match="has no version 99"):
        registry.start_shadow("99", name=name)
    for doing in (lambda: registry.start_canary(0.1, name=name), lambda: registry.promote_candidate(name=name),
                  lambda: registry.abort_rollout("why", name=name)):
        with pytest.raises(LabError, match="No rollout in progress"):
            doing()

    shadow = registry.start_shadow(v2, name=name)
    assert shadow == registry.rollout(name) == registry.Rollout(v1, v2, "shadow", 0.0)
    assert registry.start_shadow(v2, name=name) == shadow  # idempotent
    with pytest.raises(LabError, match=f"Version {v2} is already in shadow: promote it .* or abort it"):
        registry.start_shadow(v3, name=name)
    with pytest.raises(LabError, match="A rollout is in progress .*promote_candidate\\(\\) or .*abort_rollout"):
        registry.promote_if_better(v3, holdout, name=name)

    for share, fix in ((0, "go back to shadow"), (1, "promote the candidate instead"), (1.5, "promote"),
                       (-0.2, "abort")):
        with pytest.raises(LabError, match=f"strictly between 0 and 1 .*got {share}.*{fix}"):
            registry.start_canary(share, name=name)
    with pytest.raises(LabError, match="must be a number between 0 and 1"):
        registry.start_canary("ten percent", name=name)
    assert registry.rollout(name).mode == "shadow"  # refused changes changed nothing

    assert registry.start_canary(0.1, name=name) == registry.rollout(name) == registry.Rollout(v1, v2, "canary", 0.1)
    assert registry.start_canary(0.5, name=name) == registry.rollout(name) == registry.Rollout(v1, v2, "canary", 0.5)

    with pytest.raises(LabError, match="Say why the rollout is aborted"):
        registry.abort_rollout("  ", name=name)
    assert registry.abort_rollout("canary error rate 4% > 1%", name=name) == registry.Rollout(v1, None, "off", 0.0)
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)
    assert registry.alias_version("challenger", name) is None
    _, client = registry._client()
    tags = client.get_model_version(name, v2).tags
    assert tags["rollout.aborted_reason"] == "canary error rate 4% > 1%" and tags["rollout.aborted_at"]

    registry.start_shadow(v3, name=name)
    registry.start_canary(0.25, name=name)
    assert registry.promote_candidate(name=name) == registry.rollout(name) == registry.Rollout(v3, None, "off", 0.0)
    assert registry.alias_version("champion", name) == v3 and registry.alias_version("challenger", name) is None
    assert registry.rollback(name=name) == v1  # the promoted candidate remembers whom it replaced
    assert registry.rollout(name) == registry.Rollout(v1, None, "off", 0.0)


def test_a_challenger_the_gate_kept_out_is_no_rollout(in_store):
    runs, holdout = in_store
    name = "rollout-kept-out"
    boosted = registry.promote_if_better(registry.register(runs["boosted"], name=name), holdout, name=name)
    weak = registry.promote_if_better(registry.register(runs["weak"], name=name), holdout, name=name)
    assert weak.verdict == "kept champion"
    assert registry.alias_version("challenger", name) == weak.challenger_version  # as lab 03 leaves it
    assert registry.rollout(name) == registry.Rollout(boosted.challenger_version, None, "off", 0.0)


def test_gate_judges_without_promoting(in_store):
    runs, holdout = in_store
    name = "rollout-gate"
    first = registry.gate(registry.register(runs["baseline"], name=name), holdout, name=name)
    assert first.verdict == "first model" and registry.alias_version("champion", name) is None
    registry.promote_if_better(first.challenger_version, holdout, name=name)
    challenger = registry.register(runs["boosted"], name=name)
    passed = registry.gate(challenger, holdout, name=name)
    assert passed.verdict == "passed" and passed.promoted and passed.interval[0] > 0
    assert "Verdict: passed" in str(passed)
    assert registry.decision_record(challenger, name)["verdict"] == "passed"
    # nothing moved: the candidate goes on to shadow and canary, not straight to champion
    assert registry.alias_version("champion", name) == first.challenger_version
    assert registry.alias_version("challenger", name) is None
    assert registry.rollout(name) == registry.Rollout(first.challenger_version, None, "off", 0.0)
    assert registry.start_shadow(challenger, name=name).candidate == challenger
    worse = registry.gate(registry.register(runs["weak"], name=name), holdout, name=name)
    assert worse.verdict == "kept champion" and not worse.promoted
    assert registry.rollout(name).candidate == challenger  # the gate never touches a running rollout


def test_a_moved_challenger_alias_ends_in_the_champion_answering(in_store):
    # lab 06's CI registers its candidate as challenger: an ungated model must never take over a canary
    runs, holdout = in_store
    name = "rollout-moved"
    champion = registry.promote_if_better(registry.register(runs["baseline"], name=name), holdout, name=name)
    candidate, stranger = registry.register(runs["weak"], name=name), registry.register(runs["boosted"], name=name)
    registry.start_shadow(candidate, name=name)
    registry.start_canary(0.2, name=name)
    registry.set_alias("challenger", stranger, name=name)
    assert registry.rollout(name) == registry.Rollout(champion.challenger_version, None, "off", 0.0)
