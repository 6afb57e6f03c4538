"""How the drift monitor reads a column: its kind, its finite values, its category counts. Shared by
the statistics (``drift``) and their rendering (``report``), below both."""

from __future__ import annotations

import numpy as np
import pandas as pd

MISSING, UNSEEN = "<missing>", "<unseen>"


def _infer_kind(series: pd.Series) -> str | None:
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
        return None
    return "categorical"


def _numeric(series: pd.Series) -> tuple[np.ndarray, int, int]:
    """Finite values, count of missing, count of non-numbers and infinities (both count as missing)."""
    values = pd.to_numeric(series, errors="coerce") if not pd.api.types.is_numeric_dtype(series) else series
    values = values.astype("float64").to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(values)
    missing = int(series.isna().sum())
    return values[finite], missing, int(len(values) - finite.sum() - missing)


def _label_counts(series: pd.Series) -> pd.Series:
    """Count of each category, labelled as text; missing values counted in the missing bin."""
    counts = series.value_counts(dropna=False, sort=False)
    labels = [MISSING if pd.isna(k) else k if isinstance(k, str) else str(k) for k in counts.index]
    return pd.Series(counts.to_numpy(), index=labels).groupby(level=0, sort=False).sum()
