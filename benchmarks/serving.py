"""Serving benchmark: this server next to `mlflow models serve --env-manager local`, both serving the
same registered champion, hit by the same client with the same payments on 127.0.0.1.

The client is a raw socket speaking HTTP/1.1 keep-alive with prepared request bytes, so the figures are
the servers' and not an HTTP library's. Warm-up, then a fixed number of single-payment requests sent
one at a time, then the same with 4 concurrent clients. Prints p50 / p99 latency and requests per
second for both and their ratio; for our server also the model's scoring time (its ``Server-Timing:
score`` header) and the overhead over scoring: p50 of (latency - scoring time), per request, as a column
of its own. Then the core count and library versions.

With --image, also builds the serving image and times `docker run` to ready (uses MLOPS_LAB_BASE_IMAGE
when set; the default base image comes from Docker Hub, so this part is opt-in).

Run by hand: python benchmarks/serving.py [REQUESTS] [--image]"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

import httpx
import numpy as np


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({url}, exit code {process.returncode}); its log ends with:\n"
                             f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s; its log ends with:\n{log.read_text(errors='replace')[-3000:]}")


class RawClient:
    """One keep-alive connection; sends prepared request bytes, reads one response, returns
    (status, headers, body)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def request(port: int, path: str, body: dict) -> bytes:
        payload = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload

    def send(self, raw: bytes) -> tuple[int, dict, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(65536)
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split()[1]), headers, body

    def close(self) -> None:
        self.sock.close()


def timings(header: str) -> dict:
    """``Server-Timing: score;dur=0.41, app;dur=0.62`` -> {"score": 0.41, "app": 0.62} (ms)."""
    out = {}
    for part in header.split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            out[name] = float(rest[4:])
    return out


def measure(port: int, path: str, bodies: list, requests: int, clients: int) -> dict:
    """Latency of each request and throughput, `clients` threads each with its own connection."""
    prepared = [RawClient.request(port, path, b) for b in bodies]
    latencies: list[float] = []
    overheads: list[float] = []
    scores: list[float] = []
    lock = threading.Lock()
    per_client = requests // clients

    def run(worker: int) -> None:
        mine, over, score = [], [], []
        client = RawClient(port)
        try:
            for i in range(per_client):
                raw = prepared[(worker * per_client + i) % len(prepared)]
                start = time.perf_counter()
                status, headers, body = client.send(raw)
                took = (time.perf_counter() - start) * 1000
                assert status == 200, body[:300]
                mine.append(took)
                server = timings(headers.get("server-timing", ""))
                if "score" in server:
                    score.append(server["score"])
                    over.append(took - server["score"])
        finally:
            client.close()
        with lock:
            latencies.extend(mine)
            overheads.extend(over)
            scores.extend(score)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ms = np.array(latencies)
    return {"p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "rps": len(ms) / seconds,
            "score": np.percentile(scores, 50) if scores else None,
            "overhead": np.percentile(overheads, 50) if overheads else None}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    requests = int(args[0]) if args else 2000
    home = Path(tempfile.mkdtemp(prefix="mlops-lab-bench-"))
    os.environ["MLOPS_LAB_HOME"] = str(home)
    try:
        _benchmark(home, requests)
    finally:  # the workspace (store, models, logs) is the benchmark's own: leave nothing behind
        shutil.rmtree(home, ignore_errors=True)


def _benchmark(home: Path, requests: int) -> None:
    from mlops_lab import config, container, course, data
    from mlops_lab.serving import start_server, to_payload
    from mlops_lab.serving.server import free_port

    course.setup(4, report=lambda _: None)
    payments = data.simulate_transactions(2000, start="2026-03-02", seed=99)
    records = to_payload(payments.drop(columns=["transaction_id"]))
    invocations = [{"dataframe_records": [r]} for r in records]

    port = free_port()
    # `mlflow models serve` execs `uvicorn` from PATH: put this interpreter's bin folder first
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri(), "MLFLOW_REGISTRY_URI": config.tracking_uri(),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = home / "mlflow-serve.log"
    with open(log, "wb") as out:
        mlflow_server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{config.model_name()}@champion",
             "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    ours = None
    try:
        wait_for(f"http://127.0.0.1:{port}/ping", mlflow_server, log)
        ours = start_server(timeout=300)  # after MLflow's: two model loads at once slow both down
        targets = [
            ("mlflow models serve", port, "/invocations", invocations),
            ("mlops-lab /invocations", ours.port, "/invocations", invocations),
            ("mlops-lab /predict", ours.port, "/predict", records),
        ]
        results = {}
        for name, target_port, path, bodies in targets:
            measure(target_port, path, bodies, 200, 1)  # warm-up
            for clients in (1, 4):
                results[(name, clients)] = measure(target_port, path, bodies, requests, clients)
    finally:
        if ours is not None:
            ours.stop()
        mlflow_server.terminate()
        mlflow_server.wait(30)

    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}, mlflow {metadata.version('mlflow')}, "
          f"fastapi {metadata.version('fastapi')}, uvicorn {metadata.version('uvicorn')}, "
          f"scikit-learn {metadata.version('scikit-learn')}; {requests} requests per row, one payment each, "
          "raw-socket HTTP/1.1 client")
    print(f"{'server':<24} {'clients':>7} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'vs mlflow':>10} "
          f"{'score ms':>9} {'overhead ms':>12}")
    for (name, clients), r in results.items():
        base = results[("mlflow models serve", clients)]["rps"]
        score = f"{r['score']:9.3f}" if r["score"] is not None else f"{'-':>9}"
        overhead = f"{r['overhead']:12.3f}" if r["overhead"] is not None else f"{'-':>12}"
        print(f"{name:<24} {clients:>7} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f} {r['rps'] / base:9.1f}x "
              f"{score} {overhead}")
    print("score: the model's scoring time inside the server (Server-Timing); overhead: p50 of latency - score "
          "per request (HTTP, validation, JSON, metrics, prediction log)")

    if "--image" not in sys.argv:
        print("image size and time to ready: not measured (pass --image; set MLOPS_LAB_BASE_IMAGE where Docker Hub "
              "is out of reach)")
    elif container.docker_available():
        context = container.build_context(home / "context")
        image = container.build_image(context, tag="cardguard:bench", report=lambda _: None)
        with container.run_container(image["tag"]) as running:
            print(f"image {image['tag']} from {image['base_image']}: {image['size_mb']:.0f} MB; "
                  f"docker run -> /ready in {running.seconds_to_ready:.1f} s")
    else:
        print("no Docker daemon: image size and time to ready not measured")


if __name__ == "__main__":
    main()
