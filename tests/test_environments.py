"""pyproject.toml (ranges), requirements.txt (pins), environment.yml and binder/ agree."""

import re
import subprocess
import sys
import tomllib

import yaml
from packaging.requirements import Requirement

from .conftest import ROOT


def _pins(lines):
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = version
    return pins


def _conda_pip_pins(path):
    env = yaml.safe_load(path.read_text())
    assert "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert any(str(d).startswith("python=3.11") for d in deps)
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    return _pins(pip_section)


def test_pins_satisfy_pyproject_ranges_and_name_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert {r.name.lower() for r in ranges} == set(pins)
    for r in ranges:
        assert r.specifier.contains(pins[r.name.lower()]), f"{r.name}=={pins[r.name.lower()]} is outside {r.specifier}"


def test_conda_and_binder_environments_use_the_same_pins():
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert _conda_pip_pins(ROOT / "environment.yml") == pins
    assert _conda_pip_pins(ROOT / "binder" / "environment.yml") == pins


def test_binder_installs_the_package_and_readme_badge_opens_lab_00():
    post_build = (ROOT / "binder" / "postBuild").read_text()
    assert "set -e" in post_build and "pip install" in post_build and " -e ." in post_build
    readme = (ROOT / "README.md").read_text()
    badge = re.search(r"\(https://mybinder\.org/v2/gh/[^)]*\)", readme)
    assert badge and "urlpath=lab/tree/labs/00_welcome.ipynb" in badge.group(0)


def test_binders_image_leaves_out_the_repositorys_history():
    """repo2docker puts in Binder's image what docker-py's exclude_paths keeps of the clone, with the patterns of
    binder/.dockerignore (repo2docker's binder_path; lines starting with # dropped): .git must stay out, so that
    the course reads the home folder as the stand-in's image has it and the CI job result binder/postBuild warms
    in keeps its key at launch (with .git, git's untracked files took in the home's changing dot files)."""
    from docker.utils.build import exclude_paths

    lines = [line.strip() for line in (ROOT / "binder" / ".dockerignore").read_text().splitlines()]
    kept = exclude_paths(str(ROOT), [line for line in lines if line and not line.startswith("#")])
    assert not [p for p in kept if p == ".git" or p.startswith(".git/")]
    assert {"binder/postBuild", "binder/start", "mlops_lab/__init__.py", "solutions/00_welcome.ipynb"} <= kept


def test_pip_check_is_clean():
    """The pinned set is consistent as installed (e.g. notebook 7.4 with a jupyterlab it accepts), as
    binder/postBuild checks on Binder, where these pins join repo2docker's own Jupyter packages."""
    result = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "pip check" in (ROOT / "binder" / "postBuild").read_text()


def test_jupyter_pins_are_the_ones_binder_ships():
    """repo2docker installs binder/environment.yml into the environment its Jupyter server runs from:
    pins that differ would upgrade the server under the hub (and notebook 7.4 needs jupyterlab < 4.5)."""
    pins = _pins((ROOT / "requirements.txt").read_text().splitlines())
    assert pins["jupyterlab"].startswith("4.4.") and pins["notebook"].startswith("7.4.")
    assert pins["jupyter-server"].startswith("2.") and "jupyter-server-proxy" in pins


def test_build_requirements_cover_the_license_field():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(pyproject["project"]["license"], str)  # an SPDX string (PEP 639)
    (setuptools,) = [Requirement(r) for r in pyproject["build-system"]["requires"]
                     if Requirement(r).name == "setuptools"]
    assert not setuptools.specifier.contains("76.9") and setuptools.specifier.contains("77.0")
    assert "--no-build-isolation" not in (ROOT / "binder" / "postBuild").read_text()


def test_browser_test_pins_are_in_the_optional_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ranges = {Requirement(r).name.lower(): Requirement(r) for r in project["optional-dependencies"]["browser"]}
    pins = _pins((ROOT / "tests" / "browser" / "requirements.txt").read_text().splitlines())
    assert set(pins) == set(ranges)
    for name, version in pins.items():
        assert ranges[name].specifier.contains(version)
