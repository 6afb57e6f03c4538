"""Small client-side helpers: payloads from DataFrames, and latency from Prometheus metrics."""

from __future__ import annotations

from ..scoring import to_payload  # noqa: F401 - lab.serving.to_payload: payloads from DataFrames


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
