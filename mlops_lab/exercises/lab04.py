"""Lab 04: Serving. Read a 422, send a payment with a missing value, find the p99 from a histogram."""

from __future__ import annotations

import math

from ..serving import client as serving_client
from . import exercise, require_attempt


@exercise(
    "4.1",
    "Read the 422",
    solution='rejected_field = response.json()["errors"][0]["field"]',
    hints=(
        "`response.json()` is a dict with `detail` and a list `errors`.",
        "Each error has a `field`, a `rule` and a `message`; take the first error's field.",
    ),
    reference=lambda: "amount",
)
def _check_rejected_field(value) -> None:
    require_attempt(value)
    assert isinstance(value, str), (
        f"expected the name of the field (a string), got {type(value).__name__}: look inside response.json()['errors']"
    )
    assert value == "amount", f"{value!r} is not the field the server rejected; read the `field` of the first error"


def _reference_new_customer() -> dict:
    return {"amount": 89.9, "merchant_category": "online_retail", "channel": "online", "hour": 21,
            "customer_age_days": 12, "avg_amount_30d": None, "tx_count_24h": 1, "distance_from_home_km": None,
            "country_mismatch": False, "new_device": True}


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
        "JSON has no NaN. An unknown value is sent as null, which is None in Python.",
    ),
    reference=_reference_new_customer,
)
def _check_new_customer(value) -> None:
    from pydantic import ValidationError

    from ..serving.schemas import Transaction

    require_attempt(value)
    assert isinstance(value, dict), f"expected the request body as a dict, got {type(value).__name__}"
    average = value.get("avg_amount_30d", "missing")
    assert not (isinstance(average, float) and math.isnan(average)), (
        "avg_amount_30d is NaN, which JSON cannot carry (the server would reject it): send None, which becomes null"
    )
    try:
        Transaction.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise AssertionError(f"the server would reject it: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    assert value.get("customer_age_days", 99) < 30, "this customer opened the account 12 days ago: customer_age_days=12"
    assert average is None, "a customer of 12 days has no 30-day average yet: avg_amount_30d should be None"


def _reference_p99(buckets):
    return serving_client.quantile_from_buckets(buckets, 0.99)


@exercise(
    "4.3",
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
)
def _check_p99(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function p99(buckets) that returns a number of seconds"
    cases = [
        ({0.005: 90, 0.01: 99, 0.025: 100, math.inf: 100}, 0.01, "99 of 100 requests took at most 0.01 s"),
        ({0.005: 50, 0.01: 98, 0.025: 98.5, math.inf: 100}, math.inf, "only 98.5% fit under 0.025 s"),
        ({0.001: 1000, 0.005: 1000, math.inf: 1000}, 0.001, "every request took at most 0.001 s"),
    ]
    for buckets, expected, why in cases:
        got = func(dict(buckets))
        require_attempt(got)
        assert got == expected, f"p99({buckets}) returned {got!r}, expected {expected} because {why}"
