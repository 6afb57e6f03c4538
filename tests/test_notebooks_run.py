"""Every lab (exercise) notebook runs top to bottom with its exercises unanswered.

Solutions are executed by nbval (pytest --nbval, see pyproject.toml), which also compares their
outputs; labs are executed here, once each, with papermill through the course runner.
"""

import nbformat
import pytest

from mlops_lab import notebooks

from .conftest import NOTEBOOK_TIMEOUT, ROOT, LabRuns, _git_status

# lab_runs (the labs run in one workspace, a notebook per test) lives in conftest.py: tests/test_rerun.py runs
# each lab again in the same workspace


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("solution", notebooks.solution_paths(ROOT), ids=lambda p: p.name)
def test_lab_runs_with_exercises_unanswered(lab_runs, solution):
    result = lab_runs.result(solution.name)
    assert result.ok, lab_runs.explain(result)
    _assert_unanswered(result)


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
@pytest.mark.parametrize("preview", notebooks.preview_paths(ROOT), ids=lambda p: p.name)
def test_a_preview_lab_runs_with_exercises_unanswered(preview, tmp_path):
    """A lab in preview (solutions/preview/) has its exercise form too (labs/preview/), and it runs."""
    assert (ROOT / "labs" / "preview" / preview.name).exists(), "run `mlops-lab build`"
    [result] = notebooks.run([preview.name[:2]], labs=True, workspace=tmp_path / "workspace", root=ROOT,
                             timeout=NOTEBOOK_TIMEOUT, report=lambda *a, **k: None)
    assert result.ok, f"labs/preview/{preview.name} failed after {result.seconds:.0f} s: {result.error}"
    _assert_unanswered(result)


def _assert_unanswered(result):
    executed = nbformat.read(result.output, as_version=4)
    # check feedback is a rich display (HTML with a text/plain form); other cells print streams
    text = "\n".join(
        out.get("text", "") or out.get("data", {}).get("text/plain", "")
        for cell in executed.cells if cell.cell_type == "code" for out in cell.outputs
    )
    checks = text.count("[not attempted]")
    assert checks >= 2 and "[correct]" not in text and "[incorrect]" not in text
    assert text.count("Carrying on with the reference answer") == checks


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
def test_course_run_writes_nothing_into_the_repository(lab_runs):
    if lab_runs.git_before is None:
        pytest.skip("git is not installed, so the repository cannot be compared")
    if not lab_runs.first:  # run alone: one lab is enough to compare
        lab_runs.result(lab_runs.names[0])
    assert _git_status() == lab_runs.git_before, f"after {', '.join(lab_runs.first)}"


def test_lab_runs_name_the_lab_that_failed(tmp_path):
    """issue 23: nine labs in one session fixture under one 600 s limit, and a slow lab 08 errored every
    test that needed the fixture without saying which lab; now each test runs its own lab."""
    runs = LabRuns(tmp_path)
    broken = notebooks.RunResult("03_registry.ipynb", "failed", 12.0, 300, "cell 7: KeyError: 'champion'",
                                 tmp_path / "executed" / "labs" / "03_registry.ipynb")
    runs.first["03_registry.ipynb"] = broken
    assert runs.result("03_registry.ipynb") is broken and runs.names[0] == "00_welcome.ipynb"
    message = runs.explain(broken)
    assert "lab 03_registry.ipynb failed after 12 s: cell 7: KeyError: 'champion'" in message
    assert "03_registry.kernel.log" in message


def test_summary_table_names_failures():
    ok = notebooks.RunResult("00_welcome.ipynb", "ok", 2.5, 150)
    bad = notebooks.RunResult("01_data.ipynb", "failed", 1.0, 90, "cell 4: KeyError: 'amount'")
    table = notebooks.summary_table([ok, bad])
    assert "1/2 passed" in table and "cell 4: KeyError: 'amount'" in table


@pytest.mark.timeout(NOTEBOOK_TIMEOUT)
def test_nbval_of_a_lab_with_checks_leaves_nothing_in_tmp(tmp_path):
    """issue 23: every nbval run of solutions/02 left a /tmp/mlops-lab-check-* folder (nbval kills the
    kernel, so its atexit never ran): checks keep their scratch store in the workspace now."""
    import os
    import subprocess
    import sys

    (notebook,) = [p for p in notebooks.solution_paths(ROOT) if p.name.startswith("02_")]
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--basetemp", str(tmp_path / "basetemp"), str(notebook)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=NOTEBOOK_TIMEOUT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert sorted(p.name for p in tmp.iterdir()) == [], "left in TMPDIR"


@pytest.mark.timeout(120)
def test_a_headless_run_keeps_what_a_widget_shows_and_sends_nothing_back(tmp_path):
    """The runner does not act as a browser's Output widget (notebooks._register_headless_engine): with
    nbclient's stand-in, each output written into an ipywidgets.Output went back to the kernel as a
    comm_msg, and one crossing the end of a cell cost the cell's reply (lab 07's rerun hung for 900 s in
    CI). What the kernel writes into the widget stays in the cell's outputs; the kernel hears nothing."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import ipywidgets as w\nfrom IPython.display import display\n\n"
                                  "out = w.Output()\ndisplay(out)\nout.clear_output(wait=True)\n"
                                  "with out:\n    print('drawn inside the widget')"),
        nbformat.v4.new_code_cell("import time\n\ntime.sleep(0.5)\nprint('outputs the kernel heard back:', len(out.outputs))"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "widget.ipynb"
    nbformat.write(nb, source)
    result = notebooks.run_notebook(source, tmp_path / "executed" / "widget.ipynb", timeout=60)
    assert result.status == "ok", result.error
    first, second = nbformat.read(result.output, as_version=4).cells
    assert "drawn inside the widget" in "".join(o.get("text", "") for o in first.outputs)
    assert "outputs the kernel heard back: 0" in "".join(o.get("text", "") for o in second.outputs)
