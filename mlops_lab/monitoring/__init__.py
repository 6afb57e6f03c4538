"""Monitoring CardGuard: drift against a reference profile, performance as delayed labels
arrive, and alert rules (evaluated here, exported for Prometheus)."""

from __future__ import annotations

from .drift import REPORT_COLUMNS, DriftReport, ReferenceProfile, Thresholds, drift_report

__all__ = ["REPORT_COLUMNS", "DriftReport", "ReferenceProfile", "Thresholds", "drift_report"]
