"""Data and output drift: fit a reference profile once, compare windows against it.

``ReferenceProfile.fit(reference).compare(current)`` gives one row per column:

* numeric columns: two-sample Kolmogorov-Smirnov (the p-value) plus the Wasserstein distance
  divided by the reference's standard deviation (how far the values moved, in spreads);
* categorical columns: chi-squared on the 2 x K table of counts (reference row, current row),
  plus the Jensen-Shannon distance (base 2), with bins for unseen categories and for missing values;
* every column: PSI on reference quantile bins (smoothed), beside the PSI that noise alone gives at
  these sample sizes, and the missing-value rate compared separately (2 x 2 chi-squared).

p-values are corrected across all tests with Benjamini-Hochberg. A column drifts only when a
corrected p-value is below ``alpha`` *and* its effect passes a practical threshold: a huge window
makes every p-value tiny, and the effect threshold keeps negligible shifts from being flagged; a
tiny window makes effects noisy, and the p-value keeps noise from being flagged.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from ..errors import LabError
from .columns import MISSING, UNSEEN, _infer_kind, _label_counts, _numeric  # noqa: F401 - MISSING, UNSEEN: public here

PROFILE_FORMAT = 1
OUTPUT_COLUMNS = {"score": "numeric", "decision": "categorical"}  # the model's outputs, profiled when present
REPORT_COLUMNS = ["column", "kind", "test", "statistic", "p_value", "p_value_corrected", "effect_size",
                  "n_reference", "n_current", "drifted", "reason"]
PSI_BINS = 10
TAIL_P = 1e-10  # KS p-values below this are asymptotic (see ks_wasserstein)


@dataclass(frozen=True)
class Thresholds:
    """When a difference matters. ``alpha``: false discovery rate across the columns' tests.
    Numeric: at least ``min_ks`` of the probability mass moved (the KS statistic) or the values
    moved by ``min_wasserstein`` reference standard deviations. Categorical: a Jensen-Shannon
    distance of at least ``min_js``. Missing values: a change of at least ``min_missing`` in the rate.
    ``min_rows``: windows with fewer rows are not tested (too few to tell drift from noise)."""

    alpha: float = 0.01
    min_ks: float = 0.015
    min_wasserstein: float = 0.1
    min_js: float = 0.01
    min_missing: float = 0.01
    min_rows: int = 30


def _b64(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f8").tobytes()).decode()


def _unb64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f8")


@dataclass
class ColumnProfile:
    name: str
    kind: str  # "numeric" or "categorical"
    rows: int
    missing: int  # missing (and, for numeric, non-finite) values
    values: np.ndarray | None = None  # numeric: sorted finite values
    std: float | None = None
    psi_edges: list[float] | None = None  # numeric: inner edges of the reference quantile bins
    counts: dict[str, int] | None = None  # categorical: count per category (missing bin included)

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "rows": self.rows, "missing": self.missing}
        if self.kind == "numeric":
            out.update(values=_b64(self.values), std=self.std, psi_edges=self.psi_edges)
        else:
            out["counts"] = self.counts
        return out

    @classmethod
    def from_json(cls, d: dict) -> ColumnProfile:
        values = _unb64(d["values"]) if d["kind"] == "numeric" else None
        return cls(d["name"], d["kind"], d["rows"], d["missing"], values, d.get("std"), d.get("psi_edges"),
                   d.get("counts"))


@dataclass
class DriftReport:
    """What ``ReferenceProfile.compare`` returns. ``table``: one row per column (the public
    columns in ``REPORT_COLUMNS``); ``details``: every statistic behind it (KS, Wasserstein, JS,
    PSI and its noise level, missing rates); ``drifted``: the dataset-level verdict."""

    table: pd.DataFrame
    details: pd.DataFrame
    extra_columns: list[str] = field(default_factory=list)

    @property
    def drifted_columns(self) -> list[str]:
        return list(self.table.loc[self.table["drifted"], "column"])

    @property
    def drifted(self) -> bool:
        return bool(self.table["drifted"].any())

    @property
    def output_drift(self) -> pd.DataFrame:
        """The rows about the model's outputs (score distribution, flag rate): no labels needed."""
        return self.table[self.table["column"].isin(list(OUTPUT_COLUMNS))]

    @property
    def verdict(self) -> str:
        n = len(self.table)
        cols = self.drifted_columns
        if not cols:
            return f"No drift: 0 of {n} columns drifted."
        return f"Drift in {len(cols)} of {n} columns: {', '.join(cols)}."

    def __repr__(self) -> str:
        shown = self.table[["column", "test", "p_value_corrected", "effect_size", "drifted", "reason"]]
        return f"{self.verdict}\n{shown.to_string(index=False)}"

    def _repr_html_(self) -> str:
        from .report import report_html

        return report_html(self)


class ReferenceProfile:
    """Everything about the reference data that drift tests need, computed once.

    ``fit(reference, contract=None)``: with the data contract (``mlops_lab.contract.CONTRACT``, or
    ``True`` for it) the feature columns and their kinds come from it; without, every column's
    kind is inferred from its dtype (datetimes are skipped), so any DataFrame works. The model's
    outputs (``score``, ``decision``) are profiled too when the reference has them."""

    def __init__(self, thresholds: Thresholds | None = None, max_values: int = 200_000, seed: int = 0):
        self.thresholds = thresholds or Thresholds()
        self.max_values = max_values
        self.seed = seed
        self.meta: dict = {}  # free-form facts saved with the profile (e.g. the model version it was fitted for)

    # ----------------------------------------------------------------- fit
    @classmethod
    def fit(cls, reference: pd.DataFrame, contract=None, thresholds: Thresholds | None = None,
            max_values: int = 200_000) -> ReferenceProfile:
        if not isinstance(reference, pd.DataFrame):
            raise LabError(f"ReferenceProfile.fit expects a pandas DataFrame, got {type(reference).__name__}.")
        self = cls(thresholds, max_values)
        kinds = self._kinds(reference, contract)
        if len(reference) == 0:
            raise LabError("The reference window is empty: fit the profile on the data the model was trained on "
                           "(for example the training split), not on an empty frame.")
        self.columns_ = {name: self._fit_column(reference[name], name, kind) for name, kind in kinds.items()}
        self.rows_ = len(reference)
        return self

    def _kinds(self, reference: pd.DataFrame, contract) -> dict[str, str]:
        from .. import contract as contract_module

        if contract is True:
            contract = contract_module.CONTRACT
        if contract is not None:
            self.contract_version_ = contract_module.CONTRACT_VERSION
            self.contract_hash_ = contract_module.contract_hash()
            features = [c for c in contract if c.role == "feature"]
            missing = [c.name for c in features if c.name not in reference]
            if missing:
                raise LabError(f"The reference lacks contract feature column(s) {', '.join(missing)}; "
                               "fit the profile on data that follows the contract.")
            kinds = {c.name: "numeric" if c.kind == "numeric" else "categorical" for c in features}
        else:
            self.contract_version_ = self.contract_hash_ = None
            kinds = {}
            for name in reference.columns:
                if name in OUTPUT_COLUMNS:
                    continue
                kind = _infer_kind(reference[name])
                if kind is not None:
                    kinds[str(name)] = kind
        for name, kind in OUTPUT_COLUMNS.items():
            if name in reference:
                kinds[name] = kind
        if not kinds:
            raise LabError("No column to profile: the reference has no numeric or categorical columns.")
        return kinds

    def _fit_column(self, series: pd.Series, name: str, kind: str) -> ColumnProfile:
        if kind == "numeric":
            values, missing, bad = _numeric(series)
            if len(values) > self.max_values:  # a fixed random subsample keeps JSON and KS bounded
                values = np.random.default_rng(self.seed).choice(values, self.max_values, replace=False)
            values = np.sort(values)
            constant = len(values) == 0 or values[0] == values[-1]
            std = 0.0 if constant else float(values.std())  # exactly 0: float sums of equal values are not
            edges = list(np.unique(np.quantile(values, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))) if len(values) else []
            return ColumnProfile(name, kind, len(series), missing + bad, values, std, [float(e) for e in edges])
        counts = _label_counts(series).sort_index().sort_values(ascending=False, kind="stable")
        return ColumnProfile(name, kind, len(series), int(series.isna().sum()),
                             counts={str(k): int(v) for k, v in counts.items()})

    # ----------------------------------------------------------------- persistence
    def to_json(self) -> dict:
        t = self.thresholds
        return {"format": PROFILE_FORMAT, "contract_version": self.contract_version_,
                "contract_hash": self.contract_hash_, "rows": self.rows_,
                "thresholds": t.__dict__, "meta": self.meta,
                "columns": [c.to_json() for c in self.columns_.values()]}

    def save(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json()))
        return path

    @classmethod
    def load(cls, path) -> ReferenceProfile:
        from .. import contract as contract_module

        path = Path(path)
        if not path.exists():
            raise LabError(f"No reference profile at {path}: fit one with ReferenceProfile.fit(reference) and "
                           ".save(path) (lab.setup(7) saves the course's).")
        d = json.loads(path.read_text())
        if d.get("format") != PROFILE_FORMAT:
            raise LabError(f"{path} is not a reference profile of format {PROFILE_FORMAT}; refit and save it again.")
        version, digest = d.get("contract_version"), d.get("contract_hash")
        if digest is not None and digest != contract_module.contract_hash():
            raise LabError(
                f"The profile at {path} was fitted under data contract v{version} (hash {digest}), but the "
                f"contract is now v{contract_module.CONTRACT_VERSION} (hash {contract_module.contract_hash()}). "
                "Columns may have changed meaning: refit it on reference data of the current contract, "
                "ReferenceProfile.fit(reference, contract=True).save(path)."
            )
        self = cls(Thresholds(**d["thresholds"]))
        self.contract_version_, self.contract_hash_, self.rows_ = version, digest, d["rows"]
        self.meta = d.get("meta", {})
        self.columns_ = {c["name"]: ColumnProfile.from_json(c) for c in d["columns"]}
        return self

    # ----------------------------------------------------------------- compare
    def compare(self, current: pd.DataFrame, thresholds: Thresholds | None = None) -> DriftReport:
        """Test every profiled column of ``current`` against the reference (see the module docstring)."""
        if not hasattr(self, "columns_"):
            raise LabError("This profile is not fitted yet: use ReferenceProfile.fit(reference).")
        if not isinstance(current, pd.DataFrame):
            raise LabError(f"compare expects a pandas DataFrame, got {type(current).__name__}.")
        t = thresholds or self.thresholds
        missing = [c for c in self.columns_ if c not in current]
        extra = [str(c) for c in current.columns if c not in self.columns_]
        if missing:
            raise LabError(
                f"The current window lacks column(s) the profile has: {', '.join(missing)}. "
                f"It has column(s) the profile does not: {', '.join(extra) or 'none'}. Rename or add the "
                "columns, or fit a profile on reference data with the same columns."
            )
        rows = [self._compare_column(self.columns_[name], current[name], t) for name in self.columns_]
        details = pd.DataFrame(rows)
        # Benjamini-Hochberg across every test that ran (distribution and missing-rate tests)
        ps = pd.concat([details["p_value"], details["missing_p_value"]], ignore_index=True)
        ran = ps.notna().to_numpy()
        corrected = np.full(len(ps), np.nan)
        if ran.any():
            corrected[ran] = stats.false_discovery_control(ps[ran].to_numpy(), method="bh")
        n = len(details)
        details["p_value_corrected"] = corrected[:n]
        details["missing_p_value_corrected"] = corrected[n:]
        verdicts = [self._verdict(r, t) for r in details.to_dict("records")]
        details["drifted"] = [v[0] for v in verdicts]
        details["reason"] = [v[1] for v in verdicts]
        table = details[REPORT_COLUMNS].copy()
        table["drifted"] = table["drifted"].astype(bool)
        return DriftReport(table, details, extra)

    def _compare_column(self, ref: ColumnProfile, series: pd.Series, t: Thresholds) -> dict:
        row = {"column": ref.name, "kind": ref.kind, "test": "none", "statistic": np.nan, "p_value": np.nan,
               "effect_size": np.nan, "n_reference": ref.rows - ref.missing, "n_current": 0,
               "missing_reference": ref.missing / ref.rows if ref.rows else 0.0, "missing_current": np.nan,
               "missing_p_value": np.nan, "non_finite_current": 0, "note": ""}
        n_cur = len(series)
        if n_cur:
            cur_missing = int(series.isna().sum())
            if ref.kind == "numeric":
                values, cur_missing, bad = _numeric(series)
                row["non_finite_current"] = bad
                cur_missing += bad
            row["missing_current"] = cur_missing / n_cur
            table = np.array([[ref.missing, ref.rows - ref.missing], [cur_missing, n_cur - cur_missing]])
            if n_cur >= t.min_rows and table[:, 0].sum() > 0:
                row["missing_p_value"] = float(stats.chi2_contingency(table).pvalue)
            elif n_cur >= t.min_rows:
                row["missing_p_value"] = 1.0
        if ref.kind == "numeric":
            self._numeric_tests(ref, values if n_cur else np.empty(0), row, t)
        else:
            self._categorical_tests(ref, series, row, t)
        return row

    def _numeric_tests(self, ref: ColumnProfile, values: np.ndarray, row: dict, t: Thresholds) -> None:
        row["n_current"] = len(values)
        if len(values) < t.min_rows or len(ref.values) < t.min_rows:
            row["note"] = "too few"
            return
        cur = np.sort(values)
        d, p, w = ks_wasserstein(ref.values, cur)
        spread = ref.std if ref.std and ref.std > 0 else None
        if spread is None:  # constant reference: any movement is measured in units of its value
            spread = max(abs(float(ref.values[0])), 1.0)
            row["note"] = "constant reference"
        row.update(test="ks", statistic=d, p_value=p, effect_size=w / spread, ks=d, wasserstein=w / spread)
        row.update(zip(("psi", "psi_noise"), psi(ref.values, cur, ref.psi_edges), strict=True))

    def _categorical_tests(self, ref: ColumnProfile, series: pd.Series, row: dict, t: Thresholds) -> None:
        row["n_current"] = len(series)
        row["n_reference"] = ref.rows
        if len(series) < t.min_rows:
            row["note"] = "too few"
            return
        cats = [c for c in ref.counts if c != MISSING]
        counts = _label_counts(series)
        unseen = counts.drop(labels=[c for c in [*cats, MISSING] if c in counts.index])
        # bins: the reference's categories, then one for unseen categories, one for missing values
        cur = np.array([*counts.reindex(cats, fill_value=0), unseen.sum(), counts.get(MISSING, 0)], dtype=float)
        refc = np.array([*(ref.counts[c] for c in cats), 0, ref.counts.get(MISSING, 0)], dtype=float)
        unseen = unseen.sort_index().sort_values(ascending=False, kind="stable")  # independent of row order
        row["unseen"] = ", ".join(map(str, unseen.index[:5]))
        table = np.vstack([refc, cur])
        table = table[:, table.sum(axis=0) > 0]
        if table.shape[1] < 2:  # one category in both windows: nothing can differ
            row.update(test="chi2", statistic=0.0, p_value=1.0, effect_size=0.0, js=0.0, psi=0.0, psi_noise=0.0)
            row["note"] = "constant"
            return
        chi = stats.chi2_contingency(table, correction=False)
        js = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2))
        row.update(test="chi2", statistic=float(chi.statistic), p_value=float(chi.pvalue), effect_size=js, js=js)
        row["psi"], row["psi_noise"] = _psi_from_counts(table[0], table[1])

    @staticmethod
    def _verdict(r: dict, t: Thresholds) -> tuple[bool, str]:
        kind = r["kind"]
        miss_ref, miss_cur = r["missing_reference"], r["missing_current"]
        if r["n_current"] == 0 and not (miss_cur == miss_cur):  # NaN: no rows at all
            return False, "empty window: no rows to compare"
        reasons, drifted = [], False
        missing_moved = (r["missing_p_value_corrected"] == r["missing_p_value_corrected"]
                         and r["missing_p_value_corrected"] < t.alpha and abs(miss_cur - miss_ref) >= t.min_missing)
        if missing_moved:
            drifted = True
            reasons.append(f"missing-value rate {miss_ref:.1%} -> {miss_cur:.1%}")
        if r["non_finite_current"]:
            reasons.append(f"{r['non_finite_current']} value(s) were infinite or not numbers (counted as missing)")
        if r["test"] == "none":
            if r["n_current"] < t.min_rows:
                reasons.append(f"only {r['n_current']} value(s) to test; at least {t.min_rows} are needed "
                               "to tell drift from noise")
            return drifted, "; ".join(reasons) or "not tested"
        p, effect = r["p_value_corrected"], r["effect_size"]
        if kind == "numeric":
            big = r["ks"] >= t.min_ks or effect >= t.min_wasserstein
            size = f"KS {r['ks']:.3f}, Wasserstein {effect:.2f} reference SDs"
            need = f"KS >= {t.min_ks:g} or Wasserstein >= {t.min_wasserstein:g}"
        else:
            big = effect >= t.min_js
            size = f"JS distance {effect:.3f}"
            need = f"JS >= {t.min_js:g}"
        if isinstance(r.get("unseen"), str) and r["unseen"]:
            reasons.append(f"unseen categories: {r['unseen']}")
        if r["note"] in ("constant", "constant reference") and r["statistic"] == 0:
            reasons.insert(0, "constant in both windows")
        if p < t.alpha and big:
            drifted = True
            reasons.insert(0, f"distribution changed: corrected p = {p:.2g} < {t.alpha:g} and {size} ({need})")
        elif p < t.alpha:
            reasons.insert(0, f"a real but negligible change: corrected p = {p:.2g}, but {size} is below {need}")
        elif not reasons:
            reasons.append(f"no evidence of change: corrected p = {p:.2g} ({size})")
        else:
            reasons.insert(0, f"distribution unchanged: corrected p = {p:.2g}")
        return drifted, "; ".join(reasons)


def ks_wasserstein(ref_sorted: np.ndarray, cur_sorted: np.ndarray) -> tuple[float, float, float]:
    """KS statistic, its two-sided p-value and the Wasserstein-1 distance, from sorted samples.

    One merge of the two empirical CDFs serves both statistics (the reference is sorted once, at
    fit). The p-value is scipy's: ``ks_2samp`` itself for small samples (its exact method), and for
    large ones the same asymptotic distribution ``ks_2samp`` uses (``kstwo`` at n*m/(n+m)).
    ``tests/test_monitoring.py`` checks all three against scipy."""
    n, m = len(ref_sorted), len(cur_sorted)
    both = np.concatenate([ref_sorted, cur_sorted])
    order = np.argsort(both, kind="stable")  # two sorted runs: a linear merge
    grid = both[order]
    # reference values at or before each merged position (int32 counts: ten times faster than int64)
    below_ref = np.cumsum(order < n, dtype=np.int64 if n + m >= 2**31 else np.int32)
    last = np.empty(n + m, dtype=bool)  # the CDFs are read after the last of equal values
    np.not_equal(grid[1:], grid[:-1], out=last[:-1])
    last[-1] = True
    if last.all():  # no ties (continuous data): every merged position is a step of one CDF
        seen = np.arange(1, n + m + 1, dtype=np.float64)
    else:
        seen = np.flatnonzero(last) + 1.0
        below_ref, grid = below_ref[last], grid[last]
    diff = below_ref / n  # |F_ref - F_cur| at each step (exactly 0 where both CDFs reach 1)
    seen -= below_ref
    seen /= m
    diff -= seen
    np.abs(diff, out=diff)
    d = float(diff.max())
    # einsum, not np.dot: a dot product goes to BLAS, whose threads cost more to wake (and, spinning, more CPU
    # time) than this 200k-element sum takes on one core
    w = float(np.einsum("i,i->", diff[:-1], np.diff(grid)))
    if max(n, m) <= 10_000:
        p = float(stats.ks_2samp(ref_sorted, cur_sorted, method="auto").pvalue)
    else:
        en = np.round(n * m / (n + m))
        # scipy's kstwo takes 0.1-0.2 s per column in the tail (p below about 1e-4 at these sizes).
        # Below TAIL_P, where no verdict can depend on the digits, the limiting Kolmogorov distribution
        # with Stephens' small-sample correction answers in microseconds: within a few per cent down
        # to about 1e-20, and of the right order of magnitude beyond.
        p = float(special.kolmogorov((np.sqrt(en) + 0.12 + 0.11 / np.sqrt(en)) * d))
        if p >= TAIL_P:
            p = float(stats.kstwo.sf(d, en))
    return d, min(max(p, 0.0), 1.0), w


def _psi_from_counts(ref: np.ndarray, cur: np.ndarray, eps: float = 0.5) -> tuple[float, float]:
    """PSI with additive smoothing (``eps`` per bin), and its noise level: under no drift PSI is
    about chi-squared with K-1 degrees of freedom times (1/n + 1/m), so its 95th percentile is
    the value noise alone reaches one time in twenty at these sample sizes."""
    k = len(ref)
    p = (ref + eps) / (ref.sum() + eps * k)
    q = (cur + eps) / (cur.sum() + eps * k)
    value = float(np.sum((q - p) * np.log(q / p)))
    noise = float(stats.chi2.ppf(0.95, max(k - 1, 1)) * (1 / ref.sum() + 1 / cur.sum()))
    return value, noise


def psi(ref_sorted: np.ndarray, cur_sorted: np.ndarray, edges) -> tuple[float, float]:
    """PSI of the current values on the reference's quantile bins, and its noise level (see
    ``_psi_from_counts``). Both samples must be sorted: a bin count is then a difference of two positions."""
    edges = np.asarray(edges, dtype=float)
    if len(edges) == 0:
        return 0.0, 0.0

    def counts(values):
        return np.diff(np.r_[0, np.searchsorted(values, edges, side="left"), len(values)]).astype(float)

    return _psi_from_counts(counts(ref_sorted), counts(cur_sorted))


def drift_report(reference: pd.DataFrame, current: pd.DataFrame, contract=None, **kwargs) -> DriftReport:
    """One call for a notebook cell: fit a profile on ``reference`` and compare ``current``."""
    return ReferenceProfile.fit(reference, contract, **kwargs).compare(current)
