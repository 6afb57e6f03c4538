"""Model performance in production, as labels arrive.

The serving prediction log says what the model answered; labels (chargebacks, confirmations)
arrive days to weeks later. A metric for a window may only use the labels that had arrived by
the time it is computed, and it is reported with how many labelled rows it rests on, so that
"no labels yet" is never read as "the model got worse".
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import LabError

REVIEW_FEE = 5.0  # euros per reviewed (flagged) payment: the same figure as training.REVIEW_FEE
MIN_LABELLED = 50  # fewer labelled payments than this give no PR-AUC


def prediction_log_path() -> Path:
    from .. import config

    return config.path("predictions", "predictions.jsonl")


def read_prediction_log(path=None) -> pd.DataFrame:
    """The serving prediction log as a table: one row per prediction, the features flattened,
    ``served_at`` a timestamp (UTC, naive)."""
    path = Path(path) if path is not None else prediction_log_path()
    lines = path.read_text().splitlines() if path.exists() else []
    records = [json.loads(line) for line in lines if line.strip()]
    if not records:
        raise LabError(f"The prediction log at {path} is empty (or missing): the server has logged no prediction "
                       "yet. Send it some traffic first (monitoring.replay(frame, server.url)), then read the log.")
    frame = pd.DataFrame.from_records(records)
    features = pd.DataFrame.from_records(frame.pop("features").tolist(), index=frame.index)
    frame = pd.concat([frame, features], axis=1)
    frame["served_at"] = pd.to_datetime(frame.pop("timestamp"), utc=True).dt.tz_localize(None)
    return frame


def join_labels(predictions: pd.DataFrame, labels: pd.DataFrame, as_of) -> pd.DataFrame:
    """Attach to each prediction its payment time and, where it had arrived by ``as_of``, its label.

    ``labels`` has ``transaction_id``, ``timestamp`` (payment time), ``is_fraud`` and
    ``label_available_at``. A label that arrives after ``as_of`` is left out (``is_fraud`` is
    missing and ``label_known`` False): at ``as_of`` nobody knew it."""
    need = {"transaction_id", "timestamp", "is_fraud", "label_available_at"}
    if missing := need - set(labels.columns):
        raise LabError(f"The labels lack column(s) {', '.join(sorted(missing))}; they need {', '.join(sorted(need))}.")
    if "transaction_id" not in predictions or predictions["transaction_id"].isna().all():
        raise LabError("The predictions carry no transaction_id, so no label can be matched to them. Send "
                       "transaction_id with each payment.")
    cutoff = pd.Timestamp(as_of)
    joined = predictions.merge(labels[list(need)], on="transaction_id", how="left", validate="many_to_one")
    known = joined["label_available_at"] <= cutoff
    joined["label_known"] = known
    joined["is_fraud"] = joined["is_fraud"].where(known).astype("Int64")
    if not known.any():
        joined.attrs["note"] = f"no labels had arrived by {cutoff}"
    return joined


def windowed_performance(joined: pd.DataFrame, freq: str = "7D", start=None,
                         review_fee: float = REVIEW_FEE, min_labelled: int = MIN_LABELLED) -> pd.DataFrame:
    """Metrics per window of payment time: rows, flag rate (no labels needed), labelled rows,
    labelled fraud, PR-AUC, recall at the served threshold, expected cost per 1,000 labelled
    payments, and a status that says when a metric cannot be known yet."""
    from sklearn.metrics import average_precision_score

    if joined.empty:
        raise LabError("No predictions to evaluate: the table is empty.")
    ts = joined["timestamp"]
    origin = pd.Timestamp(start) if start is not None else ts.min().normalize()
    width = pd.Timedelta(freq)
    index = ((ts - origin) // width).astype("int64")
    rows = []
    for k, w in joined.groupby(index, sort=True):
        flagged = (w["decision"] == "flag").to_numpy()
        lab = w[w["label_known"]]
        y = lab["is_fraud"].to_numpy(dtype=int)
        flag_lab = (lab["decision"] == "flag").to_numpy()
        row = {"window_start": origin + k * width, "window_end": origin + (k + 1) * width, "rows": len(w),
               "flag_rate": float(flagged.mean()), "labelled": len(lab), "labelled_fraud": int(y.sum()),
               "pr_auc": np.nan, "recall": np.nan, "cost_per_1000": np.nan}
        if len(lab) == 0:
            row["status"] = "no labels yet"
        elif y.min() == y.max():
            row["status"] = ("only fraud labels so far (legitimate payments are confirmed later)" if y[0] == 1
                             else "no fraud among the labels yet")
        elif len(lab) < min_labelled:
            row["status"] = f"only {len(lab)} labels (< {min_labelled})"
        else:
            row["status"] = "ok"
            row["pr_auc"] = float(average_precision_score(y, lab["score"].to_numpy(dtype=float)))
        if y.sum():
            row["recall"] = float(flag_lab[y == 1].mean())
        if len(lab):
            amount = lab["amount"].to_numpy(dtype=float)
            cost = float((amount * (y == 1) * ~flag_lab).sum() + flag_lab.sum() * review_fee)
            row["cost_per_1000"] = 1000 * cost / len(lab)
        rows.append(row)
    return pd.DataFrame(rows)
