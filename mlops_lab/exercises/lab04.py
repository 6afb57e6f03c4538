"""Lab 04: Serving. Read a 422, build a request body, read a latency histogram, write a route test
that catches a planted bug, and find the request that shows training/serving skew.

The apps the checks run are real ``create_app`` apps under FastAPI's ``TestClient``, serving the
champion. The buggy ones serve the same model behind a scorer with one planted mistake; their
prediction logs go to a temporary folder, never into the learner's workspace."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import tempfile
import time
from functools import lru_cache

import numpy as np

from . import NotAttempted, Trial, _short, differential, exercise, get, require_attempt, right, wrong

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
        wrong("the status code", lambda: 422, "the name of the field"),
        wrong("the rejected value", lambda: "-12.0", "is the value the caller sent"),
        wrong("the detail sentence", lambda: "the request does not match the CardGuard data contract",
              "is the `detail`"),
        wrong("the field as a one-element list", lambda: ["amount"], "not a name"),
        wrong("capitalised", lambda: "Amount", "case-sensitive"),
        wrong("padded with spaces", lambda: " amount ", "spaces"),
        right("a numpy string", lambda: np.str_("amount")),
    ),
)
def _check_rejected_field(value) -> None:
    require_attempt(value)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        raise AssertionError(f"{value!r} is a list, not a name: the error's `field` is a string; "
                             "take the first error's `field` itself")
    assert isinstance(value, str), (
        f"expected the name of the field (a string), got {type(value).__name__}: look inside response.json()['errors']"
    )
    assert value != "greater_than_equal", "that is the rule the value broke; the error's `field` says which field"
    assert value != "coupon", "coupon was rejected too, but it is the second error: take the first error's field"
    assert value not in ("-12.0", "-12"), f"{value!r} is the value the caller sent (`input`); the `field` says where"
    assert "contract" not in value, "that is the `detail`, a sentence for people; the first error's `field` is a name"
    if value.strip().lower() == "amount" and value != "amount":
        raise AssertionError(
            f"{value!r} is not the field's name as the server wrote it: "
            + ("it has spaces around it" if value.strip() != value else "JSON field names are case-sensitive")
            + ". Take the first error's `field` as it is, without retyping it")
    assert value == "amount", f"{value!r} is not the field the server rejected; read the `field` of the first error"


# --------------------------------------------------------------------------- 4.2

NEW_CUSTOMER = {"amount": 89.9, "merchant_category": "online_retail", "channel": "online", "hour": 21,
                "customer_age_days": 12, "avg_amount_30d": None, "tx_count_24h": 0,
                "distance_from_home_km": None, "country_mismatch": False, "new_device": True}
# what the story says about each field, for the message when a value is off
_STORY = {
    "amount": "pays EUR 89.90", "merchant_category": "at an online shop (online_retail)", "channel": "pays online (channel='online')",
    "hour": "at 21:00 (hour=21)", "customer_age_days": "opened the account 12 days ago",
    "avg_amount_30d": "has no 30-day average yet: the value is unknown, so None",
    "tx_count_24h": ("made no other payment in the previous 24 hours: the contract counts the payments *before* "
                     "this one (`lab.data.describe_contract()`), so tx_count_24h=0"),
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
                "customer_age_days": 12, "avg_amount_30d": None, "tx_count_24h": 0,
                "distance_from_home_km": None, "country_mismatch": False, "new_device": True}
''',
    hints=(
        "The contract says which columns may be empty and what each one counts: `lab.data.describe_contract()`, "
        "columns `nullable` and `description`.",
        "JSON has no NaN. An unknown value is sent as null, which is None in Python (or left out, if nullable).",
        "tx_count_24h counts the payments in the previous 24 hours, not this one.",
    ),
    reference=_reference_new_customer,
    cases=(
        wrong("NaN for the unknown average", lambda: {**NEW_CUSTOMER, "avg_amount_30d": float("nan")},
              "JSON cannot carry"),
        wrong("this payment as the average", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 89.9}, "no 30-day average yet"),
        wrong("the account age in months", lambda: {**NEW_CUSTOMER, "customer_age_days": 0}, "12 days ago"),
        wrong("paid by chip", lambda: {**NEW_CUSTOMER, "channel": "chip"}, "channel"),
        wrong("hour as text", lambda: {**NEW_CUSTOMER, "hour": "21"}, "the server would reject it"),
        wrong("this payment counted in tx_count_24h", lambda: {**NEW_CUSTOMER, "tx_count_24h": 1}, "previous 24 hours"),
        wrong("the amount in cents", lambda: {**NEW_CUSTOMER, "amount": 8990}, "EUR 89.90"),
        wrong("a country mismatch", lambda: {**NEW_CUSTOMER, "country_mismatch": True}, "same country"),
        wrong("unknown distance sent as 0 km", lambda: {**NEW_CUSTOMER, "distance_from_home_km": 0.0}, "unknown"),
        wrong("the body as a JSON string", lambda: __import__("json").dumps(NEW_CUSTOMER), "as a dict"),
        right("nullable fields left out",
              lambda: {k: v for k, v in NEW_CUSTOMER.items() if k not in ("avg_amount_30d", "distance_from_home_km")}),
        right("amount written 89.90 and keys in another order", lambda: dict(reversed({**NEW_CUSTOMER,
                                                                                         "amount": 89.90}.items()))),
        right("whole numbers written as floats", lambda: {**NEW_CUSTOMER, "customer_age_days": 12.0, "hour": 21.0,
                                                          "tx_count_24h": 0.0}),
    ),
)
def _check_new_customer(value) -> None:
    from pydantic import ValidationError

    from ..serving.schemas import Transaction

    require_attempt(value)
    assert isinstance(value, dict), (
        f"expected the request body as a dict (json= turns it into JSON for you), got {type(value).__name__}")
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
        if expected is None or isinstance(expected, str | bool):
            same = got is expected if expected is None or isinstance(expected, bool) else got == expected
        else:  # a number: 89.9 or 89.90, 12 or 12.0
            same = isinstance(got, int | float) and not isinstance(got, bool) and math.isclose(got, expected)
        assert same, f"{key}={got!r} does not match the story: the customer {_STORY[key]}"


# --------------------------------------------------------------------------- 4.5


def _stub_p99(buckets):
    ...


def _p99_interpolated(buckets):
    bounds = sorted(buckets)
    counts = np.array([buckets[b] for b in bounds])
    return float(np.interp(0.99 * counts[-1], counts, [b if math.isfinite(b) else bounds[-2] for b in bounds]))


def _p99_strict(buckets):
    total = max(buckets.values())
    return next(bound for bound, count in sorted(buckets.items()) if count > 0.99 * total)


def _p995(buckets):
    total = max(buckets.values())
    return next(bound for bound, count in sorted(buckets.items()) if count >= 0.995 * total)


def _p99_dict_order(buckets):
    total = max(buckets.values())
    return next(bound for bound, count in buckets.items() if count >= 0.99 * total)


def _p99_pops_inf(buckets):
    total = buckets.pop(math.inf)
    return next((bound for bound, count in sorted(buckets.items()) if count >= 0.99 * total), math.inf)


def _p99_without_inf(buckets):
    finite = sorted(b for b in buckets if math.isfinite(b))
    total = max(buckets.values())
    return next((b for b in finite if buckets[b] >= 0.99 * total), finite[-1])


# Ways a learner may write "at least 99%": trials where any two of them disagree in floating point are left out,
# so that no right answer is failed by the last bit of a product.
_AT_LEAST_99 = (lambda c, t: c >= 0.99 * t, lambda c, t: c / t >= 0.99, lambda c, t: c * 100 >= 99 * t,
                lambda c, t: 1 - c / t <= 0.01, lambda c, t: (t - c) / t <= 0.01, lambda c, t: c / t * 100 >= 99,
                lambda c, t: t - c <= 0.01 * t, lambda c, t: c >= t * 99 / 100)

_PROMETHEUS_BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


def _unambiguous(buckets: dict) -> bool:
    total = max(buckets.values())
    return all(len({rule(c, total) for rule in _AT_LEAST_99}) == 1 for c in buckets.values())


def _histogram_label(buckets: dict) -> str:
    shown = ", ".join(f"{'inf' if b == math.inf else repr(b)}: {c:g}" for b, c in buckets.items())
    return "{" + shown + "}"


@functools.cache
def _p99_trials() -> tuple[Trial, ...]:
    """Histograms the learner's p99 runs on: the story's ones, the boundaries (exactly 99%, the 99.5th
    percentile, the answer in +Inf, every request in the first bucket), keys not in order, float counts
    as Prometheus prints them, and latency samples of several shapes on several bucket layouts."""
    inf = math.inf
    planted = [
        ({0.005: 90, 0.01: 99, 0.025: 100, inf: 100}, "the story's histogram"),
        ({0.005: 50, 0.01: 98, 0.025: 98.5, inf: 100}, "only the +Inf bucket holds 99%"),
        ({0.001: 1000, 0.005: 1000, inf: 1000}, "every request in the first bucket"),
        ({0.001: 10, 0.005: 990, 0.01: 1000, inf: 1000}, "exactly 99% at 0.005"),
        ({0.005: 980, 0.01: 990, 0.025: 995, 0.05: 1000, inf: 1000}, "99% at 0.01, 99.5% at 0.025"),
        ({inf: 200, 0.05: 199, 0.01: 150, 0.005: 20}, "keys in reverse order"),
        ({0.025: 97.0, inf: 100.0, 0.005: 12.0, 0.01: 40.0, 0.1: 99.0}, "keys shuffled, counts as floats"),
        ({0.1: 0, 0.2: 0, 0.30000000000000004: 99, inf: 100}, "float bounds such as 0.1 + 0.2"),
        ({0.01: 989, 0.02: 999, inf: 1000}, "98.9% at 0.01"),
        ({0.25: 4950, 0.5: 4990, 1.0: 5000, inf: 5000}, "exactly 99% at 0.25 of 5,000"),
        ({0.005: 0, 0.01: 0, inf: 7}, "seven slow requests, all in +Inf"),
        ({0.005: 100, 0.01: 148, 0.025: 149, inf: 150}, "99% of 150 is 148.5 requests, not a whole number"),
        ({0.01: 247, 0.05: 248, inf: 250}, "99% of 250 is 247.5 requests"),
    ]
    out = [Trial(f"buckets = {_histogram_label(b)} ({why})", (b,), size=len(b) + i / 100)
           for i, (b, why) in enumerate(planted)]
    layouts = (_PROMETHEUS_BOUNDS, (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1), (0.01, 0.1, 1.0))
    shapes = (("fast", 0.004, 0.4), ("slow tail", 0.006, 1.2), ("slow", 0.04, 0.6))
    rng = np.random.default_rng(4)
    for seed in range(14):
        bounds = layouts[seed % len(layouts)]
        name, median, spread = shapes[seed % len(shapes)]
        n = int(rng.choice([100, 200, 400, 1000, 2000]))
        latencies = rng.lognormal(math.log(median), spread, n)
        buckets = {b: int((latencies <= b).sum()) for b in bounds}
        buckets[inf] = n
        items = list(buckets.items())
        if seed % 2:
            rng.shuffle(items)  # dict order is not bound order
        buckets = {b: float(c) if seed % 3 == 0 else c for b, c in items}
        if _unambiguous(buckets):
            out.append(Trial(f"buckets = {_histogram_label(buckets)} ({n:,} '{name}' requests, seed {seed})",
                             (buckets,), size=len(buckets) + 1 + seed / 100))
    return tuple(out)


def _compare_p99(got, expected, trial: Trial) -> str | None:
    buckets = trial.args[0]
    total = max(buckets.values())
    if isinstance(got, bool) or not isinstance(got, int | float | np.integer | np.floating):
        return f"your p99 returned {got!r}; return a bucket bound (a key of the dict), such as {expected!r}"
    if got == expected:
        return None
    share = f"{100 * buckets[got] / total:.1f}%" if got in buckets else "it is not a bound of these buckets"
    if got not in buckets:
        return (f"your p99 returned {got!r}, which is not a bucket bound ({share}): a histogram only knows its "
                f"bounds, so return one of them; expected {expected!r}")
    order = "" if list(buckets) == sorted(buckets) else " (in the order of the bounds: this dict's keys are not)"
    if got > expected:
        return (f"your p99 returned {got!r} ({share} of requests at most), but already {expected!r} holds "
                f"{100 * buckets[expected] / total:.1f}% (the counts are cumulative): at least 99% is enough, return "
                f"the smallest bound that reaches it{order}")
    if expected == math.inf:
        return (f"your p99 returned {got!r}, under which only {share} of requests fall: no finite bound holds 99% "
                "here, so the answer is the +Inf bound (the p99 is only known to be above the largest finite bound)")
    return (f"your p99 returned {got!r}, under which only {share} of requests fall (the buckets are cumulative); "
            f"the smallest bound with at least 99% is {expected!r} ({100 * buckets[expected] / total:.1f}%){order}")


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
        "Walk the bounds from small to large (`sorted(buckets.items())`: a dict's order is not the bounds' "
        "order); return the first whose count reaches 99% of the total.",
    ),
    reference="p99",
    stub=lambda: _stub_p99,
    trials=_p99_trials,
    cases=(
        wrong("the middle bucket", lambda: lambda buckets: sorted(buckets)[len(buckets) // 2], "the smallest bound"),
        wrong("buckets read as counts per bucket", lambda: lambda b: next(
            k for k, v in sorted(b.items()) if sum(c for kk, c in b.items() if kk <= k) >= 0.99 * sum(b.values())),
            "cumulative"),
        wrong("strictly more than 99%", lambda: _p99_strict, "at least 99% is enough"),
        wrong("interpolated between bounds", lambda: _p99_interpolated, "not a bucket bound"),
        wrong("the 99.5th percentile", lambda: _p995, "at least 99% is enough"),
        wrong("dict order taken as bound order", lambda: _p99_dict_order, "this dict's keys are not"),
        wrong("pops +Inf off the caller's dict", lambda: _p99_pops_inf, "changed its input"),
        wrong("never returns +Inf", lambda: _p99_without_inf, "the answer is the +Inf bound"),
        wrong("hard-coded from the printed histogram", lambda: lambda buckets: 0.01, "not a bucket bound"),
        wrong("99% rounded to whole requests", lambda: lambda buckets: min(
            b for b, c in buckets.items() if c >= round(0.99 * max(buckets.values()))), "at least 99%"),
        wrong("99% rounded down", lambda: lambda buckets: min(
            b for b, c in buckets.items() if c >= math.floor(0.99 * max(buckets.values()))), "at least 99%"),
        right("numpy searchsorted", lambda: lambda b: sorted(b)[int(np.searchsorted(
            np.array([b[k] for k in sorted(b)]), 0.99 * max(b.values())))]),
        right("total from the +Inf key, share as a ratio", lambda: lambda buckets: min(
            bound for bound, count in buckets.items() if count / buckets[math.inf] >= 0.99)),
        right("a pandas Series", lambda: lambda buckets: (lambda s: s[s >= 0.99 * s.max()].index[0])(
            __import__("pandas").Series(buckets).sort_index())),
    ),
)
def _check_p99(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function p99(buckets), got {type(func).__name__}"
    differential(func, get("4.5").reference(), _p99_trials(), compare=_compare_p99, what="your p99")


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


class _Inverted:
    """A planted bug of 4.3: a refactor that took the wrong column of predict_proba (1 - score)."""

    def __init__(self, model):
        self.model = model

    def scores(self, records):
        return 1 - np.asarray(self.model.scores(records))


BUGS = {"amount in cents": _AmountInCents, "missing as zero": _MissingAsZero, "score inverted": _Inverted}
# what each buggy app does, in a learner's words
_BUG_STORY = {
    "amount in cents": "it sends the amount in cents to the model, so every score is wrong",
    "score inverted": "it answers 1 - score, the other column of predict_proba, and every answer is still between 0 "
                      "and 1",
    "missing as zero": "it fills unknown values with 0 where training imputed the median",
}


@lru_cache(maxsize=4)
def _version(version: str):
    from ..serving.model import load_version

    return load_version(version)


def champion_model():
    """The champion as the server loads it (cached per champion version)."""
    from .. import registry

    return _version(str(registry.alias_version(registry.CHAMPION)))


def _served_model(bug: str | None = None, version: str | None = None):
    model = champion_model() if version is None else _version(version)
    if bug is not None:
        model = dataclasses.replace(model, scorer=BUGS[bug](dataclasses.replace(model)))
    return model


@contextlib.contextmanager
def test_client(bug: str | None = None, version: str | None = None, router=None):
    """A ready ``TestClient`` on the CardGuard app serving the champion (or registered ``version``),
    with planted ``bug`` if given (see BUGS), and ``router`` (an ``APIRouter``) included if given. Predictions
    are logged to a temporary folder, not the workspace."""
    import warnings

    from ..serving.app import create_app

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*")  # starlette's note about httpx2, not the learner's
        from fastapi.testclient import TestClient

    model = _served_model(bug, version)
    with tempfile.TemporaryDirectory(prefix="mlops-lab-check-") as tmp:
        app = create_app(load_model=lambda: model, prediction_log=f"{tmp}/predictions.jsonl")
        if router is not None:
            app.include_router(router)
        with TestClient(app) as client:
            for _ in range(200):
                if client.get("/ready").status_code == 200:
                    break
                time.sleep(0.05)
            yield client


test_client.__test__ = False  # a helper for checks and notebooks, not a pytest test


# --------------------------------------------------------------------------- 4.3


def payments(n: int = 30):
    """A few payments of the week after the course data, with some unknown values (3 of the first 30)."""
    from .. import data

    return data.simulate_transactions(n, start="2026-02-16", seed=44)


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


def _test_own_champion(client, model):
    """Ignores the ``model`` it is given and loads the champion itself."""
    from .. import registry, training
    from ..serving import to_payload

    frame = payments()
    expected = training.predict_scores(registry.load("champion"), frame)
    for body, score in zip(to_payload(frame), expected, strict=True):
        assert abs(client.post("/predict", json=body).json()["score"] - score) < 1e-6


def _test_scores_written_down(client, model):
    """The champion's scores on three payments, copied from a run and pasted in."""
    from .. import training
    from ..serving import to_payload

    frame = payments(3)
    written = [round(float(s), 8) for s in training.predict_scores(champion_model().pipeline, frame)]
    for body, score in zip(to_payload(frame), written, strict=True):
        assert abs(client.post("/predict", json=body).json()["score"] - score) < 1e-6


def _test_keys_only(client, model):
    from ..serving import to_payload

    answer = client.post("/predict", json=to_payload(payments(1))[0]).json()
    assert {"score", "decision", "threshold", "model_version"} <= answer.keys()


def _test_returns_a_verdict(client, model):
    from .. import training
    from ..serving import to_payload

    frame = payments(5)
    expected = training.predict_scores(model, frame)
    return all(abs(client.post("/predict", json=body).json()["score"] - score) < 1e-6
               for body, score in zip(to_payload(frame), expected, strict=True))


def _test_decisions_match_the_model(client, model):
    from .. import data, training
    from ..serving import to_payload

    frame = data.simulate_transactions(20, start="2026-02-16", seed=2)
    for body, score in zip(to_payload(frame), training.predict_scores(model, frame), strict=True):
        answer = client.post("/predict", json=body).json()
        assert answer["decision"] == ("flag" if score >= answer["threshold"] else "approve")


def _test_no_unknowns(client, model):
    from .. import training
    from ..serving import to_payload

    frame = payments(60)
    frame = frame[frame.avg_amount_30d.notna() & frame.distance_from_home_km.notna()].head(10)
    for body, score in zip(to_payload(frame), training.predict_scores(model, frame), strict=True):
        assert abs(client.post("/predict", json=body).json()["score"] - score) < 1e-6


def _test_with_pytest_approx(client, model):
    import pytest

    from .. import training
    from ..serving import to_payload

    frame = payments()
    served = [client.post("/predict", json=body).json()["score"] for body in to_payload(frame)]
    assert served == pytest.approx(training.predict_scores(model, frame), abs=1e-6)


def _test_batch_endpoint(client, model):
    from .. import data, training
    from ..serving import to_payload

    frame = data.simulate_transactions(30, start="2026-03-02", seed=7)
    response = client.post("/predict/batch", json={"transactions": to_payload(frame)})
    assert response.status_code == 200
    served = np.array([p["score"] for p in response.json()["predictions"]])
    np.testing.assert_allclose(served, training.predict_scores(model, frame), atol=1e-6)


def _test_one_new_customer(client, model):
    import pandas as pd

    from .. import training

    body = {**NEW_CUSTOMER}  # its 30-day average and distance are unknown
    frame = pd.DataFrame([body]).astype({"avg_amount_30d": "float64", "distance_from_home_km": "float64"})
    assert math.isclose(client.post("/predict", json=body).json()["score"],
                        float(training.predict_scores(model, frame)[0]), abs_tol=1e-9)


def _run_learner_test(func, client, model) -> tuple[str, str]:
    try:
        returned = func(client, model)
    except AssertionError as exc:
        return "failed", str(exc)[:200]
    except Exception as exc:  # noqa: BLE001 - the learner's test may raise anything
        return "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
    if isinstance(returned, bool | np.bool_):  # a verdict handed back is a verdict nobody reads
        raise AssertionError(
            f"your test returned {str(returned)[:80]} instead of asserting: pytest (and this check) only see an "
            "assert that fails, never a value a test returns. Write `assert <what must hold>, <message>`")
    return "passed", ""


def _previous_version() -> str | None:
    """A registered version other than the champion: a correct app serving it must pass the learner's test too."""
    from .. import registry

    champion = str(registry.alias_version(registry.CHAMPION))
    try:
        return next(v for v in ("1", "2") if v != champion and _version(v) is not None)
    except Exception:  # noqa: BLE001 - no other version: the champion's app alone
        return None


@exercise(
    "4.3",
    "A route test that catches a bug",
    solution='''
def test_served_score_matches_the_model(client, model):
    payments = lab.data.simulate_transactions(30, start="2026-02-16", seed=44)   # 3 with unknown values
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
        "Use the `model` your test is given: the check also runs it on a correct app serving another version.",
    ),
    reference=lambda: _solved_route_test(),
    stub=lambda: _stub_test,
    judged_on="the champion's app and a correct app serving another version (it must pass both), and apps with "
              "planted bugs, amounts in cents, an inverted score and unknown values filled with 0 (it must fail all three)",
    cases=(
        wrong("status code only", lambda: _test_status_only, "passes against a buggy app"),
        wrong("score is a probability", lambda: _test_score_is_a_probability, "passes against a buggy app"),
        wrong("decision agrees with score and threshold", lambda: _test_decision_consistent,
              "passes against a buggy app"),
        wrong("expects every payment flagged", lambda: _test_everything_flagged, "fails against the correct app"),
        wrong("loads the champion itself", lambda: _test_own_champion, "the `model` it is given"),
        wrong("scores written down", lambda: _test_scores_written_down, "the `model` it is given"),
        wrong("the answer's keys only", lambda: _test_keys_only, "passes against a buggy app"),
        wrong("returns True or False instead of asserting", lambda: _test_returns_a_verdict, "instead of asserting"),
        right("pytest.approx", lambda: _test_with_pytest_approx),
        right("the batch endpoint and numpy's assert_allclose", lambda: _test_batch_endpoint),
        right("one hand-built payment", lambda: _test_one_new_customer),
        wrong("the model's decisions, not its scores", lambda: _test_decisions_match_the_model,
              "passes against a buggy app"),
        wrong("payments without unknown values only", lambda: _test_no_unknowns, "unknown values (None)"),
    ),
)
def _check_route_test(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a test function test_...(client, model)"
    from . import NotAttempted
    from .lab03 import is_stub

    if is_stub(func):
        raise NotAttempted
    champion = champion_model().pipeline
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(test_client())
        outcome, why = _run_learner_test(func, client, champion)
        assert outcome == "passed", (
            f"your test fails against the correct app, so it would block every release: {why or 'assertion failed'}. "
            "Compare with a tolerance, and only assert what the server promises"
        )
        for bug in ("amount in cents", "score inverted", "missing as zero"):
            outcome, _ = _run_learner_test(func, stack.enter_context(test_client(bug)), champion)
            assert outcome == "failed", (
                f"your test passes against a buggy app too ({_BUG_STORY[bug]}): assert that the served score equals "
                "the model's score for the same payment"
                + (", on payments that include unknown values (None), with a tight tolerance (this skew can move a "
                   "score by less than 0.001; two correct code paths agree to 1e-6)"
                   if bug == "missing as zero" else "")
            )
        other = _previous_version()
        if other is not None:
            outcome, why = _run_learner_test(func, stack.enter_context(test_client(version=other)),
                                             _version(other).pipeline)
            assert outcome == "passed", (
                f"your test fails against a correct app that serves version {other}, given `model` = version "
                f"{other}'s pipeline: {why or 'assertion failed'}. A route test must compare with the `model` it is "
                "given, not with a model it loads itself or scores written down from one run"
            )


def _solved_route_test():
    """The solution's test, executed with ``lab`` in scope as in the notebook."""
    import mlops_lab as lab

    from . import solved

    names = solved("4.3", {**globals(), "lab": lab})
    return names["test_served_score_matches_the_model"]


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
        wrong("the unknown average sent as 0", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 0.01,
                                                        "distance_from_home_km": 0.0}, "agree on this payment"),
        wrong("NaN for the unknown value", lambda: {**NEW_CUSTOMER, "avg_amount_30d": float("nan")}, "JSON cannot carry"),
        wrong("the body as a JSON string", lambda: __import__("json").dumps(NEW_CUSTOMER), "one payment"),
        right("only the distance unknown", lambda: {**NEW_CUSTOMER, "avg_amount_30d": 61.0}),
        right("the unknown values left out", lambda: {k: v for k, v in NEW_CUSTOMER.items()
                                                      if k not in ("avg_amount_30d", "distance_from_home_km")}),
    ),
)
def _check_skewed_payment(body) -> None:
    require_attempt(body)
    assert isinstance(body, dict), f"expected one payment (a dict, the request body), got {type(body).__name__}"
    for key, value in body.items():
        assert not (isinstance(value, float) and math.isnan(value)), (
            f"{key} is NaN, which JSON cannot carry (the server would reject it): an unknown value is sent as None")
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


# --------------------------------------------------------------------------- 4.6

REASON_FIELDS = ("transaction_id", "score", "decision", "threshold", "reasons")


def _empty_router():
    from fastapi import APIRouter

    return APIRouter()


@contextlib.contextmanager
def _apps_with(router, reference):
    """Three course apps, each with the learner's router and the reference's (under /reference): one serving the
    champion, one serving it at a threshold exactly on the score of a low-scoring payment (so ``>=`` shows), and
    one whose model never finishes loading (``served_model`` answers 503 there)."""
    import warnings

    from ..serving.app import create_app

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*httpx.*")
        from fastapi.testclient import TestClient

    import logging

    champion = champion_model()
    edge = _edge_payment()
    edge_score = float(champion.scores([{k: v for k, v in edge.items() if k != "transaction_id"}])[0])
    loaders = (lambda: champion, lambda: dataclasses.replace(champion, threshold=edge_score), _never_ready)
    logging.getLogger("mlops_lab.serving").addFilter(_quiet_unready)
    with contextlib.ExitStack() as stack:
        clients = []
        for n, load in enumerate(loaders):
            app = create_app(load_model=load,
                             prediction_log=f"{stack.enter_context(tempfile.TemporaryDirectory(prefix='mlops-lab-check-'))}"
                                            f"/predictions-{n}.jsonl")
            app.include_router(router)
            app.include_router(reference, prefix="/reference")
            client = stack.enter_context(TestClient(app, raise_server_exceptions=False))
            for _ in range(200 if load is not _never_ready else 0):
                if client.get("/ready").status_code == 200:
                    break
                time.sleep(0.05)
            clients.append(client)
        yield clients[0], clients[1], clients[2], edge_score


_UNREADY = "the model is still loading (an app the check keeps unready on purpose)"


def _never_ready():
    from ..errors import LabError

    raise LabError(_UNREADY)


def _quiet_unready(record) -> bool:
    """The server logs why it is not ready; that one is on purpose, not news for the learner."""
    return _UNREADY not in record.getMessage()


@functools.cache
def _trial_payments():
    """Payments from several weeks and seeds (unknown values among them), as request bodies."""
    from .. import data
    from ..serving.client import to_payload

    frames = [data.simulate_transactions(8, start=start, seed=seed)
              for start, seed in (("2026-02-16", 44), ("2026-03-02", 7), ("2026-01-12", 91))]
    bodies = [body for frame in frames for body in to_payload(frame)]
    bodies[3] = {k: v for k, v in bodies[3].items() if k != "transaction_id"}  # a caller that sends no id
    for n in (5, 13):  # unknown values left out rather than sent as null (the contract allows both)
        bodies[n] = {k: v for k, v in bodies[n].items() if k not in ("avg_amount_30d", "distance_from_home_km")}
    return tuple(bodies)


@functools.cache
def _edge_payment() -> dict:
    """The lowest-scoring of the trial payments with every value known: the second app's threshold sits
    exactly on its score, so every other payment of the trials is flagged there and shows its reasons."""
    bodies = [b for b in _trial_payments() if None not in b.values() and "transaction_id" in b and len(b) == 11]
    champion = champion_model()
    scores = champion.scores([{k: v for k, v in b.items() if k != "transaction_id"} for b in bodies])
    return dict(bodies[int(np.argmin(scores))])


def _refused_payments(base: dict) -> list[tuple[str, dict | list]]:
    """Bodies the contract refuses, one rule each."""
    missing = {k: v for k, v in base.items() if k != "channel"}
    return [
        ("a refund sent as a negative amount", {**base, "amount": -12.0}),
        ("a field the contract does not know (coupon)", {**base, "coupon": "XMAS"}),
        ("no channel", missing),
        ("hour 24", {**base, "hour": 24}),
        ("hour 3.5", {**base, "hour": 3.5}),
        ("the amount as a string", {**base, "amount": "89.90"}),
        ("an unknown merchant category", {**base, "merchant_category": "casino"}),
        ("new_device as 'yes'", {**base, "new_device": "yes"}),
        ("an unknown amount (amount may not be null)", {**base, "amount": None}),
        ("a transaction_id of 101 characters", {**base, "transaction_id": "x" * 101}),
        ("an empty body", {}),
        ("a list of payments", [base]),
    ]


def _resolve(schema: dict, spec: dict) -> dict:
    ref = schema.get("$ref")
    if ref:
        return _resolve(spec["components"]["schemas"][ref.rsplit("/", 1)[1]], spec)
    for key in ("allOf", "anyOf"):
        if key in schema and len(schema[key]) == 1:
            return _resolve(schema[key][0], spec)
    return schema


def _check_openapi(client) -> None:
    from ..serving.schemas import Transaction

    spec = client.get("/openapi.json").json()
    operation = spec["paths"].get("/predict/reason", {}).get("post")
    assert operation is not None, "POST /predict/reason is not in the app's /openapi.json"
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    assert body, ("your route documents no request body: declare the payment as a parameter typed with the contract's "
                  "model, `payment: Transaction`, so FastAPI reads, validates and documents it")
    fields = set(_resolve(body, spec).get("properties", {}))
    assert fields, ("your route takes its body as a plain `dict`, which FastAPI does not validate: type the payment "
                    "as the contract's `Transaction` (`payment: Transaction`), so a bad one gets the app's 422")
    assert fields != {"payment"}, ("your route expects the payment wrapped in {\"payment\": {...}} (Body(embed=True)): "
                                   "take the payment itself as the body, `payment: Transaction`")
    assert fields == set(Transaction.model_fields), (
        f"the request body your route documents has the fields {sorted(fields)}, not the contract's: type the payment "
        "as `Transaction` itself (lab.serving.Transaction), not a model of your own")
    other = sorted(code for code in operation.get("responses", {}) if code.startswith("2") and code != "200")
    assert "200" in operation.get("responses", {}) or not other, (
        f"your route answers {other[0]}, and callers of /predict/reason expect 200 as from /predict: a score is not a "
        "created resource (leave status_code out, or set it to 200)")
    ok = operation.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {}).get("schema", {})
    props = set(_resolve(ok, spec).get("properties", {})) if ok else set()
    missing = [f for f in REASON_FIELDS if f not in props]
    assert not missing, (
        "your route's 200 answer documents " + (f"only {sorted(props)}" if props else "no schema") +
        f" in /openapi.json (missing: {', '.join(missing)}): give it a response model, a pydantic class with "
        "those fields, as `response_model=Reason` (or the return annotation `-> Reason`)")
    assert "422" in operation.get("responses", {}), (
        "your route does not document its 422 answer: it gets one from FastAPI when the payment is a typed body "
        "parameter (`payment: Transaction`)")


def _compare_answers(got, expected, on_edge: bool) -> str | None:
    if got.status_code != expected.status_code:
        what = got.text[:200]
        if got.status_code == 500:
            what = ("an internal error: your route raised an exception, or its answer does not fit its own response "
                    "model (FastAPI checks the answer too)")
        hint = ""
        if expected.status_code == 503:
            hint = (": the app's model has not loaded yet, and `Depends(served_model)` says so with a 503; take the model "
                    "from it rather than from the app's state")
        return (f"your route answered {got.status_code} ({what}) where the reference answers {expected.status_code}"
                + hint)
    if expected.status_code != 200:
        fields = sorted(e["field"] for e in got.json().get("errors", []))
        want = sorted(e["field"] for e in expected.json().get("errors", []))
        if fields != want:
            return f"your 422 names the fields {fields}, the contract's rules name {want}"
        return None
    answer, reference = got.json(), expected.json()
    missing = [f for f in REASON_FIELDS if f not in answer]
    if missing:
        return f"your answer {_short(answer)} lacks {', '.join(missing)}"
    if answer["transaction_id"] != reference["transaction_id"]:
        return (f"transaction_id is {answer['transaction_id']!r}, expected {reference['transaction_id']!r}: echo the "
                "caller's id (None when it sent none)")
    if not isinstance(answer["score"], float) or abs(answer["score"] - reference["score"]) > 1e-9:
        return (f"score is {answer['score']!r}, the served model's is {reference['score']!r}: score with the model the "
                "app serves (`model = Depends(served_model)`, then `model.scores([features])`), unrounded")
    if not isinstance(answer["threshold"], float) or answer["threshold"] != reference["threshold"]:
        return f"threshold is {answer['threshold']!r}, the served model's is {reference['threshold']!r} (`model.threshold`)"
    if answer["decision"] != reference["decision"]:
        on_edge = on_edge and reference["score"] == reference["threshold"]
        return (f"decision is {answer['decision']!r}, expected {reference['decision']!r} for score "
                f"{reference['score']:.6g} and threshold {reference['threshold']:.6g}"
                + (": a score exactly on the threshold is flagged (score >= threshold)" if on_edge else
                   ": 'flag' when score >= model.threshold, else 'approve'"))
    if not isinstance(answer["reasons"], list):
        return (f"reasons is {answer['reasons']!r}, expected the list {reference['reasons']!r}"
                + (" ([] for an approved payment)" if reference["decision"] == "approve" else ""))
    if list(answer["reasons"]) != list(reference["reasons"]):
        why = ("an approved payment has no reasons: []" if reference["decision"] == "approve" else
               "a flagged payment lists reason_codes(features), in their order")
        return f"reasons are {answer['reasons']!r}, expected {reference['reasons']!r}: {why}"
    return None


@exercise(
    "4.6",
    "Write a route: POST /predict/reason",
    solution='''
from typing import Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from mlops_lab.serving import Transaction, reason_codes, served_model


class Reason(BaseModel):
    transaction_id: str | None
    score: float
    decision: Literal["flag", "approve"]
    threshold: float
    reasons: list[str]


router = APIRouter()


@router.post("/predict/reason", response_model=Reason, summary="Score one payment and say why it is flagged")
def predict_reason(payment: Transaction, model=Depends(served_model)):
    features = payment.model_dump(exclude={"transaction_id"})
    score = float(model.scores([features])[0])
    flagged = score >= model.threshold
    return Reason(transaction_id=payment.transaction_id, score=score, decision="flag" if flagged else "approve",
                  threshold=model.threshold, reasons=reason_codes(features) if flagged else [])
''',
    hints=(
        "A route is a function under `@router.post(path, response_model=...)`; a parameter typed with a pydantic "
        "model (`payment: Transaction`) is the JSON body, validated by FastAPI (a bad one gets the app's 422).",
        "`model=Depends(served_model)` hands the route the model the app serves: `model.scores([features])` gives the "
        "score (features: `payment.model_dump(exclude={'transaction_id'})`), `model.threshold` the threshold.",
        "'flag' when score >= threshold; reasons = reason_codes(features) for a flagged payment, [] otherwise.",
    ),
    reference="router",
    stub=_empty_router,
    cases=(
        wrong("the body as a plain dict", lambda: _route_variant(body="dict"), "as a plain `dict`"),
        wrong("no response model", lambda: _route_variant(response_model=False), "give it a response model"),
        wrong("a GET route", lambda: _route_variant(method="get"), "POST /predict/reason"),
        wrong("another path", lambda: _route_variant(path="/reason"), "POST /predict/reason"),
        wrong("score > threshold", lambda: _route_variant(strict=True), "exactly on the threshold is flagged"),
        wrong("reasons for every payment", lambda: _route_variant(reasons="always"), "an approved payment has no reasons"),
        wrong("no reasons ever", lambda: _route_variant(reasons="never"), "a flagged payment lists"),
        wrong("the score rounded", lambda: _route_variant(rounded=True), "unrounded"),
        wrong("a threshold of 0.5", lambda: _route_variant(threshold=0.5), "threshold is 0.5"),
        wrong("the id not echoed", lambda: _route_variant(echo_id=False), "missing: transaction_id"),
        wrong("the model read from the app's state (blind attack)", lambda: _route_variant(from_state=True),
              "`Depends(served_model)` says so with a 503"),
        wrong("features without the unknown values a caller left out (blind attack)",
              lambda: _route_variant(unset=True), "its unknown values left out"),
        wrong("201 Created (blind attack)", lambda: _route_variant(status_code=201), "a score is not a created resource"),
        right("async, a return annotation, Annotated dependency, a dict returned",
              lambda: _route_variant(style="annotated")),
        right("a router with a prefix and extra fields in the answer", lambda: _route_variant(style="prefix")),
    ),
)
def _check_reason_route(router) -> None:
    require_attempt(router)
    from fastapi import APIRouter, FastAPI

    if isinstance(router, FastAPI):
        raise AssertionError("this is a whole app; write an APIRouter (`router = APIRouter()`) and put your route on "
                             "it: the course's app includes it with app.include_router(router)")
    assert isinstance(router, APIRouter), f"expected an APIRouter, got {type(router).__name__}"
    routes = [(m, r.path) for r in router.routes for m in sorted(getattr(r, "methods", None) or ())]
    if not routes:
        raise NotAttempted
    assert ("POST", "/predict/reason") in routes, (
        f"your router has {', '.join(f'{m} {p}' for m, p in routes)}; the task asks for POST /predict/reason")
    reference = get("4.6").reference()
    with _apps_with(router, reference) as (client, edge_client, loading_client, edge_score):
        _check_openapi(client)
        edge = _edge_payment()
        trials = [(f"payment {b.get('transaction_id', '(sent without an id)')}" +
                   (" (with unknown values)" if None in b.values() else "") +
                   (" (its unknown values left out)" if "avg_amount_30d" not in b else ""), b, c, False)
                  for b in _trial_payments() for c in (client, edge_client)]
        trials.append(("a payment sent while the app's model is still loading", _NEW_CUSTOMER_BODY, loading_client,
                       False))
        trials.insert(0, (f"payment {edge['transaction_id']}, scored exactly on the threshold of an app serving the "
                          f"model at threshold {edge_score:.6g}", edge, edge_client, True))
        trials[1:1] = [(label, body, client, False) for label, body in _refused_payments(_NEW_CUSTOMER_BODY)]
        for label, body, app_client, on_edge in trials:
            got = app_client.post("/predict/reason", json=body)
            expected = app_client.post("/reference/predict/reason", json=body)
            problem = _compare_answers(got, expected, on_edge)
            if problem:
                raise AssertionError(f"with {label}: {problem}")


_NEW_CUSTOMER_BODY = {"transaction_id": "new-customer-1", **NEW_CUSTOMER}


def _route_variant(body: str = "model", response_model: bool = True, method: str = "post", path: str = "/predict/reason",
                   strict: bool = False, reasons: str = "flagged", rounded: bool = False, threshold: float | None = None,
                   echo_id: bool = True, style: str = "plain", status_code: int = 200, unset: bool = False,
                   from_state: bool = False):
    """The kept answers: the reference route with one thing changed."""
    from typing import Annotated, Literal

    from fastapi import APIRouter, Depends
    from pydantic import BaseModel

    from ..serving.app import LoadedModel, reason_codes, served_model
    from ..serving.schemas import Transaction

    fields = {"transaction_id": (str | None), "score": float, "decision": Literal["flag", "approve"],
              "threshold": float, "reasons": list[str]}
    if not echo_id:
        fields.pop("transaction_id")
    if style == "prefix":
        fields["model_version"] = str
    Reason = type("Reason", (BaseModel,), {"__annotations__": fields})

    def answer(payment, model):
        if body == "dict":
            payment = Transaction.model_construct(**{"transaction_id": None, **payment})
        features = {k: v for k, v in payment.__dict__.items() if k != "transaction_id"} if body == "dict" else \
            payment.model_dump(exclude={"transaction_id"}, exclude_unset=unset)
        score = float(model.scores([features])[0])
        cut = model.threshold if threshold is None else threshold
        flagged = score > cut if strict else score >= cut
        out = {"score": round(score, 3) if rounded else score, "decision": "flag" if flagged else "approve",
               "threshold": cut,
               "reasons": reason_codes(features) if (reasons == "always" or (reasons == "flagged" and flagged)) else []}
        if echo_id:
            out["transaction_id"] = payment.transaction_id
        if style == "prefix":
            out["model_version"] = model.version
        return out

    if style == "prefix":
        router = APIRouter(prefix="/predict")
        path = "/reason"
    else:
        router = APIRouter()
    kwargs = {"response_model": Reason} if response_model and style != "annotated" else {}
    if status_code != 200:
        kwargs["status_code"] = status_code
    decorate = getattr(router, method)(path, **kwargs)
    if from_state:
        from fastapi import Request

        def route(payment, request):
            return answer(payment, request.app.state.cardguard["live"].model)
        route.__annotations__ = {"payment": Transaction, "request": Request}
    elif style == "annotated":
        async def route(payment, model):
            return answer(payment, model)
        route.__annotations__ = {"payment": Transaction, "model": Annotated[LoadedModel, Depends(served_model)],
                                 "return": Reason}
    else:
        def route(payment, model=Depends(served_model)):
            return answer(payment, model)
        # this module postpones its annotations (strings FastAPI would look up here): give it the objects
        route.__annotations__ = {"payment": dict if body == "dict" else Transaction}
    decorate(route)
    return router
