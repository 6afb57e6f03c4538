"""Drift detection, side by side: mlops_lab.monitoring against Evidently's DataDriftPreset.

The data: a 100,000 x 20 reference and current window (12 numeric, 8 categorical columns), some
columns truly drifted, the rest drawn from the same distribution. Both are written as Parquet and
each tool runs in its own process (Evidently in its own virtualenv: its pins conflict with ours),
timed from the frames in memory to the list of drifted columns, with the peak memory the
computation adds (resident memory sampled every 5 ms, above the level after loading the data).

    python benchmarks/drift.py [--rows 100000] [--evidently-python PATH] [--repeat 3]

Evidently goes in a virtualenv of its own, for example:
    python3 -m venv /tmp/evidently && /tmp/evidently/bin/pip install evidently==0.7.23 "pandas<3" pyarrow
Without one, only mlops_lab's figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_EVIDENTLY = os.environ.get("EVIDENTLY_PYTHON")  # the python of Evidently's own virtualenv, if any
TRUTH = {  # column -> what changed in the current window
    "num_00": "mean +0.3 SD", "num_01": "scale x1.3", "num_02": "mean +0.15 SD", "num_03": "5% of values x10",
    "cat_00": "shares 50/30/20 -> 40/35/25", "cat_01": "a new category (8%)",
}


def make_data(rows: int, seed: int = 0):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    cats = [f"c{i}" for i in range(6)]

    def frame(current: bool):
        cols = {}
        for i in range(12):
            name = f"num_{i:02d}"
            x = rng.lognormal(3, 0.7, rows) if i % 3 == 0 else rng.normal(50, 10, rows)
            if current and name == "num_00":
                x = x + 0.3 * (np.exp(0.49) - 1) ** 0.5 * np.exp(3 + 0.245)  # +0.3 SD of the lognormal
            if current and name == "num_01":
                x = 50 + (x - 50) * 1.3
            if current and name == "num_02":
                x = x + 1.5
            if current and name == "num_03":
                x = np.where(rng.random(rows) < 0.05, x * 10, x)
            cols[name] = x
        for i in range(8):
            name = f"cat_{i:02d}"
            p = [0.5, 0.3, 0.2] if i == 0 else [1 / 6] * 6
            values = cats[:3] if i == 0 else cats
            if current and name == "cat_00":
                p = [0.4, 0.35, 0.25]
            col = rng.choice(values, rows, p=p).astype(object)
            if current and name == "cat_01":
                col = np.where(rng.random(rows) < 0.08, "new", col)
            cols[name] = col
        return pd.DataFrame(cols)

    return frame(False), frame(True)


class _PeakRSS:
    """Resident memory high-water mark of this process, sampled every 5 ms."""

    def __init__(self):
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = self.base = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _rss(self) -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * self.page

    def _poll(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self):
        self.base = self.peak = self._rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


def worker_mlops_lab(folder: Path, repeat: int) -> dict:
    import pandas as pd

    from mlops_lab.monitoring import ReferenceProfile

    ref, cur = pd.read_parquet(folder / "reference.parquet"), pd.read_parquet(folder / "current.parquet")
    ReferenceProfile.fit(ref.head(1000)).compare(cur.head(1000))  # warm up imports and caches
    best_fit_compare = best_compare = cpu_fit_compare = cpu_compare = float("inf")
    for _ in range(repeat):
        with _PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            profile = ReferenceProfile.fit(ref)
            t1, c1 = time.perf_counter(), time.process_time()
            report = profile.compare(cur)
            t2, c2 = time.perf_counter(), time.process_time()
        best_fit_compare, best_compare = min(best_fit_compare, t2 - t0), min(best_compare, t2 - t1)
        cpu_fit_compare, cpu_compare = min(cpu_fit_compare, c2 - c0), min(cpu_compare, c2 - c1)
    import scipy

    return {"seconds": best_compare, "seconds_with_fit": best_fit_compare, "cpu": cpu_compare,
            "cpu_with_fit": cpu_fit_compare, "peak_mb": (mem.peak - mem.base) / 2**20,
            "flagged": report.drifted_columns, "version": f"scipy {scipy.__version__}, pandas {pd.__version__}"}


def worker_evidently(folder: Path, repeat: int) -> dict:
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, cur = pd.read_parquet(folder / "reference.parquet"), pd.read_parquet(folder / "current.parquet")
    Report([DataDriftPreset()]).run(current_data=cur.head(1000), reference_data=ref.head(1000))  # warm up
    best = cpu = float("inf")
    for _ in range(repeat):
        with _PeakRSS() as mem:
            t0, c0 = time.perf_counter(), time.process_time()
            snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
            result = snapshot.dict()
            best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    flagged = []
    for metric in result["metrics"]:
        config = metric["config"]
        if config.get("type", "").endswith("ValueDrift"):
            value, threshold = metric["value"], config["threshold"]
            # p-value methods drift below the threshold, distance methods at or above it
            drifted = value < threshold if "p_value" in config["method"] else value >= threshold
            if drifted:
                flagged.append(config["column"])
    import evidently

    return {"seconds": best, "seconds_with_fit": best, "cpu": cpu, "cpu_with_fit": cpu,
            "peak_mb": (mem.peak - mem.base) / 2**20, "flagged": flagged,
            "version": f"evidently {evidently.__version__}, pandas {pd.__version__}"}


def run_worker(python: str, kind: str, folder: Path, repeat: int) -> dict:
    env = {**os.environ}
    if kind == "evidently":
        env.pop("PYTHONPATH", None)  # Evidently's venv must not see our packages
    out = subprocess.run([python, __file__, "--worker", kind, "--folder", str(folder), "--repeat", str(repeat)],
                         capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{kind} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--evidently-python", default=DEFAULT_EVIDENTLY)
    parser.add_argument("--worker", choices=["mlops_lab", "evidently"])
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    if args.worker:
        work = worker_mlops_lab if args.worker == "mlops_lab" else worker_evidently
        print(json.dumps(work(args.folder, args.repeat)))
        return

    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        folder = Path(tmp)
        reference, current = make_data(args.rows)
        reference.to_parquet(folder / "reference.parquet")
        current.to_parquet(folder / "current.parquet")
        results = {"mlops_lab": run_worker(sys.executable, "mlops_lab", folder, args.repeat)}
        if args.evidently_python and Path(args.evidently_python).exists():
            results["evidently"] = run_worker(args.evidently_python, "evidently", folder, args.repeat)
        else:
            where = f"at {args.evidently_python}" if args.evidently_python else "given"
            print(f"(no Evidently interpreter {where}: pass --evidently-python PATH or set EVIDENTLY_PYTHON; "
                  "see the module docstring)")

    truth = set(TRUTH)
    columns = list(reference.columns)
    print(f"{args.rows:,} x {len(columns)} reference and current; {len(truth)} columns truly drifted; "
          f"{os.cpu_count()} cores; Python {platform.python_version()}; best of {args.repeat}")
    base = results.get("evidently")
    print(f"{'tool':<34} {'wall s':>7} {'CPU s':>7} {'speed-up':>8} {'peak MB':>8} {'caught':>7} {'false +':>8}  missed")
    rows = [("mlops_lab compare (profile fitted)", results["mlops_lab"], ""),
            ("mlops_lab fit + compare", results["mlops_lab"], "_with_fit")]
    if base:
        rows.append(("Evidently DataDriftPreset", base, ""))
    for name, r, key in rows:
        flagged = set(r["flagged"])
        # speed-up on CPU seconds: wall time on a shared machine measures the neighbours too
        speed = f"{base['cpu'] / r['cpu' + key]:.1f}x" if base else "-"
        print(f"{name:<34} {r['seconds' + key]:7.2f} {r['cpu' + key]:7.2f} {speed:>8} {r['peak_mb']:8.1f} "
              f"{len(flagged & truth):>4}/{len(truth)} {len(flagged - truth):>8}  {', '.join(sorted(truth - flagged)) or '-'}")
    for name, r in results.items():
        print(f"  {name}: {r['version']}")
    print("truly drifted: " + "; ".join(f"{c} ({what})" for c, what in TRUTH.items()))


if __name__ == "__main__":
    main()
