"""Tests that need what the README's install does not provide (a Docker daemon, chromium, promtool,
PostgreSQL, npm's configurable-http-proxy) skip with the reason and the command that provides it, and
fail instead where MLOPS_LAB_REQUIRE asks for them (.ci/run sets "all"). Issue 23: the JupyterHub test
failed without configurable-http-proxy."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXTRAS, ROOT, required

HUB_TEST = "tests/test_workshop.py::test_jupyterhub_room_runs_lab_00_for_two_learners"


def _pytest(*args, env):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-rs",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture
def path_without_tools(tmp_path) -> dict:
    """The environment with a PATH that has Python's folder only (no configurable-http-proxy)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_LAB_REQUIRE")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{tmp_path}"
    return env


def test_hub_test_skips_without_the_proxy_and_says_how_to_get_it(path_without_tools):
    result = _pytest(HUB_TEST, env=path_without_tools)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "1 skipped" in out and "npm install -g configurable-http-proxy" in out, out[-3000:]
    assert "initdb" not in out  # skipped before the module's PostgreSQL started


def test_hub_test_fails_without_the_proxy_where_it_is_required(path_without_tools):
    result = _pytest(HUB_TEST, env={**path_without_tools, "MLOPS_LAB_REQUIRE": "all"})
    out = result.stdout + result.stderr
    assert result.returncode == 1 and ("1 failed" in out or "1 error" in out), out[-3000:]
    assert "MLOPS_LAB_REQUIRE asks for 'configurable-http-proxy'" in out


def test_required_reads_the_list_and_the_old_browser_switch(monkeypatch):
    monkeypatch.delenv("MLOPS_LAB_REQUIRE", raising=False)
    monkeypatch.delenv("MLOPS_LAB_REQUIRE_BROWSER", raising=False)
    assert not any(required(extra) for extra in EXTRAS)
    monkeypatch.setenv("MLOPS_LAB_REQUIRE", "promtool, docker")
    assert [extra for extra in EXTRAS if required(extra)] == ["docker", "promtool"]
    monkeypatch.setenv("MLOPS_LAB_REQUIRE", "all")
    assert all(required(extra) for extra in EXTRAS)
    monkeypatch.delenv("MLOPS_LAB_REQUIRE")
    monkeypatch.setenv("MLOPS_LAB_REQUIRE_BROWSER", "1")
    assert [extra for extra in EXTRAS if required(extra)] == ["browser"]
