import subprocess
import sys

import pytest

import mlops_lab as lab
from mlops_lab import config
from mlops_lab.errors import LabError


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
