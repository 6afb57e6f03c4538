"""Python kernels forked from one process that has already imported the course's libraries.

Why: JupyterLab keeps every notebook's kernel alive, and on Binder they all share 2 GB. Each kernel
imports the same libraries (pandas, pyarrow, SciPy, scikit-learn, MLflow, matplotlib, IPython): about
240 MB of memory per kernel, nine times over. Kernels forked from one process that imported them once
share those pages copy-on-write, so each kernel only adds what its own notebook creates.

How: `binder/start` installs a `python3` kernelspec whose command is this script (the launcher). The
launcher asks the pre-loaded server (started on first use; one per Python and PYTHONPATH) to fork a
kernel with the launcher's arguments, environment, working directory and stdio, then stands in for
it: Jupyter's signals (interrupt, terminate, kill) reach the kernel's process group, and the launcher
exits with the kernel's exit code. If the launcher is killed, the server kills the kernel. Anything
wrong with the server means a plain `python -m ipykernel_launcher`, as before. Before it forks
anything, the server runs the labs' common code once (`_warm_up`; MLOPS_LAB_FORK_WARM_UP=0 skips it).

    python forking_kernel.py -f CONNECTION_FILE   the launcher (the kernelspec's argv)
    python forking_kernel.py --run -m MODULE ...  the same for `python -m MODULE ...` (the servers labs
                                                  start, through MLOPS_LAB_FORK_PYTHON)
    python forking_kernel.py --serve SOCKET       the pre-loaded server (the launcher starts it)
    python forking_kernel.py --install DIR        write DIR/kernels/python3/ (then JUPYTER_PATH=DIR)
"""

from __future__ import annotations

# The launcher, one per kernel, imports only these (a few MB each); the rest is imported where used.
import json
import os
import select
import signal
import socket
import sys

# What every lab's kernel imports sooner or later; a module that fails to import is skipped.
PRELOAD = (
    "ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.debugger", "IPython.core.interactiveshell", "pdb",
    "ipywidgets",
    "numpy", "pandas", "pyarrow", "scipy.stats", "scipy.sparse", "sklearn.base", "sklearn.pipeline",
    "sklearn.compose", "sklearn.preprocessing", "sklearn.impute", "sklearn.ensemble", "sklearn.linear_model",
    "sklearn.metrics", "sklearn.model_selection", "threadpoolctl", "matplotlib", "matplotlib.pyplot",
    "matplotlib_inline.backend_inline", "mlflow", "mlflow.models", "mlflow.tracking", "mlflow.sklearn",
    "mlflow.pyfunc", "mlflow.store.tracking.sqlalchemy_store", "mlflow.store.model_registry.sqlalchemy_store",
    "pandera.pandas", "pydantic", "fastapi", "fastapi.testclient", "httpx", "uvicorn", "docker", "psutil",
    "yaml", "jinja2",
    # and what the labs' kernels imported on top of those in the stand-in's walk-through
    "pandera.backends.pandas.container", "pandera.backends.pandas.components",
    "pandera.backends.pandas.builtin_checks", "pandera.backends.pandas.builtin_hypotheses",
    "hypothesis.extra.pandas", "narwhals.stable.v2", "narwhals._pandas_like.dataframe",
    "mlflow.pyfunc.utils.serving_data_parser", "mlflow.store.tracking.sqlalchemy_workspace_store",
    "mlflow.store.model_registry.sqlalchemy_workspace_store", "alembic.command", "git",
    "opentelemetry.sdk.trace", "opentelemetry.sdk.metrics", "pyarrow.parquet", "pyarrow.dataset",
    "pandas.io.formats.style", "pandas.io.formats.html", "PIL.PngImagePlugin", "prometheus_client",
    "prometheus_client.openmetrics.exposition", "httpcore", "anyio._backends._asyncio", "fastapi.staticfiles",
    "fastapi_offline", "IPython.core.completer", "IPython.core.debugger", "IPython.core.oinspect",
    "IPython.extensions.storemagic", "jedi",  # jedi: tab completion
)
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
# The first kernel waits for the imports (about 10 s on Binder's one CPU); later ones start at once.
READY_TIMEOUT = float(os.environ.get("MLOPS_LAB_FORK_SERVER_TIMEOUT", "90"))


def socket_path() -> str:
    """One server per interpreter and PYTHONPATH: a kernel must see the modules a plain one would."""
    import zlib

    key = zlib.crc32(f"{sys.executable}\0{os.environ.get('PYTHONPATH', '')}".encode())
    runtime = os.environ.get("XDG_RUNTIME_DIR") or os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(runtime, f"mlops-lab-kernels-{os.getuid()}-{key:08x}.sock")


# --- the launcher -------------------------------------------------------------------------------

def _connect(path: str) -> socket.socket:
    """Connect to the server, starting it (once, under a lock) when nobody listens yet."""
    import fcntl
    import time

    def attempt() -> socket.socket | None:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(path)
            return conn
        except OSError:
            conn.close()
            return None

    if conn := attempt():
        return conn
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if conn := attempt():
            return conn
        log = open(f"{path}.log", "ab")
        import subprocess

        subprocess.Popen([sys.executable, __file__, "--serve", path], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True, cwd="/")
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if conn := attempt():
                return conn
            time.sleep(0.1)
    raise OSError(f"the kernel server did not start in {READY_TIMEOUT:.0f} s (see {path}.log)")


def launch(argv: list[str], run: bool = False) -> int:
    """Have the server fork a kernel (or, with run, `python -m MODULE ...` for argv) and stand in for it."""
    try:
        conn = _connect(socket_path())
        request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "run": run}).encode()
        request += b"\n"
        socket.send_fds(conn, [request], [0, 1, 2])
        reply = conn.makefile("rb")
        pid = int(json.loads(reply.readline())["pid"])
    except (OSError, ValueError, KeyError) as exc:
        print(f"forking_kernel: {exc}; starting a plain process instead", file=sys.stderr, flush=True)
        os.execv(sys.executable, [sys.executable, *(argv if run else ["-m", "ipykernel_launcher", *argv])])

    def relay(signum, _frame):
        try:
            os.killpg(pid, signum)  # the kernel leads its own group, with whatever it started
        except ProcessLookupError:
            pass

    for signum in SIGNALS:
        signal.signal(signum, relay)
    line = reply.readline()  # the server writes the exit code when the kernel ends
    if line:
        return int(json.loads(line)["exit"])
    # The server died (killed under memory pressure, say) but its kernel lives on: stand in for it
    # until it ends, so Jupyter neither restarts a working kernel nor loses track of it.
    try:
        ended = os.pidfd_open(pid)
    except OSError:
        return 1
    while not select.select([ended], [], [])[0]:
        pass
    return 1


# --- the server ---------------------------------------------------------------------------------

def _preload() -> None:
    import importlib

    # What ipykernel would set before the notebook imports matplotlib (the inline backend).
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # A fork copies no threads: pyarrow's jemalloc must not start its background thread here.
    os.environ.setdefault("JE_ARROW_MALLOC_CONF", "background_thread:false")
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional library missing or broken: the kernel imports it itself
            print(f"forking_kernel: not preloaded: {name} ({type(exc).__name__}: {exc})", file=sys.stderr)


def _warm_up() -> None:
    """Run once, on a little simulated data, what the labs' kernels and servers all run: simulate,
    train, score, drift, a table, a plot, the API's app and its schema; then throw the results away.

    Why: Python 3.11 writes into a function's code object the first times it runs (the adaptive
    interpreter's counters and inline caches), and libraries fill caches on first use (SQLAlchemy's
    mappers, pandas', pydantic's). Done here, those pages are written once and shared by every kernel
    and server forked after; otherwise each of them copies them. In the stand-in's walk with nine
    kernels kept: 7 MB less in each kernel, 12 MB less in lab 08's server, 60 MB off the peak, for
    about 0.5 s once, before the first kernel starts. It writes no file, opens no tracking store,
    leaves no setting changed and no thread running (one OpenMP/BLAS thread). A step that fails is
    skipped and logged: the kernels then warm up themselves, as before."""
    import io
    import warnings

    from threadpoolctl import threadpool_limits

    def step(what, run):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run()
        except Exception as exc:
            print(f"forking_kernel: warm-up skipped {what} ({type(exc).__name__}: {exc})", file=sys.stderr)

    def sqlalchemy_mappers():
        import mlflow.store.model_registry.dbmodels.models  # noqa: F401
        import mlflow.store.tracking.dbmodels.models  # noqa: F401
        import sqlalchemy.orm

        sqlalchemy.orm.configure_mappers()

    def course():
        from mlops_lab import data, training
        from mlops_lab.monitoring import drift
        from mlops_lab.serving import app, model

        frame = data.simulate_transactions(days=21, per_day=150, seed=1)
        train, valid, holdout = data.time_split(frame)
        for kind in ("logistic_regression", "gradient_boosting"):
            trained = training.train(kind, train, valid)
            served = model.prepare(trained.pipeline, name="warm-up", version="0", alias=None, source="warm-up",
                                   threshold=trained.threshold, contract_hash=data.contract_hash())
            served.scores(model.serving_examples(4))
        drift.ReferenceProfile.fit(train).compare(holdout)
        api = app.create_app(load_model=lambda: served)
        api.openapi()
        import prometheus_client

        prometheus_client.enable_created_metrics()  # create_app turned them off, for its own metrics
        frame.head()._repr_html_()
        frame.describe()

    def plot():  # rendered as the inline backend renders, without pyplot (no figure is left open)
        from matplotlib.figure import Figure

        fig = Figure()
        ax = fig.subplots()
        ax.plot([0, 1], [0, 1], label="warm-up")
        ax.legend()
        fig.savefig(io.BytesIO(), format="png")

    def course_modules():
        """The course's own modules every lab imports (its checks build the registry of all exercises): about
        60 MB of code and tables a kernel would otherwise hold on its own."""
        import importlib

        from mlops_lab import exercises

        exercises.all_exercises()
        for name in ("mlops_lab.registry", "mlops_lab.pipeline", "mlops_lab.ci", "mlops_lab.testing",
                     "mlops_lab.monitoring", "mlops_lab.monitoring.explorer", "mlops_lab.widgets", "mlops_lab.learner",
                     "mlops_lab.serving.client", "mlops_lab.serving.server", "mlops_lab.container"):
            importlib.import_module(name)

    with threadpool_limits(limits=1):
        step("SQLAlchemy's mappers", sqlalchemy_mappers)
        step("the course's code paths", course)
        step("the course's modules", course_modules)
        step("a plot", plot)


def _kernel(request: dict, fds: list[int], keep_closed: list) -> None:
    """In the forked child: become the kernel a plain launch would have started. Never returns."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for item in keep_closed:
            item.close() if hasattr(item, "close") else os.close(item)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for signum in SIGNALS[1:]:
            signal.signal(signum, signal.SIG_DFL)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import tempfile

        tempfile.tempdir = None  # found again from this kernel's TMPDIR, not the server's
        import random

        import numpy

        random.seed()
        numpy.random.seed()  # a fresh process would not share its global random state with its siblings
        if request.get("run"):  # `python -m MODULE args...`
            import runpy

            module, *args = request["argv"][1:]
            sys.argv = [module, *args]
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        else:
            sys.argv = [__import__("ipykernel_launcher").__file__, *request["argv"]]
            from ipykernel import kernelapp

            kernelapp.launch_new_instance()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        import atexit

        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 20)
        if not more:
            raise OSError("the launcher hung up")
        data += more
    return json.loads(data), fds


def serve(path: str) -> None:
    import gc

    here = os.path.dirname(os.path.realpath(__file__))
    sys.path[:] = [p for p in sys.path if p != here]
    _preload()
    if os.environ.get("MLOPS_LAB_FORK_WARM_UP", "1") != "0":
        _warm_up()
    gc.collect()
    gc.freeze()  # the collector would otherwise touch (and so copy) every preloaded object in each kernel
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    kernels: dict[int, socket.socket] = {}  # kernel pid -> its launcher's connection
    print(f"forking_kernel: serving on {path} (pid {os.getpid()})", file=sys.stderr, flush=True)
    while True:
        ready, _, _ = select.select([listener, wake_r, *kernels.values()], [], [])
        if wake_r in ready:
            os.read(wake_r, 4096)
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                conn = kernels.pop(pid, None)
                if conn is not None:
                    try:
                        conn.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
                    except OSError:
                        pass
                    conn.close()
        for pid, conn in list(kernels.items()):
            if conn in ready and not conn.recv(1):  # the launcher is gone (killed): so is its kernel
                del kernels[pid]
                conn.close()
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if listener in ready:
            conn, _ = listener.accept()
            try:
                request, fds = _read_request(conn)
            except (OSError, ValueError):
                conn.close()
                continue
            pid = os.fork()
            if pid == 0:
                _kernel(request, fds, [listener, wake_r, wake_w, *kernels.values(), conn])
            for fd in fds:
                os.close(fd)
            kernels[pid] = conn
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


# --- the kernelspec -----------------------------------------------------------------------------

def install(folder):
    """Write folder/kernels/python3: the usual ipykernel spec, launched through this script."""
    import shutil
    from pathlib import Path

    from jupyter_client.kernelspec import KernelSpecManager

    target = Path(folder) / "kernels" / "python3"
    target.mkdir(parents=True, exist_ok=True)
    original = Path(KernelSpecManager().get_kernel_spec("python3").resource_dir)
    if original.resolve() != target.resolve():
        for item in original.iterdir():
            if item.name != "kernel.json":
                shutil.copy(item, target / item.name)
    spec = json.loads((original / "kernel.json").read_text())
    # mlops_lab.learner hands memory glibc keeps back after each cell (a kernel at rest stays small).
    # -I -S: the launcher needs only the standard library, and stays small.
    spec["argv"] = [sys.executable, "-I", "-S", str(Path(__file__).resolve()), "-f", "{connection_file}",
                    "--InteractiveShellApp.extensions=mlops_lab.learner"]
    (target / "kernel.json").write_text(json.dumps(spec, indent=1))
    return target


if __name__ == "__main__":
    if sys.argv[1:3] == ["--run", "-m"] and len(sys.argv) > 3:
        sys.exit(launch(sys.argv[2:], run=True))
    elif sys.argv[1:2] == ["--serve"]:
        serve(sys.argv[2])
    elif sys.argv[1:2] == ["--install"]:
        print(install(sys.argv[2]))

    else:
        sys.exit(launch(sys.argv[1:]))
