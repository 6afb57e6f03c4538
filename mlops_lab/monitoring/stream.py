"""Weeks of production, simulated: replay traffic through a server, compute the monitoring
metrics day by day, and grade alert rules against every scenario's ground truth.

Each day at midnight the monitor looks back over the trailing ``window_days`` of payments: it
compares them with the reference profile (inputs and outputs), counts the chargebacks that
arrived, and scores the model on the labels known *by then*. ``grade_rules`` then asks, for each
scenario in ``data.SCENARIOS``: how many days after the drift began did a rule fire (detection
delay), and how often did it fire on the no-drift control (false alarms)?
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import data
from ..errors import LabError
from .alerts import AlertRule, evaluate
from .drift import ReferenceProfile


@dataclass(frozen=True)
class StreamSettings:
    """The production period lab 07 watches: ``days`` days from ``start`` (the day after the
    course data ends), the scenario switched on at day ``drift_day``, weekly trailing windows."""

    start: str = "2026-02-16"
    days: int = 21
    drift_day: int = 7
    window_days: int = 7
    per_day: int = data.DEFAULT_PER_DAY
    seed: int = 7

    @property
    def drift_start(self) -> pd.Timestamp:
        return pd.Timestamp(self.start) + pd.Timedelta(days=self.drift_day)


def scored(pipeline, threshold: float, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the model's ``score`` and ``decision`` (what the server would have answered)."""
    out = frame.copy()
    out["score"] = pipeline.predict_proba(frame[data.feature_columns()])[:, 1]
    out["decision"] = np.where(out["score"] >= threshold, "flag", "approve")
    return out


def reference_profile(pipeline, threshold: float, reference: pd.DataFrame) -> ReferenceProfile:
    """The profile of the training period: features from the contract, plus the model's outputs."""
    return ReferenceProfile.fit(scored(pipeline, threshold, reference), contract=True)


def replay(frame: pd.DataFrame, url: str, batch_size: int = 1_000, progress: bool = True) -> int:
    """Send every payment of ``frame`` to a running server's ``/predict/batch``, in time order.
    Returns the number of predictions answered (the server logs each one). With ``progress`` it
    prints a line about every 5 seconds (a replay of two weeks takes half a minute on Binder)."""
    import time

    import httpx

    from ..serving.client import to_payload

    answered = 0
    started = last = time.monotonic()
    with httpx.Client(base_url=url, timeout=60) as client:
        for lo in range(0, len(frame), batch_size):
            payload = {"transactions": to_payload(frame.iloc[lo:lo + batch_size])}
            response = client.post("/predict/batch", json=payload)
            if response.status_code != 200:
                raise LabError(f"The server answered {response.status_code} at row {lo}: {response.text[:300]}")
            answered += len(response.json()["predictions"])
            now = time.monotonic()
            if progress and (now - last >= 5 or answered == len(frame)) and now - started >= 1:
                print(f"replay: {answered:,} of {len(frame):,} payments answered ({now - started:.0f} s)", flush=True)
                last = now
    return answered


def daily_windows(stream: pd.DataFrame, profile: ReferenceProfile, settings: StreamSettings) -> pd.DataFrame:
    """One row per evaluation day (from the first full window on): the metrics every alert rule
    can use, computed from what the monitor could know at that midnight."""
    from sklearn.metrics import average_precision_score

    start = pd.Timestamp(settings.start)
    width = pd.Timedelta(days=settings.window_days)
    ts = stream["timestamp"].to_numpy()
    features = data.feature_columns()
    rows = []
    for day in range(settings.window_days, settings.days + 1):
        end = start + pd.Timedelta(days=day)
        lo, hi = np.searchsorted(ts, np.datetime64(end - width)), np.searchsorted(ts, np.datetime64(end))
        window = stream.iloc[lo:hi]
        report = profile.compare(window[[c for c in profile.columns_]])
        table = report.details.set_index("column")
        feature_rows = table.loc[[c for c in features if c in table.index]]
        known = window["label_available_at"] <= end
        y = window.loc[known, "is_fraud"].to_numpy()
        flagged = (window["decision"] == "flag").to_numpy()
        row = {
            "window_start": end - width, "window_end": end, "rows": len(window),
            "drifted_columns": int(feature_rows["drifted"].sum()),
            "drift_share": float(feature_rows["drifted"].mean()),
            "max_missing_change": float((feature_rows["missing_current"] - feature_rows["missing_reference"]).abs().max()),
            "score_ks": float(table.loc["score", "statistic"]) if "score" in table.index else np.nan,
            "score_drifted": int(table.loc["score", "drifted"]) if "score" in table.index else np.nan,
            "flag_rate": float(flagged.mean()) if len(window) else np.nan,
            "chargebacks_per_1000": 1000 * float(y.sum()) / max(len(window), 1),
            "labelled": int(known.sum()),
            "pr_auc": float(average_precision_score(y, window.loc[known, "score"])) if len(set(y)) == 2 else np.nan,
            "recall": float(flagged[known.to_numpy() & (window["is_fraud"] == 1).to_numpy()].mean()) if y.sum() else np.nan,
            "drifted": ", ".join(report.drifted_columns),
        }
        rows.append(row)
    return pd.DataFrame(rows)


def scenario_streams(pipeline, threshold: float, profile: ReferenceProfile,
                     settings: StreamSettings | None = None, scenarios=None, progress=None) -> dict[str, pd.DataFrame]:
    """``daily_windows`` for every scenario (the same payments' seed, each world switched on at
    ``drift_day``): the table alert rules are graded on. ``progress(line)`` hears of each scenario done."""
    import time

    settings = settings or StreamSettings()
    names = list(scenarios or data.SCENARIOS)
    started = time.monotonic()
    out = {}
    for i, name in enumerate(names, 1):
        frame = data.simulate_transactions(days=settings.days, start=settings.start, seed=settings.seed,
                                           scenario=name, drift_start=settings.drift_start,
                                           per_day=settings.per_day)
        out[name] = daily_windows(scored(pipeline, threshold, frame), profile, settings)
        if progress:
            progress(f"  {name} monitored ({i} of {len(names)}, {time.monotonic() - started:.0f} s)")
    return out


def grade_rules(rules, streams: dict[str, pd.DataFrame], settings: StreamSettings | None = None) -> pd.DataFrame:
    """Per scenario: did any rule fire after the drift began, how many days later (the day a
    window ending at midnight is evaluated counts), and which rule; false alarms are firing days
    before the drift began, or on any day of the no-drift control ``none``."""
    settings = settings or StreamSettings()
    rules = [rules] if isinstance(rules, AlertRule) else list(rules)
    if not rules:
        raise LabError("No alert rules to grade: pass a list of AlertRule objects.")
    rows = []
    for name, windows in streams.items():
        result = evaluate(rules, windows)
        days = result[result["fired"]].groupby("window_end")["rule"].apply(lambda r: ", ".join(sorted(set(r))))
        truth = data.scenario_truth(name)
        before = days[days.index <= settings.drift_start] if name != "none" else days
        after = days[days.index > settings.drift_start] if name != "none" else days.iloc[:0]
        first = after.index.min() if len(after) else None
        rows.append({
            "scenario": name,
            "should_fire": name != "none",
            "kind": ("control" if name == "none" else "data bug" if truth.data_bug
                     else "concept drift" if truth.concept_drift else "fraud rate" if not truth.drifted_columns
                     else "covariate drift"),
            "detected": first is not None,
            "delay_days": (first - settings.drift_start).days if first is not None else np.nan,
            "first_rules": after.iloc[0] if len(after) else "",
            "false_alarm_days": len(before),
            "days_watched": len(windows),
        })
    return pd.DataFrame(rows)


def score_grade(grades: pd.DataFrame) -> dict[str, float]:
    """One line for a leaderboard: scenarios detected, mean delay over the detected ones, and the
    false-alarm rate (firing days per watched day on the control and before any drift)."""
    drifts = grades[grades["should_fire"]]
    control = grades[~grades["should_fire"]]
    return {
        "detected": int(drifts["detected"].sum()),
        "scenarios": len(drifts),
        "mean_delay_days": float(drifts["delay_days"].mean()) if drifts["detected"].any() else float("nan"),
        "false_alarm_days_control": int(control["false_alarm_days"].sum()),
        "control_days": int(control["days_watched"].sum()),
        "false_alarm_rate": float(control["false_alarm_days"].sum() / max(control["days_watched"].sum(), 1)),
    }


# ------------------------------------------------------------------ the course's monitor (lab 07, lab 08)


def _workspace_file(name: str):
    from .. import config

    path = config.path("monitoring", name)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def champion():
    """The registered champion as the server loads it (pipeline, threshold, version)."""
    from ..serving.model import load_from_registry

    return load_from_registry("champion")


def _champion_version(model=None) -> str:
    """``model``'s version, or the champion's: a quick registry lookup, where loading it takes 0.5 s (the
    workspace's caches are keyed by it, and most calls find them current)."""
    if model is not None:
        return model.version
    from ..serving.model import require_registered

    return require_registered("champion")


def course_profile(model=None) -> ReferenceProfile:
    """The reference profile of the course's training period, scored by the champion: fitted once
    per champion version and saved in the workspace (``monitoring/reference_profile.json``)."""
    version = _champion_version(model)
    path = _workspace_file("reference_profile.json")
    if path.exists():
        profile = ReferenceProfile.load(path)
        if profile.meta.get("model_version") == version:
            return profile
    model = model or champion()
    train, _, _ = data.time_split(data.load_snapshot())
    profile = reference_profile(model.pipeline, model.threshold, train)
    profile.meta = {"model_version": model.version, "reference": "course training period",
                    "from": str(train["timestamp"].min()), "to": str(train["timestamp"].max())}
    profile.save(path)
    return profile


def _settings_key(settings: StreamSettings) -> str:
    """Every setting in the cache file's name: a stream of other settings is another file."""
    import dataclasses
    import hashlib
    import json

    text = json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def course_streams(model=None, settings: StreamSettings | None = None, scenarios=None) -> dict[str, pd.DataFrame]:
    """``scenario_streams`` for the champion and the course's reference, cached in the workspace
    per champion version and settings (computing them takes a few seconds per scenario)."""
    settings = settings or StreamSettings()
    names = list(scenarios or data.SCENARIOS)
    if unknown := [n for n in names if n not in data.SCENARIOS]:
        raise LabError(f"Unknown scenario(s) {', '.join(map(repr, unknown))}; the scenarios are: "
                       f"{', '.join(data.SCENARIOS)}.")
    version = _champion_version(model)
    path = _workspace_file(f"streams-v{version}-{_settings_key(settings)}-{'-'.join(names)}.parquet")
    if path.exists():
        table = pd.read_parquet(path)
        return {name: part.drop(columns="scenario").reset_index(drop=True)
                for name, part in table.groupby("scenario", sort=False)}
    model = model or champion()
    print(f"Simulating {settings.days} days of {len(names)} scenario(s) (seed {settings.seed}, "
          f"{settings.window_days}-day windows) and monitoring them day by day (cached for next time)...", flush=True)
    streams = scenario_streams(model.pipeline, model.threshold, course_profile(model), settings, names,
                               progress=lambda line: print(line, flush=True))
    pd.concat([w.assign(scenario=name) for name, w in streams.items()]).to_parquet(path, index=False)
    return streams
