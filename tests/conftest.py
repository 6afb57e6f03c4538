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


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty workspace for one test."""
    workspace = tmp_path / "workspace"
    monkeypatch.setenv("MLOPS_LAB_HOME", str(workspace))
    return workspace


@contextlib.contextmanager
def using_home(path: Path):
    """Point MLOPS_LAB_HOME at ``path`` for a block (for module- and session-scoped fixtures)."""
    old = os.environ.get("MLOPS_LAB_HOME")
    os.environ["MLOPS_LAB_HOME"] = str(path)
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop("MLOPS_LAB_HOME", None)
        else:
            os.environ["MLOPS_LAB_HOME"] = old


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


@pytest.fixture(scope="session")
def lab_runs(tmp_path_factory):
    """Every lab (exercise form) run once, in order, in one workspace: (results, git status before, after).
    Session-scoped so that tests/test_rerun.py can run the labs a second time in the same workspace."""
    from mlops_lab import notebooks

    before = _git_status()
    results = notebooks.run(labs=True, workspace=tmp_path_factory.mktemp("lab-runs"), root=ROOT,
                            parameters={"FAST": True})
    return results, before, _git_status()


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
        pytest.skip(f"{status.reason}, so no image can be built (CI starts a daemon)")
    if status.ready:
        return status.base_image
    if not container.docker_status(container.LOCAL_BASE_IMAGE).ready:
        out = subprocess.run(["bash", str(ROOT / ".ci" / "base-image.sh"), container.LOCAL_BASE_IMAGE],
                             capture_output=True, text=True, timeout=1200)
        if out.returncode != 0:
            pytest.skip(f"{status.reason} Building one with .ci/base-image.sh failed too: "
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
