"""Training: the CardGuard pipeline (features from the data contract), fraud metrics, the
cost-minimising threshold, and tracking runs in MLflow."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import data
from .errors import LabError

MODEL_KINDS = ("logistic_regression", "gradient_boosting")


def _as_float(frame):
    """Booleans (nullable) and integers to float, NA to NaN, so imputers and models accept them."""
    return np.asarray(pd.DataFrame(frame).astype("float64"))


def build_pipeline(kind: str = "gradient_boosting", **params):
    """A scikit-learn Pipeline: a ColumnTransformer generated from the data contract, then a
    classifier. ``kind`` is 'logistic_regression' (the baseline) or 'gradient_boosting'."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    features = data.contract_columns("feature")
    numeric = [c.name for c in features if c.kind in ("numeric", "boolean")]
    categorical = [c for c in features if c.kind == "categorical"]
    encode = OneHotEncoder(categories=[list(c.categories) for c in categorical], handle_unknown="ignore",
                           sparse_output=False)
    prepare_numeric = [FunctionTransformer(_as_float, feature_names_out="one-to-one"),
                       SimpleImputer(strategy="median", add_indicator=True)]
    if kind == "logistic_regression":
        prepare_numeric.append(StandardScaler())
        model = LogisticRegression(**{"max_iter": 1000, "C": 1.0, **params})
    elif kind == "gradient_boosting":
        model = HistGradientBoostingClassifier(**{"max_iter": 200, "learning_rate": 0.1, "max_leaf_nodes": 31,
                                                   "random_state": 0, **params})
    else:
        raise LabError(f"Unknown model kind {kind!r}; choose one of: {', '.join(MODEL_KINDS)}.")
    columns = ColumnTransformer(
        [("numeric", make_pipeline(*prepare_numeric), numeric),
         ("categorical", encode, [c.name for c in categorical])],
        verbose_feature_names_out=False,
    )
    return Pipeline([("features", columns), ("model", model)])
