"""Small client-side helpers: payloads from DataFrames, and latency from Prometheus metrics."""

from __future__ import annotations

import pandas as pd

from .. import contract


def to_payload(frame) -> list[dict]:
    """Rows of a payments DataFrame as JSON-ready request bodies: the contract's features (plus
    the transaction id), with missing values as null (JSON has no NaN)."""
    columns = [c for c in ["transaction_id", *contract.feature_columns()] if c in frame]
    records = frame[columns].astype(object).to_dict(orient="records")
    for record in records:
        for key, value in record.items():
            if value is None or (not isinstance(value, str) and pd.isna(value)):
                record[key] = None
            elif hasattr(value, "item"):
                record[key] = value.item()  # numpy scalars to plain Python
    return records


def histogram_buckets(metrics_text: str, name: str, **labels: str) -> dict[float, float]:
    """Cumulative bucket counts {upper bound: count} of one Prometheus histogram series."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name != f"{name}_bucket":
                continue
            if all(sample.labels.get(k) == v for k, v in labels.items()):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return dict(sorted(buckets.items()))


def quantile_from_buckets(buckets: dict[float, float], q: float) -> float:
    """The smallest bucket bound below which at least a share ``q`` of observations fall
    (an upper estimate of the quantile, as Prometheus reads histograms)."""
    total = max(buckets.values(), default=0)
    if total == 0:
        return float("nan")
    for bound, count in sorted(buckets.items()):
        if count >= q * total:
            return bound
    return float("inf")


def latency_quantile(metrics_text: str, q: float = 0.99, endpoint: str = "/predict") -> float:
    """Latency quantile (seconds) of an endpoint from the server's /metrics text."""
    buckets = histogram_buckets(metrics_text, "cardguard_request_duration_seconds", endpoint=endpoint)
    return quantile_from_buckets(buckets, q)
