"""The project's workflow file: valid for actionlint, clean under zizmor (offline, nothing at
medium severity or above), hardened as the issue asks, and in step with `mlops-lab ci`'s stages."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlops_lab import ci
from mlops_lab.errors import LabError

from .conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow():
    return yaml.safe_load(WORKFLOW.read_text())


def _tool(name):
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def test_actionlint_accepts_the_workflow():
    assert ci.actionlint(WORKFLOW.read_text()) == []


def test_actionlint_lines_are_shown_for_a_broken_workflow():
    broken = WORKFLOW.read_text().replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest", 1)
    with pytest.raises(LabError, match=r"actionlint rejects this workflow:\n  line \d+:\d+: label \"ubuntu-lastest\""):
        ci.check_workflow(broken)


def test_zizmor_finds_nothing_at_medium_or_above():
    out = subprocess.run([_tool("zizmor"), "--offline", "--min-severity", "medium", "--format", "plain",
                          str(WORKFLOW)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No findings" in out.stdout


def test_zizmor_would_catch_an_unpinned_action():
    unpinned = WORKFLOW.read_text().replace("actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8", "actions/checkout@v5")
    out = subprocess.run([_tool("zizmor"), "--offline", "--min-severity", "medium", "-"], input=unpinned,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "unpinned-uses" in out.stdout


def test_triggers_concurrency_and_least_privilege(workflow):
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    assert {"push", "pull_request", "schedule"} <= set(triggers)
    assert triggers["schedule"][0]["cron"].split()[4] in {"0", "1", "2", "3", "4", "5", "6"}  # weekly
    assert workflow["concurrency"]["cancel-in-progress"] is True and "github.ref" in workflow["concurrency"]["group"]
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, name


def test_actions_are_pinned_by_full_commit_sha_and_pip_is_cached(workflow):
    for name, job in workflow["jobs"].items():
        uses = [s for s in job["steps"] if "uses" in s]
        for step in uses:
            ref = step["uses"].split("@")[1]
            assert len(ref) == 40 and all(c in "0123456789abcdef" for c in ref), step["uses"]
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
        setup = next(s for s in uses if s["uses"].startswith("actions/setup-python@"))
        assert setup["with"]["cache"] == "pip", name


def _stages_by_job(workflow):
    found = {}
    for job_name, job in workflow["jobs"].items():
        for step in job["steps"]:
            words = str(step.get("run", "")).split()
            if words[:2] != ["mlops-lab", "ci"]:
                continue
            for i, word in enumerate(words):
                if word == "--stage":
                    found.setdefault(words[i + 1], []).append(job_name)
    return found


def test_every_stage_runs_once_in_its_job(workflow):
    assert _stages_by_job(workflow) == {s.name: [s.job] for s in ci.STAGES}
    assert {"lint", "tests", "notebooks", "container"} <= set(workflow["jobs"])


def test_ci_run_script_runs_the_same_pipeline():
    script = (ROOT / ".ci" / "run").read_text()
    calls = [line.split("mlops-lab ci", 1)[1].split() for line in script.splitlines()
             if "mlops-lab ci" in line and not line.lstrip().startswith(("#", "log"))]
    assert calls and not any("--stage" in words for words in calls)  # every stage, in STAGES order


# ------------------------------------------------------------------ lab 06's workflow job: judged by meaning, then run

from mlops_lab.exercises import lab06  # noqa: E402


def _job(*steps, env=""):
    start = lab06.WORKFLOW_START.replace("    runs-on: ubuntu-latest\n", "    runs-on: ubuntu-latest\n" + env)
    return start + "".join(steps)


def test_one_block_and_joined_commands_and_separate_steps_are_the_same_commands():
    block = lab06.read_script("pip3 install -r requirements.txt -e .\nmlops-lab setup 5  # a champion\n"
                              "mlops-lab ci --stage=data \\\n  --stage quality\n")
    joined = lab06.read_script("python -m pip install -r requirements.txt -e . && mlops-lab setup 5; "
                               "mlops-lab ci --stage data --stage quality")
    assert block.commands == joined.commands == (
        ("pip", "install", "-r", "requirements.txt", "-e", "."), ("mlops-lab", "setup", "5"),
        ("mlops-lab", "ci", "--stage", "data", "--stage", "quality"))
    assert block.simple and joined.simple
    assert "||" in lab06.read_script("mlops-lab ci --stage data || true").operators
    assert not lab06.read_script("cd labs\nmlops-lab ci").simple  # state carried from line to line


def test_a_weekly_cron_in_any_spelling():
    for cron in ("17 5 * * 1", "17 5 * * MON", "0 23 * * sun", "05 00 * * 6"):
        assert lab06.weekly(cron), cron
    for cron in ("17 5 * * *", "17 5 * * 1-5", "* 5 * * 1", "17 5 1 * *", "17 5 * * MON,THU", "@weekly"):
        assert not lab06.weekly(cron), cron


def test_a_job_runs_its_steps_in_order_in_a_scratch_copy_with_its_env():
    workflow = _job(
        "      - run: test \"$CI\" = true && test -f requirements.txt && test \"$PROJECT\" = cardguard\n",
        "      - run: echo \"PROJECT_STEP=seen\" >> \"$GITHUB_ENV\"\n",
        "      - run: |\n          test \"$PROJECT_STEP\" = seen\n          python -c 'import sys; print(sys.prefix)'\n"
        "          ! command -v mlops-lab\n",
        env="    env:\n      PROJECT: cardguard\n")
    run = lab06.run_job(workflow, report=lambda line: None)
    assert run.ok, str(run)
    assert [s.status for s in run.steps] == ["emulated", "emulated", "pass", "pass", "pass"]
    assert any("actions/checkout emulated" in n for n in run.notes)
    assert any("actions/setup-python emulated" in n for n in run.notes)
    prefix = run.steps[-1].output.strip().splitlines()[0]
    assert prefix != sys.prefix and "mlops-lab-job-" in prefix  # the job's own Python, not the course's
    assert not Path(prefix).exists()  # the scratch folder is removed afterwards


def test_a_failing_step_fails_the_job_with_its_output_and_the_rest_is_skipped():
    workflow = _job("      - run: echo 'about to fail'; exit 3\n", "      - run: echo never\n")
    run = lab06.run_job(workflow, report=lambda line: None)
    assert not run.ok
    assert run.failed.number == 3 and run.failed.returncode == 3 and "about to fail" in run.failed.output
    assert run.steps[-1].status == "skipped"
    assert "exit code 3" in str(run)


def test_without_setup_python_there_is_no_project_python_to_install_into():
    workflow = _job("      - run: command -v mlops-lab\n").replace(
        f"      - uses: {lab06.SETUP_PYTHON}\n        with:\n          python-version: \"3.11\"\n          cache: pip\n"
        "          cache-dependency-path: requirements.txt\n", "")
    run = lab06.run_job(workflow, report=lambda line: None)
    assert not run.ok and run.failed.number == 2


def test_without_git_the_checkout_is_the_repository_not_the_home_it_lives_in(tmp_path):
    # On Binder the clone is the home folder and has no .git: the checkout must copy the repository's files,
    # not ~/.ipython (whose history journal comes and goes under a running kernel), ~/.cache or ~/.bashrc.
    for name in (".ci/run", ".github/workflows/ci.yml", ".gitignore", "mlops_lab/__init__.py",
                 "deploy/helm/cardguard/.helmignore", "requirements.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    for name in (".ipython/profile_default/history.sqlite", ".cache/pip/wheel.whl", ".bashrc", ".local/bin/x",
                 "mlops_lab/__pycache__/x.pyc", "mlruns/1/meta.yaml", "labs/.ipynb_checkpoints/x.ipynb"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    assert lab06._files_without_git(tmp_path) == [
        ".ci/run", ".github/workflows/ci.yml", ".gitignore", "deploy/helm/cardguard/.helmignore",
        "mlops_lab/__init__.py", "requirements.txt"]


def test_a_file_that_vanishes_after_it_was_listed_is_left_out_of_the_digest(tmp_path):
    (tmp_path / "kept.py").write_text("x")
    assert lab06._tree_digest(tmp_path, ["kept.py", "gone.sqlite-journal"]) == lab06._tree_digest(
        tmp_path, ["kept.py"])
