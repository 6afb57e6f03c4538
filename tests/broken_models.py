"""A model with a real bug, for the rollout tests: it squeezes its input, so a single payment (a
one-row matrix) becomes a vector and scikit-learn raises. It scores batches correctly, so it passes
the serving examples the server checks at load time, and fails only live, on /predict. (A module of
its own: the server process unpickles it, so it must be importable there.)"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class SqueezesItsInput(ClassifierMixin, BaseEstimator):
    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y):
        self.model.fit(X, y)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self):
        return self.model.classes_

    def predict_proba(self, X):
        return self.model.predict_proba(np.squeeze(np.asarray(X)))

    def predict(self, X):
        return self.model.predict(np.squeeze(np.asarray(X)))


class CalibratesPerBatch(ClassifierMixin, BaseEstimator):
    """Another real bug: it rescales log-odds by their spread within the request, so a single payment
    (spread 0) gets 0/0, a NaN score. Batches score finite values."""

    def __init__(self, model=None):
        self.model = model

    def fit(self, X, y):
        self.model.fit(X, y)
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    @property
    def classes_(self):
        return self.model.classes_

    def predict_proba(self, X):
        logit = self.model.decision_function(X)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (logit - logit.mean()) / logit.std()
        p = 1 / (1 + np.exp(-scaled))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
