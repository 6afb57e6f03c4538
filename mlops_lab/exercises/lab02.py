"""Lab 02: Train & track. Pick the metric, build the features from the contract, log a model that
loads back, choose a threshold the review team can handle, and trace a model to its data."""

from __future__ import annotations

import functools
import math
import numbers
import warnings

import numpy as np
import pandas as pd

from .. import data, training
from . import Trial, call, exercise, require_attempt, right, scratch_store, solved, spelled_as, wrong


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
        wrong("ROC AUC, spaced", lambda: "ROC AUC", "ROC-AUC is close to 1 for every model here"),
        wrong("AUC alone", lambda: "auc", "ROC-AUC is close to 1 for every model here"),
        wrong("Accuracy, capitalised", lambda: "Accuracy", "accuracy rewards a model that never flags fraud"),
        wrong("a list of all three", lambda: ["accuracy", "roc_auc", "pr_auc"], "choose one of"),
        right("upper case", lambda: "PR_AUC"),
        right("as the prose spells it", lambda: "PR-AUC"),
        right("average precision", lambda: "average precision"),
        right("with a trailing space", lambda: "pr_auc "),
        right("with a remark in brackets (blind attack)", lambda: "PR AUC (area under precision-recall)"),
    ),
)
def _check_metric(value) -> None:
    require_attempt(value)
    choices = ("accuracy", "roc_auc", "pr_auc")
    choice = spelled_as(value, choices, {
        "pr_auc": ("pr auc", "auprc", "auc pr", "average precision", "average_precision", "precision-recall auc",
                   "area under the precision-recall curve", "precision recall auc"),
        "roc_auc": ("auc", "auroc", "roc", "auc roc", "area under the roc curve"),
        "accuracy": ("acc",),
    })
    assert choice is not None, f"choose one of {choices}, got {value!r}"
    value = choice
    assert value != "accuracy", (
        "accuracy rewards a model that never flags fraud: with 0.9% fraud, 'never fraud' is 99.1% accurate"
    )
    assert value != "roc_auc", (
        "ROC-AUC is close to 1 for every model here (0.93-0.97): with so many legitimate payments, even "
        "thousands of false alarms barely move its false-positive rate. Look for the metric built on precision"
    )


# --------------------------------------------------------------------------- 2.2 features from the contract


def _features_with(numeric=None, categorical=None, impute=True, contract_categories=True, extra=(),
                   strategy="median", scale=True, remainder="drop"):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = data.contract_columns("feature")
    numeric = numeric or [c.name for c in features if c.kind in ("numeric", "boolean")]
    cats = [c for c in features if c.kind == "categorical"] if categorical is None else categorical
    encode = (OneHotEncoder(categories=[list(c.categories) for c in cats], handle_unknown="ignore")
              if contract_categories else OneHotEncoder(handle_unknown="ignore"))
    steps = ([SimpleImputer(strategy=strategy)] if impute else []) + ([StandardScaler()] if scale else [])
    return ColumnTransformer([("numeric", make_pipeline(*steps), [*numeric, *extra]),
                              ("categorical", encode, [c.name for c in cats])], remainder=remainder)


def _fit_transform(features, fit_on: pd.DataFrame, apply_to: pd.DataFrame):
    from sklearn.base import clone

    fitted = clone(features).fit(fit_on[data.feature_columns()], fit_on["is_fraud"])
    out = fitted.transform(apply_to[data.feature_columns()])
    return fitted, np.asarray(out.todense() if hasattr(out, "todense") else out, dtype=float)


def _unused_columns(fitted, frame: pd.DataFrame, out: np.ndarray) -> list[str]:
    """The feature columns the fitted features ignore: moving that column's values to other rows (and
    nothing else) leaves the output unchanged. By behaviour, not by name: 'amount' is not used because
    'avg_amount_30d' is."""
    unused = []
    for column in data.feature_columns():
        moved = frame[data.feature_columns()].copy()
        moved[column] = np.roll(moved[column].to_numpy(), 7)
        after = fitted.transform(moved)
        after = np.asarray(after.todense() if hasattr(after, "todense") else after, dtype=float)
        if after.shape == out.shape and np.allclose(after, out, equal_nan=True):
            unused.append(column)
    return unused


@functools.cache
def _reference_features():
    """The reference features fitted on the check's week, its output on the next days, and its column names."""
    train, valid = _sample()
    fitted, out = _fit_transform(solved("2.2")["features"], train, valid)
    return out, list(fitted.get_feature_names_out())


def _unmatched_reference_column(out: np.ndarray) -> int | None:
    """The first column of the reference output that no column of ``out`` equals (the order of the branches
    and of the columns is the learner's choice; extra columns, such as missing-value indicators, are
    allowed), or None when every one has its match."""
    expected, _ = _reference_features()
    free = list(range(out.shape[1]))
    for j in range(expected.shape[1]):
        match = next((k for k in free if np.allclose(out[:, k], expected[:, j], rtol=1e-6, atol=1e-9)), None)
        if match is None:
            return j
        free.remove(match)
    return None


def _steps(estimator):
    """Every estimator inside a ColumnTransformer or Pipeline, nested ones included."""
    yield estimator
    for child in [t[1] for t in getattr(estimator, "transformers", ())] + [s[1] for s in getattr(estimator, "steps", ())]:
        yield from _steps(child)


def _features_forgetting(column):
    from sklearn.base import clone

    features = clone(solved("2.2")["features"])
    name, steps, columns = features.transformers[0]
    features.transformers[0] = (name, steps, [c for c in columns if c != column])
    return features


def _booleans_passed_through():
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    features = data.contract_columns("feature")
    numeric = [c.name for c in features if c.kind == "numeric"]
    categorical = [c for c in features if c.kind == "categorical"]
    return ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("categorical", OneHotEncoder(categories=[list(c.categories) for c in categorical], handle_unknown="ignore"),
         [c.name for c in categorical]),
    ])  # booleans fall into remainder="drop"


def _categorical_first_dense():
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = data.contract_columns("feature")
    categorical = [c for c in columns if c.categories]
    return make_column_transformer(
        (OneHotEncoder(categories=[list(c.categories) for c in categorical], handle_unknown="ignore",
                       sparse_output=False), [c.name for c in categorical]),
        (make_pipeline(SimpleImputer(strategy="median"), StandardScaler()),
         [c.name for c in columns if not c.categories]),
    )


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
    reference="features",
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
        wrong("forgot amount (avg_amount_30d has the word)", lambda: _features_forgetting("amount"),
              "leave out amount"),
        wrong("booleans dropped", _booleans_passed_through, "leave out country_mismatch, new_device"),
        wrong("remainder passthrough (red team)", lambda: _features_with(remainder="passthrough"), "the label leaks"),
        wrong("mean imputer (red team)", lambda: _features_with(strategy="mean"), "median"),
        wrong("most_frequent imputer (red team)", lambda: _features_with(strategy="most_frequent"), "median"),
        wrong("no scaler (red team)", lambda: _features_with(scale=False), "StandardScaler"),
        right("the course's own", lambda: training.build_pipeline("logistic_regression").named_steps["features"]),
        right("categorical first, dense, by make_column_transformer", _categorical_first_dense),
    ),
)
def _check_features(features) -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer

    require_attempt(features)
    assert isinstance(features, ColumnTransformer), (
        f"expected a ColumnTransformer (the features step of the pipeline), got {type(features).__name__}"
    )
    remainder = features.remainder
    assert isinstance(remainder, str) and remainder == "drop", (
        f"remainder={remainder!r} hands every column the branches do not name (is_fraud, transaction_id, "
        "timestamp, label_available_at, when a whole frame comes in) to the model: the label leaks. Leave "
        "remainder at its default, 'drop', and name the feature columns in the branches"
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
    unused = _unused_columns(fitted, valid, out)
    assert not unused, (
        f"the features leave out {', '.join(unused)}: shuffling {'that column' if len(unused) == 1 else 'those columns'}"
        " of the payments leaves your output unchanged. Every feature of the contract should be used"
    )
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
    _, names = _reference_features()
    missed = _unmatched_reference_column(out)
    if missed is not None:
        column = names[missed].split("__", 1)[-1]
        strategies = {step.strategy for step in _steps(features) if isinstance(step, SimpleImputer)}
        if strategies - {"median"}:
            raise AssertionError(
                f"your features fill a missing {column} with the {sorted(strategies - {'median'})[0]}: use "
                "SimpleImputer(strategy='median'), the middle value of the training payments (a few huge "
                "amounts pull the mean up, and the most frequent value says little about a continuous column)"
            )
        raise AssertionError(
            f"your values for {column} are not the lab's: the numeric and boolean columns go through a median "
            "SimpleImputer and then, in that order, a StandardScaler (centred on the training mean, divided by its standard "
            "deviation), so that large amounts do not drown the other features"
        )


# --------------------------------------------------------------------------- 2.3 log a model that loads back


@functools.cache
def _small_pipeline():
    train, _ = _sample()
    return training.build_pipeline("logistic_regression").fit(train[data.feature_columns()], train["is_fraud"])


def _REQS():  # noqa: N802 (stated requirements: inferring them re-loads the model in a subprocess, seconds)
    return training.serving_requirements()


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


def _returns_model_info(pipeline, example):
    import mlflow

    with mlflow.start_run():
        return mlflow.sklearn.log_model(pipeline, name="model", input_example=example, pyfunc_predict_fn="predict_proba",
                                        serialization_format="pickle", pip_requirements=_REQS())


def _runs_uri(pipeline, example):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.sklearn.log_model(pipeline, name="model", input_example=example, pyfunc_predict_fn="predict_proba",
                                 serialization_format="pickle", pip_requirements=_REQS())
    return f"runs:/{run.info.run_id}/model"


@exercise(
    "2.3",
    "Log a model that loads back and scores",
    solution='''
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
    reference="log_model",
    stub=lambda: _blank_log_model,
    trials=lambda: _loaded_model_trials(),
    cases=(
        wrong("default predict: labels", lambda: _logs_labels, "0/1 labels"),
        wrong("no input example", lambda: _no_example, "input example"),
        wrong("no signature, no example", lambda: _no_signature, "no input example"),
        wrong("returns the run id", lambda: _returns_run_id, "model URI"),
        wrong("skops by default", lambda: _default_serialization, "SERIALIZATION_FORMAT_PICKLE"),
        wrong("returns the ModelInfo", lambda: _returns_model_info, "should return the model URI"),
        right("signature inferred from the example", lambda: _signature_from_input_example),
        right("the run's artifact URI", lambda: _runs_uri),
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
        # logging is slow (about a second), so the function runs once; what it logged is judged on many
        # payment batches, as whoever loads it will use it
        answers = []
        with training._quiet_mlflow():
            for trial in sorted(_loaded_model_trials(), key=lambda t: t.size):
                batch = trial.args[0]
                got = np.asarray(loaded.predict(batch.copy()), dtype=float)
                scores = got[:, 1] if got.ndim == 2 and got.shape[1] == 2 else got.ravel()
                answers.append((trial, scores, pipeline.predict_proba(batch[data.feature_columns()])[:, 1]))
    assert not all(np.isin(scores, (0.0, 1.0)).all() for _, scores, _ in answers), (
        "the loaded model answers with 0/1 labels, not fraud scores: log it with pyfunc_predict_fn='predict_proba'"
    )
    for trial, scores, expected in answers:
        assert scores.shape == expected.shape and np.allclose(scores, expected), (
            f"on {trial.label} the loaded model scores differently from the pipeline you logged")


@functools.cache
def _loaded_model_trials() -> tuple[Trial, ...]:
    """Payment batches the logged model is loaded and scored on: seeds, drift scenarios, sizes from one
    payment up, shuffled rows, the columns a payment log carries beside the features."""
    out = []
    features = data.feature_columns()
    for i, (seed, scenario, n) in enumerate([(s, sc, n) for s, sc, n in zip(
            range(30, 50), [None, "holiday_season", "card_testing", "amount_in_cents", None] * 4,
            [1, 2, 5, 17, 60, 200, 3, 9, 40, 120, 1, 7, 25, 80, 11, 33, 4, 150, 13, 70], strict=True)]):
        frame = data.simulate_transactions(n, start="2026-03-10", seed=seed, scenario=scenario)
        if i % 3 == 1:
            frame = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        columns = features if i % 2 == 0 else [*features, "transaction_id"]
        what = f"{n} payment{'s' * (n != 1)} of seed {seed}" + (f" ({scenario})" if scenario else "") + (
            ", shuffled" if i % 3 == 1 else "") + (", with their transaction ids" if i % 2 else "")
        frame.attrs = {}
        out.append(Trial(what, (frame[columns].copy(),), size=n))
    return tuple(out)


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
        wrong("higher", lambda: "higher", "far below 0.5"),
        wrong("Above 0.5", lambda: "Above 0.5", "far below 0.5"),
        wrong("a boolean", lambda: True, "choose"),
        right("capitals", lambda: "Below"),
        right("below 0.5", lambda: "below 0.5"),
        right("lower", lambda: " lower "),
        right("lower than 0.5 (blind attack)", lambda: "lower than 0.5"),
    ),
)
def _check_threshold_guess(value) -> None:
    require_attempt(value)
    choice = spelled_as(value, ("above", "below"), {
        "above": ("above 0.5", "higher", "higher than 0.5", "over", "over 0.5", "> 0.5", "more than 0.5",
                  "greater than 0.5"),
        "below": ("below 0.5", "lower", "lower than 0.5", "under", "under 0.5", "< 0.5", "less than 0.5",
                  "smaller than 0.5"),
    })
    assert choice is not None, f"choose 'above' or 'below', got {value!r}"
    value = choice
    assert value == "below", (
        "the cheapest threshold is far below 0.5: a missed fraud costs its amount (often hundreds of euros), "
        "while a false alarm costs a EUR 5 review and a EUR 10 held payment, so it pays to flag a payment long "
        "before the model is sure"
    )


# --------------------------------------------------------------------------- 2.5 a threshold reviewers can handle


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


def _flags_in_total(curve, max_reviews_per_day):
    affordable = curve[curve["flagged"] <= max_reviews_per_day]  # flags over the whole period, not a day
    return affordable.loc[affordable["cost"].idxmin(), "threshold"]


def _this_weeks_threshold(curve, max_reviews_per_day):
    return 0.0587  # the figure this seed's validation week gives


def _sorts_the_callers_curve(curve, max_reviews_per_day):
    curve.sort_values("cost", inplace=True)
    return curve.loc[curve["reviews_per_day"] <= max_reviews_per_day, "threshold"].iloc[0]


def _walks_down_the_thresholds(curve, max_reviews_per_day):
    best, best_cost = None, float("inf")
    for row in curve.itertuples():
        if row.reviews_per_day > max_reviews_per_day:
            break  # cost_curve lists thresholds from high to low: fewer reviews first
        if row.cost < best_cost:
            best, best_cost = row.threshold, row.cost
    return best


def _numpy_where(curve, max_reviews_per_day):
    cost = np.where(curve["reviews_per_day"].to_numpy() <= max_reviews_per_day, curve["cost"].to_numpy(), np.inf)
    return float(curve["threshold"].to_numpy()[cost.argmin()])


def _planted_curves():
    """(name, curve, capacity, expected threshold): small curves the learner has never seen."""
    def curve(rows):
        frame = pd.DataFrame(rows, columns=["threshold", "reviews_per_day", "cost"])
        return frame.assign(flagged=frame["reviews_per_day"] * 7)  # a week of payments

    base = [(1.0, 0, 900.0), (0.4, 10, 500.0), (0.2, 30, 350.0), (0.1, 60, 300.0), (0.05, 120, 250.0),
            (0.01, 400, 700.0)]
    return [
        ("a curve where the cheapest threshold needs 120 reviews a day but the team handles 60", curve(base), 60, 0.1),
        ("a curve where the team handles 500 a day, so the cheapest threshold fits", curve(base), 500, 0.05),
        ("a curve where the team handles exactly 30 a day", curve(base), 30, 0.2),
        ("a curve whose costs rise again at 60 reviews a day",
         curve([(1.0, 0, 900.0), (0.3, 20, 400.0), (0.2, 40, 300.0), (0.1, 60, 320.0)]), 60, 0.2),
    ]


def _curve_trials():
    """The planted curves (the story), then cost curves of simulated weeks (lab.training.cost_curve on
    scores of several seeds) with capacities exactly on a threshold's reviews a day, just below it, none
    at all, and more than any threshold needs."""
    from . import Trial

    trials = [Trial(f"{name} (max_reviews_per_day={capacity})", (curve, capacity), size=len(curve) + k / 10)
              for k, (name, curve, capacity, _) in enumerate(_planted_curves())]
    for seed in (41, 42, 43, 44):
        rng = np.random.default_rng(seed)
        n, days = int(rng.integers(150, 600)), int(rng.integers(2, 8))
        fraud = rng.random(n) < 0.05
        scores = np.clip(rng.beta(1, 12, n) + fraud * rng.uniform(0.0, 0.8, n), 0, 1).round(4)
        amounts = rng.lognormal(3.5, 1.0, n).round(2)
        curve = training.cost_curve(fraud.astype(int), scores, amounts, days=days)
        unconstrained = curve.loc[curve["cost"].idxmin()]
        cheapest = float(unconstrained["reviews_per_day"])
        middle = float(curve["reviews_per_day"].iloc[len(curve) // 4])
        for k, (capacity, why) in enumerate((
            (cheapest, "exactly what the cheapest threshold needs"),
            ((int(unconstrained["flagged"]) - 1) / days, "one flag short of what the cheapest threshold needs"),
            (middle, "exactly one threshold's reviews a day"),
            (0, "no reviewer at all"),
            (int(curve["reviews_per_day"].max()) + 5, "more than any threshold needs"),
        )):
            trials.append(Trial(f"a cost curve of {len(curve)} thresholds ({n} payments over {days} days, seed "
                                f"{seed}) and max_reviews_per_day={capacity:g} ({why})", (curve, capacity),
                                size=100 + len(curve) + k / 10))
    return trials


def _compare_threshold(got, expected, trial):
    curve, capacity = trial.args
    if isinstance(got, bool | np.bool_) or not isinstance(got, numbers.Real):
        return f"return a threshold (a number), got {type(got).__name__}"
    if math.isclose(float(got), float(expected), rel_tol=1e-9, abs_tol=1e-12):
        return None
    right = curve.loc[curve["threshold"] == expected].iloc[0]
    rows = curve.loc[np.isclose(curve["threshold"], float(got), rtol=1e-9, atol=1e-12)]
    yours = (f" (cost {rows['cost'].iloc[0]:,.0f}, {rows['reviews_per_day'].iloc[0]:g} reviews a day)"
             if len(rows) else " (not a threshold of this curve)")
    return (f"yours returned threshold {float(got):g}{yours}; the right one is {float(expected):g} (cost "
            f"{right['cost']:,.0f}, {right['reviews_per_day']:g} reviews a day, within max_reviews_per_day="
            f"{capacity:g}): keep the rows with reviews_per_day <= the capacity, then take the cheapest of those")


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
    reference="cheapest_within_capacity",
    stub=lambda: _blank_cheapest,
    trials=_curve_trials,
    cases=(
        wrong("ignores the capacity", lambda: _ignores_capacity, "the team handles 60"),
        wrong("strictly under capacity", lambda: _strictly_under, "yours returned threshold 0.2 (cost 350, 30 reviews a day)"),
        wrong("as many reviews as allowed", lambda: _most_reviews, "yours returned threshold 0.1 (cost 320"),
        wrong("returns the whole row", lambda: _returns_the_row, "a threshold (a number)"),
        wrong("capacity compared with all flags, not a day's", lambda: _flags_in_total, "the right one is"),
        wrong("this week's threshold, hard-coded", lambda: _this_weeks_threshold, "not a threshold of this curve"),
        wrong("sorts the caller's curve", lambda: _sorts_the_callers_curve, "changed its input"),
        right("sort then take the first", lambda: _sorted_then_first),
        right("walk down the thresholds", lambda: _walks_down_the_thresholds),
        right("numpy where", lambda: _numpy_where),
    ),
)
def _check_cheapest(func) -> None:
    from . import differential, get

    require_attempt(func)
    assert callable(func), (
        f"expected a function cheapest_within_capacity(curve, max_reviews_per_day), got {type(func).__name__}"
    )
    differential(func, get("2.5").reference(), _curve_trials_cached(), compare=_compare_threshold,
                 what="your cheapest_within_capacity")


@functools.cache
def _curve_trials_cached():
    return tuple(_curve_trials())


def _blank_cheapest(curve, max_reviews_per_day):
    ...


# --------------------------------------------------------------------------- 2.6 which data trained it?


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
    return run.inputs.dataset_inputs[0].dataset.digest


def _by_tag(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    return client.get_run(client.get_model_version_by_alias(model_name, alias).run_id).data.tags["data.fingerprint"]


def _the_version(model_name, alias):
    import mlflow

    return mlflow.MlflowClient().get_model_version_by_alias(model_name, alias).version


def _by_dataset_name(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias(model_name, alias).run_id)
    return next(i.dataset.digest for i in run.inputs.dataset_inputs if i.dataset.name == "train")


def _always_champion(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias(model_name, "champion").run_id)  # ignores alias
    return next(i.dataset.digest for i in run.inputs.dataset_inputs
                if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags))


def _first_version(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version(model_name, "1").run_id)
    return next(i.dataset.digest for i in run.inputs.dataset_inputs
                if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags))


def _the_dataset_name(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    run = client.get_run(client.get_model_version_by_alias(model_name, alias).run_id)
    return next(i.dataset.name for i in run.inputs.dataset_inputs
                if any(t.key == "mlflow.data.context" and t.value == "training" for t in i.tags))


_EARLIER_CLIENT = []


def _client_from_an_earlier_cell():
    """A right answer: the client made in an earlier cell, bound to the learner's store when it was made."""
    import mlflow

    training.mlflow_client()
    client = mlflow.MlflowClient()

    def trained_on(model_name, alias):
        run = client.get_run(client.get_model_version_by_alias(model_name, alias).run_id)
        contexts = {t.value: i.dataset.digest for i in run.inputs.dataset_inputs for t in i.tags
                    if t.key == "mlflow.data.context"}
        return contexts["training"]

    return trained_on


def _by_model_info(model_name, alias):
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{model_name}@{alias}")
    run = mlflow.get_run(info.run_id)
    return next(d.dataset.digest for d in run.inputs.dataset_inputs
                if {t.key: t.value for t in d.tags}.get("mlflow.data.context") == "training")


def _search_by_alias_tags(model_name, alias):
    import mlflow

    client = mlflow.MlflowClient()
    version = client.get_registered_model(model_name).aliases[alias]
    inputs = client.get_run(client.get_model_version(model_name, version).run_id).inputs.dataset_inputs
    (training_input,) = [i for i in inputs if {t.key: t.value for t in i.tags}.get("mlflow.data.context") == "training"]
    return training_input.dataset.digest


# Runs (their training data: seed, start) and, per registered model, which run each version logged and
# where its aliases point. Dataset names are free text: only the context says which input trained the model.
_RUNS = ((51, "2026-01-05", "train"), (52, "2026-02-02", "weeks 5-8"), (53, "2026-03-02", "train"),
         (54, "2026-04-06", "retrain after drift"), (55, "2026-05-04", "train"))
_MODELS = (
    ((0, 1, 2), {"champion": 2, "challenger": 3, "previous": 1, "stable": 3}),
    ((3, 1, 4, 0), {"champion": 1, "challenger": 4, "shadow": 3, "previous": 2}),
    ((2, 4), {"champion": 2, "challenger": 1, "rollback": 1}),
    ((4, 3, 2, 1, 0), {"champion": 3, "challenger": 5, "previous": 2, "canary": 4, "oldest": 1}),
    ((1, 0, 3), {"champion": 1, "challenger": 2, "shadow": 3, "canary": 2}),
)


def _log_model_description(mlflow, run_id: str) -> None:
    """The run's model folder with its MLmodel file only (no pickle: nothing here loads the model), so that
    mlflow.models.get_model_info("models:/NAME@ALIAS") works on the staged registry as on a real one."""
    import os
    import tempfile

    from mlflow.models import Model

    description = Model(run_id=run_id, artifact_path="model",
                        flavors={"python_function": {"loader_module": "mlflow.sklearn", "env": {}}})
    with tempfile.TemporaryDirectory() as folder:
        description.save(os.path.join(folder, "MLmodel"))
        mlflow.log_artifact(os.path.join(folder, "MLmodel"), "model")


def _staged_registry():
    """Five registered models over five runs, staged once per process and workspace in the checks' scratch
    store: (model name, alias, the version, the training digest, the validation digest) for every alias."""
    from . import _scratch_folder

    return _staged_registry_in(_scratch_folder())


@functools.cache
def _staged_registry_in(folder: str):  # the scratch folder: another workspace has another store
    import uuid

    with scratch_store() as mlflow:
        client = mlflow.MlflowClient()
        valid = data.simulate_transactions(40, start="2026-06-01", seed=50)
        runs = []
        for k, (seed, start, dataset_name) in enumerate(_RUNS):
            frame = data.simulate_transactions(40 + 5 * k, start=start, seed=seed)
            with mlflow.start_run() as run:
                if k % 2:  # the training input is not always the first one logged
                    mlflow.log_input(training.dataset(valid, "valid"), context="validation")
                    mlflow.log_input(training.dataset(frame, dataset_name), context="training")
                else:
                    mlflow.log_input(training.dataset(frame, dataset_name), context="training")
                    mlflow.log_input(training.dataset(valid, "train" if k == 2 else "valid"), context="validation")
                mlflow.set_tag("data.fingerprint", data.fingerprint(frame))
                _log_model_description(mlflow, run.info.run_id)
            runs.append((run.info.run_id, data.fingerprint(frame)))
        tag = uuid.uuid4().hex[:6]  # the scratch store is shared by the checks of one process
        staged = []
        for m, (versions, aliases) in enumerate(_MODELS):
            name = f"cardguard-check-{tag}-{m + 1}"
            client.create_registered_model(name)
            for r in versions:
                client.create_model_version(name, source=f"runs:/{runs[r][0]}/model", run_id=runs[r][0])
            for alias, version in aliases.items():
                client.set_registered_model_alias(name, alias, str(version))
                staged.append((name, alias, version, len(versions), runs[versions[version - 1]][1]))
    return tuple(staged), data.fingerprint(valid)


def _registry_trials():
    from . import Trial

    staged, _ = _staged_registry()
    return [Trial(f"model {name!r}, alias {alias!r} (on version {version} of {count})", (name, alias),
                  size=k, within=scratch_store) for k, (name, alias, version, count, _) in enumerate(staged)]


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
    reference="trained_on",
    stub=lambda: _blank_trained_on,
    trials=_registry_trials,
    cases=(
        wrong("the latest version, not the alias", lambda: _latest_version, "start from the alias"),
        wrong("the first input logged", lambda: _first_input, "the validation data"),
        wrong("the version number", lambda: _the_version, "digest"),
        wrong("forgot return", lambda: lambda name, alias: solved("2.6")["trained_on"](name, alias) and None,
              "did you forget `return`?"),
        wrong("the input named 'train'", lambda: _by_dataset_name, "raised StopIteration"),
        wrong("always the champion", lambda: _always_champion, "alias 'challenger'"),
        wrong("always version 1", lambda: _first_version, "start from the alias"),
        wrong("the dataset's name", lambda: _the_dataset_name, "you returned 'weeks 5-8'"),
        right("the fingerprint tag", lambda: _by_tag),
        right("a client made in an earlier cell", _client_from_an_earlier_cell),
        right("aliases of the registered model", lambda: _search_by_alias_tags),
        right("get_model_info of the models:/ URI (red team)", lambda: _by_model_info),
    ),
)
def _check_trained_on(func) -> None:
    from . import differential, get

    require_attempt(func)
    assert callable(func), f"expected a function trained_on(model_name, alias), got {type(func).__name__}"
    staged, valid_digest = _staged_registry()
    digests = {(name, alias): digest for name, alias, _, _, digest in staged}

    def compare(got, expected, trial):
        if not isinstance(got, str):
            return f"return the training dataset's digest (a string), got {got!r}"
        if got == valid_digest:
            return "you returned the digest of the validation data: pick the input whose context is 'training'"
        if got != expected:
            others = {d for (n, _), d in digests.items() if n == trial.args[0]}
            hint = (" (the training data of another version of this model: start from the alias, "
                    "get_model_version_by_alias)" if got in others else "")
            return f"its training data has digest {expected}, you returned {got!r}{hint}"
        return None

    # the trials run within the checks' scratch store (Trial.within): yours is untouched
    differential(func, get("2.6").reference(), _registry_trials_cached(staged), compare=compare,
                 what="your trained_on")


@functools.cache
def _registry_trials_cached(staged):  # keyed on the staged registry: one per scratch store
    return tuple(_registry_trials())


def _blank_trained_on(model_name, alias):
    ...
