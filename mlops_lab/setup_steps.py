"""What each lab leaves behind, rebuilt idempotently by ``lab.setup(n)``."""

from __future__ import annotations

from .course import step


@step(0)
def _welcome() -> None:
    """Lab 00 leaves behind only the workspace itself."""


@step(1)
def _course_dataset() -> None:
    """Lab 01 saves the course dataset (42 days of payments) and its record."""
    from . import data

    if data.snapshot_path().exists():
        return
    data.save_snapshot(data.course_dataset())
