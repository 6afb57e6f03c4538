"""Models with real bugs, for the rollout tests. Each wraps a fitted classifier and scores batches
correctly, so it passes the serving examples the server checks at load time, and fails only live, on
a single payment (/predict). (A module of its own: the server process unpickles these classes, so
they must be importable there.)"""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin


class _Wrapper(ClassifierMixin, BaseEstimator):
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

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


class SqueezesItsInput(_Wrapper):
    """Squeezes its input, so one payment (a one-row matrix) becomes a vector and scikit-learn raises."""

    def predict_proba(self, X):
        return self.model.predict_proba(np.squeeze(np.asarray(X)))


class CalibratesPerBatch(_Wrapper):
    """Rescales log-odds by their spread within the request, so one payment (spread 0) gets 0/0: NaN."""

    def predict_proba(self, X):
        logit = self.model.decision_function(X)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = (logit - logit.mean()) / logit.std()
        p = 1 / (1 + np.exp(-scaled))
        return np.column_stack([1 - p, p])
