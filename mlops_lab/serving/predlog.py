"""The prediction log: every prediction appended as one JSON line, off the request path.

Requests append records to a bounded in-memory buffer (a deque: appending is atomic and takes no
lock); one writer thread wakes every ``flush_seconds`` and writes what has gathered, in one write.
(A writer that waits on a queue is woken by every request and competes with it for the GIL: that
cost 0.2-0.5 ms per request.) ``close()`` drains the buffer and flushes, so a graceful shutdown
loses nothing. If the writer ever falls ``max_queue`` records behind, records are dropped and
counted, never blocking a payment: the ``cardguard_prediction_log_dropped_total`` metric shows it."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger("mlops_lab.serving")


class PredictionLog:
    def __init__(self, path: str | Path, max_queue: int = 100_000, on_drop=None, flush_seconds: float = 0.05):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._buffer: deque = deque()
        self._max = max_queue
        self._on_drop = on_drop
        self._flush_seconds = flush_seconds
        self._stopping = threading.Event()
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def write(self, record: dict) -> None:
        if len(self._buffer) >= self._max:
            self.dropped += 1
            if self._on_drop:
                self._on_drop()
            return
        self._buffer.append(record)

    def _drain(self) -> list[dict]:
        batch = []
        pop = self._buffer.popleft
        while True:
            try:
                batch.append(pop())
            except IndexError:
                return batch

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            if out.tell() and not _ends_a_line(self.path):
                # a writer before this one was stopped mid-line (a killed server or kernel): start on a line of
                # our own, or our first record would be glued to that fragment and lost with it
                out.write("\n")
            while True:
                stopping = self._stopping.wait(self._flush_seconds)
                batch = self._drain()
                if batch:
                    out.write("".join(json.dumps(item, separators=(",", ":")) + "\n" for item in batch))
                    out.flush()
                    self.written += len(batch)
                if stopping and not self._buffer:
                    return

    def close(self, timeout: float = 30) -> None:
        """Write everything buffered, then stop the writer."""
        self._stopping.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log: writer did not finish within %ss", timeout)
        log.info("prediction log: %d records written to %s (%d dropped)", self.written, self.path, self.dropped)


def _ends_a_line(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1) == b"\n"
