"""Exercise checks in the learntools style: not attempted / incorrect (with a hint) / correct.

``lab.check(id, value)`` prints the outcome and returns the value a notebook should
carry on with: the learner's own when it is correct, otherwise the reference answer,
so a lab with every exercise unanswered still runs top to bottom. A check never raises
in a learner's notebook; with ``MLOPS_LAB_STRICT=1`` an incorrect answer raises.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import config
from ..errors import LabError

LAB_MODULES = ("lab00", "lab01", "lab02", "lab03", "lab04", "lab05", "lab06", "lab07")


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
    """The stub value of every exercise is ``...`` (or None): treat it as not attempted."""
    if value is ... or value is None:
        raise NotAttempted


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
        ex.checker(value)
    except NotAttempted:
        return "not attempted", "fill in the exercise cell, run it, then run this check again"
    except AssertionError as exc:
        return "incorrect", str(exc) or "not quite"
    except Exception as exc:  # a learner's function may raise anything
        return "incorrect", f"your answer raised {type(exc).__name__}: {exc}"
    return "correct", ""


def check(id: str, value: Any) -> Any:
    """Check ``value`` against exercise ``id``; print the outcome; return what to carry on with."""
    ex = get(id)
    status, message = evaluate(id, value)
    _record(id, status)
    if status == "correct":
        print(f"[correct] {id} {ex.title}")
        return value
    if status == "incorrect":
        if config.strict():
            raise Incorrect(f"{id} {ex.title}: {message}")
        print(f"[incorrect] {id} {ex.title}: {message}\n  Stuck? lab.hint({id!r}) gives a hint.")
    else:
        print(f"[not attempted] {id} {ex.title}: {message}.")
    print(f"  Carrying on with the reference answer for {id}.")
    return ex.reference()


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
    """A table of every exercise and its latest outcome in this workspace."""
    import pandas as pd

    done = _load_progress()
    rows = [
        {"exercise": ex.id, "title": ex.title, "status": done.get(ex.id, "not attempted")}
        for ex in all_exercises().values()
    ]
    return pd.DataFrame(rows).set_index("exercise")


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
