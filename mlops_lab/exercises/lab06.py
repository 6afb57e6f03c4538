"""Lab 06: CI for ML. The learner writes a data test, a model test and a behavioural test as
functions (each must pass the course's good batch or model and fail planted bad ones), then
completes a workflow job that actionlint and zizmor accept."""

from __future__ import annotations

import functools

import numpy as np

from .. import config
from . import NotAttempted, exercise, require_attempt, right, wrong

MAX_AUC = 0.95
PR_AUC_FLOOR = 0.30
TOLERANCE = 0.001
MAX_FAILURE_RATE = 0.01


# --------------------------------------------------------------------------- what the checks run on


@functools.cache
def _split_for(home: str):
    from .. import data

    return data.time_split(data.load_snapshot())


def _split():
    return _split_for(str(config.home()))


def _fit_lr(frame):
    from .. import data, training

    return training.build_pipeline("logistic_regression").fit(frame[data.feature_columns()], frame["is_fraud"])


@functools.cache
def _models_for(home: str) -> dict:
    """The champion, the registered baseline, and two models trained on corrupted exports."""
    from .. import registry

    train, _, _ = _split()
    inverted_country = train.copy()
    inverted_country["country_mismatch"] = ~inverted_country["country_mismatch"]
    inverse_amount = train.copy()
    inverse_amount["amount"] = (1000 / inverse_amount["amount"]).clip(0.01, 50_000)
    return {
        "the champion": registry.load(registry.CHAMPION),
        "the logistic-regression baseline (version 1)": registry.load("1"),
        "a model trained on an export with the country flag inverted": _fit_lr(inverted_country),
        "a model trained on an export that sent 1000/amount": _fit_lr(inverse_amount),
    }


def _models() -> dict:
    return _models_for(str(config.home()))


def _blank(*args, **kwargs):
    ...


_STUB_CODE = _blank.__code__.co_code


def _is_stub(func) -> bool:
    """The lab's blank stub: a function whose body is only `...` (a real body that forgets to
    return is a mistake to report, not a blank)."""
    code = getattr(func, "__code__", None)
    return code is not None and code.co_code == _STUB_CODE and code.co_consts in ((None,), (Ellipsis,), (None, Ellipsis))


def _run(func, args: tuple, given: str) -> bool:
    """Call the learner's test; a crash or a missing return becomes a message, not a traceback."""
    try:
        result = func(*args)
    except Exception as exc:
        raise AssertionError(f"your test raised {type(exc).__name__}: {exc} when given {given}. A test must not "
                             "crash on bad input: it returns False") from None
    if result is None:
        raise AssertionError(f"your test returned nothing (None) for {given}: end it with `return <condition>`, "
                             "True when the test passes and False when it fails")
    if not isinstance(result, bool | np.bool_):
        raise AssertionError(f"your test returned {type(result).__name__} {result!r} for {given}; return True or "
                             "False")
    return bool(result)


def _attempted_function(func, signature: str) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function {signature}, got {type(func).__name__}"
    if _is_stub(func):
        raise NotAttempted


# --------------------------------------------------------------------------- 6.1 a data test


def _leaky(column: str, how):
    def plant(frame):
        frame = frame.copy()
        frame[column] = how(frame)
        return frame

    return plant


LEAKS = {
    "tx_count_24h recounted after the chargebacks (4 extra payments on every fraud)":
        _leaky("tx_count_24h", lambda f: f["tx_count_24h"] + 4 * f["is_fraud"]),
    "new_device set by the fraud team's review (True on every fraud)":
        _leaky("new_device", lambda f: (f["new_device"] | (f["is_fraud"] == 1)).astype("boolean")),
    "customer_age_days reset to 0 when a card is blocked after fraud (a leak downwards)":
        _leaky("customer_age_days", lambda f: f["customer_age_days"].where(f["is_fraud"] == 0, 0)),
}


def reference_no_leaky_feature(frame, max_auc=MAX_AUC):
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    for column in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h",
                   "distance_from_home_km", "country_mismatch", "new_device"]:
        values = pd.to_numeric(frame[column].astype("float64")).fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], values)
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _one_direction(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    columns = ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h", "distance_from_home_km",
               "country_mismatch", "new_device"]
    return all(roc_auc_score(frame["is_fraud"], frame[c].astype("float64").fillna(-1)) < max_auc for c in columns)


def _numbers_only(frame, max_auc=MAX_AUC):
    from sklearn.metrics import roc_auc_score

    for c in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h", "distance_from_home_km"]:
        auc = roc_auc_score(frame["is_fraud"], frame[c].fillna(-1))
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True


def _too_strict(frame, max_auc=MAX_AUC):
    return reference_no_leaky_feature(frame, max_auc=0.8)


@exercise(
    "6.1",
    "A data test: no feature leaks the label",
    solution='''
import pandas as pd
from sklearn.metrics import roc_auc_score

def no_leaky_feature(frame, max_auc=0.95):
    for column in ["amount", "hour", "customer_age_days", "avg_amount_30d", "tx_count_24h",
                   "distance_from_home_km", "country_mismatch", "new_device"]:
        values = pd.to_numeric(frame[column].astype("float64")).fillna(-1)
        auc = roc_auc_score(frame["is_fraud"], values)
        if max(auc, 1 - auc) >= max_auc:
            return False
    return True
''',
    hints=(
        "Score each numeric or boolean feature alone: roc_auc_score(frame['is_fraud'], values). An honest "
        "feature is far from 1.0 here (amount, the strongest, reaches 0.86).",
        "A feature can leak downwards too (fraud rows all get a small value): its AUC is then close to 0. "
        "Use max(auc, 1 - auc).",
        "Booleans are features too, and some columns have gaps: .astype('float64').fillna(-1) before scoring.",
    ),
    reference=lambda: reference_no_leaky_feature,
    stub=lambda: _stub_data_test,
    cases=(
        wrong("always passes", lambda: lambda frame, max_auc=MAX_AUC: True, "tx_count_24h recounted"),
        wrong("one direction only", lambda: _one_direction, "customer_age_days reset to 0"),
        wrong("numbers but not booleans", lambda: _numbers_only, "new_device set by the fraud team"),
        wrong("threshold too strict", lambda: _too_strict, "failed the clean training data"),
        wrong("forgets to return", lambda: _forgets_return, "returned nothing"),
        right("with the course's helper", lambda: lambda frame, max_auc=MAX_AUC: bool(
            __import__("mlops_lab.testing", fromlist=["x"]).single_feature_auc(frame).max() < max_auc)),
    ),
)
def _check_data_test(func) -> None:
    _attempted_function(func, "no_leaky_feature(frame, max_auc=0.95)")
    train, _, _ = _split()
    assert _run(func, (train,), "the clean training data"), (
        "your test failed the clean training data (28 days of the course dataset). Its strongest honest feature, "
        "amount, reaches a ROC-AUC of 0.86 on its own: leakage is *almost perfect* separation (0.95 or more)"
    )
    for what, plant in LEAKS.items():
        assert not _run(func, (plant(train),), f"a batch with {what}"), (
            f"your test passed a batch with {what}: that feature now predicts fraud almost alone"
        )


def _stub_data_test(frame, max_auc=0.95):
    ...


def _forgets_return(frame, max_auc=MAX_AUC):
    reference_no_leaky_feature(frame, max_auc)


# --------------------------------------------------------------------------- 6.2 a model test


def reference_good_enough(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    scores = model.predict_proba(holdout)[:, 1]
    return average_precision_score(holdout["is_fraud"], scores) >= floor


def _roc_instead(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import roc_auc_score

    return roc_auc_score(holdout["is_fraud"], model.predict_proba(holdout)[:, 1]) >= 0.8


def _accuracy_instead(model, holdout, floor=PR_AUC_FLOOR):
    return (model.predict(holdout) == holdout["is_fraud"]).mean() >= 0.99


def _decisions_instead(model, holdout, floor=PR_AUC_FLOOR):
    from sklearn.metrics import average_precision_score

    return average_precision_score(holdout["is_fraud"], model.predict(holdout)) >= floor


@exercise(
    "6.2",
    "A model test: a quality floor that means something for fraud",
    solution='''
from sklearn.metrics import average_precision_score

def good_enough(model, holdout, floor=0.30):
    scores = model.predict_proba(holdout)[:, 1]
    return average_precision_score(holdout["is_fraud"], scores) >= floor
''',
    hints=(
        "Fraud is under 1% of payments: accuracy and ROC-AUC look good for almost any model. Lab 02 chose "
        "PR-AUC (average precision) for a reason.",
        "PR-AUC needs scores, not decisions: model.predict_proba(holdout)[:, 1].",
    ),
    reference=lambda: reference_good_enough,
    stub=lambda: _stub_model_test,
    cases=(
        wrong("ROC-AUC", lambda: _roc_instead, "ROC-AUC"),
        wrong("accuracy", lambda: _accuracy_instead, "accuracy"),
        wrong("decisions instead of scores", lambda: _decisions_instead, "predict_proba"),
        wrong("always passes", lambda: lambda model, holdout, floor=PR_AUC_FLOOR: True, "country flag inverted"),
        right("through training.evaluate", lambda: lambda model, holdout, floor=PR_AUC_FLOOR: bool(
            __import__("mlops_lab.training", fromlist=["x"]).evaluate(model, holdout, 0.5)["pr_auc"] >= floor)),
    ),
)
def _check_model_test(func) -> None:
    from sklearn.metrics import average_precision_score, roc_auc_score

    _attempted_function(func, "good_enough(model, holdout, floor=0.30)")
    _, _, holdout = _split()
    y = holdout["is_fraud"]
    for name, model in _models().items():
        scores = model.predict_proba(holdout)[:, 1]
        pr_auc, roc_auc = average_precision_score(y, scores), roc_auc_score(y, scores)
        verdict = _run(func, (model, holdout), name)
        if pr_auc >= PR_AUC_FLOOR:
            assert verdict, (f"your test failed {name}, whose holdout PR-AUC is {pr_auc:.3f} (above the floor of "
                             f"{PR_AUC_FLOOR}). Judge the scores (predict_proba), not the 0/1 decisions of predict")
        else:
            assert not verdict, (f"your test passed {name}: its PR-AUC is only {pr_auc:.3f}, though its ROC-AUC is "
                                 f"{roc_auc:.2f} and its accuracy is {float((model.predict(holdout) == y).mean()):.3f}. "
                                 "With under 1% fraud, ROC-AUC and accuracy flatter weak models")


def _stub_model_test(model, holdout, floor=0.30):
    ...


# --------------------------------------------------------------------------- 6.3 a behavioural test


def reference_riskier_is_not_lower(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.copy()
    riskier["amount"] = (riskier["amount"] * 5).clip(upper=50_000)
    riskier["country_mismatch"] = True
    riskier["hour"] = 2
    before = model.predict_proba(payments)[:, 1]
    after = model.predict_proba(riskier)[:, 1]
    return bool(((after - before) < -tolerance).mean() <= max_failure_rate)


def _strictly_higher(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5, country_mismatch=True, hour=2)
    return bool((model.predict_proba(riskier)[:, 1] >= model.predict_proba(payments)[:, 1]).all())


def _mean_only(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5, country_mismatch=True, hour=2)
    return bool(model.predict_proba(riskier)[:, 1].mean() >= model.predict_proba(payments)[:, 1].mean())


def _amount_only(model, payments, tolerance=TOLERANCE, max_failure_rate=MAX_FAILURE_RATE):
    riskier = payments.assign(amount=payments["amount"] * 5)
    delta = model.predict_proba(riskier)[:, 1] - model.predict_proba(payments)[:, 1]
    return bool((delta < -tolerance).mean() <= max_failure_rate)


@exercise(
    "6.3",
    "A behavioural test: riskier payments do not score lower",
    solution='''
def riskier_is_not_lower(model, payments, tolerance=0.001, max_failure_rate=0.01):
    riskier = payments.copy()
    riskier["amount"] = (riskier["amount"] * 5).clip(upper=50_000)
    riskier["country_mismatch"] = True
    riskier["hour"] = 2
    before = model.predict_proba(payments)[:, 1]
    after = model.predict_proba(riskier)[:, 1]
    return bool(((after - before) < -tolerance).mean() <= max_failure_rate)
''',
    hints=(
        "Make one edited copy of the payments with all three changes (5x the amount, a foreign card, 02:00) and "
        "score both copies.",
        "Tree models are not monotone everywhere: count the payments whose score fell by more than the "
        "tolerance, and pass when that share is at most max_failure_rate.",
        "An average can rise while many payments fall: judge each payment, then the share.",
    ),
    reference=lambda: reference_riskier_is_not_lower,
    stub=lambda: _stub_behaviour_test,
    cases=(
        wrong("every score strictly higher", lambda: _strictly_higher, "failed the champion"),
        wrong("compares the mean score", lambda: _mean_only, "1000/amount"),
        wrong("changes the amount only", lambda: _amount_only, "failed the champion"),
        wrong("always passes", lambda: lambda model, payments, tolerance=TOLERANCE, max_failure_rate=0.01: True,
              "country flag inverted"),
        right("with the course's helper", lambda: lambda model, payments, tolerance=TOLERANCE,
              max_failure_rate=MAX_FAILURE_RATE: __import__("mlops_lab.testing", fromlist=["x"]).directional(
                  model, payments, __import__("mlops_lab.testing", fromlist=["x"]).risky_foreign_night, "d",
                  tolerance=tolerance, max_failure_rate=max_failure_rate).passed),
    ),
)
def _check_behaviour_test(func) -> None:
    from .. import testing

    _attempted_function(func, "riskier_is_not_lower(model, payments, tolerance=0.001, max_failure_rate=0.01)")
    _, _, holdout = _split()
    payments = holdout.sample(1000, random_state=config.SEED)
    for name, model in _models().items():
        delta = (model.predict_proba(testing.risky_foreign_night(payments.copy()))[:, 1]
                 - model.predict_proba(payments)[:, 1])
        fell = int((delta < -TOLERANCE).sum())
        why = (f"{fell} of {len(payments)} of its scores fell by more than {TOLERANCE} when the payments became "
               f"riskier (allowed: {MAX_FAILURE_RATE:.0%})")
        verdict = _run(func, (model, payments), name)
        if fell <= MAX_FAILURE_RATE * len(payments):
            assert verdict, (f"your test failed {name}, yet only {why}. Change all three (amount, foreign card, "
                             "night) at once, and allow a small share of payments to fall by more than the tolerance")
        else:
            assert not verdict, f"your test passed {name}, but {why}"


def _stub_behaviour_test(model, payments, tolerance=0.001, max_failure_rate=0.01):
    ...


# --------------------------------------------------------------------------- 6.4 a workflow job

CHECKOUT = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0"
SETUP_PYTHON = "actions/setup-python@e797f83bcb11b83ae66e0230d6156d7c80228e7c # v6.0.0"

WORKFLOW_START = f"""name: cardguard-ml
on:
  pull_request:
permissions: {{}}
jobs:
  ml-pipeline:
    runs-on: ubuntu-latest
    permissions:
      contents: read
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - uses: {SETUP_PYTHON}
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements.txt
"""

REFERENCE_WORKFLOW = WORKFLOW_START.replace("  pull_request:\n", '  pull_request:\n  schedule:\n    - cron: "17 5 * * 1"\n') + """\
      - run: pip install -r requirements.txt -e .
      - run: mlops-lab setup 5
      - run: mlops-lab ci --stage data --stage train --stage quality --stage latency --stage behaviour
"""


def _workflow_problems(text: str) -> list[str]:
    import shlex

    import yaml

    from .. import ci

    lines = ci.actionlint(text)
    if lines:
        return ["actionlint rejects it:\n  " + "\n  ".join(lines)]
    doc = yaml.safe_load(text)
    triggers = doc.get(True) or doc.get("on") or {}
    crons = [s.get("cron", "") for s in (triggers.get("schedule") or [])] if isinstance(triggers, dict) else []
    problems = []
    if not crons:
        problems.append("there is no `schedule:` trigger: add a weekly cron so new library releases are caught")
    for cron in crons:
        parts = cron.split()
        weekly = (len(parts) == 5 and parts[0].isdigit() and parts[1].isdigit() and parts[2:4] == ["*", "*"]
                  and parts[4].isdigit())
        if not weekly:
            problems.append(f"the cron {cron!r} does not run once a week: a minute, an hour, * for day-of-month "
                            "and month, and one day of the week (for example \"17 5 * * 1\")")
    job = (doc.get("jobs") or {}).get("ml-pipeline") or {}
    commands = [shlex.split(str(s["run"])) for s in job.get("steps", []) if "run" in s]
    for step in job.get("steps", []):
        ref = str(step.get("uses", "@" + "0" * 40)).split("@")[-1]
        if not (len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)):
            problems.append(f"`uses: {step['uses']}` is pinned by a tag that can move: pin the full commit SHA")
    ci_at = next((i for i, c in enumerate(commands) if c[:2] == ["mlops-lab", "ci"]), None)
    setup_at = next((i for i, c in enumerate(commands) if c[:2] == ["mlops-lab", "setup"]), None)
    if ci_at is None:
        problems.append("no step runs `mlops-lab ci`: the job must run the pipeline's ML stages")
    else:
        stages = {c[i + 1] for c in commands[ci_at:ci_at + 1] for i, w in enumerate(c[:-1]) if w == "--stage"}
        if stages and not {"quality", "latency"} <= stages:
            problems.append(f"`mlops-lab ci` runs {', '.join(sorted(stages))} but not both gates (quality, latency)")
        if setup_at is None or setup_at > ci_at:
            problems.append("the quality stage compares with the champion, and a fresh runner has none: run "
                            "`mlops-lab setup 5` before `mlops-lab ci`")
        if not any(c[:2] == ["pip", "install"] or c[1:4] == ["-m", "pip", "install"] for c in commands[:ci_at]):
            problems.append("nothing installs the project before `mlops-lab ci`: pip install -r requirements.txt -e .")
    problems += _zizmor(text)
    return problems


def _zizmor(text: str) -> list[str]:
    import subprocess

    from .. import ci

    exe = ci._tool("zizmor")
    if exe is None:
        return []  # optional here: the project's tests run it
    out = subprocess.run([exe, "--offline", "--no-progress", "--min-severity", "medium", "--format", "plain", "-"],
                         input=text, capture_output=True, text=True)
    if out.returncode == 0:
        return []
    found = [line for line in out.stdout.splitlines() if line.startswith(("error[", "warning["))]
    return ["zizmor (a security linter for workflows) reports: " + "; ".join(found or out.stdout.splitlines()[:3])]


@exercise(
    "6.4",
    "Complete a workflow job: weekly, pinned, and in the right order",
    solution=REFERENCE_WORKFLOW,
    hints=(
        "Three run steps after setup-python: install the project, prepare a workspace with a champion, run "
        "`mlops-lab ci` with the ML stages (each as --stage NAME).",
        "A weekly schedule: `schedule:` under `on:`, with `- cron: \"17 5 * * 1\"` (Mondays at 05:17 UTC).",
        "Run `lab.ci.actionlint(workflow)` to see actionlint's own lines before checking.",
    ),
    reference=lambda: REFERENCE_WORKFLOW,
    stub=lambda: WORKFLOW_START,
    cases=(
        wrong("daily instead of weekly", lambda: REFERENCE_WORKFLOW.replace("17 5 * * 1", "17 5 * * *"),
              "does not run once a week"),
        wrong("ci before setup", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: mlops-lab setup 5\n", "").replace("--stage behaviour\n", "--stage behaviour\n"
                                                              "      - run: mlops-lab setup 5\n"),
              "run `mlops-lab setup 5` before"),
        wrong("unpinned cache action", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: pip install", "      - uses: actions/cache@v5\n        with:\n          path: ~/.cache/pip\n"
            "          key: pip\n      - run: pip install"), "pin the full commit SHA"),
        wrong("typo in a runner label", lambda: REFERENCE_WORKFLOW.replace("ubuntu-latest", "ubuntu-lastest"),
              "actionlint rejects it"),
        wrong("pull request title in a shell", lambda: REFERENCE_WORKFLOW.replace(
            "      - run: mlops-lab setup 5\n",
            "      - run: mlops-lab setup 5\n      - run: echo \"testing ${{ github.event.pull_request.title }}\"\n"),
              "potentially untrusted"),
        right("every stage, Sunday night", lambda: REFERENCE_WORKFLOW.replace("17 5 * * 1", "0 23 * * 0").replace(
            " --stage data --stage train --stage quality --stage latency --stage behaviour",
            " --stage data --stage train --stage quality --stage latency --stage behaviour --stage register")),
    ),
)
def _check_workflow(text) -> None:
    require_attempt(text)
    assert isinstance(text, str), f"expected the workflow as YAML text (a string), got {type(text).__name__}"
    if text.strip() == WORKFLOW_START.strip():
        raise NotAttempted
    problems = _workflow_problems(text)
    assert not problems, "\n".join(problems)
