"""Shared fixtures. Every test session gets its own workspace, never the developer's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Set before any kernel (nbval, papermill) or server starts, so they inherit it.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlops-lab-tests-"))
os.environ["MLOPS_LAB_HOME"] = str(_SESSION_HOME)
os.environ.pop("MLOPS_LAB_TRACKING_URI", None)
os.environ.pop("MLOPS_LAB_STRICT", None)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty workspace for one test."""
    workspace = tmp_path / "workspace"
    monkeypatch.setenv("MLOPS_LAB_HOME", str(workspace))
    return workspace


@pytest.fixture
def course_copy(tmp_path) -> Path:
    """A throwaway copy of the course folder (pyproject, solutions, labs) to edit freely."""
    dest = tmp_path / "course"
    dest.mkdir()
    shutil.copy(ROOT / "pyproject.toml", dest)
    shutil.copytree(ROOT / "solutions", dest / "solutions")
    shutil.copytree(ROOT / "labs", dest / "labs")
    return dest


def run_cli(*args: str, cwd: Path | None = None, env: dict | None = None, input: str | None = None):
    """Run the real `mlops-lab` command in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "mlops_lab.cli", *args],
        cwd=cwd or ROOT, env={**os.environ, **(env or {})}, input=input,
        capture_output=True, text=True, timeout=600,
    )


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
