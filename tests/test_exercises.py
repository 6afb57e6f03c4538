"""The exercise framework's behaviour (each exercise's own answers are tested in test_exercise_cases.py)."""

import pytest

import mlops_lab as lab
from mlops_lab import exercises, training
from mlops_lab.errors import LabError


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
    with pytest.raises(LabError, match=r"no exercise '9.9'.*0\.1, 0\.2, 0\.3, 0\.4, 1\.1.*5\.3"):
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


def test_a_function_that_returns_nothing_is_told_to_return():
    def within_budget(latencies_ms, budget_ms=100):
        latencies_ms.sort()  # computes, but hands nothing back

    status, message = exercises.evaluate("0.3", within_budget)
    assert status == "incorrect" and "`within_budget` returned None: did you forget `return`?" in message


@pytest.mark.parametrize("body", ["...", "pass"])
def test_a_blank_stub_function_is_not_attempted(body):
    namespace = {}
    exec(f"def within_budget(latencies_ms, budget_ms=100):\n    {body}\n", namespace)
    assert exercises.evaluate("0.3", namespace["within_budget"])[0] == "not attempted"


def test_feedback_is_coloured_html_with_a_plain_text_fallback():
    feedback = exercises.Feedback("0.1", "CardGuard's latency budget", "incorrect", "1000 ms <is> wrong", carry_on=True)
    html = feedback._repr_html_()
    assert "Incorrect" in html and "#b42318" in html and "1000 ms &lt;is&gt; wrong" in html and "lab.hint" in html
    text = repr(feedback)
    assert text.startswith("[incorrect] 0.1 CardGuard's latency budget: 1000 ms <is> wrong") and "<div" not in text
    assert "#1a7f37" in exercises.Feedback("0.1", "t", "correct")._repr_html_()


def test_progress_renders_as_a_coloured_table(home):
    lab.check("0.1", 100)
    table = lab.progress()
    html = table._repr_html_()
    assert "<table" in html and "1 correct" in html and "#e6f4ea" in html
    part = table.loc[["0.1", "0.2"]]._repr_html_()  # a slice renders as a coloured table too
    assert "<table" in part and "1 correct, 0 incorrect, 1 not attempted" in part


def test_checks_that_log_use_a_throwaway_store_and_leave_yours_alone(home):
    mlflow = training.use_tracking()
    before_uri, before_experiment = mlflow.get_tracking_uri(), mlflow.tracking.fluent._active_experiment_id
    assert exercises.evaluate("2.6", exercises.get("2.6").reference()) == ("correct", "")
    assert mlflow.get_tracking_uri() == before_uri
    assert mlflow.tracking.fluent._active_experiment_id == before_experiment
    assert mlflow.search_registered_models() == []  # the check's registry was its own
    assert mlflow.search_runs(search_all_experiments=True).empty
