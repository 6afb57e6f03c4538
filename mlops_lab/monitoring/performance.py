"""Model performance in production, as labels arrive.

The serving prediction log says what the model answered; labels (chargebacks, confirmations)
arrive days to weeks later. A metric for a window may only use the labels that had arrived by
the time it is computed, and it is reported with how many labelled rows it rests on, so that
"no labels yet" is never read as "the model got worse".
"""

from __future__ import annotations

import json
import re
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
    ``served_at`` a timestamp (UTC, naive). A last line without its newline that is not a whole
    prediction is one still being written (or cut short when the server stopped): it is left out."""
    path = Path(path).expanduser() if path is not None else prediction_log_path()
    if path.is_dir():
        raise LabError(f"{path} is a folder: give the prediction log itself, the .jsonl file the server writes "
                       "(monitoring.prediction_log_path() by default, or the prediction_log you gave start_server).")
    if not path.exists():
        raise LabError(f"There is no prediction log at {path}: the server writes it on its first prediction. Check "
                       "the path (monitoring.prediction_log_path() by default, or the prediction_log you gave "
                       "start_server), or send the server some traffic first (monitoring.replay(frame, server.url)).")
    # bytes, split at line ends only: a line still being written may end inside a character, and a JSON string
    # may hold a line separator (U+2028) that str.splitlines would cut at (JSON has no raw CR or LF inside a
    # string); a BOM (a Windows editor) is dropped
    *whole, tail = re.split(rb"\r\n|\r|\n", path.read_bytes().removeprefix(b"\xef\xbb\xbf"))
    records = [record for number, line in enumerate(whole, 1) if (record := _log_record(line, number, path))]
    try:
        last = _log_record(tail, len(whole) + 1, path)
    except LabError:
        last = None  # the last line, still being written (the server runs) or cut short: not a prediction yet
    records += [last] if last else []
    if not records:
        raise LabError(f"The prediction log at {path} is empty: the server has logged no prediction yet. Send it "
                       "some traffic first (monitoring.replay(frame, server.url)), then read the log.")
    frame = pd.DataFrame.from_records(records)
    features = pd.DataFrame.from_records(frame.pop("features").tolist(), index=frame.index)
    frame = pd.concat([frame, features], axis=1)
    try:
        served = pd.to_datetime(frame.pop("timestamp"), utc=True, format="ISO8601")
    except ValueError as exc:
        raise LabError(f"A timestamp in the prediction log at {path} is not an ISO 8601 time ({str(exc)[:160]}); "
                       "the server writes times such as 2026-02-16T10:00:00.123+00:00.") from None
    frame["served_at"] = served.dt.tz_localize(None)
    return frame


def _log_record(line: bytes, number: int, path: Path) -> dict | None:
    """One line of the prediction log as the server wrote it (None for a blank line), or a LabError naming it."""
    try:
        text = line.decode("utf-8")
        if not text.strip():
            return None
        record = json.loads(text)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        problem = f"is not one JSON object ({str(exc)[:120]})"
    else:
        if isinstance(record, dict) and isinstance(record.get("features"), dict) and isinstance(
                record.get("timestamp"), str):
            return record
        problem = 'is JSON but not a prediction (an object with "features" and "timestamp")'
    raise LabError(f"Line {number} of the prediction log at {path} {problem}: each line is one prediction, as the "
                   "server writes it. Fix or remove that line (a server stopped mid-write leaves one cut short), "
                   "or start a new log.")


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


# ------------------------------------------------------------------ performance before the labels arrive

FIGURES = ("precision", "recall", "flag_rate", "cost_per_1000")


def expected_counts(probabilities, scores, threshold: float) -> dict[str, float]:
    """The confusion matrix a window should show once its labels land, if the probabilities are right:
    a payment flagged (``score >= threshold``) with fraud probability p adds p to the true positives and
    1 - p to the false positives; one approved adds p to the false negatives and 1 - p to the true negatives."""
    p = np.asarray(probabilities, dtype=float)
    flagged = np.asarray(scores, dtype=float) >= threshold
    return {"tp": float(p[flagged].sum()), "fp": float((1 - p[flagged]).sum()),
            "fn": float(p[~flagged].sum()), "tn": float((1 - p[~flagged]).sum())}


class _Calibration:
    """Fraud rate by score, learned on labelled data (isotonic regression), with the evidence behind each
    step: a step of n payments with k frauds has a Beta(k + 1/2, n - k + 1/2) fraud rate (Jeffreys)."""

    def __init__(self, scores, labels):
        from sklearn.isotonic import IsotonicRegression

        scores = np.asarray(scores, dtype=float)
        labels = np.asarray(labels, dtype=float)
        if scores.shape != labels.shape or scores.ndim != 1:
            raise LabError(f"calibration_scores and calibration_labels must be two 1-d sequences of one length; got "
                           f"shapes {scores.shape} and {labels.shape}.")
        if not np.isfinite(scores).all() or not np.isin(labels, (0, 1)).all():
            raise LabError("calibration_scores must be finite numbers and calibration_labels 0 or 1 (is_fraud) "
                           "for each payment: pass only payments whose labels are final.")
        if labels.sum() < 10 or (1 - labels).sum() < 10:
            raise LabError(f"The calibration data has {int(labels.sum())} fraud and {int((1 - labels).sum())} "
                           "legitimate payments: at least 10 of each are needed to learn how scores map to fraud "
                           "rates (use a validation period whose labels are final).")
        order = np.argsort(scores, kind="mergesort")
        scores, labels = scores[order], labels[order]
        fitted = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip").fit(scores, labels).predict(scores)
        # steps: runs of one fitted value; each keeps its lowest score, its size and its frauds
        starts = np.flatnonzero(np.r_[True, np.diff(fitted) != 0])
        self.edges_ = scores[starts]
        self.n_ = np.diff(np.r_[starts, len(scores)]).astype(float)
        self.k_ = np.add.reduceat(labels, starts)
        self.rate_ = self.k_ / self.n_

    def step(self, scores) -> np.ndarray:
        return np.clip(np.searchsorted(self.edges_, np.asarray(scores, dtype=float), side="right") - 1, 0,
                       len(self.edges_) - 1)


def estimate_performance(scores, threshold: float, calibration_scores, calibration_labels, amounts=None, *,
                         calibration_amounts=None, review_fee: float = REVIEW_FEE, level: float = 0.95,
                         draws: int = 1_000, seed: int = 0) -> pd.DataFrame:
    """Precision, recall at ``threshold``, flag rate and expected cost per 1,000 payments of a window whose
    labels have not arrived yet, each with an interval (confidence-based performance estimation, as in
    NannyML's CBPE).

    The champion's scores on labelled data it did not train on (``calibration_scores``, ``calibration_labels``:
    its validation period) say what fraud rate each score carries; applied to the window's served ``scores``
    they give each payment's fraud probability, hence the confusion matrix to expect (``expected_counts``).
    The interval covers both what is uncertain: the calibration (each step's rate drawn from its Beta
    posterior) and which payments turn out to be fraud (each drawn from its probability: a Poisson-binomial
    count). ``amounts`` (EUR, one per payment) give the cost: missed fraud's amounts plus ``review_fee`` per
    flagged payment, per 1,000 payments; without them the cost is left out. With ``calibration_amounts`` the
    cost's interval also carries how far the calibration data's missed fraud amounts strayed from what their
    scores said (a bootstrap of the calibration data): a few large frauds decide a week's cost, and a
    fortnight of labels shows only some of them.

    It holds while the score still means what it meant on the calibration data: under covariate shift
    (other payments, the same fraud given the inputs). It cannot see concept drift (the same inputs, now more
    or other fraud): the labels alone can, when they land."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or len(scores) == 0 or not np.isfinite(scores).all():
        raise LabError("scores must be the window's served scores: a non-empty 1-d sequence of finite numbers.")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating) or not 0 <= threshold <= 1:
        raise LabError(f"threshold={threshold!r}: give the served threshold, a number between 0 and 1.")
    if not 0 < level < 1:
        raise LabError(f"level={level!r}: give the interval's coverage as a share, e.g. 0.95.")
    if amounts is not None:
        amounts = np.asarray(amounts, dtype=float)
        if amounts.shape != scores.shape or not np.isfinite(amounts).all():
            raise LabError(f"amounts must give one finite amount per score ({len(scores)}); got shape {amounts.shape}.")
    calibration = _Calibration(calibration_scores, calibration_labels)
    step = calibration.step(scores)
    p = calibration.rate_[step]
    flagged = scores >= threshold
    n, n_flagged = len(scores), int(flagged.sum())

    counts = expected_counts(p, scores, threshold)
    point = {"precision": counts["tp"] / n_flagged if n_flagged else np.nan,
             "recall": counts["tp"] / (counts["tp"] + counts["fn"]) if counts["tp"] + counts["fn"] else np.nan,
             "flag_rate": n_flagged / n,
             "cost_per_1000": (1000 * (float((p * amounts * ~flagged).sum()) + review_fee * n_flagged) / n
                               if amounts is not None else np.nan)}

    rng = np.random.default_rng(seed)
    rates = rng.beta(calibration.k_ + 0.5, calibration.n_ - calibration.k_ + 0.5, size=(draws, len(calibration.n_)))
    sims = {name: np.empty(draws) for name in FIGURES}
    missed_amount = amounts * ~flagged if amounts is not None else None
    factors = np.ones(draws)
    if calibration_amounts is not None and amounts is not None:
        factors = _amount_factors(calibration, calibration_scores, calibration_labels, calibration_amounts, threshold,
                                  draws, rng)
    for d in range(draws):
        fraud = rng.random(n) < rates[d, step]
        tp = int((fraud & flagged).sum())
        total = int(fraud.sum())
        sims["precision"][d] = tp / n_flagged if n_flagged else np.nan
        sims["recall"][d] = tp / total if total else np.nan
        sims["flag_rate"][d] = n_flagged / n
        sims["cost_per_1000"][d] = (1000 * (factors[d] * float(missed_amount[fraud].sum()) + review_fee * n_flagged) / n
                                    if missed_amount is not None else np.nan)
    tail = (1 - level) / 2
    rows = []
    for name in FIGURES:
        values = sims[name][np.isfinite(sims[name])]
        low, high = (np.quantile(values, [tail, 1 - tail]) if len(values) else (np.nan, np.nan))
        rows.append({"figure": name, "estimate": point[name], "low": float(low), "high": float(high)})
    table = pd.DataFrame(rows).set_index("figure")
    table.attrs.update({"payments": n, "flagged": n_flagged, "expected_fraud": counts["tp"] + counts["fn"],
                        "level": level, "calibration_steps": len(calibration.n_)})
    return table


def _amount_factors(calibration, scores, labels, amounts, threshold, draws, rng, replicates: int = 200) -> np.ndarray:
    """How much the missed fraud amount of a resample of the calibration data differs from what its scores
    said, relative to the whole sample: one factor per draw, centred on 1 (Poisson bootstrap)."""
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels, dtype=float)
    amounts = np.asarray(amounts, dtype=float)
    if amounts.shape != scores.shape or not np.isfinite(amounts).all():
        raise LabError("calibration_amounts must give one finite amount per calibration payment.")
    approved = scores < threshold
    said = (calibration.rate_[calibration.step(scores)] * amounts)[approved]
    lost = (labels * amounts)[approved]
    whole = lost.sum() / max(said.sum(), 1e-12)
    ratios = np.empty(replicates)
    for b in range(replicates):
        w = rng.poisson(1.0, len(lost))
        ratios[b] = (w * lost).sum() / max((w * said).sum(), 1e-12)
    return (ratios / whole)[rng.integers(0, replicates, draws)] if whole > 0 else np.ones(draws)


def realised_performance(scores, threshold: float, is_fraud, amounts=None, review_fee: float = REVIEW_FEE) -> pd.Series:
    """The same four figures once the window's labels have landed (``is_fraud`` final for every payment)."""
    scores = np.asarray(scores, dtype=float)
    y = np.asarray(is_fraud, dtype=int).astype(bool)
    flagged = scores >= threshold
    tp = int((y & flagged).sum())
    cost = np.nan
    if amounts is not None:
        cost = 1000 * (float(np.asarray(amounts, dtype=float)[y & ~flagged].sum()) + review_fee * flagged.sum()) / len(y)
    return pd.Series({"precision": tp / flagged.sum() if flagged.sum() else np.nan,
                      "recall": tp / y.sum() if y.sum() else np.nan,
                      "flag_rate": float(flagged.mean()), "cost_per_1000": cost}, name="realised")
