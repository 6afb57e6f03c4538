"""Monitoring CardGuard: drift against a reference profile, performance as delayed labels
arrive, and alert rules (evaluated here, exported for Prometheus)."""

from __future__ import annotations

from .alerts import METRICS, AlertRule, evaluate, prometheus_rules
from .drift import REPORT_COLUMNS, DriftReport, ReferenceProfile, Thresholds, drift_report
from .performance import estimate_performance, join_labels, read_prediction_log, windowed_performance
from .stream import StreamSettings, grade_rules, replay, scenario_streams

__all__ = ["METRICS", "REPORT_COLUMNS", "AlertRule", "DriftReport", "ReferenceProfile", "StreamSettings",
           "Thresholds", "drift_report", "estimate_performance", "evaluate", "grade_rules", "join_labels", "prometheus_rules",
           "read_prediction_log", "replay", "scenario_streams", "windowed_performance"]
