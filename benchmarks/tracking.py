"""Tracking benchmark: why a workshop server needs PostgreSQL, not SQLite.

N simulated learners (separate processes, like separate notebooks) each log RUNS runs to one
`mlflow server`; a run is a few params, METRICS `log_metric` calls and a small scikit-learn model
(`log_model` through the server's artifact proxy). Done once with a SQLite backend store and once
with a PostgreSQL one (a local cluster, as `mlops-lab workshop server` starts), same server flags
(`--serve-artifacts`, same worker count), for N = 5, 15, 30 in turn on the same server. Each learner stops after its runs or
after BUDGET seconds, so a run of the script is bounded.

Prints, side by side: errors ("database is locked" and others), p50/p99 latency of one
`log_metric` call and of one `log_model` call, and finished runs per second. Client retries are
turned off (MLFLOW_HTTP_REQUEST_MAX_RETRIES=0) so a server error counts instead of being retried
out of sight. Run by hand: python benchmarks/tracking.py [N,N,...] [RUNS] [BUDGET]"""

from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRICS = 20


def learner(args) -> dict:
    """One simulated learner: its own process, its own experiment; returns latencies and errors."""
    uri, index, runs, budget = args
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    import logging
    import warnings

    import mlflow
    from sklearn.linear_model import LogisticRegression

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    mlflow.set_tracking_uri(uri)
    rng = np.random.default_rng(abs(hash(index)) % 2**32)
    X, y = rng.normal(size=(200, 5)), rng.integers(0, 2, 200)
    model = LogisticRegression().fit(X, y)
    out = {"metric": [], "model": [], "runs": 0, "locked": 0, "other": 0, "first_error": ""}

    def error(exc):
        text = str(exc)
        out["locked" if "database is locked" in text else "other"] += 1
        out["first_error"] = out["first_error"] or f"{type(exc).__name__}: {text[:160]}"

    deadline = time.monotonic() + budget
    try:
        mlflow.set_experiment(f"bench-{index}")
    except Exception as exc:  # noqa: BLE001 - the benchmark counts errors, it does not stop on them
        error(exc)
        return out
    for r in range(runs):
        if time.monotonic() > deadline:
            break
        try:
            with mlflow.start_run():
                mlflow.log_params({"learner": index, "run": r, "C": 1.0})
                for step in range(METRICS):
                    t = time.perf_counter()
                    try:
                        mlflow.log_metric("loss", float(rng.random()), step=step)
                        out["metric"].append(time.perf_counter() - t)
                    except Exception as exc:  # noqa: BLE001
                        error(exc)
                t = time.perf_counter()
                # requirements given, so the client does not infer them in a subprocess (seconds of
                # client CPU that say nothing about the backend store)
                mlflow.sklearn.log_model(model, name="model", input_example=X[:2], pip_requirements=["scikit-learn"])
                out["model"].append(time.perf_counter() - t)
            out["runs"] += 1
        except Exception as exc:  # noqa: BLE001
            error(exc)
    return out


def serve(backend: str, root: Path, workers: int) -> tuple[str, subprocess.Popen]:
    from mlops_lab.serving.server import free_port
    from mlops_lab.workshop import _wait_healthy

    port = free_port()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--uvicorn-opts", "--timeout-worker-healthcheck 120"]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, log, seconds=300)
    except BaseException:
        os.killpg(proc.pid, 15)
        raise
    return uri, proc


def bench(uri: str, n: int, runs: int, budget: float) -> dict:
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(n) as pool:
        results = pool.map(learner, [(uri, f"{n}-{i}", runs, budget) for i in range(n)])
    wall = time.perf_counter() - start
    metric = np.array(sum((r["metric"] for r in results), [])) * 1000
    model = np.array(sum((r["model"] for r in results), [])) * 1000
    q = lambda a, p: float(np.percentile(a, p)) if len(a) else float("nan")  # noqa: E731
    return {"locked": sum(r["locked"] for r in results), "other": sum(r["other"] for r in results),
            "metric_p50": q(metric, 50), "metric_p99": q(metric, 99), "model_p50": q(model, 50),
            "model_p99": q(model, 99), "runs": sum(r["runs"] for r in results), "wall": wall,
            "first_error": next((r["first_error"] for r in results if r["first_error"]), "")}


def main() -> None:
    import signal

    from mlops_lab.workshop import start_postgres, stop_postgres

    ns = [int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "5,15,30").split(",")]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    budget = float(sys.argv[3]) if len(sys.argv) > 3 else 240
    workers = 2
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-tracking-"))
    root.chmod(0o755)  # PostgreSQL runs as 'postgres' when this runs as root
    rows = []
    header = (f"{'backend':<11}{'N':>4}{'locked':>8}{'other err':>10}{'metric p50':>12}{'metric p99':>12}"
              f"{'model p50':>11}{'model p99':>11}{'runs':>6}{'runs/s':>8}")

    def line(r):
        return (f"{r['backend']:<11}{r['n']:>4}{r['locked']:>8}{r['other']:>10}{r['metric_p50']:>10.0f}ms"
                f"{r['metric_p99']:>10.0f}ms{r['model_p50']:>9.0f}ms{r['model_p99']:>9.0f}ms{r['runs']:>6}"
                f"{r['runs'] / r['wall']:>8.2f}")

    print(f"{os.cpu_count()} cores; mlflow {metadata.version('mlflow')}, server --workers {workers}, "
          f"{runs} runs x ({METRICS} log_metric + 1 log_model) per learner, client retries off", flush=True)
    print(header, flush=True)
    pg = start_postgres(root / "pg")
    servers = {}
    try:
        # One server per backend, both up; each N runs on SQLite then on PostgreSQL, so every
        # finished N is a fair pair even if the script is stopped early.
        for label, backend in (("sqlite", f"sqlite:///{root}/sqlite/mlflow.db"), ("postgresql", pg["uri"])):
            (root / label).mkdir(parents=True, exist_ok=True)
            servers[label] = serve(backend, root / label, workers)
        for n in ns:
            for label, (uri, _) in servers.items():
                rows.append({"backend": label, "n": n, **bench(uri, n, runs, budget)})
                print(line(rows[-1]), flush=True)
    finally:
        for _, proc in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        stop_postgres(pg)

    for r in rows:
        if r["first_error"]:
            print(f"first error, {r['backend']} N={r['n']}: {r['first_error']}")


if __name__ == "__main__":
    main()
