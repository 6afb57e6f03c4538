import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mlops_lab import course, setup_steps
from mlops_lab.errors import LabError

from .conftest import ROOT, run_cli


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
    # issue 8 friction: `setup 9` said "numbered 0 to 8" while `setup 6` said "labs 00 to 05"
    newest = course.newest_lab()
    assert newest == max(setup_steps.STEPS) + 1
    for lab in (newest + 1, 99, -1):
        with pytest.raises(LabError, match=f"no lab {lab} in this version of the course: labs are numbered "
                                           f"00 to {newest:02d}"):
            course.setup(lab)
    result = run_cli("setup", "99", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 2 and "no lab 99" in result.stderr and "Traceback" not in result.stderr
    assert f"00 to {newest:02d}" in result.stderr


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


def test_doctor_creates_nothing(home):
    # issue 8 friction: doctor created the workspace and an empty mlflow.db
    result = run_cli("doctor", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 0, result.stdout
    assert "not created yet" in result.stdout
    assert not home.exists()


def test_doctor_tells_the_three_docker_situations_apart(home, docker_base_image):
    # issue 8, item 10: with a daemon but no base image, doctor said lab 05 "builds and runs a real image"
    env = {"MLOPS_LAB_HOME": str(home)}
    ready = run_cli("doctor", env={**env, "MLOPS_LAB_BASE_IMAGE": docker_base_image})
    assert f"ok   docker daemon   reachable, and the base image {docker_base_image} is" in ready.stdout
    assert "lab 05 builds and runs a real image" in ready.stdout
    no_base = run_cli("doctor", env={**env, "MLOPS_LAB_BASE_IMAGE": "mlops-lab/no-such-base:0"})
    assert no_base.returncode == 0, no_base.stdout
    assert ("note docker daemon   reachable, but the base image mlops-lab/no-such-base:0 is not on this machine "
            "and could not be pulled") in no_base.stdout
    assert "bash .ci/base-image.sh" in no_base.stdout and "as a local process" in no_base.stdout
    assert "builds and runs a real image" not in no_base.stdout
    no_daemon = run_cli("doctor", env={**env, "DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert "note docker daemon   not reachable: lab 05 runs the same server entrypoint" in no_daemon.stdout


def test_setup_fresh_empties_the_workspace_first(home):
    course.setup(0)
    (home / "left-over").write_text("from an earlier lab")
    result = run_cli("setup", "0", "--fresh", env={"MLOPS_LAB_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    assert "ready for lab 00 (started afresh)" in result.stdout
    assert sorted(p.name for p in home.iterdir()) == [".mlops-lab"]


def _run_tiny(course_folder, *args, env=None):
    return run_cli("run", "--root", str(course_folder), *args, env=env)


def test_run_prints_the_table_and_real_problems_only(tiny_course, tmp_path):
    # issue 8 friction: ipykernel's TCP warning once per notebook, kernel chatter at shutdown
    # ("KeyboardInterrupt caught in kernel"), and a /tmp/mlops-lab-run-* folder left behind
    result = _run_tiny(tiny_course, env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert "2/2 passed" in result.stdout
    for noise in ("WARNING", "without encryption", "kernel chatter", "KeyboardInterrupt"):
        assert noise not in result.stdout
    assert not list(tmp_path.glob("mlops-lab-run-*"))


def test_run_twice_in_the_same_workspace(tiny_course, tmp_path):
    workspace = tmp_path / "course-run"
    for _ in range(2):
        result = _run_tiny(tiny_course, "--workspace", str(workspace))
        assert result.returncode == 0, result.stdout + result.stderr
    executed = workspace / "executed" / "solutions"
    assert sorted(p.name for p in executed.iterdir()) == [
        "00_hello.ipynb", "00_hello.kernel.log", "01_sleep.ipynb", "01_sleep.kernel.log"]
    assert "kernel chatter at shutdown" in (executed / "00_hello.kernel.log").read_text()


def test_run_keeps_a_failed_run_and_says_where(tiny_course, tmp_path):
    (tiny_course / "solutions" / "01_sleep.ipynb").write_text(
        (tiny_course / "solutions" / "01_sleep.ipynb").read_text().replace("print('awake')", "1 / 0"))
    result = _run_tiny(tiny_course, env={"TMPDIR": str(tmp_path)})
    assert result.returncode == 1
    assert "FAILED 01_sleep.ipynb: cell 1: ZeroDivisionError" in result.stderr
    kept = list(tmp_path.glob("mlops-lab-run-*"))
    assert len(kept) == 1 and f"Kept the workspace {kept[0]}" in result.stdout


@pytest.mark.parametrize("delay", [0, 3], ids=["just-after-a-row", "while-a-cell-runs"])
def test_ctrl_c_prints_the_rows_finished_so_far(tiny_course, tmp_path, delay):
    # issue 8 friction: Ctrl-C printed "Aborted!" and no table; issue 23: still so when Ctrl-C came just
    # after a row printed (between two notebooks, while the next kernel started): 3 of 3
    env = {**os.environ, "SLEEP": "120", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    process = subprocess.Popen([sys.executable, "-m", "mlops_lab.cli", "run", "--root", str(tiny_course)],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if "00_hello.ipynb" in line:
            break
    time.sleep(delay)  # 0: between two notebooks; 3: 01 is starting or sleeping in its kernel
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    out = "".join(lines) + out
    assert process.returncode == 130, out + err
    assert "Aborted!" not in err and "Traceback" not in err
    table = out[out.index("notebook "):]
    assert "00_hello.ipynb                   ok" in table and "01_sleep.ipynb                   interrupted" in table
    assert "1/2 passed" in table and "1 notebook(s) finished before Ctrl-C" in err
    assert not list(tmp_path.glob("mlops-lab-run-*"))


def _options(command) -> set[str]:
    return {name for param in command.params for name in getattr(param, "opts", [])}


def test_readme_commands_work_as_shown():
    # issue 8 friction: the README used `.venv/bin/...`, then `mlops-lab doctor`, which is not on PATH
    from mlops_lab.cli import main

    readme = (ROOT / "README.md").read_text()
    quick_start = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert ". .venv/bin/activate" in quick_start and "&& mlops-lab run" in quick_start
    assert re.findall(r"\.venv/bin/(?!activate)\S*", readme) == []
    spans = re.findall(r"`(mlops-lab [^`]+)`", readme)
    bullet = re.search(r"\* `mlops-lab` commands: (.*?)\n(?:\S|\n)", readme, re.S).group(1)
    spans += [f"mlops-lab {span}" for span in re.findall(r"`([^`]+)`", bullet)]
    assert len(spans) >= 10
    for span in spans:
        words = span.replace("[", " ").replace("]", " ").replace("|", " ").split()[1:]
        assert words[0] in main.commands, span
        command = main
        while words and words[0] in getattr(command, "commands", {}):  # groups: `workshop server ...`
            command = command.commands[words.pop(0)]
        unknown = {w.split("=")[0] for w in words if w.startswith("--")} - _options(command)
        assert not unknown, f"{span}: {unknown}"


def test_lab_as_root_passes_allow_root_and_says_so(home):
    from mlops_lab import learner

    command = learner.jupyter_lab_command("00", ("--no-browser",), ROOT)
    assert ("--allow-root" in command) == (os.geteuid() == 0)
    assert learner.jupyter_lab_command("00", ("--allow-root",), ROOT).count("--allow-root") == 1
    result = run_cli("lab", "--version", env={"MLOPS_LAB_HOME": str(home)})  # JupyterLab prints its version
    assert result.returncode == 0, result.stdout + result.stderr
    assert ("passing --allow-root to JupyterLab" in result.stdout) == (os.geteuid() == 0)
    assert "Running as root is not recommended" not in result.stdout + result.stderr


def test_jupyter_started_by_the_course_has_mlflow_ui_in_its_launcher(home, monkeypatch):
    """issue 22, item 6: the launcher's MLflow UI tile (jupyter-server-proxy) on the learner's store, and
    terminals that keep the course's PATH (a login shell ran /etc/profile: 'mlflow: command not found')."""
    from traitlets.config import Config

    from mlops_lab import config, learner

    env = learner.jupyter_environment({"PATH": "/usr/bin:/bin"})
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep)[0] == str(learner.JUPYTER_CONFIG)
    for folder in (learner.JUPYTER_CONFIG, ROOT / "binder" / "jupyter"):  # mlops-lab lab, and Binder
        c = Config()
        exec(compile((folder / "jupyter_server_config.py").read_text(), "config", "exec"), {"get_config": lambda c=c: c})
        entry = c.ServerProxy.servers["mlflow"]
        command = entry["command"](port=5123)
        assert command[1:4] == ["-m", "mlflow", "ui"] and os.path.exists(command[0])
        assert command[command.index("--backend-store-uri") + 1] == config.tracking_uri()
        assert command[command.index("--port") + 1] == "5123" and "127.0.0.1" in command
        assert entry["launcher_entry"]["title"] == "MLflow UI"
        assert open(entry["launcher_entry"]["icon_path"]).read().lstrip().startswith("<svg")
        assert "-l" not in c.ServerApp.terminado_settings["shell_command"]
    assert learner.mlflow_ui_url().startswith("mlflow ui --backend-store-uri ")  # outside Jupyter: the command


def _after_the_command(variable: str) -> str | None:
    """``variable`` in this process after `mlops-lab lab --copy-only` ran in it (what the command starts inherits)."""
    from click.testing import CliRunner

    from mlops_lab import cli

    result = CliRunner().invoke(cli.main, ["lab", "--copy-only", "--root", str(ROOT)])
    assert result.exit_code == 0, result.output
    return os.environ.get(variable)


def _as_binder_start_sets(variable: str, home) -> subprocess.CompletedProcess:
    """binder/start run with ``variable`` unset, echoing what it leaves in ``variable`` for JupyterLab."""
    env = {k: v for k, v in os.environ.items() if k != variable}
    env.update(MLOPS_LAB_FORK_KERNELS="0", MLOPS_LAB_HOME=str(home),
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]))
    return subprocess.run(["bash", str(ROOT / "binder" / "start"), "bash", "-c", f"echo ${variable}"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_what_the_course_starts_sends_no_usage_statistics(home, monkeypatch):
    """MLflow 3 sends usage statistics to mlflow-telemetry.io from every process that imports it (unless in CI
    or under pytest): the `mlops-lab` command, and JupyterLab with its kernels and MLflow's UI, turn that off
    before MLflow is imported, unless the learner set it; the Binder start does the same."""
    from mlops_lab import learner

    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    assert learner.jupyter_environment({"PATH": "/usr/bin"})["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert learner.jupyter_environment({"MLFLOW_DISABLE_TELEMETRY": "false"})["MLFLOW_DISABLE_TELEMETRY"] == "false"
    assert _after_the_command("MLFLOW_DISABLE_TELEMETRY") == "true"  # what the command starts inherits it
    binder = _as_binder_start_sets("MLFLOW_DISABLE_TELEMETRY", home)
    assert binder.stdout.strip() == "true", binder.stdout + binder.stderr


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Arrow's jemalloc is in its Linux wheels only")
def test_what_the_course_starts_hands_arrows_memory_back(home, monkeypatch):
    """issue 26: pandas 3 keeps strings and parquet reads in Arrow memory, and Arrow's default allocator keeps
    what was freed; the processes the course starts (the command's, JupyterLab's kernels) use jemalloc, which
    hands it back, unless an allocator was chosen (Binder's start chooses glibc's for its forked kernels)."""
    from mlops_lab import learner

    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    kernel_env = learner.jupyter_environment({"PATH": os.environ["PATH"]})
    assert kernel_env["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"
    assert learner.jupyter_environment({"ARROW_DEFAULT_MEMORY_POOL": "system"})["ARROW_DEFAULT_MEMORY_POOL"] == "system"
    pool = subprocess.run([sys.executable, "-c", "import pandas, pyarrow as pa; "
                           "pandas.DataFrame({'s': ['a', 'b']}).to_parquet('/dev/null'); "
                           "print(pa.default_memory_pool().backend_name)"],
                          env=kernel_env, capture_output=True, text=True, timeout=120)
    assert pool.stdout.strip() == "jemalloc", pool.stdout + pool.stderr  # Arrow took it, with no warning
    assert "nsupported" not in pool.stderr, pool.stderr
    assert _after_the_command("ARROW_DEFAULT_MEMORY_POOL") == "jemalloc"  # what the command starts inherits it
    binder = _as_binder_start_sets("ARROW_DEFAULT_MEMORY_POOL", home)
    # but Binder's kernels are forked from one pre-loaded process, where glibc's allocator, tuned, held least:
    # binder/start chooses it, and the command run in a Binder terminal keeps that choice
    assert binder.stdout.strip() == "system", binder.stdout + binder.stderr
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "system")
    assert _after_the_command("ARROW_DEFAULT_MEMORY_POOL") == "system"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings: Linux")
def test_what_the_course_starts_tunes_glibcs_malloc_as_binder_does(home, monkeypatch):
    """issue 26: the kernels `mlops-lab run` and JupyterLab start get glibc's malloc tuned (two arenas, a fixed
    mmap threshold: freed arrays go back to the system), with the values binder/start sets, unless the user
    set them; they must be in the environment before the process starts, which is where they are."""
    from mlops_lab import config, learner

    names = ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    for name in names:  # unset here, and as they were after the test (the command sets them in this process)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    kernel_env = learner.jupyter_environment({"PATH": os.environ["PATH"]})
    for name in names:
        binder = _as_binder_start_sets(name, home)
        assert kernel_env[name] == config.PROCESS_DEFAULTS[name] == binder.stdout.strip(), (name, binder.stderr)
        assert learner.jupyter_environment({name: "7"})[name] == "7"
    assert _after_the_command("MALLOC_ARENA_MAX") == "2"  # what the command starts inherits it
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert _after_the_command("MALLOC_ARENA_MAX") == "4"


def test_dagsters_ui_from_the_launcher_starts_offline_and_quiet(home):
    """issue 25: the Dagster tile may be opened before lab 09 ever ran; its DAGSTER_HOME already says no usage
    statistics (they would go to telemetry.dagster.io) and no community sign-up dialog, as Dagster reads it."""
    import dagster as dg
    from traitlets.config import Config

    from mlops_lab import learner, orchestration

    c = Config()
    learner.configure_jupyter(c)
    dagster_home = c.ServerProxy.servers["dagster"]["environment"]["DAGSTER_HOME"]
    seen = dg.DagsterInstance.from_config(dagster_home)
    assert not seen.telemetry_enabled and not seen.nux_enabled
    lab09 = orchestration.instance(fresh=True)  # lab 09's own start, forgetting the history: the same
    assert lab09.root_directory == dagster_home and not lab09.telemetry_enabled and not lab09.nux_enabled


def test_re_executing_a_lab_in_preview_writes_it_back_where_it_lives(tiny_course, home):
    """Maintainers re-execute solutions to store their outputs (for nbval); a lab in preview lives in
    solutions/preview/, and its outputs go back there, not beside the course's labs."""
    import shutil

    import nbformat

    from mlops_lab import notebooks

    (tiny_course / "solutions" / "preview").mkdir()
    shutil.move(tiny_course / "solutions" / "01_sleep.ipynb", tiny_course / "solutions" / "preview" / "01_sleep.ipynb")
    [result] = notebooks.execute_solutions(["01"], root=tiny_course, report=lambda _: None)
    assert result.ok, result.error
    assert not (tiny_course / "solutions" / "01_sleep.ipynb").exists()
    stored = nbformat.read(tiny_course / "solutions" / "preview" / "01_sleep.ipynb", as_version=4)
    assert stored.cells[0].outputs[0]["text"] == "awake\n"
