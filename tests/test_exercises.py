"""Every exercise is tested three ways: reference passes, blank stub is not attempted, a plausible
wrong answer fails with a specific message."""

from pathlib import Path

import pytest

import mlops_lab as lab
from mlops_lab import data, exercises, training
from mlops_lab.errors import LabError


def _wrong_within_budget(latencies_ms, budget_ms=100):
    import numpy as np

    return len(latencies_ms) > 0 and float(np.mean(latencies_ms)) < budget_ms  # judges the mean


def _stub_function(*args, **kwargs):
    ...


class Lazy:
    """A wrong answer that is expensive to build: made only when its test runs."""

    def __init__(self, make):
        self.make = make


def _random_split():
    from sklearn.model_selection import train_test_split

    frame = data.course_dataset()
    train, rest = train_test_split(frame, test_size=0.33, random_state=0)
    valid, holdout = train_test_split(rest, test_size=0.5, random_state=0)
    return train, valid, holdout


# exercise id -> (blank stub, plausible wrong answer, words the message must contain)
WRONG = {
    "0.1": (..., 1000, "not CardGuard's budget"),
    "0.2": (..., Path("/tmp/elsewhere/mlflow.db"), "not inside your workspace"),
    "0.3": (_stub_function, _wrong_within_budget, "2% of requests take 250 ms"),
    "1.1": (..., Lazy(lambda: int(data.course_dataset()["is_fraud"].sum())), "looks like a count"),
    "1.2": (..., Lazy(lambda: data.example_broken_batch().drop(columns=["debug_trace_id"])),
            "still breaks the contract"),
    "1.3": ((..., ..., ...), Lazy(_random_split), "a random split leaks the future"),
    "2.1": (..., "accuracy", "accuracy rewards a model that never flags fraud"),
    "2.2": (..., Lazy(lambda: _run_without_fingerprint()), "has no `data.fingerprint` tag"),
    "2.3": (..., 0.5, "The default 0.5 ignores"),
}


def _run_without_fingerprint():
    mlflow = training.use_tracking()
    with mlflow.start_run() as run:
        mlflow.log_metric("valid_pr_auc", 0.5)
    return run.info.run_id


@pytest.fixture
def workspace_for(request, monkeypatch, tmp_path):
    """Labs 00-01 get an empty workspace; later labs the prepared one."""
    def prepare(id):
        if int(id.split(".")[0]) >= 2:
            home = request.getfixturevalue("course_home")
        else:
            home = tmp_path / "workspace"
        monkeypatch.setenv("MLOPS_LAB_HOME", str(home))
    return prepare


def test_every_exercise_has_three_way_tests():
    # labs 03-05 keep their answers beside their exercises (tests/test_exercise_cases.py)
    assert {id for id in exercises.all_exercises() if int(id.split(".")[0]) <= 2} == set(WRONG)


@pytest.mark.parametrize("id", sorted(WRONG))
def test_reference_answer_is_correct(id, workspace_for):
    workspace_for(id)
    ref = exercises.get(id).reference()
    assert exercises.evaluate(id, ref) == ("correct", "")


@pytest.mark.parametrize("id", sorted(WRONG))
def test_blank_stub_is_not_attempted(id, workspace_for):
    workspace_for(id)
    stub = WRONG[id][0]
    assert exercises.evaluate(id, stub.make() if isinstance(stub, Lazy) else stub)[0] == "not attempted"
    assert exercises.evaluate(id, None)[0] == "not attempted"


@pytest.mark.parametrize("id", sorted(WRONG))
def test_plausible_wrong_answer_gets_a_specific_message(id, workspace_for):
    workspace_for(id)
    wrong = WRONG[id][1]
    status, message = exercises.evaluate(id, wrong.make() if isinstance(wrong, Lazy) else wrong)
    assert status == "incorrect"
    assert WRONG[id][2] in message


def test_check_carries_on_with_the_reference_and_records_progress(home, capsys):
    assert lab.check("0.1", ...) == 100
    assert "[not attempted] 0.1" in capsys.readouterr().out
    assert lab.check("0.1", 1000) == 100
    out = capsys.readouterr().out
    assert "[incorrect] 0.1" in out and "lab.hint('0.1')" in out and "reference answer" in out
    assert lab.check("0.1", 100) == 100
    assert lab.progress().loc["0.1", "status"] == "correct"
    assert lab.progress().loc["0.2", "status"] == "not attempted"


def test_strict_mode_raises_on_incorrect_only(home, monkeypatch):
    monkeypatch.setenv("MLOPS_LAB_STRICT", "1")
    assert lab.check("0.1", ...) == 100
    with pytest.raises(exercises.Incorrect, match="not CardGuard's budget"):
        lab.check("0.1", 1000)


def test_learner_function_that_raises_is_incorrect_not_a_crash(home):
    def broken(latencies_ms, budget_ms=100):
        return 1 / 0

    status, message = exercises.evaluate("0.3", broken)
    assert status == "incorrect" and "ZeroDivisionError" in message


def test_unknown_exercise_lists_the_valid_ones():
    with pytest.raises(LabError, match=r"no exercise '9.9'.*0\.1, 0\.2, 0\.3, 1\.1.*5\.3"):
        lab.check("9.9", 1)


def test_hints_are_progressive(capsys):
    lab.hint("0.3")
    first = capsys.readouterr().out
    lab.hint("0.3", n=2)
    second = capsys.readouterr().out
    assert "Hint 1 of 3" in first and "n=2" in first
    assert "Hint 2 of 3" in second and first != second
    lab.solution("0.3")
    assert "np.percentile" in capsys.readouterr().out
