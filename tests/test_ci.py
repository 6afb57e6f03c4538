"""The local CI pipeline (mlops_lab.ci, `mlops-lab ci`): a passing run on a workspace after
lab.setup(5), each planted fault stopped at the stage that should catch it and no earlier, and
clear messages for bad input."""

import shutil

import pytest

from mlops_lab import ci, config, registry
from mlops_lab.errors import LabError

from .conftest import run_cli

ML_STAGES = ["data", "train", "quality", "latency", "behaviour"]


@pytest.fixture(scope="module")
def workspace(course_home, tmp_path_factory):
    """A copy of the prepared course workspace: the register stage adds a version to it."""
    copy = tmp_path_factory.mktemp("ci") / "workspace"
    shutil.copytree(course_home, copy)
    return copy


@pytest.fixture
def in_workspace(workspace, monkeypatch):
    monkeypatch.setenv("MLOPS_LAB_HOME", str(workspace))
    return workspace


def test_pipeline_passes_and_registers_a_challenger_without_promoting(in_workspace, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    champion = registry.alias_version(registry.CHAMPION)
    result = ci.run([*ML_STAGES, "container", "register"])
    print(result.table())
    assert result.ok, result.table()
    assert [o.status for o in result.outcomes] == ["pass"] * 5 + ["skip", "pass"]
    assert "Docker" in result["container"].reason and "--require-container" in result["container"].reason
    assert registry.alias_version(registry.CHAMPION) == champion
    challenger = registry.alias_version(registry.CHALLENGER)
    assert challenger is not None and challenger != champion
    assert f"v{challenger} as challenger" in result["register"].reason


def test_register_stage_leaves_a_running_rollout_alone(in_workspace):
    """Moving the challenger alias during a shadow or canary would end that rollout without a word
    (the server would fall back to the champion alone): the stage registers, and leaves the alias."""
    candidate = registry.register(registry._client()[1].get_model_version(
        config.model_name(), registry.alias_version(registry.CHAMPION)).run_id)
    registry.start_shadow(candidate)
    try:
        result = ci.run(["data", "train", "register"])
        assert result.ok, result.table()
        assert registry.rollout() == registry.Rollout(registry.alias_version(registry.CHAMPION), candidate, "shadow", 0.0)
        assert f"stays on v{candidate}, which is in shadow" in result["register"].reason
    finally:
        registry.abort_rollout("test over")
    assert registry.rollout().mode == "off"


@pytest.mark.parametrize("fault", sorted(ci.FAULTS))
def test_planted_fault_is_caught_by_its_stage_and_no_earlier(fault, in_workspace):
    result = ci.run(ML_STAGES, fault=fault)
    print(f"planted {fault}:\n{result.table()}")
    expected = ci.FAULTS[fault].caught_by
    assert result.failed_stage == expected, result.table()
    stages = [o.stage for o in result.outcomes]
    assert stages == ML_STAGES[: ML_STAGES.index(expected) + 1]  # stopped there
    assert all(o.status == "pass" for o in result.outcomes[:-1])  # and nothing earlier objected


def test_fault_reasons_say_what_is_wrong(in_workspace):
    assert "tx_count_24h" in ci.run(["data"], fault="leaky_feature")["data"].reason
    assert "channel" in ci.run(["data"], fault="bad_batch")["data"].reason


def test_keep_going_runs_every_stage_after_a_failure(in_workspace):
    result = ci.run(["data", "train"], fault="bad_batch", keep_going=True)
    assert [o.stage for o in result.outcomes] == ["data", "train"]
    assert result["data"].status == "fail" and not result.ok


def test_unknown_stage_lists_the_valid_ones():
    with pytest.raises(LabError, match=r"Unknown stage\(s\) 'tests'.*lint, unit-tests, data, train"):
        ci.run(["tests"])


def test_no_champion_points_at_setup(tmp_path, monkeypatch, course_home):
    empty = tmp_path / "fresh"
    shutil.copytree(course_home / "data", empty / "data")  # a snapshot, but no registry
    shutil.copy(course_home / config.MARKER, empty / config.MARKER)  # a workspace we made, not a user's folder
    monkeypatch.setenv("MLOPS_LAB_HOME", str(empty))
    result = ci.run(["quality"])
    assert result.failed_stage == "quality" and "lab.setup(4)" in result["quality"].reason


def test_container_without_docker_skips_or_fails_when_required(in_workspace, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    assert ci.run(["container"])["container"].status == "skip"
    required = ci.run(["container"], require_container=True)["container"]
    assert required.status == "fail" and "--require-container" in required.reason


def test_cli_prints_the_table_and_exits_non_zero_on_failure(workspace):
    env = {"MLOPS_LAB_HOME": str(workspace), "DOCKER_HOST": "unix:///nonexistent.sock"}
    ok = run_cli("ci", "--stage", "lint", "--stage", "container", env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("stage ") and "lint       pass" in ok.stdout and "container  skip" in ok.stdout and "1 passed, 0 failed, 1 skipped" in ok.stdout
    failed = run_cli("ci", "--stage", "quality", env={"MLOPS_LAB_HOME": str(workspace / "nowhere")})
    assert failed.returncode == 1 and "quality  fail" in failed.stdout and "lab.setup" in failed.stdout
    unknown = run_cli("ci", "--stage", "deploy", env=env)
    assert unknown.returncode == 2 and "lint, unit-tests, data" in unknown.stderr


def test_unit_tests_stage_runs_its_subset_and_not_itself():
    assert not any("test_ci" in p for p in ci.UNIT_TESTS)
    result = ci.run(["unit-tests"])
    assert result.ok, result.table()
    assert "passed" in result["unit-tests"].reason and "test_ml_testing.py" in result["unit-tests"].reason


def test_slow_model_scores_like_its_fast_twin():
    """The latency fault changes only time, not scores: the quality gate cannot be what catches it."""
    from mlops_lab import data

    frame = data.simulate_transactions(3000, seed=11)
    slow = ci._slow_pipeline()
    slow.steps[-1][1].delay = 0.0
    slow.fit(frame[data.feature_columns()], frame["is_fraud"])
    from mlops_lab import training

    fast = training.build_pipeline("gradient_boosting").fit(frame[data.feature_columns()], frame["is_fraud"])
    assert (training.predict_scores(slow, frame) == training.predict_scores(fast, frame)).all()

