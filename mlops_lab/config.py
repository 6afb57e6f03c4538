"""Settings in one place: workspace paths, seeds, the tracking URI.

Nothing here runs at import time. Functions read the environment when called, so a
test or a notebook can change ``MLOPS_LAB_HOME`` and see the change at once.

Environment variables:
    MLOPS_LAB_HOME          the learner's workspace (default: ~/mlops-lab-workspace; on Binder, whose
                            home folder is the repository, /tmp/mlops-lab-workspace)
    MLOPS_LAB_TRACKING_URI  MLflow tracking URI (default: a SQLite store in the workspace)
    MLOPS_LAB_STRICT        "1" makes an incorrect exercise answer raise (CI)
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from .errors import LabError

SEED = 42
LEARNER_COPIES = "labs"  # the learner's copies of the labs, inside the workspace (see mlops_lab.learner)
MODEL_NAME = "cardguard"
LABS = {
    0: "welcome",
    1: "data",
    2: "train_and_track",
    3: "registry",
    4: "serving",
    5: "container",
    6: "ci_for_ml",
    7: "monitoring",
    8: "closing_the_loop",
    9: "orchestration",
    10: "kubernetes",
}


def home() -> Path:
    """The workspace folder (not created here; see :func:`ensure_home`)."""
    root = Path(os.environ.get("MLOPS_LAB_HOME") or default_home()).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise LabError(
            f"The workspace {root} is a file, not a folder. MLOPS_LAB_HOME must name a folder (new or "
            "empty) where the labs keep their data, for example `export MLOPS_LAB_HOME=$HOME/mlops-lab-workspace`."
        )
    return root


def path(*parts: str) -> Path:
    """A path inside the workspace, e.g. ``path("data", "train.parquet")``."""
    return home().joinpath(*parts)


def write_whole(target: Path, content: str | bytes) -> None:
    """Write ``target`` whole or not at all: through a file of its own beside it, then a rename, so that a
    reader (another process, Dagster's UI) never sees half of it and a stop mid-write leaves the old one.
    Raises OSError (a read-only folder, a full disk), leaving no partial file behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = None
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}-", delete=False) as written:
            written.write(content.encode() if isinstance(content, str) else content)
        os.replace(written.name, target)
    except OSError:
        if written is not None:
            Path(written.name).unlink(missing_ok=True)
        raise


# Usage statistics the course's libraries would send out (MLflow 3 sends them to mlflow-telemetry.io from every
# process that imports it): off in every process the course starts (the `mlops-lab` command and what it runs,
# JupyterLab and its kernels, Binder), unless the learner set them. Dagster's: see dagster_home().
NO_TELEMETRY = {"MLFLOW_DISABLE_TELEMETRY": "true"}

# Arrow's allocator, where pandas 3 keeps its strings and what it reads from parquet: jemalloc hands freed memory
# back to the system within a second; Arrow's default (mimalloc) keeps it in the process (a kernel that read the
# course dataset once held 65 MB for it after the frame was gone). `mlops-lab run`, quiet: lab 02 514 -> 467 MB,
# 03 539 -> 497, 05 573 -> 513, 07 656 -> 600, 08 811 -> 784, at the same speed. glibc's allocator
# ("system") is no answer: lab 07 grew to 988 MB. Linux only: Arrow's macOS and Windows wheels have no jemalloc.
# Binder chooses its own (binder/start: glibc's, tuned there, for kernels forked from one pre-loaded process;
# jemalloc there held 10-50 MB more in each kernel: the stand-in's walk with nine kernels kept peaked at
# 2,032 MB instead of 1,858-1,940), and the learner's own choice wins everywhere.
ARROW_MEMORY = {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"} if sys.platform.startswith("linux") else {}
# glibc's own allocator (numpy's arrays, Python's objects), tuned as Binder tunes it (binder/start, where the
# measurements are): two arenas instead of one per thread (the labs' servers, Dagster and the CI job run
# threads, and every arena keeps what was freed in it), and a fixed mmap threshold, so that large arrays are
# handed back when freed instead of staying in the heap once glibc has raised its threshold. `mlops-lab run`,
# quiet, labs 07-09 in one workspace, twice each way: 553-576, 531-533, 538-542 MB -> 549, 509-511, 528 MB, at
# the same speed. Read by glibc when a process starts: they reach kernels and what they start, not the
# `mlops-lab` process that sets them. Other C libraries (musl, macOS) ignore them.
GLIBC_MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "524288", "MALLOC_TRIM_THRESHOLD_": "1048576"} \
    if sys.platform.startswith("linux") else {}
# All three, set (unless already set) in every process the course starts, before it imports anything.
PROCESS_DEFAULTS = {**NO_TELEMETRY, **ARROW_MEMORY, **GLIBC_MALLOC}


def dagster_home() -> Path:
    """The workspace's Dagster home (DAGSTER_HOME for Dagster's UI and lab 09's instance), created, with a
    dagster.yaml that keeps Dagster offline and quiet: no usage statistics sent (nor a banner about them), no
    community sign-up dialog in its UI, and no debug-level log lines stored in its event log (its IO manager's
    "Loading 1 partitions...": a fifth of lab 09's stored events, a SQLite write each; Dagster's own events,
    step starts and successes among them, are stored whatever the level)."""
    folder = ensure_home() / "dagster"
    folder.mkdir(exist_ok=True)
    settings = folder / "dagster.yaml"
    if not settings.exists() or settings.read_text() in _OLD_DAGSTER_YAML:  # never a learner's own edit
        write_whole(settings, _DAGSTER_YAML)  # Dagster's UI may be reading it
    return folder


_DAGSTER_YAML = "telemetry:\n  enabled: false\nnux:\n  enabled: false\npython_logs:\n  python_log_level: INFO\n"
_OLD_DAGSTER_YAML = ("telemetry:\n  enabled: false\n",  # what earlier versions of the course wrote
                     "telemetry:\n  enabled: false\nnux:\n  enabled: false\n")


MARKER = ".mlops-lab"


def is_workspace(folder: Path) -> bool:
    """A folder we created (it holds our marker); only such a folder may be wiped by ``reset``."""
    return (folder / MARKER).is_file()


def _not_writable(root: Path, why: str) -> LabError:
    return LabError(
        f"The workspace {root} is not writable ({why}). Everything the labs create "
        "lives there. Point MLOPS_LAB_HOME at a folder you can write to, for example "
        "`export MLOPS_LAB_HOME=$HOME/mlops-lab-workspace`, or fix the folder's permissions."
    )


def check_home() -> Path:
    """The workspace, if it can be used; LabError saying why not. Creates nothing (for ``doctor``).

    An existing folder is used only if it is empty or already a workspace, so that ``reset`` can
    never wipe a folder of the user's own files."""
    root = home()
    if root.is_dir():
        if not is_workspace(root) and any(root.iterdir()):
            raise LabError(
                f"{root} is not empty and is not an mlops-lab workspace, so the labs will not write into it "
                "(and `mlops-lab reset` would refuse to empty it). Point MLOPS_LAB_HOME at a new or empty "
                "folder, for example `export MLOPS_LAB_HOME=$HOME/mlops-lab-workspace`."
            )
        nearest = root
    else:
        nearest = next(parent for parent in root.parents if parent.exists())
        if not nearest.is_dir():
            raise _not_writable(root, f"{nearest} is a file, so no folder can be made below it")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise _not_writable(root, f"no permission to write in {nearest}")
    return root


def ensure_home() -> Path:
    """Create the workspace if needed and prove it is writable (see :func:`check_home`)."""
    root = check_home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        # the marker first: a second start at the same moment (Binder's JupyterLab and a walk, two terminals) must
        # never find this folder with a file in it but no marker, which check_home refuses as someone else's
        mark_workspace()
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise _not_writable(root, exc.strerror or str(exc)) from None
    return root


def tracking_uri() -> str:
    """The MLflow tracking URI: MLOPS_LAB_TRACKING_URI, else a SQLite store in the workspace."""
    uri = os.environ.get("MLOPS_LAB_TRACKING_URI")
    if uri:
        return uri
    return f"sqlite:///{path('mlflow.db')}"


def artifact_location() -> str:
    """Where runs store artifacts when the store is the local SQLite default."""
    return path("mlartifacts").as_uri()


def strict() -> bool:
    return os.environ.get("MLOPS_LAB_STRICT", "").strip().lower() in {"1", "true", "yes"}


def reset() -> Path:
    """Delete everything in the workspace (data, MLflow store, bundles, logs, progress), but not the
    learner's copies of the labs in ``labs/``."""
    root = home()
    if root.exists():
        if not is_workspace(root) and any(root.iterdir()):
            raise LabError(
                f"Refusing to wipe {root}: it does not look like an mlops-lab workspace (no {MARKER} "
                "marker) and it is not empty. Check MLOPS_LAB_HOME, or delete the folder yourself."
            )
        _forget_mlflow_stores(root)
        for child in root.iterdir():
            if child.name in (LEARNER_COPIES, MARKER):
                continue  # the learner's own notebooks (mlops_lab.learner) are never wiped
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    return ensure_home()


def mark_workspace() -> None:
    marker = path(MARKER)
    if not marker.exists():
        marker.write_text("This folder is an mlops-lab workspace; `mlops-lab reset` may wipe it.\n")


def _forget_mlflow_stores(root: Path) -> None:
    """Make this process's MLflow forget the stores in ``root`` before it is deleted.

    MLflow caches a store (and its database engine) per URI. After a wipe, the cached engine still
    holds the deleted database open: the next write fails with "attempt to write a readonly database"
    and reads see the old runs. Dropping the caches makes the next call open a fresh store."""
    import sys

    if "mlflow" not in sys.modules:  # nothing cached; do not pay for importing MLflow
        return
    try:
        from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as TrackingStore
        from mlflow.tracking._model_registry.registry import ModelRegistryStoreRegistry
        from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

        for store in (TrackingStore, RegistryStore):
            for uri in [u for u in store._engine_map if str(root) in u]:
                store._engine_map.pop(uri).dispose()
        for registry in (TrackingStoreRegistry, ModelRegistryStoreRegistry):
            registry._get_store_with_resolved_uri.cache_clear()
    except (ImportError, AttributeError) as exc:  # MLflow moved its internals
        raise LabError(
            f"The workspace {root} was not wiped: this MLflow version keeps its store open in a way "
            f"mlops-lab does not know ({exc}). Restart the kernel (Kernel > Restart), then reset again."
        ) from None


def tool(name: str) -> str:
    """How to call this environment's command ``name`` (mlflow, mlops-lab) from a shell, as printed
    for the learner: the bare name when PATH finds this environment's copy (an activated venv),
    else its full path, so the printed command works as shown."""
    import sys

    beside = Path(sys.executable).parent / name
    found = shutil.which(name)
    if not beside.exists() or (found and Path(found).resolve() == beside.resolve()):
        return name
    return str(beside)


def learner() -> str:
    """Who is running the labs: MLOPS_LAB_USER, else the login name (keeps workshop runs apart)."""
    import getpass

    name = os.environ.get("MLOPS_LAB_USER") or _workshop_user() or getpass.getuser() or "learner"
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def _shared_store() -> bool:
    return not tracking_uri().startswith(("sqlite:", "file:")) and "://" in tracking_uri()


# Every experiment and registered model a lab creates, by kind (a suffix of the course's name): on a
# workshop server each learner gets their own of each, created and granted ahead (workshop.py).
# lab 02's runs; lab 03's MLflow evaluations; lab 08's loop retrains (pipeline.py)
EXPERIMENTS = {"runs": "", "evaluation": "-evaluation", "loop": "-loop"}
MODELS = {"course": "", "whatif": "-whatif"}  # the course's model; lab 08's what-if loop


def experiment_name(kind: str = "runs") -> str:
    """One experiment per learner on a shared (workshop) server; plain 'cardguard' locally."""
    return (f"cardguard-{learner()}" if _shared_store() else "cardguard") + EXPERIMENTS[kind]


def model_name(kind: str = "course") -> str:
    """The registered model's name; per learner on a shared server, like the experiment."""
    return (f"{MODEL_NAME}-{learner()}" if _shared_store() else MODEL_NAME) + MODELS[kind]


# ------------------------------------------------------------ Binder and container limits

# Set by mybinder.org's launcher (BINDER_*) and by our binder/start (MLOPS_LAB_BINDER).
_BINDER_VARIABLES = ("MLOPS_LAB_BINDER", "BINDER_LAUNCH_HOST", "BINDER_REPO_URL", "BINDER_REQUEST")


def on_binder() -> bool:
    """True in a Binder session (mybinder.org or any BinderHub), where home is the repository."""
    return any(os.environ.get(name) for name in _BINDER_VARIABLES)


def default_home() -> Path:
    """The workspace when MLOPS_LAB_HOME is unset: ~/mlops-lab-workspace, but outside the
    repository on Binder (there the home folder *is* the repository)."""
    if on_binder():
        return Path(tempfile.gettempdir()) / "mlops-lab-workspace"
    return Path.home() / "mlops-lab-workspace"


def _read_cgroup(*names: str) -> str | None:
    """The first readable cgroup file among ``names`` (v2 names first, then v1), as seen from inside
    a container (Docker, the Kubernetes pods of Binder)."""
    for name in names:
        try:
            return Path("/sys/fs/cgroup", name).read_text().strip()
        except OSError:
            continue
    return None


def _cgroup_number(*names: str) -> int | None:
    value = _read_cgroup(*names)
    return int(value) if value and value.isdigit() else None


def memory_limit() -> tuple[int, int] | None:
    """(limit, in use) in bytes of this container's memory cgroup (Binder: 2 GB), or None without a
    limit. "In use" leaves out the file cache the kernel can drop (as `docker stats` does)."""
    limit = _cgroup_number("memory.max", "memory/memory.limit_in_bytes")
    usage = _cgroup_number("memory.current", "memory/memory.usage_in_bytes")
    if limit is None or usage is None or limit >= 2**60:  # cgroup v1 says "no limit" with a huge number
        return None
    stat = dict(line.split() for line in (_read_cgroup("memory.stat", "memory/memory.stat") or "").splitlines()
                if len(line.split()) == 2)
    cache = stat.get("inactive_file") or stat.get("total_inactive_file") or "0"
    return limit, max(0, usage - int(cache))


def cpu_limit() -> int:
    """CPUs this process may use: the cgroup quota (Binder: 1) if any, else the cores it may run on.
    ``os.cpu_count()`` reports the node's cores, so size thread pools and workers with this instead."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    v2 = (_read_cgroup("cpu.max") or "").split()
    if len(v2) == 2 and v2[0].isdigit() and v2[1].isdigit():
        quota, period = int(v2[0]), int(v2[1])
    else:  # cgroup v1; a quota of -1 means none
        quota = int(_read_cgroup("cpu/cpu.cfs_quota_us", "cpu,cpuacct/cpu.cfs_quota_us") or -1)
        period = int(_read_cgroup("cpu/cpu.cfs_period_us", "cpu,cpuacct/cpu.cfs_period_us") or 0)
    if quota > 0 and period > 0:
        cores = min(cores, max(1, -(-quota // period)))
    return max(1, cores)


def _workshop_user() -> str | None:
    """On a workshop server the account name is the learner (names then match their permissions)."""
    return os.environ.get("MLFLOW_TRACKING_USERNAME") if _shared_store() else None
