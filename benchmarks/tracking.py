"""Tracking benchmark: why a workshop server needs PostgreSQL, not SQLite.

N simulated learners (separate processes, like separate notebooks) each log RUNS runs to one
`mlflow server`; a run is a few params, METRICS `log_metric` calls and a small scikit-learn model
(`log_model` through the server's artifact proxy). Done once with a SQLite backend store and once
with a PostgreSQL one (a local cluster, as `mlops-lab workshop server` starts), same server flags
(`--serve-artifacts`, same worker count), for N = 5, 15, 30 in turn on the same server. Each learner stops after its runs or
after BUDGET seconds, so a run of the script is bounded.

Prints, side by side: errors ("database is locked" and others), p50/p99 latency of one
`log_metric` call, of one `start_run` and of one `log_model` call, finished runs per second, and the
machine's load average over the row (the figures mean little without it). The server runs with the
workshop's settings (``workshop.WORKERS``, ``POOL_SIZE``, ``MAX_OVERFLOW``, the password in a
pgpass file). Client retries stay on, as learners have them (``--retries off`` counts every server
error instead of retrying it out of sight).

Run by hand: python benchmarks/tracking.py [--learners 5,15,30] [--runs 1] [--budget 240]
[--backends sqlite,postgresql] [--workers 2] [--retries on|off]"""

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
    uri, index, runs, budget, retries = args
    if not retries:
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    # MLflow's telemetry client sets and unsets an environment variable from two threads and raised
    # KeyError('_MLFLOW_TELEMETRY_SESSION_ID') in one learner of 30: the workshop's spawner turns it off too
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
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
    out = {"metric": [], "start": [], "model": [], "runs": 0, "locked": 0, "other": 0, "first_error": ""}

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
            t = time.perf_counter()
            with mlflow.start_run():
                out["start"].append(time.perf_counter() - t)
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


def serve(backend: str, root: Path, workers: int, pgpass: str | None) -> tuple[str, subprocess.Popen]:
    from mlops_lab.serving.server import free_port
    from mlops_lab.workshop import _wait_healthy, server_environment

    port = free_port()
    (root / "artifacts").mkdir(parents=True, exist_ok=True)
    log = root / "server.log"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", backend,
           "--serve-artifacts", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--uvicorn-opts", "--timeout-worker-healthcheck 120"]
    proc = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
                            env=server_environment(pgpass))
    uri = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(uri, proc, log, seconds=300)
    except BaseException:
        os.killpg(proc.pid, 15)
        raise
    return uri, proc


def connections(pg: dict | None, stop, peak: list[int]) -> None:
    """Sample the server's open PostgreSQL connections twice a second (is the pool the limit?)."""
    if not pg:
        return
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=pg["port"], user="mlflow", dbname="postgres",
                            passfile=pg["pgpass"])
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            while not stop.wait(0.5):
                cur.execute("select count(*), count(*) filter (where state = 'active') from pg_stat_activity "
                            "where datname = 'mlflow'")
                total, active = cur.fetchone()
                peak[0], peak[1] = max(peak[0], total), max(peak[1], active)
    finally:
        conn.close()


def bench(uri: str, n: int, runs: int, budget: float, retries: bool, pg: dict | None = None) -> dict:
    import threading

    load = os.getloadavg()[0]
    stop, peak = threading.Event(), [0, 0]
    sampler = threading.Thread(target=connections, args=(pg, stop, peak), daemon=True)
    sampler.start()
    start = time.perf_counter()
    with mp.get_context("spawn").Pool(n) as pool:
        results = pool.map(learner, [(uri, f"{n}-{i}-{time.time():.0f}", runs, budget, retries) for i in range(n)])
    wall = time.perf_counter() - start
    stop.set()
    sampler.join(timeout=10)
    metric = np.array(sum((r["metric"] for r in results), [])) * 1000
    started = np.array(sum((r["start"] for r in results), [])) * 1000
    model = np.array(sum((r["model"] for r in results), [])) * 1000
    q = lambda a, p: float(np.percentile(a, p)) if len(a) else float("nan")  # noqa: E731
    return {"locked": sum(r["locked"] for r in results), "other": sum(r["other"] for r in results),
            "metric_p50": q(metric, 50), "metric_p99": q(metric, 99), "start_p99": q(started, 99),
            "load": f"{load:.1f}-{os.getloadavg()[0]:.1f}", "connections": f"{peak[0]}/{peak[1]}" if pg else "",
            "model_p50": q(model, 50),
            "model_p99": q(model, 99), "runs": sum(r["runs"] for r in results), "wall": wall,
            "first_error": next((r["first_error"] for r in results if r["first_error"]), "")}


def main() -> None:
    import argparse
    import signal

    from mlops_lab import workshop
    from mlops_lab.workshop import start_postgres, stop_postgres

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learners", default="5,15,30")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--budget", type=float, default=240)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--workers", type=int, default=workshop.WORKERS)
    parser.add_argument("--retries", choices=("on", "off"), default="on")
    args = parser.parse_args()
    ns, runs, budget, workers = [int(x) for x in args.learners.split(",")], args.runs, args.budget, args.workers
    retries = args.retries == "on"
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-tracking-"))
    root.chmod(0o755)  # PostgreSQL runs as 'postgres' when this runs as root
    rows = []
    header = (f"{'backend':<11}{'N':>4}{'locked':>8}{'other err':>10}{'metric p50':>12}{'metric p99':>12}"
              f"{'start p99':>11}{'model p50':>11}{'model p99':>11}{'runs':>6}{'runs/s':>8}  load 1-min  db conns/active")

    def line(r):
        return (f"{r['backend']:<11}{r['n']:>4}{r['locked']:>8}{r['other']:>10}{r['metric_p50']:>10.0f}ms"
                f"{r['metric_p99']:>10.0f}ms{r['start_p99']:>9.0f}ms{r['model_p50']:>9.0f}ms{r['model_p99']:>9.0f}ms"
                f"{r['runs']:>6}{r['runs'] / r['wall']:>8.2f}  {r['load']:<10}  {r['connections']}")

    print(f"{os.cpu_count()} cores; mlflow {metadata.version('mlflow')}, server --workers {workers}, pool "
          f"{workshop.POOL_SIZE}+{workshop.MAX_OVERFLOW} per store; {runs} runs x ({METRICS} log_metric + 1 log_model) "
          f"per learner, client retries {args.retries}", flush=True)
    print(header, flush=True)
    pg = start_postgres(root / "pg") if "postgresql" in args.backends else None
    servers = {}
    try:
        # One server per backend, both up; each N runs on each backend in turn, so every finished N is a
        # fair pair even if the script is stopped early.
        for label in args.backends.split(","):
            backend = pg["uri"] if label == "postgresql" else f"sqlite:///{root}/sqlite/mlflow.db"
            (root / label).mkdir(parents=True, exist_ok=True)
            servers[label] = serve(backend, root / label, workers, pg and pg["pgpass"])
        for n in ns:
            for label, (uri, _) in servers.items():
                rows.append({"backend": label, "n": n,
                             **bench(uri, n, runs, budget, retries, pg if label == "postgresql" else None)})
                print(line(rows[-1]), flush=True)
    finally:
        for _, proc in servers.values():
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
        if pg:
            stop_postgres(pg)

    for r in rows:
        if r["first_error"]:
            print(f"first error, {r['backend']} N={r['n']}: {r['first_error']}")


if __name__ == "__main__":
    main()
