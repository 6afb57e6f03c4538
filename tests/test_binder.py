"""Binder detection, and the limits a container (Binder: 2 GB, 1 CPU) really has."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from mlops_lab import config, course, learner

from .conftest import ROOT

BASE_IMAGE = "mlops-lab/python:3.11-slim-local"


def test_binder_is_detected_and_the_workspace_leaves_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("MLOPS_LAB_HOME", raising=False)
    for name in config._BINDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not config.on_binder()
    assert config.home().parent == config.Path.home().resolve()
    monkeypatch.setenv("BINDER_LAUNCH_HOST", "https://mybinder.org/")  # as mybinder.org sets it
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert config.on_binder()
    assert config.home() == tmp_path.resolve() / "mlops-lab-workspace"


def test_the_default_workspace_name_is_git_ignored():
    result = subprocess.run(["git", "check-ignore", "-q", "mlops-lab-workspace/x"], cwd=ROOT)
    if result.returncode == 128:
        pytest.skip("not a git checkout")
    assert result.returncode == 0


def _docker_base_image() -> bool:
    try:
        import docker

        docker.from_env().images.get(BASE_IMAGE)
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _docker_base_image(), reason=f"needs a Docker daemon and {BASE_IMAGE} (.ci/base-image.sh)")
def test_limits_come_from_the_containers_cgroup_not_the_host():
    code = ("import sys; sys.path.insert(0, '/src'); from mlops_lab import config; "
            "print(config.cpu_limit(), config.memory_limit()[0])")
    out = subprocess.run(["docker", "run", "--rm", "--cpus=1", "--memory=768m", "-v", f"{ROOT}:/src:ro",
                          BASE_IMAGE, "python3", "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", str(768 * 2**20)]


def test_doctor_warns_when_the_container_is_nearly_full(monkeypatch):
    # 2 GB Binder container with 1.6 GB in use: the kernels of earlier labs are still running
    monkeypatch.setattr(config, "memory_limit", lambda: (2 * 2**30, int(1.6 * 2**30)))
    kernels = [learner.RunningKernel("02_train_and_track.ipynb", 11, 161.0),
               learner.RunningKernel("01_data.ipynb", 12, 148.4)]
    monkeypatch.setattr(learner, "running_kernels", lambda: kernels)
    check = course._memory()
    assert not check.ok and "0.4 GiB free of this container's 2.0 GiB limit" in check.detail
    # which kernels hold the memory, largest first, and where JupyterLab shuts them down
    assert "02_train_and_track.ipynb (161 MB), 01_data.ipynb (148 MB)" in check.detail
    assert "Running Terminals and Kernels panel" in check.detail
    monkeypatch.setattr(learner, "running_kernels", lambda: [])  # none found: the general advice
    assert "Shut down the kernels of labs you have finished" in course._memory().detail
    monkeypatch.setattr(config, "memory_limit", lambda: (2 * 2**30, int(0.3 * 2**30)))
    assert course._memory().ok


def test_doctor_reports_usable_cpus():
    lines = []
    course.doctor(report=lines.append)
    (cpus,) = [line for line in lines if " cpus " in line]
    assert f"{config.cpu_limit()} usable" in cpus


# --- binder/forking_kernel.py: kernels forked from one pre-loaded process (memory on Binder) ----

FORKING_KERNEL = ROOT / "binder" / "forking_kernel.py"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork server and /proc: Linux")


def _rollup_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return fields


def _ask(client, code: str) -> str:
    """Run code in the kernel and return what it printed."""
    out = []
    reply = client.execute_interactive(code, timeout=60, output_hook=lambda msg: out.append(
        msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out).strip()


@pytest.fixture
def forking_spec(tmp_path, monkeypatch):
    """The python3 kernelspec binder/start installs, in a private JUPYTER_PATH and socket folder."""
    subprocess.run([sys.executable, str(FORKING_KERNEL), "--install", str(tmp_path / "jupyter")], check=True,
                   capture_output=True)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    runtime = tempfile.mkdtemp(prefix="mlk-", dir="/tmp")  # this test's own server (a socket path is short)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    servers: list[int] = []
    yield servers
    for pid in servers:  # the server outlives its kernels on Binder; here it ends with the test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(runtime, ignore_errors=True)


@linux_only
def test_forked_kernels_share_the_preloaded_libraries_and_behave_like_plain_kernels(forking_spec, tmp_path):
    from jupyter_client.manager import start_new_kernel

    spec = json.loads((tmp_path / "jupyter" / "kernels" / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable and str(FORKING_KERNEL) in spec["argv"]
    assert "{connection_file}" in spec["argv"]
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    started = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(workdir), startup_timeout=120,
                                           env={**os.environ, "LAB_MARKER": name, "TMPDIR": str(tmp_path / name)})
        started.append((manager, client))
    try:
        facts = [json.loads(_ask(client, "import json, os, sys, tempfile, numpy; print(json.dumps([os.getpid(), "
                                         "os.getppid(), os.getcwd(), os.environ['LAB_MARKER'] + ' ' + "
                                         "tempfile.gettempdir(), numpy.random.rand(), "
                                         "'sklearn.ensemble' in sys.modules, "
                                         "len(get_ipython().events.callbacks['post_run_cell'])]))"))
                 for _, client in started]
        (pid_a, server, cwd_a, marker_a, random_a, preloaded_a, hooks_a) = facts[0]
        (pid_b, server_b, _, marker_b, random_b, _, _) = facts[1]
        forking_spec.append(server)
        assert server == server_b and server not in (pid_a, pid_b)  # both forked from the one server
        # the launcher's working directory and environment, as a plain kernel would have them
        assert (cwd_a, marker_a, marker_b) == (str(workdir), f"a {tmp_path / 'a'}", f"b {tmp_path / 'b'}")
        assert random_a != random_b  # each kernel has its own random state, as a fresh process would
        assert preloaded_a and hooks_a >= 1  # libraries already imported; memory released after each cell
        # The libraries' pages are shared: most of what each kernel maps is not its own.
        memory = _rollup_mb(pid_b)
        assert memory["Private_Clean"] + memory["Private_Dirty"] < 0.5 * memory["Rss"], memory

        # Interrupt reaches the kernel through the launcher.
        manager, client = started[0]
        client.execute("import time; time.sleep(60)")
        time.sleep(1)
        manager.interrupt_kernel()
        reply = client.get_shell_msg(timeout=30)
        assert reply["content"]["status"] == "error" and reply["content"]["ename"] == "KeyboardInterrupt"

        # A shut-down kernel's process ends; a killed launcher takes its kernel with it.
        manager.shutdown_kernel()
        _wait_gone(pid_a)
        manager_b, client_b = started[1]
        manager_b.provisioner.process.kill()
        _wait_gone(pid_b)
        assert os.path.exists(f"/proc/{server}")  # the server stays for the next kernel

        # If the server dies, its kernels keep working, and their launchers still stand in for them.
        manager_c, client_c = start_new_kernel(kernel_name="python3", startup_timeout=120)
        started.append((manager_c, client_c))
        pid_c = int(_ask(client_c, "import os; print(os.getpid())"))
        os.kill(server, signal.SIGKILL)
        _wait_gone(server)
        time.sleep(0.5)
        assert _ask(client_c, "print(6 * 7)") == "42" and manager_c.is_alive()
        manager_c.shutdown_kernel()
        _wait_gone(pid_c)
        assert manager_c.provisioner is None or not manager_c.has_kernel
    finally:
        for manager, client in started:
            client.stop_channels()
            if manager.has_kernel:
                manager.shutdown_kernel(now=True)


@linux_only
def test_the_preloaded_server_warms_up_the_courses_code_and_leaves_nothing_behind(forking_spec, tmp_path,
                                                                                  monkeypatch):
    """Before the first fork it runs the labs' common code once (simulate, train, score, drift, the
    API's app, a plot), so every kernel shares what that writes: no step may fail silently, and it
    must leave no thread (a fork copies only one), no file and no open figure behind."""
    from jupyter_client.manager import start_new_kernel

    untouched = tmp_path / "workspace"
    monkeypatch.setenv("MLOPS_LAB_HOME", str(untouched))
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        facts = json.loads(_ask(client, "import json, os, sys, matplotlib.pyplot as plt, prometheus_client.metrics as m; "
                                        "print(json.dumps([os.getppid(), 'mlops_lab.serving.app' in sys.modules, "
                                        "'mlops_lab.monitoring.drift' in sys.modules, plt.get_fignums(), "
                                        "m._use_created]))"))
        server, served, drift, figures, created = facts
        forking_spec.append(server)
        log = Path(os.environ["XDG_RUNTIME_DIR"]).glob("mlops-lab-kernels-*.sock.log")
        log_text = "".join(path.read_text() for path in log)
        assert "serving on" in log_text and "warm-up skipped" not in log_text, log_text  # e.g. a course function whose signature changed
        assert served and drift  # imported (and run) before the fork, so shared
        assert len(os.listdir(f"/proc/{server}/task")) == 1  # one thread: what a fork copies
        assert figures == [] and created is True  # no figure open, prometheus' setting as it was
        assert not untouched.exists()  # nothing written to the workspace
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


@linux_only
def test_a_kernel_still_starts_when_the_preloaded_server_cannot(forking_spec, tmp_path, monkeypatch):
    from jupyter_client.manager import start_new_kernel

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))  # the server cannot bind its socket
    monkeypatch.setenv("MLOPS_LAB_FORK_SERVER_TIMEOUT", "3")
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        pid = int(_ask(client, "import os; print(os.getpid())"))
        assert pid == manager.provisioner.process.pid  # the launcher became a plain ipykernel
        assert _ask(client, "print(6 * 7)") == "42"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state == "Z":
            return
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still running after {timeout} s")


@linux_only
@pytest.mark.parametrize("fork", ["1", "0"])
def test_binder_start_installs_the_forking_kernel_unless_turned_off(tmp_path, fork):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_LAB_", "BINDER_", "JUPYTER_"))}
    env.update(HOME=str(ROOT), TMPDIR=str(tmp_path), MLOPS_LAB_FORK_KERNELS=fork,
               PATH=os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")]))
    probe = ("import json; from jupyter_client.kernelspec import KernelSpecManager; "
             "print(json.dumps(KernelSpecManager().get_kernel_spec('python3').argv))")
    result = subprocess.run([str(ROOT / "binder" / "start"), sys.executable, "-c", probe], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout.strip().splitlines()[-1])
    assert (str(FORKING_KERNEL) in argv) == (fork == "1"), argv


@linux_only
def test_running_kernels_names_each_kernels_notebook_and_memory(forking_spec, tmp_path, monkeypatch):
    """Both kinds of kernel: forked from the pre-loaded server, and plain (the kernelspec without it)."""
    from jupyter_client.manager import start_new_kernel

    started = []
    try:
        for notebook, plain in (("labs/01_data.ipynb", False), ("labs/02_train_and_track.ipynb", True)):
            env = {**os.environ, "JPY_SESSION_NAME": str(tmp_path / notebook)}
            if plain:
                env.pop("JUPYTER_PATH")
                monkeypatch.delenv("JUPYTER_PATH")
            started.append(start_new_kernel(kernel_name="python3", startup_timeout=120, env=env))
        pids = [int(_ask(client, "import os; print(os.getpid())")) for _, client in started]
        _ask(started[1][1], "import numpy; held = numpy.ones(40 * 2**20 // 8)")  # 40 MB more
        forking_spec.append(psutil.Process(pids[0]).ppid())
        found = {k.pid: k for k in learner.running_kernels()}
        forked, plain = found[pids[0]], found[pids[1]]
        assert (forked.notebook, plain.notebook) == ("01_data.ipynb", "02_train_and_track.ipynb")
        assert plain.megabytes > forked.megabytes + 30  # the plain one imported its own libraries, and holds 40 MB
        advice = learner.shut_down_advice(exclude_pid=pids[0])
        assert "02_train_and_track.ipynb (" in advice and "01_data.ipynb" not in advice
    finally:
        for manager, client in started:
            client.stop_channels()
            manager.shutdown_kernel(now=True)


@linux_only
def test_a_module_run_through_the_forking_server_is_forked_and_stopped_like_a_process(forking_spec, tmp_path,
                                                                                     monkeypatch):
    """`forking_kernel.py --run -m MODULE ...`, as start_server uses it on Binder (MLOPS_LAB_FORK_PYTHON)."""
    from mlops_lab.serving import server

    monkeypatch.setenv("MLOPS_LAB_FORK_PYTHON", str(FORKING_KERNEL))
    python = server._python()
    assert python[0] == sys.executable and python[-2:] == [str(FORKING_KERNEL), "--run"]
    port = server.free_port()
    (tmp_path / "hello.txt").write_text("hello")
    launcher = subprocess.Popen([*python, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/hello.txt").text == "hello"  # its cwd, its argv
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and launcher.poll() is None
                time.sleep(0.2)
        (child,) = [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"]
        forking_spec.append(psutil.Process(child.pid).ppid())
        assert child.pid != launcher.pid  # forked from the pre-loaded server, not started by the launcher
        launcher.terminate()  # as ServerHandle.stop does: the signal reaches the module's process
        launcher.wait(30)  # the launcher ends with it
        _wait_gone(child.pid)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    monkeypatch.setenv("MLOPS_LAB_FORK_PYTHON", str(tmp_path / "missing.py"))
    assert server._python() == [sys.executable]  # outside Binder (or without the script): plain Python
