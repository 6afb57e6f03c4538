"""Lab 08, closing the loop: weeks of traffic through the running server, monitoring, retraining,
the gate, and a safe rollout (shadow, canary, promotion or automatic rollback), as events.

Each simulated week: the week's payments go to the server over HTTP, day by day; the loop reads
the prediction log, runs the drift report and the alert rules of lab 07 on the week; when an
alert fires (or on the retraining schedule) it retrains on the labels known at that moment,
logs the run, runs the CI stages of lab 06 and registers a challenger; the gate judges it against
the champion on the most recent week (a rolling holdout: a new one at every gate). A challenger
that passes goes to shadow, then to a canary share of traffic, and is promoted only if
``canary_rule(champion_live, canary_live, policy)`` says so; otherwise it is rolled back. Rollout
steps happen at day boundaries, so one week shows a whole rollout.

Labels arrive late: a chargeback comes 2 to 45 days after the payment, and a payment counts as
confirmed genuine after 30 days. At decision time the loop knows the chargebacks that have
arrived; a payment with no chargeback yet counts as genuine (``known_labels``). Figures on recent
weeks therefore firm up as chargebacks arrive: ``timeline(as_of=...)`` shows them as known then.

Every decision is one JSON line in ``<workspace>/loop/events.jsonl``; the loop's position is in
``loop/state.json``. Each step is idempotent, and the week's payments are simulated from a seed
per week, so a loop stopped mid-week and run again ends in the same state as one run straight through.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from . import config, data
from .errors import LabError
from .monitoring.alerts import AlertRule
from .monitoring.performance import _log_record

START = pd.Timestamp("2026-02-16")  # the day after the course data ends (lab 07's production period too)
SEED = 7_000
CI_STAGES = ("data", "latency", "behaviour")  # the lab 06 stages that judge one candidate model


# --------------------------------------------------------------------------- live figures and the canary rule


@dataclass(frozen=True)
class LiveFigures:
    """One model's live figures over a window of the prediction log."""

    version: str
    requests: int  # payments routed to this model (answered, or failed over to the champion)
    errors: int  # of those, how many it failed to score
    error_rate: float
    p99_ms: float  # 99th percentile of its scoring time (NaN when the log carries no timing)
    flag_rate: float  # share of its answered payments it flagged

    def __str__(self) -> str:
        p99 = "not measured" if math.isnan(self.p99_ms) else f"{self.p99_ms:.1f} ms"
        return (f"v{self.version}: {self.requests} requests, {self.errors} errors ({self.error_rate:.1%}), "
                f"p99 {p99}, flag rate {self.flag_rate:.2%}")


def live_figures(log: pd.DataFrame, version: str) -> LiveFigures:
    """``version``'s live figures in ``log`` (prediction-log rows, e.g. ``read_prediction_log()``): the
    payments it answered, plus those routed to it that it failed on (the champion answered those)."""
    version = str(version)
    if "model_version" not in log:
        raise LabError("live_figures needs prediction-log rows with a model_version column (read them with "
                       "lab.monitoring.read_prediction_log()).")
    answered = log[log["model_version"].astype(str) == version]
    errors = 0
    if "candidate_error" in log:  # the server logs "v<version> <what went wrong>"; the champion answered
        errors = int(log["candidate_error"].fillna("").astype(str).str.startswith(f"v{version} ").sum())
    requests = len(answered) + errors
    timing = next((c for c in ("score_ms", "latency_ms") if c in answered), None)
    p99 = float(np.nanpercentile(answered[timing].astype(float), 99)) if timing and answered[timing].notna().any() \
        else float("nan")
    flag_rate = float((answered["decision"] == "flag").mean()) if len(answered) else float("nan")
    return LiveFigures(version, requests, errors, errors / requests if requests else float("nan"), p99, flag_rate)


def shadow_figures(log: pd.DataFrame, version: str, threshold: float) -> LiveFigures:
    """A shadow model's figures: it scored every request (``shadow_score``) but answered none."""
    version = str(version)
    rows = log[log["shadow_version"].astype(str) == version] if "shadow_version" in log else log.iloc[:0]
    failed = int(rows["candidate_error"].notna().sum()) if "candidate_error" in rows else 0
    scores = pd.to_numeric(rows.get("shadow_score", pd.Series(dtype=float)), errors="coerce").dropna()
    column = next((c for c in ("shadow_score_ms", "shadow_ms") if c in rows), None)
    timing = rows[column].astype(float) if column else pd.Series(dtype=float)
    p99 = float(np.nanpercentile(timing, 99)) if timing.notna().any() else float("nan")
    return LiveFigures(version, len(rows), failed, failed / len(rows) if len(rows) else float("nan"), p99,
                       float((scores >= threshold).mean()) if len(scores) else float("nan"))


@dataclass(frozen=True)
class Policy:
    """How the loop decides: alert rules, retraining schedule, gate margin, and the rollout's steps and bounds."""

    alert_rules: tuple = (AlertRule("inputs drift", "drifted_columns", ">", 0),
                          AlertRule("chargebacks up", "chargebacks_per_1000", ">", 1.6))
    retrain_every: int | None = None  # also retrain every N weeks without an alert (None: only on alerts)
    margin: float = 0.01  # the gate's PR-AUC margin (registry.MARGIN)
    max_cost_increase: float = 0.10  # the gate also refuses a challenger whose expected cost per 1,000 on
    # the holdout (at its own threshold) exceeds the champion's by more than this share
    gate_min_chargebacks: int = 10  # a holdout with fewer known chargebacks is noise (one fraud moves its
    # PR-AUC by 0.1): the gate keeps the champion
    cost_aware: bool = True  # retrain with frauds weighted by their amount (training.cost_weights): PR-AUC
    # counts a EUR 2 card test like a EUR 900 fraud, the cost does not
    keep_flag_rate: bool = True  # the challenger's threshold flags the share the champion flags (the review
    # team's workload stays the same); False: the cost-minimising threshold on the validation days
    model_kind: str = "gradient_boosting"
    model_params: dict = field(default_factory=dict)
    train_days: int = 42  # training window, before the validation days and the holdout week
    valid_days: int = 3  # the days before the holdout week, on which the threshold is tuned
    cooldown_weeks: int = 1  # after a promotion, alerts wait this long before they retrain (the new
    # champion's own week has too few labels to judge a successor on)
    shadow_days: int = 1
    canary_days: int = 2
    canary_share: float = 0.2
    canary_min_requests: int = 100  # a verdict on fewer payments is noise
    max_error_rate_increase: float = 0.005  # the canary's error rate may exceed the champion's by this much
    max_p99_ms: float = 100.0  # CardGuard's latency budget
    max_flag_rate_ratio: float = 2.0  # the canary's flag rate within [1/x, x] times the champion's


def canary_verdict(champion: LiveFigures, canary: LiveFigures, policy: Policy = Policy()) -> tuple[bool, list[str]]:
    """Promote the canary? (yes or no, and the reasons, one per check, with the figures)."""
    reasons, ok = [], True
    if canary.requests < policy.canary_min_requests:
        ok = False
        reasons.append(f"only {canary.requests} requests reached v{canary.version} (< {policy.canary_min_requests}): "
                       "too few to judge")
    base = 0.0 if math.isnan(champion.error_rate) else champion.error_rate
    limit = base + policy.max_error_rate_increase
    if canary.requests and canary.error_rate > limit:
        ok = False
        reasons.append(f"error rate {canary.error_rate:.2%} > {limit:.2%} ({canary.errors} errors; champion {base:.2%})")
    else:
        reasons.append(f"error rate {canary.error_rate:.2%} (<= {limit:.2%})")
    if math.isnan(canary.p99_ms):  # no evidence of the latency budget is no promotion
        ok = False
        reasons.append("p99 latency not measured")
    elif canary.p99_ms > policy.max_p99_ms:
        ok = False
        reasons.append(f"p99 {canary.p99_ms:.1f} ms > {policy.max_p99_ms:.0f} ms")
    else:
        reasons.append(f"p99 {canary.p99_ms:.1f} ms (<= {policy.max_p99_ms:.0f} ms)")
    low, high = champion.flag_rate / policy.max_flag_rate_ratio, champion.flag_rate * policy.max_flag_rate_ratio
    if math.isnan(canary.flag_rate) or not low <= canary.flag_rate <= high:
        ok = False
        reasons.append(f"flag rate {canary.flag_rate:.2%} outside [{low:.2%}, {high:.2%}] "
                       f"(champion v{champion.version} {champion.flag_rate:.2%})")
    else:
        reasons.append(f"flag rate {canary.flag_rate:.2%} within [{low:.2%}, {high:.2%}] "
                       f"(champion {champion.flag_rate:.2%})")
    return ok, reasons


# --------------------------------------------------------------------------- data as the loop sees it


def parse_schedule(schedule) -> Callable[[int], str]:
    """Scenario of each week from ``schedule``: a scenario name ('none'), 'card_testing@3' (from week
    3 on; 'none' before), a comma list ('none,none,card_testing': the last repeats), a list, or a
    {week: scenario} dict (each holds until the next)."""
    if isinstance(schedule, str):
        text = schedule.strip()
        if "@" in text:
            name, _, week = text.partition("@")
            if not week.strip().isdigit():
                raise LabError(f"schedule {schedule!r}: write 'SCENARIO@WEEK', e.g. 'card_testing@3'.")
            schedule = {1: "none", int(week): name.strip()}
        else:
            schedule = [s.strip() for s in text.split(",") if s.strip()] or ["none"]
    if isinstance(schedule, list | tuple):
        schedule = {i: s for i, s in enumerate(schedule, 1)}
    if not isinstance(schedule, dict) or not schedule:
        raise LabError(f"schedule {schedule!r}: give 'card_testing@3', 'none,card_testing' or {{3: 'card_testing'}}.")
    for name in schedule.values():
        data.scenario_truth(name)  # an unknown name fails here, listing the valid ones
    weeks = sorted(schedule)

    def scenario(week: int) -> str:
        started = [w for w in weeks if w <= week]
        return schedule[started[-1]] if started else "none"

    return scenario


def week_payments(week: int, scenario: str, per_day: int) -> pd.DataFrame:
    """The payments of ``week`` (1 = the week of START): the same every time (a seed per week)."""
    start = START + pd.Timedelta(days=7 * (week - 1))
    return data.simulate_transactions(days=7, start=str(start.date()), seed=SEED + week,
                                      scenario=None if scenario == "none" else scenario, per_day=per_day)


def known_labels(frame: pd.DataFrame, as_of) -> pd.DataFrame:
    """Payments made before ``as_of``, labelled as known then: fraud once its chargeback has
    arrived, else genuine (a payment with no chargeback yet counts as genuine). ``label_available_at``
    becomes when the label used was known (the chargeback, or ``as_of``), so no row uses a later label."""
    as_of = pd.Timestamp(as_of)
    out = frame[frame["timestamp"] < as_of].copy()
    arrived = out["label_available_at"] <= as_of
    out["is_fraud"] = out["is_fraud"].where(arrived, 0).astype("int64")
    out["label_available_at"] = out["label_available_at"].where(arrived, as_of)
    out.attrs = dict(frame.attrs)
    return out.reset_index(drop=True)


# --------------------------------------------------------------------------- the workspace files


_LOOP: dict = {"name": None}  # the registered model of the loop being run or read (None: the course's)


def _model() -> str:
    return _LOOP["name"] or config.model_name()


def _path(*parts: str):
    """A file of the loop: ``loop/`` for the course's model, ``loop/<name>/`` for another one."""
    return config.path("loop", *([_LOOP["name"]] if _LOOP["name"] else []), *parts)


@contextlib.contextmanager
def _loop_of(name: str | None):
    before = _LOOP["name"]
    _LOOP["name"] = None if name in (None, config.model_name()) else name
    try:
        yield
    finally:
        _LOOP["name"] = before


def _read_json(path, default):
    return json.loads(path.read_text()) if path.exists() else default


def _write_json(path, value) -> None:
    config.write_whole(path, json.dumps(value, indent=1, sort_keys=True, default=str))  # a stop leaves the old state


def events(name: str | None = None) -> pd.DataFrame:
    """Every decision of the loop (of model ``name``, default the course's), in order: one row per
    event with its reasons."""
    with _loop_of(name):
        path = _path("events.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    columns = ["seq", "week", "day", "at", "kind", "version", "ok", "reasons"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows)
    return frame[columns + [c for c in frame.columns if c not in columns]]


def events_path(name: str | None = None):
    """Where the events are stored (JSON lines)."""
    with _loop_of(name):
        return _path("events.jsonl")


class _Events:
    """Appends events; on resume, drops any written after the last saved state (they are redone)."""

    def __init__(self, keep: int):
        self.path = _path("events.jsonl")
        lines = self.path.read_text().splitlines(keepends=True) if self.path.exists() else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(lines[:keep]))
        self.count = min(keep, len(lines))

    def add(self, week: int, day: int, kind: str, reasons, version=None, ok=None, **details) -> dict:
        at = START + pd.Timedelta(days=7 * (week - 1) + day)
        event = {"seq": self.count + 1, "week": week, "day": day, "at": str(at), "kind": kind,
                 "version": None if version is None else str(version), "ok": ok,
                 "reasons": [reasons] if isinstance(reasons, str) else list(reasons), **details}
        with open(self.path, "a") as out:
            out.write(json.dumps(event, default=_plain) + "\n")
        self.count += 1
        return event


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# --------------------------------------------------------------------------- the server


class _Server:
    """The server the loop sends traffic to: given (``url``), or the loop's own (uvicorn in a thread of this
    process: a server process of its own would hold 300 MB more), started in the background as soon as there
    is a champion to serve (it takes seconds), and waited for on first use."""

    def __init__(self, url: str | None, admin_token: str | None, prediction_log, name: str):
        self.handle, self._http, self.failed, self._thread, self._error = None, None, 0, None, None
        self.url, self.token, self._start = url, admin_token, (prediction_log, name)
        self.own = url is None  # the loop's own server, in this process

    def start_soon(self) -> None:
        import threading

        if self.url is not None or self._thread is not None:
            return
        from .serving.server import start_server

        self.token = self.token or os.urandom(16).hex()
        log, name = self._start

        def start():
            try:
                self.handle = start_server(name=name, admin_token=self.token, prediction_log=log, in_thread=True)
            except BaseException as exc:  # raised again where the server is first needed
                self._error = exc

        self._thread = threading.Thread(target=start, name="loop-server-start", daemon=True)
        self._thread.start()

    @property
    def http(self):
        import httpx

        if self._http is None:
            if self.url is None:
                self.start_soon()
                self._thread.join()
                if self._error is not None:
                    raise self._error
                self.url = self.handle.url
            self._http = httpx.Client(base_url=self.url.rstrip("/"), timeout=60)
        return self._http

    def sync(self, want) -> None:
        """Make the server serve the registry's rollout ``want`` now (reload), and wait until it does."""
        self.http  # noqa: B018  (starts the server here, with a token, if it is the loop's own)
        if self.token:
            answer = self.http.post("/admin/reload", headers={"Authorization": f"Bearer {self.token}"})
            if answer.status_code != 200:
                raise LabError(f"The server refused to reload ({answer.status_code}): {answer.text[:300]}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = self.http.get("/version").json()
            rollout = info.get("rollout") or {}
            if (str(info.get("version")) == str(want.champion) and rollout.get("mode", "off") == want.mode
                    and (want.mode == "off" or str(rollout.get("candidate_version")) == str(want.candidate))):
                return
            time.sleep(0.05)
        raise LabError(f"The server at {self.url} did not pick up {want} within 60 s: start it with an admin "
                       "token (run_loop(admin_token=...)) or a short poll interval (MLOPS_LAB_POLL_SECONDS).")

    def send(self, frame: pd.DataFrame, batch: int = 500) -> int:  # a day in one or two requests
        from .serving.client import to_payload

        sent = 0
        for lo in range(0, len(frame), batch):
            response = self.http.post("/predict/batch", json={"transactions": to_payload(frame.iloc[lo:lo + batch])})
            if response.status_code != 200:
                self.failed += 1
                raise LabError(f"The server answered {response.status_code}: {response.text[:300]}")
            sent += len(response.json()["predictions"])
        return sent

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        if self._thread is not None:
            self._thread.join()
        if self.handle is not None:
            self.handle.stop()


def _read_log(path, offset: int, ids: set) -> tuple[list[dict], int]:
    """The log's complete lines from byte ``offset`` that are about the payments in ``ids``, and where they end."""
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = offset + chunk.rfind(b"\n") + 1
    records = []
    for number, line in enumerate(chunk[:end - offset].splitlines(), 1):
        try:
            record = _log_record(line, number, path)  # the same reading of a line as read_prediction_log's
        except LabError:  # cut short when its server was stopped: if that payment is one we need, _wait_for_log
            continue  # says it is missing
        if record and record.get("transaction_id") in ids:
            records.append(record)
    return records, end


# --------------------------------------------------------------------------- the loop


def run_loop(weeks: int, schedule="none", policy: Policy = Policy(), url: str | None = None,
             canary_rule: Callable = canary_verdict, resume: bool = True, per_day: int = 1_000,
             name: str | None = None, admin_token: str | None = None, prediction_log=None,
             stop_after_days: int | None = None, report: Callable[[str], None] | None = print) -> pd.DataFrame:
    """Run the loop for ``weeks`` simulated weeks in all (see the module docstring); return ``timeline()``.

    ``schedule``: which scenario each week (``parse_schedule``). ``canary_rule``: the verdict on a
    shadow and a canary, ``canary_rule(champion_live, candidate_live, policy) -> (ok, reasons)``.
    ``resume``: carry on from the saved state, up to week ``weeks`` (False starts again: the champion
    goes back to the one the loop started from, events and state are cleared; the registry keeps its
    versions). ``name``: run on another registered model, with its own events, to compare policies
    (it starts from a copy of the champion the course's loop started from).
    ``url``: a running server for that model (with its ``admin_token``, so changes are picked up at
    once, and its ``prediction_log``); by default the loop starts its own on 127.0.0.1.
    ``stop_after_days``: stop once that many days have been simulated in all (mid-week, say; run
    again to resume).
    ``report``: one line per week."""
    try:
        with _loop_of(name):
            return _run(weeks, parse_schedule(schedule), policy, url, canary_rule, resume, per_day, admin_token,
                        prediction_log, stop_after_days, report)
    except LoopInterrupted:
        raise
    except KeyboardInterrupt:
        # the state is saved day by day: say how to carry on instead of a bare KeyboardInterrupt (still an
        # interrupt: a script or the CLI stops as on any Ctrl-C)
        raise LoopInterrupted("The loop was interrupted. Nothing is lost: every finished day is saved. Run the "
                              "same call again (resume=True, the default; or `mlops-lab loop` with the same "
                              "options) to carry on where it stopped, or resume=False (`--fresh`) to start "
                              "again.") from None


class LoopInterrupted(KeyboardInterrupt):
    """Ctrl-C during the loop, saying how to carry on."""


def _run(weeks, scenario_of, policy, url, canary_rule, resume, per_day, admin_token, prediction_log,
         stop_after_days, report) -> pd.DataFrame:
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise LabError(f"weeks={weeks!r} must be a whole number of weeks, at least 1.")
    state = _read_json(_path("state.json"), None) if resume else None
    work = stop_after_days is None or (7 * state["week"] + state["day"] if state else 0) < stop_after_days
    with _open(scenario_of, policy, url, canary_rule, resume, per_day, admin_token, prediction_log, report,
               start_server=work, resuming=weeks) as run:
        while run.state["week"] < weeks:
            week = run.state["week"] + 1
            if not run_week(run, week, stop_after_days):
                break
            # no gc.collect() here: a week's frames are freed by reference counting, and a full collection
            # (0.1-0.3 s a week, more as the kernel's heap grows) lowered no peak (lab 08's two loops, measured)
    return _timeline(None)


# --------------------------------------------------------------------------- the steps of a week
#
# One implementation of each step, called by run_loop (run_week, in order) and by the Dagster assets of
# mlops_lab.orchestration (one asset each). Every step reads and saves the loop's state, and is
# idempotent: a step already done for a week returns what it decided then, without a new event.


class LoopRun:
    """An open loop (``open_loop``): its saved state, its event log, the server, the policy."""

    def __init__(self, state, state_path, log_path, server, scenario_of, policy, canary_rule, report):
        self.state, self.state_path, self.log_path, self.server = state, state_path, log_path, server
        self.scenario_of, self.policy, self.canary_rule, self.report = scenario_of, policy, canary_rule, report
        self.events = _Events(state["events"])
        self.name = _model()
        self.opened_at = 7 * state["week"] + state["day"]  # days sent before this process opened the loop

    def save(self) -> None:
        _save(self.state, self.events)

    def steps(self, week: int) -> dict:
        """What the steps of ``week`` decided (kept in the state, so a step done before answers the same)."""
        return self.state.setdefault("steps", {}).setdefault(str(week), {})

    def finished(self, week: int) -> bool:
        return self.state["week"] >= week

    def as_of(self, week: int) -> pd.Timestamp:
        """The end of ``week``: when its decisions are taken."""
        return START + pd.Timedelta(days=7 * week)


@contextlib.contextmanager
def open_loop(schedule="none", policy: Policy = Policy(), url: str | None = None,
              canary_rule: Callable = canary_verdict, per_day: int = 1_000, name: str | None = None,
              admin_token: str | None = None, prediction_log=None, report: Callable[[str], None] | None = print):
    """The loop of model ``name`` opened for its steps (``serve_week``, ``monitor_week``, ...), as
    ``run_loop`` opens it: its state (prepared on first use), its events, a server (``url``, or its own).
    The orchestration layer (mlops_lab.orchestration) drives the same steps one asset at a time."""
    with _loop_of(name), _open(parse_schedule(schedule), policy, url, canary_rule, True, per_day, admin_token,
                               prediction_log, report) as run:
        yield run


@contextlib.contextmanager
def _open(scenario_of, policy, url, canary_rule, resume, per_day, admin_token, prediction_log, report,
          start_server: bool = True, resuming: int | None = None):
    state_path = _path("state.json")
    if not resume:
        _start_again(_read_json(state_path, None))
    state = _read_json(state_path, None)
    log_path = type(_path())(prediction_log or _path("predictions.jsonl")).resolve()
    server = _Server(url, admin_token, log_path, _model())
    try:
        if state is None:
            state = _fresh_state(per_day, report, server.start_soon if start_server else lambda: None)
        elif state["per_day"] != per_day:
            raise LabError(f"The saved loop ran at per_day={state['per_day']}; resume with the same traffic, or "
                           "start again with resume=False.")
        elif resuming is None or state["week"] < resuming:
            if start_server:
                server.start_soon()
            if report and resuming is not None:
                report(f"loop: resuming at week {state['week'] + 1}, day {state['day']} "
                       f"(events so far: {state['events']})")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        if state.get("log_path") != str(log_path):  # another server's log: read it from the start (by payment id)
            state["log_path"], state["log_offset"] = str(log_path), 0
        run = LoopRun(state, state_path, log_path, server, scenario_of, policy, canary_rule, report)
        _adopt(_registry().rollout(_model()), state, run.events, server)
        yield run
    finally:  # the state stays as last saved (a step cut short is redone on resume); count failures
        saved = _read_json(state_path, state)
        if saved is not None:
            saved["failed_requests"] = saved.get("failed_requests", 0) + server.failed
            _write_json(state_path, saved)
        server.close()


def run_week(run: LoopRun, week: int, stop_after_days: int | None = None) -> bool:
    """Every step of ``week``, in order (what ``run_loop`` does each week); False if stopped mid-week."""
    payments = week_payments(week, run.scenario_of(week), run.state["per_day"])
    if not serve_week(run, week, payments, stop_after_days):
        return False
    del payments
    monitor_week(run, week)
    sets = retrain_data(run, week)
    if sets is not None:
        train, valid, holdout = sets
        trained = train_candidate(run, week, train, valid)
        if candidate_ci(run, week, trained, train, valid):
            version = register_candidate(run, week, trained, train, valid)
            gate_candidate(run, week, version, holdout)
    return True


def serve_week(run: LoopRun, week: int, payments: pd.DataFrame, stop_after_days: int | None = None) -> bool:
    """Send ``week``'s payments to the server day by day, moving the rollout on at day boundaries
    (shadow, canary, promotion or rollback), and read what the server logged. False if stopped."""
    state = run.state
    if run.finished(week) or (state["week"] == week - 1 and state["day"] == 7):
        return True
    if state["week"] != week - 1:
        raise LabError(f"Week {week} cannot run yet: the loop has finished week {state['week']}; run the weeks "
                       f"in order (week {state['week'] + 1} next).")
    state["scenarios"][str(week)] = run.scenario_of(week)
    while state["day"] < 7:
        if stop_after_days is not None and 7 * state["week"] + state["day"] >= stop_after_days:
            run.save()
            return False
        day = state["day"]
        if _rollout_due(week, day, state, run.policy):
            _read_days(week, payments, state, run.log_path, lambda lost: _send_again(run, lost))
            _rollout_step(week, day, state, run.events, run.server, run.policy, run.canary_rule)
        run.server.send(payments[_day_of(payments) == 7 * (week - 1) + day])
        state["day"] += 1
        run.save()
    _read_days(week, payments, state, run.log_path, lambda lost: _send_again(run, lost))
    run.save()
    return True


def _send_again(run: LoopRun, lost: pd.DataFrame) -> bool:
    """Payments sent before this process opened the loop whose log records never came: the loop's own server
    that answered them died with its process (a restarted kernel) before it wrote its log; sent again to
    the server of this process (True), or left alone (False): a server the learner started may still be
    writing, and payments sent by this process were answered by a server that is alive. The rollout moves
    only after the days before it are read, so they are answered under the rollout they were sent under
    (unless the stop came inside a rollout step)."""
    lost = lost[_day_of(lost) < run.opened_at]
    if not run.server.own or lost.empty:
        return False
    if run.report:
        run.report(f"  {len(lost)} payments sent before the last stop are missing from the prediction log (its "
                   "server stopped before writing them): sending them again")
    run.server.send(lost)
    return True


def monitor_week(run: LoopRun, week: int) -> dict:
    """The week's drift report and lab 07's alert rules on it (an ``alert`` event when one fires); then
    whether to retrain (``retrain`` in the answer: why, or None). With nothing to retrain the week is over."""
    from .monitoring.alerts import evaluate
    from .monitoring.drift import ReferenceProfile
    from .monitoring.stream import StreamSettings, daily_windows

    state, steps = run.state, run.steps(week)
    weeks = _read_json(_path("weeks.json"), {})
    if str(week) in weeks and (run.finished(week) or "retrain" in steps):
        return {**weeks[str(week)], "retrain": steps.get("retrain")}
    if state["week"] != week - 1 or state["day"] != 7:
        raise LabError(f"Week {week} has not been served yet (the loop is at week {state['week'] + 1}, day "
                       f"{state['day']}): serve it first.")
    as_of = run.as_of(week)
    if state.get("reference_pending"):  # a new champion: the week it was judged on becomes the reference
        _refit_reference(state.pop("reference_pending"), state)
    served = _days_log(7 * (week - 1), 7 * week)
    profile = ReferenceProfile.load(_path("reference.json"))
    settings = StreamSettings(start=str((as_of - pd.Timedelta(days=7)).date()), days=7, window_days=7,
                              per_day=state["per_day"])
    window = daily_windows(served.sort_values("timestamp").reset_index(drop=True), profile, settings)
    # cost on the chargebacks known now, so alert rules may use it too (lab 07's metric cost_per_1000)
    window["cost_per_1000"] = live_performance(served, as_of)[2]
    fired = evaluate(list(run.policy.alert_rules), window)
    fired = fired[fired["fired"]]
    row = window.iloc[0]
    monitor = {"week": week, "scenario": state["scenarios"][str(week)], "requests": int(len(served)),
               "drifted": row["drifted"], "drifted_columns": int(row["drifted_columns"]),
               "flag_rate": float(row["flag_rate"]), "chargebacks_per_1000": float(row["chargebacks_per_1000"]),
               "cost_per_1000": float(row["cost_per_1000"]), "alerts": list(fired["rule"])}
    weeks[str(week)] = monitor
    _write_json(_path("weeks.json"), weeks)
    if len(fired):
        run.events.add(week, 7, "alert", list(fired["message"]), rules=list(fired["rule"]))
    steps["retrain"] = _retrain_reason(run, week, list(fired["rule"]))
    if steps["retrain"] is None:
        _finish_week(run, week)
    else:
        run.save()
    return {**monitor, "retrain": steps["retrain"]}


def _retrain_reason(run: LoopRun, week: int, alerts: list[str]) -> str | None:
    """Why the loop retrains at the end of ``week`` (an alert, or the schedule), or None (a skip is an event)."""
    policy, state = run.policy, run.state
    scheduled = bool(policy.retrain_every) and week % policy.retrain_every == 0
    if not (alerts or scheduled):
        return None
    why = "alert: " + ", ".join(alerts) if alerts else f"schedule: every {policy.retrain_every} week(s)"
    if state.get("rollout"):
        run.events.add(week, 7, "retrain skipped", f"{why}, but v{state['rollout']['version']} is still rolling out")
        return None
    promoted = state.get("promoted_week")
    if promoted is not None and week - promoted < policy.cooldown_weeks and not scheduled:
        run.events.add(week, 7, "retrain skipped", f"{why}, but v{state['reference_version']} was promoted in week "
                       f"{promoted} (cooldown of {policy.cooldown_weeks} week(s))")
        return None
    return why


def retrain_data(run: LoopRun, week: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """The labels known at the end of ``week``, split into training days, validation days (the
    threshold's) and the gate's holdout (the week itself); None when the week retrains nothing."""
    if run.finished(week) or run.steps(week).get("retrain") is None:
        return None
    policy, as_of = run.policy, run.as_of(week)
    history = [data.load_snapshot()] + [week_payments(w, run.scenario_of(w), run.state["per_day"])
                                        for w in range(1, week + 1)]
    frame = known_labels(pd.concat(history, ignore_index=True), as_of)
    holdout = frame[frame["timestamp"] >= as_of - pd.Timedelta(days=7)].reset_index(drop=True)
    cut = as_of - pd.Timedelta(days=7 + policy.valid_days)  # training ends here; validation, then the holdout
    valid = frame[(frame["timestamp"] >= cut) & (frame["timestamp"] < as_of - pd.Timedelta(days=7))]
    train = frame[(frame["timestamp"] >= cut - pd.Timedelta(days=policy.train_days)) & (frame["timestamp"] < cut)]
    return train.reset_index(drop=True), valid.reset_index(drop=True), holdout


def train_candidate(run: LoopRun, week: int, train: pd.DataFrame, valid: pd.DataFrame):
    """Retrain on the labels known at the end of ``week`` (a ``retrain`` event); the threshold keeps the
    champion's flag rate (policy.keep_flag_rate). Training is deterministic: a rerun trains the same model."""
    from . import training
    from .setup_steps import _trained

    registry, policy, steps, as_of = _registry(), run.policy, run.steps(week), run.as_of(week)
    # the same labels and options trained before (another loop, a rerun) give the same model at once
    trained = _trained(policy.model_kind, train, valid, cost_aware=policy.cost_aware, **policy.model_params)
    if policy.keep_flag_rate:
        # Recent labels are mostly still missing (chargebacks take weeks), so a threshold tuned on them
        # flags too little; instead keep the champion's share of flags on the validation days.
        champion = registry.alias_version(registry.CHAMPION, _model())
        tags = registry._client()[1].get_model_version(_model(), champion).tags
        share = float((training.predict_scores(registry.load(champion, _model()), valid)
                       >= float(tags.get("threshold") or 0.5)).mean())
        scores = training.predict_scores(trained.pipeline, valid)
        trained.threshold = float(np.quantile(scores, 1 - share)) if share > 0 else trained.threshold
        trained.valid_metrics = training.metrics(valid["is_fraud"], scores, valid["amount"], trained.threshold)
    if not steps.get("trained"):
        run.events.add(week, 7, "retrain", [steps["retrain"], f"{policy.model_kind} on {len(train)} payments from "
                       f"{train['timestamp'].min():%Y-%m-%d} to {train['timestamp'].max():%Y-%m-%d} with "
                       f"{int(train['is_fraud'].sum())} chargebacks known at {as_of:%Y-%m-%d}; threshold "
                       f"set on the {policy.valid_days} days before the holdout week"
                       + (" (the champion's flag rate)" if policy.keep_flag_rate else "")
                       + ("; frauds weighted by their amount" if policy.cost_aware else "")],
                       valid_pr_auc=round(trained.valid_metrics["pr_auc"], 4))
        steps["trained"] = True
        run.save()
    return trained


def candidate_ci(run: LoopRun, week: int, trained, train: pd.DataFrame, valid: pd.DataFrame) -> bool:
    """Lab 06's CI stages on the candidate (a ``ci`` event); a failing candidate ends the week."""
    from . import ci

    steps = run.steps(week)
    if "ci" in steps:
        return steps["ci"]
    policy = run.policy
    # The data stage tests the loop's own training data; latency and behaviour run on lab 06's fixed
    # sample of payments (a behavioural suite is a fixed set of cases, not this week's traffic).
    ctx = ci.Context(recipe=ci.Recipe(policy.model_kind, dict(policy.model_params)))
    ctx._frame, ctx.candidate = pd.concat([train, valid], ignore_index=True), trained
    ctx._split = (train, valid, data.time_split(data.load_snapshot())[2])
    ctx.notes["as_of"] = run.as_of(week)
    outcomes = []
    for stage in ci.STAGES:
        if stage.name in CI_STAGES:
            try:
                status, reason = stage.run(ctx)
            except LabError as exc:
                status, reason = "fail", str(exc)
            outcomes.append(f"{stage.name}: {status}: {reason}")
            if status == "fail":
                break
    passed = not any(": fail: " in o for o in outcomes)
    run.events.add(week, 7, "ci", outcomes, ok=passed)
    steps["ci"] = passed
    if passed:
        run.save()
    else:
        _finish_week(run, week)
    return passed


def register_candidate(run: LoopRun, week: int, trained, train: pd.DataFrame, valid: pd.DataFrame) -> str:
    """Log the candidate's run and register it as a version of the loop's model (a ``register`` event)."""
    from . import training

    steps = run.steps(week)
    if steps.get("version"):
        return steps["version"]
    policy, as_of = run.policy, run.as_of(week)
    _, client = _registry()._client()
    name = _model()
    # what the model depends on: a resumed step finds the version it registered before the stop
    key = data.fingerprint(pd.DataFrame({"what": [json.dumps(
        [week, str(as_of), data.fingerprint(train), data.fingerprint(valid), policy.model_kind,
         sorted(policy.model_params.items()), policy.keep_flag_rate, policy.cost_aware, repr(trained.threshold)],
        default=str)]}))
    earlier = [v for v in client.search_model_versions(f"name = '{name}'") if v.tags.get("loop.key") == key]
    if earlier:  # registered before a stop: the same model, trained again the same way
        version = str(earlier[0].version)
    else:
        # the loop's own experiment: its retrains (trained on newer data, scored on their own few days) must
        # not top lab 02's compare_runs(), from which labs 02-03 and lab.setup pick the course's models
        run_id = training.log_training_run(trained, valid, run_name=f"loop week {week}",
                                           experiment=config.experiment_name("loop"))
        version = _registry().register(run_id, name)
        client.set_model_version_tag(name, version, "loop.week", str(week))
        client.set_model_version_tag(name, version, "loop.key", key)
    run.events.add(week, 7, "register", f"challenger v{version} (threshold {trained.threshold:.4f})", version=version)
    steps["version"] = version
    run.save()
    return version


def gate_candidate(run: LoopRun, week: int, version: str, holdout: pd.DataFrame) -> dict:
    """The gate: the challenger against the champion on the week's known labels (PR-AUC beyond noise,
    enough chargebacks, cost); a pass starts the rollout next week. Ends the week; returns the gate event."""
    steps = run.steps(week)
    if "gate" in steps or run.finished(week):
        return steps.get("gate") or {}
    registry, policy, state, as_of = _registry(), run.policy, run.state, run.as_of(week)
    digest = data.fingerprint(holdout)
    if digest == state.get("last_holdout"):
        raise LabError(f"The gate's holdout of week {week} is the one the last gate used ({digest}): the holdout "
                       "must roll forward.")
    decision = registry.gate(version, holdout, margin=policy.margin, name=_model())
    state["last_holdout"] = digest
    cost_ok, cost_reason, costs = _cost_check(decision, holdout, policy)
    known = int(holdout["is_fraud"].sum())
    enough = known >= policy.gate_min_chargebacks
    evidence = (f"{known} chargebacks known in the holdout ({policy.gate_min_chargebacks} needed): "
                + ("enough to judge" if enough else "too few to judge, kept the champion"))
    passed = decision.verdict == "passed" and cost_ok and enough
    event = run.events.add(
        week, 7, "gate", [evidence, str(decision), cost_reason], version=version, ok=passed, holdout_digest=digest,
        holdout=f"{holdout['timestamp'].min():%Y-%m-%d} to {holdout['timestamp'].max():%Y-%m-%d}",
        holdout_rows=len(holdout), holdout_chargebacks=int(holdout["is_fraud"].sum()),
        challenger_pr_auc=round(decision.challenger_pr_auc, 4),
        champion_pr_auc=None if decision.champion_pr_auc is None else round(decision.champion_pr_auc, 4),
        interval=decision.interval, champion=decision.champion_version, **costs)
    if passed:
        state["rollout"] = {"version": version, "phase": "pending", "since": 7 * week, "share": 0.0,
                            "holdout_from": str(holdout["timestamp"].min()), "as_of": str(as_of)}
    steps["gate"] = json.loads(json.dumps(event, default=_plain))
    _finish_week(run, week)
    return steps["gate"]


def _finish_week(run: LoopRun, week: int) -> None:
    run.state["week"], run.state["day"] = week, 0
    run.save()
    if run.report:
        run.report(_week_line(week))


def _registry():
    from . import registry

    return registry


def _start_again(state: dict | None) -> None:
    """Put the model back where the loop started (its first champion, no rollout), and forget the
    loop's events and state (not other loops' folders inside loop/; the registry keeps its versions)."""
    import shutil

    registry = _registry()
    if state is not None:
        if registry.rollout(_model()).candidate is not None:
            registry.abort_rollout("the loop started again", _model())
        if registry.alias_version(registry.CHAMPION, _model()) != state["first_champion"]:
            registry.set_alias(registry.CHAMPION, state["first_champion"], _model())

    for part in ("state.json", "events.jsonl", "weeks.json", "reference.json", "predictions.jsonl", "days"):
        path = _path(part)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _fresh_state(per_day: int, report, champion_ready: Callable[[], None]) -> dict:
    """Prepare what labs 01-07 leave behind (data, a champion, its reference profile)."""
    from .monitoring import stream
    from .setup_steps import STEPS

    for lab in sorted(STEPS):
        if lab <= 3:  # data, runs, a gated champion
            STEPS[lab]()
    registry = _registry()
    champion = registry.alias_version(registry.CHAMPION, _model())
    if champion is None:  # another model (a what-if run) starts where the course's loop started
        course = _read_json(config.path("loop", "state.json"), {}).get("first_champion") \
            or registry.alias_version(registry.CHAMPION)
        run_id = registry._client()[1].get_model_version(config.model_name(), course).run_id
        champion = registry.register(run_id, _model())
        registry.set_alias(registry.CHAMPION, champion, _model())
    champion_ready()  # the server can start loading it now
    for lab in sorted(STEPS):
        if 3 < lab <= 7:
            STEPS[lab]()
    if _LOOP["name"] is None:  # the course's champion: lab 07's profile (cached in the workspace)
        profile = stream.course_profile()
    else:  # this model's champion scores the course's training period itself
        from .serving.model import load_from_registry

        model = load_from_registry(registry.CHAMPION, _model())
        train = data.time_split(data.load_snapshot())[0]
        profile = stream.reference_profile(model.pipeline, model.threshold, train)
        profile.meta = {"model_version": champion, "reference": "course training period"}
    profile.save(_path("reference.json"))
    if report:
        report(f"loop: starting from champion v{champion}, {per_day} payments a day")
    return {"week": 0, "day": 0, "per_day": per_day, "events": 0, "log_offset": 0, "rollout": None,
            "first_champion": champion, "reference_version": champion, "last_holdout": None,
            "failed_requests": 0, "scenarios": {}}


def _save(state: dict, ev: _Events) -> None:
    state["events"] = ev.count
    _write_json(_path("state.json"), state)


def _day_file(week: int, day: int):
    path = _path("days", f"week{week:02d}-day{day}.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _day_of(payments: pd.DataFrame) -> pd.Series:
    """Each payment's day, counted from START (day 0)."""
    return (payments["timestamp"] - START).dt.days


def _read_days(week: int, payments: pd.DataFrame, state: dict, log_path, send_again=None) -> None:
    """Read from the prediction log the days of ``week`` sent but not read yet, into one file per day
    (the payment's time and label beside what the server logged). The log is read once per rollout
    step and once a week, not after every day: the server writes it off the request path. Payments
    whose records do not come (their server died before writing them) go to ``send_again``, once."""
    days = [d for d in range(state["day"]) if not _day_file(week, d).exists()]
    if not days:
        return
    day_of = _day_of(payments)
    sent = payments[day_of.isin([7 * (week - 1) + d for d in days])]
    served, state["log_offset"] = _wait_for_log(log_path, state["log_offset"], sent, send_again)
    served = served.merge(sent[["transaction_id", "timestamp", "is_fraud", "label_available_at"]],
                          on="transaction_id", how="left")
    served_day = _day_of(served) - 7 * (week - 1)
    for d in days:
        served[served_day == d].reset_index(drop=True).to_parquet(_day_file(week, d), index=False)


def _wait_for_log(path, offset: int, sent: pd.DataFrame, send_again=None) -> tuple[pd.DataFrame, int]:
    """The log records of the payments ``sent`` (the last of each), and where they end in the log (the
    server writes its log off the request path, every 50 ms). Records still missing after 5 s, the log
    quiet for 2 s of it, are lost: those payments go to ``send_again`` once (True: sent, waited for again)."""
    ids, records = set(sent["transaction_id"]), []
    start = last_growth = time.monotonic()
    deadline = start + 30
    while True:
        more, offset = _read_log(path, offset, ids)
        records += more
        seen = {r["transaction_id"] for r in records}
        now = time.monotonic()
        if len(seen) == len(ids) or now > deadline:
            break
        last_growth = now if more else last_growth
        if send_again is not None and now - start > 5 and now - last_growth > 2:
            if send_again(sent[~sent["transaction_id"].isin(seen)]):
                deadline = time.monotonic() + 30
            send_again = None
        time.sleep(0.05)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=["transaction_id", "features"])
    frame = frame.drop_duplicates("transaction_id", keep="last").reset_index(drop=True)
    if len(frame) < len(ids):
        raise LabError(f"The prediction log {path} holds {len(frame)} of the {len(ids)} payments sent: is the server "
                       "writing its log there? Pass run_loop(prediction_log=...) for a server you started (or "
                       "run_loop(..., resume=False) to start the loop over).")
    features = pd.DataFrame.from_records(frame.pop("features").tolist(), index=frame.index)
    return pd.concat([frame.rename(columns={"timestamp": "served_at"}), features], axis=1), offset


def _adopt(current, state: dict, ev: _Events, server: _Server) -> None:
    """A rollout started by hand (lab 08's drill) is taken over by the loop from the next day on."""
    known = state.get("rollout")
    if current.candidate is None or (known and known["version"] == current.candidate):
        return
    week, day = state["week"] + 1, state["day"]
    state["rollout"] = {"version": current.candidate, "phase": current.mode,
                        "since": 7 * (week - 1) + day, "share": current.share}
    ev.add(week, day, "adopted", f"v{current.candidate} was already in {current.mode} (started outside the loop)",
           version=current.candidate)
    server.sync(current)


def _rollout_due(week: int, day: int, state: dict, policy: Policy) -> bool:
    plan = state.get("rollout")
    if not plan:
        return False
    elapsed = 7 * (week - 1) + day - plan["since"]
    return (plan["phase"] == "pending" or (plan["phase"] == "shadow" and elapsed >= policy.shadow_days)
            or (plan["phase"] == "canary" and elapsed >= policy.canary_days))


def _rollout_step(week: int, day: int, state: dict, ev: _Events, server: _Server, policy: Policy,
                  canary_rule) -> None:
    """At the start of ``day``: move the rollout on when its phase has lasted long enough."""
    registry = _registry()
    plan = state.get("rollout")
    if not plan:
        return
    now = 7 * (week - 1) + day
    elapsed = now - plan["since"]
    version = plan["version"]
    if plan["phase"] == "pending":
        want = registry.start_shadow(version, _model())
        server.sync(want)
        state["rollout"] = {**plan, "phase": "shadow", "since": now}
        ev.add(week, day, "shadow", f"v{version} scores every payment beside champion v{want.champion}; "
               "the champion answers", version=version)
        return
    log = _days_log(plan["since"], now)
    champion = registry.rollout(_model()).champion
    if plan["phase"] == "shadow" and elapsed >= policy.shadow_days:
        tags = registry._client()[1].get_model_version(_model(), version).tags
        shadow = shadow_figures(log, version, float(tags.get("threshold") or 0.5))
        live = live_figures(log, champion)
        ok, reasons = _verdict(canary_rule, live, shadow, policy)
        ev.add(week, day, "shadow verdict", reasons, version=version, ok=ok, figures=asdict(shadow),
               champion_figures=asdict(live))
        if ok:
            want = registry.start_canary(policy.canary_share, _model())
            server.sync(want)
            state["rollout"] = {**plan, "phase": "canary", "since": now, "share": policy.canary_share}
            ev.add(week, day, "canary", f"v{version} answers {policy.canary_share:.0%} of payments", version=version,
                   share=policy.canary_share)
        else:
            _rollback(week, day, state, ev, server, version, "shadow", reasons)
    elif plan["phase"] == "canary" and elapsed >= policy.canary_days:
        canary, live = live_figures(log, version), live_figures(log, champion)
        share = canary.requests / max(len(log), 1)
        ok, reasons = _verdict(canary_rule, live, canary, policy)
        ev.add(week, day, "canary verdict", reasons, version=version, ok=ok, figures=asdict(canary),
               champion_figures=asdict(live), answered_share=round(share, 4))
        if ok:
            current = registry.rollout(_model())
            # promoted already, when a stop came between the promotion and the saved state
            want = current if current.champion == version else registry.promote_candidate(_model())
            server.sync(want)
            state["rollout"] = None
            state["reference_pending"] = {"version": version, "from": plan["holdout_from"], "to": plan["as_of"]}
            state["promoted_week"] = week
            ev.add(week, day, "promotion", f"v{version} is champion (v{champion} before it)", version=version,
                   ok=True, previous=champion)
        else:
            _rollback(week, day, state, ev, server, version, "canary", reasons)


def _verdict(rule, champion: LiveFigures, candidate: LiveFigures, policy: Policy) -> tuple[bool, list[str]]:
    """``rule``'s verdict, checked: a rule (the learner's, in lab 08) must say yes or no, and why."""
    answer = rule(champion, candidate, policy)
    if (not isinstance(answer, tuple) or len(answer) != 2 or not isinstance(answer[0], bool | np.bool_)
            or isinstance(answer[1], str) or not all(isinstance(r, str) for r in answer[1])):
        raise LabError(f"The canary rule returned {answer!r}; it must return (promote, reasons): True or False, and "
                       "a list of sentences, e.g. (False, ['flag rate 9.1% > 3.0%']).")
    return bool(answer[0]), list(answer[1])


def _rollback(week, day, state, ev, server, version, phase, reasons) -> None:
    registry = _registry()
    why = f"{phase} verdict: " + "; ".join(reasons)
    current = registry.rollout(_model())
    want = current if current.candidate is None else registry.abort_rollout(why, _model())
    server.sync(want)
    state["rollout"] = None
    ev.add(week, day, "rollback", why, version=version, ok=False, back_to=want.champion)


def _days_log(since: int, until: int) -> pd.DataFrame:
    """The served payments of absolute days [since, until)."""
    parts = [pd.read_parquet(_day_file(d // 7 + 1, d % 7)) for d in range(since, until)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["model_version", "decision"])


def _cost_check(decision, holdout: pd.DataFrame, policy: Policy) -> tuple[bool, str, dict]:
    """The gate's second question: does the challenger, at its own threshold, cost no more than the
    champion at its own on the holdout (labels known at decision time), within the policy's tolerance?
    The gate scored both already: ``decision`` carries their expected cost (EUR) on the holdout."""
    per_1000 = 1000 / max(len(holdout), 1)
    new = decision.challenger_cost * per_1000
    if decision.champion_version is None:
        return True, f"expected cost on the holdout: EUR {new:,.0f} per 1,000 payments (no champion to compare)", \
            {"challenger_cost_per_1000": round(new, 1)}
    old = decision.champion_cost * per_1000
    ok = new <= old * (1 + policy.max_cost_increase)
    reason = (f"expected cost on the holdout: v{decision.challenger_version} EUR {new:,.0f} per 1,000 payments "
              f"against v{decision.champion_version}'s EUR {old:,.0f} ({new / old - 1:+.0%}; at most "
              f"{policy.max_cost_increase:+.0%} allowed): " + ("ok" if ok else "too costly, kept the champion"))
    return ok, reason, {"challenger_cost_per_1000": round(new, 1), "champion_cost_per_1000": round(old, 1)}


def _refit_reference(pending: dict, state: dict) -> None:
    """The drift reference becomes the week the new champion was judged on, scored by it."""
    from .monitoring.stream import reference_profile

    registry = _registry()
    version = pending["version"]
    frame = pd.concat([week_payments(w, state["scenarios"][str(w)], state["per_day"])
                       for w in sorted(map(int, state["scenarios"]))], ignore_index=True)
    window = frame[(frame["timestamp"] >= pd.Timestamp(pending["from"])) & (frame["timestamp"] < pd.Timestamp(pending["to"]))]
    tags = registry._client()[1].get_model_version(_model(), version).tags
    profile = reference_profile(registry.load(version, _model()), float(tags.get("threshold") or 0.5), window)
    profile.meta = {"model_version": version, "reference": f"{pending['from']} to {pending['to']}"}
    profile.save(_path("reference.json"))
    state["reference_version"] = version


# --------------------------------------------------------------------------- the timeline


def timeline(as_of=None, name: str | None = None) -> pd.DataFrame:
    """One row per week: traffic, drift, alerts, live PR-AUC and expected cost on the chargebacks known
    at ``as_of`` (default: now, the end of the last simulated day), the versions in service, the events."""
    with _loop_of(name):
        return _timeline(as_of)


def _timeline(as_of, only: int | None = None) -> pd.DataFrame:
    state = _read_json(_path("state.json"), None)
    weeks = _read_json(_path("weeks.json"), {})
    columns = ["week", "scenario", "payments", "drift", "alerts", "chargebacks", "pr_auc", "cost_per_1000",
               "champion", "shadow", "canary", "events"]
    if state is None:
        return pd.DataFrame(columns=columns).set_index("week")
    now = START + pd.Timedelta(days=7 * state["week"] + state["day"])
    as_of = now if as_of is None else pd.Timestamp(as_of)
    log = events(_LOOP["name"])
    rows = []
    for week in range(1, state["week"] + (1 if state["day"] else 0) + 1):
        if only is not None and week != only:
            continue
        days = [_day_file(week, d) for d in range(7) if _day_file(week, d).exists()]
        if not days:
            continue
        served = pd.concat([pd.read_parquet(p) for p in days], ignore_index=True)
        chargebacks, pr_auc, cost_per_1000 = live_performance(served, as_of)
        role = served["role"] if "role" in served else pd.Series("champion", index=served.index)
        monitor = weeks.get(str(week), {})
        happened = log[log["week"] == week] if len(log) else log
        rows.append({
            "week": week, "scenario": monitor.get("scenario", state.get("scenarios", {}).get(str(week), "")),
            "payments": len(served),
            "drift": (monitor.get("drifted") or "none") if monitor else "(week not finished)",
            "alerts": ", ".join(monitor.get("alerts", [])),
            "chargebacks": chargebacks, "pr_auc": round(pr_auc, 3), "cost_per_1000": round(cost_per_1000, 1),
            "champion": _versions(served.loc[role != "canary", "model_version"]),
            "shadow": _versions(served["shadow_version"]) if "shadow_version" in served else "",
            "canary": _versions(served.loc[role == "canary", "model_version"]),
            "events": ", ".join(_event_label(e) for e in happened.to_dict("records")),
        })
    return pd.DataFrame(rows, columns=columns).set_index("week")


def live_performance(served: pd.DataFrame, as_of) -> tuple[int, float, float]:
    """(chargebacks known, PR-AUC, expected cost per 1,000 payments) of served payments (``score``,
    ``decision``, ``amount``, ``is_fraud``, ``label_available_at``) on the chargebacks known at
    ``as_of``; a payment with no chargeback yet counts as genuine, so recent figures firm up later."""
    from sklearn.metrics import average_precision_score

    from .training import DECLINE_COST, REVIEW_FEE

    y = ((served["is_fraud"] == 1) & (served["label_available_at"] <= pd.Timestamp(as_of))).to_numpy()
    flag = (served["decision"] == "flag").to_numpy()
    amount = served["amount"].to_numpy(dtype=float)
    cost = (amount * (y & ~flag)).sum() + flag.sum() * REVIEW_FEE + (flag & ~y).sum() * DECLINE_COST
    pr_auc = float(average_precision_score(y, served["score"])) if 0 < y.sum() < len(y) else float("nan")
    return int(y.sum()), pr_auc, float(1000 * cost / max(len(served), 1))


def _versions(values: pd.Series) -> str:
    seen = [str(v) for v in pd.unique(values.dropna()) if str(v) not in ("", "None", "nan")]
    return ", ".join(f"v{v}" for v in seen)


def _event_label(event: dict) -> str:
    kind, version = event["kind"], event.get("version")
    if kind == "gate":
        return f"gate v{version} {'passed' if event.get('ok') else 'kept champion'}"
    if kind in ("shadow verdict", "canary verdict", "ci"):
        return f"{kind} {'ok' if event.get('ok') else 'FAIL'}"
    if kind in ("promotion", "rollback", "shadow", "canary", "register"):
        return f"{kind} v{version} (day {event['day']})" if kind != "register" else f"register v{version}"
    return kind


def _week_line(week: int) -> str:
    row = _timeline(None, only=week).loc[week]
    return (f"week {week} ({row['scenario']}): {row['payments']} payments, drift: {row['drift']}; "
            f"champion {row['champion']}" + (f"; {row['events']}" if row["events"] else ""))


def plot_timeline(table: pd.DataFrame | None = None, as_of=None, name: str | None = None):
    """The timeline as a figure: live PR-AUC and expected cost per week, drift and alerts, the
    versions in service, and the rollout events."""
    import matplotlib.pyplot as plt

    table = timeline(as_of, name) if table is None else table
    if table.empty:
        raise LabError("The loop has not run yet: run_loop(weeks, schedule) first.")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    weeks = table.index.to_numpy()
    top.plot(weeks, table["pr_auc"], "o-", label="live PR-AUC (chargebacks known so far)")
    top.set_ylabel("PR-AUC")
    cost = top.twinx()
    cost.plot(weeks, table["cost_per_1000"], "s--", color="tab:red", label="expected cost per 1,000 (EUR)")
    cost.set_ylabel("EUR per 1,000 payments")
    top.legend(loc="upper left", fontsize=8)
    cost.legend(loc="upper right", fontsize=8)
    drifted = [0 if d in ("none", "(week not finished)") else len(str(d).split(",")) for d in table["drift"]]
    bottom.bar(weeks, drifted, color=["tab:orange" if a else "tab:gray" for a in table["alerts"]], alpha=0.6)
    bottom.set_ylabel("drifted columns")
    bottom.set_xlabel("week")
    bottom.set_xticks(weeks)
    for week, row in table.iterrows():
        text = "\n".join(filter(None, [f"champion {row['champion']}", row["shadow"] and f"shadow {row['shadow']}",
                                        row["canary"] and f"canary {row['canary']}"]))
        bottom.annotate(text, (week, 0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=7)
        for label in str(row["events"]).split(", "):
            if label.startswith(("promotion", "rollback")):
                top.axvline(week, color="green" if label.startswith("promotion") else "red", alpha=0.3)
                top.annotate(label, (week, top.get_ylim()[1]), fontsize=7, rotation=90, va="top")
    top.set_title("CardGuard, week by week")
    fig.tight_layout()
    return fig
