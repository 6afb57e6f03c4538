"""The tracking layer: the course's MLflow client, its experiments, and what a tracking server's errors
mean. Below training, the registry and the workshop (each of them talks to MLflow through here), so that
no module above has to import another to explain a remote store's 401, 403 or silence.

``mlflow_client()`` points MLflow at the course's store (``config.tracking_uri()``: a SQLite file in the
workspace, or a workshop's server) and returns the mlflow module; nothing is set at import time."""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Callable

from . import config
from .errors import LabError

CHECK_TAG = "mlops_lab.check."  # + exercise id, on the learner's experiment
SERVER_TIMEOUT = {"timeout": 20.0, "connect": 3.0}  # a busy server can take seconds; a down one refuses at once


def mlflow_client():
    """Point MLflow at the course's tracking store and return the mlflow module.

    Called by every function that talks to MLflow (never at import time). A store that cannot be
    opened becomes one LabError that says what to do."""
    import logging

    import mlflow

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # table creation chatter
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = config.tracking_uri()
    if uri.startswith("sqlite:///"):
        config.ensure_home()
        _check_sqlite_store(uri.removeprefix("sqlite:///"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow


def use_tracking():
    """For notebooks: point MLflow at the course's store and experiment; return the mlflow module. In the
    workspace's own store, the course's other experiments (``config.EXPERIMENTS``: lab 03's evaluations, the
    loop's retrains) are made too, with the workspace's artifact folder: made later by MLflow itself, as
    ``mlflow.set_experiment(name)`` in a lab does, one would keep its artifacts in ``./mlruns`` beside the
    notebook (MLflow's default for a SQLite store is relative to the process's folder)."""
    mlflow = mlflow_client()
    if _artifact_location() is not None:
        for kind in config.EXPERIMENTS:
            _experiment_id(mlflow, config.experiment_name(kind))
    mlflow.set_experiment(experiment_id=_experiment_id(mlflow))
    return mlflow


def _check_sqlite_store(path: str) -> None:
    import os
    import sqlite3

    if not os.path.exists(path):
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            conn.execute("select name from sqlite_master limit 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise LabError(
            f"The tracking store {path} is not a readable MLflow database ({exc}). It may be corrupt or "
            "not a database at all: move it aside (`mv mlflow.db mlflow.db.broken`) or start again with "
            "`mlops-lab reset`, then run lab.setup(n) for the lab you are on."
        ) from None


def _experiment_id(mlflow, name: str | None = None) -> str:
    name = name or config.experiment_name()
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            return mlflow.create_experiment(name, artifact_location=_artifact_location())
        return experiment.experiment_id
    except Exception as exc:  # sqlalchemy, permission and connection errors all end here
        if remote() and explain(exc, f"open experiment {name!r}"):
            raise LabError(explain(exc, f"open experiment {name!r}")) from None
        raise LabError(
            f"Cannot open the MLflow tracking store {config.tracking_uri()}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300]}. Check that the folder is writable and the file is an MLflow "
            "database (`mlops-lab doctor` checks both), or `mlops-lab reset` to start again."
        ) from None


def _artifact_location() -> str | None:
    return config.artifact_location() if config.tracking_uri().startswith("sqlite:") else None


_QUIET_LOCK = threading.Lock()
_QUIET: dict = {"depth": 0, "restore": None}


@contextlib.contextmanager
def _quiet_mlflow():
    """Silence MLflow's advice we have already acted on (pickle chosen on purpose; integer columns
    never carry missing values in this contract), so notebooks show what matters. Safe across threads (an
    in-thread server loads models while the notebook does): the settings it changes belong to the whole
    process, so the first to enter changes them and the last to leave puts them back."""
    import logging
    import warnings

    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            restore = contextlib.ExitStack()
            logger = logging.getLogger("mlflow")
            restore.callback(logger.setLevel, logger.level)
            logger.setLevel(logging.ERROR)
            restore.enter_context(warnings.catch_warnings())
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column.*")
            restore.enter_context(contextlib.redirect_stderr(io.StringIO()))
            _QUIET["restore"] = restore
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                restore, _QUIET["restore"] = _QUIET["restore"], None
                restore.close()


def remote() -> bool:
    """True when the tracking URI is an HTTP server (a workshop), not a local store."""
    return config.tracking_uri().startswith(("http://", "https://"))


def explain(exc: BaseException, action: str) -> str | None:
    """The fix for an error from the workshop server, or None when it is not one we know."""
    text = f"{type(exc).__name__}: {exc}"
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no MLFLOW_TRACKING_USERNAME)"
    uri = config.tracking_uri()
    if "403" in text or "PERMISSION_DENIED" in text:
        return (f"The workshop server refused to let you ({user}) {action} (403 Forbidden). You may change only "
                f"your own experiment {config.experiment_name()!r} and model {config.model_name()!r}; the other "
                "learners' are read-only for you. Leave out name=..., so the lab functions use your own names.")
    if "429" in text or "Too many wrong passwords" in text:
        return (f"The workshop server {uri} refused {user} for a minute after several wrong passwords (429). Wait a "
                "minute, copy MLFLOW_TRACKING_PASSWORD again from the instructor's handout, and restart the kernel.")
    if "401" in text or "UNAUTHENTICATED" in text or "not authenticated" in text:
        return (f"The workshop server {uri} did not accept the user name and password ({user}): 401 Unauthorized. "
                "Copy MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD again from the instructor's handout, "
                "restart the kernel, and check with `lab.doctor()`.")
    if any(s in text for s in ("Max retries", "Connection refused", "ConnectError", "ConnectionError",
                               "Failed to establish", "timed out")):
        return (f"The workshop server {uri} does not answer, so it could not {action}. Your work in this notebook "
                "is safe; ask the instructor whether the server is up, then run the cell again.")
    return None


@contextlib.contextmanager
def server_errors(action: str):
    """Turn a 401, 403 or unreachable workshop server into one LabError that says what to do."""
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        message = explain(exc, action) if remote() else None
        if message is None:
            raise
        raise LabError(message) from None


def _learner_http():
    import httpx

    auth = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    return httpx.Client(base_url=config.tracking_uri().rstrip("/"), auth=auth, timeout=httpx.Timeout(**SERVER_TIMEOUT))


def record_check(id: str, status: str, report: Callable[[str], None] = print) -> bool:
    """Record a check's outcome as tags on the learner's experiment. Never raises: the verdict was
    already shown, and a server that is down must not break the learner's notebook."""
    if not remote():
        return False
    now = f"{time.time():.0f}"
    try:
        with _learner_http() as http:
            got = http.get("/api/2.0/mlflow/experiments/get-by-name",
                           params={"experiment_name": config.experiment_name()})
            got.raise_for_status()
            experiment = got.json()["experiment"]
            tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
            new = {f"{CHECK_TAG}{id}": f"{status}@{now}"}
            if status == "correct" and f"mlops_lab.correct.{id}" not in tags:
                new[f"mlops_lab.correct.{id}"] = now
            for key, value in new.items():
                http.post("/api/2.0/mlflow/experiments/set-experiment-tag", json={
                    "experiment_id": experiment["experiment_id"], "key": key, "value": value}).raise_for_status()
        return True
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the learner keeps working
        why = explain(exc, "record this check") or f"{type(exc).__name__}: {str(exc)[:120]}"
        report(f"(Not recorded on the workshop server: {why} Your verdict and local progress are kept.)")
        return False
