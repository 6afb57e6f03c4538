"""The prediction log: every prediction appended as one JSON line, off the request path.

Requests put records on a bounded queue (never waiting); one writer thread appends them in
batches. ``close()`` drains the queue and flushes, so a graceful shutdown loses nothing. If
the writer ever falls a whole queue behind, records are dropped and counted, never blocking
a payment: the ``cardguard_prediction_log_dropped_total`` metric shows it."""

from __future__ import annotations

import json
import logging
import queue
import threading
from pathlib import Path

log = logging.getLogger("mlops_lab.serving")
_STOP = object()


class PredictionLog:
    def __init__(self, path: str | Path, max_queue: int = 100_000, on_drop=None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._on_drop = on_drop
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def write(self, record: dict) -> None:
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1
            if self._on_drop:
                self._on_drop()

    def _run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            while True:
                batch = [self._queue.get()]
                while len(batch) < 1000:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                stop = any(item is _STOP for item in batch)
                lines = [json.dumps(item, separators=(",", ":")) for item in batch if item is not _STOP]
                if lines:
                    out.write("\n".join(lines) + "\n")
                    out.flush()
                    self.written += len(lines)
                if stop:
                    return

    def close(self, timeout: float = 30) -> None:
        """Write everything queued, then stop the writer."""
        self._queue.put(_STOP)  # blocks only if full: the writer is draining it
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("prediction log: writer did not finish within %ss", timeout)
        log.info("prediction log: %d records written to %s (%d dropped)", self.written, self.path, self.dropped)
