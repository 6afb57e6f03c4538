"""Exercise checks in the learntools style: not attempted / incorrect (with a hint) / correct.

``lab.check(id, value)`` prints the outcome and returns the value a notebook should
carry on with: the learner's own when it is correct, otherwise the reference answer,
so a lab with every exercise unanswered still runs top to bottom. A check never raises
in a learner's notebook; with ``MLOPS_LAB_STRICT=1`` an incorrect answer raises.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import html
import importlib
import json
import math
import os
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..errors import LabError

# Every module labNN.py in this package registers the exercises of lab NN.
LAB_MODULES = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("lab")))


class NotAttempted(Exception):
    """The learner has not filled the exercise in yet."""


class NotJudged(Exception):
    """This machine cannot judge the answer (a tool the check needs is missing): not a verdict on the answer.
    Its message says what to install; the exercise is then "not judged", neither correct nor incorrect."""


class Incorrect(AssertionError):
    """Raised instead of printing when MLOPS_LAB_STRICT=1 and an answer is wrong."""


@dataclass(frozen=True)
class Case:
    """An answer kept beside its exercise so the check itself is tested (tests/test_exercise_cases.py):
    a plausible wrong answer, with words its message must contain, or a right answer written
    differently. ``make`` builds the answer lazily (some are expensive, some need a workspace)."""

    label: str
    make: Callable[[], Any]
    expect: str  # "incorrect" or "correct"
    words: str = ""  # for "incorrect": words the message must contain


def wrong(label: str, make: Callable[[], Any], words: str) -> Case:
    """A plausible wrong answer; its check message must contain ``words``."""
    return Case(label, make, "incorrect", words)


def right(label: str, make: Callable[[], Any]) -> Case:
    """A right answer written differently from the reference; it must be "correct"."""
    return Case(label, make, "correct")


@dataclass(frozen=True)
class Exercise:
    id: str
    title: str
    checker: Callable[[Any], None]  # raises NotAttempted or AssertionError("what to look at")
    reference: Callable[[], Any]  # builds the reference answer
    solution: str  # code shown by lab.solution(id)
    hints: tuple[str, ...] = field(default_factory=tuple)
    stub: Callable[[], Any] = lambda: ...  # builds what the generated lab's blank stub holds
    cases: tuple[Case, ...] = field(default_factory=tuple)
    trials: Callable[[], Sequence[Trial]] | None = None  # a function exercise: the inputs it is judged on
    # a function exercise judged otherwise than on inputs, and on what: a test the learner writes is run
    # against apps it must pass and apps with planted bugs it must fail (mutation testing)
    judged_on: str = ""


_REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, title: str, *, solution: str, hints: tuple[str, ...], reference: Callable[[], Any] | str,
             stub: Callable[[], Any] | None = None, cases: tuple[Case, ...] = (),
             trials: Callable[[], Sequence[Trial]] | None = None, judged_on: str = ""):
    """Decorator that registers a checker function as exercise ``id``, with the answers that test it.

    ``reference`` is either a function that builds the reference answer or the name of what the
    ``solution`` text defines (a function, usually): the solution is then executed once, in the lab
    module's namespace, so the solution a learner is shown is the very one the checks are tested
    against. ``trials`` (for a function exercise) gives the inputs the learner's function and the
    reference are both run on (see ``differential``)."""

    def register(checker: Callable[[Any], None]) -> Callable[[Any], None]:
        build = reference
        if isinstance(reference, str):
            build = functools.cache(lambda: solved(id, checker.__globals__)[reference])
        _REGISTRY[id] = Exercise(id, title, checker, build, solution.strip(), tuple(hints),
                                 stub or (lambda: ...), tuple(cases), trials, judged_on)
        return checker

    return register


_SOLVED: dict[str, dict[str, Any]] = {}

# Names a solution text may use because the notebook imported them in an earlier cell.
_NOTEBOOK_NAMES = {"lab": "mlops_lab", "np": "numpy", "pd": "pandas", "mlflow": "mlflow",
                   "infer_signature": "mlflow.models:infer_signature"}


def solved(id: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """The names exercise ``id``'s solution text defines, executed once in its lab module's namespace."""
    if id not in _SOLVED:
        ex = _REGISTRY[id]
        names = dict(namespace if namespace is not None else ex.checker.__globals__)
        for name, source in _NOTEBOOK_NAMES.items():  # what the notebook's earlier cells imported
            if name not in names and re.search(rf"\b{name}\b", ex.solution):
                module, _, attribute = source.partition(":")
                names[name] = importlib.import_module(module)
                if attribute:
                    names[name] = getattr(names[name], attribute)
        # dont_inherit: run as a notebook cell runs, without this module's `from __future__ import annotations`
        exec(compile(ex.solution, f"<solution to exercise {id}>", "exec", dont_inherit=True), names)  # noqa: S102
        _SOLVED[id] = names
    return _SOLVED[id]


def require_attempt(value: Any) -> None:
    """The stub value of every exercise is ``...`` (or None), or a function whose body is only
    ``...``/``pass``: treat it as not attempted."""
    if value is ... or value is None or is_blank_function(value):
        raise NotAttempted


def _blank(*args, **kwargs):
    ...


def is_blank_function(value: Any) -> bool:
    """A function whose body is only ``...`` or ``pass`` (the lab's stub)."""
    code = getattr(value, "__code__", None)
    # no lab's stub is a lambda: `lambda p: None` compiles to the stub's bytecode but is an answer
    return (code is not None and code.co_code == _blank.__code__.co_code and code.co_name != "<lambda>"
            and not _says_none(value))


def _says_none(func) -> bool:
    """``lambda p: None`` compiles to the stub's bytecode, but it is an answer that forgot its value."""
    import inspect

    try:
        source = inspect.getsource(func)
    except (OSError, TypeError):
        return False
    return bool(re.search(r"lambda[^:]*:\s*None\b|^\s*return None\b", source, re.MULTILINE))


def call(func: Callable[..., Any], *args, **kwargs) -> Any:
    """Call the learner's function; a ``None`` result means a forgotten ``return``."""
    result = func(*args, **kwargs)
    if result is None:
        if is_blank_function(func):
            raise NotAttempted
        name = getattr(func, "__name__", "your function")
        raise AssertionError(f"`{name}` returned None: did you forget `return`? "
                             "A function hands its answer back with `return ...` on its last line")
    return result


# ------------------------------------------------------------------ differential checks


@dataclass(frozen=True)
class Trial:
    """One input a function exercise is judged on: the learner's function and the reference both run on
    it. ``label`` names it in the learner's terms (``"max_auc=0.80, 2,000 payments of seed 3"``); ``size``
    orders the trials, so that a disagreement is reported on the smallest input that shows it."""

    label: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    size: float = 0
    # What the trial needs around it (a context manager factory, e.g. ``scratch_store`` for a registry the
    # check staged there): ``differential`` enters each one once, around every trial that names it.
    within: Callable[[], Any] | None = None


Compare = Callable[[Any, Any, Trial], "str | None"]

_EXPECTED: dict[tuple[int, int], tuple[Trial, Callable[..., Any], Any]] = {}


def expected_on(reference: Callable[..., Any], trial: Trial) -> Any:
    """The reference's answer on ``trial``, computed once per process (checks answer in well under 2 s)."""
    key = (id(reference), id(trial))
    hit = _EXPECTED.get(key)
    if hit is not None and hit[0] is trial and hit[1] is reference:
        return hit[2]
    value = reference(*copy.deepcopy(trial.args), **copy.deepcopy(trial.kwargs))
    _EXPECTED[key] = (trial, reference, value)
    return value


def differential(func: Callable[..., Any], reference: Callable[..., Any], trials: Sequence[Trial], *,
                 compare: Compare | None = None, what: str = "your function") -> None:
    """Judge a learner's function by running it beside the reference on every trial.

    Each trial gets fresh copies of its inputs; afterwards the learner's copies must be unchanged (a
    function that edits the caller's data is wrong however right its answer). ``compare(got, expected,
    trial)`` returns None when the answers agree, otherwise what is wrong in the learner's terms; the
    default compares values (floats to a relative 1e-6). The first disagreement on the smallest trial
    raises AssertionError naming that trial."""
    compare = compare or same
    with contextlib.ExitStack() as stack:
        for within in dict.fromkeys(t.within for t in trials if t.within is not None):
            stack.enter_context(within())
        _differential(func, reference, trials, compare, what)


def _differential(func, reference, trials, compare, what) -> None:
    for trial in sorted(trials, key=lambda t: t.size):
        args, kwargs = copy.deepcopy(trial.args), copy.deepcopy(trial.kwargs)
        try:
            got = call(func, *args, **kwargs)
        except (NotAttempted, AssertionError):
            raise
        except Exception as exc:  # a learner's function may raise anything
            raise AssertionError(f"with {trial.label}, {what} raised {type(exc).__name__}: {exc}") from None
        changed = _changed_input(trial, args, kwargs)
        if changed:
            raise AssertionError(
                f"with {trial.label}, {what} changed its input {changed}: a check, a test or a metric must "
                "leave the caller's data as it found it (work on a copy: `frame = frame.copy()`)")
        problem = compare(got, expected_on(reference, trial), trial)
        if problem:
            raise AssertionError(f"with {trial.label}: {problem}")


def _changed_input(trial: Trial, args: tuple, kwargs: dict) -> str:
    """The name (position or keyword) of the first input the learner's call changed, or ''."""
    for position, (before, after) in enumerate(zip(trial.args, args, strict=True)):
        if not _equal(before, after):
            return f"(argument {position + 1}, a {type(after).__name__})"
    for name, before in trial.kwargs.items():
        if not _equal(before, kwargs[name]):
            return f"`{name}`"
    return ""


def _equal(a: Any, b: Any) -> bool:
    """Exact equality of inputs (NaN equals NaN; frames compare values, dtypes, index and columns)."""
    import numpy as np

    if type(a) is not type(b):
        return False
    if hasattr(a, "equals") and hasattr(a, "dtypes" if hasattr(a, "columns") else "dtype"):
        if hasattr(a, "columns") and not (a.columns.equals(b.columns) and a.dtypes.equals(b.dtypes)):
            return False
        return a.index.equals(b.index) and a.equals(b)
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object without equality is taken as unchanged
        return True


def same(got: Any, expected: Any, trial: Trial | None = None, *, rel: float = 1e-6, abs_: float = 1e-9) -> str | None:
    """The default comparison of ``differential``: None when ``got`` matches ``expected`` (numbers to a
    relative ``rel``), otherwise "returned X, expected Y"."""
    import numpy as np

    def close(a: Any, b: Any) -> bool:
        if isinstance(b, bool | np.bool_) or isinstance(a, bool | np.bool_):
            return isinstance(a, bool | np.bool_) and isinstance(b, bool | np.bool_) and bool(a) == bool(b)
        if isinstance(b, int | float | np.integer | np.floating):
            if not isinstance(a, int | float | np.integer | np.floating):
                return False
            if math.isnan(b) or math.isnan(a):
                return math.isnan(b) and math.isnan(a)
            return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=abs_)
        if hasattr(b, "to_numpy") or isinstance(b, np.ndarray):
            a_, b_ = np.asarray(a), np.asarray(b)
            if a_.shape != b_.shape:
                return False
            if b_.dtype.kind in "fiu" and a_.dtype.kind in "fiub":
                return bool(np.allclose(a_.astype(float), b_.astype(float), rtol=rel, atol=abs_, equal_nan=True))
            return all(_same_cell(x, y) for x, y in zip(a_.ravel(), b_.ravel(), strict=True))
        if isinstance(b, dict):
            return isinstance(a, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in b)
        if isinstance(b, list | tuple):
            return isinstance(a, list | tuple) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
        try:
            return bool(a == b)
        except Exception:  # noqa: BLE001
            return False

    if close(got, expected):
        return None
    return f"returned {_short(got)}, expected {_short(expected)}"


def verdict(got: Any, expected: Any, trial: Trial | None = None) -> str | None:
    """A ``differential`` comparison for a yes/no function: any spelling of a truth value (Python's
    or numpy's bool, or 1/0) is judged by its value; anything else is not a verdict."""
    import numpy as np

    if not (isinstance(got, bool | np.bool_) or (isinstance(got, int | np.integer) and got in (0, 1))):
        return f"returned {_short(got)}: return True or False"
    if bool(got) == bool(expected):
        return None
    return f"returned {bool(got)}, expected {bool(expected)}"


def same_rows(key: str, explain: Callable[[Any, bool, Trial], str] | None = None) -> Compare:
    """A ``differential`` comparison for a function that returns some rows of its input frame: the same
    rows (by ``key``; order and index are free), every column kept, values untouched. ``explain(row,
    kept, trial)`` says, in the learner's terms, why one input row belongs in the answer or not (``kept``:
    the learner kept a row the reference leaves out)."""

    def compare(got: Any, expected: Any, trial: Trial) -> str | None:
        import pandas as pd

        if not isinstance(got, pd.DataFrame):
            return f"returned a {type(got).__name__}; return the rows (a DataFrame with the frame's columns)"
        lost = [c for c in expected.columns if c not in got.columns]
        if lost:
            return f"the rows lost the column(s) {', '.join(map(str, lost))}: return whole rows of the frame"
        twice = got[key][got[key].duplicated()]
        if len(twice):
            return f"the row {twice.iloc[0]!r} appears twice in your answer"
        got_keys, want = set(got[key]), set(expected[key])
        if got_keys != want:
            frame = next((a for a in trial.args if isinstance(a, pd.DataFrame)), None)
            order = list(frame[key]) if frame is not None and key in frame else []
            order += sorted((got_keys ^ want) - set(order), key=str)  # and rows the input never had
            wrong_keys = [k for k in order if k in got_keys and k not in want]  # rows wrongly kept come first
            first = (wrong_keys or [k for k in order if k in want and k not in got_keys])[0]
            kept = first in got_keys
            rows = frame.loc[frame[key] == first] if frame is not None and key in frame else None
            row = rows.iloc[0] if rows is not None and len(rows) else None  # None: a row the input never had
            why = explain(row, kept, trial) if explain is not None and row is not None else ""
            verb = "keeps" if kept else "leaves out"
            return (f"yours {verb} the row {first!r} ({len(got_keys)} row{'s' * (len(got_keys) != 1)}, the right "
                    f"answer has {len(want)})"
                    + (f": {why}" if why else ""))
        columns = list(expected.columns)
        a = got[columns].sort_values(key).reset_index(drop=True)
        b = expected[columns].sort_values(key).reset_index(drop=True)
        changed = [c for c in columns if not _same_column(a[c], b[c])]
        if changed:
            return (f"the right rows, but the values of {', '.join(map(str, changed))} changed: return the rows "
                    "as they are")
        return None

    return compare


def _same_column(a: Any, b: Any) -> bool:
    """Equal values, whatever the width of the dtype (int32 is as right as int64)."""
    if a.equals(b):
        return True
    try:
        return a.astype(b.dtype).equals(b)
    except (TypeError, ValueError):
        return False


_SPACING = str.maketrans("", "", " \t\n_-'\"`.")


def spelled_as(got: Any, choices: Sequence[str], aliases: dict[str, Sequence[str]] | None = None) -> str | None:
    """The choice ``got`` names, however the prose spells it: case, spacing, ``-``/``_`` and quotes do not
    matter ("PR-AUC", "pr auc" and "pr_auc" are one answer), and ``aliases`` adds other spellings of a
    choice (``{"pr_auc": ["average precision"]}``); a remark in brackets is left aside ("PR-AUC (the area
    under the precision-recall curve)"). None when it names none of them."""
    if not isinstance(got, str):
        return None
    key = re.sub(r"\(.*?\)", "", got).strip().lower().translate(_SPACING)  # a remark in brackets is not the answer
    for choice in choices:
        spellings = (choice, *((aliases or {}).get(choice, ())))
        if any(key == s.lower().translate(_SPACING) for s in spellings):
            return choice
    return None


def close_to(got: Any, truth: float, *, digits: int = 3, rel: float = 1e-6) -> bool:
    """``got`` is ``truth`` (to a relative ``rel``), or ``truth`` rounded to ``digits`` or more decimals,
    as a message prints it ("0.89%" is 0.0089). Not for a bool."""
    import numpy as np

    if isinstance(got, bool | np.bool_) or not isinstance(got, int | float | np.integer | np.floating):
        return False
    got = float(got)
    if math.isnan(got):
        return False
    if math.isclose(got, truth, rel_tol=rel, abs_tol=1e-12):
        return True
    return any(math.isclose(got, round(truth, d), rel_tol=1e-9, abs_tol=10.0 ** -(d + 6)) for d in range(digits, 16))


def _same_cell(a: Any, b: Any) -> bool:
    """One cell of a table: equal, or both missing (NaN, None, NaT, pd.NA)."""
    import pandas as pd

    missing_a, missing_b = pd.api.types.is_scalar(a) and pd.isna(a), pd.api.types.is_scalar(b) and pd.isna(b)
    if missing_a or missing_b:
        return bool(missing_a and missing_b)
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _short(value: Any, limit: int = 120) -> str:
    text = f"{value:.6g}" if isinstance(value, float) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_SCRATCH: dict[str, str] = {}  # workspace -> this process's scratch folder there


def _scratch_folder() -> str:
    """One throwaway folder per process (creating an MLflow database costs seconds of migrations), in
    the workspace (``.scratch/``): a kernel that is killed (nbval, a restart) never runs atexit, and /tmp
    kept a folder per run. Made again when a reset or another workspace took it away."""
    import atexit
    import shutil
    import tempfile

    home = str(config.home())
    if not os.path.isdir(_SCRATCH.get(home, "")):
        scratch = config.ensure_home() / ".scratch"
        scratch.mkdir(exist_ok=True)
        _SCRATCH[home] = tempfile.mkdtemp(prefix="check-", dir=scratch)
        atexit.register(shutil.rmtree, _SCRATCH[home], True)
    return _SCRATCH[home]


@contextlib.contextmanager
def _redirected_stores(uris: set[str], scratch: str):
    """Within the block, MLflow opens ``scratch`` whenever a client asks for one of ``uris``."""
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    tracking_store, registry_store = tracking_utils._get_store, registry_utils._get_store

    def tracking(store_uri=None, artifact_uri=None):
        return tracking_store(scratch if store_uri in uris else store_uri, artifact_uri)

    def registry(store_uri=None, tracking_uri=None):
        if store_uri in uris:
            store_uri, tracking_uri = scratch, scratch
        return registry_store(store_uri, tracking_uri)

    tracking_utils._get_store, registry_utils._get_store = tracking, registry
    try:
        yield
    finally:
        tracking_utils._get_store, registry_utils._get_store = tracking_store, registry_store


@contextlib.contextmanager
def scratch_store():
    """A throwaway MLflow store for checks: they log and register there, never in the learner's
    store; the learner's tracking URI and active experiment are restored afterwards."""
    import mlflow
    from mlflow.tracking import fluent

    from .. import training

    saved_env = {k: os.environ.get(k) for k in ("MLOPS_LAB_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")}
    saved = (mlflow.get_tracking_uri(), mlflow.get_registry_uri(), fluent._active_experiment_id)
    active = mlflow.active_run()
    learners = {saved[0], saved[1], config.tracking_uri()}
    stack = contextlib.ExitStack()
    scratch = f"sqlite:///{_scratch_folder()}/check.db"
    os.environ["MLOPS_LAB_TRACKING_URI"] = scratch
    try:
        # An MlflowClient() the learner made in an earlier cell is bound to their store's URI: while the
        # check runs, that URI opens the scratch store too, so such a client is judged (and writes) here.
        stack.enter_context(_redirected_stores(learners - {scratch}, scratch))
        mlflow = training.mlflow_client()
        mlflow.set_experiment(experiment_id=training._experiment_id(mlflow))
        yield mlflow
    finally:
        stack.close()
        while mlflow.active_run() is not None and mlflow.active_run() is not active:
            mlflow.end_run()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        fluent._active_experiment_id = saved[2]


def all_exercises() -> dict[str, Exercise]:
    for name in LAB_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    return dict(sorted(_REGISTRY.items(), key=lambda kv: tuple(int(p) for p in kv[0].split("."))))


def get(id: str) -> Exercise:
    exercises = all_exercises()
    if id not in exercises:
        raise LabError(
            f"There is no exercise {id!r}. Exercise ids look like '2.1' (lab 02, exercise 1); "
            f"the ones in this course are: {', '.join(exercises)}. Check the id in the cell's comment."
        )
    return exercises[id]


def evaluate(id: str, value: Any) -> tuple[str, str]:
    """Return (status, message) with status one of 'correct', 'incorrect', 'not attempted', 'not judged'
    (this machine lacks a tool the check needs: the message says which)."""
    ex = get(id)
    try:
        if is_blank_function(value):
            raise NotAttempted
        ex.checker(value)
    except NotAttempted:
        return "not attempted", "fill in the exercise cell, run it, then run this check again"
    except NotJudged as exc:
        return "not judged", str(exc)
    except AssertionError as exc:
        return "incorrect", str(exc) or "not quite"
    except Exception as exc:  # a learner's function may raise anything
        return "incorrect", f"your answer raised {type(exc).__name__}: {exc}"
    return "correct", ""


@dataclass(frozen=True)
class Feedback:
    """The outcome of a check: coloured HTML in Jupyter, one readable line in logs and terminals."""

    id: str
    title: str
    status: str
    message: str = ""
    carry_on: bool = False

    _STYLE = {"correct": ("#1a7f37", "#e6f4ea", "Correct"), "incorrect": ("#b42318", "#fdecea", "Incorrect"),
              "not attempted": ("#6b5900", "#fff8e1", "Not attempted"),
              "not judged": ("#57606a", "#eaeef2", "Not judged")}

    def text(self) -> str:
        lines = [f"[{self.status}] {self.id} {self.title}" + (f": {self.message}" if self.message else "")]
        if self.status == "incorrect":
            lines.append(f"  Stuck? lab.hint({self.id!r}) gives a hint.")
        if self.carry_on:
            lines.append(f"  Carrying on with the reference answer for {self.id}.")
        return "\n".join(lines)

    __str__ = text

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        colour, background, label = self._STYLE[self.status]
        body = f"<b>{label}</b> &middot; {html.escape(self.id)} {html.escape(self.title)}"
        if self.message:
            body += f"<div style='margin-top:4px;white-space:pre-wrap'>{html.escape(self.message)}</div>"
        extra = []
        if self.status == "incorrect":
            extra.append(f"Stuck? <code>lab.hint({self.id!r})</code> gives a hint.")
        if self.carry_on:
            extra.append(f"Carrying on with the reference answer for {html.escape(self.id)}.")
        if extra:
            body += f"<div style='margin-top:4px;font-size:90%;opacity:.8'>{' '.join(extra)}</div>"
        return (f"<div style='border-left:6px solid {colour};background:{background};color:#1f2328;"
                f"padding:6px 10px;margin:4px 0;border-radius:3px'>{body}</div>")


def show(item: Any) -> None:
    """Rich display in a Jupyter kernel (HTML with a text/plain fallback), a plain print elsewhere."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(item)
    else:
        print(item)


def check(id: str, value: Any) -> Any:
    """Check ``value`` against exercise ``id``; show the outcome; return what to carry on with."""
    ex = get(id)
    status, message = evaluate(id, value)
    _record(id, status)
    if status == "incorrect" and config.strict():
        raise Incorrect(f"{id} {ex.title}: {message}")
    if status == "not attempted":
        message = message + "."
    show(Feedback(id, ex.title, status, message, carry_on=status != "correct"))
    return value if status == "correct" else ex.reference()


def hint(id: str, n: int = 1) -> None:
    ex = get(id)
    if not ex.hints:
        print(f"No hints for {id}; lab.solution({id!r}) shows the answer.")
        return
    n = max(1, min(int(n), len(ex.hints)))
    more = f" (lab.hint({id!r}, n={n + 1}) for the next one)" if n < len(ex.hints) else ""
    print(f"Hint {n} of {len(ex.hints)} for {id}: {ex.hints[n - 1]}{more}")


def solution(id: str) -> None:
    print(f"Solution to {id} {get(id).title}:\n\n{get(id).solution}")


def progress():
    """A table of every exercise and its latest outcome in this workspace (coloured in Jupyter)."""
    done = _load_progress()
    rows = [
        {"exercise": ex.id, "title": ex.title, "status": done.get(ex.id, "not attempted")}
        for ex in all_exercises().values()
    ]
    return _progress_table()(rows).set_index("exercise")


@functools.cache
def _progress_table():
    import pandas as pd

    class ProgressTable(pd.DataFrame):
        """A DataFrame (so ``.loc`` works) that renders its status column in colour."""

        @property
        def _constructor(self):
            return ProgressTable

        def _repr_html_(self):
            if "status" not in self:
                return super()._repr_html_()
            colours = {name: style[1] for name, style in Feedback._STYLE.items()}
            styler = pd.DataFrame(self).style.map(lambda v: f"background-color:{colours.get(v, '')}",
                                                  subset=["status"])
            counts = self["status"].value_counts()
            caption = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("correct", "incorrect", "not attempted")
                                + ("not judged",) * bool(counts.get("not judged")))
            return styler.set_uuid("progress").set_caption(caption).to_html()

    return ProgressTable


def _progress_file():
    return config.path("progress.json")


def _load_progress() -> dict[str, str]:
    try:
        return json.loads(_progress_file().read_text())
    except (OSError, ValueError):
        return {}


def _record(id: str, status: str) -> None:
    try:
        config.ensure_home()
        done = _load_progress()
        # A correct answer stays correct when a later run carries on without one.
        if done.get(id) != "correct" or status == "correct":
            done[id] = status
        _progress_file().write_text(json.dumps(done, indent=1, sort_keys=True))
    except (OSError, LabError):
        pass  # progress is a convenience; never break a learner's notebook over it
    if config.tracking_uri().startswith(("http://", "https://")):  # a workshop: the instructor sees it too
        try:
            from .. import tracking

            tracking.record_check(id, status)
        except Exception:  # noqa: BLE001 - never break a learner's notebook over it
            pass
