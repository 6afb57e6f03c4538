"""Build labs from solutions, and run the course headless with papermill.

``solutions/NN_title.ipynb`` is the single source. In its code (or markdown) cells an
exercise region is marked nbgrader-style::

    ### BEGIN SOLUTION
    #> threshold = ...  # lines starting with "#>" are the learner's stub
    threshold = 0.37
    ### END SOLUTION

``build`` replaces each region with its stub lines (the ``#>`` removed), drops cells
tagged ``solution``, clears outputs and execution counts, keeps cell ids, and writes
``labs/NN_title.ipynb``. ``run`` executes notebooks in a fresh workspace and reports
status, seconds and the kernel's peak memory per notebook.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import config
from .errors import LabError

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB_PREFIX = "#>"
NOTEBOOK_RE = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
DEFAULT_STUB = "# YOUR CODE HERE"
# the only notebook metadata kept: no execution noise, a kernel every machine has
NOTEBOOK_METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def repo_root(start: Path | None = None) -> Path:
    """The course folder: the nearest folder holding solutions/, from ``start`` or the cwd, else the package's."""
    candidates = [Path(start or Path.cwd()).resolve(), Path(__file__).resolve().parents[1]]
    for base in candidates:
        for folder in (base, *base.parents):
            if (folder / "solutions").is_dir() and (folder / "pyproject.toml").exists():
                return folder
    raise LabError(
        "Cannot find the course folder (the one with solutions/ and pyproject.toml). Run this "
        "command from inside your clone of mlops-lab, or pass --root PATH."
    )


def read_notebook(path: Path):
    import nbformat

    try:
        return nbformat.read(path, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as exc:
        raise LabError(
            f"{path} is not valid notebook JSON ({str(exc).splitlines()[0][:200]}). A merge or a hand "
            "edit probably broke it: open it in JupyterLab to see where, or restore it with "
            f"`git checkout -- {path.name}` and redo your change."
        ) from None
    except OSError as exc:
        raise LabError(f"Cannot read {path}: {exc.strerror or exc}.") from None


def strip_solutions(source: str, where: str) -> str:
    """Replace every BEGIN/END SOLUTION region in one cell's source with its stub."""
    out: list[str] = []
    stub: list[str] | None = None
    begin_line = 0
    indent = ""
    for number, line in enumerate(source.splitlines(), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if stub is not None:
                raise LabError(
                    f"{where}, line {number}: a second `{BEGIN}` before the `{END}` of the one on line "
                    f"{begin_line}. Close each region with `{END}` before opening the next."
                )
            stub, begin_line, indent = [], number, line[: len(line) - len(line.lstrip())]
        elif marker == END:
            if stub is None:
                raise LabError(f"{where}, line {number}: `{END}` without a `{BEGIN}` above it. Add one or remove it.")
            out.extend(stub or [indent + DEFAULT_STUB])
            stub = None
        elif stub is not None:
            if marker.startswith(STUB_PREFIX):
                text = marker[len(STUB_PREFIX):]
                stub.append(indent + (text[1:] if text.startswith(" ") else text))
        else:
            out.append(line)
    if stub is not None:
        raise LabError(
            f"{where}, line {begin_line}: `{BEGIN}` has no matching `{END}`, so the lab would lose "
            f"everything after it. Add `{END}` where the solution ends."
        )
    return "\n".join(out)


def _clean_cell_metadata(metadata: dict) -> dict:
    """Keep what matters (tags, collapsed state); drop execution noise papermill adds."""
    return {k: v for k, v in metadata.items() if k in ("tags", "jupyter") and v}


def lab_from_solution(solution_path: Path):
    """The exercise notebook generated from one solution notebook (not written)."""
    import nbformat

    nb = read_notebook(solution_path)
    cells = []
    for index, cell in enumerate(nb.cells):
        if "solution" in cell.get("metadata", {}).get("tags", []):
            continue
        new = nbformat.from_dict(json.loads(json.dumps(cell)))
        new.source = strip_solutions(cell.source, f"{solution_path.name}, cell {index}")
        if new.cell_type == "code":
            new.outputs = []
            new.execution_count = None
        new.metadata = _clean_cell_metadata(cell.metadata)
        cells.append(new)
    lab = nbformat.v4.new_notebook(cells=cells)
    lab.metadata = dict(NOTEBOOK_METADATA)
    lab.nbformat, lab.nbformat_minor = 4, 5
    return lab


def _dumps(nb) -> str:
    import nbformat

    return nbformat.writes(nb) + "\n"


def solution_paths(root: Path) -> list[Path]:
    return sorted(p for p in (root / "solutions").glob("*.ipynb") if NOTEBOOK_RE.match(p.name))


def preview_paths(root: Path) -> list[Path]:
    """The labs in preview (``solutions/preview/``): built and tested like the others, run only when asked for
    by number (``mlops-lab run 10``), not part of the course's run or of the learner's copies yet."""
    return sorted(p for p in (root / "solutions" / "preview").glob("*.ipynb") if NOTEBOOK_RE.match(p.name))


def build(root: Path | None = None, check: bool = False) -> list[Path]:
    """Generate labs/ from solutions/. With ``check``, write nothing and return the stale labs."""
    root = repo_root(root)
    stale = []
    wanted = set()
    for sol in [*solution_paths(root), *preview_paths(root)]:
        target = root / "labs" / sol.relative_to(root / "solutions")
        wanted.add(target)
        text = _dumps(lab_from_solution(sol))
        if not target.exists() or target.read_text() != text:
            stale.append(target)
            if not check:
                target.parent.mkdir(exist_ok=True)
                target.write_text(text)
    for orphan in [*(root / "labs").glob("*.ipynb"), *(root / "labs" / "preview").glob("*.ipynb")]:
        if orphan not in wanted:
            stale.append(orphan)
            if not check:
                orphan.unlink()
    return stale


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    notebook: str
    status: str  # "ok", "failed" or "interrupted"
    seconds: float
    peak_mb: float
    error: str = ""
    output: Path | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def select(root: Path, numbers: list[str] | None, labs: bool = False) -> list[Path]:
    folder = root / ("labs" if labs else "solutions")
    available = {p.name[:2]: folder / p.name for p in solution_paths(root)}
    if not numbers:
        return list(available.values())
    previews = {p.name[:2]: folder / "preview" / p.name for p in preview_paths(root)}
    chosen = []
    for raw in numbers:
        key = raw.zfill(2) if raw.isdigit() else raw
        if key in previews and key not in available:
            chosen.append(previews[key])
            continue
        if key not in available:
            raise LabError(
                f"There is no notebook {raw} in {folder.name}/. The course has: {', '.join(available)}. "
                "Run `mlops-lab run 01 02` with two-digit lab numbers, or no number for the whole course."
            )
        chosen.append(available[key])
    return chosen


class _PeakMemory:
    """Polls the memory of this process's children (the kernel) and of what they start, counting a
    shared page once: what each process holds of its own (USS), plus, once, the largest part any of
    them shares (RSS less USS: the libraries, and what a forked process still shares with its parent).
    Summing resident sizes counted a forked copy, or a server's libraries, twice (lab 03 once showed
    1,035 MB while its kernel peaked at 440-520 MB); a kernel forked from a pre-loaded process (Binder's
    kernels) is counted with the libraries it shares. With ``root``: that process and what it starts
    instead (the children this process has besides it are not counted)."""

    def __init__(self, interval: float = 0.1, root: int | None = None):
        self.interval, self.root, self.peak, self._stop = interval, root, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        import psutil

        try:
            me = psutil.Process(self.root) if self.root else psutil.Process()
        except psutil.Error:  # the root has ended already
            return
        while not self._stop.is_set():
            own = shared = 0
            try:
                processes = me.children(recursive=True) + ([me] if self.root else [])
            except psutil.Error:  # the root ended
                break
            for child in processes:
                try:
                    memory = child.memory_full_info()
                except psutil.Error:
                    continue
                own += memory.uss
                shared = max(shared, memory.rss - memory.uss)
            self.peak = max(self.peak, own + shared)
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextmanager
def _environment(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _kernel_manager(log_file):
    """The kernel manager class papermill starts each kernel with.

    Its transport is encrypted (CurveZMQ, when pyzmq has it), so ipykernel has no reason to warn
    about plain-text TCP; and the kernel's own stdout/stderr (its log, shutdown chatter such as
    "KeyboardInterrupt caught in kernel" when the manager interrupts it on shutdown) go to a log
    file beside the executed notebook instead of the terminal. Cell outputs are not affected."""
    import zmq
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class QuietKernelManager(AsyncKernelManager):
        @default("transport_encryption")
        def _encrypted(self):
            return "auto" if zmq.has("curve") else "disabled"

        async def start_kernel(self, **kw):
            kw.setdefault("stdout", log_file)
            kw.setdefault("stderr", log_file)
            return await super().start_kernel(**kw)

    return QuietKernelManager


@functools.cache
def _register_headless_engine() -> str:
    """Register (once) and return the name of the papermill engine every run uses: papermill's own
    nbclient engine, except that its client does not act as a browser's Output widget.

    nbclient stands in for the browser: for each output a kernel writes into an ``ipywidgets.Output``,
    it sends the widget's new state back to the kernel, a comm_msg on the shell channel. Under load,
    such a message crossing the end of a cell cost the cell's execute_reply: the kernel sent it and went
    idle, and the client waited for ever. Lab 07's last cell (the drift explorer) hung like that in 6 of
    64 headless runs on a busy 2-core machine (none of 39 on a quiet one), with ipykernel 6.31 too (1 of
    26), and the CI of 2026-12-04 lost 900 s to it; with this engine, 0 of 60 busy runs hung. Here what a
    kernel writes into a widget stays in the cell's outputs, as a headless run should keep it."""
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.log import logger
    from papermill.utils import merge_kwargs, remove_args

    class HeadlessClient(PapermillNotebookClient):
        def on_comm_open_jupyter_widget(self, msg):
            return None  # no stand-in widget: nothing goes back to the kernel

    class HeadlessEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            # papermill 2.7's NBClientEngine.execute_managed_notebook, with HeadlessClient
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(
                safe_kwargs, timeout=execution_timeout if execution_timeout else kwargs.get("timeout"),
                startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return HeadlessClient(nb_man, **final_kwargs).execute()

    papermill_engines.register("mlops-lab", HeadlessEngine)
    return "mlops-lab"


def run_notebook(path: Path, output: Path, parameters: dict | None = None, timeout: int = 120) -> RunResult:
    """Execute one notebook with papermill (kernel python3) and measure it. The kernel's own log is
    kept beside the executed copy (``NN_title.kernel.log``)."""
    import logging

    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)
    output.parent.mkdir(parents=True, exist_ok=True)
    read_notebook(path)  # a clear message for broken JSON before papermill's own
    error = ""
    status = "ok"
    start = time.perf_counter()
    with _PeakMemory() as memory, open(output.with_suffix(".kernel.log"), "wb") as kernel_log:
        try:
            pm.execute_notebook(
                str(path),
                str(output),
                parameters=parameters or {},
                kernel_name="python3",
                execution_timeout=timeout,
                progress_bar=False,
                cwd=str(output.parent),
                kernel_manager_class=_kernel_manager(kernel_log),
                engine_name=_register_headless_engine(),
            )
        except pm.PapermillExecutionError as exc:
            evalue = (exc.evalue or "").strip().splitlines()
            error = f"cell {exc.exec_count or exc.cell_index}: {exc.ename}: {evalue[0] if evalue else ''}"
        except KeyboardInterrupt:
            status = "interrupted"
        except Exception as exc:  # kernel died, timeout, missing kernel...
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    if error:
        status = "failed"
    return RunResult(path.name, status, seconds, memory.peak / 2**20, error, output)


def run(
    numbers: list[str] | None = None,
    labs: bool = False,
    workspace: str | Path | None = None,
    root: Path | None = None,
    parameters: dict | None = None,
    timeout: int = 120,
    report=print,
) -> list[RunResult]:
    """Run solutions (or labs) in order, in ``workspace`` (created if needed), else in a fresh temporary
    workspace that is deleted afterwards (kept, and named, when a notebook failed). Ctrl-C stops the
    run: the results so far come back, the interrupted notebook last, with status "interrupted"."""
    root = repo_root(root)
    notebooks = select(root, numbers, labs)
    temporary = workspace is None
    workspace = Path(tempfile.mkdtemp(prefix="mlops-lab-run-")) if temporary else Path(workspace).resolve()
    results: list[RunResult] = []
    # The python3 kernel of this environment first, ahead of any user-wide kernelspec.
    jupyter_path = os.pathsep.join(filter(None, [str(Path(sys.prefix) / "share" / "jupyter"),
                                                 os.environ.get("JUPYTER_PATH")]))
    try:
        with _environment(MLOPS_LAB_HOME=str(workspace), JUPYTER_PATH=jupyter_path):
            config.ensure_home()
            kind = "labs" if labs else "solutions"
            report(f"Running {len(notebooks)} {'exercise (labs/)' if labs else 'solution'} notebook(s) in {'a fresh ' if temporary else ''}workspace "
                   f"{workspace}")
            started, children_before = time.perf_counter(), _children()
            try:
                for nb in notebooks:
                    started = time.perf_counter()
                    result = run_notebook(nb, workspace / "executed" / kind / nb.name, parameters, timeout)
                    results.append(result)
                    report(f"  {result.notebook:<32} {result.status:<11} {result.seconds:6.1f} s  {result.error}")
                    if result.status == "interrupted":
                        break
            except KeyboardInterrupt:
                # Ctrl-C can land anywhere (between two notebooks, while a kernel starts), not only
                # inside papermill: the notebook it stopped is "interrupted" all the same.
                if len(results) < len(notebooks) and not any(r.status == "interrupted" for r in results):
                    nb = notebooks[len(results)]
                    results.append(RunResult(nb.name, "interrupted", time.perf_counter() - started, 0.0, "",
                                             workspace / "executed" / kind / nb.name))
                    report(f"  {nb.name:<32} {'interrupted':<11} {results[-1].seconds:6.1f} s")
                _stop_children(children_before)
    finally:
        if temporary:
            if not any(r.status == "failed" for r in results):
                shutil.rmtree(workspace, ignore_errors=True)
            else:
                report(f"Kept the workspace {workspace} to look into (executed notebooks and kernel logs in "
                       "executed/); delete it when done.")
    return results


def _children() -> set:
    import psutil

    try:
        return set(psutil.Process().children(recursive=True))
    except psutil.Error:
        return set()


def _stop_children(before: set, grace: float = 5) -> None:
    """End the processes started since ``before`` (the kernels of this run) that an interrupt left
    running (papermill shuts its kernel down only when Ctrl-C reaches it while a cell runs):
    terminate, then kill what is left."""
    import psutil

    children = list(_children() - before)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=grace)
    for child in alive:
        with contextlib.suppress(psutil.Error):
            child.kill()


def summary_table(results: list[RunResult]) -> str:
    lines = [f"{'notebook':<32} {'status':<11} {'seconds':>8} {'peak MB':>8}", "-" * 62]
    for r in results:
        lines.append(f"{r.notebook:<32} {r.status:<11} {r.seconds:8.1f} {r.peak_mb:8.0f}")
        if r.error:
            lines.append(f"    {r.error}")
    lines.append("-" * 62)
    total = sum(r.seconds for r in results)
    peak = max((r.peak_mb for r in results), default=0)
    passed = sum(r.ok for r in results)
    lines.append(f"{f'{passed}/{len(results)} passed':<32} {'':<11} {total:8.1f} {peak:8.0f}")
    return "\n".join(lines)


def execute_solutions(numbers: list[str] | None = None, root: Path | None = None, report=print) -> list[RunResult]:
    """Maintainers: re-execute solutions in a fresh workspace and commit their outputs (for nbval)."""
    root = repo_root(root)
    workspace = Path(tempfile.mkdtemp(prefix="mlops-lab-run-"))
    results = run(numbers, labs=False, workspace=workspace, root=root, report=report)
    sources = {p.name: p for p in select(root, numbers)}  # solutions/ or solutions/preview/
    for result in results:
        if not result.ok:
            continue
        nb = read_notebook(result.output)
        for cell in nb.cells:
            cell.metadata = _clean_cell_metadata(cell.metadata)
        nb.metadata = dict(NOTEBOOK_METADATA)
        sources[result.notebook].write_text(_dumps(nb))
    if all(r.ok for r in results):
        shutil.rmtree(workspace, ignore_errors=True)
    else:
        report(f"Kept the workspace {workspace} to look into; delete it when done.")
    return results
