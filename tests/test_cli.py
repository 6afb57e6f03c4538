import pytest

from mlops_lab import course
from mlops_lab.errors import LabError

from .conftest import run_cli


def test_doctor_says_the_course_can_run(home):
    result = run_cli("doctor", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "The course can run on this machine." in result.stdout
    for name in ("python", "packages", "workspace", "tracking store", "docker daemon", "memory", "binder"):
        assert name in result.stdout


def test_doctor_fails_on_an_unwritable_workspace(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run_cli("doctor", env={"MLOPS_LAB_HOME": str(blocker / "ws")})
    assert result.returncode == 1
    assert "FAIL workspace" in result.stdout and "MLOPS_LAB_HOME" in result.stdout


def test_setup_rejects_a_lab_that_does_not_exist(home):
    with pytest.raises(LabError, match="no lab 99: labs are numbered 0 to 8"):
        course.setup(99)
    result = run_cli("setup", "99", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 2 and "no lab 99" in result.stderr and "Traceback" not in result.stderr


def test_setup_is_idempotent(home, capsys):
    course.setup(1)
    course.setup(1)
    assert "ready for lab 01" in capsys.readouterr().out
    assert (home / ".mlops-lab").exists()


def test_run_rejects_an_unknown_notebook(home):
    result = run_cli("run", "42", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 2
    assert "no notebook 42" in result.stderr and "00" in result.stderr and "Traceback" not in result.stderr


def test_reset_asks_first_unless_yes(home):
    home.mkdir()
    (home / ".mlops-lab").write_text("")
    (home / "mlflow.db").write_text("x")
    env = {"MLOPS_LAB_HOME": str(home)}
    result = run_cli("reset", env=env, input="n\n")
    assert result.returncode == 1 and (home / "mlflow.db").exists()
    assert run_cli("reset", "--yes", env=env).returncode == 0
    assert not (home / "mlflow.db").exists()


def test_setup_4_leaves_a_gated_champion_and_is_idempotent(home, capsys):
    from mlops_lab import registry, training

    course.setup(4)
    versions = registry.versions()
    runs = training.compare_runs()
    course.setup(4)
    assert len(registry.versions()) == len(versions) == 2
    assert len(training.compare_runs()) == len(runs) == 2
    champion = registry.alias_version("champion")
    assert versions.loc[champion, "model_kind"] == "gradient_boosting"
    assert versions.loc[champion, "gate.verdict"] == "promoted"


def test_doctor_without_docker_still_passes_and_says_what_lab_05_does(home):
    result = run_cli("doctor", env={"MLOPS_LAB_HOME": str(home), "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert result.returncode == 0, result.stdout
    assert "note docker daemon   not reachable: lab 05 runs the same server entrypoint as a local process" in result.stdout
