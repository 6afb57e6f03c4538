"""Settings in one place: workspace paths, seeds, the tracking URI.

Nothing here runs at import time. Functions read the environment when called, so a
test or a notebook can change ``MLOPS_LAB_HOME`` and see the change at once.

Environment variables:
    MLOPS_LAB_HOME          the learner's workspace (default: ~/mlops-lab-workspace)
    MLOPS_LAB_TRACKING_URI  MLflow tracking URI (default: a SQLite store in the workspace)
    MLOPS_LAB_STRICT        "1" makes an incorrect exercise answer raise (CI)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import LabError

SEED = 42
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
}
DEFAULT_HOME = Path.home() / "mlops-lab-workspace"


def home() -> Path:
    """The workspace folder (not created here; see :func:`ensure_home`)."""
    return Path(os.environ.get("MLOPS_LAB_HOME") or DEFAULT_HOME).expanduser().resolve()


def path(*parts: str) -> Path:
    """A path inside the workspace, e.g. ``path("data", "train.parquet")``."""
    return home().joinpath(*parts)


def ensure_home() -> Path:
    """Create the workspace if needed and prove it is writable."""
    root = home()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise LabError(
            f"The workspace {root} is not writable ({exc.strerror or exc}). Everything the labs create "
            "lives there. Point MLOPS_LAB_HOME at a folder you can write to, for example "
            "`export MLOPS_LAB_HOME=$HOME/mlops-lab-workspace`, or fix the folder's permissions."
        ) from None
    mark_workspace()
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
    """Delete everything in the workspace (data, MLflow store, bundles, logs, progress)."""
    root = home()
    if root.exists():
        if not (root / ".mlops-lab").exists() and any(root.iterdir()):
            raise LabError(
                f"Refusing to wipe {root}: it does not look like an mlops-lab workspace (no .mlops-lab "
                "marker) and it is not empty. Check MLOPS_LAB_HOME, or delete the folder yourself."
            )
        shutil.rmtree(root)
    return ensure_home()


def mark_workspace() -> None:
    marker = path(".mlops-lab")
    if not marker.exists():
        marker.write_text("This folder is an mlops-lab workspace; `mlops-lab reset` may wipe it.\n")


def learner() -> str:
    """Who is running the labs: MLOPS_LAB_USER, else the login name (keeps workshop runs apart)."""
    import getpass

    name = os.environ.get("MLOPS_LAB_USER") or getpass.getuser() or "learner"
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name)


def _shared_store() -> bool:
    return not tracking_uri().startswith(("sqlite:", "file:")) and "://" in tracking_uri()


def experiment_name() -> str:
    """One experiment per learner on a shared (workshop) server; plain 'cardguard' locally."""
    return f"cardguard-{learner()}" if _shared_store() else "cardguard"


def model_name() -> str:
    """The registered model's name; per learner on a shared server, like the experiment."""
    return f"{MODEL_NAME}-{learner()}" if _shared_store() else MODEL_NAME
