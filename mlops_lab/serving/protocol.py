"""Reading request bodies: bounded, strict JSON for every endpoint, and MLflow's scoring protocol
for ``/invocations`` (``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, CSV).

Every format ends as a list of rows that goes through the same contract validation as ``/predict``,
so a bad row gets the same 422 naming the row and the field, whichever format carried it."""

from __future__ import annotations

import csv
import io
import json
import math
import re

from pydantic import TypeAdapter, ValidationError
from pydantic_core import from_json

from .. import contract
from .schemas import MAX_BATCH, Transaction

FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
_rows = TypeAdapter(list[Transaction])  # type: ignore[valid-type]
_NULLABLE = {c.name for c in contract.contract_columns("feature") if c.nullable}
_KINDS = {c.name: (c.kind, c.dtype) for c in contract.contract_columns("feature")}
MAX_INPUT_ECHO = 80  # characters of a rejected value echoed back in a 422


class Problem(Exception):
    """A request the server answers with a 4xx: status, a one-line detail, and field errors."""

    def __init__(self, status: int, detail: str, errors: list[dict] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.errors = status, detail, errors


def problem_body(status: int, detail: str, errors: list[dict] | None = None) -> bytes:
    """The JSON of an error answer. ASCII-only (a lone surrogate in echoed input stays escaped, never
    a 500), no NaN (JSON has none)."""
    body: dict = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return json.dumps(body, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def field_errors(errors, prefix: str = "") -> list[dict]:
    """pydantic errors as {field, rule, message, input}: the field as a path (``rows[3].amount``);
    the rejected value echoed only when it is a short scalar that JSON can carry."""
    out = []
    for e in errors:
        loc = [p for p in e.get("loc", ()) if p != "body"]
        path = prefix
        for part in loc:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        item = {"field": path or "body", "rule": e.get("type", "invalid"), "message": e.get("msg", "")}
        value = e.get("input")
        if "input" in e and e.get("type") != "missing" and isinstance(value, str | int | float | bool):
            if isinstance(value, float) and not math.isfinite(value):
                value = str(value)
            elif isinstance(value, str) and len(value) > MAX_INPUT_ECHO:
                value = value[:MAX_INPUT_ECHO] + "..."
            item["input"] = value
        out.append(item)
    return out


def json_problem(exc: ValueError | ValidationError) -> Problem:
    """400 for a body that is not JSON (bad UTF-8, a lone surrogate, nesting deeper than the parser's
    limit, a syntax error), with the parser's reason and position."""
    if isinstance(exc, ValidationError):
        reason = exc.errors()[0].get("msg", "invalid JSON")
    else:
        reason = str(exc)
    reason = reason.removeprefix("Invalid JSON: ")
    return Problem(400, f"malformed JSON: {reason}. Send one JSON object, UTF-8 encoded",
                   [{"field": "body", "rule": "json_invalid", "message": reason}])


def validate_json(validator, body: bytes, prefix: str = ""):
    """Parse and validate a body in one pass (pydantic-core's own JSON parser: it rejects lone
    surrogates, invalid UTF-8 and deep nesting as invalid JSON)."""
    try:
        return validator.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors()
        if errors and errors[0].get("type") == "json_invalid":
            raise json_problem(exc) from None
        raise Problem(422, "the request does not match the CardGuard data contract",
                      field_errors(errors, prefix)) from None


def parse_json(body: bytes):
    try:
        return from_json(body)
    except ValueError as exc:
        raise json_problem(exc) from None


# --------------------------------------------------------------------------- MLflow's formats


def _format_error(key: str, message: str) -> Problem:
    return Problem(422, f"{key}: {message}", [{"field": key, "rule": "format", "message": message}])


def _nan_is_missing(rows: list) -> list:
    """pandas writes a missing value as NaN (MLflow's client sends DataFrames that way): in a
    nullable column it means missing. Anywhere else NaN stays, and the contract rejects it."""
    for row in rows:
        if isinstance(row, dict):
            for name in _NULLABLE:
                value = row.get(name)
                if isinstance(value, float) and math.isnan(value):
                    row[name] = None
    return rows


def _split(value) -> list:
    if not isinstance(value, dict):
        raise _format_error("dataframe_split", f"expected an object with 'columns' and 'data' "
                                               f"(DataFrame.to_dict(orient='split')), got {type(value).__name__}")
    unknown = set(value) - {"columns", "data", "index"}
    if unknown or "columns" not in value or "data" not in value:
        raise _format_error("dataframe_split", "expected the keys 'columns' and 'data' (and optionally 'index')"
                            + (f"; unknown: {sorted(unknown)}" if unknown else ""))
    columns, data = value["columns"], value["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise _format_error("dataframe_split.columns", "expected a list of column names")
    if len(set(columns)) != len(columns):
        raise _format_error("dataframe_split.columns", "column names repeat")
    if not isinstance(data, list) or not all(isinstance(r, list) and len(r) == len(columns) for r in data):
        raise _format_error("dataframe_split.data", f"expected a list of rows, each a list of {len(columns)} "
                                                    "values (one per column)")
    index = value.get("index")
    if index is not None and (not isinstance(index, list) or len(index) != len(data)):
        raise _format_error("dataframe_split.index", "expected one index entry per row of 'data'")
    return [dict(zip(columns, row, strict=True)) for row in data]


def _columns(key: str, value: dict) -> list:
    """``{"column": [values...]}`` (``DataFrame.to_dict(orient='list')``), MLflow's columnar ``inputs``."""
    lengths = {len(v) if isinstance(v, list) else -1 for v in value.values()}
    if -1 in lengths or len(lengths) != 1:
        raise _format_error(key, "expected {column: [values]} with one list of the same length per column")
    names = list(value)
    return [dict(zip(names, row, strict=True)) for row in zip(*value.values(), strict=True)]


def rows_from_json(body: bytes) -> tuple[str, list]:
    """The rows of an MLflow JSON request, and the format key they came in."""
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise _format_error("body", f"expected a JSON object with exactly one of {', '.join(FORMATS)}; "
                                    f"got a {type(payload).__name__}")
    keys = [k for k in payload if k in FORMATS]
    unknown = sorted(set(payload) - set(FORMATS) - {"params"})
    if len(keys) != 1 or unknown:
        found = f"; found {sorted(payload)}" if payload else ""
        raise _format_error("body", f"send exactly one of {', '.join(FORMATS)} (MLflow's formats), and "
                                    f"optionally 'params'{found}")
    if not isinstance(payload.get("params", {}), dict):
        raise _format_error("params", "expected an object of parameters (this model takes none)")
    key = keys[0]
    value = payload[key]
    if key == "dataframe_split":
        rows = _split(value)
    elif key == "inputs" and isinstance(value, dict):
        rows = _columns(key, value)
    elif isinstance(value, list) and all(isinstance(r, dict) for r in value):
        rows = value
    else:
        shape = "a list of records (DataFrame.to_dict(orient='records'))"
        if key == "inputs":
            shape += " or {column: [values]}"
        raise _format_error(key, f"expected {shape}; rows must be objects that name their columns")
    return key, rows


# A number in a CSV cell is read as JSON reads one (RFC 8259's grammar, ASCII digits only), plus the
# NaN that pandas writes for a missing value: Python's int() and float() would also take "1_000", " 12 ",
# "+5", "inf" and Arabic-Indic digits, which the JSON formats refuse.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?", re.ASCII)
_JSON_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)", re.ASCII)


def _csv_value(name: str, text: str):
    """One CSV cell as the contract's type. A cell that does not convert stays text, so the contract
    check names the field and rule exactly as for JSON."""
    kind, dtype = _KINDS.get(name, ("text", "str"))
    if text == "":
        return None
    if kind == "boolean":
        return {"true": True, "false": False, "1": True, "0": False}.get(text.lower(), text)
    if kind == "numeric":
        if text in ("NaN", "nan"):
            return math.nan
        if dtype.startswith("int") and _JSON_INTEGER.fullmatch(text):
            return int(text)
        if _JSON_NUMBER.fullmatch(text):
            return float(text)
    return text


def rows_from_csv(body: bytes) -> tuple[str, list]:
    """A header row, then rows (``DataFrame.to_csv(index=False)``), bounded like JSON: the body size
    is capped before parsing, and the row count by MAX_BATCH."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the CSV body is not UTF-8: {exc.reason} at byte {exc.start}",
                      [{"field": "body", "rule": "csv_invalid", "message": "not UTF-8"}]) from None
    text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark (Excel writes one) is not part of the header
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if not header:
            raise _format_error("csv", "expected a header row with the column names, then one row per payment")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise _format_error("csv", f"the header names {', '.join(map(repr, repeated))} more than once: "
                                       "send each column once")
        rows = []
        for number, cells in enumerate(reader, start=1):
            if not cells:
                continue
            if len(rows) >= MAX_BATCH:
                raise _format_error("csv", f"at most {MAX_BATCH} rows per request")
            if len(cells) != len(header):
                raise _format_error(f"csv[{number - 1}]", f"expected {len(header)} cells like the header, "
                                                          f"got {len(cells)}")
            rows.append({name: _csv_value(name, cell) for name, cell in zip(header, cells, strict=True)})
    except csv.Error as exc:
        raise Problem(400, f"malformed CSV: {exc}",
                      [{"field": "body", "rule": "csv_invalid", "message": str(exc)}]) from None
    if "\x00" in text:
        raise Problem(400, "malformed CSV: NUL character", [{"field": "body", "rule": "csv_invalid",
                                                             "message": "NUL character"}])
    return "csv", rows


def validate_rows(key: str, rows: list) -> list:
    """The same contract validation as /predict, with the row and field in every error."""
    if not 1 <= len(rows) <= MAX_BATCH:
        raise Problem(422, f"send between 1 and {MAX_BATCH} rows",
                      [{"field": key, "rule": "length", "message": f"1 to {MAX_BATCH} rows, got {len(rows)}"}])
    try:
        return _rows.validate_python(_nan_is_missing(rows))
    except ValidationError as exc:
        raise Problem(422, "the request does not match the CardGuard data contract",
                      field_errors(exc.errors(), prefix=key)) from None
