"""Every exercise is tested with the answers kept beside it (``cases=`` in ``mlops_lab.exercises``):
its reference answer is correct, its blank stub is not attempted, at least three plausible wrong
answers are each "incorrect" with a specific message, and every right answer written differently
is "correct"."""

import pytest

from mlops_lab import exercises

EXERCISES = exercises.all_exercises()
CASES = [(id, case) for id, ex in EXERCISES.items() for case in ex.cases]


@pytest.fixture
def workspace_for(request, monkeypatch, tmp_path):
    """Labs 00-02 get an empty workspace (their checks use throwaway stores); later labs the prepared one (the session's course_home)."""
    def prepare(id):
        if int(id.split(".")[0]) >= 3:
            home = request.getfixturevalue("course_home")
        else:
            home = tmp_path / "workspace"
        monkeypatch.setenv("MLOPS_LAB_HOME", str(home))
    return prepare


@pytest.mark.parametrize("id", sorted(EXERCISES))
def test_exercise_keeps_at_least_three_wrong_answers(id):
    wrong = [c for c in EXERCISES[id].cases if c.expect == "incorrect"]
    assert len(wrong) >= 3, f"exercise {id} keeps {len(wrong)} wrong answer(s) beside it; it needs three"
    assert all(c.words for c in wrong), f"every wrong answer of {id} names the words its message must contain"


@pytest.mark.parametrize("id", sorted(EXERCISES))
def test_reference_answer_is_correct(id, workspace_for):
    workspace_for(id)
    assert exercises.evaluate(id, EXERCISES[id].reference()) == ("correct", "")


@pytest.mark.parametrize("id", sorted(EXERCISES))
def test_blank_stub_is_not_attempted(id, workspace_for):
    workspace_for(id)
    assert exercises.evaluate(id, EXERCISES[id].stub())[0] == "not attempted"


@pytest.mark.parametrize("id,case", CASES, ids=[f"{id}-{c.expect}-{c.label}" for id, c in CASES])
def test_kept_answer_gets_its_verdict(id, case, workspace_for):
    workspace_for(id)
    status, message = exercises.evaluate(id, case.make())
    assert status == case.expect, f"{case.label!r}: expected {case.expect}, got {status}: {message}"
    if case.expect == "incorrect":
        assert case.words in message, f"{case.label!r}: message {message!r} lacks {case.words!r}"


@pytest.mark.parametrize("id", sorted(EXERCISES))
def test_a_function_exercise_is_judged_on_at_least_twenty_inputs(id, workspace_for):
    """A learner's function is run beside the reference on many generated inputs (``trials=``), never
    on one planted case (that the reference passes on them is test_reference_answer_is_correct)."""
    import inspect

    workspace_for(id)
    ex = EXERCISES[id]
    reference = ex.reference()
    if not inspect.isfunction(reference):
        assert ex.trials is None, f"{id} declares trials but its answer is not a function"
        return
    if ex.trials is None and ex.judged_on:  # a test the learner writes, judged by the apps it must tell apart
        assert len(ex.cases) >= 5, f"{id} is judged on {ex.judged_on}; it needs kept answers beside it"
        return
    assert ex.trials is not None, f"{id} asks for a function but judges it on no generated inputs (trials=)"
    trials = ex.trials()
    assert len(trials) >= 20, f"{id} judges a function on {len(trials)} inputs; it needs at least 20"
    assert len({t.label for t in trials}) == len(trials), f"{id}: every trial needs its own label (messages name it)"


@pytest.mark.parametrize("id, label", [("6.1", "every feature made a float in place"),
                                       ("6.2", "refits the model on the holdout"),
                                       ("6.3", "edits the caller's payments")])
def test_an_answer_that_edits_its_input_leaves_the_checks_data_alone(id, label, workspace_for):
    """The checks keep their data between answers: one that edits what it was given is incorrect, and
    every check after it, in the same process, still judges the solution correct."""
    workspace_for(id)
    [case] = [c for c in EXERCISES[id].cases if c.label == label]
    assert exercises.evaluate(id, case.make())[0] == "incorrect"
    for other in ("6.1", "6.2", "6.3"):
        assert exercises.evaluate(other, EXERCISES[other].reference()) == ("correct", ""), other
