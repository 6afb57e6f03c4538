"""Lab 07: Monitoring. Write PSI, join labels as they arrive, tell what moved, and write alert
rules that are graded on every drift scenario's ground truth."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd

from . import (
    NotJudged,
    Trial,
    _blank,
    differential,
    exercise,
    get,
    require_attempt,
    right,
    same,
    solved,
    wrong,
)

# ------------------------------------------------------------------ 7.1 PSI


def _psi_shares(reference, current, bins=10, side="right"):
    """The reference's and the current window's raw shares per reference-quantile bin."""
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side=side), minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, current, side=side), minlength=len(edges) + 1) / len(current)
    return p, q


def _psi_of(p, q, floor=1e-4):
    p, q = np.clip(p, floor, None), np.clip(q, floor, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _reference_psi(reference, current, bins=10):
    return _psi_of(*_psi_shares(reference, current, bins))


def _psi_equal_width(reference, current, bins=10):
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins)
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_no_smoothing(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.histogram(reference, edges)[0] / len(reference)
    q = np.histogram(current, edges)[0] / len(current)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((q - p) * np.log(q / p)))


def _kl_not_psi(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = np.clip(np.histogram(reference, edges)[0] / len(reference), 1e-4, None)
    q = np.clip(np.histogram(current, edges)[0] / len(current), 1e-4, None)
    return float(np.sum(q * np.log(q / p)))


def _psi_with_histogram(reference, current, bins=10):
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1))
    edges[0], edges[-1] = -np.inf, np.inf
    p = (np.histogram(reference, edges)[0] + 0.5) / (len(reference) + 0.5 * bins)
    q = (np.histogram(current, edges)[0] + 0.5) / (len(current) + 0.5 * bins)
    return float(((q - p) * np.log(q / p)).sum())


def _psi_ignores_bins(reference, current, bins=10):
    return _reference_psi(reference, current, 10)


def _psi_pd_cut(reference, current, bins=10):
    # bins from the reference's own range: payments outside it fall out of every bin (NaN)
    _, edges = pd.qcut(pd.Series(reference), bins, retbins=True, duplicates="drop")
    p = pd.cut(pd.Series(reference), edges, include_lowest=True).value_counts(normalize=True, sort=False).to_numpy()
    q = pd.cut(pd.Series(current), edges, include_lowest=True).value_counts(normalize=True, sort=False).to_numpy()
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)
    return float(np.sum((q - p) * np.log(q / p)))


def _psi_sorts_in_place(reference, current, bins=10):
    if isinstance(reference, np.ndarray):
        reference.sort()  # "faster quantiles": but it reorders the caller's array
    return _reference_psi(reference, current, bins)


def _psi_pandas_right_closed(reference, current, bins=10):
    inner = pd.Series(reference, dtype=float).quantile(np.linspace(0, 1, bins + 1)[1:-1]).unique()
    edges = [-np.inf, *inner, np.inf]
    p = pd.cut(pd.Series(reference, dtype=float), edges).value_counts(normalize=True, sort=False)
    q = pd.cut(pd.Series(current, dtype=float), edges).value_counts(normalize=True, sort=False)
    p, q = p.clip(lower=1e-6), q.clip(lower=1e-6)
    return float(((q - p) * np.log(q / p)).sum())


def _psi_loop(reference, current, bins=10):
    ref = sorted(float(x) for x in reference)
    cuts = [float(c) for c in np.quantile(ref, [k / bins for k in range(1, bins)])]

    def shares(values):
        counts = [0] * (len(cuts) + 1)
        for x in values:
            counts[sum(1 for c in cuts if float(x) >= c)] += 1
        return [max(c / len(values), 1e-4) for c in counts]

    return sum((q - p) * math.log(q / p) for p, q in zip(shares(ref), shares(current), strict=True))


def _psi_planted():
    rng = np.random.default_rng(7)
    amounts = np.exp(np.log(50) + 0.8 * rng.standard_normal(20_000))  # skewed, like payment amounts
    return amounts, np.exp(np.log(75) + 0.8 * rng.standard_normal(8_000))


@functools.cache
def _psi_trials() -> tuple[Trial, ...]:
    """Skewed amounts (several seeds and sizes), windows that barely move, move, or leave the
    reference's range, ``bins`` from 2 to 25 (and left out), arrays, Series and lists, integer ties."""
    trials = []
    holiday_ref, holiday_cur = _psi_planted()
    trials.append(Trial("the lab's planted holiday amounts (20,000 reference, 8,000 current, x1.5)",
                        (holiday_ref, holiday_cur), {}, size=1))
    shapes = [("the same distribution", 1.0, 0.0), ("amounts 1.5 times larger", 1.5, 0.0),
              ("amounts 1.2 times larger", 1.2, 0.0), ("amounts 100 times larger (cents)", 100.0, 0.0),
              ("a wider spread", 1.0, 0.4)]
    for seed in range(5):
        rng = np.random.default_rng(100 + seed)
        n_ref, n_cur = [(3_000, 2_000), (5_000, 3_000), (8_000, 2_500), (4_000, 4_000), (6_000, 2_000)][seed]
        ref = np.exp(np.log(45) + 0.8 * rng.standard_normal(n_ref))
        for k, (words, scale, spread) in enumerate(shapes):
            if (seed + k) % 2 and words != "amounts 100 times larger (cents)":
                continue
            cur = scale * np.exp(np.log(45) + (0.8 + spread) * rng.standard_normal(n_cur))
            bins = [10, 5, 20, 3, 10][(seed + k) % 5]
            kwargs = {} if bins == 10 and seed % 2 == 0 else {"bins": bins}
            form = ["arrays", "pandas Series", "arrays", "lists", "pandas Series"][seed]
            r, c = (ref.copy(), cur)
            if form == "pandas Series":
                r, c = pd.Series(ref, name="amount", index=rng.permutation(n_ref)), pd.Series(cur, name="amount")
            elif form == "lists":
                r, c = ref.tolist(), cur.tolist()
            label = (f"bins={bins}{' (left at its default)' if not kwargs else ''}, {n_ref:,} reference and "
                     f"{n_cur:,} current amounts as {form}, current: {words} (seed {seed})")
            trials.append(Trial(label, (r, c), kwargs, size=2 + n_ref + n_cur + 0.01 * k))
    rng = np.random.default_rng(11)
    ref = np.exp(np.log(45) + 0.8 * rng.standard_normal(4_000))
    trials.append(Trial("identical reference and current (4,000 amounts), bins=10", (ref, ref.copy()), {},
                        size=3))
    trials.append(Trial("bins=25, 4,000 reference and 3,000 current amounts 1.3 times larger",
                        (ref, 1.3 * np.exp(np.log(45) + 0.8 * rng.standard_normal(3_000))), {"bins": 25}, size=8_000))
    trials.append(Trial("bins=2, 4,000 reference and 3,000 current amounts 1.5 times larger",
                        (ref, 1.5 * np.exp(np.log(45) + 0.8 * rng.standard_normal(3_000))), {"bins": 2}, size=7_500))
    trials.append(Trial("every current amount below the reference's minimum (4,000 and 2,000 amounts)",
                        (ref, np.full(2_000, ref.min() / 2)), {}, size=6_500))
    hours_ref = rng.choice(24, 6_000, p=np.arange(1, 25) / np.arange(1, 25).sum()).astype(float)
    hours_cur = rng.choice(24, 3_000, p=np.arange(24, 0, -1) / np.arange(1, 25).sum()).astype(float)
    trials.append(Trial("whole hours 0-23 (many ties), 6,000 reference and 3,000 current, more night payments",
                        (hours_ref, hours_cur), {}, size=9_500))
    return tuple(trials)


def _psi_compare(got, expected, trial):
    if isinstance(got, bool) or not isinstance(got, int | float | np.integer | np.floating):
        return f"psi returned {type(got).__name__}; return one number (a float)"
    got = float(got)
    if not math.isfinite(got):
        return (f"psi returned {got}: a bin with no payments in one window gives ln(0). Smooth the shares "
                "(for example floor them at 1e-4) before the logarithm")
    reference, current = trial.args
    bins = trial.kwargs.get("bins", 10)
    p, q = _psi_shares(reference, current, bins)
    left = _psi_of(*_psi_shares(reference, current, bins, side="left"))
    if (p == 0).any() or (q == 0).any():  # a window left some bins empty: how big depends on the smoothing
        if expected > 2 and got > 2:
            return None
        if got <= 2 and expected > 2:
            outside = np.mean((np.asarray(current, float) > np.max(reference)) | (np.asarray(current, float) < np.min(reference)))
            more = (f" ({outside:.0%} of the current values lie outside the reference's range: they belong in the "
                    "first or last bin, whose edges are open)" if outside > 0.5 else "")
            return (f"psi returned {got:.3f}; some reference bins are empty in the current window{more}, which is "
                    f"a PSI far above 1 (the reference's: {expected:.2f})")
    elif any(math.isclose(got, e, rel_tol=0.02, abs_tol=1e-3) for e in (expected, left)):
        return None
    ref_a, cur_a = np.asarray(reference, float), np.asarray(current, float)
    if bins != 10 and math.isclose(got, _reference_psi(ref_a, cur_a, 10), rel_tol=0.01, abs_tol=1e-4):
        return (f"psi returned {got:.4f}, the PSI with 10 bins; with bins={bins} it is {expected:.4f}: "
                "use the `bins` argument for the number of quantile bins")
    if math.isclose(got, _kl_not_psi(ref_a, cur_a, bins), rel_tol=0.01, abs_tol=1e-4):
        return (f"psi returned {got:.4f}, which is the one-sided KL divergence. PSI weighs both directions: the "
                f"sum of (q - p) * ln(q / p); expected {expected:.4f}")
    if math.isclose(got, _psi_equal_width(ref_a, cur_a, bins), rel_tol=0.01, abs_tol=1e-4):
        return (f"psi returned {got:.4f}, expected {expected:.4f}: your bins have equal widths. Take the edges "
                "from the reference's quantiles, so each bin holds the same share of the reference")
    outside = np.mean((cur_a > ref_a.max()) | (cur_a < ref_a.min()))
    if outside > 0:
        return (f"psi returned {got:.4f}, expected {expected:.4f}; {outside:.1%} of the current values lie outside "
                "the reference's range, and they count too: the first and the last bin are open-ended")
    return (f"psi returned {got:.4f}, expected {expected:.4f}. Are the bins the reference's quantiles (each holding "
            "1/bins of the reference, the outer ones open-ended), and the sum of (q - p) * ln(q / p)?")


@exercise(
    "7.1",
    "Population stability index",
    solution='''
def psi(reference, current, bins=10):
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    # inner edges of the reference's quantile bins: each holds 1/bins of the reference
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    p = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) / len(reference)
    q = np.bincount(np.searchsorted(edges, current, side="right"), minlength=len(edges) + 1) / len(current)
    p, q = np.clip(p, 1e-4, None), np.clip(q, 1e-4, None)  # smoothing: an empty bin must not give infinity
    return float(np.sum((q - p) * np.log(q / p)))
''',
    hints=(
        "Bins come from the reference's quantiles (np.quantile at 0.1, 0.2, ..., 0.9 for bins=10), not from equal "
        "widths: each bin then holds a tenth of the reference, however skewed the column is.",
        "The first and the last bin are open-ended: a current value below the reference's minimum or above its "
        "maximum still counts, in the outer bin (np.searchsorted on the inner edges does that).",
        "PSI = sum over bins of (q - p) * ln(q / p), with p the reference share and q the current share.",
        "A bin that is empty in one window makes ln(q / p) infinite: floor both shares at a small number "
        "such as 1e-4 before the logarithm.",
    ),
    reference="psi",
    stub=lambda: _blank,
    trials=_psi_trials,
    cases=(
        wrong("equal-width bins", lambda: _psi_equal_width, "quantile"),
        wrong("no smoothing", lambda: _psi_no_smoothing, "Smooth the shares"),
        wrong("one-sided KL divergence", lambda: _kl_not_psi, "(q - p)"),
        wrong("always 10 bins", lambda: _psi_ignores_bins, "`bins` argument"),
        wrong("pd.cut on the reference's range drops the cents", lambda: _psi_pd_cut, "outside the reference's range"),
        wrong("sorts the caller's array in place", lambda: _psi_sorts_in_place, "changed its input"),
        wrong("returns a rounded string", lambda: lambda r, c, bins=10: f"{_reference_psi(r, c, bins):.3f}",
              "return one number"),
        right("np.histogram with additive smoothing", lambda: _psi_with_histogram),
        right("pandas, right-closed bins, floor 1e-6", lambda: _psi_pandas_right_closed),
        right("plain Python loops", lambda: _psi_loop),
    ),
)
def _check_psi(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function psi(reference, current, bins=10) that returns a number"
    differential(func, get("7.1").reference(), _psi_trials(), compare=_psi_compare, what="psi")


# ------------------------------------------------------------------ 7.2 labels as they arrive

AS_OF = pd.Timestamp("2026-03-01 00:00:00")


def _planted():
    predictions = pd.DataFrame({
        "transaction_id": ["t1", "t2", "t3", "t4", "t5"],
        "score": [0.91, 0.02, 0.40, 0.75, 0.01],
        "decision": ["flag", "approve", "flag", "flag", "approve"],
    })
    labels = pd.DataFrame({
        "transaction_id": ["t1", "t2", "t3", "t4", "t9"],
        "timestamp": pd.to_datetime(["2026-02-10", "2026-02-11", "2026-02-27", "2026-02-12", "2026-02-01"]),
        "is_fraud": [1, 0, 1, 1, 0],
        # t1 arrived exactly at AS_OF (known), t4 one second late (not known), t2 long before
        "label_available_at": [AS_OF, AS_OF - pd.Timedelta(days=2), AS_OF - pd.Timedelta(hours=1),
                               AS_OF + pd.Timedelta(seconds=1), AS_OF - pd.Timedelta(days=20)],
    })
    return predictions, labels


def _reference_known_labels(predictions, labels, as_of):
    arrived = labels[labels["label_available_at"] <= pd.Timestamp(as_of)]
    return predictions.merge(arrived[["transaction_id", "is_fraud"]], on="transaction_id", how="inner")


def _prediction_log_like(frame: pd.DataFrame, rng) -> pd.DataFrame:
    """What the serving log holds for ``frame``: id, features, score, decision, model version (no payment time)."""
    from .. import data

    log = frame[["transaction_id", *data.feature_columns()]].copy()
    log["score"] = rng.beta(0.3, 8, len(log)).round(5)
    log["decision"] = np.where(log["score"] >= 0.1, "flag", "approve")
    log["model_version"] = "2"
    return log


@functools.cache
def _known_labels_trials() -> tuple[Trial, ...]:
    """The planted story, then simulated payments (seeds, sizes) with ``as_of`` exactly on a label's
    arrival, one second before and after, at midnight, before every label and after all of them;
    shuffled rows, an extra column, predictions without a label and labels without a prediction."""
    from .. import data

    predictions, labels = _planted()
    trials = [Trial(f"the planted frame (as_of = {AS_OF}; t1's label arrives exactly then, t4's one second "
                    "later, t5 has no label, t9 was never predicted)", (predictions, labels, AS_OF), size=0)]
    frames = {seed: data.simulate_transactions(days=40, start="2026-01-05", seed=seed, per_day=6 + 2 * seed)
              for seed in range(7)}
    for k in range(21):
        seed = k % 7
        rng = np.random.default_rng(k)
        frame = frames[seed].sort_values("label_available_at").reset_index(drop=True)
        log = _prediction_log_like(frame, rng)
        pick = frame["label_available_at"].iloc[len(frame) // 3 + k]
        as_of, how = [(pick, "exactly when a label arrives"),
                      (pick - pd.Timedelta(seconds=1), "one second before a label arrives"),
                      (pick + pd.Timedelta(seconds=1), "one second after a label arrives"),
                      (pick.normalize(), "at midnight"),
                      (frame["label_available_at"].min() - pd.Timedelta(days=1), "before any label had arrived"),
                      (frame["label_available_at"].max(), "exactly when the last label arrives"),
                      (pick, "exactly when a label arrives")][(k + k // 7) % 7]
        extra = ""
        if k % 3 == 1:
            log = log.sample(frac=1, random_state=k).reset_index(drop=True)
            frame = frame.sample(frac=1, random_state=k + 1).reset_index(drop=True)
            extra += ", rows shuffled"
        if k % 4 == 2:
            log["served_at"] = pd.Timestamp("2026-03-01") + pd.to_timedelta(np.arange(len(log)), unit="s")
            extra += ", an extra served_at column"
        if k % 3 == 2:
            log = log.iloc[len(log) // 4:].reset_index(drop=True)  # the labels of payments nobody predicted
            frame = frame.drop(index=frame.index[::7]).reset_index(drop=True)  # and predictions with no label
            extra += ", labels for payments never predicted and predictions without a label"
        label = f"{len(log):,} predictions of seed {seed}, as_of = {as_of} ({how}){extra}"
        trials.append(Trial(label, (log, frame, as_of), size=1 + len(log) + 0.01 * k))
    return tuple(trials)


def _known_labels_compare(got, expected, trial):
    predictions, labels, as_of = trial.args
    if not isinstance(got, pd.DataFrame):
        return f"known_labels returned {type(got).__name__}; return a DataFrame"
    lost = [c for c in predictions.columns if c not in got.columns]
    if lost:
        renamed = [c for c in got.columns if str(c).endswith(("_x", "_y"))]
        why = (f" (it has {', '.join(renamed[:3])}: merging every label column duplicates the ones both tables "
               "have; join only transaction_id and is_fraud)" if renamed else "")
        return f"the result lacks the prediction's column(s) {', '.join(map(str, lost[:4]))}{why}"
    if "is_fraud" not in got.columns:
        return "the result has no is_fraud column: add each known label as is_fraud"
    unlabelled = got[got["is_fraud"].isna()]
    if len(unlabelled):
        tid = unlabelled["transaction_id"].iloc[0]
        return (f"{tid} has no label that had arrived (is_fraud is missing): keep only the predictions whose "
                "label had arrived (an inner join)")
    arrived = labels.set_index("transaction_id")["label_available_at"]
    got_ids, want_ids = list(got["transaction_id"]), list(expected["transaction_id"])
    extra = sorted(set(got_ids) - set(want_ids), key=lambda t: arrived.get(t, pd.Timestamp.max))
    missing = sorted(set(want_ids) - set(got_ids), key=lambda t: arrived.get(t, pd.Timestamp.max))
    cutoff = pd.Timestamp(as_of)
    if missing:
        tid = missing[0]
        gap = cutoff - arrived[tid]
        when = "exactly at as_of" if gap == pd.Timedelta(0) else f"{_duration(gap)} before as_of"
        return (f"yours drops {tid}, whose label arrived {when}: a label that arrives at or before as_of is known "
                f"(label_available_at <= as_of); {len(missing)} row(s) missing")
    if extra:
        tid = extra[0]
        if tid not in arrived.index:
            return f"{tid} has no label at all: keep only the predictions that got one (an inner join)"
        if tid not in set(predictions["transaction_id"]):
            return f"{tid} was never predicted: labels without a prediction do not belong in the result"
        gap = arrived[tid] - cutoff
        return (f"yours keeps {tid}, whose label arrived {_duration(gap)} after as_of: nobody knew it yet. Compare "
                "label_available_at with as_of, not the payment's timestamp")
    if len(got_ids) != len(want_ids):
        return (f"the result has {len(got_ids)} rows for {len(set(got_ids))} payments; expected one row per "
                "prediction whose label had arrived")
    mine = got.set_index("transaction_id").reindex(expected["transaction_id"])
    want = expected.set_index("transaction_id")
    wrong_label = mine["is_fraud"].astype(float).to_numpy() != want["is_fraud"].astype(float).to_numpy()
    if wrong_label.any():
        tid = want.index[wrong_label.argmax()]
        return f"the labels are attached to the wrong rows: {tid}'s is_fraud should be {int(want.at[tid, 'is_fraud'])}"
    columns = [c for c in predictions.columns if c != "transaction_id"]
    if mine[columns].reset_index(drop=True).equals(want[columns].reset_index(drop=True)):
        return None
    for column in columns:
        a, b = mine[column].astype(object).fillna("NA"), want[column].astype(object).fillna("NA")
        if not (a.to_numpy() == b.to_numpy()).all():
            return f"the prediction's column {column} changed values: keep the predictions as they are"
    return None


def _duration(gap: pd.Timedelta) -> str:
    seconds = int(abs(gap).total_seconds())
    if seconds == 1:
        return "one second"
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 86_400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86_400:.1f} days"


@exercise(
    "7.2",
    "Only the labels that had arrived",
    solution='''
def known_labels(predictions, labels, as_of):
    arrived = labels[labels["label_available_at"] <= pd.Timestamp(as_of)]
    return predictions.merge(arrived[["transaction_id", "is_fraud"]], on="transaction_id", how="inner")
''',
    hints=(
        "A label is known at `as_of` when `label_available_at <= as_of`: the payment's own timestamp says "
        "nothing about when its chargeback came in.",
        "Filter the labels first, then join them to the predictions on `transaction_id`, keeping only "
        "predictions that got a label (an inner join). Take only transaction_id and is_fraud from the labels.",
    ),
    reference="known_labels",
    stub=lambda: _blank,
    trials=_known_labels_trials,
    cases=(
        wrong("strictly before as_of", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] < t][["transaction_id", "is_fraud"]], on="transaction_id"), "exactly at"),
        wrong("filters on the payment time", lambda: lambda p, lab, t: p.merge(
            lab[lab["timestamp"] <= t][["transaction_id", "is_fraud"]], on="transaction_id"), "one second"),
        wrong("ignores as_of", lambda: lambda p, lab, t: p.merge(
            lab[["transaction_id", "is_fraud"]], on="transaction_id"), "one second"),
        wrong("left join keeps unlabelled rows", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] <= t][["transaction_id", "is_fraud"]], on="transaction_id", how="left"),
            "no label"),
        wrong("merges every label column", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] <= t], on="transaction_id"), "join only transaction_id and is_fraud"),
        wrong("rounds as_of down to the day", lambda: lambda p, lab, t: p.merge(
            lab[lab["label_available_at"] <= pd.Timestamp(t).normalize()][["transaction_id", "is_fraud"]],
            on="transaction_id"), "label_available_at <= as_of"),
        wrong("filters the caller's frame in place", lambda: _drops_in_place, "changed its input"),
        right("query and isin", lambda: lambda p, lab, t: p[p["transaction_id"].isin(
            lab.loc[lab["label_available_at"] <= t, "transaction_id"])].assign(
            is_fraud=lambda f: f["transaction_id"].map(lab.set_index("transaction_id")["is_fraud"]))),
        right("join on an index, labels kept with their arrival time", lambda: lambda p, lab, t: p.join(
            lab.set_index("transaction_id").loc[lambda f: f["label_available_at"].le(t),
                                                ["is_fraud", "label_available_at"]],
            on="transaction_id", how="inner").sort_values("transaction_id")),
    ),
)
def _check_known_labels(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function known_labels(predictions, labels, as_of) that returns a DataFrame"
    differential(func, get("7.2").reference(), _known_labels_trials(), compare=_known_labels_compare,
                 what="known_labels")


def _drops_in_place(predictions, labels, as_of):
    labels.drop(labels.index[labels["label_available_at"] > as_of], inplace=True)
    return predictions.merge(labels[["transaction_id", "is_fraud"]], on="transaction_id")


# ------------------------------------------------------------------ 7.3 what moved?


def _window(drifted_columns, chargebacks, score_ks, flag_rate):
    return pd.Series({"drifted_columns": drifted_columns, "drift_share": drifted_columns / 10,
                      "score_ks": score_ks, "score_drifted": int(score_ks > 0.02), "flag_rate": flag_rate,
                      "chargebacks_per_1000": chargebacks, "labelled": round(chargebacks * 14), "pr_auc": np.nan,
                      "recall": 0.9})


WHAT_MOVED_CASES = (
    # figures from the course's monitoring stream: the window before the drift, and two weeks into it
    ("none (the control)", _window(0, 1.35, 0.007, 0.153), _window(0, 1.29, 0.008, 0.150), "nothing"),
    ("fraud_rate_spike", _window(0, 1.35, 0.007, 0.153), _window(0, 2.10, 0.009, 0.153), "fraud only"),
    ("holiday_season", _window(0, 1.35, 0.007, 0.153), _window(3, 2.92, 0.212, 0.283), "inputs"),
    ("amount_in_cents", _window(0, 1.35, 0.007, 0.153), _window(1, 1.21, 0.672, 0.699), "inputs"),
    ("device_feature_missing", _window(0, 1.35, 0.007, 0.153), _window(1, 1.14, 0.024, 0.138), "inputs"),
    ("card_testing", _window(0, 1.21, 0.007, 0.153), _window(4, 4.40, 0.024, 0.150), "inputs"),
)


def _reference_what_moved(before, after):
    if after["drifted_columns"] > 0:
        return "inputs"
    if after["chargebacks_per_1000"] > 1.5 * before["chargebacks_per_1000"]:
        return "fraud only"
    return "nothing"


@functools.cache
def _what_moved_trials() -> tuple[Trial, ...]:
    """The six scenarios' real figures, then generated pairs of nights: chargeback levels from 0.5 to
    5 per 1,000, ratios just below and above 1.5, the score or the flag rate moving with still
    inputs, one drifted column, fields in another order."""
    trials = [Trial(name, (before, after), size=i) for i, (name, before, after, _) in enumerate(WHAT_MOVED_CASES)]
    rng = np.random.default_rng(73)
    ratios = [0.6, 1.0, 1.2, 1.45, 1.55, 2.0, 3.0]
    for k in range(24):
        base = float(rng.choice([0.5, 0.9, 1.3, 2.2, 3.5, 5.0]))
        ratio = ratios[k % len(ratios)]
        drifted = [0, 0, 0, 1, 0, 2, 0, 4][k % 8]
        score_ks = [0.007, 0.3, 0.01][k % 3] if drifted == 0 else 0.2
        flag_after = [0.015, 0.06, 0.012, 0.015][k % 4]
        before = _window(0, base, 0.007, 0.015)
        after = _window(drifted, round(base * ratio, 4), score_ks, flag_after)
        if k % 5 == 0:
            after = after.iloc[rng.permutation(len(after))]
        label = (f"drifted columns {drifted}, chargebacks per 1,000 {base:.2f} -> {base * ratio:.2f} ({ratio:g} "
                 f"times), score KS {score_ks:g}, flag rate 0.015 -> {flag_after:g}")
        trials.append(Trial(label, (before, after), size=10 + k))
    # the boundary itself (exactly 1.5 times is not "more than"), ratios a rounding to one decimal hides,
    # and nights where `before` drifted too: drifted_columns is measured against the training data, so
    # only the night judged (`after`) says whether the inputs have moved
    edges = [(2.0, 3.0, 0, 0), (1.0, 1.5, 0, 0), (4.0, 6.0, 0, 0), (2.0, 3.04, 0, 0), (2.5, 3.8, 0, 0),
             (1.0, 1.54, 0, 0), (2.0, 2.9, 2, 2), (1.2, 1.1, 3, 1), (1.2, 3.0, 2, 2), (1.0, 1.0, 2, 0),
             (1.0, 2.0, 1, 0), (2.0, 3.0, 3, 0)]
    for k, (base, level, drifted_before, drifted_after) in enumerate(edges):
        before = _window(drifted_before, base, 0.2 if drifted_before else 0.007, 0.015)
        after = _window(drifted_after, level, 0.2 if drifted_after else 0.007, 0.015)
        label = (f"drifted columns {drifted_before} -> {drifted_after}, chargebacks per 1,000 {base:g} -> "
                 f"{level:g} ({level / base:.3g} times)")
        trials.append(Trial(label, (before, after), size=40 + k))
    return tuple(trials)


def _what_moved_compare(got, expected, trial):
    if got not in ("inputs", "fraud only", "nothing"):
        return f"what_moved returned {got!r}; return one of 'inputs', 'fraud only', 'nothing'"
    if got == expected:
        return None
    before, after = trial.args
    if got == "inputs" and after["drifted_columns"] == 0 and before["drifted_columns"] > 0:
        return (f"you said 'inputs'; the answer is {expected!r}: only the night before drifted "
                f"({int(before['drifted_columns'])} column(s)); tonight none does. Judge the inputs by `after`")
    if got != "inputs" and expected == "inputs" and before["drifted_columns"] >= after["drifted_columns"]:
        return (f"you said {got!r}; the answer is 'inputs': {int(after['drifted_columns'])} column(s) drift "
                f"tonight (and {int(before['drifted_columns'])} the week before). drifted_columns compares each "
                "night with the training data, not with the week before: columns that still drift have still moved")
    if got == "inputs" and after["drifted_columns"] == 0:
        return (f"you said 'inputs'; the answer is {expected!r}: no feature column drifted (drifted_columns is 0). "
                "The score and the flag rate are the model's outputs, not inputs")
    why = {"inputs": "a feature column drifted (drifted_columns > 0): the inputs changed, whatever fraud does",
           "fraud only": ("no feature column drifted, and the chargebacks rose above 1.5 times the week before "
                          f"({before['chargebacks_per_1000']:.2f} -> {after['chargebacks_per_1000']:.2f})"),
           "nothing": ("no feature column drifted, and the chargebacks stayed within 1.5 times the week before "
                       f"({before['chargebacks_per_1000']:.2f} -> {after['chargebacks_per_1000']:.2f}); the score "
                       "and the flag rate are outputs, not inputs")}[expected]
    ratio = after["chargebacks_per_1000"] / before["chargebacks_per_1000"] if before["chargebacks_per_1000"] else 0
    if expected == "nothing" and got == "fraud only" and math.isclose(ratio, 1.5):
        why = ("the chargebacks rose exactly 1.5 times "
               f"({before['chargebacks_per_1000']:g} -> {after['chargebacks_per_1000']:g}): 'more than 1.5 times' "
               "means strictly greater (>), so exactly 1.5 is still 'nothing'")
    elif expected == "fraud only" and got == "nothing" and 1.5 < ratio < 1.55:
        why = (f"the chargebacks rose {ratio:.3g} times ({before['chargebacks_per_1000']:g} -> "
               f"{after['chargebacks_per_1000']:g}), more than 1.5: compare the ratio itself (rounding it to 1.5 "
               "hides the rise)")
    return f"you said {got!r}; the answer is {expected!r}: {why}"


@exercise(
    "7.3",
    "Data drift or concept drift?",
    solution='''
def what_moved(before, after):
    if after["drifted_columns"] > 0:  # the inputs changed: data drift (whatever it does to fraud)
        return "inputs"
    if after["chargebacks_per_1000"] > 1.5 * before["chargebacks_per_1000"]:  # inputs still, fraud up
        return "fraud only"
    return "nothing"
''',
    hints=(
        "Look at the inputs first: when feature columns drift (drifted_columns > 0), that explains a change in "
        "fraud too (more online electronics means more fraud, with the same fraud mechanism).",
        "With inputs unchanged, only the labels can show a change: compare the chargeback rate with the "
        "window before, relatively: noise alone moves it by up to a third, so ask for more than 1.5 times.",
        "The score and the flag rate are the model's outputs, not its inputs; PR-AUC is missing in recent windows "
        "(legitimate payments are confirmed only after 30 days): a rule built on it never decides.",
    ),
    reference="what_moved",
    stub=lambda: _blank,
    trials=_what_moved_trials,
    cases=(
        wrong("fraud first", lambda: lambda b, a: "fraud only" if a["chargebacks_per_1000"] > 1.3 * b[
            "chargebacks_per_1000"] else ("inputs" if a["drifted_columns"] else "nothing"), "holiday_season"),
        wrong("waits for PR-AUC", lambda: lambda b, a: "inputs" if a["drifted_columns"] else (
            "fraud only" if a["pr_auc"] < 0.3 else "nothing"), "fraud_rate_spike"),
        wrong("absolute chargeback threshold", lambda: lambda b, a: "inputs" if a["drifted_columns"] else (
            "fraud only" if a["chargebacks_per_1000"] > 1.0 else "nothing"), "none (the control)"),
        wrong("flag rate as the input signal", lambda: lambda b, a: "inputs" if a["flag_rate"] > 1.2 * b[
            "flag_rate"] else ("fraud only" if a["chargebacks_per_1000"] > 1.3 * b["chargebacks_per_1000"]
                               else "nothing"), "device_feature_missing"),
        wrong("difference instead of ratio", lambda: lambda b, a: "inputs" if a["drift_share"] > 0 else (
            "fraud only" if a["chargebacks_per_1000"] - b["chargebacks_per_1000"] > 0.4 else "nothing"),
            "within 1.5 times"),
        wrong("score drift counted as inputs", lambda: lambda b, a: "inputs" if a["drifted_columns"] > 0 or a[
            "score_ks"] > 0.1 else ("fraud only" if a["chargebacks_per_1000"] > 1.5 * b["chargebacks_per_1000"]
                                    else "nothing"), "outputs, not inputs"),
        wrong("at least 1.5 times", lambda: lambda b, a: "inputs" if a.drifted_columns else (
            "fraud only" if a.chargebacks_per_1000 >= 1.45 * b.chargebacks_per_1000 else "nothing"),
            "within 1.5 times"),
        right("ratio by division, drift share, attribute access", lambda: lambda b, a: (
            "inputs" if a.drift_share > 0 else "fraud only" if a.chargebacks_per_1000 / b.chargebacks_per_1000 > 1.5
            else "nothing")),
        wrong("at least 1.5 times (red team)", lambda: lambda b, a: "inputs" if a["drifted_columns"] > 0 else (
            "fraud only" if a["chargebacks_per_1000"] >= 1.5 * b["chargebacks_per_1000"] else "nothing"),
            "strictly greater"),
        wrong("ratio rounded to one decimal (red team)", lambda: lambda b, a: "inputs" if a["drifted_columns"] > 0
              else ("fraud only" if round(a["chargebacks_per_1000"] / b["chargebacks_per_1000"], 1) > 1.5
                    else "nothing"), "rounding it"),
        wrong("inputs only when the drift count rose (red team)", lambda: lambda b, a: "inputs" if a[
            "drifted_columns"] > b["drifted_columns"] else ("fraud only" if a["chargebacks_per_1000"] > 1.5 * b[
                "chargebacks_per_1000"] else "nothing"), "not with the week before"),
        wrong("the week before's drift counted too (red team)", lambda: lambda b, a: "inputs" if b[
            "drifted_columns"] > 0 or a["drifted_columns"] > 0 else ("fraud only" if a["chargebacks_per_1000"] > 1.5
                                                                     * b["chargebacks_per_1000"] else "nothing"),
              "Judge the inputs by `after`"),
        right("a dict lookup on two booleans", lambda: lambda b, a: {
            (True, True): "inputs", (True, False): "inputs", (False, True): "fraud only", (False, False): "nothing"}[
            (bool(a.get("drifted_columns", 0) >= 1), bool(a.get("chargebacks_per_1000") > 1.5 * b.get(
                "chargebacks_per_1000")))]),
    ),
)
def _check_what_moved(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function what_moved(before, after) returning 'inputs', 'fraud only' or 'nothing'"
    differential(func, get("7.3").reference(), _what_moved_trials(), compare=_what_moved_compare, what="what_moved")


# ------------------------------------------------------------------ 7.4 alert rules graded on ground truth

MAX_MEAN_DELAY_DAYS = 7
SEEN_SEED = 7  # the stream the lab shows (StreamSettings().seed)
# other weeks of the same worlds, never shown in the lab: the check grades on these. Every scenario on one
# seed; on a second, the two where noise decides (the control, and the spike only chargebacks can show)
GRADING = {8: None, 12: ("none", "fraud_rate_spike")}
GRADING_SEEDS = tuple(GRADING)


def _rules(*specs):
    from ..monitoring import AlertRule

    return [AlertRule(*spec) for spec in specs]


def _reference_rules():
    from ..monitoring import AlertRule

    return solved("7.4", {**globals(), "AlertRule": AlertRule})["my_rules"]


def grade(rules, seed: int = SEEN_SEED, scenarios=None):
    """Grade alert rules on the course's monitoring stream of every scenario (lab 07, section 5): the stream
    the lab shows by default, or another seed's (``seed=``) to see how your rules fare on other weeks."""
    from ..monitoring import stream

    return stream.grade_rules(rules, _streams(seed, scenarios))


_STREAMS: dict = {}


def _streams(seed: int, scenarios=None):
    """One seed's monitoring streams for the champion, read once per process (the workspace caches them)."""
    from .. import config
    from ..monitoring import stream
    from ..serving.model import require_registered

    key = (str(config.home()), require_registered("champion"), seed, scenarios)
    if key not in _STREAMS:
        _STREAMS[key] = stream.course_streams(settings=stream.StreamSettings(seed=seed), scenarios=scenarios)
    return _STREAMS[key]


def grading_streams():
    """The streams 7.4 is graded on (computed once, then cached in the workspace: about 12 s the first time)."""
    return {seed: _streams(seed, scenarios) for seed, scenarios in GRADING.items()}


def _grade_table(grades) -> str:
    table = grades.set_index("scenario")[["kind", "detected", "delay_days", "false_alarm_days", "first_rules"]]
    return table.to_string()


@exercise(
    "7.4",
    "Alert rules that wake you for the right reasons",
    solution="""
my_rules = [
    AlertRule("inputs drift", "drifted_columns", ">", 0),  # every data bug and covariate shift, in a day or two
    # fraud up with still inputs: only labels show it. The control's weekly rate is about 1.0 +- 0.3 per 1,000
    # (a Poisson count of 15-20 chargebacks); 1.8 is about 2.5 standard deviations above it
    AlertRule("chargebacks up", "chargebacks_per_1000", ">", 1.8),
]
""",
    hints=(
        "Grade a candidate with `grade(rules)` (`from mlops_lab.exercises.lab07 import grade`) and read delay_days "
        "and false_alarm_days; `grade(rules, seed=3)` grades it on other weeks of the same scenarios.",
        "One rule per kind of change: the drift report catches what moves the inputs; only chargebacks catch "
        "a fraud ring whose payments look like everyone else's.",
        "The check grades on weeks you have not seen. A threshold just above the highest control value on the lab's "
        "stream (1.41 chargebacks per 1,000) is tuned to that stream: the control's weekly rate is a count of 15-20 "
        "chargebacks, so it wanders by about 0.3 per 1,000 either way. Leave room for that noise.",
    ),
    reference=_reference_rules,
    cases=(
        wrong("inputs only", lambda: _rules(("inputs", "drifted_columns", ">", 0)), "fraud_rate_spike"),
        wrong("PR-AUC", lambda: _rules(("auc", "pr_auc", "<", 0.3)), "never known"),
        wrong("flag rate hair trigger", lambda: _rules(("inputs", "drifted_columns", ">", 0),
                                                       ("flags", "flag_rate", ">", 0.01)), "false alarm"),
        wrong("chargebacks too low", lambda: _rules(("inputs", "drifted_columns", ">", 0),
                                                    ("cb", "chargebacks_per_1000", ">", 1.0)), "false alarm"),
        wrong("tuned to the stream it was shown", lambda: _rules(("inputs", "drifted_columns", ">", 0),
                                                                 ("cb", "chargebacks_per_1000", ">", 1.45)),
              "weeks you did not see"),
        wrong("the server's latency: not a nightly figure", lambda: _rules(
            ("inputs", "drifted_columns", ">", 0), ("slow", "p99_latency_ms", ">", 100)), "server's own /metrics"),
        wrong("not a list of rules", lambda: ["drifted_columns > 0"], "AlertRule"),
        wrong("chargebacks too high to catch the spike in time", lambda: _rules(
            ("inputs", "drifted_columns", ">", 0), ("cb", "chargebacks_per_1000", ">", 3.0)), "fraud_rate_spike"),
        right("score drift plus inputs plus chargebacks over two windows",
              lambda: _rules(("score", "score_drifted", ">=", 1), ("inputs", "drifted_columns", ">=", 1),
                             ("cb", "chargebacks_per_1000", ">", 1.8, 2))),
        right("a tuple: drift share and a high chargeback bar, paged", lambda: tuple(_rules(
            ("inputs", "drift_share", ">", 0.0, 1, "page"), ("fraud", "chargebacks_per_1000", ">=", 2.0, 1, "page")))),
    ),
)
def _check_rules(rules) -> None:
    from ..monitoring import AlertRule

    require_attempt(rules)
    rules = [rules] if isinstance(rules, AlertRule) else rules
    assert isinstance(rules, list | tuple) and rules and all(isinstance(r, AlertRule) for r in rules), (
        "expected a list of AlertRule objects, e.g. [AlertRule('inputs drift', 'drifted_columns', '>', 0)]")
    server = [r.metric for r in rules if r.metric in ("error_rate", "p99_latency_ms")]
    assert not server, (
        f"{server[0]} comes from the server's own /metrics, not from the nightly monitor these rules run on: "
        "alert on it in Prometheus (exercise 7.5), and keep these rules to the monitor's metrics")
    for seed, scenarios in GRADING.items():
        grades = grade(rules, seed, scenarios)
        where = f"on weeks you did not see (seed {seed}; the lab shows seed {SEEN_SEED})"
        mine = f"\nYour rules there:\n{_grade_table(grades)}"
        control = grades.set_index("scenario").loc["none"]
        noisy = grades[grades["false_alarm_days"] > 0]
        if len(noisy):
            seen = grade(rules, SEEN_SEED)
            tuned = (" On the lab's stream they were quiet: a threshold just above what you saw there is tuned to "
                     "that stream's noise." if not (seen["false_alarm_days"] > 0).any() else "")
            days = ", ".join(f"{name} ({n} day(s))" for name, n in zip(noisy["scenario"], noisy["false_alarm_days"],
                                                                       strict=True))
            raise AssertionError(
                f"false alarms {where}: your rules fired with no drift on {days}. The control never changes, so "
                f"every firing there wakes someone for nothing ({int(control['false_alarm_days'])} of "
                f"{int(control['days_watched'])} control days).{tuned}{mine}")
        missed = grades[grades["should_fire"] & ~grades["detected"]]
        if len(missed):
            words = []
            for name, kind in zip(missed["scenario"], missed["kind"], strict=True):
                why = {"fraud rate": "its payments look as before, so only labels (chargebacks) show it",
                       "concept drift": "watch the inputs it moves, or the chargebacks"}.get(kind, "its inputs move")
                words.append(f"{name} ({kind}: {why})")
            extra = ""
            if any(r.metric in ("pr_auc", "recall") for r in rules):
                extra = (" PR-AUC is never known for recent windows: legitimate payments are confirmed only after "
                         "30 days, so a recent window has only fraud labels.")
            raise AssertionError(f"missed {where}: {'; '.join(words)}.{extra}{mine}")
        if scenarios is not None:
            continue  # a few scenarios only: their mean delay is not the course's figure
        delay = grades.loc[grades["should_fire"], "delay_days"].mean()
        assert delay <= MAX_MEAN_DELAY_DAYS, (
            f"every scenario is caught {where}, but after {delay:.1f} days on average; aim for at most "
            f"{MAX_MEAN_DELAY_DAYS} (lower thresholds, as long as the control stays quiet){mine}")


# ------------------------------------------------------------------ 7.5 PromQL alerting rules under promtool

PROM_ALERTS = ("InputDrift", "ScoringErrors")
DATA_DRIFT_SCENARIOS = ("holiday_season", "card_testing", "amount_in_cents", "device_feature_missing")

_PROM_REFERENCE = '''
groups:
- name: cardguard
  rules:
  - alert: InputDrift  # the nightly monitor publishes cardguard_monitor_* gauges (a textfile collector)
    expr: cardguard_monitor_drifted_columns > 0
    labels:
      severity: page
    annotations:
      summary: "{{ $value }} input column(s) drift against the training data"
  - alert: ScoringErrors  # the API's own /metrics: 5xx answers of the scoring endpoints, not /ready's 503
    expr: |
      sum(rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations", status=~"5.."}[5m]))
        / sum(rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations"}[5m])) > 0.01
    for: 5m
    labels:
      severity: page
'''


@functools.cache
def _prom_groups_for(version: str, home: str):
    from ..monitoring import alerts, stream

    streams = _streams(GRADING_SEEDS[0])
    groups = alerts.monitor_rule_tests(streams, stream.StreamSettings().drift_start,
                                       {name: ("InputDrift",) for name in DATA_DRIFT_SCENARIOS})
    return tuple(groups + alerts.server_rule_tests("ScoringErrors"))


def prometheus_rule_tests():
    """The promtool test groups 7.5 is checked on: a stream of every scenario the lab never shows (seed 8),
    as the nightly gauges, and two hours of the API's request counters (a normal day, an incident)."""
    from .. import config
    from ..serving.model import require_registered

    return list(_prom_groups_for(require_registered("champion"), str(config.home())))


_PROM_VERDICTS: dict[str, tuple[str, str]] = {}


def _prom_verdict(text: str) -> tuple[str, str]:
    """(which tool judged, the problem or ''), computed once per rules text."""
    from ..errors import LabError
    from ..monitoring import alerts

    if text not in _PROM_VERDICTS:
        groups = prometheus_rule_tests()
        try:
            how, failures = alerts.run_rule_tests(text, groups)
        except LabError as exc:
            # the course's evaluator reads only a small part of PromQL: what it cannot read is not wrong
            judged = "promtool" if "course's evaluator" not in str(exc) else "not judged"
            _PROM_VERDICTS[text] = (judged, str(exc))
            return _PROM_VERDICTS[text]
        by_name = {g.name: g for g in groups}
        problem = ""
        if failures:
            first = failures[0]
            kinds: dict = {}
            for f in failures:  # one line per (test, alert, what was expected), with how often it happened
                kinds.setdefault((f.group, f.alert, f.should_fire), []).append(f)
            lines = [same[0].words(by_name) + (f" (and at {len(same) - 1} more checked time(s) there)"
                                               if len(same) > 1 else "") for same in list(kinds.values())[:3]]
            more = f"; and in {len(kinds) - 3} more test(s)" if len(kinds) > 3 else ""
            if first.should_fire and first.group == "incident after a week up":
                why = ("the counters count since the server started: after a week of good requests, the incident's "
                       "errors barely move the share of the totals. Take the rate over the last few minutes "
                       "(`rate(...[5m])`) of both counters")
            elif first.group == "steady errors" and not first.should_fire:
                why = ("0.2% of scoring requests failing all day is this service's normal, not an incident: alert on "
                       "the share of scoring requests that fail, a ratio of sums, `sum(rate(5xx[5m])) / "
                       "sum(rate(all[5m]))`, above a threshold such as 1%. Without `sum()`, each series is divided "
                       "by itself (the same labels), which is 1 whenever a 500 happens")
            elif first.should_fire:
                why = ("a rule that never fires (or fires too late) catches nothing: check its threshold and its "
                       "`for:` against the figures the series carry")
            elif first.group in ("normal day", "incident"):
                why = ("only 5xx answers of the scoring endpoints (/predict, /predict/batch, /invocations) are errors: "
                       "a 422 is the client's bad payload, /ready answers 503 by design while the model loads, and "
                       "two isolated 500s in three hours are not an incident (use a share over a few minutes, with "
                       "`for:`)")
            else:
                why = ("an alert that fires with no drift wakes someone for nothing, then gets muted: the control "
                       "stream never drifts")
            problem = f"{'; '.join(lines)}{more}. {why[0].upper() + why[1:]}"
        _PROM_VERDICTS[text] = (how, problem)
    return _PROM_VERDICTS[text]


def _prom_yaml(value) -> str:
    import yaml

    return value if isinstance(value, str) else yaml.safe_dump(value, sort_keys=False)


@exercise(
    "7.5",
    "Prometheus alerting rules, tested by promtool",
    solution="prometheus_rules = '''" + _PROM_REFERENCE + "'''",
    hints=(
        "Two alerts: `InputDrift` on the gauge the nightly monitor publishes "
        "(`cardguard_monitor_drifted_columns`), and `ScoringErrors` on the API's counter "
        "`cardguard_requests_total{endpoint=..., status=...}`.",
        "An error rate is a ratio of rates: `sum(rate(errors[5m])) / sum(rate(all[5m]))`. Errors are 5xx answers "
        "(`status=~\"5..\"`) of the scoring endpoints (`endpoint=~\"/predict.*|/invocations\"`): a 422 is the "
        "client's fault, and /ready answers 503 while the model loads, by design.",
        "Add `for: 5m` so that one failed request does not page anyone, and keep the threshold well above the "
        "normal day's blips (1% is a common choice).",
    ),
    reference="prometheus_rules",
    cases=(
        wrong("4xx counted as errors", lambda: _PROM_REFERENCE.replace('status=~"5.."', 'status!="200"'),
              "a 422 is the client's bad payload"),
        wrong("every endpoint, /ready's 503 included", lambda: _PROM_REFERENCE.replace(
            '{endpoint=~"/predict.*|/invocations", status=~"5.."}', '{status=~"5.."}').replace(
            '{endpoint=~"/predict.*|/invocations"}', ''), "fired on a normal day"),
        wrong("any 500 at all", lambda: _PROM_REFERENCE.replace("> 0.01\n    for: 5m", "> 0\n    for: 0s"),
              "two isolated 500s"),
        wrong("drift on the score's KS (noise on the control)", lambda: _PROM_REFERENCE.replace(
            "cardguard_monitor_drifted_columns > 0", "cardguard_monitor_score_ks > 0.008"), "InputDrift fired"),
        wrong("drift bar too high to ever fire", lambda: _PROM_REFERENCE.replace(
            "cardguard_monitor_drifted_columns > 0", "cardguard_monitor_drifted_columns > 3"), "was not firing"),
        wrong("error alert that waits half an hour", lambda: _PROM_REFERENCE.replace("for: 5m", "for: 30m"),
              "ScoringErrors was not firing on an incident"),
        wrong("no error-rate alert", lambda: _PROM_REFERENCE.split("  - alert: ScoringErrors")[0], "ScoringErrors"),
        wrong("not YAML", lambda: "groups:\n  - name: cardguard\n    rules: [alert: InputDrift", "YAML"),
        wrong("raw counters, no rate() (red team)", lambda: _prom_text(
            "cardguard_monitor_drifted_columns > 0", "0s",
            'sum(cardguard_requests_total{endpoint=~"/predict.*|/invocations",status=~"5.."}) / '
            'sum(cardguard_requests_total{endpoint=~"/predict.*|/invocations"}) > 0.01', "5m"), "since the server started"),
        wrong("any 5xx for 5 minutes (red team)", lambda: _prom_text(
            "cardguard_monitor_drifted_columns > 0", "0s",
            'sum(rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations",status=~"5.."}[5m])) > 0', "5m"),
            "0.2% of scoring requests"),
        wrong("a ratio per series, no sum() (red team)", lambda: _prom_text(
            "cardguard_monitor_drifted_columns > 0", "0s",
            'rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations",status=~"5.."}[5m]) / '
            'rate(cardguard_requests_total{endpoint=~"/predict.*|/invocations"}[5m]) > 0.01', "1m"), "Without `sum()`"),
        right("increase over 10 minutes, /ready and /health excluded, drift share, as a dict", lambda: _prom_dict(
            "cardguard_monitor_drift_share > 0",
            'sum(increase(cardguard_requests_total{status=~"5.*", endpoint!~"/ready|/health|/metrics"}[10m])) / '
            'sum(increase(cardguard_requests_total{endpoint!~"/ready|/health|/metrics"}[10m])) > 0.02', "2m")),
        right("one column or more for an hour; errors over 2%, nothing else", lambda: _prom_text(
            "cardguard_monitor_drifted_columns >= 1", "1h",
            '(sum(rate(cardguard_requests_total{endpoint=~"/predict|/predict/batch|/invocations",status=~"5.."}[5m]))'
            ' / sum(rate(cardguard_requests_total{endpoint=~"/predict|/predict/batch|/invocations"}[5m]))) > 0.02',
            "3m")),
    ),
)
def _check_prometheus_rules(value) -> None:
    import yaml

    require_attempt(value)
    assert isinstance(value, str | dict), (
        f"expected the rules file's text (a string of YAML), got {type(value).__name__}")
    text = _prom_yaml(value)
    try:
        parsed = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise AssertionError(f"this is not valid YAML: {exc}".replace("\n", " ")) from None
    groups = parsed.get("groups") if isinstance(parsed, dict) else None
    assert isinstance(groups, list) and groups, (
        "a Prometheus rules file starts with `groups:`, a list of groups, each with a `name:` and `rules:`")
    names = [r.get("alert") for g in groups if isinstance(g, dict) for r in (g.get("rules") or [])
             if isinstance(r, dict)]
    missing = [a for a in PROM_ALERTS if a not in names]
    assert not missing, (f"no alert named {' or '.join(missing)} (the file has: {', '.join(map(str, filter(None, names))) or 'none'}); "
                         f"name the two alerts {' and '.join(PROM_ALERTS)}, so the tests can find them")
    how, problem = _prom_verdict(text)
    if how == "not judged":
        import re

        from ..monitoring.alerts import PROMTOOL_HOW

        unread = re.search(r"cannot read (.*?)\. promtool is part", problem, re.S)
        raise NotJudged(
            "your rules are not wrong for that: promtool is not installed, and the course's own evaluator reads "
            f"only the PromQL of the hints; {unread[1] if unread else 'your expression'} is beyond it. Install "
            f"promtool, then run this check again: {PROMTOOL_HOW}")
    if how != "promtool":
        from ..monitoring.alerts import PROMTOOL_HOW

        note = f"(checked with the course's own evaluator, because promtool is not installed: {PROMTOOL_HOW})"
        if problem:
            raise AssertionError(f"{problem} {note}")
        print(f"7.5: {note}")
        return
    assert not problem, f"{problem} (promtool test rules)"


def _prom_text(drift_expr, drift_for, error_expr, error_for):
    return (f"groups:\n- name: cardguard-alerts\n  rules:\n  - alert: InputDrift\n    expr: {drift_expr}\n"
            f"    for: {drift_for}\n  - alert: ScoringErrors\n    expr: '{error_expr}'\n    for: {error_for}\n")


def _prom_dict(drift_expr, error_expr, error_for):
    return {"groups": [{"name": "cardguard", "rules": [
        {"alert": "InputDrift", "expr": drift_expr, "labels": {"team": "fraud"}},
        {"alert": "ScoringErrors", "expr": error_expr, "for": error_for, "labels": {"team": "platform"}}]}]}


# ------------------------------------------------------------------ 7.6 performance before the labels arrive


def _counts_strict(p, scores, threshold):
    p, flagged = np.asarray(p, float), np.asarray(scores, float) > threshold
    return {"tp": p[flagged].sum(), "fp": (1 - p[flagged]).sum(), "fn": p[~flagged].sum(), "tn": (1 - p[~flagged]).sum()}


def _counts_hard(p, scores, threshold):
    p, flagged = np.asarray(p, float), np.asarray(scores, float) >= threshold
    fraud = p >= 0.5
    return {"tp": float((fraud & flagged).sum()), "fp": float((~fraud & flagged).sum()),
            "fn": float((fraud & ~flagged).sum()), "tn": float((~fraud & ~flagged).sum())}


def _counts_swapped(p, scores, threshold):
    p, flagged = np.asarray(p, float), np.asarray(scores, float) >= threshold
    return {"tp": p[flagged].sum(), "fp": p[~flagged].sum(), "fn": (1 - p[flagged]).sum(), "tn": (1 - p[~flagged]).sum()}


def _counts_in_place(p, scores, threshold):
    if isinstance(p, np.ndarray):
        p[np.asarray(scores) < threshold] *= 1.0  # harmless maths, but it writes: a view would be fine
        np.clip(p, 0, 1, out=p)
        p.sort()
    return _counts_reference()(p, scores, threshold)


def _counts_reference():
    return get("7.6").reference()


def _counts_pandas(p, scores, threshold):
    frame = pd.DataFrame({"p": np.asarray(p, float), "flag": np.asarray(scores, float) >= threshold})
    frame["q"] = 1 - frame["p"]
    sums = frame.groupby("flag")[["p", "q"]].sum().reindex([True, False], fill_value=0.0)
    return {"tp": sums.at[True, "p"], "fp": sums.at[True, "q"], "fn": sums.at[False, "p"], "tn": sums.at[False, "q"]}


def _counts_series_mask(p, scores, threshold):
    p, scores = pd.Series(p), pd.Series(scores)
    m = scores >= threshold  # aligned on the index: pd.Series(array) starts at 0, the lab's scores do not
    return {"tp": p[m].sum(), "fp": (1 - p[m]).sum(), "fn": p[~m].sum(), "tn": (1 - p[~m]).sum()}


def _counts_loop(p, scores, threshold):
    out = dict.fromkeys(("tp", "fp", "fn", "tn"), 0.0)
    for prob, score in zip(list(p), list(scores), strict=True):
        if score >= threshold:
            out["tp"] += prob
            out["fp"] += 1 - prob
        else:
            out["fn"] += prob
            out["tn"] += 1 - prob
    return out


@functools.cache
def _counts_trials() -> tuple[Trial, ...]:
    """Calibrated probabilities (fraud rare, a few high), scores with payments exactly at the threshold,
    thresholds at 0, 1 and between, no payment flagged and all flagged, arrays, lists and Series."""
    trials = []
    for k in range(22):
        rng = np.random.default_rng(500 + k)
        n = [1, 2, 5, 10, 50, 200, 1_000, 3_000][k % 8]
        scores = rng.beta(0.4, 6, n).round(3)
        threshold = [0.1, 0.05, 0.3, 0.0, 1.0, 0.107][k % 6]
        if n >= 5:
            scores[rng.choice(n, max(1, n // 10), replace=False)] = threshold  # payments exactly at the threshold
        p = np.clip(scores * rng.uniform(0.5, 1.5, n), 0, 1)
        form = ["arrays", "lists", "pandas Series (a shuffled index)", "arrays"][k % 4]
        args = (p, scores, threshold)
        if form == "lists":
            args = (p.tolist(), scores.tolist(), threshold)
        elif form.startswith("pandas"):
            index = rng.permutation(n) + 1000
            args = (pd.Series(p, index=index), pd.Series(scores, index=index), threshold)
        at = int((scores == threshold).sum())
        label = (f"{n:,} payment(s) as {form}, threshold={threshold:g}, {int((scores >= threshold).sum())} flagged "
                 f"({at} exactly at the threshold)")
        trials.append(Trial(label, args, size=n + 0.01 * k))
    # as the lab calls it: calibrated probabilities as an array beside the scores of a later window, a Series
    # whose index does not start at 0 (and the other way round)
    for k, (n, threshold, series_first) in enumerate([(5, 0.1, False), (40, 0.107, False), (300, 0.05, True),
                                                      (1_000, 0.3, False)]):
        rng = np.random.default_rng(600 + k)
        scores = rng.beta(0.4, 6, n).round(3)
        scores[rng.choice(n, max(1, n // 10), replace=False)] = threshold
        p = np.clip(scores * rng.uniform(0.5, 1.5, n), 0, 1)
        index = np.arange(n) + 2_000 + 37 * k
        if series_first:
            args, form = (pd.Series(p, index=index), scores, threshold), "probabilities as a Series"
        else:
            args, form = (p, pd.Series(scores, index=index, name="score"), threshold), "scores as a Series"
        label = (f"{n:,} payment(s), {form} indexed from {index[0]:,} and the other as an array (as the lab "
                 f"calls it), threshold={threshold:g}, {int((scores >= threshold).sum())} flagged")
        trials.append(Trial(label, args, size=n + 0.5 + 0.01 * k))
    return tuple(trials)


def _counts_compare(got, expected, trial):
    if not isinstance(got, dict):
        return f"expected_counts returned {type(got).__name__}; return a dict with the keys tp, fp, fn, tn"
    missing = [k for k in ("tp", "fp", "fn", "tn") if k not in got]
    if missing:  # more keys are fine: the text asks for these four
        return f"the dict has the keys {sorted(map(str, got))}; it needs tp, fp, fn and tn (it lacks {', '.join(missing)})"
    if same({k: got[k] for k in expected}, expected) is None:
        return None

    def show(counts):
        return ", ".join(f"{k}={float(counts[k]):.4g}" if isinstance(counts[k], int | float | np.number)
                         else f"{k}={counts[k]!r}" for k in ("tp", "fp", "fn", "tn"))

    problem = f"yours gives {show(got)}; expected {show(expected)}"
    p, scores, threshold = trial.args
    if same(got, _counts_strict(p, scores, threshold)) is None:
        return (f"{problem}: a payment whose score equals the threshold is flagged (score >= threshold), as the "
                "server decides")
    if same(got, _counts_hard(p, scores, threshold)) is None:
        return (f"{problem}: you rounded each probability to fraud or not. Expected counts add the probabilities "
                "themselves: a flagged payment with p = 0.3 is 0.3 of a true positive and 0.7 of a false positive")
    return (f"{problem}. A flagged payment (score >= threshold) adds p to tp and 1 - p to fp; an approved one adds "
            "p to fn and 1 - p to tn")


@exercise(
    "7.6",
    "Expected confusion counts before the labels land",
    solution='''
def expected_counts(probabilities, scores, threshold):
    p = np.asarray(probabilities, dtype=float)
    flagged = np.asarray(scores, dtype=float) >= threshold  # what the server decided
    return {"tp": float(p[flagged].sum()), "fp": float((1 - p[flagged]).sum()),
            "fn": float(p[~flagged].sum()), "tn": float((1 - p[~flagged]).sum())}
''',
    hints=(
        "Flagged payments are those with `score >= threshold` (the server's rule). Each one is fraud with its "
        "probability p: on average it adds p to the true positives and 1 - p to the false positives.",
        "Approved payments add p to the false negatives (fraud that got through) and 1 - p to the true negatives. "
        "The four counts sum to the number of payments.",
    ),
    reference="expected_counts",
    stub=lambda: _blank,
    trials=_counts_trials,
    cases=(
        wrong("strictly above the threshold", lambda: _counts_strict, "score >= threshold"),
        wrong("probabilities rounded to 0 or 1", lambda: _counts_hard, "rounded each probability"),
        wrong("fn and fp swapped", lambda: _counts_swapped, "adds p to fn"),
        wrong("sorts the caller's probabilities", lambda: _counts_in_place, "changed its input"),
        wrong("precision instead of the counts", lambda: lambda p, s, t: float(
            np.asarray(p)[np.asarray(s) >= t].sum() / max((np.asarray(s) >= t).sum(), 1)), "return a dict"),
        wrong("upper-case keys", lambda: lambda p, s, t: {k.upper(): v for k, v in _counts_reference()(p, s, t).items()},
              "it needs tp, fp, fn and tn"),
        wrong("Series built from the inputs: crashes on the lab's offset index (red team)", lambda: _counts_series_mask,
              "indexed from"),
        right("numpy scalars and an extra key n (red team)", lambda: lambda p, s, t: {
            **{k: np.float64(v) for k, v in _counts_reference()(p, s, t).items()}, "n": len(np.asarray(p))}),
        right("pandas groupby", lambda: _counts_pandas),
        right("a plain loop over pairs", lambda: _counts_loop),
    ),
)
def _check_expected_counts(func) -> None:
    require_attempt(func)
    assert callable(func), "expected a function expected_counts(probabilities, scores, threshold) returning a dict"
    differential(func, _counts_reference(), _counts_trials(), compare=_counts_compare, what="expected_counts")
