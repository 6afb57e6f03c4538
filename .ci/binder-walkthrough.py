"""Walk through every lab in ONE running JupyterLab, as a Binder learner does, and measure memory.

Each lab's copy (in the workspace's labs/, where binder/start put them) gets its own notebook session
and kernel through JupyterLab's REST API, exactly as opening the notebook in the browser does; its code
cells run in order over the kernel's websocket; then the kernel is LEFT RUNNING, as JupyterLab leaves
it when a learner closes the tab and opens the next lab. Memory is the container's (cgroup: the
JupyterLab server, every kernel, and whatever the kernels started), sampled four times a second.

Runs inside the Binder stand-in (.ci/binder-standin.sh); exits 1 on an error in any cell, and with
--enforce-peak also when the peak passes --peak-target-mb (1.5 GB: Binder's 2 GB less a margin).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import threading
import time
import uuid
from pathlib import Path

import httpx
from tornado.websocket import websocket_connect

from mlops_lab import config


class MemorySampler(threading.Thread):
    """The container's memory in use, four times a second; at a new peak (10 MB above the last one
    broken down, at most once a second) also what each process holds of its own, by what it is."""

    def __init__(self, interval: float = 0.25):
        super().__init__(daemon=True)
        self.interval, self.peak, self.stop = interval, 0, threading.Event()
        self.kernels: dict[int, str] = {}  # pid -> the lab whose kernel it is
        self.lab = ""  # the lab running now
        self.at_peak: tuple[int, str, list[tuple[str, float]]] | None = None  # in use, lab, (what, USS MB)
        self._last_breakdown = 0.0

    def used(self) -> int:
        limit = config.memory_limit()
        return limit[1] if limit else 0

    def run(self) -> None:
        while not self.stop.is_set():
            used = self.used()
            if used > self.peak:
                self.peak = used
                level = self.at_peak[0] if self.at_peak else 0
                if used > level + 10 * 2**20 and time.monotonic() - self._last_breakdown >= 1:
                    self._last_breakdown = time.monotonic()
                    self.at_peak = (used, self.lab, processes_by_kind(self.kernels))
            self.stop.wait(self.interval)


def kernel_counter_peak() -> int | None:
    """The kernel's own high-water mark (cgroup v2 memory.peak; v1 counts page cache too)."""
    for name in ("memory.peak", "memory/memory.max_usage_in_bytes"):
        try:
            return int(Path("/sys/fs/cgroup", name).read_text())
        except (OSError, ValueError):
            continue
    return None


def private_and_proportional_mb(pid: int) -> tuple[float, float]:
    """(USS, PSS) of one process in MB: what it alone holds, and its fair share of shared pages."""
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0]) / 1024
    return fields["Private_Clean"] + fields["Private_Dirty"], fields["Pss"]


def kind_of(proc, kernels: dict[int, str]) -> str:
    """What a process of the container is: a lab's kernel, the pre-loaded server, a server a lab
    started (forked from the pre-loaded server, or a plain uvicorn), JupyterLab, launchers, this walk."""
    if proc.pid in kernels:
        return f"kernel: {kernels[proc.pid]}"
    if proc.pid == os.getpid():
        return "this walk (Binder's browser)"
    text = " ".join(proc.info["cmdline"] or ())
    if "jupyter-lab" in text or "jupyter lab" in text:
        return "JupyterLab server"
    if "--serve" in text:  # the pre-loaded server, or a process forked from it that is not a kernel
        try:
            forked = "--serve" in " ".join(proc.parent().cmdline())
        except Exception:
            forked = False
        return "servers labs started" if forked else "pre-loaded kernel server"
    if "forking_kernel" in text:
        return "kernel launchers"
    if "uvicorn" in text:
        return "servers labs started"
    return "other"


def processes_by_kind(kernels: dict[int, str]) -> list[tuple[str, float, float]]:
    """(what, USS, PSS) in MB for the container's processes, summed by kind_of, largest first."""
    import psutil

    totals: dict[str, list[float]] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if not proc.info["cmdline"]:
            continue
        try:
            uss, pss = private_and_proportional_mb(proc.pid)
        except OSError:
            continue
        total = totals.setdefault(kind_of(proc, kernels), [0.0, 0.0])
        total[0], total[1] = total[0] + uss, total[1] + pss
    return sorted(((what, uss, pss) for what, (uss, pss) in totals.items()), key=lambda row: -row[1])


async def run_cells(url: str, token: str, kernel_id: str, cells: list[str],
                    timeout: float, on_pid=lambda pid: None) -> tuple[list[str], int | None]:
    ws_url = url.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels?token={token}"
    session = uuid.uuid4().hex
    errors: list[str] = []
    connection = await websocket_connect(ws_url, max_message_size=64 * 2**20)
    try:
        pid = await kernel_pid(connection, session, timeout)  # the first kernel waits for the pre-loaded server
        if pid:
            on_pid(pid)  # known before the cells run, so a peak during the lab names its kernel
        for index, code in enumerate(cells):
            msg_id = uuid.uuid4().hex
            await connection.write_message(json.dumps({
                "header": {"msg_id": msg_id, "username": "learner", "session": session,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            deadline = time.monotonic() + timeout
            while True:
                raw = await asyncio.wait_for(connection.read_message(), max(1.0, deadline - time.monotonic()))
                if raw is None:
                    raise RuntimeError("the kernel's websocket closed (kernel died?)")
                if isinstance(raw, bytes):
                    continue
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind = msg["header"]["msg_type"]
                if kind == "error":
                    errors.append(f"cell {index}: {msg['content']['ename']}: {msg['content']['evalue'][:200]}")
                if kind == "execute_reply":
                    break
            if errors:
                break  # like "Run All" with stop_on_error: a learner sees the error and stops there
    finally:
        connection.close()
    return errors, pid


async def kernel_pid(connection, session: str, timeout: float = 30) -> int | None:
    """The kernel's process id, through a silent request (no history, no output, nothing in the notebook)."""
    msg_id = uuid.uuid4().hex
    await connection.write_message(json.dumps({
        "header": {"msg_id": msg_id, "username": "learner", "session": session,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": "", "silent": True, "store_history": False,
                    "user_expressions": {"pid": "__import__('os').getpid()"}, "allow_stdin": False},
    }))
    while True:
        raw = await asyncio.wait_for(connection.read_message(), timeout)
        if raw is None:
            return None
        if isinstance(raw, bytes):
            continue
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["header"]["msg_type"] == "execute_reply":
            value = msg["content"].get("user_expressions", {}).get("pid", {})
            text = value.get("data", {}).get("text/plain", "")
            return int(text) if text.isdigit() else None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--peak-target-mb", type=float, default=1536)
    parser.add_argument("--enforce-peak", action="store_true", help="exit 1 when the peak is over the target")
    parser.add_argument("--shut-down-finished", action="store_true",
                        help="shut each lab's kernel down before the next lab, as lab 00 advises")
    parser.add_argument("--culled-after", type=float, default=0,
                        help="the server culls a kernel this many seconds after its tab closed and it fell idle "
                             "(binder/jupyter: 15 minutes; the walk compresses a learner's time): at the end, "
                             "check that the culler shut the earlier labs' kernels down")
    parser.add_argument("--cell-timeout", type=float, default=300)
    args = parser.parse_args()

    api = httpx.Client(base_url=args.url, params={"token": args.token}, timeout=30)
    for _ in range(120):
        try:
            if api.get("/api/status").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    labs = sorted(item["path"] for item in api.get("/api/contents/labs").json()["content"]
                  if item["name"].endswith(".ipynb"))
    print(f"JupyterLab at {args.url} (root: the workspace {config.home()}), labs: {len(labs)}", flush=True)

    sampler = MemorySampler()
    sampler.start()
    print(f"{'lab':<28} {'status':<7} {'seconds':>8} {'in use MB':>10} {'peak MB':>8}  kernels", flush=True)
    failed = []
    kernel_pids: dict[str, int] = {}
    for path in labs:
        notebook = api.get(f"/api/contents/{path}").json()["content"]
        cells = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code" and c["source"].strip()]
        session = api.post("/api/sessions", json={"path": path, "type": "notebook", "name": Path(path).name,
                                                   "kernel": {"name": "python3"}}).json()
        started = time.monotonic()
        pid = None
        sampler.lab = Path(path).name

        def known(pid, lab=Path(path).name):
            sampler.kernels[pid] = lab

        try:
            errors, pid = asyncio.run(run_cells(args.url, args.token, session["kernel"]["id"], cells,
                                                args.cell_timeout, on_pid=known))
        except Exception as exc:  # a dead kernel, a timeout
            errors = [f"{type(exc).__name__}: {exc}"]
        if pid:
            kernel_pids[Path(path).name] = pid
        seconds = time.monotonic() - started
        kernels = len(api.get("/api/kernels").json())
        print(f"{Path(path).name:<28} {'failed' if errors else 'ok':<7} {seconds:8.1f} "
              f"{sampler.used() / 2**20:10.0f} {sampler.peak / 2**20:8.0f}  {kernels}", flush=True)
        for error in errors:
            print(f"    {error}", flush=True)
        failed += errors
        if args.shut_down_finished:
            api.delete(f"/api/sessions/{session['id']}")
    time.sleep(2)  # let whatever the last cells started settle, then take the final sample
    sampler.stop.set()
    sampler.join()
    limit = config.memory_limit()
    counter = kernel_counter_peak()
    print(f"walk-through peak memory: {sampler.peak / 2**20:.0f} MB (sampled, without page cache), limit "
          f"{limit[0] / 2**20 if limit else float('nan'):.0f} MB; the cgroup's own high-water mark "
          f"(page cache included): {counter / 2**20 if counter else float('nan'):.0f} MB; "
          f"kernels still running: {len(api.get('/api/kernels').json())}", flush=True)
    if kernel_pids and not args.shut_down_finished:
        print("each lab's kernel now, at rest after its lab (MB; USS = its own pages, PSS = with its share "
              "of pages it shares with the other kernels):", flush=True)
        total_uss = total_pss = 0.0
        for lab, pid in kernel_pids.items():
            try:
                uss, pss = private_and_proportional_mb(pid)
            except OSError:
                print(f"  {lab:<28} (gone)", flush=True)
                continue
            total_uss, total_pss = total_uss + uss, total_pss + pss
            print(f"  {lab:<28} USS {uss:5.0f}  PSS {pss:5.0f}", flush=True)
        print(f"  {'all kernels':<28} USS {total_uss:5.0f}  PSS {total_pss:5.0f}", flush=True)
        print("  and the rest:", flush=True)
        for what, uss, pss in processes_by_kind(sampler.kernels):
            if not what.startswith("kernel:"):
                print(f"  {what:<28} USS {uss:5.0f}  PSS {pss:5.0f}", flush=True)
    if sampler.at_peak:
        used, lab, rows = sampler.at_peak
        own = sum(uss for _, uss, _ in rows)
        print(f"at the peak (the sample of {used / 2**20:.0f} MB, during {lab}), what each process held of its "
              "own (USS, MB):", flush=True)
        for what, uss, pss in rows:
            print(f"  {what:<40} USS {uss:5.0f}  PSS {pss:5.0f}", flush=True)
        print(f"  {'shared by several (counted once), and the rest':<40} {used / 2**20 - own:9.0f}", flush=True)
    over = sampler.peak / 2**20 > args.peak_target_mb
    how = "each finished lab's kernel shut down" if args.shut_down_finished else "every lab's kernel left running"
    if args.culled_after:
        how = (f"every lab's kernel left running, its tab closed, and culled {args.culled_after:.0f} s after it "
               "fell idle (Binder's config: 15 minutes; a learner spends longer than that on a lab)")
        running = len(api.get("/api/kernels").json())
        if running >= len(labs) - 1:
            print(f"the culler shut down {len(labs) - running} of {len(labs)} kernels: it did not run", flush=True)
            failed.append("no kernel culled")
    print(f"target: peak under {args.peak_target_mb:.0f} MB with {how}: {'NOT MET' if over else 'met'}", flush=True)
    if over and args.enforce_peak:
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
