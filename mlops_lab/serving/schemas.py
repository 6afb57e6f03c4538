"""Request and response schemas, generated from the data contract (the single source).

Finite numbers only, unknown fields rejected, categories checked, integers strict: every
rule a 422 can name comes from ``mlops_lab.contract.CONTRACT``."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt, create_model

from .. import contract

MAX_BATCH = 1_000


def _integral(value):
    # JSON (and JSON Schema) does not tell 3 from 3.0: accept a whole float for an integer, never 3.5 or "3"
    return int(value) if type(value) is float and value.is_integer() else value


Integer = Annotated[StrictInt, BeforeValidator(_integral)]


def _field(column: contract.Column):
    constraints = {"description": column.description}
    if column.kind == "numeric":
        if column.dtype.startswith("int"):
            kind = Integer
        else:
            kind = float
            constraints.update(allow_inf_nan=False, strict=True)  # "12.5" as a string is a wrong type
        if column.min is not None:
            constraints.update(ge=column.min, le=column.max)
    elif column.kind == "categorical":
        kind = Literal[tuple(column.categories)]  # type: ignore[valid-type]
    elif column.kind == "boolean":
        kind = StrictBool
    else:  # pragma: no cover - the contract has no other feature kinds
        kind = str
    if column.nullable:
        return (Optional[kind], Field(default=None, **constraints))  # noqa: UP045
    return (kind, Field(..., **constraints))


_EXAMPLE = {
    "transaction_id": "tx-example-1", "amount": 42.5, "merchant_category": "grocery", "channel": "chip",
    "hour": 14, "customer_age_days": 830, "avg_amount_30d": 55.1, "tx_count_24h": 2,
    "distance_from_home_km": 3.2, "country_mismatch": False, "new_device": False,
}

Transaction = create_model(
    "Transaction",
    __config__=ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]}),
    __doc__="One card payment, as the data contract defines its features.",
    transaction_id=(Optional[str], Field(default=None, max_length=100,  # noqa: UP045
                                         description="Your id for the payment (echoed back and logged).")),
    **{c.name: _field(c) for c in contract.contract_columns("feature")},
)


class Prediction(BaseModel):
    transaction_id: str | None
    request_id: str
    score: float = Field(description="Probability that the payment is fraud.")
    decision: Literal["flag", "approve"] = Field(description="'flag' when score >= threshold.")
    threshold: float
    model_version: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    transactions: list[Transaction] = Field(..., min_length=1, max_length=MAX_BATCH)  # type: ignore[valid-type]


class BatchPrediction(BaseModel):
    predictions: list[Prediction]


class RolloutInfo(BaseModel):
    mode: Literal["off", "shadow", "canary"] = Field(
        description="off: the champion alone; shadow: the candidate scores every payment but never answers; "
                    "canary: the candidate answers `share` of payments (chosen by a hash of transaction_id).")
    share: float = Field(ge=0, le=1, description="Share of payments the candidate answers (0 unless canary).")
    candidate_version: str | None


class VersionInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    name: str
    version: str
    alias: str | None
    source: str
    threshold: float
    contract_version: str
    contract_hash: str
    data_fingerprint: str | None
    rollout: RolloutInfo


class FieldError(BaseModel):
    field: str = Field(description="Where: a field name, or a path such as 'dataframe_records[3].amount'.")
    rule: str = Field(description="Which rule failed, e.g. 'missing', 'extra_forbidden', 'finite_number'.")
    message: str
    input: str | int | float | bool | None = Field(default=None, description="The rejected value, when short.")


class ProblemDetail(BaseModel):
    """Every 4xx and 503 answer: one line saying what is wrong and what to do, and the fields."""

    detail: str
    errors: list[FieldError] | None = None


class InvocationsResponse(BaseModel):
    predictions: list[list[float]] = Field(description="One [P(legitimate), P(fraud)] per row, as "
                                                       "`mlflow models serve` answers for this model.")


class ReloadResult(BaseModel):
    old_version: str | None
    new_version: str


class Status(BaseModel):
    model_config = ConfigDict(protected_namespaces=())
    status: str
    model_version: str | None = None
