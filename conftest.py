"""Test session settings shared by tests/ and the nbval run of solutions/.

Every session gets its own workspace, set before any kernel (nbval, papermill) or server starts so
they all inherit it: tests never touch a developer's own workspace."""

import os
import shutil
import tempfile
from pathlib import Path

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="mlops-lab-tests-"))
os.environ["MLOPS_LAB_HOME"] = str(_SESSION_HOME)
os.environ.pop("MLOPS_LAB_TRACKING_URI", None)
os.environ.pop("MLOPS_LAB_STRICT", None)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)
