"""Rendering drift reports: HTML and matplotlib plots. Nothing here computes a statistic; it
draws what ``ReferenceProfile`` and ``DriftReport`` computed, so it sits below them (a finished
report is handed in; ``DriftReport._repr_html_`` calls down to ``report_html``)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .columns import MISSING, UNSEEN, _label_counts, _numeric

if TYPE_CHECKING:
    from .drift import DriftReport, ReferenceProfile


def report_html(report: DriftReport, title: str = "Drift report") -> str:
    """The report as an HTML table: drifted rows highlighted, the reason in words."""
    rows = []
    for r in report.table.itertuples():
        colour = "#fde2e1" if r.drifted else "transparent"
        p = "" if pd.isna(r.p_value_corrected) else f"{r.p_value_corrected:.2g}"
        effect = "" if pd.isna(r.effect_size) else f"{r.effect_size:.3f}"
        rows.append(
            f"<tr style='background:{colour}'><td><b>{html.escape(r.column)}</b></td><td>{r.kind}</td>"
            f"<td>{r.test}</td><td>{p}</td><td>{effect}</td><td>{r.n_reference:,}</td><td>{r.n_current:,}</td>"
            f"<td>{'DRIFT' if r.drifted else 'ok'}</td><td style='text-align:left'>{html.escape(r.reason)}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("column", "kind", "test", "p (BH)", "effect", "n ref", "n cur",
                                             "verdict", "reason"))
    return (f"<div><h4>{html.escape(title)}: {html.escape(report.verdict)}</h4>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def save_html(report: DriftReport, path, title: str = "Drift report") -> Path:
    path = Path(path)
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<body style='font-family:sans-serif'>{report_html(report, title)}</body>")
    return path


def plot_column(profile: ReferenceProfile, current: pd.DataFrame, column: str, ax=None, report=None):
    """Reference and current distributions of one column, overlaid (histograms or category shares)."""
    import matplotlib.pyplot as plt

    ref = profile.columns_[column]
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    if ref.kind == "numeric":
        cur, _, _ = _numeric(current[column])
        both = np.concatenate([ref.values, cur])
        log = both.size and both.min() > 0 and np.quantile(both, 0.99) / max(np.quantile(both, 0.01), 1e-12) > 100
        bins = (np.geomspace(both.min(), both.max(), 50) if log else np.histogram_bin_edges(both, 50)) if both.size else 10
        ax.hist(ref.values, bins=bins, density=True, alpha=0.5, label="reference")
        if cur.size:
            ax.hist(cur, bins=bins, density=True, alpha=0.5, label="current")
        if log:
            ax.set_xscale("log")
    else:
        counts = _label_counts(current[column])
        shares = counts / max(counts.sum(), 1)
        cats = [c for c in ref.counts if c != MISSING]
        ref_total = sum(ref.counts.values())
        names = [*cats, UNSEEN, MISSING]
        ref_share = [ref.counts.get(c, 0) / ref_total for c in cats] + [0, ref.counts.get(MISSING, 0) / ref_total]
        cur_share = [shares.get(c, 0) for c in cats] + [shares.drop([*cats, MISSING], errors="ignore").sum(),
                                                        shares.get(MISSING, 0)]
        x = np.arange(len(names))
        ax.bar(x - 0.2, ref_share, 0.4, label="reference")
        ax.bar(x + 0.2, cur_share, 0.4, label="current")
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_ylabel("share")
    title = column
    if report is not None:
        row = report.table.set_index("column").loc[column]
        title += f": {'DRIFT' if row['drifted'] else 'no drift'}"
    ax.set_title(title)
    ax.legend()
    return ax


def plot_report(profile: ReferenceProfile, current: pd.DataFrame, report: DriftReport, columns=None):
    """One panel per column (the drifted ones by default, else all)."""
    import matplotlib.pyplot as plt

    columns = list(columns or report.drifted_columns or report.table["column"])
    fig, axes = plt.subplots(len(columns), 1, figsize=(7, 2.6 * len(columns)), squeeze=False)
    for ax, column in zip(axes[:, 0], columns, strict=True):
        plot_column(profile, current, column, ax=ax, report=report)
    fig.tight_layout()
    return fig
