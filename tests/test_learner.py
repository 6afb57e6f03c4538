"""Learners work on copies of the labs in their workspace: made once, never overwritten."""

import json
import os
import subprocess
import sys
import urllib.parse

import nbformat

from mlops_lab import config, learner

from .conftest import ROOT, run_cli


def test_each_lab_is_copied_once_and_a_learners_copy_is_never_overwritten(home):
    first = learner.copy_labs(ROOT, report=lambda _: None)
    labs = sorted(p.name for p in (ROOT / "labs").glob("*.ipynb"))
    assert [c.lab for c in first] == labs and {c.state for c in first} == {"copied"}
    copy = home / "labs" / "00_welcome.ipynb"
    lab = nbformat.read(copy, as_version=4)
    assert [c.source for c in lab.cells] == [c.source for c in nbformat.read(ROOT / "labs" / copy.name, 4).cells]

    lab.cells[7].source = "latency_budget_ms = 100  # my answer"
    nbformat.write(lab, copy)
    again = learner.copy_labs(ROOT, report=lambda _: None)
    assert {c.state for c in again} == {"yours"}
    assert "# my answer" in copy.read_text()


def test_a_newer_lab_is_announced_and_the_copy_kept(home, course_copy):
    learner.copy_labs(course_copy, report=lambda _: None)
    lab = course_copy / "labs" / "02_train_and_track.ipynb"
    nb = nbformat.read(lab, as_version=4)
    nb.cells[0].source += "\n\nA sentence added in a newer version of the course."
    nbformat.write(nb, lab)
    messages = []
    results = {c.lab: c.state for c in learner.copy_labs(course_copy, report=messages.append)}
    assert results["02_train_and_track.ipynb"] == "newer version"
    assert results["01_data.ipynb"] == "yours"
    (message,) = [m for m in messages if "newer version" in m]
    assert "rename or delete" in message and str(lab) in message
    assert "newer version of the course" not in (home / "labs" / lab.name).read_text()


def test_reset_keeps_the_learners_copies(home):
    learner.copy_labs(ROOT, report=lambda _: None)
    (home / "mlflow.db").write_text("x")
    config.reset()
    assert not (home / "mlflow.db").exists()
    assert sorted(p.name for p in (home / "labs").glob("*.ipynb")) == sorted(
        p.name for p in (ROOT / "labs").glob("*.ipynb"))


def test_mlops_lab_lab_opens_the_copy_the_binder_badge_opens(home):
    result = run_cli("lab", "--copy-only", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "copied  00_welcome.ipynb" in result.stdout
    command = learner.jupyter_lab_command("00", ("--no-browser",), ROOT)
    assert f"--ServerApp.root_dir={home.resolve()}" in command and command[-1] == "--no-browser"
    badge = (ROOT / "README.md").read_text().split("(https://mybinder.org/v2/gh/", 1)[1].split(")", 1)[0]
    urlpath = urllib.parse.parse_qs(urllib.parse.urlparse(badge).query)["urlpath"][0]
    assert f"--LabApp.default_url=/{urlpath}" in command
    assert (home / urlpath.removeprefix("lab/tree/")).exists()


def test_learner_edits_leave_the_build_check_green(home):
    learner.copy_labs(ROOT, report=lambda _: None)
    copy = home / "labs" / "01_data.ipynb"
    notebook = json.loads(copy.read_text())
    notebook["cells"][2]["source"] = "print('my own experiment')"
    copy.write_text(json.dumps(notebook))
    result = run_cli("build", "--check")
    assert result.returncode == 0, result.stderr


def test_binder_start_puts_the_workspace_outside_the_repository(tmp_path):
    """binder/start as repo2docker runs it (home = the repository; MLOPS_LAB_HOME unset)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_LAB_", "BINDER_"))}
    env.update(HOME=str(ROOT), TMPDIR=str(tmp_path), PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                                                            env.get("PATH", "")]))
    probe = ("import os, json; from mlops_lab import config; from jupyter_core.paths import jupyter_config_path; "
             "from traitlets.config.loader import PyFileConfigLoader; "
             "d = [p for p in jupyter_config_path() if p.endswith('binder/jupyter')][0]; "
             "c = PyFileConfigLoader('jupyter_server_config.py', path=d).load_config(); "
             "print(json.dumps({'home': str(config.home()), 'binder': config.on_binder(), "
             "'root_dir': c.ServerApp.root_dir, 'threads': os.environ['OMP_NUM_THREADS'], "
             "'cull': [c.MappingKernelManager.cull_idle_timeout, c.MappingKernelManager.cull_connected]}))")
    result = subprocess.run([str(ROOT / "binder" / "start"), sys.executable, "-c", probe], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    workspace = tmp_path.resolve() / "mlops-lab-workspace"
    assert seen["binder"] and seen["home"] == str(workspace) and seen["root_dir"] == str(workspace)
    assert not workspace.is_relative_to(ROOT)
    assert (workspace / "labs" / "00_welcome.ipynb").exists()
    assert int(seen["threads"]) == config.cpu_limit()
    assert seen["cull"][0] > 0 and seen["cull"][1] is False  # only kernels whose tab was closed


def test_two_starts_at_once_copy_each_lab_once_and_never_overwrite(home, monkeypatch):
    """The Binder stand-in started JupyterLab and the walk at the same moment, both through binder/start: the
    second `mlops-lab lab --copy-only` found its half-written copy renamed away by the first (FileNotFoundError).
    A copy that appears meanwhile is kept; each start leaves no partial file."""
    real_link = os.link

    def the_other_start_won(src, dst):
        with open(dst, "w") as f:
            f.write('{"the other start": true}')
        real_link(src, dst)

    monkeypatch.setattr(learner.os, "link", the_other_start_won)
    results = learner.copy_labs(ROOT, report=lambda _: None)
    assert {c.state for c in results} == {"yours"}
    assert (home / "labs" / "00_welcome.ipynb").read_text() == '{"the other start": true}'
    assert not list((home / "labs").glob(".*partial"))
    monkeypatch.undo()

    fresh = home / "second"
    env = {**os.environ, "MLOPS_LAB_HOME": str(fresh)}
    starts = [subprocess.Popen([sys.executable, "-m", "mlops_lab.cli", "lab", "--copy-only", "--root", str(ROOT)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in starts]
    assert [p.returncode for p in starts] == [0] * 4, outs
    labs = sorted(p.name for p in (ROOT / "labs").glob("*.ipynb"))
    assert sorted(p.name for p in (fresh / "labs").iterdir()) == labs  # no partial left, nothing else
    for name in labs:
        nbformat.read(fresh / "labs" / name, as_version=4)  # each a whole notebook
