"""Exercise checks in the learntools style: not attempted / incorrect (with a hint) / correct.

``lab.check(id, value)`` prints the outcome and returns the value a notebook should
carry on with: the learner's own when it is correct, otherwise the reference answer,
so a lab with every exercise unanswered still runs top to bottom. A check never raises
in a learner's notebook; with ``MLOPS_LAB_STRICT=1`` an incorrect answer raises.
"""

from __future__ import annotations

import contextlib
import functools
import html
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..errors import LabError

LAB_MODULES = ("lab00", "lab01", "lab02", "lab03", "lab04", "lab05", "lab06", "lab07", "lab08")


class NotAttempted(Exception):
    """The learner has not filled the exercise in yet."""


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


_REGISTRY: dict[str, Exercise] = {}


def exercise(id: str, title: str, *, solution: str, hints: tuple[str, ...], reference: Callable[[], Any],
             stub: Callable[[], Any] | None = None, cases: tuple[Case, ...] = ()):
    """Decorator that registers a checker function as exercise ``id``, with the answers that test it."""

    def register(checker: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[id] = Exercise(id, title, checker, reference, solution.strip(), tuple(hints),
                                 stub or (lambda: ...), tuple(cases))
        return checker

    return register


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
    return code is not None and code.co_code == _blank.__code__.co_code


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


@functools.cache
def _scratch_folder() -> str:
    """One throwaway folder per process (creating an MLflow database costs seconds of migrations)."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="mlops-lab-check-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


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
    os.environ["MLOPS_LAB_TRACKING_URI"] = f"sqlite:///{_scratch_folder()}/check.db"
    try:
        mlflow = training.mlflow_client()
        mlflow.set_experiment(experiment_id=training._experiment_id(mlflow))
        yield mlflow
    finally:
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
    """Return (status, message) with status one of 'correct', 'incorrect', 'not attempted'."""
    ex = get(id)
    try:
        if is_blank_function(value):
            raise NotAttempted
        ex.checker(value)
    except NotAttempted:
        return "not attempted", "fill in the exercise cell, run it, then run this check again"
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
              "not attempted": ("#6b5900", "#fff8e1", "Not attempted")}

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
            caption = ", ".join(f"{counts.get(k, 0)} {k}" for k in ("correct", "incorrect", "not attempted"))
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
            from .. import workshop

            workshop.record_check(id, status)
        except Exception:  # noqa: BLE001 - never break a learner's notebook over it
            pass
