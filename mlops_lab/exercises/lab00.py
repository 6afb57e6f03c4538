"""Lab 00: Welcome. Small exercises that show the check / hint / solution flow."""

from __future__ import annotations

import numbers
from pathlib import Path

from .. import config
from . import call, exercise, require_attempt, right, wrong

LATENCY_BUDGET_MS = 100


@exercise(
    "0.1",
    "CardGuard's latency budget",
    solution="latency_budget_ms = 100",
    hints=(
        "Read the business constraints in the CardGuard story at the top of this notebook.",
        "The budget is a whole number of milliseconds, well under a second.",
    ),
    reference=lambda: LATENCY_BUDGET_MS,
    cases=(
        wrong("a second, in ms", lambda: 1000, "not CardGuard's budget"),
        wrong("the budget in seconds", lambda: 0.1, "in seconds"),
        wrong("a string", lambda: "100", "expected a number"),
        wrong("True", lambda: True, "expected a number"),
        right("numpy integer", lambda: __import__("numpy").int64(100)),
        right("float", lambda: 100.0),
    ),
)
def _check_budget(value) -> None:
    require_attempt(value)
    assert isinstance(value, numbers.Real) and not isinstance(value, bool), (
        f"expected a number of milliseconds, got {type(value).__name__} {value!r}"
    )
    assert value != 0.1, "that is the budget in seconds; the exercise asks for milliseconds"
    assert value == LATENCY_BUDGET_MS, (
        f"{value} ms is not CardGuard's budget: the card network waits for our answer, "
        "so re-read the constraints for the number"
    )


def _mlflow_db() -> Path:
    return config.path("mlflow.db")


@exercise(
    "0.2",
    "Find the MLflow store in your workspace",
    solution='mlflow_db = lab.workspace() / "mlflow.db"',
    hints=(
        "`lab.workspace()` returns your workspace folder as a pathlib.Path.",
        "Join a file name to a Path with the / operator: `folder / 'name.txt'`.",
    ),
    reference=_mlflow_db,
    cases=(
        wrong("another folder", lambda: Path("/tmp/elsewhere/mlflow.db"), "not inside your workspace"),
        wrong("a bare file name", lambda: "mlflow.db", "not inside your workspace"),
        wrong("the artifacts folder", lambda: config.path("mlruns"), "ends in 'mlruns'"),
        wrong("a number", lambda: 42, "expected a path"),
        right("a string path", lambda: str(config.home() / "mlflow.db")),
    ),
)
def _check_store_path(value) -> None:
    require_attempt(value)
    assert isinstance(value, str | Path), f"expected a path (pathlib.Path or str), got {type(value).__name__}"
    got = Path(value).expanduser()
    assert got.name == "mlflow.db", f"the store's file is called mlflow.db, your path ends in {got.name!r}"
    assert got.resolve() == _mlflow_db(), (
        f"{got} is not inside your workspace {config.home()}; start from lab.workspace()"
    )


def _reference_within_budget(latencies_ms, budget_ms: float = LATENCY_BUDGET_MS) -> bool:
    import numpy as np

    latencies = np.asarray(latencies_ms, dtype=float)
    return bool(latencies.size) and bool(np.percentile(latencies, 99) < budget_ms)


def _judges_the_mean(latencies_ms, budget_ms=100):
    import numpy as np

    return len(latencies_ms) > 0 and float(np.mean(latencies_ms)) < budget_ms


def _judges_the_max(latencies_ms, budget_ms=100):
    return len(latencies_ms) > 0 and max(latencies_ms) < budget_ms


def _fixed_budget(latencies_ms, budget_ms=100):
    import numpy as np

    return len(latencies_ms) > 0 and float(np.percentile(latencies_ms, 99)) < 100


def _no_empty_guard(latencies_ms, budget_ms=100):
    import numpy as np

    return bool(np.percentile(latencies_ms, 99) < budget_ms)


def _forgot_return(latencies_ms, budget_ms=100):
    import numpy as np

    np.percentile(latencies_ms, 99) < budget_ms  # noqa: B015 (the learner's slip, kept on purpose)


def _sorted_by_hand(latencies_ms, budget_ms=100):
    ordered = sorted(latencies_ms)
    if not ordered:
        return False
    return ordered[int(0.99 * len(ordered))] < budget_ms  # a "higher" style percentile


@exercise(
    "0.3",
    "Is a service within its latency budget?",
    solution='''
import numpy as np

def within_budget(latencies_ms, budget_ms=100):
    latencies = np.asarray(latencies_ms, dtype=float)
    return latencies.size > 0 and np.percentile(latencies, 99) < budget_ms
''',
    hints=(
        "A budget is judged on the slow tail, not the average: use the 99th percentile.",
        "`np.percentile(latencies, 99)` gives the p99; compare it with the budget using <.",
        "An empty list of latencies proves nothing: return False for it.",
    ),
    reference=lambda: _reference_within_budget,
    stub=lambda: _blank_within_budget,
    cases=(
        wrong("judges the mean", lambda: _judges_the_mean, "2% of requests take 250 ms"),
        wrong("judges the maximum", lambda: _judges_the_max, "0.5% of requests are slow"),
        wrong("ignores budget_ms", lambda: _fixed_budget, "ignores its budget_ms"),
        wrong("no guard for no data", lambda: _no_empty_guard, "empty list"),
        wrong("forgot return", lambda: _forgot_return, "did you forget `return`?"),
        right("sorted by hand", lambda: _sorted_by_hand),
    ),
)
def _check_within_budget(func) -> None:
    import numpy as np

    require_attempt(func)
    assert callable(func), f"expected a function within_budget(latencies_ms, budget_ms=100), got {func!r}"
    # Tails of 0.5% and 2% (not exactly 1%), so every percentile method gives the same verdict.
    cases = [
        ([10.0, 12.0, 11.0] * 100, True, "all requests take about 11 ms"),
        ([5.0] * 995 + [250.0] * 5, True,
         "0.5% of requests are slow (250 ms) but the 99th percentile is 5 ms, well within budget"),
        ([5.0] * 980 + [250.0] * 20, False,
         "2% of requests take 250 ms (the mean is only 9.9 ms), so the 99th percentile is 250 ms, over budget"),
        ([150.0] * 10, False, "every request takes 150 ms"),
    ]
    for latencies, expected, why in cases:
        got = call(func, latencies)
        assert isinstance(got, bool | np.bool_) and bool(got) == expected, (
            f"within_budget returned {got!r} when {why}; expected {expected}"
        )
    assert not call(func, [5.0] * 100, budget_ms=1), (
        "within_budget ignores its budget_ms argument: 5 ms requests are over a 1 ms budget"
    )
    try:
        empty = call(func, [])
    except (IndexError, ValueError) as exc:
        raise AssertionError(f"within_budget([]) raised {type(exc).__name__}: an empty list of latencies "
                             "proves nothing, so return False for it (check its length first)") from None
    assert not empty, "an empty list of latencies proves nothing: return False"


def _blank_within_budget(latencies_ms, budget_ms=100):
    ...


def _colleagues_within_budget(latencies_ms, budget_ms=100):
    import numpy as np

    latencies = np.asarray(latencies_ms, dtype=float)
    latencies.size > 0 and np.percentile(latencies, 99) < budget_ms  # noqa: B015 (the bug to find)


def _returns_the_percentile(latencies_ms, budget_ms=100):
    import numpy as np

    latencies = np.asarray(latencies_ms, dtype=float)
    return latencies.size > 0 and np.percentile(latencies, 99)


def _returns_a_string(latencies_ms, budget_ms=100):
    return "yes" if _reference_within_budget(latencies_ms, budget_ms) else "no"


@exercise(
    "0.4",
    "Debug: a check that fails without an error",
    solution='''
def fixed_within_budget(latencies_ms, budget_ms=100):
    latencies = np.asarray(latencies_ms, dtype=float)
    return latencies.size > 0 and np.percentile(latencies, 99) < budget_ms
''',
    hints=(
        "Read the check's message on your colleague's function: what did the function hand back?",
        "A Python function without `return` gives back None. Add `return` before the comparison.",
    ),
    reference=lambda: _reference_within_budget,
    cases=(
        wrong("the colleague's function, unchanged", lambda: _colleagues_within_budget, "did you forget `return`?"),
        wrong("returns the percentile, not a verdict", lambda: _returns_the_percentile, "within_budget returned"),
        wrong("returns a word", lambda: _returns_a_string, "within_budget returned"),
        right("the 0.3 answer written by hand", lambda: _sorted_by_hand),
    ),
)
def _check_debugged(func) -> None:
    _check_within_budget(func)
