"""Binder detection, and the limits a container (Binder: 2 GB, 1 CPU) really has."""

import subprocess

import pytest

from mlops_lab import config, course

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
    check = course._memory()
    assert not check.ok and "0.4 GiB free of this container's 2.0 GiB limit" in check.detail
    assert "shut down the kernels" in check.detail
    monkeypatch.setattr(config, "memory_limit", lambda: (2 * 2**30, int(0.3 * 2**30)))
    assert course._memory().ok


def test_doctor_reports_usable_cpus():
    lines = []
    course.doctor(report=lines.append)
    (cpus,) = [line for line in lines if " cpus " in line]
    assert f"{config.cpu_limit()} usable" in cpus
