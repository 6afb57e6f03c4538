"""Shared fixtures. Every test session gets its own workspace, never the developer's."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Tests send traffic to 127.0.0.1 only: MLflow's usage statistics off before any test module imports MLflow
# (MLflow skips them itself only while a test runs, PYTEST_CURRENT_TEST, or under CI=true).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# and the rest of what every process the course starts gets (Arrow's and glibc's allocators): set here for the
# whole session, as `mlops-lab` sets them, so that no test's result depends on whether a test that ran the
# command in this process (which sets them) came before it
from mlops_lab.config import PROCESS_DEFAULTS  # noqa: E402

for _name, _value in PROCESS_DEFAULTS.items():
    os.environ.setdefault(_name, _value)


# What the README's install (pip) does not provide. A test that needs one of these skips, saying why and
# the command that provides it; where MLOPS_LAB_REQUIRE names it (a comma-separated list, or "all": .ci/run
# provides them all and sets "all"), a missing one fails the test instead, so CI cannot pass by skipping.
# MLOPS_LAB_REQUIRE_BROWSER=1, the older switch, still requires the browser.
EXTRAS = {
    "docker": "sudo bash .ci/start-docker.sh (or start your Docker daemon)",
    "base-image": "sudo bash .ci/base-image.sh mlops-lab/python:3.11-slim-local, then "
                  "export MLOPS_LAB_BASE_IMAGE=mlops-lab/python:3.11-slim-local",
    "browser": "pip install -r tests/browser/requirements.txt && sudo apt-get install -y chromium",
    "promtool": "sudo apt-get install -y prometheus",
    "postgres": "sudo apt-get install -y postgresql (or sudo bash .ci/postgres.sh)",
    "configurable-http-proxy": "sudo apt-get install -y nodejs npm && "
                               "sudo npm install -g configurable-http-proxy@5.3.0 (or sudo bash .ci/postgres.sh)",
}


def required(extra: str) -> bool:
    """Whether this run must have ``extra`` (MLOPS_LAB_REQUIRE), so that its absence fails the test."""
    wanted = {w.strip() for w in os.environ.get("MLOPS_LAB_REQUIRE", "").split(",") if w.strip()}
    if extra == "browser" and os.environ.get("MLOPS_LAB_REQUIRE_BROWSER") == "1":
        return True
    return "all" in wanted or extra in wanted


def missing(extra: str, reason: str):
    """Skip the test: ``reason``, and the command that provides ``extra``; fail it where ``extra`` is required."""
    message = f"{reason}; to run this test: {EXTRAS[extra]}"
    if required(extra):
        pytest.fail(f"MLOPS_LAB_REQUIRE asks for {extra!r} but {message}", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def configurable_http_proxy() -> str:
    """JupyterHub's proxy (npm's configurable-http-proxy). Session-scoped, so a test that lacks it skips
    before its module's servers start."""
    found = shutil.which("configurable-http-proxy")
    if not found:
        missing("configurable-http-proxy", "JupyterHub needs npm's configurable-http-proxy, which is not on PATH")
    return found


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty workspace for one test."""
    workspace = tmp_path / "workspace"
    monkeypatch.setenv("MLOPS_LAB_HOME", str(workspace))
    return workspace


@contextlib.contextmanager
def using_env(name: str, value) -> str:
    """Set the environment variable ``name`` to ``value`` for a block (for module- and session-scoped fixtures,
    where monkeypatch is not available), then put back what was there."""
    old = os.environ.get(name)
    os.environ[name] = str(value)
    try:
        yield value
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def using_home(path: Path):
    """Point MLOPS_LAB_HOME at ``path`` for a block (for module- and session-scoped fixtures)."""
    return using_env("MLOPS_LAB_HOME", path)


@pytest.fixture(scope="session")
def course_home(tmp_path_factory) -> Path:
    """A workspace prepared up to lab 04 (data, tracked runs, a gated champion), built once per session.
    Tests that use it set MLOPS_LAB_HOME to it themselves (see use_course_home)."""
    from mlops_lab import course

    with using_home(tmp_path_factory.mktemp("course-home")) as workspace:
        course.setup(4, report=lambda _: None)
    return workspace


def _git_status():
    try:
        return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    except OSError:
        return None


# One notebook's time limit, not the course's: at load 10 on 2 cores lab 08 (43 s on a quiet machine)
# takes a few minutes; a cell gets as long as its notebook.
NOTEBOOK_TIMEOUT = 900


class LabRuns:
    """The labs (exercise form) run in one workspace, each by the test that asks for it, so each
    notebook has its own time limit (``NOTEBOOK_TIMEOUT``) and a failure names its lab. The tests ask
    in course order, so a whole session runs the labs in order, as before; ``rerun`` runs a lab a second
    time in the same workspace once every lab has had its first run (tests/test_rerun.py)."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.names = [p.name for p in notebooks_module().solution_paths(ROOT)]
        self.first: dict = {}
        self.second: dict = {}
        self.git_before = _git_status()

    def _run(self, name: str):
        (result,) = notebooks_module().run([name[:2]], labs=True, workspace=self.workspace, root=ROOT,
                                           parameters={"FAST": True}, timeout=NOTEBOOK_TIMEOUT,
                                           report=lambda _: None)
        return result

    def result(self, name: str):
        """The first run of lab ``name`` (run now if it has not run yet)."""
        if name not in self.first:
            self.first[name] = self._run(name)
        return self.first[name]

    def rerun(self, name: str):
        """The second run of lab ``name``, after every lab's first run."""
        if name not in self.second:
            for other in self.names:
                self.result(other)
            self.second[name] = self._run(name)
        return self.second[name]

    @staticmethod
    def explain(result) -> str:
        """Which lab failed, how, and where to look."""
        log = result.output.with_suffix(".kernel.log") if result.output else None
        return (f"lab {result.notebook} {result.status} after {result.seconds:.0f} s: {result.error or 'no error'} "
                f"(executed copy: {result.output}; kernel log: {log})")


def notebooks_module():
    from mlops_lab import notebooks

    return notebooks


@pytest.fixture(scope="session")
def lab_runs(tmp_path_factory) -> LabRuns:
    return LabRuns(tmp_path_factory.mktemp("lab-runs"))


@pytest.fixture
def use_course_home(course_home, monkeypatch) -> Path:
    monkeypatch.setenv("MLOPS_LAB_HOME", str(course_home))
    return course_home


@pytest.fixture
def unwritable_home(tmp_path, monkeypatch) -> Path:
    """MLOPS_LAB_HOME below a regular file: it can never be created (even as root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLOPS_LAB_HOME", str(blocker / "workspace"))
    return blocker / "workspace"


@pytest.fixture
def course_copy(tmp_path) -> Path:
    """A throwaway copy of the course folder (pyproject, solutions, labs) to edit freely."""
    dest = tmp_path / "course"
    dest.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copytree(ROOT / "solutions", dest / "solutions")
    shutil.copytree(ROOT / "labs", dest / "labs")
    return dest


@pytest.fixture
def tiny_course(tmp_path) -> Path:
    """A course folder with two one-cell notebooks (fast to run): 00 prints, 01 sleeps ``SLEEP`` seconds
    (env, default 0). The kernel of 00 writes to its own stderr at shutdown, as a kernel's log does."""
    import nbformat

    course = tmp_path / "tiny-course"
    (course / "solutions").mkdir(parents=True)
    (course / "pyproject.toml").write_text("")
    cells = {
        "00_hello": "import atexit, sys\n"
                    "atexit.register(lambda: print('kernel chatter at shutdown', file=sys.__stderr__))\n"
                    "print('hello')",
        "01_sleep": "import os, time\ntime.sleep(float(os.environ.get('SLEEP', '0')))\nprint('awake')",
    }
    for name, source in cells.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, course / "solutions" / f"{name}.ipynb")
    return course


@pytest.fixture(scope="session")
def docker_base_image() -> str:
    """A base image the Docker daemon has, for tests that build the serving image: MLOPS_LAB_BASE_IMAGE
    (or python:3.11-slim) when it can be had, else the local one, built by .ci/base-image.sh if missing.
    Skips, saying why, without a daemon or when no base image can be had."""
    from mlops_lab import container

    status = container.docker_status()
    if status.situation is container.Situation.NO_DAEMON:
        missing("docker", f"{status.reason}, so no image can be built")
    if status.ready:
        return status.base_image
    if not container.docker_status(container.LOCAL_BASE_IMAGE).ready:
        out = subprocess.run(["bash", str(ROOT / ".ci" / "base-image.sh"), container.LOCAL_BASE_IMAGE],
                             capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            missing("base-image", f"{status.reason} Building one with .ci/base-image.sh failed too: "
                                  f"{(out.stdout + out.stderr).strip()[-500:]}")
    return container.LOCAL_BASE_IMAGE


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None):
    """Run the real `mlops-lab` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mlops_lab.cli", *args],
        cwd=cwd or ROOT, env={**os.environ, **(env or {})}, input=input,
        capture_output=True, text=True, timeout=600,
    )


class Hammer:
    """Payments sent to a running server from a thread, for as long as a ``with`` block lasts: one
    at a time to /predict, every ``pause`` seconds (0: without pause), and with ``batch_every=n``
    every n-th request a batch of 8 to /predict/batch (the same routing, payment by payment).

    Keeps every request's status (its code, or the exception's name when the connection was
    refused, reset or timed out after ``timeout`` seconds), every model version that answered, each
    answer with the ``phase`` the test had declared when the request was sent, and every failure
    (anything but a 200) with its phase."""

    def __init__(self, url: str, bodies: list[dict], pause: float = 0.1, batch_every: int | None = None,
                 timeout: float = 30):
        self.url, self.bodies, self.pause, self.batch_every, self.timeout = url, bodies, pause, batch_every, timeout
        self.phase = "start"
        self.statuses: list = []
        self.versions: set[str] = set()
        self.answers: list[tuple[str, dict, int]] = []  # (phase, answer, payments in its request)
        self.failures: list[tuple] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import httpx

        with httpx.Client(base_url=self.url, timeout=self.timeout) as client:
            i = 0
            while not self._stop.is_set():
                body, phase = self.bodies[i % len(self.bodies)], self.phase
                i += 1
                try:
                    if self.batch_every and i % self.batch_every == 0:
                        start = i % (len(self.bodies) - 8)
                        response = client.post("/predict/batch", json={"transactions": self.bodies[start:start + 8]})
                        answers = response.json()["predictions"] if response.status_code == 200 else []
                    else:
                        response = client.post("/predict", json=body)
                        answers = [response.json()] if response.status_code == 200 else []
                except Exception as exc:  # a refused connection, a reset, a timeout, a body that is no JSON
                    self.statuses.append(type(exc).__name__)
                    self.failures.append((phase, repr(exc)))
                else:
                    self.statuses.append(response.status_code)
                    if response.status_code != 200:
                        self.failures.append((phase, response.status_code, response.text[:300]))
                    for answer in answers:
                        self.versions.add(answer["model_version"])
                        self.answers.append((phase, answer, len(answers)))
                self._stop.wait(self.pause)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def in_phase(self, phase: str, alone: bool = False) -> list[dict]:
        """The answers in ``phase`` (with ``alone``, only those to single payments, not batches)."""
        return [a for p, a, n in self.answers if p == phase and (n == 1 or not alone)]

    def wait(self, phase: str, n: int, timeout: float = 20):
        """Wait until ``n`` answers have come back in ``phase``."""
        deadline = time.monotonic() + timeout
        while len(self.in_phase(phase)) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.in_phase(phase)) >= n, f"only {len(self.in_phase(phase))} answers in phase {phase}"
