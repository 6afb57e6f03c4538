"""Simulator speed: rows per second of simulate_transactions, next to what a learner would otherwise
reach for (scikit-learn's make_classification, which has no timestamps, categories, nulls, drift or
delayed labels). Run by hand: python benchmarks/simulator.py [ROWS]"""

from __future__ import annotations

import os
import sys
import time
from importlib import metadata


def best_of(runs: int, func) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    from sklearn.datasets import make_classification

    from mlops_lab import data

    ours = best_of(3, lambda: data.simulate_transactions(rows))
    theirs = best_of(3, lambda: make_classification(rows, n_features=10, weights=[0.99], random_state=0))
    frame = data.simulate_transactions(rows)
    print(f"machine: {os.cpu_count()} cores; numpy {metadata.version('numpy')}, pandas {metadata.version('pandas')}, "
          f"scikit-learn {metadata.version('scikit-learn')}")
    print(f"{'generator':<40} {'rows':>10} {'seconds':>8} {'rows/s':>12}")
    print(f"{'mlops_lab simulate_transactions':<40} {rows:>10} {ours:8.2f} {rows / ours:12,.0f}")
    print(f"{'sklearn make_classification (10 feat.)':<40} {rows:>10} {theirs:8.2f} {rows / theirs:12,.0f}")
    print(f"ratio (ours / make_classification time): {ours / theirs:.2f}")
    print(f"fraud rate {frame['is_fraud'].mean():.4f}; memory {frame.memory_usage(deep=True).sum() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
