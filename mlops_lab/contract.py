"""CardGuard's data contract: one declaration of every column (type, role, allowed values),
from which batch validation, the serving API schemas, the CI data stage and the drift monitor
are derived. It has a module of its own so that serving and monitoring need not import the
simulator; ``mlops_lab.data`` re-exports these names for the labs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pandas as pd

from .errors import LabError

# --------------------------------------------------------------------------- the data contract


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str  # pandas dtype the column has in a valid batch
    role: str  # "id", "timestamp", "feature", "label", "metadata"
    kind: str  # "numeric", "categorical", "boolean", "text", "datetime"
    description: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None


MERCHANT_CATEGORIES = (
    "grocery", "fuel", "restaurants", "travel", "electronics", "online_retail", "gaming", "jewelry",
)
CHANNELS = ("chip", "contactless", "online")

CONTRACT_VERSION = "1.0"
CONTRACT: tuple[Column, ...] = (
    Column("transaction_id", "str", "id", "text", "Unique id of the payment."),
    Column("timestamp", "datetime64[us]", "timestamp", "datetime", "When the payment was authorised (UTC)."),
    Column("amount", "float64", "feature", "numeric", "Payment amount in euros.", min=0.01, max=50_000),
    Column("merchant_category", "str", "feature", "categorical", "What the merchant sells.",
           categories=MERCHANT_CATEGORIES),
    Column("channel", "str", "feature", "categorical", "How the card was used.", categories=CHANNELS),
    Column("hour", "int64", "feature", "numeric", "Hour of day of the payment, 0-23 (UTC).", min=0, max=23),
    Column("customer_age_days", "int64", "feature", "numeric", "Days since the card account was opened.",
           min=0, max=36_500),
    Column("avg_amount_30d", "float64", "feature", "numeric",
           "The customer's average payment over the last 30 days; empty for accounts under 30 days old.",
           nullable=True, min=0.01, max=50_000),
    Column("tx_count_24h", "int64", "feature", "numeric", "Payments on this card in the previous 24 hours.",
           min=0, max=1_000),
    Column("distance_from_home_km", "float64", "feature", "numeric",
           "Distance between the merchant and the cardholder's home; empty when geolocation failed.",
           nullable=True, min=0, max=20_100),
    Column("country_mismatch", "boolean", "feature", "boolean", "Card issued in another country than the merchant's."),
    Column("new_device", "boolean", "feature", "boolean", "First payment from this device or terminal for this card."),
    Column("is_fraud", "int64", "label", "numeric", "1 if the payment was fraud (known only later).", min=0, max=1),
    Column("label_available_at", "datetime64[us]", "metadata", "datetime",
           "When the label becomes known: chargebacks arrive days to weeks after the payment."),
)


def contract_columns(role: str | None = None) -> list[Column]:
    return [c for c in CONTRACT if role is None or c.role == role]


def feature_columns() -> list[str]:
    return [c.name for c in contract_columns("feature")]


def contract_hash() -> str:
    """A short hash of the contract's definition: models record it, serving checks it."""
    text = json.dumps([asdict(c) for c in CONTRACT], sort_keys=True)
    return hashlib.sha256(f"{CONTRACT_VERSION}:{text}".encode()).hexdigest()[:12]


def describe_contract() -> pd.DataFrame:
    """The contract as a table, for a notebook."""
    rows = []
    for c in CONTRACT:
        if c.categories:
            allowed = ", ".join(c.categories)
        elif c.min is not None:
            allowed = f"{c.min:g} to {c.max:g}"
        else:
            allowed = ""
        rows.append({"column": c.name, "role": c.role, "type": c.kind, "nullable": c.nullable,
                     "allowed": allowed, "meaning": c.description})
    return pd.DataFrame(rows).set_index("column")


def with_contract_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast the contract's columns present in ``frame`` to their contract dtypes (in place)."""
    for c in CONTRACT:
        if c.name not in frame:
            continue
        if c.kind == "boolean":
            frame[c.name] = frame[c.name].astype("boolean")
        elif c.dtype == "str":
            frame[c.name] = frame[c.name].astype("str")
        else:
            frame[c.name] = frame[c.name].astype(c.dtype)
    return frame



# --------------------------------------------------------------------------- validation

_KIND_TEST = {
    "numeric": (pd.api.types.is_numeric_dtype, "must be numeric"),
    "categorical": (lambda s: pd.api.types.is_string_dtype(s) or isinstance(s.dtype, pd.CategoricalDtype),
                    "must be text (str)"),
    "text": (pd.api.types.is_string_dtype, "must be text (str)"),
    "boolean": (pd.api.types.is_bool_dtype, "must be boolean (True/False)"),
    "datetime": (pd.api.types.is_datetime64_any_dtype, "must be a datetime"),
}


def _schema(columns: list[Column]):
    import pandera.pandas as pa

    spec = {}
    for c in columns:
        test, words = _KIND_TEST[c.kind]
        if c.name in ("hour", "customer_age_days", "tx_count_24h", "is_fraud"):
            test, words = pd.api.types.is_integer_dtype, "must be whole numbers (int)"
        checks = [pa.Check(lambda s, t=test: bool(t(s)), name="type", error=f"type: {words}")]
        if c.min is not None:
            checks.append(pa.Check.in_range(c.min, c.max, error=f"range: must be between {c.min:g} and {c.max:g}"))
        if c.categories:
            checks.append(pa.Check.isin(list(c.categories), error=f"category: must be one of {', '.join(c.categories)}"))
        spec[c.name] = pa.Column(None, checks=checks, nullable=c.nullable, required=True)
    return pa.DataFrameSchema(spec, strict=True, name="CardGuard data contract v" + CONTRACT_VERSION)


@dataclass
class ValidationReport:
    """Every violation of the data contract in one batch: column, rule, count, a few offending values."""

    rows: int
    violations: pd.DataFrame

    @property
    def ok(self) -> bool:
        return self.violations.empty

    def __str__(self) -> str:
        if self.ok:
            return f"Batch of {self.rows} rows: valid against data contract v{CONTRACT_VERSION}."
        lines = [f"Batch of {self.rows} rows: {len(self.violations)} violation(s) of data contract v{CONTRACT_VERSION}:"]
        for v in self.violations.itertuples():
            if pd.notna(v.count):
                detail = f" ({int(v.count)} rows; e.g. {v.examples})"
            else:
                detail = f" (column has {v.examples})" if v.examples else ""
            lines.append(f"  - {v.column}: {v.rule}{detail}")
        return "\n".join(lines)

    __repr__ = __str__

    def raise_if_invalid(self) -> None:
        if not self.ok:
            raise LabError(f"{self}\nFix these columns upstream (or drop the bad rows) and validate again.")


def _rule_text(check: str) -> str:
    if check == "not_nullable":
        return "must not be empty (NaN/None)"
    if check == "column_in_schema":
        return "is not in the data contract (unexpected column)"
    if check == "column_in_dataframe":
        return "is missing (required by the data contract)"
    for prefix in ("type: ", "range: ", "category: "):
        if check.startswith(prefix):
            return check[len(prefix):]
    return check


def validate_batch(batch: pd.DataFrame, columns: list[str] | None = None) -> ValidationReport:
    """Check ``batch`` against the data contract and report *every* violation (never just the first).

    ``columns`` restricts the contract to some columns (serving checks features only).
    """
    import pandera.pandas as pa

    if not isinstance(batch, pd.DataFrame):
        raise LabError(f"validate_batch expects a pandas DataFrame, got {type(batch).__name__}.")
    contract = [c for c in CONTRACT if columns is None or c.name in columns]
    try:
        _schema(contract).validate(batch, lazy=True)
        return ValidationReport(len(batch), pd.DataFrame(columns=["column", "rule", "count", "examples"]))
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases.copy()
    schema_level = cases["check"].isin(["column_in_schema", "column_in_dataframe"])
    cases.loc[schema_level, "column"] = cases.loc[schema_level, "failure_case"]
    cases["rule"] = cases["check"].astype(str).map(_rule_text)
    # object dtype: on an empty batch pandera's failure_case column can be bool, and writing
    # the "dtype ..." text into it raised TypeError
    cases["failure_case"] = cases["failure_case"].astype(object)
    is_type = cases["check"].astype(str).str.startswith("type: ")
    for idx in cases.index[is_type]:
        cases.at[idx, "failure_case"] = f"dtype {batch[cases.at[idx, 'column']].dtype}"
    order = {c.name: i for i, c in enumerate(CONTRACT)}
    rows = []
    for (column, rule), group in cases.groupby(["column", "rule"], sort=False, dropna=False):
        values = list(dict.fromkeys(repr(v) if not isinstance(v, str) else v for v in group["failure_case"]))
        row_level = group["index"].notna().any()  # else the rule is about the whole column
        rows.append({"column": column, "rule": rule, "count": len(group) if row_level else None,
                     "examples": ", ".join(values[:3]) if row_level or values[0].startswith("dtype") else ""})
    report = pd.DataFrame(rows)
    report["_order"] = report["column"].map(order).fillna(len(order))
    report = report.sort_values(["_order", "rule"]).drop(columns="_order").reset_index(drop=True)
    return ValidationReport(len(batch), report)
