"""The course's own plumbing: ``doctor`` (can this machine run the labs?) and ``setup(n)``
(build, idempotently, what the labs before ``n`` would have left behind)."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

from . import config
from .errors import LabError

KEY_PACKAGES = ("mlflow", "scikit-learn", "pandas", "fastapi", "uvicorn", "papermill", "ipywidgets", "docker")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def _package_versions() -> Check:
    found, missing = [], []
    for name in KEY_PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check("packages", False, f"missing {', '.join(missing)}: run `pip install -r requirements.txt -e .`")
    return Check("packages", True, ", ".join(found))


# The checks create nothing: a check should not create what it checks.


def _workspace() -> Check:
    try:
        root = config.check_home()
    except LabError as exc:
        return Check("workspace", False, str(exc))
    if root.is_dir():
        return Check("workspace", True, f"{root} (writable)")
    return Check("workspace", True, f"{root} (writable; not created yet: the first lab creates it)")


def _tracking_store() -> Check:
    try:
        uri = config.tracking_uri()
    except LabError as exc:
        return Check("tracking store", False, str(exc))
    if uri.startswith("sqlite:///"):
        import sqlite3

        db = uri.removeprefix("sqlite:///")
        if not os.path.exists(db):
            return Check("tracking store", True, f"{uri} (not created yet: the first tracked run creates it)")
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                conn.execute("select name from sqlite_master limit 1").fetchall()
        except sqlite3.Error as exc:
            return Check("tracking store", False, f"{uri}: {exc}. Move the file aside or run `mlops-lab reset`; "
                         "or point MLOPS_LAB_TRACKING_URI elsewhere.")
        return Check("tracking store", True, uri)
    if uri.startswith(("http://", "https://")) and os.environ.get("MLFLOW_TRACKING_USERNAME"):
        from .workshop import check_connection  # a workshop server: also credentials and permissions

        failed = [f"{name}: {detail}" for name, ok, detail in check_connection() if not ok]
        return Check("tracking store", not failed, failed[0] if failed else f"{uri} (workshop: signed in, can write)")
    if uri.startswith(("http://", "https://")):
        import httpx

        try:
            httpx.get(uri.rstrip("/") + "/health", timeout=3).raise_for_status()
        except httpx.HTTPError as exc:
            return Check("tracking store", False, f"{uri} does not answer ({exc}); ask your instructor, or unset MLOPS_LAB_TRACKING_URI to use a local store.")
        return Check("tracking store", True, f"{uri} (server answers)")
    return Check("tracking store", True, f"{uri} (not checked)")


def _docker() -> Check:
    from .container import Situation, docker_status

    status = docker_status()
    fallback = "lab 05 runs the same server entrypoint as a local process instead of a container"
    if status.situation is Situation.NO_DAEMON:
        return Check("docker daemon", False, f"not reachable: {fallback}", required=False)
    if status.situation is Situation.NO_BASE_IMAGE:
        return Check("docker daemon", False, f"reachable, but {status.reason} Until then {fallback}.",
                     required=False)
    return Check("docker daemon", True, f"reachable, and {status.reason}: lab 05 builds and runs a real image",
                 required=False)


LOW_MEMORY_GIB = 1.0  # one lab's kernel peaks around 650 MB


def _memory() -> Check:
    """Free memory under the container's limit (Binder: 2 GB), not the host's, which a container cannot use."""
    import psutil

    available = psutil.virtual_memory().available / 2**30
    limit = config.memory_limit()
    if limit is not None and limit[0] / 2**30 < psutil.virtual_memory().total / 2**30:
        total, used = limit[0] / 2**30, limit[1] / 2**30
        available = min(available, total - used)
        where = f"{available:.1f} GiB free of this container's {total:.1f} GiB limit"
    else:
        where = f"{available:.1f} GiB available"
    if available >= LOW_MEMORY_GIB:
        return Check("memory", True, f"{where} (a lab needs about 1 GiB)")
    from .learner import shut_down_advice  # which kernels hold the memory (issue 13)

    advice = shut_down_advice(exclude_pid=os.getpid()) or (
        "Shut down the kernels of labs you have finished (JupyterLab: File > Close and Shut Down Notebook, "
        "or the Running Terminals and Kernels panel on the left).")
    return Check("memory", False, f"{where}: too little for the next lab. Every open notebook keeps its kernel "
                 f"(and any server it started) in memory. {advice}")


def _cpus() -> Check:
    cores, limit = os.cpu_count() or 1, config.cpu_limit()
    detail = f"{limit} usable" + (f" (of the machine's {cores}: a CPU quota applies)" if limit < cores else "")
    return Check("cpus", True, detail, required=False)


def _kernel() -> Check:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        return Check("jupyter kernel", False, "no python3 kernel: run `python -m ipykernel install --user`")
    return Check("jupyter kernel", True, f"python3 ({spec.argv[0]})")


def doctor(report: Callable[[str], None] = print) -> bool:
    """Check this machine for the course; print a table; return True when the labs can run."""
    checks = [
        Check("python", sys.version_info >= (3, 11), f"{platform.python_version()} (3.11 or newer needed)"),
        _package_versions(),
        _kernel(),
        _workspace(),
        _tracking_store(),
        _docker(),
        _memory(),
        _cpus(),
    ]
    on_binder = config.on_binder()
    checks.append(Check("binder", True, "yes: no Docker here, lab 05 uses its fallback" if on_binder else "no", required=False))
    for c in checks:
        mark = "ok  " if c.ok else ("FAIL" if c.required else "note")
        report(f"{mark} {c.name:<15} {c.detail}")
    ready = all(c.ok for c in checks if c.required)
    report("The course can run on this machine." if ready else "Fix the FAIL lines above, then run lab.doctor() again.")
    return ready


# ------------------------------------------------------------------------ setup


def newest_lab() -> int:
    """The highest lab ``setup`` can prepare: the one after the last lab with a setup step."""
    from .setup_steps import STEPS  # imported here: keeps `import mlops_lab` fast

    return max(STEPS) + 1


def setup(n: int, fresh: bool = False, report: Callable[[str], None] = print) -> None:
    """Prepare the workspace for lab ``n``: run (idempotently) what labs 00..n-1 would have produced.
    With ``fresh``, empty the workspace first (as ``reset`` does), then build it up again."""
    from .setup_steps import STEPS

    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    newest = newest_lab()
    if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= newest:
        later = (f" Lab {n:02d} is not written yet: update your clone (`git pull`) to get newer labs."
                 if isinstance(n, int) and n in config.LABS else "")
        raise LabError(
            f"There is no lab {n!r} in this version of the course: labs are numbered 00 to {newest:02d}. "
            f"Call lab.setup(3) at the top of lab 03, for example (or `mlops-lab setup 3` in a terminal).{later}"
        )
    if fresh:
        config.reset()
    config.ensure_home()
    if config.on_binder():
        from .serving.server import stop_servers_left_running

        stop_servers_left_running(report)
    for lab in range(n):
        if lab in STEPS:
            STEPS[lab]()
    report(f"Workspace {config.home()} is ready for lab {n:02d}" + (" (started afresh)." if fresh else "."))
