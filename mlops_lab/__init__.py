"""mlops-lab: the helper package behind the CardGuard MLOps course.

``import mlops_lab as lab`` is fast and does nothing: no tracking URI is set, no file
is written. The names a notebook needs are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .errors import LabError

__version__ = "0.1.0"

# public name -> (module, attribute)
_LAZY = {
    "check": ("exercises", "check"),
    "hint": ("exercises", "hint"),
    "solution": ("exercises", "solution"),
    "progress": ("exercises", "progress"),
    "doctor": ("course", "doctor"),
    "setup": ("course", "setup"),
    "workspace": ("config", "ensure_home"),
    "config": ("config", None),
    "data": ("data", None),
    "training": ("training", None),
    "registry": ("registry", None),
    "widgets": ("widgets", None),
    "serving": ("serving", None),
    "container": ("container", None),
    "ci": ("ci", None),
    "testing": ("testing", None),
}

__all__ = ["LabError", "reset", *_LAZY]


def reset() -> None:
    """Wipe your workspace (data, MLflow store, bundles, logs, progress) and start again."""
    from . import config

    print(f"Workspace {config.reset()} is empty again.")


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'mlops_lab' has no attribute {name!r}")
    module_name, attribute = _LAZY[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)


if TYPE_CHECKING:  # for editors only
    from . import config  # noqa: F401
    from .course import doctor, setup  # noqa: F401
    from .exercises import check, hint, progress, solution  # noqa: F401
