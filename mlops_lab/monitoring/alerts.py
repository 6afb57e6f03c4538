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


# ------------------------------------------------------------------ PromQL rules under promtool (lab 07, 7.5)

PROMTOOL_HOW = ("promtool is part of Prometheus: on Debian or Ubuntu `sudo apt-get install prometheus` (Binder installs "
                "it from binder/apt.txt, CI from .ci/run); elsewhere download Prometheus from "
                "https://prometheus.io/download/ and put promtool on your PATH")
MONITOR_JOB = 'job="cardguard-monitor"'
SERVER_JOB = 'job="cardguard", instance="cardguard:8000"'


@dataclass
class RuleTestGroup:
    """Input series for promtool's ``tests:`` (one test group, its own time line from 0) and what must
    hold at given times: ``checks`` are (seconds, alert name or None for any alert, should fire, words)."""

    name: str
    interval_s: int
    series: list  # (series selector text, values: numpy array, nan = no sample)
    checks: list
    describe: object = None  # seconds -> words ("day 3 of the holiday_season stream")


def _duration_text(seconds: int) -> str:
    if seconds % 86_400 == 0 and seconds:
        return f"{seconds // 86_400}d"
    if seconds % 3600 == 0 and seconds:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def parse_duration(text) -> int:
    """Seconds in a Prometheus duration ('5m', '1h30m', '1d'); LabError on anything else."""
    text = str(text).strip()
    parts = re.findall(r"(\d+)(ms|[smhdwy])", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise LabError(f"{text!r} is not a Prometheus duration: write e.g. '30s', '5m', '1h' or '1d'.")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800, "y": 31_536_000}
    return int(sum(int(a) * unit[b] for a, b in parts))


def _values_text(values: np.ndarray) -> str:
    """promtool's expanding notation: runs of one value as 'vxN', missing samples as '_'."""
    out, i = [], 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and (values[j + 1] == values[i] or (np.isnan(values[j + 1]) and np.isnan(values[i]))):
            j += 1
        v = "_" if np.isnan(values[i]) else f"{values[i]:.10g}"
        out.append(v if j == i else f"{v}x{j - i}")
        i = j + 1
    return " ".join(out)


def monitor_rule_tests(streams: dict[str, pd.DataFrame], drift_start, must_fire: dict[str, tuple[str, ...]],
                       fire_within_days: int = 6) -> list[RuleTestGroup]:
    """One test group per scenario: the nightly ``cardguard_monitor_*`` gauges of its stream, each held for
    the day after its window ends (as a textfile collector exposes the last value), sampled hourly. No alert
    may fire before the drift began, nor ever on the control ``none``; each alert in ``must_fire[scenario]``
    must be firing ``fire_within_days`` days after the drift began and on the last day."""
    groups = []
    drift_start = pd.Timestamp(drift_start)
    for name, windows in streams.items():
        ends = pd.to_datetime(windows["window_end"]).reset_index(drop=True)
        series = []
        for metric, (_, expr) in METRICS.items():
            if expr.startswith("cardguard_monitor_") and metric in windows:
                daily = windows[metric].to_numpy(dtype=float)
                series.append((f"{expr}{{{MONITOR_JOB}}}", np.repeat(daily, 24)))
        checks = []
        for i, end in enumerate(ends):
            t = i * 86_400 + 2 * 3600  # two hours after that night's figures were published
            quiet = name == "none" or end <= drift_start
            if quiet:
                checks.append((t, None, False, "no drift"))
        for alert in must_fire.get(name, ()):
            late = [i for i, end in enumerate(ends) if end >= drift_start + pd.Timedelta(days=fire_within_days)]
            for i in sorted({late[0], len(ends) - 1}) if late else ():
                checks.append((i * 86_400 + 2 * 3600, alert, True, "drift"))

        def describe(seconds, ends=ends, name=name):
            end = ends[min(int(seconds // 86_400), len(ends) - 1)]
            since = (end - drift_start).days
            when = ("the control never drifts" if name == "none" else
                    f"before the drift began on {drift_start:%Y-%m-%d}" if since <= 0 else
                    f"{since} day(s) after the drift began")
            return f"the {name} stream, the night of {end:%Y-%m-%d} ({when})"

        groups.append(RuleTestGroup(name, 3600, series, checks, describe))
    return groups


def server_rule_tests(alert: str = "ScoringErrors") -> list[RuleTestGroup]:
    """Two hours of the API's own ``cardguard_requests_total`` counters, per minute. A normal day: the
    scoring endpoints answer 200, a few bad payloads get 422, one 500 now and then, and ``/ready`` answers
    503 for the five minutes the model loads (by design): no alert may fire. An incident: from minute 60, one
    scoring request in ten fails with 500: ``alert`` must be firing by minute 76 and not before minute 60. A
    quiet day on which 0.2% of scoring requests fail all day: no alert. The incident again on a server up for
    a week (counters that start high): ``alert`` must fire as before."""
    minutes = np.arange(0, 181)

    def counter(per_minute, start=0, stop=None):
        stop = len(minutes) if stop is None else stop
        rate = np.where((minutes >= start) & (minutes < stop), per_minute, 0)
        return np.concatenate([[0], np.cumsum(rate)[:-1]]).astype(float)

    def sel(endpoint, status):
        return f'cardguard_requests_total{{{SERVER_JOB}, endpoint="{endpoint}", status="{status}"}}'

    rare = np.zeros(len(minutes))
    rare[minutes >= 45] += 1
    rare[minutes >= 130] += 1  # two 500s in three hours: a blip, not an incident
    normal = [(sel("/predict", "200"), counter(600)), (sel("/predict", "422"), counter(15)),
              (sel("/predict/batch", "200"), counter(30)), (sel("/invocations", "200"), counter(20)),
              (sel("/predict", "500"), rare), (sel("/ready", "503"), counter(12, 0, 5)),
              (sel("/ready", "200"), counter(6, 5)), (sel("/metrics", "200"), counter(4))]
    quiet_times = [m * 60 for m in (*range(1, 16), *range(20, 181, 10))]
    normal_group = RuleTestGroup("normal day", 60, normal, [(t, None, False, "no incident") for t in quiet_times],
                                 lambda s: f"a normal day at minute {int(s // 60)} (no incident: a few 422s for bad "
                                           "payloads, two isolated 500s, /ready answering 503 while the model loads)")
    incident = [(sel("/predict", "200"), counter(600, 0, 60) + counter(540, 60)),
                (sel("/predict", "500"), counter(60, 60)), (sel("/predict/batch", "200"), counter(30)),
                (sel("/ready", "200"), counter(6)), (sel("/predict", "422"), counter(15))]
    incident_checks = [(m * 60, None, False, "before the incident") for m in (10, 30, 50, 59)]
    incident_checks += [(m * 60, alert, True, "incident") for m in (76, 90, 120)]
    incident_group = RuleTestGroup("incident", 60, [(s, v[:131]) for s, v in incident], incident_checks,
                                   lambda s: f"an incident at minute {int(s // 60)} (from minute 60, one scoring "
                                             "request in ten fails with 500)")
    # a quiet day whose errors never stop: 0.2% of scoring requests fail all day long. A share above 1% stays
    # quiet; "any 5xx" and a ratio taken per series (each series divided by itself: 1) page all day
    steady = [(sel("/predict", "200"), counter(500)), (sel("/predict", "500"), counter(1)),
              (sel("/predict/batch", "200"), counter(30)), (sel("/ready", "200"), counter(6))]
    steady_group = RuleTestGroup("steady errors", 60, steady,
                                 [(m * 60, None, False, "no incident") for m in range(10, 181, 10)],
                                 lambda s: f"a quiet day at minute {int(s // 60)} (no incident: 0.2% of scoring "
                                           "requests fail all day, the service's normal)")
    # the same incident on a process that has been up for a week: its counters start high, so the share
    # since the process started barely moves; only a rate over the last minutes shows the incident
    week = 7 * 24 * 60
    running = [(sel("/predict", "200"), 600 * week + counter(600, 0, 60) + counter(540, 60)),
               (sel("/predict", "500"), 14 + counter(60, 60)), (sel("/predict/batch", "200"), 30 * week + counter(30)),
               (sel("/ready", "200"), 6 * week + counter(6))]
    running_group = RuleTestGroup("incident after a week up", 60, [(s, v[:131]) for s, v in running],
                                  incident_checks,
                                  lambda s: f"an incident at minute {int(s // 60)} on a server up for a week (its "
                                            "counters hold a week of requests; from minute 60, one scoring request "
                                            "in ten fails with 500)")
    return [normal_group, incident_group, steady_group, running_group]


def _check_expr(alert: str | None, group: str) -> str:
    matcher = f'alertname="{alert}", alertstate="firing"' if alert else 'alertstate="firing"'
    return f'label_replace(max by (alertname) (ALERTS{{{matcher}}}), "test_group", "{group}", "", "")'


def promtool_test_file(rules_file: str, groups: list[RuleTestGroup]) -> dict:
    """The ``promtool test rules`` file for ``groups`` (as a dict to dump as YAML)."""
    tests = []
    for g in groups:
        exprs = []
        for t, alert, fire, _ in g.checks:
            samples = ([{"labels": f'{{alertname="{alert}", test_group="{g.name}"}}', "value": 1}] if fire else [])
            exprs.append({"expr": _check_expr(alert, g.name), "eval_time": _duration_text(t), "exp_samples": samples})
        tests.append({"name": g.name, "interval": _duration_text(g.interval_s),
                      "input_series": [{"series": s, "values": _values_text(v)} for s, v in g.series],
                      "promql_expr_test": exprs})
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": tests}


@dataclass(frozen=True)
class RuleTestFailure:
    group: str
    seconds: int
    alert: str | None  # the alert that had to fire (None: no alert may fire)
    should_fire: bool
    fired: tuple  # alert names firing then

    def words(self, groups: dict[str, RuleTestGroup]) -> str:
        g = groups[self.group]
        when = g.describe(self.seconds) if g.describe else f"{self.group} at {self.seconds} s"
        if self.should_fire:
            return f"{self.alert} was not firing on {when}"
        return f"{', '.join(self.fired) or 'an alert'} fired on {when}"


def run_rule_tests(rules_yaml: str, groups: list[RuleTestGroup], workdir=None) -> tuple[str, list[RuleTestFailure]]:
    """Run ``groups`` against an alerting-rules file: with ``promtool check rules`` and ``promtool test rules``
    where promtool is installed ("promtool"), else with the course's own evaluator of a small PromQL
    subset ("the course's evaluator"). Returns (which of the two ran, the failures)."""
    import os
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    import yaml

    tool = shutil.which("promtool")
    if tool is None:
        return "the course's evaluator", _evaluate_rule_tests(rules_yaml, groups)
    # Go's defaults let promtool grow to 140 MB on a week of hourly samples; one thread and a collection at
    # 20% growth keep it near 85 MB (Binder's 2 GB hold the kernel beside it), 0.1-0.2 s slower
    env = {**os.environ, "GOMAXPROCS": "1", "GOGC": "20"}
    with tempfile.TemporaryDirectory(prefix="mlops-lab-promtool-", dir=workdir) as folder:
        rules_path, tests_path = Path(folder) / "rules.yml", Path(folder) / "tests.yml"
        rules_path.write_text(rules_yaml)
        check = subprocess.run([tool, "check", "rules", str(rules_path)], capture_output=True, text=True, timeout=60,
                               env=env)
        if check.returncode != 0:
            raise LabError(f"promtool check rules rejects the file:\n{(check.stdout + check.stderr).strip()}")
        output, ok = "", True
        # one run per sampling interval, each evaluating the rules at that interval (days of hourly
        # samples evaluated every minute would take minutes)
        for interval in sorted({g.interval_s for g in groups}):
            part = [g for g in groups if g.interval_s == interval]
            test_file = promtool_test_file("rules.yml", part)
            test_file["evaluation_interval"] = _duration_text(interval)
            tests_path.write_text(yaml.safe_dump(test_file, sort_keys=False))
            run = subprocess.run([tool, "test", "rules", str(tests_path)], capture_output=True, text=True,
                                 timeout=120, cwd=folder, env=env)
            output += run.stdout + run.stderr
            ok = ok and run.returncode == 0
    if ok:
        return "promtool", []
    failures = _parse_promtool_failures(output, groups)
    if not failures:
        raise LabError(f"promtool test rules failed:\n{output.strip()[:2000]}")
    return "promtool", failures


def _parse_promtool_failures(output: str, groups: list[RuleTestGroup]) -> list[RuleTestFailure]:
    by_name = {g.name: g for g in groups}
    failures = []
    pattern = re.compile(r'expr: "(?P<expr>.*?)", time: (?P<time>\S+?),\s*\n\s*exp: (?P<exp>.*?)\n\s*got: (?P<got>.*?)\n',
                         re.S)
    for m in pattern.finditer(output + "\n"):
        expr = m["expr"].replace('\\"', '"')
        group = re.search(r'"test_group", "([^"]+)"', expr)
        alert = re.search(r'alertname="([^"]+)"', expr)
        if not group or group[1] not in by_name:
            continue
        seconds = parse_duration(m["time"]) if m["time"] != "0s" else 0
        fired = tuple(sorted(set(re.findall(r'alertname="([^"]+)"', m["got"]))))
        failures.append(RuleTestFailure(group[1], seconds, alert[1] if alert else None, m["exp"].strip() != "nil",
                                        fired))
    return sorted(failures, key=lambda f: (list(by_name).index(f.group), f.seconds))


# The course's own evaluator: the PromQL the lab needs (a gauge compared with a number; a ratio of sums of
# rates of counters), for machines without promtool.
_MATCHER = re.compile(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
_SELECTOR = r"([a-zA-Z_:][\w:]*)\s*(\{[^}]*\})?"


def _matches(selector_labels: str, labels: dict) -> bool:
    inner = (selector_labels or "{}").strip()[1:-1]
    for name, op, value in _MATCHER.findall(inner):
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value, "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def _series_labels(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("{")
    return name.strip(), dict(re.findall(r'(\w+)="([^"]*)"', rest))


def _strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def _split_comparison(expr: str):
    depth, quoted = 0, False
    for i, ch in enumerate(expr):
        quoted = not quoted if ch == '"' else quoted
        if quoted:
            continue
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and ch in "<>" :
            op = expr[i:i + 2] if expr[i + 1:i + 2] == "=" else ch
            return expr[:i], op, expr[i + len(op):]
    raise LabError("the course's evaluator understands `gauge > number` and `sum(rate(counter{...}[5m])) / "
                   f"sum(rate(counter{{...}}[5m])) > number`; it cannot read {expr.strip()!r}. {PROMTOOL_HOW}.")


def _eval_side(text: str, series: list, step: int, n: int) -> np.ndarray:
    """One side of the comparison, at every step: a gauge selector, or sum(rate(...)) [/ sum(rate(...))]."""
    text = _strip_parens(text)
    parts = [p for p in re.split(r"\)\s*/\s*sum", text)]
    if len(parts) == 2:
        return _eval_side(parts[0] + ")", series, step, n) / _eval_side("sum" + parts[1], series, step, n)
    m = re.fullmatch(rf"sum(?:\s+by\s*\(\s*\))?\s*\(\s*(rate|increase)\s*\(\s*{_SELECTOR}\s*\[(\w+)\]\s*\)\s*\)", text)
    if m:
        # like Prometheus: the increase between the first and the last sample inside (t - range, t]
        back = max(parse_duration(m[4]) // step - 1, 1)
        total = np.zeros(n)
        for s, values in series:
            name, labels = _series_labels(s)
            if name == m[2] and _matches(m[3], labels):
                v = np.asarray(values, float)
                v = np.concatenate([v, np.full(n - len(v), np.nan)])
                past = v[np.maximum(np.arange(n) - back, 0)]
                total = total + np.nan_to_num(v - past, nan=0.0)
        return total
    m = re.fullmatch(rf"sum\s*\(\s*{_SELECTOR}\s*\)", text)
    if m:  # the counters as they stand: the totals since the process started
        found = [np.asarray(v, float) for s, v in series
                 if _series_labels(s)[0] == m[1] and _matches(m[2], _series_labels(s)[1])]
        return np.sum([np.concatenate([v, np.full(n - len(v), np.nan)]) for v in found], axis=0) if found else np.full(n, np.nan)
    m = re.fullmatch(_SELECTOR, text)
    if m:
        found = [np.asarray(v, float) for s, v in series if _series_labels(s)[0] == m[1] and _matches(m[2], _series_labels(s)[1])]
        return found[0] if found else np.full(n, np.nan)
    try:
        return np.full(n, float(text))
    except ValueError:
        raise LabError(f"the course's evaluator cannot read {text!r}. {PROMTOOL_HOW}.") from None


def _evaluate_rule_tests(rules_yaml: str, groups: list[RuleTestGroup]) -> list[RuleTestFailure]:
    import yaml

    alerts = []
    for group in (yaml.safe_load(rules_yaml) or {}).get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                alerts.append((rule["alert"], str(rule["expr"]), parse_duration(rule.get("for", "0s"))))
    failures = []
    for g in groups:
        n = max(len(v) for _, v in g.series)
        firing = {}
        for name, expr, hold in alerts:
            left, op, right = _split_comparison(expr)
            with np.errstate(divide="ignore", invalid="ignore"):
                holds = OPS[op](_eval_side(left, g.series, g.interval_s, n), _eval_side(right, g.series, g.interval_s, n))
            holds = np.nan_to_num(holds.astype(float), nan=0.0).astype(bool)
            streak = np.zeros(n, int)
            for i in range(n):
                streak[i] = streak[i - 1] + 1 if holds[i] and i else int(holds[i])
            need = hold // g.interval_s + 1
            firing[name] = np.concatenate([streak >= need, np.zeros(1, bool)])
        for t, alert, fire, _ in g.checks:
            i = min(t // g.interval_s, n)
            now = tuple(sorted(a for a, f in firing.items() if f[i]))
            if fire and alert not in now:
                failures.append(RuleTestFailure(g.name, t, alert, True, now))
            elif not fire and (now if alert is None else alert in now):
                failures.append(RuleTestFailure(g.name, t, alert, False, now))
    return failures
