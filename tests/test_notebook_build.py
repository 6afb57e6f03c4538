import json
import re

import nbformat
import pytest

from mlops_lab import notebooks
from mlops_lab.errors import LabError

from .conftest import ROOT, run_cli


def test_stub_replaces_the_solution_region():
    source = "x = 1\n### BEGIN SOLUTION\n#> answer = ...  # your turn\nanswer = 42\n### END SOLUTION\nprint(answer)"
    assert notebooks.strip_solutions(source, "cell") == "x = 1\nanswer = ...  # your turn\nprint(answer)"


def test_indented_region_keeps_indentation_and_gets_a_default_stub():
    source = "def f():\n    ### BEGIN SOLUTION\n    return 42\n    ### END SOLUTION"
    assert notebooks.strip_solutions(source, "cell") == "def f():\n    # YOUR CODE HERE"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\nx = 1", "line 1: `### BEGIN SOLUTION` has no matching `### END SOLUTION`"),
        ("x = 1\n### END SOLUTION", "line 2: `### END SOLUTION` without a `### BEGIN SOLUTION`"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "a second `### BEGIN SOLUTION`"),
    ],
)
def test_unbalanced_markers_are_named(source, message):
    with pytest.raises(LabError) as info:
        notebooks.strip_solutions(source, "01_data.ipynb, cell 3")
    assert "01_data.ipynb, cell 3" in str(info.value) and message in str(info.value)


def _regions(source):
    return re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", source, flags=re.S)


@pytest.mark.parametrize("solution", notebooks.solution_paths(ROOT), ids=lambda p: p.name)
def test_no_solution_text_leaks_into_its_lab(solution):
    lab = nbformat.read(ROOT / "labs" / solution.name, as_version=4)
    lab_cells = {c.id: c for c in lab.cells}
    sol = nbformat.read(solution, as_version=4)
    regions = 0
    for cell in sol.cells:
        if "solution" in cell.metadata.get("tags", []):
            assert cell.id not in lab_cells, f"cell {cell.id} is tagged solution but is in the lab"
            continue
        lab_source = lab_cells[cell.id].source
        assert "### BEGIN SOLUTION" not in lab_source and "### END SOLUTION" not in lab_source
        for region in _regions(cell.source):
            regions += 1
            lines = [line.strip() for line in region.splitlines() if line.strip()]
            stub = {line[2:].strip() for line in lines if line.startswith("#>")}
            outside = cell.source.replace(region, "")
            for text in lines:
                if text.startswith("#>") or text in stub or text in outside:
                    continue  # stub lines, and lines the lab legitimately shares
                assert text not in lab_source, f"solution line {text!r} leaked into labs/{solution.name}"
        if cell.cell_type == "code":
            assert lab_cells[cell.id].outputs == [] and lab_cells[cell.id].execution_count is None
    assert regions >= 2, f"{solution.name} has fewer than two exercise regions"


def test_every_solution_has_an_up_to_date_lab():
    assert notebooks.build(ROOT, check=True) == []
    assert {p.name for p in (ROOT / "labs").glob("*.ipynb")} == {p.name for p in notebooks.solution_paths(ROOT)}


def test_build_check_fails_after_a_solution_is_edited(course_copy):
    assert run_cli("build", "--check", "--root", str(course_copy)).returncode == 0
    path = course_copy / "solutions" / "00_welcome.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nA new sentence the lab has not seen."
    nbformat.write(nb, path)
    result = run_cli("build", "--check", "--root", str(course_copy))
    assert result.returncode == 1
    assert "labs/00_welcome.ipynb" in result.stderr and "mlops-lab build" in result.stderr
    assert run_cli("build", "--root", str(course_copy)).returncode == 0
    assert run_cli("build", "--check", "--root", str(course_copy)).returncode == 0


def test_build_reports_a_missing_end_marker(course_copy):
    path = course_copy / "solutions" / "00_welcome.ipynb"
    nb = json.loads(path.read_text())
    cell = next(c for c in nb["cells"] if "### END SOLUTION" in "".join(c["source"]))
    cell["source"] = [line for line in cell["source"] if "### END SOLUTION" not in line]
    path.write_text(json.dumps(nb))
    result = run_cli("build", "--root", str(course_copy))
    assert result.returncode == 2
    assert "has no matching `### END SOLUTION`" in result.stderr and "Traceback" not in result.stderr


def test_invalid_notebook_json_is_a_clear_error(course_copy):
    path = course_copy / "solutions" / "00_welcome.ipynb"
    path.write_text(path.read_text()[:-40])  # a truncated file, as after a bad merge
    result = run_cli("build", "--check", "--root", str(course_copy))
    assert result.returncode == 2
    assert "00_welcome.ipynb is not valid notebook JSON" in result.stderr and "git checkout" in result.stderr
    assert "Traceback" not in result.stderr


def test_lab_keeps_kernelspec_and_ids():
    for solution in notebooks.solution_paths(ROOT):
        lab = json.loads((ROOT / "labs" / solution.name).read_text())
        assert lab["metadata"]["kernelspec"]["name"] == "python3"
        assert all(re.fullmatch(r"[a-z0-9]+-\d\d", c["id"]) for c in lab["cells"])
