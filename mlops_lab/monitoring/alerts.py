"""Alert rules: declared once, evaluated here over windows of monitoring metrics, and exported as
a Prometheus alerting-rules file that fires on the same conditions in production.

A rule says *which metric*, *which comparison*, *which threshold* and *for how many consecutive
windows*. Evaluating it says which rule fired, on what value, against what threshold, in which
window."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import LabError

# metric -> (what it measures, PromQL that computes it in production)
METRICS: dict[str, tuple[str, str]] = {
    "drifted_columns": ("feature columns the drift report flags in the window",
                        "cardguard_monitor_drifted_columns"),
    "drift_share": ("share of feature columns that drift (0-1)", "cardguard_monitor_drift_share"),
    "max_missing_change": ("largest change of a column's missing-value rate vs the reference (0-1)",
                           "cardguard_monitor_max_missing_change"),
    "score_ks": ("KS statistic of the score distribution vs the reference (0-1, no labels needed)",
                 "cardguard_monitor_score_ks"),
    "score_drifted": ("1 if the drift report flags the score distribution, else 0",
                      "cardguard_monitor_score_drifted"),
    "flag_rate": ("share of payments flagged for review (no labels needed)",
                  'sum(rate(cardguard_predictions_total{decision="flag"}[1h])) '
                  "/ sum(rate(cardguard_predictions_total[1h]))"),
    "chargebacks_per_1000": ("chargebacks (fraud labels) known so far for the window's payments, per 1,000 payments",
                             "cardguard_monitor_chargebacks_per_1000"),
    "pr_auc": ("PR-AUC on the labels known so far (missing while too few)", "cardguard_monitor_pr_auc"),
    "recall": ("share of known fraud the served threshold flagged", "cardguard_monitor_recall"),
    "cost_per_1000": ("expected cost per 1,000 labelled payments (EUR)", "cardguard_monitor_cost_per_1000"),
    "error_rate": ("share of scoring requests answered with a 5xx status",
                   'sum(rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations",status=~"5.."}[5m])) '
                   '/ sum(rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations"}[5m]))'),
    "p99_latency_ms": ("99th percentile of request latency (ms)",
                       "1000 * histogram_quantile(0.99, sum by (le) "
                       '(rate(cardguard_request_duration_seconds_bucket{endpoint=~"/predict.*|/invocations"}[5m])))'),
}
SCORING_ENDPOINTS = ("/predict", "/predict/batch", "/invocations")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True)
class AlertRule:
    """Fire when ``metric op threshold`` holds in ``for_windows`` consecutive windows."""

    name: str
    metric: str
    op: str
    threshold: float
    for_windows: int = 1
    severity: str = "warning"

    def __post_init__(self):
        if self.metric not in METRICS:
            raise LabError(f"Alert rule {self.name!r}: there is no metric {self.metric!r}. The metrics are: "
                           f"{', '.join(METRICS)}.")
        if self.op not in OPS:
            raise LabError(f"Alert rule {self.name!r}: op {self.op!r} is not one of {', '.join(OPS)}.")
        if isinstance(self.for_windows, bool) or not isinstance(self.for_windows, int) or self.for_windows < 1:
            raise LabError(f"Alert rule {self.name!r}: for_windows={self.for_windows!r} must be a whole number >= 1.")
        try:
            float(self.threshold)
        except (TypeError, ValueError):
            raise LabError(f"Alert rule {self.name!r}: threshold {self.threshold!r} is not a number.") from None
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9 _-]*", self.name):
            raise LabError(f"Alert rule name {self.name!r}: use letters, digits, spaces, '-' or '_'.")

    def __str__(self) -> str:
        more = f" for {self.for_windows} windows" if self.for_windows > 1 else ""
        return f"{self.name}: {self.metric} {self.op} {self.threshold:g}{more}"


def _window_label(row) -> str:
    if "window_start" in row and "window_end" in row:
        return f"{pd.Timestamp(row['window_start']):%Y-%m-%d %H:%M} to {pd.Timestamp(row['window_end']):%Y-%m-%d %H:%M}"
    return str(row.name)


def evaluate(rules, windows: pd.DataFrame) -> pd.DataFrame:
    """Every rule on every window, in time order: one row per (rule, window) with the value, the
    threshold, whether it fired, and a message in words. A missing value (for example PR-AUC
    before enough labels arrived) never fires; the message says so."""
    rules = [rules] if isinstance(rules, AlertRule) else list(rules)
    if not all(isinstance(r, AlertRule) for r in rules):
        raise LabError("evaluate expects AlertRule objects, e.g. AlertRule('drift', 'drifted_columns', '>', 0).")
    out = []
    for rule in rules:
        if rule.metric not in windows:
            raise LabError(f"The windows table has no {rule.metric!r} column; it has {', '.join(map(str, windows.columns))}.")
        streak = 0
        for _, row in windows.iterrows():
            value = row[rule.metric]
            holds = bool(pd.notna(value) and OPS[rule.op](float(value), float(rule.threshold)))
            streak = streak + 1 if holds else 0
            fired = streak >= rule.for_windows
            where = _window_label(row)
            if pd.isna(value):
                message = f"{rule.name}: no value for {rule.metric} in {where} (not enough data yet); not fired"
            elif fired:
                message = (f"{rule.name} FIRED: {rule.metric} = {float(value):.4g} {rule.op} {rule.threshold:g} "
                           f"in {where}" + (f" ({streak} windows in a row)" if rule.for_windows > 1 else ""))
            else:
                message = f"{rule.name}: {rule.metric} = {float(value):.4g}, threshold {rule.op} {rule.threshold:g}, in {where}"
            out.append({"rule": rule.name, "window_start": row.get("window_start", row.name),
                        "window_end": row.get("window_end"), "metric": rule.metric,
                        "value": np.nan if pd.isna(value) else float(value), "op": rule.op,
                        "threshold": float(rule.threshold), "fired": fired, "message": message})
    return pd.DataFrame(out)


def fired(rules, windows: pd.DataFrame) -> pd.DataFrame:
    """Only the firings of ``evaluate``."""
    result = evaluate(rules, windows)
    return result[result["fired"]].reset_index(drop=True)


def _alert_name(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[ _-]+", name) if part)


def prometheus_rules(rules, window: str = "1d", group: str = "cardguard") -> str:
    """The rules as a Prometheus alerting-rules file (YAML). Drift and performance metrics are the
    ``cardguard_monitor_*`` gauges that ``prometheus_metrics`` writes each window; server metrics
    are computed from the API's own ``/metrics``. ``for`` is ``for_windows`` windows long."""
    import yaml

    rules = [rules] if isinstance(rules, AlertRule) else list(rules)
    match = re.fullmatch(r"(\d+)([smhdw])", window)
    if not match:
        raise LabError(f"window={window!r}: give a Prometheus duration such as '1d', '6h' or '15m'.")
    amount, unit = int(match[1]), match[2]
    entries = []
    for rule in rules:
        entry = {"alert": _alert_name(rule.name), "expr": f"{METRICS[rule.metric][1]} {rule.op} {rule.threshold:g}"}
        if rule.for_windows > 1:
            entry["for"] = f"{amount * (rule.for_windows - 1)}{unit}"
        entry["labels"] = {"severity": rule.severity}
        entry["annotations"] = {
            "summary": f"{rule.name}: {rule.metric} {rule.op} {rule.threshold:g}",
            "description": f"{METRICS[rule.metric][0]} is {{{{ $value }}}} ({rule.op} {rule.threshold:g}).",
        }
        entries.append(entry)
    return yaml.safe_dump({"groups": [{"name": group, "rules": entries}]}, sort_keys=False)


def prometheus_metrics(window_row: pd.Series) -> str:
    """One window's monitoring figures in the Prometheus text format (the ``cardguard_monitor_*``
    gauges the exported rules read), for a textfile collector or a push gateway."""
    lines = []
    for metric, (help_text, expr) in METRICS.items():
        if expr.startswith("cardguard_monitor_") and metric in window_row and pd.notna(window_row[metric]):
            lines += [f"# HELP {expr} {help_text}", f"# TYPE {expr} gauge", f"{expr} {float(window_row[metric]):g}"]
    return "\n".join(lines) + "\n"


def server_metrics(url: str) -> dict[str, float]:
    """error_rate and p99_latency_ms of the scoring endpoints since start, read from a running
    server's ``/metrics`` (health probes such as ``/ready`` answering 503 while loading are not errors)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url.rstrip('/')}/metrics", timeout=10).text
    total = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("endpoint") not in SCORING_ENDPOINTS:
                continue
            if s.name == "cardguard_requests_total":
                total += s.value
                errors += s.value if str(s.labels.get("status", "")).startswith("5") else 0
            elif s.name == "cardguard_request_duration_seconds_bucket":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + s.value
    return {"error_rate": errors / total if total else float("nan"),
            "p99_latency_ms": 1000 * _histogram_quantile(0.99, buckets)}


def _histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding the quantile."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] == 0:
        return float("nan")
    rank = q * buckets[edges[-1]]
    lower, below = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if edge == float("inf"):
                return lower
            return lower + (edge - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = edge, count
    return lower
