"""What each lab leaves behind, rebuilt idempotently by ``lab.setup(n)``."""

from __future__ import annotations

from .course import step


@step(0)
def _welcome() -> None:
    """Lab 00 leaves behind only the workspace itself."""
