"""pyproject.toml (ranges), requirements.txt (pins), environment.yml and binder/ agree."""

import re
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
