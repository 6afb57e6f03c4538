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
    from .tracking import server_errors

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
    columns = ["version", "aliases", "model_kind", "run_id", "gate.verdict", "created"]
    try:
        model = client.get_registered_model(name)
    except Exception:
        return pd.DataFrame(columns=columns).set_index("version")
    aliases: dict[str, list[str]] = {}
    for alias, version in (model.aliases or {}).items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for v in client.search_model_versions(f"name = '{name}'"):
        rows.append({"version": str(v.version), "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
                     "model_kind": v.tags.get("model_kind", ""), "run_id": v.run_id,
                     "gate.verdict": v.tags.get("gate.verdict", ""), "created": pd.Timestamp(v.creation_timestamp, unit="ms")})
    if not rows:  # registered, but nothing in it yet (a workshop creates learners' models up front)
        return pd.DataFrame(columns=columns).set_index("version")
    return pd.DataFrame(rows).sort_values("version", key=lambda s: s.astype(int)).set_index("version")


# --------------------------------------------------------------------------- the gate

LABEL_WAIT_DAYS = 30  # a payment with no chargeback 30 days on counts as genuine: its label is final
GATE_DAYS = 7


def decision_time(frame: pd.DataFrame) -> pd.Timestamp:
    """The first moment the labels of ``frame``'s last day are final: the day after its last
    payment plus the label wait. The gate can judge a week only once its labels are in."""
    return frame["timestamp"].max().normalize() + pd.Timedelta(days=1 + LABEL_WAIT_DAYS)


def gate_holdout(frame: pd.DataFrame, as_of, days: int = GATE_DAYS) -> pd.DataFrame:
    """The payments the gate judges on at decision time ``as_of``: the latest ``days`` days whose
    labels are final (they end ``LABEL_WAIT_DAYS`` before ``as_of``), keeping only rows whose label
    had arrived by ``as_of``. As ``as_of`` moves on, the holdout rolls forward with it."""
    as_of = pd.Timestamp(as_of)
    end = as_of - pd.Timedelta(days=LABEL_WAIT_DAYS)
    start = end - pd.Timedelta(days=days)
    window = frame[(frame["timestamp"] >= start) & (frame["timestamp"] < end)]
    return data.labels_known_at(window, as_of)


def dataset_digests(frame: pd.DataFrame) -> set[str]:
    """The digests a logged dataset of ``frame`` may carry: MLflow's own and the course fingerprint."""
    import mlflow.data

    with _quiet_mlflow():
        digest = mlflow.data.from_pandas(frame, targets="is_fraud" if "is_fraud" in frame else None).digest
    return {digest, data.fingerprint(frame)}


def run_datasets(version: str, name: str | None = None) -> dict[str, dict]:
    """The datasets the run behind a model version logged as inputs, by context ('training',
    'validation', 'holdout'): {context: {'name', 'digest'}}. Empty for runs that logged none."""
    _, client = _client()
    run_id = client.get_model_version(name or config.model_name(), str(version)).run_id
    found = {}
    for item in client.get_run(run_id).inputs.dataset_inputs or []:
        context = next((t.value for t in item.tags or [] if t.key == "mlflow.data.context"), "")
        found[context or item.dataset.name] = {"name": item.dataset.name, "digest": item.dataset.digest}
    return found


@dataclass
class HoldoutEvaluation:
    """One model version scored on one holdout: what the gate compares, pair by pair."""

    version: str
    digest: str
    y: np.ndarray
    scores: np.ndarray
    amounts: np.ndarray
    threshold: float
    pipeline: object = None

    @property
    def pr_auc(self) -> float:
        from sklearn.metrics import average_precision_score

        return float(average_precision_score(self.y, self.scores))

    @property
    def cost(self) -> float:
        """Expected cost (EUR) on the holdout at the version's own threshold."""
        from .training import metrics

        return metrics(self.y, self.scores, self.amounts, self.threshold)["cost"]


def evaluate_on_holdout(version: str, holdout: pd.DataFrame, name: str | None = None) -> HoldoutEvaluation:
    """Score model ``version`` on ``holdout``, refusing a holdout the model was trained or tuned on
    (read from its run's dataset inputs)."""
    _, client = _client()
    name = name or config.model_name()
    digests = dataset_digests(holdout)
    for context, logged in run_datasets(version, name).items():
        if context in ("training", "validation", "train", "valid") and logged["digest"] in digests:
            raise LabError(
                f"Version {version} was {'trained' if context.startswith('train') else 'tuned'} on this very data "
                f"(its run logged dataset {logged['name']!r}, digest {logged['digest']}, as {context}). A gate "
                "on data a model has seen flatters it: judge on later payments (lab.registry.gate_holdout)."
            )
    tags = client.get_model_version(name, str(version)).tags
    threshold = float(tags.get("threshold") or 0.5)
    pipeline = load(version, name)
    return HoldoutEvaluation(str(version), sorted(digests)[0], holdout["is_fraud"].to_numpy(dtype=int),
                             predict_scores(pipeline, holdout), holdout["amount"].to_numpy(dtype=float), threshold,
                             pipeline)


def scoring_p99_ms(version: str, holdout: pd.DataFrame, name: str | None = None, n: int = 200,
                   pipeline=None) -> float:
    """p99 latency (ms) of scoring one payment at a time on the serving fast path, in this process,
    with one thread as the server scores (see serving.app.single_threaded)."""
    from threadpoolctl import threadpool_limits

    from .scoring import FastScorer, to_payload

    scorer = FastScorer(pipeline if pipeline is not None else load(version, name))
    records = to_payload(holdout.head(n))
    times = []
    with threadpool_limits(limits=1):
        for record in records:
            start = time.perf_counter()
            scorer.scores([record])
            times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 99))


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
    holdout_digest: str = ""
    holdout_rows: int = 0
    as_of: str | None = None
    challenger_cost: float | None = None
    champion_cost: float | None = None
    challenger_p99_ms: float | None = None
    trained_on: dict | None = None  # version -> digest of its training data, read from the run inputs
    bootstrap: list[float] | None = None  # the bootstrap differences (not stored in the tags)

    def __str__(self) -> str:
        if self.champion_version is None:
            return f"v{self.challenger_version}: {self.verdict} ({self.reason})"
        low, high = self.interval
        return (f"challenger v{self.challenger_version} PR-AUC {self.challenger_pr_auc:.4f} vs champion "
                f"v{self.champion_version} {self.champion_pr_auc:.4f}: difference {self.difference:+.4f}, "
                f"{CONFIDENCE:.0%} interval [{low:+.4f}, {high:+.4f}], margin {self.margin}. "
                f"Verdict: {self.verdict} ({self.reason}).")

    def report(self) -> pd.DataFrame:
        """The gate report: both models side by side on the same holdout."""
        versions = [self.challenger_version] + ([self.champion_version] if self.champion_version else [])
        trained_on = self.trained_on or {}
        table = pd.DataFrame({
            "PR-AUC": [self.challenger_pr_auc, self.champion_pr_auc],
            "expected cost at threshold (EUR)": [self.challenger_cost, self.champion_cost],
            "p99 scoring latency (ms)": [self.challenger_p99_ms, None],
            "trained on (digest)": [trained_on.get(v, "not logged") for v in versions] + [None] * (2 - len(versions)),
        }, index=[f"challenger v{self.challenger_version}", f"champion v{self.champion_version}"])
        return table.iloc[:len(versions)]


def should_promote(interval_low: float, mean_difference: float, margin: float = MARGIN) -> bool:
    """The promotion rule: better beyond noise (interval above zero) and by enough to matter."""
    return interval_low > 0 and mean_difference >= margin


def _weighted_pr_auc(y, scores, weights) -> np.ndarray:
    """Average precision (sklearn's definition) of one set of scores under many row weightings at
    once: ``weights`` is (resamples, rows) of bootstrap counts. Sorting once and summing counts
    gives the same value as scoring each resample, without re-sorting it."""
    order = np.argsort(-scores, kind="stable")
    s, yy, w = scores[order], y[order], weights[:, order]
    ends = np.r_[s[1:] != s[:-1], True]  # the last row of each group of tied scores
    tps = np.cumsum(w * yy, axis=1)[:, ends]
    fps = np.cumsum(w * (1 - yy), axis=1)[:, ends]
    flagged = tps + fps
    precision = np.divide(tps, flagged, out=np.zeros_like(tps), where=flagged > 0)
    recall = tps / tps[:, -1:]
    return np.sum(np.diff(recall, axis=1, prepend=0.0) * precision, axis=1)


def bootstrap_differences(y, challenger_scores, champion_scores, n: int = N_BOOTSTRAP,
                          seed: int = config.SEED) -> np.ndarray:
    """PR-AUC differences (challenger - champion) on ``n`` resamples of the same payments."""
    y = np.asarray(y, dtype=float)
    a, b = np.asarray(challenger_scores, dtype=float), np.asarray(champion_scores, dtype=float)
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n, 50):  # in chunks: 50 resamples of the rows at a time
        counts = np.stack([np.bincount(rng.integers(0, len(y), len(y)), minlength=len(y))
                           for _ in range(min(50, n - start))]).astype(float)
        positives = counts @ y
        keep = (positives > 0) & (positives < counts.sum(axis=1))  # both classes in the resample
        counts = counts[keep]
        diffs.append(_weighted_pr_auc(y, a, counts) - _weighted_pr_auc(y, b, counts))
    return np.concatenate(diffs)


def _summary(diffs: np.ndarray) -> tuple[float, tuple[float, float]]:
    """Mean and ``CONFIDENCE`` interval of bootstrapped differences."""
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


def _check_same_holdout(challenger: HoldoutEvaluation, champion: HoldoutEvaluation) -> None:
    if challenger.digest != champion.digest:
        raise LabError(
            f"Challenger v{challenger.version} was scored on holdout {challenger.digest} but champion "
            f"v{champion.version} on holdout {champion.digest}: different payments, so their PR-AUCs are not "
            "comparable (one week may simply be easier). Score both on the same holdout: "
            "promote_if_better(version, holdout) does."
        )


def compare(challenger: HoldoutEvaluation, champion: HoldoutEvaluation, margin: float = MARGIN,
            rule=should_promote) -> tuple[bool, float, tuple[float, float], np.ndarray, str]:
    """Apply ``rule`` to two evaluations on the same holdout: (promote?, mean difference, interval,
    bootstrap differences, reason). Refuses evaluations on holdouts with different digests."""
    _check_same_holdout(challenger, champion)
    diffs = bootstrap_differences(challenger.y, challenger.scores, champion.scores)
    mean, interval = _summary(diffs)
    promoted = rule(interval[0], mean, margin)
    if promoted not in (True, False) and not isinstance(promoted, np.bool_):
        raise LabError(f"The promotion rule returned {promoted!r}; it must return True or False.")
    promoted = bool(promoted)
    if promoted:
        reason = "better beyond noise and by more than the margin"
    elif interval[0] <= 0 <= interval[1]:
        reason = "the difference is within noise"
    elif interval[1] < 0:
        reason = "the challenger is worse"
    elif mean < margin:
        reason = f"better, but by less than the margin of {margin}"
    else:
        reason = "the promotion rule said no"
    return promoted, mean, interval, diffs, reason


def _judge(challenger_version: str, holdout: pd.DataFrame, margin: float, name: str, rule, as_of) -> Decision:
    """The gate's judgement, changing nothing: verdict "passed", "kept champion" or "first model"."""
    _, client = _client()
    try:
        challenger_tags = client.get_model_version(name, challenger_version).tags
    except Exception:
        raise LabError(f"Model {name!r} has no version {challenger_version}: see lab.registry.versions().") from None
    _check_contract(challenger_tags, challenger_version)
    if as_of is not None:
        holdout = data.labels_known_at(holdout, as_of)
    report = data.validate_batch(holdout)
    if not report.ok:
        raise LabError(f"The holdout fails the data contract, so the gate cannot judge on it.\n{report}")
    if len(holdout) == 0 or holdout["is_fraud"].nunique() < 2:
        raise LabError(f"The holdout has {len(holdout)} payments with known labels and not both classes: the gate "
                       "cannot judge on it. Take an older window whose labels are in (lab.registry.gate_holdout).")
    champion_version = alias_version(CHAMPION, name)
    if champion_version == challenger_version:
        raise LabError(f"Version {challenger_version} is already the champion; register a new model to challenge it.")
    challenger = evaluate_on_holdout(challenger_version, holdout, name)
    versions_seen = [challenger_version] + ([champion_version] if champion_version else [])
    trained_on = {v: run_datasets(v, name).get("training", {}).get("digest", "not logged") for v in versions_seen}
    p99 = scoring_p99_ms(challenger_version, holdout, name, pipeline=challenger.pipeline)
    common = dict(margin=margin, data_fingerprint=data.fingerprint(holdout), holdout_digest=challenger.digest,
                  holdout_rows=len(holdout), as_of=None if as_of is None else str(pd.Timestamp(as_of)),
                  challenger_cost=challenger.cost, challenger_p99_ms=p99, trained_on=trained_on)
    if champion_version is None:
        return Decision("first model", True, challenger_version, None, challenger.pr_auc, None, None, None,
                        reason="no champion yet, so the first model becomes champion", **common)
    champion = evaluate_on_holdout(champion_version, holdout, name)
    passed, mean, interval, diffs, reason = compare(challenger, champion, margin, rule)
    return Decision("passed" if passed else "kept champion", passed, challenger_version,
                    champion_version, challenger.pr_auc, champion.pr_auc, challenger.pr_auc - champion.pr_auc,
                    interval, reason=reason, champion_cost=champion.cost, bootstrap=diffs.tolist(), **common)


def gate(challenger_version: str, holdout: pd.DataFrame, margin: float = MARGIN, name: str | None = None,
         rule=should_promote, as_of=None) -> Decision:
    """The promotion gate without promoting: judge the challenger against the champion as
    :func:`promote_if_better` does, record the decision on the challenger's version, and change no
    alias. Verdict "passed" (``promoted`` is True: it may go on to shadow and canary,
    :func:`start_shadow`), "kept champion", or "first model" (no champion yet)."""
    _, client = _client()
    name = name or config.model_name()
    decision = _judge(str(challenger_version), holdout, margin, name, rule, as_of)
    _record(client, name, decision)
    return decision


def promote_if_better(challenger_version: str, holdout: pd.DataFrame, margin: float = MARGIN,
                      name: str | None = None, rule=should_promote, as_of=None) -> Decision:
    """Score challenger and champion on the same held-out payments; promote the challenger to
    ``champion`` only if ``rule(interval_low, mean_difference, margin)`` says so. The first model becomes champion. With ``as_of`` (the decision
    time), only payments whose label had arrived by then count. The decision is recorded on the
    challenger's model version. (The gate alone, without promoting: :func:`gate`.)"""
    _, client = _client()
    name = name or config.model_name()
    challenger_version = str(challenger_version)
    _refuse_during_rollout(name, "promote_if_better")
    decision = _judge(challenger_version, holdout, margin, name, rule, as_of)
    if decision.verdict == "passed":
        decision.verdict = "promoted"
    set_alias(CHALLENGER, challenger_version, name)
    _record(client, name, decision)
    if decision.promoted:
        _promote(client, name, challenger_version, decision.champion_version)
    return decision


def _promote(client, name: str, version: str, champion_version: str | None) -> None:
    """``version`` becomes champion; the one it replaces is remembered, so rollback() can return to it."""
    if champion_version is not None:
        client.set_model_version_tag(name, version, "previous_champion", champion_version)
    set_alias(CHAMPION, version, name)
    client.delete_registered_model_alias(name, CHALLENGER)


def _record(client, name: str, decision: Decision) -> None:
    tags = {"gate.verdict": decision.verdict, "gate.reason": decision.reason,
            "gate.decided_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "gate.decision": json.dumps({k: v for k, v in asdict(decision).items() if k != "bootstrap"})}
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


def start_over(name: str | None = None) -> int:
    """Delete the registered model (its versions and aliases; the runs stay) so a lab can rebuild
    its registry story from the start. Returns how many versions were removed."""
    _, client = _client()
    name = name or config.model_name()
    try:
        count = len(client.search_model_versions(f"name = '{name}'"))
        client.delete_registered_model(name)
    except Exception:
        return 0
    return count


# --------------------------------------------------------------------------- safe rollout (lab 08)
# A challenger that passed the gate runs in shadow (scored on every request, never answering), then
# answers a canary share of traffic, then is promoted or aborted. The state lives in the registry,
# so a server picks every change up without a restart: the aliases `champion` and `challenger`,
# and tags on the registered model: rollout.mode, rollout.share, and rollout.candidate (the version
# that started; if anything else moves the challenger alias, e.g. lab 06's CI registering a model,
# the rollout reads as off and the champion answers everything, rather than an ungated model).

MODE_TAG, SHARE_TAG, CANDIDATE_TAG = "rollout.mode", "rollout.share", "rollout.candidate"


@dataclass(frozen=True)
class Rollout:
    """What the server must be doing now."""

    champion: str | None  # version behind alias "champion"
    candidate: str | None  # version behind alias "challenger" while it is in shadow or canary
    mode: str  # "off" | "shadow" | "canary"
    share: float  # share of traffic the candidate answers in canary mode (0 otherwise)

    def __str__(self) -> str:
        if self.mode == "off":
            return f"champion v{self.champion}, no rollout" if self.champion else "no champion yet"
        share = f", answering {self.share:.0%} of traffic" if self.mode == "canary" else ", answering nothing"
        return f"champion v{self.champion}; candidate v{self.candidate} in {self.mode}{share}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def rollout(name: str | None = None) -> Rollout:
    """The rollout the registry holds now, read in one registry call. A mode without a candidate
    (or a candidate that is the champion) reads as "off"."""
    _, client = _client()
    try:
        model = client.get_registered_model(name or config.model_name())
    except Exception:  # not registered yet
        return Rollout(None, None, "off", 0.0)
    aliases, tags = model.aliases or {}, model.tags or {}
    champion = str(aliases[CHAMPION]) if CHAMPION in aliases else None
    challenger = str(aliases[CHALLENGER]) if CHALLENGER in aliases else None
    mode = tags.get(MODE_TAG, "off")
    started = tags.get(CANDIDATE_TAG)
    if mode not in ("shadow", "canary") or challenger in (None, champion) or challenger != started or champion is None:
        return Rollout(champion, None, "off", 0.0)
    try:
        share = float(tags.get(SHARE_TAG, 0))
    except ValueError:
        share = 0.0
    if mode == "canary" and 0 < share < 1:
        return Rollout(champion, challenger, mode, share)
    return Rollout(champion, challenger, "shadow", 0.0)  # a canary answering nothing is a shadow


def _active(name: str, doing: str) -> Rollout:
    current = rollout(name)
    if current.candidate is None:
        raise LabError(f"No rollout in progress for model {name!r} ({current}), so there is nothing to {doing}: "
                       "start one with lab.registry.start_shadow(version) for a version that passed "
                       "lab.registry.gate(...).")
    return current


def _refuse_during_rollout(name: str, doing: str) -> None:
    current = rollout(name)
    if current.candidate is not None:
        raise LabError(f"A rollout is in progress for model {name!r} ({current}): {doing} would move the "
                       "challenger alias under it. Finish it first: lab.registry.promote_candidate() or "
                       "lab.registry.abort_rollout(reason).")


def start_shadow(version: str, name: str | None = None) -> Rollout:
    """Put ``version`` in shadow behind the champion: the server scores every request with both
    models, logs both scores, and answers with the champion's."""
    _, client = _client()
    name, version = name or config.model_name(), str(version)
    try:
        tags = client.get_model_version(name, version).tags
    except Exception:
        raise LabError(f"Model {name!r} has no version {version}: see lab.registry.versions().") from None
    current = rollout(name)
    if current.champion is None:
        raise LabError(f"Model {name!r} has no champion yet, so there is nothing to shadow: the first model becomes "
                       f"champion through the gate, lab.registry.promote_if_better({version!r}, holdout).")
    if version == current.champion:
        raise LabError(f"Version {version} is already the champion: shadow a newer version (lab.registry.versions()).")
    if current.candidate not in (None, version):
        raise LabError(f"Version {current.candidate} is already in {current.mode}: promote it "
                       "(lab.registry.promote_candidate()) or abort it (lab.registry.abort_rollout(reason)) "
                       f"before version {version} can start.")
    _check_contract(tags, version)
    client.set_model_version_tag(name, version, "rollout.shadow_started_at", _now())
    client.set_registered_model_tag(name, SHARE_TAG, "0")  # in this order, no reader sees a canary
    client.set_registered_model_tag(name, CANDIDATE_TAG, version)
    set_alias(CHALLENGER, version, name)
    client.set_registered_model_tag(name, MODE_TAG, "shadow")
    return Rollout(current.champion, version, "shadow", 0.0)


def start_canary(share: float, name: str | None = None) -> Rollout:
    """Let the candidate (in shadow or already in canary) answer ``share`` of traffic, 0 < share < 1.
    Which payments it answers is fixed by a hash of their transaction_id, so a raised share keeps
    the payments it had and adds more."""
    _, client = _client()
    name = name or config.model_name()
    try:
        share = float(share)
    except (TypeError, ValueError):
        raise LabError(f"The canary share must be a number between 0 and 1 (e.g. 0.1 for 10%); got {share!r}.") from None
    if not 0 < share < 1:
        what = ("promote the candidate instead: lab.registry.promote_candidate()" if share >= 1 else
                "go back to shadow with lab.registry.start_shadow(version), or abort: lab.registry.abort_rollout(reason)")
        raise LabError(f"The canary share must be strictly between 0 and 1 (e.g. 0.1 for 10%); got {share}. "
                       f"For all traffic or none, {what}.")
    current = _active(name, "send canary traffic to")
    client.set_registered_model_tag(name, SHARE_TAG, repr(share))  # the share first: shadow ignores it
    client.set_registered_model_tag(name, MODE_TAG, "canary")
    client.set_model_version_tag(name, current.candidate, "rollout.canary_share", repr(share))
    return Rollout(current.champion, current.candidate, "canary", share)


def promote_candidate(name: str | None = None) -> Rollout:
    """The candidate becomes champion (the one it replaces is remembered: lab.registry.rollback()
    returns to it); the rollout ends."""
    _, client = _client()
    name = name or config.model_name()
    current = _active(name, "promote")
    client.set_model_version_tag(name, current.candidate, "rollout.promoted_at", _now())
    _promote(client, name, current.candidate, current.champion)
    client.set_registered_model_tag(name, MODE_TAG, "off")
    client.set_registered_model_tag(name, SHARE_TAG, "0")
    return Rollout(current.candidate, None, "off", 0.0)


def abort_rollout(reason: str, name: str | None = None) -> Rollout:
    """Take the candidate out of service (the champion answers everything again); ``reason`` is
    recorded on the candidate's version."""
    _, client = _client()
    name = name or config.model_name()
    if not isinstance(reason, str) or not reason.strip():
        raise LabError("Say why the rollout is aborted, e.g. abort_rollout('canary p99 latency 180 ms > 100 ms'): "
                       "the reason is recorded on the version for the postmortem.")
    current = _active(name, "abort")
    client.set_registered_model_tag(name, MODE_TAG, "off")  # first: the server drops the candidate at once
    client.set_registered_model_tag(name, SHARE_TAG, "0")
    client.set_model_version_tag(name, current.candidate, "rollout.aborted_at", _now())
    client.set_model_version_tag(name, current.candidate, "rollout.aborted_reason", reason.strip()[:5000])
    client.delete_registered_model_alias(name, CHALLENGER)
    return Rollout(current.champion, None, "off", 0.0)
