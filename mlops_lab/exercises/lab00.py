"""Lab 00: Welcome. Small exercises that show the check / hint / solution flow."""

from __future__ import annotations

from pathlib import Path

from .. import config
from . import exercise, require_attempt

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
)
def _check_budget(value) -> None:
    require_attempt(value)
    assert isinstance(value, int | float) and not isinstance(value, bool), (
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
)
def _check_within_budget(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function within_budget(latencies_ms, budget_ms=100), got {func!r}"
    fast_tail = [5.0] * 990 + [250.0] * 10  # mean 7.45 ms, but 1% of requests take 250 ms
    cases = [
        ([10.0, 12.0, 11.0] * 100, True, "all requests take about 11 ms"),
        (fast_tail, True, "1% of requests are slow (250 ms), the 99th percentile is still 5 ms"),
        ([5.0] * 980 + [250.0] * 20, False, "2% of requests take 250 ms, so the p99 is over budget"),
        ([150.0] * 10, False, "every request takes 150 ms"),
    ]
    for latencies, expected, why in cases:
        got = func(latencies)
        require_attempt(got)  # the stub's body is `...`, which returns None
        assert bool(got) == expected, f"within_budget returned {got!r} when {why}; expected {expected}"
    assert not func([5.0] * 100, budget_ms=1), "within_budget ignores its budget_ms argument"

    assert not func([]), "an empty list of latencies proves nothing: return False"
