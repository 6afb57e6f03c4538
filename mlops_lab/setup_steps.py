"""What each lab leaves behind, rebuilt idempotently by ``lab.setup(n)``.

One small function per lab, registered with ``@step(n)``; ``course.setup`` runs them in order.
This module imports nothing from ``course`` (``course`` imports it), so there is no import circle.
"""

from __future__ import annotations

from collections.abc import Callable

# What each lab leaves behind, keyed by the lab that produces it.
STEPS: dict[int, Callable[[], None]] = {}


def step(lab: int):
    def register(func: Callable[[], None]) -> Callable[[], None]:
        STEPS[lab] = func
        return func

    return register


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


@step(2)
def _tracked_runs() -> None:
    """Lab 02 leaves a logged run for each model kind, trained on the course dataset, with its
    train/valid/holdout datasets as run inputs."""
    from . import data, training

    _course_dataset()
    _seed_tracking_store()
    frame = data.load_snapshot()
    train, valid, holdout = data.time_split(frame)
    runs = training.compare_runs()
    fingerprint = data.fingerprint(train)
    done = set(runs.loc[runs["data_fingerprint"] == fingerprint, "model_kind"])
    todo = [kind for kind in training.MODEL_KINDS if kind not in done]
    for i, kind in enumerate(todo, 1):
        print(f"lab.setup: training and logging {kind} ({i} of {len(todo)}; 5 s on a quiet laptop, up to 40 s "
              "on Binder or a busy machine)...", flush=True)
        trained = _trained(kind, train, valid)
        training.log_training_run(trained, valid, run_name=f"{kind} (lab.setup)", holdout_frame=holdout)


def _cache_dir():
    """Caches shared by every workspace on this machine (never inside a workspace)."""
    import os
    from pathlib import Path

    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlops-lab"


def _seed_tracking_store() -> None:
    """A new workspace's SQLite tracking store starts as a copy of an empty store migrated once per
    MLflow version on this machine: creating one runs about fifty schema migrations, seconds of CPU.
    The copy holds no experiment (MLflow adds its default experiment, with this workspace's
    artifact location, when it opens the store); on any trouble MLflow simply creates the store."""
    import shutil
    import sqlite3
    import tempfile
    from importlib import metadata
    from pathlib import Path

    from . import config

    uri = config.tracking_uri()
    if not uri.startswith("sqlite:///") or Path(uri.removeprefix("sqlite:///")).exists():
        return
    template = _cache_dir() / f"mlflow-{metadata.version('mlflow')}-empty.db"
    try:
        if not template.exists():
            import logging

            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            for name in ("mlflow.store.db.utils", "alembic"):  # table creation chatter
                logging.getLogger(name).setLevel(logging.WARNING)
            template.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=template.parent) as tmp:
                store = SqlAlchemyStore(f"sqlite:///{tmp}/mlflow.db", f"{tmp}/artifacts")
                store.engine.dispose()
                with sqlite3.connect(f"{tmp}/mlflow.db") as conn:
                    conn.execute("DELETE FROM experiments")  # the default one names the template's folder
                conn.close()
                Path(f"{tmp}/mlflow.db").replace(template)
        with sqlite3.connect(f"file:{template}?mode=ro", uri=True) as conn:  # a readable, migrated store
            conn.execute("SELECT version_num FROM alembic_version").fetchone()
        conn.close()
        shutil.copyfile(template, uri.removeprefix("sqlite:///"))
    except sqlite3.Error:
        template.unlink(missing_ok=True)  # made again next time; MLflow creates this one itself
    except (OSError, ImportError):
        pass  # MLflow creates the store itself, as without a cache


def _trained(kind: str, train, valid, cost_aware: bool = False, **params):
    """``training.train(kind, train, valid, cost_aware=..., **params)``, or the same model trained before on
    this machine: the pipelines are deterministic, so a fresh workspace (a reset, a second clone) need not
    pay for training again, nor a loop that retrains on labels another loop (lab 08's what-if, lab 09's
    Dagster assets) already trained on. The cache lives outside the workspace (``$XDG_CACHE_HOME/mlops-lab``)
    and is keyed by everything the result depends on (the data, the options, scikit-learn's version and
    the training code itself); any unreadable entry is simply retrained. Parameters that are not plain JSON
    values (a learner's scorer, say: its repr does not change when its code does) are never cached."""
    import hashlib
    import json
    import pickle
    from importlib import metadata
    from pathlib import Path

    from . import config, data, training

    try:
        options = json.dumps({"cost_aware": bool(cost_aware), **params}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return training.train(kind, train, valid, cost_aware=cost_aware, **params)
    key = hashlib.sha256(repr((
        kind, data.fingerprint(train), data.fingerprint(valid), options, metadata.version("scikit-learn"),
        training.REVIEW_FEE, training.DECLINE_COST, training.REVIEWS_PER_DAY, data.contract_hash(),
        hashlib.sha256(Path(training.__file__).read_bytes()).hexdigest(),
    )).encode()).hexdigest()[:20]
    cache = _cache_dir() / f"{kind}-{key}.pkl"
    try:
        trained = pickle.loads(cache.read_bytes())  # written by this function only (trusted)
        trained.train_frame, trained.train_record = train, data.dataset_record(train, "train")  # this frame's
        return trained
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    trained = training.train(kind, train, valid, cost_aware=cost_aware, **params)
    frame, trained.train_frame = trained.train_frame, None
    try:
        blob = pickle.dumps(trained)
    except (pickle.PicklingError, TypeError, AttributeError):
        return trained  # not picklable: trained, not cached
    finally:
        trained.train_frame = frame
    try:
        config.write_whole(cache, blob)  # another process may be reading this entry
    except OSError:  # a read-only home or a full disk: train next time too
        pass
    return trained


@step(3)
def _champion() -> None:
    """Lab 03 leaves a registered model whose champion passed the gate: the baseline first, then
    the gradient-boosted model promoted over it, judged on the latest week whose labels are final."""
    from . import data, registry, training

    if registry.alias_version(registry.CHAMPION) is not None:
        return
    snapshot = data.load_snapshot()
    as_of = registry.decision_time(snapshot)
    holdout = registry.gate_holdout(snapshot, as_of)
    runs = training.compare_runs()
    for kind in ("logistic_regression", "gradient_boosting"):
        run_id = runs[runs["model_kind"] == kind]["valid_pr_auc"].idxmax()
        registry.promote_if_better(registry.register(run_id), holdout, as_of=as_of)


@step(4)
def _served() -> None:
    """Lab 04 leaves a prediction log; nothing later depends on it, so setup makes none."""


@step(5)
def _containerised() -> None:
    """Lab 05 leaves a built image or a local process; nothing later depends on it."""


@step(6)
def _ci() -> None:
    """Lab 06 leaves nothing later labs depend on (the CI pipeline reruns its own stages)."""


@step(7)
def _monitoring() -> None:
    """Lab 07 leaves the reference profile of the training period (scored by the champion) that
    the monitor of lab 08 compares each week with."""
    from .monitoring import stream

    stream.course_profile()


@step(8)
def _loop() -> None:
    """Lab 08 leaves its loop's event log; nothing later depends on it."""


@step(9)
def _orchestration() -> None:
    """Lab 09 leaves Dagster's run history; lab 10 needs only lab 03's champion."""
