"""Run the API for real: uvicorn in a subprocess on a free 127.0.0.1 port, over HTTP."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import LabError

HEADER_SECONDS = 10.0  # a request's headers must arrive within this (MLOPS_LAB_HEADER_SECONDS)
COMMAND = ["-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", "--no-access-log",
           "--http", "mlops_lab.serving.server:H11WithHeaderTimeout"]


def _header_timeout_protocol():
    """uvicorn's h11 protocol, plus a time limit on a request's headers: uvicorn limits the idle time
    between requests (keep-alive, 5 s) and the bodies' is the app's (app.py, MLOPS_LAB_BODY_SECONDS), but
    a client that sends its headers a byte at a time (or opens a connection and says nothing) would hold
    it for ever. Such a connection gets a 408 and is closed after HEADER_SECONDS."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class H11WithHeaderTimeout(H11Protocol):
        _headers_timer = None

        def _arm(self) -> None:
            if self._headers_timer is None:
                seconds = float(os.environ.get("MLOPS_LAB_HEADER_SECONDS") or HEADER_SECONDS)
                self._headers_timer = self.loop.call_later(seconds, self._headers_late)

        def _disarm(self) -> None:
            if self._headers_timer is not None:
                self._headers_timer.cancel()
                self._headers_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm()  # a connection that says nothing is cut too

        def data_received(self, data: bytes) -> None:
            if self.conn.their_state is h11.IDLE:
                self._arm()  # a request begins: its headers are on the clock
            super().data_received(data)
            if self.conn.their_state is not h11.IDLE:
                self._disarm()  # the headers are in

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._disarm()  # keep-alive's own timeout takes over

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _headers_late(self) -> None:
            self._headers_timer = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
                                     b"content-length: 0\r\nconnection: close\r\n\r\n")
                self.transport.close()

    return H11WithHeaderTimeout


def __getattr__(name: str):
    if name == "H11WithHeaderTimeout":  # built on first use: importing this module does not import uvicorn
        return _header_timeout_protocol()
    raise AttributeError(name)


def _python() -> list[str]:
    """How to start Python for the server: on Binder, forked from the process that pre-loaded the
    kernels' libraries (binder/forking_kernel.py; sharing them saves ~130 MB of the 2 GB)."""
    fork = os.environ.get("MLOPS_LAB_FORK_PYTHON", "")
    return [sys.executable, "-I", "-S", fork, "--run"] if fork and os.path.isfile(fork) else [sys.executable]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proxy_installed() -> bool:
    return importlib.util.find_spec("jupyter_server_proxy") is not None


def jupyter_base_url() -> str | None:
    """The base URL (a path such as ``/`` or ``/user/NAME/``) of the Jupyter server whose kernel
    runs this code, when jupyter-server-proxy can forward a port through it; else None.

    A kernel started by a Jupyter server gets ``JPY_SESSION_NAME`` (jupyter_server >= 2) and
    ``JPY_PARENT_PID`` (the server's pid, matched in the server's ``jpserver-PID.json`` runtime
    file for its base URL); under JupyterHub and Binder ``JUPYTERHUB_SERVICE_PREFIX`` is the base
    URL. papermill, nbclient and plain scripts set neither, so they get None."""
    if not proxy_installed():
        return None
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix:
        return prefix if prefix.endswith("/") else prefix + "/"
    if "JPY_SESSION_NAME" not in os.environ:
        return None
    try:
        from jupyter_core.paths import jupyter_runtime_dir

        info = Path(jupyter_runtime_dir()) / f"jpserver-{os.environ.get('JPY_PARENT_PID', '')}.json"
        base = json.loads(info.read_text()).get("base_url") or "/"
    except (ImportError, OSError, ValueError):
        base = "/"  # the server's default base URL
    return base if base.endswith("/") else base + "/"


class ServerHandle:
    """A running server: ``.url``, ``.port``, ``.browser_url()``, ``.logs()``, ``.stop()``.

    Also a context manager: ``with start_server() as server: ...`` stops the server (and its
    process) when the block ends, also when it ends with an exception."""

    def __init__(self, process: subprocess.Popen, url: str, log_path: Path):
        self.process, self.url, self.log_path = process, url, log_path
        # who started it, for lab.setup on Binder (stop_servers_left_running)
        self.record = log_path.with_name(f"uvicorn-{self.port}.json")
        self.record.write_text(json.dumps({"pid": process.pid, "owner": os.getpid(), "url": url}))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def browser_url(self, path: str = "/docs") -> str:
        """The address of ``path`` on this server that a learner's browser can open.

        In a notebook served by Jupyter with jupyter-server-proxy installed (JupyterLab on a
        laptop, JupyterHub, Binder), the browser may not reach 127.0.0.1 of the machine the kernel
        runs on, so this is the proxied form ``<Jupyter base URL>proxy/PORT/docs``, for example
        ``/user/NAME/proxy/41234/docs``: a path on the same host as the JupyterLab page, to open as
        a link from the notebook (``IPython.display.Markdown(f"[API docs]({url})")``).
        Anywhere else (scripts, papermill, a terminal) it is ``http://127.0.0.1:PORT/docs``."""
        path = path if path.startswith("/") else "/" + path
        base = jupyter_base_url()
        if base is None:
            return self.url + path
        return f"{base}proxy/{self.port}{path}"

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 30) -> int:
        """Graceful shutdown (SIGTERM: in-flight requests finish, the prediction log is flushed)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.record.unlink(missing_ok=True)
        return self.process.returncode

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServerHandle {self.url} {'running' if self.running else 'stopped'}>"


class _ThreadServerHandle(ServerHandle):
    """A server in a daemon thread of this process (``start_server(in_thread=True)``), with the interface of
    one in its own process; ``process`` is None. Its log file gets what the app and uvicorn log at
    WARNING and above while it runs. It ends with the process that started it, whoever forgets to stop it."""

    process = None
    _LOGGERS = ("mlops_lab.serving", "uvicorn.error")

    def __init__(self, app, port: int, log_path: Path):
        import logging

        self.url, self.log_path = f"http://127.0.0.1:{port}", log_path
        self._log = logging.FileHandler(log_path)
        self._log.setLevel(logging.WARNING)
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        for name in self._LOGGERS:
            logging.getLogger(name).addHandler(self._log)
        self._server, self._thread = _uvicorn_in_thread(app, port)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30) -> int:
        """Graceful shutdown: in-flight requests finish, the prediction log is flushed. Returns 0; 1 when it
        was not graceful: after ``timeout`` the exit was forced (open requests cut, the app's shutdown skipped,
        so its prediction log was not closed), or the thread still runs (a request or a model load that does
        not end: a thread, unlike a process, cannot be killed)."""
        import logging

        graceful = _stop_uvicorn_thread(self._server, self._thread, timeout)
        for name in self._LOGGERS:
            logging.getLogger(name).removeHandler(self._log)
        self._log.close()
        return 0 if graceful else 1


def wait_until_ready(url: str, timeout: float, alive=lambda: True, logs=lambda: "", path: str = "/ready") -> None:
    import httpx

    deadline = time.monotonic() + timeout
    reason = "no answer yet"
    with httpx.Client(timeout=2) as client:  # one client: httpx.get() builds an SSL context per call (~0.1 s)
        while time.monotonic() < deadline:
            if not alive():
                raise LabError(f"The server at {url} exited before it was ready. Its log ends with:\n"
                               f"{logs()[-2000:]}")
            try:
                response = client.get(f"{url}{path}")
                if response.status_code == 200:
                    return
                reason = response.json().get("detail", response.text)
                if "model not ready" in reason:
                    raise LabError(f"The server at {url} is up but cannot serve: {reason}\nIts log ends with:\n"
                                   f"{logs()[-1500:]}")
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            time.sleep(0.1)
    raise LabError(f"The server at {url} was not ready after {timeout:.0f} s ({reason}). Its log ends with:\n"
                   f"{logs()[-2000:]}")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""


def stop_servers_left_running(report=print, timeout: float = 15) -> list[str]:
    """Stop the API servers that other processes (another lab's kernel, left running in its tab) started in
    this workspace, and return their URLs. lab.setup calls it on Binder, where 2 GB hold every kernel a
    learner leaves running: lab 04's server is about 90 MB that no later lab uses."""
    from .. import config

    stopped = []
    for record in sorted((config.home() / "servers").glob("uvicorn-*.json")):
        try:
            info = json.loads(record.read_text())
            pid, owner, url = int(info["pid"]), int(info["owner"]), str(info["url"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if owner == os.getpid():
            continue
        if b"uvicorn" not in _cmdline(pid):  # gone (or its pid reused by another program): forget it
            record.unlink(missing_ok=True)
            continue
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _cmdline(pid):  # a zombie (its owner reaps it later) has none
            time.sleep(0.1)
        record.unlink(missing_ok=True)
        stopped.append(url)
        if report:
            report(f"lab.setup: stopped the API server an earlier lab left running at {url} (Binder's 2 GB): "
                   "start it again in that lab's first section if you go back to it")
    return stopped


def _uvicorn_in_thread(app, port: int):
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a daemon thread of this process, with the same
    protocol as a server of its own (a request's headers on the clock); returns the server and the thread."""
    import threading

    import uvicorn

    # log_config=None: uvicorn's own would reconfigure this process's logging (and drop the handlers on
    # uvicorn.error that keep an in-thread server's log)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            http=_header_timeout_protocol(), log_config=None)
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run()
        except SystemExit:  # uvicorn's way out when it cannot start (a port taken): its log says why
            pass

    thread = threading.Thread(target=run, daemon=True, name=f"mlops-lab-uvicorn-{port}")
    thread.start()
    return server, thread


def _stop_uvicorn_thread(server, thread, timeout: float) -> bool:
    """Ask uvicorn to exit (in-flight requests finish), wait ``timeout`` s, then force it (open connections
    closed, the app's shutdown skipped; up to 5 s more). True when it ended gracefully (or had ended)."""
    if thread.is_alive():
        server.should_exit = True
        thread.join(timeout)
    if not thread.is_alive():
        return True
    server.force_exit = True
    thread.join(min(timeout, 5))
    return False


def serve_in_thread(app, report=print, path: str = "/ready") -> tuple[str, Callable[[], None]]:
    """Serve ``app`` (a FastAPI app built in this process, e.g. with your routes included) with uvicorn on a
    free 127.0.0.1 port in a daemon thread; wait until ``path`` answers 200 (the model has loaded). Returns its
    URL and a function that stops it (in-flight requests finish). For a server in its own process, use
    ``start_server``."""
    port = free_port()
    server, thread = _uvicorn_in_thread(app, port)
    url = f"http://127.0.0.1:{port}"
    if report:
        report(f"serve_in_thread: uvicorn serves your app on {url}; waiting until {path} answers (the model loads)...")
    wait_until_ready(url, 60, alive=thread.is_alive, path=path)

    def stop() -> None:
        _stop_uvicorn_thread(server, thread, 30)

    return url, stop


def start_server(
    bundle: str | Path | None = None,
    alias: str = "champion",
    name: str | None = None,
    port: int | None = None,
    admin_token: str | None = None,
    poll_seconds: float | None = None,
    prediction_log: str | Path | None = None,
    timeout: float = 120,
    env: dict | None = None,
    drain_seconds: float = 0,
    report=print,
    in_thread: bool = False,
) -> ServerHandle:
    """Start uvicorn serving the model from ``bundle`` (else the registry at ``alias``) on a free
    127.0.0.1 port, wait for ``/ready``, and return a handle. Raises LabError with the log tail if
    the server cannot become ready. With ``drain_seconds``, a SIGTERM (``stop()``) first turns ``/ready``
    to 503 and keeps serving that long, as a pod does on Kubernetes. ``report`` (``print``; None for
    silence) gets one line before the wait and one when the server is ready: starting takes 3-20 s in a
    process of its own, about 1 s in a thread (the model loads and answers its serving example first).

    ``in_thread=True`` serves the same app with the same uvicorn, over HTTP on 127.0.0.1, from a daemon
    thread of this process instead of a process of its own: a second Python would hold its own copy of
    pandas, scikit-learn and MLflow (about 300 MB, as much as a notebook's kernel). What needs a process
    of its own (``drain_seconds``, which answers a SIGTERM; ``env``) cannot be asked of it."""
    from .. import config

    if in_thread and (drain_seconds or env):
        asked = " and ".join(n for n, v in (("drain_seconds", drain_seconds), ("env", env)) if v)
        raise LabError(f"start_server(in_thread=True) cannot take {asked}: draining on SIGTERM and an environment "
                       "of its own need a server in its own process; leave out in_thread=True.")
    port = port or free_port()
    log_dir = config.ensure_home() / "servers"
    log_dir.mkdir(exist_ok=True)
    descriptor, name_of_log = tempfile.mkstemp(prefix=f"uvicorn-{port}-", suffix=".log", dir=log_dir)
    os.close(descriptor)  # the server (its process, or its handler here) opens the file by name
    log_path = Path(name_of_log)
    if in_thread:
        from .app import create_app

        # "" as the server process gets it: no token asked for is no reload, whatever this process's environment
        app = create_app(bundle=bundle, alias=alias, name=name, prediction_log=prediction_log,
                         admin_token=admin_token or "", poll_seconds=poll_seconds)
        handle = _ThreadServerHandle(app, port, log_path)
    else:
        settings = {
            "MLOPS_LAB_BUNDLE": str(bundle) if bundle else "",
            "MLOPS_LAB_MODEL_ALIAS": alias,
            "MLOPS_LAB_MODEL_NAME": name or "",
            "MLOPS_LAB_ADMIN_TOKEN": admin_token or "",
            "MLOPS_LAB_POLL_SECONDS": str(poll_seconds or ""),
            "MLOPS_LAB_PREDICTION_LOG": str(prediction_log or ""),
            "MLOPS_LAB_DRAIN_SECONDS": str(drain_seconds or ""),
            "MLOPS_LAB_HOME": str(config.home()),
            # mlflow.set_registry_uri() exports MLFLOW_REGISTRY_URI into os.environ: without these, a server
            # started after another store was used in this process would inherit that store's registry
            "MLFLOW_TRACKING_URI": config.tracking_uri(),
            "MLFLOW_REGISTRY_URI": config.tracking_uri(),
        }
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen([*_python(), *COMMAND, "--host", "127.0.0.1", "--port", str(port)],
                                       env={**os.environ, **settings, **(env or {})}, stdout=log_file,
                                       stderr=subprocess.STDOUT)
        handle = ServerHandle(process, f"http://127.0.0.1:{port}", log_path)
    started = time.monotonic()
    if report:
        where, wait = (" in a thread of this process", "about 1 s") if in_thread else ("", "3-20 s")
        report(f"start_server: starting the API on {handle.url}{where}; waiting until /ready answers ({wait})...")
    try:
        wait_until_ready(handle.url, timeout, alive=lambda: handle.running, logs=handle.logs)
    except LabError:
        handle.stop()
        raise
    if report:
        report(f"start_server: ready in {time.monotonic() - started:.1f} s")
    return handle
