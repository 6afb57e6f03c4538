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

from .conftest import ROOT, using_home

# run alone, this module runs the whole course twice
pytestmark = pytest.mark.timeout(1800)

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


@pytest.fixture(scope="module")
def reruns(lab_runs):
    first, _, _ = lab_runs
    # read the first run's stories before the second run writes over its executed notebooks
    stories = {r.notebook: _story(r.output) for r in first if r.ok}
    workspace = first[0].output.parents[2]  # <workspace>/executed/labs/<notebook>
    second = notebooks.run([name[:2] for name in NOTEBOOKS], labs=True, workspace=workspace, root=ROOT,
                           parameters={"FAST": True}, report=lambda _: None)
    return stories, {r.notebook: r for r in second}, workspace


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_second_run_in_the_same_workspace_tells_the_same_story(reruns, name):
    stories, second, _ = reruns
    assert name in stories, f"{name} failed on its first run (see tests/test_notebooks_run.py)"
    again = second[name]
    assert again.ok, f"{name} fails when run a second time in the same workspace: {again.error}"
    before, after = stories[name], _story(again.output)
    verdicts = VERDICT.findall("\n".join(before.values()))
    assert verdicts, f"{name}: no check verdicts found in the first run"
    assert VERDICT.findall("\n".join(after.values())) == verdicts
    changed = [cell for cell in before if before[cell] != after.get(cell)]
    if changed:
        diff = "\n".join(difflib.unified_diff(before[changed[0]].splitlines(), after.get(changed[0], "").splitlines(),
                                              "first run", "second run", lineterm=""))
        pytest.fail(f"{name}: {len(changed)} cell(s) print something else on a second run; cell {changed[0]}:\n{diff}")


def test_lab_03_second_run_keeps_the_champion_the_gate_chose(reruns):
    """Lab 03 rolls back and restores the champion: on a second run it must restore the version the
    gate promoted, not one the gate kept out, and the workspace's champion must have passed the gate."""
    _, second, workspace = reruns
    text = "\n".join(_story(second["03_registry.ipynb"].output).values())
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
