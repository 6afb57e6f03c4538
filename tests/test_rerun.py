"""Running any lab twice in the same workspace gives the same story (issue 9): the course run of
tests/test_notebooks_run.py (every lab, exercise form) is followed by every lab again in its workspace,
and each must give the same check verdicts and print the same figures, cell by cell. Outputs are
compared as nbval compares stored solution outputs (tests/nbval_sanitize.cfg: run ids, paths,
ports, timings), leaving out the cells whose output is variable by nature (nbval-ignore-output)."""

import configparser
import difflib
import re

import nbformat
import pytest

from mlops_lab import notebooks, registry

from .conftest import NOTEBOOK_TIMEOUT, ROOT, using_home

# Each test runs one lab a second time (after the first run of every lab: tests/test_notebooks_run.py
# in a whole session), under one notebook's time limit. Run alone, its first test runs every lab's first
# run as well: give it `--timeout 3600`.

_SANITIZE = configparser.ConfigParser(interpolation=None)
_SANITIZE.read(ROOT / "tests" / "nbval_sanitize.cfg")
RULES = [(re.compile(_SANITIZE[s]["regex"]), _SANITIZE[s]["replace"]) for s in _SANITIZE.sections()]
VERDICT = re.compile(r"^\[(correct|incorrect|not attempted)\] (\d+\.\d+)", re.M)
# Every lab (issues 9 and 12); lab 08's loop starts again from the champion its first run started from.
NOTEBOOKS = [p.name for p in notebooks.solution_paths(ROOT)]


def _story(path) -> dict[str, str]:
    """What each compared cell printed or displayed (text form), sanitized: cell id -> text."""
    story = {}
    for cell in nbformat.read(path, as_version=4).cells:
        tags = set(cell.metadata.get("tags", []))
        if cell.cell_type != "code" or tags & {"nbval-ignore-output", "injected-parameters"}:
            continue
        text = "".join(out.get("text", "") or out.get("data", {}).get("text/plain", "") for out in cell.outputs)
        for pattern, replace in RULES:
            text = pattern.sub(replace, text)
        story[cell.id] = text
    return story


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_second_run_in_the_same_workspace_tells_the_same_story(lab_runs, name):
    first = lab_runs.result(name)
    assert first.ok, f"{name} failed on its first run (see tests/test_notebooks_run.py): {lab_runs.explain(first)}"
    before = _story(first.output)  # read before the second run writes over the executed notebook
    again = lab_runs.rerun(name)
    assert again.ok, f"{name} fails when run a second time in the same workspace: {lab_runs.explain(again)}"
    after = _story(again.output)
    verdicts = VERDICT.findall("\n".join(before.values()))
    assert verdicts, f"{name}: no check verdicts found in the first run"
    assert VERDICT.findall("\n".join(after.values())) == verdicts
    changed = [cell for cell in before if before[cell] != after.get(cell)]
    if changed:
        diff = "\n".join(difflib.unified_diff(before[changed[0]].splitlines(), after.get(changed[0], "").splitlines(),
                                              "first run", "second run", lineterm=""))
        pytest.fail(f"{name}: {len(changed)} cell(s) print something else on a second run; cell {changed[0]}:\n{diff}")


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
def test_lab_03_second_run_keeps_the_champion_the_gate_chose(lab_runs):
    """Lab 03 rolls back and restores the champion: on a second run it must restore the version the
    gate promoted, not one the gate kept out, and the workspace's champion must have passed the gate."""
    workspace = lab_runs.workspace
    text = "\n".join(_story(lab_runs.rerun("03_registry.ipynb").output).values())
    promoted = re.search(r"challenger v(\d+) .*Verdict: promoted", text)
    rejected = re.search(r"challenger v(\d+) .*Verdict: kept champion", text)
    restored = re.search(r"restored:\s+(\d+)", text)
    assert promoted and rejected and restored, text[-2000:]
    assert restored.group(1) == promoted.group(1) != rejected.group(1)
    with using_home(workspace):
        champion = registry.alias_version(registry.CHAMPION)
        assert champion is not None
        # after lab 08 the champion is the loop's: gate() verdict "passed", then shadow, canary, promotion
        assert registry.decision_record(champion)["verdict"] in ("promoted", "first model", "passed")
