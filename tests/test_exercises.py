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


def test_an_answer_this_machine_cannot_judge_is_not_judged_neither_right_nor_wrong(course_home, monkeypatch):
    """Exercise 7.5 without promtool, on PromQL beyond the course's own evaluator (a red team's answer): it is
    "not judged", with what to install, not "incorrect" (the old verdict) and never "correct"."""
    from mlops_lab.exercises import lab07

    beyond = next(c for c in exercises.get("7.5").cases if "no sum()" in c.label).make()
    monkeypatch.setenv("MLOPS_LAB_HOME", str(course_home))
    monkeypatch.setenv("PATH", "/nonexistent")  # no promtool
    monkeypatch.setattr(lab07, "_PROM_VERDICTS", {})
    status, message = exercises.evaluate("7.5", beyond)
    assert status == "not judged", message
    assert "not wrong" in message and "apt-get install prometheus" in message
    assert exercises.evaluate("7.5", "groups: []\n")[0] == "incorrect"  # what it can judge, it still judges


def test_not_judged_shows_and_records_as_such_and_carries_on(home, monkeypatch, capsys):
    from mlops_lab.exercises import lab07

    beyond = next(c for c in exercises.get("7.5").cases if "no sum()" in c.label).make()
    text = lab07._prom_yaml(beyond)
    monkeypatch.setattr(lab07, "_PROM_VERDICTS", {text: ("not judged", "the course's evaluator cannot read "
                                                                        "sum by. promtool is part of Prometheus")})
    monkeypatch.setenv("MLOPS_LAB_STRICT", "1")  # strict mode stops on "incorrect" only
    assert lab.check("7.5", beyond) == exercises.get("7.5").reference()  # carries on with a rule file that works
    out = capsys.readouterr().out
    assert "[not judged] 7.5" in out and "lab.hint" not in out and "sum by" in out
    table = lab.progress()
    assert table.loc["7.5", "status"] == "not judged" and "1 not judged" in table._repr_html_()
    assert "Not judged" in exercises.Feedback("7.5", "t", "not judged", "m")._repr_html_()


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


# ------------------------------------------------------------------ differential checks


def _mean_amount(frame, floor=0.0):
    return float(frame.loc[frame["amount"] >= floor, "amount"].mean())


def _trials():
    import numpy as np
    import pandas as pd

    out = []
    for n in (50, 5, 20):
        for floor in (0.0, 10.0):
            rng = np.random.default_rng(n)
            frame = pd.DataFrame({"amount": rng.uniform(0, 20, n).round(2), "hour": rng.integers(0, 24, n)})
            out.append(exercises.Trial(f"{n} payments, floor={floor}", (frame,), {"floor": floor}, size=n))
    return out


def test_differential_passes_an_equivalent_function_and_names_the_smallest_disagreement():
    def written_differently(frame, floor=0.0):
        kept = frame["amount"][frame["amount"].ge(floor)]
        return kept.sum() / len(kept)

    exercises.differential(written_differently, _mean_amount, _trials())

    def ignores_the_floor(frame, floor=0.0):
        return float(frame["amount"].mean())

    with pytest.raises(AssertionError, match=r"^with 5 payments, floor=10.0: returned"):
        exercises.differential(ignores_the_floor, _mean_amount, _trials())


def test_differential_fails_a_function_that_changes_its_input():
    def sorts_in_place(frame, floor=0.0):
        frame.sort_values("amount", inplace=True)
        return _mean_amount(frame, floor)

    with pytest.raises(AssertionError, match=r"with 5 payments, floor=0.0, your function changed its input"):
        exercises.differential(sorts_in_place, _mean_amount, _trials())
    trials = _trials()
    before = trials[0].args[0].copy()
    with pytest.raises(AssertionError):
        exercises.differential(sorts_in_place, _mean_amount, trials)
    assert trials[0].args[0].equals(before), "the trial's own input must stay pristine"


def test_differential_reports_a_raise_and_a_forgotten_return_by_trial():
    with pytest.raises(AssertionError, match=r"with 5 payments, floor=0.0, your function raised KeyError"):
        exercises.differential(lambda frame, floor=0.0: frame["amt"], _mean_amount, _trials())

    def no_return(frame, floor=0.0):
        _mean_amount(frame, floor)

    with pytest.raises(AssertionError, match="did you forget `return`"):
        exercises.differential(no_return, _mean_amount, _trials())
    with pytest.raises(exercises.NotAttempted):
        exercises.differential(exercises._blank, _mean_amount, _trials())


def test_same_compares_values_not_types_of_container():
    assert exercises.same(0.1 + 0.2, 0.3) is None
    assert exercises.same(1, 1.0) is None
    assert exercises.same(True, 1) is not None, "a bool is not a count"
    assert exercises.same([1.0, 2.0], (1.0, 2.0)) is None
    assert "expected 0.3" in exercises.same(0.31, 0.3)
    assert exercises.same(float("nan"), float("nan")) is None


def test_verdict_takes_any_spelling_of_a_truth_value_and_nothing_else():
    import numpy as np

    assert exercises.verdict(np.bool_(True), True) is None
    assert exercises.verdict(1, True) is None and exercises.verdict(0, False) is None
    assert exercises.verdict(False, True) == "returned False, expected True"
    assert "return True or False" in exercises.verdict("yes", True)
    assert "return True or False" in exercises.verdict(0.7, True)


def test_same_rows_ignores_order_and_index_and_names_the_first_wrong_row():
    import pandas as pd

    frame = pd.DataFrame({"id": ["a", "b", "c"], "x": [1, 2, 3]})
    trial = exercises.Trial("three rows", (frame,))
    compare = exercises.same_rows("id", lambda row, kept, t: f"x is {row['x']}")
    expected = frame[frame["x"] >= 2]
    assert compare(expected.iloc[::-1].reset_index(drop=True), expected, trial) is None
    assert compare(frame, expected, trial) == "yours keeps the row 'a' (3 rows, the right answer has 2): x is 1"
    assert "leaves out the row 'c'" in compare(frame.head(2).tail(1), expected, trial)
    assert "lost the column(s) x" in compare(expected[["id"]], expected, trial)
    assert "appears twice" in compare(pd.concat([expected, expected]), expected, trial)
    assert "values of x changed" in compare(expected.assign(x=0), expected, trial)
    assert "return the rows" in compare(len(expected), expected, trial)
    invented = pd.concat([expected, pd.DataFrame({"id": ["z"], "x": [9]})])
    assert compare(invented, expected, trial).startswith("yours keeps the row 'z'")  # not in the input: no story


def test_spelled_as_takes_the_prose_spellings():
    choices = ("accuracy", "roc_auc", "pr_auc")
    for spelling in ("pr_auc", "PR-AUC", " pr auc ", "PR_AUC", "'pr_auc'", "prauc"):
        assert exercises.spelled_as(spelling, choices) == "pr_auc", spelling
    assert exercises.spelled_as("average precision", choices, {"pr_auc": ["average precision"]}) == "pr_auc"
    assert exercises.spelled_as("recall", choices) is None
    assert exercises.spelled_as(0.5, choices) is None


def test_close_to_takes_the_rounding_a_message_prints():
    truth = 0.0089347
    assert exercises.close_to(truth, truth) and exercises.close_to(0.0089, truth) and exercises.close_to(0.00893, truth)
    assert exercises.close_to(0.009, truth)  # three decimals, as :.3f prints it
    assert not exercises.close_to(0.009, truth, digits=4)
    assert not exercises.close_to(0.01, truth)  # two decimals say too little
    assert not exercises.close_to(0.0088, truth)  # a wrong figure, not a rounding
    assert not exercises.close_to(True, 1.0) and not exercises.close_to("0.0089", truth)


def test_a_solution_text_gets_the_names_the_notebook_imported():
    assert exercises.solved("2.6")["mlflow"].__name__ == "mlflow"
    names = exercises.solved("3.3")
    assert names["lab"] is lab and names["pd"].__name__ == "pandas" and callable(names["gate_holdout"])


def test_a_client_made_in_an_earlier_cell_is_judged_on_the_checks_store(home):
    mlflow = training.use_tracking()
    client = mlflow.MlflowClient()  # bound to the learner's store, as in an earlier notebook cell

    def trained_on(model_name, alias):
        run = client.get_run(client.get_model_version_by_alias(model_name, alias).run_id)
        return next(i.dataset.digest for i in run.inputs.dataset_inputs
                    if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags))

    assert exercises.evaluate("2.6", trained_on) == ("correct", "")
    assert mlflow.get_tracking_uri() == client.tracking_uri
    assert client.search_registered_models() == []  # after the check, the client sees the learner's store again


@pytest.mark.parametrize("id", [id for id, ex in exercises.all_exercises().items()
                                if ex.trials is not None and id.split(".")[0] in ("0", "1", "2", "3")])
def test_function_exercises_of_labs_00_to_03_are_judged_on_at_least_20_inputs(id):
    assert len(exercises.get(id).trials()) >= 20


def test_the_function_exercises_of_labs_00_to_03_are_the_ones_with_trials():
    with_trials = {id for id, ex in exercises.all_exercises().items() if ex.trials is not None and int(id.split(".")[0]) < 4}
    assert with_trials == {"0.3", "0.4", "1.3", "1.5", "2.3", "2.5", "2.6", "3.2", "3.3"}
