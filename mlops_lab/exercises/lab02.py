"""Lab 02: Train & track. Pick the metric, build the features from the contract, log a model that
loads back, choose a threshold the review team can handle, and trace a model to its data."""

from __future__ import annotations

import functools
import numbers
import warnings

import numpy as np
import pandas as pd

from .. import data, training
from . import call, exercise, require_attempt, right, scratch_store, wrong


@functools.cache
def _sample():
    """Small labelled frames for checks: fast to fit, and the same for every learner."""
    frame = data.simulate_transactions(days=10, start="2026-03-02", seed=21)
    ts = frame["timestamp"]
    return frame[ts < "2026-03-09"].reset_index(drop=True), frame[ts >= "2026-03-09"].reset_index(drop=True)


@exercise(
    "2.1",
    "Pick the metric for a rare class",
    solution='metric = "pr_auc"',
    hints=(
        "With under 1% fraud, a model that never flags anything is 99% accurate.",
        "You want a metric that looks only at how well fraud is ranked above legitimate payments, "
        "and punishes false alarms among the top scores.",
    ),
    reference=lambda: "pr_auc",
    cases=(
        wrong("accuracy", lambda: "accuracy", "accuracy rewards a model that never flags fraud"),
        wrong("roc_auc", lambda: "roc_auc", "ROC-AUC is close to 1 for every model here"),
        wrong("recall", lambda: "recall", "choose one of"),
        right("upper case", lambda: "PR_AUC"),
    ),
)
def _check_metric(value) -> None:
    require_attempt(value)
    choices = ("accuracy", "roc_auc", "pr_auc")
    value = value.strip().lower() if isinstance(value, str) else value
    assert value in choices, f"choose one of {choices}, got {value!r}"
    assert value != "accuracy", (
        "accuracy rewards a model that never flags fraud: with 0.9% fraud, 'never fraud' is 99.1% accurate"
    )
    assert value != "roc_auc", (
        "ROC-AUC is close to 1 for every model here (0.93-0.97): with so many legitimate payments, even "
        "thousands of false alarms barely move its false-positive rate. Look for the metric built on precision"
    )


# --------------------------------------------------------------------------- 2.2 features from the contract


def _reference_features():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = data.contract_columns("feature")
    numeric = [c.name for c in features if c.kind in ("numeric", "boolean")]
    categorical = [c for c in features if c.kind == "categorical"]
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", OneHotEncoder(categories=[list(c.categories) for c in categorical], handle_unknown="ignore"),
         [c.name for c in categorical]),
    ])


def _features_with(numeric=None, categorical=None, impute=True, contract_categories=True, extra=()):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = data.contract_columns("feature")
    numeric = numeric or [c.name for c in features if c.kind in ("numeric", "boolean")]
    cats = [c for c in features if c.kind == "categorical"] if categorical is None else categorical
    encode = (OneHotEncoder(categories=[list(c.categories) for c in cats], handle_unknown="ignore")
              if contract_categories else OneHotEncoder(handle_unknown="ignore"))
    steps = [SimpleImputer(strategy="median"), StandardScaler()] if impute else [StandardScaler()]
    return ColumnTransformer([("numeric", make_pipeline(*steps), [*numeric, *extra]),
                              ("categorical", encode, [c.name for c in cats])])


def _fit_transform(features, fit_on: pd.DataFrame, apply_to: pd.DataFrame):
    from sklearn.base import clone

    fitted = clone(features).fit(fit_on[data.feature_columns()], fit_on["is_fraud"])
    out = fitted.transform(apply_to[data.feature_columns()])
    return fitted, np.asarray(out.todense() if hasattr(out, "todense") else out, dtype=float)


@exercise(
    "2.2",
    "Build the features from the data contract",
    solution='''
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

feature_columns = lab.data.contract_columns("feature")
numeric = [c.name for c in feature_columns if c.kind in ("numeric", "boolean")]
categorical = [c for c in feature_columns if c.kind == "categorical"]
features = ColumnTransformer([
    ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
    ("categorical", OneHotEncoder(categories=[list(c.categories) for c in categorical], handle_unknown="ignore"),
     [c.name for c in categorical]),
])
''',
    hints=(
        "`lab.data.contract_columns('feature')` lists the feature columns; each has `.name`, `.kind` "
        "('numeric', 'boolean' or 'categorical') and, for categorical ones, `.categories`.",
        "Two branches: numeric and boolean columns through `make_pipeline(SimpleImputer(strategy='median'), "
        "StandardScaler())`; categorical ones through `OneHotEncoder`.",
        "Give the encoder the contract's categories, `categories=[list(c.categories) for c in categorical]`, so a "
        "batch that lacks one category still gives the same columns.",
    ),
    reference=_reference_features,
    cases=(
        wrong("no imputer", lambda: _features_with(impute=False), "missing values"),
        wrong("categories learned from the data", lambda: _features_with(contract_categories=False),
              "categories"),
        wrong("leaks the label", lambda: _features_with(extra=("is_fraud",)), "is_fraud"),
        wrong("forgot a feature", lambda: _features_with(numeric=["amount", "hour", "customer_age_days",
                                                                  "avg_amount_30d", "tx_count_24h"]),
              "distance_from_home_km"),
        wrong("a fitted pipeline instead", lambda: training.build_pipeline("logistic_regression"),
              "expected a ColumnTransformer"),
        right("the course's own", lambda: training.build_pipeline("logistic_regression").named_steps["features"]),
    ),
)
def _check_features(features) -> None:
    from sklearn.compose import ColumnTransformer

    require_attempt(features)
    assert isinstance(features, ColumnTransformer), (
        f"expected a ColumnTransformer (the features step of the pipeline), got {type(features).__name__}"
    )
    train, valid = _sample()
    try:
        fitted, out = _fit_transform(features, train, valid)
    except (KeyError, ValueError) as exc:
        text = str(exc)
        leaked = [c for c in ("is_fraud", "label_available_at", "transaction_id", "timestamp") if c in text]
        if leaked:
            raise AssertionError(
                f"your features use {leaked[0]}, which is not a feature: the model would learn from something it "
                "cannot have when a payment arrives. Use only lab.data.contract_columns('feature')"
            ) from None
        if "NaN" in text or "missing" in text.lower():
            raise AssertionError("the features fail on missing values (avg_amount_30d, distance_from_home_km may be "
                                 "empty): put a SimpleImputer before the scaler") from None
        raise AssertionError(f"fitting your features on payments failed: {text.splitlines()[0][:200]}") from None
    names = [str(n) for n in fitted.get_feature_names_out()]
    unused = [c for c in data.feature_columns() if not any(c in n for n in names)]
    assert not unused, f"the features leave out {', '.join(unused)}: every feature of the contract should be used"
    assert np.isfinite(out).all(), (
        "the output has missing values (NaN): avg_amount_30d and distance_from_home_km may be empty, so put a "
        "SimpleImputer before the scaler"
    )
    rare = train[train["merchant_category"] != "jewelry"]
    _, narrow = _fit_transform(features, rare, valid)
    assert narrow.shape[1] == out.shape[1], (
        f"fitted on a week without jewelry payments, your features give {narrow.shape[1]} columns instead of "
        f"{out.shape[1]}: the model and the server would disagree on the columns. Give OneHotEncoder the "
        "contract's categories (categories=[list(c.categories) for c in categorical])"
    )


# --------------------------------------------------------------------------- 2.3 log a model that loads back


@functools.cache
def _small_pipeline():
    train, _ = _sample()
    return training.build_pipeline("logistic_regression").fit(train[data.feature_columns()], train["is_fraud"])


def _REQS():  # noqa: N802 (stated requirements: inferring them re-loads the model in a subprocess, seconds)
    return training.serving_requirements()


def _reference_log_model(pipeline, example):
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, pipeline.predict_proba(example))
    with mlflow.start_run(run_name="my model"):
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature, input_example=example,
                                        pyfunc_predict_fn="predict_proba",
                                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
                                        pip_requirements=training.serving_requirements())
    return info.model_uri


def _logs_labels(pipeline, example):
    import mlflow

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", input_example=example, serialization_format="pickle", pip_requirements=_REQS()).model_uri


def _no_example(pipeline, example):
    import mlflow
    from mlflow.models import infer_signature

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", pyfunc_predict_fn="predict_proba",
                                        serialization_format="pickle", pip_requirements=_REQS(), signature=infer_signature(example, pipeline.predict_proba(example))).model_uri


def _returns_run_id(pipeline, example):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(pipeline, name="model", input_example=example, pyfunc_predict_fn="predict_proba",
                                 serialization_format="pickle", pip_requirements=_REQS())
    return run.info.run_id


def _no_signature(pipeline, example):
    import mlflow

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", pyfunc_predict_fn="predict_proba",
                                        serialization_format="pickle", pip_requirements=_REQS()).model_uri


def _signature_from_input_example(pipeline, example):
    import mlflow

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", input_example=example,
                                        pyfunc_predict_fn="predict_proba", serialization_format="pickle", pip_requirements=_REQS()).model_uri


def _default_serialization(pipeline, example):
    import mlflow

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", input_example=example, pip_requirements=_REQS(),
                                        pyfunc_predict_fn="predict_proba").model_uri


@exercise(
    "2.3",
    "Log a model that loads back and scores",
    solution=_reference_log_model.__doc__ or '''
from mlflow.models import infer_signature

def log_model(pipeline, example):
    signature = infer_signature(example, pipeline.predict_proba(example))
    with mlflow.start_run(run_name="my model"):
        info = mlflow.sklearn.log_model(pipeline, name="model", signature=signature, input_example=example,
                                        pyfunc_predict_fn="predict_proba",
                                        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE,
                                        pip_requirements=lab.training.serving_requirements())
    return info.model_uri
''',
    hints=(
        "Inside `with mlflow.start_run():`, call `mlflow.sklearn.log_model(pipeline, name='model', ...)`; it "
        "returns a ModelInfo whose `.model_uri` you return.",
        "`signature=infer_signature(example, pipeline.predict_proba(example))` and `input_example=example` tell "
        "anyone who loads the model what goes in and what comes out.",
        "A fraud model must answer with a score, not a 0/1 label: `pyfunc_predict_fn='predict_proba'`.",
        "Stating `pip_requirements=lab.training.serving_requirements()` saves MLflow from inferring them, which "
        "re-loads the model in a separate process (seconds).",
        "MLflow 3 saves scikit-learn models with skops, which refuses types it does not know; our registry is our "
        "own, so choose pickle explicitly: `serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE`.",
    ),
    reference=lambda: _reference_log_model,
    stub=lambda: _blank_log_model,
    cases=(
        wrong("default predict: labels", lambda: _logs_labels, "0/1 labels"),
        wrong("no input example", lambda: _no_example, "input example"),
        wrong("no signature, no example", lambda: _no_signature, "no input example"),
        wrong("returns the run id", lambda: _returns_run_id, "model URI"),
        wrong("skops by default", lambda: _default_serialization, "SERIALIZATION_FORMAT_PICKLE"),
        right("signature inferred from the example", lambda: _signature_from_input_example),
    ),
)
def _check_log_model(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function log_model(pipeline, example), got {type(func).__name__}"
    pipeline = _small_pipeline()
    _, valid = _sample()
    example = valid[data.feature_columns()].head(5)
    with scratch_store() as mlflow:  # the check's model never lands in your tracking store
        try:
            with warnings.catch_warnings(), training._quiet_mlflow():
                warnings.simplefilter("ignore", UserWarning)  # MLflow's advice (integer columns, pickle): not the point
                uri = call(func, pipeline, example)
        except mlflow.exceptions.MlflowException as exc:
            if "untrusted types" not in str(exc):
                raise
            raise AssertionError(
                "MLflow 3 saves scikit-learn models with skops by default, and skops refuses this pipeline's types. "
                "Our registry is our own (trusted), so choose pickle explicitly: "
                "serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_PICKLE"
            ) from None
        assert isinstance(uri, str) and (uri.startswith(("runs:/", "models:/")) or "/" in uri), (
            f"log_model should return the model URI (info.model_uri, 'models:/m-...'), got {uri!r}"
        )
        try:
            info = mlflow.models.get_model_info(uri)
        except Exception:
            raise AssertionError(f"{uri!r} is not a model URI: return info.model_uri (not the run id)") from None
        assert info.saved_input_example_info is not None, (
            "the model has no input example: log it with input_example=example, so whoever loads it sees a real "
            "payment"
        )
        assert info.signature is not None, "the model has no signature: pass signature=infer_signature(...)"
        loaded = mlflow.pyfunc.load_model(uri)
        batch = valid[data.feature_columns()].head(200)
        got = np.asarray(loaded.predict(batch), dtype=float)
    expected = pipeline.predict_proba(batch)[:, 1]
    scores = got[:, 1] if got.ndim == 2 and got.shape[1] == 2 else got.ravel()
    assert not np.isin(scores, (0.0, 1.0)).all(), (
        "the loaded model answers with 0/1 labels, not fraud scores: log it with pyfunc_predict_fn='predict_proba'"
    )
    assert np.allclose(scores, expected), "the loaded model scores differently from the pipeline you logged"


def _blank_log_model(pipeline, example):
    ...


# --------------------------------------------------------------------------- 2.4 predict, then check


@exercise(
    "2.4",
    "Predict: is the best threshold above or below 0.5?",
    solution='guess = "below"',
    hints=("A missed fraud costs its whole amount; a review costs EUR 5 and a held payment EUR 10.",),
    reference=lambda: "below",
    cases=(
        wrong("above", lambda: "above", "far below 0.5"),
        wrong("exactly 0.5", lambda: "0.5", "choose"),
        wrong("a number", lambda: 0.05, "choose"),
        right("capitals", lambda: "Below"),
    ),
)
def _check_threshold_guess(value) -> None:
    require_attempt(value)
    value = value.strip().lower() if isinstance(value, str) else value
    assert value in ("above", "below"), f"choose 'above' or 'below', got {value!r}"
    assert value == "below", (
        "the cheapest threshold is far below 0.5: a missed fraud costs its amount (often hundreds of euros), "
        "while a false alarm costs a EUR 5 review and a EUR 10 held payment, so it pays to flag a payment long "
        "before the model is sure"
    )


# --------------------------------------------------------------------------- 2.5 a threshold reviewers can handle


def _reference_cheapest(curve, max_reviews_per_day):
    affordable = curve[curve["reviews_per_day"] <= max_reviews_per_day]
    return affordable.loc[affordable["cost"].idxmin(), "threshold"]


def _ignores_capacity(curve, max_reviews_per_day):
    return curve.loc[curve["cost"].idxmin(), "threshold"]


def _strictly_under(curve, max_reviews_per_day):
    affordable = curve[curve["reviews_per_day"] < max_reviews_per_day]
    return affordable.loc[affordable["cost"].idxmin(), "threshold"]


def _most_reviews(curve, max_reviews_per_day):
    affordable = curve[curve["reviews_per_day"] <= max_reviews_per_day]
    return affordable.loc[affordable["reviews_per_day"].idxmax(), "threshold"]


def _returns_the_row(curve, max_reviews_per_day):
    affordable = curve[curve["reviews_per_day"] <= max_reviews_per_day]
    return affordable.loc[affordable["cost"].idxmin()]


def _sorted_then_first(curve, max_reviews_per_day):
    return float(curve.query("reviews_per_day <= @max_reviews_per_day").sort_values("cost")["threshold"].iloc[0])


def _planted_curves():
    """(name, curve, capacity, expected threshold): small curves the learner has never seen."""
    def curve(rows):
        return pd.DataFrame(rows, columns=["threshold", "reviews_per_day", "cost"])

    base = [(1.0, 0, 900.0), (0.4, 10, 500.0), (0.2, 30, 350.0), (0.1, 60, 300.0), (0.05, 120, 250.0),
            (0.01, 400, 700.0)]
    return [
        ("the cheapest threshold needs 120 reviews a day but the team handles 60", curve(base), 60, 0.1),
        ("the team handles 500 a day, so the cheapest threshold fits", curve(base), 500, 0.05),
        ("the team handles exactly 30 a day", curve(base), 30, 0.2),
        ("costs rise again at 60 reviews a day",
         curve([(1.0, 0, 900.0), (0.3, 20, 400.0), (0.2, 40, 300.0), (0.1, 60, 320.0)]), 60, 0.2),
    ]


@exercise(
    "2.5",
    "Choose the cheapest threshold the review team can handle",
    solution='''
def cheapest_within_capacity(curve, max_reviews_per_day):
    affordable = curve[curve["reviews_per_day"] <= max_reviews_per_day]
    return affordable.loc[affordable["cost"].idxmin(), "threshold"]
''',
    hints=(
        "First keep the rows the team can handle: `curve[curve['reviews_per_day'] <= max_reviews_per_day]`.",
        "Among those, the row with the lowest `cost`: `.loc[rows['cost'].idxmin(), 'threshold']`.",
    ),
    reference=lambda: _reference_cheapest,
    stub=lambda: _blank_cheapest,
    cases=(
        wrong("ignores the capacity", lambda: _ignores_capacity, "the team handles 60"),
        wrong("strictly under capacity", lambda: _strictly_under, "you returned 0.2"),
        wrong("as many reviews as allowed", lambda: _most_reviews, "you returned 0.01"),
        wrong("returns the whole row", lambda: _returns_the_row, "a threshold (a number)"),
        right("sort then take the first", lambda: _sorted_then_first),
    ),
)
def _check_cheapest(func) -> None:
    require_attempt(func)
    assert callable(func), (
        f"expected a function cheapest_within_capacity(curve, max_reviews_per_day), got {type(func).__name__}"
    )
    for why, curve, capacity, expected in _planted_curves():
        got = call(func, curve.copy(), capacity)
        assert isinstance(got, numbers.Real) and not isinstance(got, bool), (
            f"return a threshold (a number), got {type(got).__name__}"
        )
        assert float(got) == expected, (
            f"when {why}, the answer is threshold {expected} but you returned {float(got):g}: keep the rows with "
            "reviews_per_day <= the capacity, then take the cheapest of those"
        )


def _blank_cheapest(curve, max_reviews_per_day):
    ...


# --------------------------------------------------------------------------- 2.6 which data trained it?


def _reference_trained_on(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(model_name, alias)
    run = client.get_run(version.run_id)
    for item in run.inputs.dataset_inputs:
        if any(t.key == "mlflow.data.context" and t.value == "training" for t in item.tags):
            return item.dataset.digest
    return None


def _latest_version(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    latest = max(client.search_model_versions(f"name='{model_name}'"), key=lambda v: int(v.version))
    run = client.get_run(latest.run_id)
    return next(i.dataset.digest for i in run.inputs.dataset_inputs
                if any(t.value == "training" for t in i.tags))


def _first_input(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias(model_name, alias).run_id)
    return next(i.dataset.digest for i in run.inputs.dataset_inputs if i.dataset.name == "valid")


def _by_tag(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    return client.get_run(client.get_model_version_by_alias(model_name, alias).run_id).data.tags["data.fingerprint"]


def _the_version(model_name, alias):
    import mlflow

    return mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version


def _stage_registry(mlflow):
    """Two model versions trained on different data, and the digests the check expects."""
    client = mlflow.MlflowClient()
    train, valid = _sample()
    newer = data.simulate_transactions(days=7, start="2026-04-06", seed=22)
    import uuid

    name = f"cardguard-check-{uuid.uuid4().hex[:8]}"  # the scratch store is shared by the checks of one kernel
    client.create_registered_model(name)
    digests = []
    for training_frame in (train, newer):
        with mlflow.start_run() as run:
            mlflow.log_input(training.dataset(valid, "valid"), context="validation")
            mlflow.log_input(training.dataset(training_frame, "train"), context="training")
            mlflow.set_tag("data.fingerprint", data.fingerprint(training_frame))
        client.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
        digests.append(data.fingerprint(training_frame))
    return name, digests


@exercise(
    "2.6",
    "From the alias alone: which data trained this model?",
    solution='''
def trained_on(model_name, alias):
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(model_name, alias)
    run = client.get_run(version.run_id)
    for item in run.inputs.dataset_inputs:
        if any(tag.key == "mlflow.data.context" and tag.value == "training" for tag in item.tags):
            return item.dataset.digest
''',
    hints=(
        "`client.get_model_version_by_alias(name, alias)` gives the version; its `.run_id` is the run that "
        "logged it.",
        "`client.get_run(run_id).inputs.dataset_inputs` lists the datasets; each has `.dataset.digest` and `.tags`.",
        "Pick the input whose tag `mlflow.data.context` is 'training'.",
    ),
    reference=lambda: _reference_trained_on,
    stub=lambda: _blank_trained_on,
    cases=(
        wrong("the latest version, not the alias", lambda: _latest_version, "alias now points at version 1"),
        wrong("the validation input", lambda: _first_input, "validation"),
        wrong("the version number", lambda: _the_version, "digest"),
        wrong("forgot return", lambda: lambda name, alias: _reference_trained_on(name, alias) and None,
              "did you forget `return`?"),
        right("the fingerprint tag", lambda: _by_tag),
    ),
)
def _check_trained_on(func) -> None:
    require_attempt(func)
    assert callable(func), f"expected a function trained_on(model_name, alias), got {type(func).__name__}"
    with scratch_store() as mlflow:  # a registry of its own, so yours is untouched
        name, digests = _stage_registry(mlflow)
        valid_digest = data.fingerprint(_sample()[1])
        client = mlflow.MlflowClient()
        for version, why in (("2", "the alias points at version 2"), ("1", "the alias now points at version 1")):
            client.set_registered_model_alias(name, "champion", version)
            got = call(func, name, "champion")
            expected = digests[int(version) - 1]
            assert isinstance(got, str), f"return the training dataset's digest (a string), got {got!r}"
            assert got != valid_digest, (
                f"when {why}, you returned the digest of the validation data: pick the input whose context is "
                "'training'"
            )
            assert got == expected, (
                f"when {why}, its training data has digest {expected}, you returned {got}: start from "
                "get_model_version_by_alias, not from the latest version"
            )


def _blank_trained_on(model_name, alias):
    ...
