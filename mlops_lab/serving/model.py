"""The model as the server holds it: one immutable object with the pipeline, its threshold,
where it came from, and a fast scorer for the hot path.

Loaded from the registry (needs MLflow, for local serving) or from an exported bundle
(model.pkl + model.json: what the container ships, no MLflow needed)."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import data
from ..errors import LabError
from ..scoring import FastScorer

BUNDLE_MODEL, BUNDLE_META = "model.pkl", "model.json"


@dataclass(frozen=True)
class LoadedModel:
    pipeline: object
    name: str
    version: str
    alias: str | None
    source: str  # "registry" or "bundle:<path>"
    threshold: float
    contract_hash: str
    data_fingerprint: str | None = None
    scorer: FastScorer | None = field(default=None, compare=False, repr=False)

    def scores(self, records: list[dict]) -> np.ndarray:
        if self.scorer is not None:
            return self.scorer.scores(records)
        frame = pd.DataFrame.from_records(records, columns=data.feature_columns())
        return self.pipeline.predict_proba(frame)[:, 1]

    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "alias": self.alias, "source": self.source,
                "threshold": self.threshold, "contract_version": data.CONTRACT_VERSION,
                "contract_hash": self.contract_hash, "data_fingerprint": self.data_fingerprint}


def serving_examples(n: int = 32) -> list[dict]:
    """Payments the model must answer (the same way as its pipeline) before it may serve."""
    from .client import to_payload

    return to_payload(data.simulate_transactions(n, seed=20260105))


def prepare(pipeline, **meta) -> LoadedModel:
    """Wrap a pipeline; check its contract; build and prove the fast scorer on serving examples."""
    if meta["contract_hash"] != data.contract_hash():
        raise LabError(
            f"Model {meta['name']} v{meta['version']} was trained on data contract hash {meta['contract_hash']}, "
            f"but this server speaks contract {data.CONTRACT_VERSION} (hash {data.contract_hash()}). Retrain it "
            "on current data, or serve a model trained on this contract."
        )
    examples = serving_examples()
    frame = pd.DataFrame.from_records(examples, columns=data.feature_columns())
    try:
        expected = pipeline.predict_proba(frame)[:, 1]
    except Exception as exc:
        raise LabError(f"The model cannot score the serving examples: {type(exc).__name__}: {exc}") from None
    try:
        scorer = FastScorer(pipeline)
        fast_ok = np.allclose(scorer.scores(examples), expected, rtol=0, atol=1e-9)
    except (KeyError, AttributeError, IndexError, ValueError):
        scorer, fast_ok = None, False
    return LoadedModel(pipeline, **meta, scorer=scorer if fast_ok else None)


def require_registered(alias: str = "champion", name: str | None = None, setup: str = "`lab.setup(4)`") -> str:
    """The model version at ``alias``, or a LabError that says how to get one (``setup``: the command
    that fits where the user is, `lab.setup(4)` in a notebook, `mlops-lab setup 4` in a shell)."""
    from .. import config, registry

    name = name or config.model_name()
    version = registry.alias_version(alias, name)
    if version is None:
        raise LabError(f"No {alias} for model {name!r} in {config.tracking_uri()}: run lab 03, or {setup} to "
                       "build what the labs before serving leave behind.")
    return version


def load_from_registry(alias: str = "champion", name: str | None = None) -> LoadedModel:
    """The registered model at ``alias`` (needs MLflow and the tracking store)."""
    from .. import config

    name = name or config.model_name()
    return load_version(require_registered(alias, name), name, alias)


def load_version(version: str, name: str | None = None, alias: str | None = None) -> LoadedModel:
    """Registered model ``version`` (served under ``alias``, which only labels it)."""
    from .. import config, registry
    from ..training import _quiet_mlflow

    name = name or config.model_name()
    _, client = registry._client()
    tags = client.get_model_version(name, version).tags
    with _quiet_mlflow():
        pipeline = registry.load(version, name)
    return prepare(pipeline, name=name, version=version, alias=alias, source="registry",
                   threshold=float(tags.get("threshold") or 0.5),
                   contract_hash=tags.get("data.contract_hash", data.contract_hash()),
                   data_fingerprint=tags.get("data.fingerprint"))


REEXPORT = ("re-export it: `mlops-lab container` (or `lab.setup(5)` in a notebook) writes a fresh bundle, "
            "or lab.serving.export_bundle(path)")


def file_digest(path: Path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


def load_from_bundle(path: str | Path) -> LoadedModel:
    """A model exported by :func:`export_bundle` (no MLflow needed).

    model.pkl is a pickle, and unpickling runs code: load only bundles you exported yourself. The
    SHA-256 digest that export_bundle records in model.json is checked before unpickling, so a
    corrupted or swapped model.pkl is refused (a digest guards against accidents, not against
    someone who can rewrite both files)."""
    path = Path(path)
    try:
        meta = json.loads((path / BUNDLE_META).read_text())
        expected = meta.get("model_sha256")
        if not expected:
            raise LabError(f"The bundle at {path} records no digest of {BUNDLE_MODEL} (made by an older version): "
                           f"{REEXPORT}.")
        if file_digest(path / BUNDLE_MODEL) != expected:
            raise LabError(f"{path / BUNDLE_MODEL} does not match the digest recorded at export: the file was "
                           f"changed or damaged, and it is not unpickled; {REEXPORT}.")
        with open(path / BUNDLE_MODEL, "rb") as f:
            pipeline = pickle.load(f)  # our own bundle, its digest checked above
    except FileNotFoundError as exc:
        raise LabError(f"No model bundle at {path} ({exc.filename} is missing): {REEXPORT}.") from None
    except (ValueError, KeyError, TypeError) as exc:  # model.json unreadable
        raise LabError(f"The bundle's {BUNDLE_META} in {path} is damaged ({type(exc).__name__}: {exc}); "
                       f"{REEXPORT}.") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError) as exc:
        raise LabError(f"{path / BUNDLE_MODEL} cannot be unpickled ({type(exc).__name__}: {exc}); it was made "
                       f"with other library versions, or damaged; {REEXPORT}.") from None
    try:
        return prepare(pipeline, name=meta["name"], version=str(meta["version"]), alias=meta.get("alias"),
                       source=f"bundle:{path}", threshold=float(meta["threshold"]),
                       contract_hash=meta["contract_hash"], data_fingerprint=meta.get("data_fingerprint"))
    except (KeyError, TypeError, ValueError) as exc:
        raise LabError(f"The bundle's {BUNDLE_META} in {path} lacks {exc} or holds a wrong value; {REEXPORT}.") from None


def write_bundle(model: LoadedModel, dest: str | Path) -> Path:
    """Write ``model`` as a serving bundle: model.pkl, and model.json with its SHA-256 digest."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / BUNDLE_MODEL, "wb") as f:
        pickle.dump(model.pipeline, f, protocol=5)
    meta = {k: v for k, v in model.info().items() if k != "source"}
    meta["model_sha256"] = file_digest(dest / BUNDLE_MODEL)
    (dest / BUNDLE_META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return dest


def export_bundle(dest: str | Path, alias: str = "champion", name: str | None = None) -> Path:
    """Write the registered model at ``alias`` as a serving bundle: model.pkl and model.json."""
    return write_bundle(load_from_registry(alias, name), dest)
