"""Lab 04: Serving. Read a 422, build a request body, read a latency histogram, write a route test
that catches a planted bug, and find the request that shows training/serving skew.

The apps the checks run are real ``create_app`` apps under FastAPI's ``TestClient``, serving the
champion. The buggy ones serve the same model behind a scorer with one planted mistake; their
prediction logs go to a temporary folder, never into the learner's workspace."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import tempfile
import time
from functools import lru_cache

import numpy as np

from ..serving import client as serving_client
from . import exercise, require_attempt, right, wrong
from .lab03 import call

# --------------------------------------------------------------------------- 4.1


@exercise(
    "4.1",
    "Read the 422",
    solution='rejected_field = response.json()["errors"][0]["field"]',
    hints=(
        "`response.json()` is a dict with `detail` and a list `errors`.",
        "Each error has a `field`, a `rule` and a `message`; take the first error's field.",
    ),
    reference=lambda: "amount",
    cases=(
        wrong("the list's key", lambda: "errors", "is not the field the server rejected"),
        wrong("the rule", lambda: "greater_than_equal", "is the rule"),
        wrong("the whole error", lambda: {"field": "amount", "rule": "greater_than_equal"}, "the name of the field"),
        wrong("the second error's field", lambda: "coupon", "the first error"),
    ),
)
def _check_rejected_field(value) -> None:
    require_attempt(value)
    assert isinstance(value, str), (
        f"expected the name of the field (a string), got {type(value).__name__}: look inside response.json()['errors']"
    )
    assert value != "greater_than_equal", "that is the rule the value broke; the error's `field` says which field"
    assert value != "coupon", "coupon was rejected too, but it is the second error: take the first error's field"
    assert value == "amount", f"{value!r} is not the field the server rejected; read the `field` of the first error"


# --------------------------------------------------------------------------- 4.2

NEW_CUSTOMER = {"amount": 89.9, "merchant_category": "online_retail", "channel": "online", "hour": 21,
                "customer_age_days": 12, "avg_amount_30d": None, "tx_count_24h": 1,
                "distance_from_home_km": None, "country_mismatch": False, "new_device": True}
# what the story says about each field, for the message when a value is off
_STORY = {
    "amount": "pays EUR 89.90", "merchant_category": "at an online shop (online_retail)", "channel": "pays online (channel='online')",
    "hour": "at 21:00 (hour=21)", "customer_age_days": "opened the account 12 days ago",
    "avg_amount_30d": "has no 30-day average yet: the value is unknown, so None",
    "tx_count_24h": "this is their first payment today: counting it, tx_count_24h=1",
    "distance_from_home_km": "there is no geolocation: the distance is unknown, so None",
    "country_mismatch": "the card and the shop are in the same country (False)", "new_device": "from a new device",
}


def _reference_new_customer() -> dict:
    return dict(NEW_CUSTOMER)


@exercise(
    "4.2",
    "A payment from a brand-new customer",
    solution='''
new_customer = {"amount": 89.9, "merchant_category": "online_retail", "channel": "online", "hour": 21,
                "customer_age_days": 12, "avg_amount_30d": None, "tx_count_24h": 1,
                "distance_from_home_km": None, "country_mismatch": False, "new_device": True}
''',
    hints=(
        "The contract says which columns may be empty: `lab.data.describe_contract()`, column `nullable`.",
        "JSON has no NaN. An unknown value is sent as null, which is None in Python (or left out, if nullable).",
    ),
    reference=_reference_new_customer,
    cases=(
        wrong("NaN for the unknown average", lambda: {**NEW_CUSTOMER, "avg_amount_30d": float("nan")},
              "JSON cannot carry"),
        wrong("this payment as the average", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 89.9}, "no 30-day average yet"),
        wrong("the account age in months", lambda: {**NEW_CUSTOMER, "customer_age_days": 0}, "12 days ago"),
        wrong("paid by chip", lambda: {**NEW_CUSTOMER, "channel": "chip"}, "channel"),
        wrong("hour as text", lambda: {**NEW_CUSTOMER, "hour": "21"}, "the server would reject it"),
        right("nullable fields left out",
              lambda: {k: v for k, v in NEW_CUSTOMER.items() if k not in ("avg_amount_30d", "distance_from_home_km")}),
        right("amount written 89.90 and keys in another order", lambda: dict(reversed({**NEW_CUSTOMER,
                                                                                         "amount": 89.90}.items()))),
    ),
)
def _check_new_customer(value) -> None:
    from pydantic import ValidationError

    from ..serving.schemas import Transaction

    require_attempt(value)
    assert isinstance(value, dict), f"expected the request body as a dict, got {type(value).__name__}"
    for key, got in value.items():
        assert not (isinstance(got, float) and math.isnan(got)), (
            f"{key} is NaN, which JSON cannot carry (the server would reject it): send None, which becomes null"
        )
    try:
        Transaction.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AssertionError(f"the server would reject it: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    for key, expected in NEW_CUSTOMER.items():
        got = value.get(key)  # a nullable field left out is null: the server reads it so
        same = got is None if expected is None else (
            got is not None and (math.isclose(got, expected) if isinstance(expected, float) else got == expected))
        assert same, f"{key}={got!r} does not match the story: the customer {_STORY[key]}"


# --------------------------------------------------------------------------- 4.5


def _reference_p99(buckets):
    return serving_client.quantile_from_buckets(buckets, 0.99)


def _stub_p99(buckets):
    ...


def _p99_interpolated(buckets):
    bounds = sorted(buckets)
    counts = np.array([buckets[b] for b in bounds])
    return float(np.interp(0.99 * counts[-1], counts, [b if math.isfinite(b) else bounds[-2] for b in bounds]))


def _p99_strict(buckets):
    total = max(buckets.values())
    return next(bound for bound, count in sorted(buckets.items()) if count > 0.99 * total)


@exercise(
    "4.5",
    "The p99 from a latency histogram",
    solution='''
def p99(buckets):
    total = max(buckets.values())
    for bound, count in sorted(buckets.items()):
        if count >= 0.99 * total:
            return bound
''',
    hints=(
        "Prometheus buckets are cumulative: `buckets[0.01]` counts requests that took at most 0.01 s.",
        "The total is the count of the largest bucket (`+Inf`).",
        "Walk the bounds from small to large; return the first whose count reaches 99% of the total.",
    ),
    reference=lambda: _reference_p99,
    stub=lambda: _stub_p99,
    cases=(
        wrong("the middle bucket", lambda: lambda buckets: sorted(buckets)[len(buckets) // 2], "expected 0.01 because"),
        wrong("buckets read as counts per bucket", lambda: lambda b: next(
            k for k, v in sorted(b.items()) if sum(c for kk, c in b.items() if kk <= k) >= 0.99 * sum(b.values())),
            "cumulative"),
        wrong("strictly more than 99%", lambda: _p99_strict, "at least 99%"),
        wrong("interpolated between bounds", lambda: _p99_interpolated, "expected inf because"),
        right("numpy searchsorted", lambda: lambda b: sorted(b)[int(np.searchsorted(
            np.array([b[k] for k in sorted(b)]), 0.99 * max(b.values())))]),
    ),
)
def _check_p99(func) -> None:
    cases = [
        ({0.005: 90, 0.01: 99, 0.025: 100, math.inf: 100}, 0.01,
         "99 of 100 requests took at most 0.01 s (the buckets are cumulative: at least 99% fit under it)"),
        ({0.005: 50, 0.01: 98, 0.025: 98.5, math.inf: 100}, math.inf, "only 98.5% fit under 0.025 s"),
        ({0.001: 1000, 0.005: 1000, math.inf: 1000}, 0.001, "every request took at most 0.001 s"),
        ({0.001: 10, 0.005: 990, 0.01: 1000, math.inf: 1000}, 0.005,
         "990 of 1000 (exactly 99%) took at most 0.005 s: at least 99% is enough"),
    ]
    for buckets, expected, why in cases:
        got = call(func, dict(buckets))
        assert got in buckets, f"p99({buckets}) returned {got!r}; return a bucket bound (a key of the dict)"
        assert got == expected, f"p99({buckets}) returned {got!r}, expected {expected} because {why}"


# --------------------------------------------------------------------------- apps for 4.3 and 4.4


class _AmountInCents:
    """The planted bug of 4.3: a refactor that sends the amount in cents to the model."""

    def __init__(self, model):
        self.model = model

    def scores(self, records):
        return self.model.scores([{**r, "amount": r["amount"] * 100} for r in records])


class _MissingAsZero:
    """The planted bug of 4.4: serving fills unknown values with 0, training imputed the median."""

    def __init__(self, model):
        self.model = model

    def scores(self, records):
        return self.model.scores([{k: 0 if v is None else v for k, v in r.items()} for r in records])


BUGS = {"amount in cents": _AmountInCents, "missing as zero": _MissingAsZero}


@lru_cache(maxsize=2)
def _champion(version: str):
    from ..serving.model import load_from_registry

    return load_from_registry()


def champion_model():
    """The champion as the server loads it (cached per champion version)."""
    from .. import registry

    return _champion(registry.alias_version(registry.CHAMPION))


@contextlib.contextmanager
def test_client(bug: str | None = None):
    """A ready ``TestClient`` on the CardGuard app serving the champion, with planted ``bug`` if
    given (see BUGS). Predictions are logged to a temporary folder, not the workspace."""
    import warnings

    from ..serving.app import create_app

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's note about httpx2, not the learner's
        from fastapi.testclient import TestClient

    model = champion_model()
    if bug is not None:
        model = dataclasses.replace(model, scorer=BUGS[bug](dataclasses.replace(model)))
    with tempfile.TemporaryDirectory(prefix="mlops-lab-check-") as tmp:
        app = create_app(load_model=lambda: model, prediction_log=f"{tmp}/predictions.jsonl")
        with TestClient(app) as client:
            for _ in range(200):
                if client.get("/ready").status_code == 200:
                    break
                time.sleep(0.05)
            yield client


test_client.__test__ = False  # a helper for checks and notebooks, not a pytest test


# --------------------------------------------------------------------------- 4.3


def payments(n: int = 20):
    """A few payments of the week after the course data, with some unknown values."""
    from .. import data

    return data.simulate_transactions(n, start="2026-02-16", seed=44)


def _reference_test(client, model):
    from .. import training
    from ..serving import to_payload

    frame = payments()
    expected = training.predict_scores(model, frame)
    for body, score in zip(to_payload(frame), expected, strict=True):
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        assert abs(response.json()["score"] - score) < 1e-6, (body, response.json()["score"], score)


def _stub_test(client, model):
    ...


def _test_status_only(client, model):
    from ..serving import to_payload

    for body in to_payload(payments()):
        assert client.post("/predict", json=body).status_code == 200


def _test_score_is_a_probability(client, model):
    from ..serving import to_payload

    for body in to_payload(payments()):
        assert 0 <= client.post("/predict", json=body).json()["score"] <= 1


def _test_decision_consistent(client, model):
    from ..serving import to_payload

    for body in to_payload(payments()):
        answer = client.post("/predict", json=body).json()
        assert (answer["decision"] == "flag") == (answer["score"] >= answer["threshold"])


def _test_everything_flagged(client, model):
    from ..serving import to_payload

    for body in to_payload(payments()):
        assert client.post("/predict", json=body).json()["decision"] == "flag"


def _test_with_pytest_approx(client, model):
    import pytest

    from .. import training
    from ..serving import to_payload

    frame = payments(10)
    served = [client.post("/predict", json=body).json()["score"] for body in to_payload(frame)]
    assert served == pytest.approx(training.predict_scores(model, frame), abs=1e-6)


def _run_learner_test(func, bug: str | None, model):
    with test_client(bug) as client:
        try:
            func(client, model)
        except AssertionError as exc:
            return "failed", str(exc)[:200]
    return "passed", ""


@exercise(
    "4.3",
    "A route test that catches a bug",
    solution='''
def test_served_score_matches_the_model(client, model):
    payments = lab.data.simulate_transactions(20, start="2026-02-16", seed=44)
    expected = lab.training.predict_scores(model, payments)
    for body, score in zip(lab.serving.to_payload(payments), expected):
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        assert abs(response.json()["score"] - score) < 1e-6
''',
    hints=(
        "A route test that only checks the status code passes on a server that answers nonsense. What must the "
        "answer *equal*?",
        "The served score must be the model's own score for the same payment: compute it offline with "
        "`lab.training.predict_scores(model, payments)` and compare.",
        "Floats from two code paths differ in the last digits: compare with a tolerance, `abs(a - b) < 1e-6`.",
    ),
    reference=lambda: _reference_test,
    stub=lambda: _stub_test,
    cases=(
        wrong("status code only", lambda: _test_status_only, "passes against the buggy app"),
        wrong("score is a probability", lambda: _test_score_is_a_probability, "passes against the buggy app"),
        wrong("decision agrees with score and threshold", lambda: _test_decision_consistent,
              "passes against the buggy app"),
        wrong("expects every payment flagged", lambda: _test_everything_flagged, "fails against the correct app"),
        right("pytest.approx", lambda: _test_with_pytest_approx),
    ),
)
def _check_route_test(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a test function test_...(client, model)"
    from . import NotAttempted
    from .lab03 import is_stub

    if is_stub(func):
        raise NotAttempted
    model = champion_model().pipeline
    outcome, why = _run_learner_test(func, None, model)
    assert outcome == "passed", (
        f"your test fails against the correct app, so it would block every release: {why or 'assertion failed'}. "
        "Compare with a tolerance, and only assert what the server promises"
    )
    outcome, _ = _run_learner_test(func, "amount in cents", model)
    assert outcome == "failed", (
        "your test passes against the buggy app too (it sends the amount in cents to the model, so every score "
        "is wrong): assert that the served score equals the model's score for the same payment"
    )


# --------------------------------------------------------------------------- 4.4


@exercise(
    "4.4",
    "Find the skew",
    solution='''
skewed_payment = {**bodies[0], "avg_amount_30d": None}   # any payment with an unknown value
''',
    hints=(
        "Compare the served score with the offline score for a few payments: which ones disagree?",
        "The payments that disagree have something in common: look at their null values.",
        "Training imputed unknown values (the median); the buggy server fills them with 0.",
    ),
    reference=lambda: {**NEW_CUSTOMER},
    cases=(
        wrong("a payment with every value known", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 40.0,
                                                          "distance_from_home_km": 3.0}, "agree on this payment"),
        wrong("a payment the server rejects", lambda: {**NEW_CUSTOMER, "amount": -5.0}, "rejects"),
        wrong("a list of payments", lambda: [NEW_CUSTOMER], "one payment"),
        right("only the distance unknown", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 61.0}),
    ),
)
def _check_skewed_payment(body) -> None:
    require_attempt(body)
    assert isinstance(body, dict), f"expected one payment (a dict, the request body), got {type(body).__name__}"
    from .. import data, training

    with test_client("missing as zero") as client:
        response = client.post("/predict", json=body)
    assert response.status_code == 200, (
        f"the skewed server rejects this payment ({response.status_code}: {response.text[:200]}); send a valid one"
    )
    import pandas as pd

    frame = pd.DataFrame([{c: body.get(c) for c in data.feature_columns()}]).astype(
        {c: "float64" for c in ("avg_amount_30d", "distance_from_home_km")})
    offline = float(training.predict_scores(champion_model().pipeline, frame)[0])
    served = response.json()["score"]
    assert abs(served - offline) > 1e-6, (
        f"the skewed server and the model agree on this payment (score {served:.4f} both): find a payment on which "
        "they disagree; compare the ones that do in the table above"
    )
