import subprocess
import sys
from pathlib import Path

import pytest

import mlops_lab as lab
from mlops_lab import config, course, training
from mlops_lab.errors import LabError

from .conftest import run_cli


def test_import_is_fast_and_does_nothing(tmp_path):
    home = tmp_path / "never-created"
    code = (
        "import sys, mlops_lab as lab; "
        "heavy = [m for m in ('mlflow', 'sklearn', 'fastapi', 'pandas', 'docker', 'papermill') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], env={"MLOPS_LAB_HOME": str(home), "PATH": ""},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert not home.exists()


def test_workspace_follows_environment(home):
    assert config.home() == home.resolve()
    assert lab.workspace() == home.resolve() and home.is_dir()
    assert config.tracking_uri() == f"sqlite:///{home.resolve()}/mlflow.db"


def test_tracking_uri_can_be_overridden(home, monkeypatch):
    monkeypatch.setenv("MLOPS_LAB_TRACKING_URI", "http://127.0.0.1:5000")
    assert config.tracking_uri() == "http://127.0.0.1:5000"


def test_unwritable_workspace_says_what_to_do(unwritable_home):
    with pytest.raises(LabError, match="not writable.*MLOPS_LAB_HOME"):
        config.ensure_home()


def test_reset_wipes_the_workspace(home):
    lab.workspace()
    (home / "mlflow.db").write_text("x")
    (home / "data").mkdir()
    lab.reset()
    assert sorted(p.name for p in home.iterdir()) == [".mlops-lab"]


def test_reset_refuses_a_folder_that_is_not_a_workspace(tmp_path, monkeypatch):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    monkeypatch.setenv("MLOPS_LAB_HOME", str(precious))
    with pytest.raises(LabError, match="does not look like an mlops-lab workspace"):
        config.reset()
    assert (precious / "chapter1.tex").exists()


def test_lab_error_renders_without_traceback_in_ipython():
    err = LabError("do this instead")
    assert err._render_traceback_() == ["\x1b[31mLabError\x1b[0m: do this instead"]


def test_a_folder_of_the_users_files_is_never_made_a_workspace(tmp_path, monkeypatch):
    # issue 8, item 7: doctor (any ensure_home) used to mark such a folder; reset then wiped it
    precious = tmp_path / "home-of-the-user"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    env = {"MLOPS_LAB_HOME": str(precious)}
    doctor = run_cli("doctor", env=env)
    assert doctor.returncode == 1 and "FAIL workspace" in doctor.stdout and "not empty" in doctor.stdout
    assert run_cli("setup", "0", env=env).returncode == 2
    monkeypatch.setenv("MLOPS_LAB_HOME", str(precious))
    with pytest.raises(LabError, match="is not empty and is not an mlops-lab workspace.*new or empty folder"):
        config.ensure_home()
    reset = run_cli("reset", "--yes", env=env)
    assert reset.returncode == 2 and "Refusing to wipe" in reset.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["thesis.tex"]


def test_an_empty_folder_becomes_a_workspace(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("MLOPS_LAB_HOME", str(empty))
    assert config.ensure_home() == empty.resolve() and config.is_workspace(empty)


def test_a_second_start_while_the_first_creates_the_workspace_finds_a_workspace(tmp_path, monkeypatch):
    """Two starts at once (the stand-in's JupyterLab and walk; tests/test_learner.py's four starts failed 1 CI in
    about 20): while the first proves the new folder writable, its test file is in the folder; the second start
    must see a workspace there, not someone's non-empty folder."""
    import tempfile

    monkeypatch.setenv("MLOPS_LAB_HOME", str(tmp_path / "ws"))
    real, seen = tempfile.NamedTemporaryFile, []

    def the_other_start_meanwhile(*args, **kwargs):
        test_file = real(*args, **kwargs)
        seen.append(config.check_home())  # what a second process starting at this moment decides
        return test_file

    monkeypatch.setattr(config.tempfile, "NamedTemporaryFile", the_other_start_meanwhile)
    assert config.ensure_home() == tmp_path / "ws" and seen == [tmp_path / "ws"]
    assert config.is_workspace(tmp_path / "ws")


def test_workspace_that_is_a_file_gets_a_clear_message(tmp_path, monkeypatch):
    # issue 8, item 8: a raw NotADirectoryError before
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    monkeypatch.setenv("MLOPS_LAB_HOME", str(a_file))
    for call in (config.ensure_home, config.reset, lambda: course.setup(1)):
        with pytest.raises(LabError, match="is a file, not a folder.*MLOPS_LAB_HOME"):
            call()
    env = {"MLOPS_LAB_HOME": str(a_file)}
    for args in (("reset", "--yes"), ("setup", "1"), ("doctor",)):
        result = run_cli(*args, env=env)
        assert result.returncode in (1, 2), args
        assert "is a file, not a folder" in result.stdout + result.stderr, args
        assert "Traceback" not in result.stderr, args
    assert a_file.read_text() == "mine"


def test_reset_leaves_a_running_kernel_working(home):
    # issue 8, item 9: MLflow kept the deleted database open ("attempt to write a readonly
    # database"), and reads saw the runs of the wiped workspace
    mlflow = training.use_tracking()
    with mlflow.start_run():
        mlflow.log_param("before", 1)
    mlflow.MlflowClient().create_registered_model("before-reset")
    lab.reset()
    mlflow = training.use_tracking()
    assert len(mlflow.search_runs()) == 0
    assert mlflow.MlflowClient().search_registered_models() == []
    with mlflow.start_run():
        mlflow.log_param("after", 1)
    mlflow.MlflowClient().create_registered_model("after-reset")
    assert (home / "mlflow.db").exists()
    assert len(mlflow.search_runs()) == 1


def test_a_labs_own_set_experiment_keeps_artifacts_in_the_workspace(home, tmp_path, monkeypatch):
    """Lab 03 calls mlflow.set_experiment(config.experiment_name("evaluation")) itself: made by MLflow there, the
    experiment kept its artifacts in ./mlruns beside the notebook, outside the workspace (found in `mlops-lab
    run`'s folder of executed notebooks)."""
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    monkeypatch.chdir(notebooks)
    mlflow = training.use_tracking()
    for kind in ("evaluation", "loop"):
        mlflow.set_experiment(lab.config.experiment_name(kind))
        with mlflow.start_run():
            mlflow.log_dict({"kind": kind}, "evidence.json")
        run = mlflow.last_active_run()
        assert run.info.artifact_uri.startswith(lab.config.artifact_location()), run.info.artifact_uri
    assert len(list(Path(home).glob("mlartifacts/**/evidence.json"))) == 2
    assert not (notebooks / "mlruns").exists()


def test_write_whole_replaces_a_file_or_leaves_it_and_nothing_else(tmp_path):
    target = tmp_path / "deep" / "state.json"
    lab.config.write_whole(target, "old")
    lab.config.write_whole(target, b"new \xe2\x82\xac")
    assert target.read_text() == "new \u20ac" and [p.name for p in target.parent.iterdir()] == ["state.json"]
    in_the_way = tmp_path / "deep" / "taken"
    (in_the_way / "inside").mkdir(parents=True)  # a folder where the file should go: the rename fails
    with pytest.raises(OSError):
        lab.config.write_whole(in_the_way, "lost")
    assert target.read_text() == "new \u20ac" and sorted(p.name for p in target.parent.iterdir()) == ["state.json", "taken"]


def test_tool_names_a_command_that_works_from_the_shell(monkeypatch):
    # issue 8 friction: lab 02 printed `mlflow ui ...`, which fails when the venv is not activated
    beside = Path(sys.executable).parent
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert config.tool("mlflow") == str(beside / "mlflow")
    assert training.mlflow_ui_command().startswith(f"{beside / 'mlflow'} ui --backend-store-uri sqlite:///")
    monkeypatch.setenv("PATH", f"{beside}:/usr/bin:/bin")
    assert config.tool("mlflow") == "mlflow"


def test_setup_steps_and_course_import_without_a_circle():
    # issue 11: setup_steps imported course, which imported setup_steps
    code = ("import sys, mlops_lab.setup_steps as s; assert 'mlops_lab.course' not in sys.modules; "
            "import mlops_lab.course as c; print(c.newest_lab() == max(s.STEPS) + 1)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
