"""Lab 03: Registry. Pick the challenger, write the promotion rule, load the champion by alias."""

from __future__ import annotations

from .. import registry, training
from . import exercise, require_attempt


def _best_run_id() -> str:
    return str(training.compare_runs("valid_pr_auc").index[0])


@exercise(
    "3.1",
    "Pick the challenger",
    solution='best_run_id = runs["valid_pr_auc"].idxmax()',
    hints=(
        "`runs` is indexed by run id and has a column `valid_pr_auc`.",
        "`runs['valid_pr_auc'].idxmax()` returns the run id of the best run.",
    ),
    reference=_best_run_id,
)
def _check_best_run(value) -> None:
    require_attempt(value)
    runs = training.compare_runs("valid_pr_auc")
    assert value in runs.index, f"{value!r} is not the id of a finished run in your experiment"
    best = runs["valid_pr_auc"].idxmax()
    assert value == best, (
        f"run {value} has validation PR-AUC {runs.loc[value, 'valid_pr_auc']:.3f}, but run {best} has "
        f"{runs.loc[best, 'valid_pr_auc']:.3f}: the challenger is the best run on validation, not the latest"
    )


@exercise(
    "3.2",
    "Write the promotion rule",
    solution='''
def should_promote(interval_low, mean_difference, margin=0.01):
    return interval_low > 0 and mean_difference >= margin
''',
    hints=(
        "Two conditions: the improvement is real (not noise) and it is big enough to be worth a release.",
        "Real: the whole bootstrap interval of the difference is above zero, so its lower end is > 0.",
        "Big enough: the mean difference is at least the margin.",
    ),
    reference=lambda: registry.should_promote,
)
def _check_rule(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function should_promote(interval_low, mean_difference, margin=0.01)"
    cases = [
        ((0.02, 0.05), True, "the challenger is better by 0.05 and the interval [0.02, ...] is above zero"),
        ((-0.01, 0.02), False, "the interval reaches below zero (-0.01): the improvement may be noise"),
        ((0.001, 0.004), False, "the improvement (0.004) is real but smaller than the margin (0.01)"),
        ((-0.08, -0.05), False, "the challenger is worse"),
    ]
    for (low, mean), expected, why in cases:
        got = func(low, mean)
        require_attempt(got)
        assert bool(got) == expected, f"should_promote({low}, {mean}) returned {got!r}, but {why}"
    assert not func(0.02, 0.05, margin=0.1), "should_promote ignores its margin argument"


@exercise(
    "3.3",
    "Load the model the gate chose",
    solution='champion = mlflow.sklearn.load_model(f"models:/{name}@champion")',
    hints=(
        "Registry URIs look like `models:/NAME/VERSION` or `models:/NAME@ALIAS`.",
        "Serving code should follow the alias, not a version number, so a promotion needs no code change.",
    ),
    reference=lambda: registry.load(registry.CHAMPION),
)
def _check_champion(model) -> None:
    require_attempt(model)
    from .. import data

    assert hasattr(model, "predict_proba"), f"expected the champion pipeline, got {type(model).__name__}"
    sample = data.simulate_transactions(500, seed=11)
    expected = training.predict_scores(registry.load(registry.CHAMPION), sample)
    got = training.predict_scores(model, sample)
    current = registry.alias_version(registry.CHAMPION)
    assert abs(got - expected).max() < 1e-12, (
        f"this is not the current champion (version {current}): load `models:/NAME@champion` so you always "
        "get what the gate chose"
    )
