"""Every lab (exercise) notebook runs top to bottom with its exercises unanswered.

Solutions are executed by nbval (pytest --nbval, see pyproject.toml), which also compares their
outputs; labs are executed here, once each, with papermill through the course runner.
"""

import nbformat
import pytest

from mlops_lab import notebooks

from .conftest import ROOT

# lab_runs (the course run, labs form) lives in conftest.py: tests/test_rerun.py runs it again in the same workspace


@pytest.mark.parametrize("solution", notebooks.solution_paths(ROOT), ids=lambda p: p.name)
def test_lab_runs_with_exercises_unanswered(lab_runs, solution):
    results, _, _ = lab_runs
    result = next(r for r in results if r.notebook == solution.name)
    assert result.ok, result.error
    executed = nbformat.read(result.output, as_version=4)
    # check feedback is a rich display (HTML with a text/plain form); other cells print streams
    text = "\n".join(
        out.get("text", "") or out.get("data", {}).get("text/plain", "")
        for cell in executed.cells if cell.cell_type == "code" for out in cell.outputs
    )
    checks = text.count("[not attempted]")
    assert checks >= 2 and "[correct]" not in text and "[incorrect]" not in text
    assert text.count("Carrying on with the reference answer") == checks


def test_course_run_writes_nothing_into_the_repository(lab_runs):
    _, before, after = lab_runs
    if before is None:
        pytest.skip("git is not installed, so the repository cannot be compared")
    assert after == before


def test_summary_table_names_failures():
    ok = notebooks.RunResult("00_welcome.ipynb", "ok", 2.5, 150)
    bad = notebooks.RunResult("01_data.ipynb", "failed", 1.0, 90, "cell 4: KeyError: 'amount'")
    table = notebooks.summary_table([ok, bad])
    assert "1/2 passed" in table and "cell 4: KeyError: 'amount'" in table
