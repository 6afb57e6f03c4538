"""The one error type a learner should ever see from this package.

Its message says what is wrong and what to do, in one paragraph. Library
exceptions are caught at the boundary and re-raised as ``LabError ... from None``
so a notebook shows the fix, not a stack trace from deep inside MLflow or pandas.
"""


class LabError(Exception):
    """A mistake the learner (or the machine) can fix; the message says how."""

    def _render_traceback_(self) -> list[str]:
        # IPython calls this instead of printing a traceback: the learner sees the fix only.
        return [f"\x1b[31mLabError\x1b[0m: {self}"]
