"""No silent waits (issue 23): what can take over 5 s on Binder says what it waits for, and an
interrupted loop says how to carry on."""

from mlops_lab import ci
from mlops_lab.serving import start_server


def test_ci_run_in_a_notebook_says_which_stage_runs(use_course_home, capsys):
    result = ci.run(["data"], fault="bad_batch")
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "ci.run: stage 1 of 1, data (planted fault: bad_batch)..."
    assert result.failed_stage == "data"
    ci.run(["data"], report=lambda _: None)  # the command line reports its own way: no second line
    assert capsys.readouterr().out == ""


def test_start_server_says_it_waits_and_when_it_is_ready(use_course_home):
    lines = []
    with start_server(report=lines.append) as server:
        assert server.running
    assert lines[0] == f"start_server: starting the API on {server.url}; waiting until /ready answers (3-20 s)..."
    assert lines[1].startswith("start_server: ready in ") and len(lines) == 2



def test_an_interrupted_loop_says_how_to_resume(course_home, tmp_path, monkeypatch):
    import shutil

    import pytest

    from mlops_lab import pipeline
    workspace = tmp_path / "workspace"
    shutil.copytree(course_home, workspace)
    monkeypatch.setenv("MLOPS_LAB_HOME", str(workspace))

    def ctrl_c(line):  # the learner presses Ctrl-C (Jupyter's interrupt) while the loop reports
        raise KeyboardInterrupt

    with pytest.raises(pipeline.LoopInterrupted, match=r"interrupted\. Nothing is lost.*Run the same call again \(resume=True"):
        pipeline.run_loop(1, report=ctrl_c)
    assert issubclass(pipeline.LoopInterrupted, KeyboardInterrupt), "still an interrupt: scripts stop as on Ctrl-C"
