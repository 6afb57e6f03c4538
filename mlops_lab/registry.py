"""The model registry: register models, set ``champion``/``challenger`` aliases (never stages),
the promotion gate, and rollback.

The gate: a challenger goes live only when it beats the champion on the same recent held-out
data by more than noise. Both models score the same payments; a paired bootstrap over those
payments gives an interval for the difference in PR-AUC; the challenger is promoted when the
whole 90% interval is above zero *and* the mean improvement is at least ``margin``. Every
decision is written onto the challenger's model version as tags.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from . import config, data
from .errors import LabError
from .training import _quiet_mlflow, mlflow_client, predict_scores

CHAMPION, CHALLENGER = "champion", "challenger"
MARGIN = 0.01  # PR-AUC points a challenger must gain on average
CONFIDENCE = 0.90
N_BOOTSTRAP = 300


def _client():
    mlflow = mlflow_client()
    return mlflow, mlflow.MlflowClient()


def register(run_id: str, name: str | None = None) -> str:
    """Register the model logged by run ``run_id``; return the new version number (as a string)."""
    mlflow, client = _client()
    name = name or config.model_name()
    try:
        run = client.get_run(run_id)
    except Exception:
        raise LabError(
            f"There is no run {run_id!r} in the tracking store {config.tracking_uri()}. Take a run id from "
            "lab.training.compare_runs() (its index), or from the MLflow UI."
        ) from None
    model_uri = run.data.tags.get("model_uri")
    if not model_uri:
        raise LabError(f"Run {run_id} logged no model: train it with lab.training.train_and_log(...).")
    with _quiet_mlflow():
        version = mlflow.register_model(model_uri, name, tags={"run_id": run_id})
    for key in ("data.fingerprint", "data.contract_hash", "data.contract_version"):
        if key in run.data.tags:
            client.set_model_version_tag(name, version.version, key, run.data.tags[key])
    client.set_model_version_tag(name, version.version, "threshold", run.data.params.get("threshold", ""))
    client.set_model_version_tag(name, version.version, "model_kind", run.data.params.get("model_kind", ""))
    return str(version.version)


def alias_version(alias: str, name: str | None = None) -> str | None:
    """The version an alias points at, or None."""
    _, client = _client()
    name = name or config.model_name()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def set_alias(alias: str, version: str, name: str | None = None) -> None:
    from .workshop import server_errors

    _, client = _client()
    with server_errors(f"set the {alias!r} alias of model {name or config.model_name()!r}"):
        client.set_registered_model_alias(name or config.model_name(), alias, str(version))


def model_uri(alias: str = CHAMPION, name: str | None = None) -> str:
    return f"models:/{name or config.model_name()}@{alias}"


def load(alias_or_version: str = CHAMPION, name: str | None = None):
    """Load a registered pipeline by alias ('champion') or version number ('3')."""
    mlflow, client = _client()
    name = name or config.model_name()
    ref = str(alias_or_version)
    if not ref.isdigit() and alias_version(ref, name) is None:
        lab_hint = "run lab 03 or `lab.setup(4)`" if ref == CHAMPION else "set it with lab.registry.set_alias(...)"
        raise LabError(f"No {ref} yet for model {name!r}: {lab_hint}.")
    uri = f"models:/{name}/{ref}" if ref.isdigit() else f"models:/{name}@{ref}"
    try:
        with _quiet_mlflow():
            return mlflow.sklearn.load_model(uri)
    except Exception as exc:
        raise LabError(f"Cannot load {uri}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}. "
                       "Check the version exists (lab.registry.versions()).") from None


def versions(name: str | None = None) -> pd.DataFrame:
    """Every version of the registered model with its aliases and gate decision."""
    _, client = _client()
    name = name or config.model_name()
    try:
        model = client.get_registered_model(name)
    except Exception:
        return pd.DataFrame(columns=["version", "aliases", "model_kind", "gate.verdict"])
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name = '{name}'"):
        rows.append({"version": str(v.version), "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
                     "model_kind": v.tags.get("model_kind", ""), "run_id": v.run_id,
                     "gate.verdict": v.tags.get("gate.verdict", ""), "created": pd.Timestamp(v.creation_timestamp, unit="ms")})
    return pd.DataFrame(rows).sort_values("version", key=lambda s: s.astype(int)).set_index("version")


# --------------------------------------------------------------------------- the gate


@dataclass
class Decision:
    verdict: str  # "promoted", "kept champion", "first model"
    promoted: bool
    challenger_version: str
    champion_version: str | None
    challenger_pr_auc: float
    champion_pr_auc: float | None
    difference: float | None
    interval: tuple[float, float] | None
    margin: float
    data_fingerprint: str
    reason: str

    def __str__(self) -> str:
        if self.champion_version is None:
            return f"v{self.challenger_version}: {self.verdict} ({self.reason})"
        low, high = self.interval
        return (f"challenger v{self.challenger_version} PR-AUC {self.challenger_pr_auc:.4f} vs champion "
                f"v{self.champion_version} {self.champion_pr_auc:.4f}: difference {self.difference:+.4f}, "
                f"{CONFIDENCE:.0%} interval [{low:+.4f}, {high:+.4f}], margin {self.margin}. "
                f"Verdict: {self.verdict} ({self.reason}).")


def should_promote(interval_low: float, mean_difference: float, margin: float = MARGIN) -> bool:
    """The promotion rule: better beyond noise (interval above zero) and by enough to matter."""
    return interval_low > 0 and mean_difference >= margin


def paired_bootstrap(y, challenger_scores, champion_scores, n: int = N_BOOTSTRAP, seed: int = config.SEED):
    """Bootstrap the difference in PR-AUC (challenger - champion) on the same resampled payments."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y, dtype=int)
    a, b = np.asarray(challenger_scores), np.asarray(champion_scores)
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if y[idx].min() == y[idx].max():
            continue
        diffs.append(average_precision_score(y[idx], a[idx]) - average_precision_score(y[idx], b[idx]))
    diffs = np.asarray(diffs)
    tail = (1 - CONFIDENCE) / 2
    return float(diffs.mean()), (float(np.quantile(diffs, tail)), float(np.quantile(diffs, 1 - tail)))


def _check_contract(version_tags: dict, version: str) -> None:
    trained_on = version_tags.get("data.contract_hash")
    if trained_on and trained_on != data.contract_hash():
        raise LabError(
            f"Version {version} was trained on data contract {version_tags.get('data.contract_version')} "
            f"(hash {trained_on}), but payments now follow contract {data.CONTRACT_VERSION} (hash "
            f"{data.contract_hash()}). Its features may mean something else: retrain it on current data "
            "before it can challenge the champion."
        )


def promote_if_better(challenger_version: str, holdout: pd.DataFrame, margin: float = MARGIN,
                      name: str | None = None) -> Decision:
    """Score challenger and champion on the same recent held-out payments; promote the challenger
    to ``champion`` only if it is better beyond noise and by at least ``margin``. The first model
    becomes champion. The decision is recorded on the challenger's model version."""
    from sklearn.metrics import average_precision_score

    _, client = _client()
    name = name or config.model_name()
    challenger_version = str(challenger_version)
    try:
        challenger_tags = client.get_model_version(name, challenger_version).tags
    except Exception:
        raise LabError(f"Model {name!r} has no version {challenger_version}: see lab.registry.versions().") from None
    _check_contract(challenger_tags, challenger_version)
    report = data.validate_batch(holdout)
    if not report.ok:
        raise LabError(f"The holdout fails the data contract, so the gate cannot judge on it.\n{report}")
    y = holdout["is_fraud"].to_numpy()
    challenger_scores = predict_scores(load(challenger_version, name), holdout)
    challenger_pr_auc = float(average_precision_score(y, challenger_scores))
    champion_version = alias_version(CHAMPION, name)
    fingerprint = data.fingerprint(holdout)
    set_alias(CHALLENGER, challenger_version, name)
    if champion_version is None:
        decision = Decision("first model", True, challenger_version, None, challenger_pr_auc, None, None, None,
                            margin, fingerprint, "no champion yet, so the first model becomes champion")
    elif champion_version == challenger_version:
        raise LabError(f"Version {challenger_version} is already the champion; register a new model to challenge it.")
    else:
        champion_scores = predict_scores(load(champion_version, name), holdout)
        champion_pr_auc = float(average_precision_score(y, champion_scores))
        mean, interval = paired_bootstrap(y, challenger_scores, champion_scores)
        promoted = should_promote(interval[0], mean, margin)
        if promoted:
            reason = "better beyond noise and by more than the margin"
        elif interval[0] <= 0 <= interval[1]:
            reason = "the difference is within noise"
        elif interval[1] < 0:
            reason = "the challenger is worse"
        else:
            reason = f"better, but by less than the margin of {margin}"
        decision = Decision("promoted" if promoted else "kept champion", promoted, challenger_version,
                            champion_version, challenger_pr_auc, champion_pr_auc, challenger_pr_auc - champion_pr_auc,
                            interval, margin, fingerprint, reason)
    _record(client, name, decision)
    if decision.promoted:
        if champion_version is not None:
            client.set_model_version_tag(name, challenger_version, "previous_champion", champion_version)
        set_alias(CHAMPION, challenger_version, name)
        client.delete_registered_model_alias(name, CHALLENGER)
    return decision


def _record(client, name: str, decision: Decision) -> None:
    tags = {"gate.verdict": decision.verdict, "gate.reason": decision.reason,
            "gate.decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "gate.decision": json.dumps(asdict(decision))}
    for key, value in tags.items():
        client.set_model_version_tag(name, decision.challenger_version, key, value)


def decision_record(version: str, name: str | None = None) -> dict:
    """The gate's decision stored on a model version."""
    _, client = _client()
    tags = client.get_model_version(name or config.model_name(), str(version)).tags
    if "gate.decision" not in tags:
        raise LabError(f"Version {version} has not been through the promotion gate.")
    return json.loads(tags["gate.decision"])


def rollback(name: str | None = None) -> str:
    """Point ``champion`` back at the version it replaced; return that version."""
    _, client = _client()
    name = name or config.model_name()
    current = alias_version(CHAMPION, name)
    if current is None:
        raise LabError(f"No champion yet for model {name!r}: run lab 03 or `lab.setup(4)`; there is nothing to roll back.")
    previous = client.get_model_version(name, current).tags.get("previous_champion")
    if not previous:
        raise LabError(f"Version {current} was the first champion: there is no earlier champion to roll back to.")
    set_alias(CHAMPION, previous, name)
    client.set_model_version_tag(name, current, "rolled_back_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    return previous
