"""Serving benchmark: this server next to `mlflow models serve --env-manager local`, both serving the
same registered champion, hit by the same client with the same payments on 127.0.0.1.

Warm-up, then a fixed number of single-payment requests sent one at a time, then the same with 4
concurrent clients. Prints p50 / p99 latency and requests per second for both, their ratio, the
core count and library versions; and, where a Docker daemon runs, the image size and the time from
`docker run` to ready. Run by hand: python benchmarks/serving.py [REQUESTS]"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np


def wait_for(url: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({url})")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s")


def measure(url: str, bodies: list, requests: int, clients: int) -> dict:
    """Latency of each request and throughput, `clients` threads each with its own connection."""
    latencies: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def run(worker: int) -> None:
        mine = []
        with httpx.Client(timeout=30) as client:
            for i in range(per_client):
                body = bodies[(worker * per_client + i) % len(bodies)]
                start = time.perf_counter()
                response = client.post(url, json=body)
                mine.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "rps": len(ms) / seconds}


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    home = Path(tempfile.mkdtemp(prefix="mlops-lab-bench-"))
    os.environ["MLOPS_LAB_HOME"] = str(home)
    from mlops_lab import config, container, course, data
    from mlops_lab.serving import start_server, to_payload
    from mlops_lab.serving.server import free_port

    course.setup(4, report=lambda _: None)
    payments = data.simulate_transactions(2000, start="2026-03-02", seed=99)
    records = to_payload(payments.drop(columns=["transaction_id"]))
    invocations = [{"dataframe_records": [r]} for r in records]

    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri(), "MLFLOW_REGISTRY_URI": config.tracking_uri()}
    mlflow_server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{config.model_name()}@champion",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours = start_server()
    try:
        mlflow_url = f"http://127.0.0.1:{port}"
        wait_for(f"{mlflow_url}/ping", mlflow_server)
        targets = [
            ("mlflow models serve", f"{mlflow_url}/invocations", invocations),
            ("mlops-lab /invocations", f"{ours.url}/invocations", invocations),
            ("mlops-lab /predict", f"{ours.url}/predict", records),
        ]
        results = {}
        for name, url, bodies in targets:
            measure(url, bodies, 100, 1)  # warm-up
            for clients in (1, 4):
                results[(name, clients)] = measure(url, bodies, requests, clients)
    finally:
        ours.stop()
        mlflow_server.terminate()
        mlflow_server.wait(30)

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}, mlflow {metadata.version('mlflow')}, "
          f"fastapi {metadata.version('fastapi')}, uvicorn {metadata.version('uvicorn')}, "
          f"scikit-learn {metadata.version('scikit-learn')}; {requests} requests per row, one payment each")
    print(f"{'server':<24} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'req/s vs mlflow':>16}")
    for (name, clients), r in results.items():
        base = results[("mlflow models serve", clients)]["rps"]
        print(f"{name:<24} {clients:>7} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f} {r['rps'] / base:15.1f}x")

    if container.docker_available():
        context = container.build_context(home / "context")
        image = container.build_image(context, tag="cardguard:bench", report=lambda _: None)
        with container.run_container(image["tag"]) as running:
            print(f"image {image['tag']} from {image['base_image']}: {image['size_mb']:.0f} MB; "
                  f"docker run -> /ready in {running.seconds_to_ready:.1f} s")
    else:
        print("no Docker daemon: image size and time to ready not measured")


if __name__ == "__main__":
    main()
