"""lab.setup's machine-wide caches (``$XDG_CACHE_HOME/mlops-lab``): a new workspace's tracking store
starts as a copy of an empty, migrated one, and is then a store of its own."""

import pickle
import sqlite3

from mlops_lab import config, setup_steps, training


def _experiments(db) -> list:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT name, artifact_location FROM experiments ORDER BY experiment_id").fetchall()


def test_new_workspaces_start_from_the_migrated_empty_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    stores = []
    for name in ("first", "second"):
        monkeypatch.setenv("MLOPS_LAB_HOME", str(tmp_path / name))
        config.ensure_home()
        setup_steps._seed_tracking_store()
        mlflow = training.use_tracking()
        with mlflow.start_run(run_name=name):
            mlflow.log_metric("x", 1.0)
        stores.append(config.path("mlflow.db"))
    templates = list((tmp_path / "cache" / "mlops-lab").glob("mlflow-*-empty.db"))
    assert len(templates) == 1 and _experiments(templates[0]) == []  # no folder of any workspace in it
    for store, name in zip(stores, ("first", "second"), strict=True):
        cardguard = [row for row in _experiments(store) if row[0] == config.experiment_name()]
        assert cardguard == [(config.experiment_name(), (tmp_path / name / "mlartifacts").as_uri())]
        with sqlite3.connect(store) as conn:
            assert conn.execute("SELECT name FROM runs").fetchall() == [(name,)]


def test_an_unreadable_template_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MLOPS_LAB_HOME", str(tmp_path / "workspace"))
    config.ensure_home()
    setup_steps._seed_tracking_store()
    template = next((tmp_path / "cache" / "mlops-lab").glob("mlflow-*-empty.db"))
    template.write_bytes(b"not a database")
    config.path("mlflow.db").unlink()
    setup_steps._seed_tracking_store()
    assert not template.exists() and not config.path("mlflow.db").exists()  # MLflow creates it as usual
    setup_steps._seed_tracking_store()
    assert _experiments(template) == [] and config.path("mlflow.db").exists()


def test_a_retrain_on_the_same_labels_and_options_reuses_the_model_and_no_other(tmp_path, monkeypatch):
    """The loop's retrains go through the cache (lab 08's what-if loop and lab 09's Dagster assets retrain
    on the labels lab 08's loop trained on): the same data and options give the same model without
    training; other options or other data never get that model."""
    import numpy as np

    from mlops_lab import data

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    frame = data.simulate_transactions(12_000, seed=3)
    train, valid = frame.iloc[:8_000].reset_index(drop=True), frame.iloc[8_000:].reset_index(drop=True)
    calls = []
    real_train = training.train

    def counting(*args, **kwargs):
        calls.append((args[0], kwargs))
        return real_train(*args, **kwargs)

    monkeypatch.setattr(training, "train", counting)
    first = setup_steps._trained("gradient_boosting", train, valid, cost_aware=True, max_iter=20)
    again = setup_steps._trained("gradient_boosting", train, valid, cost_aware=True, max_iter=20)
    assert len(calls) == 1
    assert again.train_frame is train and again.weighting == first.weighting is not None
    assert again.threshold == first.threshold and again.valid_metrics == first.valid_metrics
    features = valid[data.feature_columns()]
    assert np.array_equal(again.pipeline.predict_proba(features), first.pipeline.predict_proba(features))
    # each of these trains a model of its own
    setup_steps._trained("gradient_boosting", train, valid, cost_aware=False, max_iter=20)
    setup_steps._trained("gradient_boosting", train, valid, cost_aware=True, max_iter=21)
    setup_steps._trained("gradient_boosting", train.iloc[1:], valid, cost_aware=True, max_iter=20)
    setup_steps._trained("gradient_boosting", train, valid.iloc[1:], cost_aware=True, max_iter=20)
    assert [kwargs for _, kwargs in calls[1:]] == [{"cost_aware": False, "max_iter": 20},
                                                   {"cost_aware": True, "max_iter": 21},
                                                   {"cost_aware": True, "max_iter": 20},
                                                   {"cost_aware": True, "max_iter": 20}]
    assert not list((tmp_path / "cache" / "mlops-lab").glob(".*"))  # no half-written entry left behind
    # a parameter that is not a plain value (a learner's scorer: its code may change, its repr not) is never
    # cached, and one that cannot be pickled does not break the retrain
    entries = set((tmp_path / "cache" / "mlops-lab").iterdir())
    for _ in range(2):
        setup_steps._trained("gradient_boosting", train, valid, cost_aware=True, max_iter=20,
                             scoring=lambda estimator, X, y: 0.0)
    assert len(calls) == 7 and set((tmp_path / "cache" / "mlops-lab").iterdir()) == entries
    # a hit carries this frame's dataset record, not the one pickled with the model (made by older code): every
    # entry is made stale (picking "the" entry of these options by its contents could pick another one)
    for entry in entries:
        stale = pickle.loads(entry.read_bytes())
        stale.train_record = {"fingerprint": "from older code"}
        entry.write_bytes(pickle.dumps(stale))
    hit = setup_steps._trained("gradient_boosting", train, valid, cost_aware=True, max_iter=20)
    assert len(calls) == 7 and hit.train_record == data.dataset_record(train, "train") == first.train_record
