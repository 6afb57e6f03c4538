"""An ipywidgets drift explorer: pick a scenario, a day and a column; see which columns drift in
the trailing window, why, and the two distributions overlaid. Thin: the profile computes, the
report module draws."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd

from .. import data
from . import report as render
from .stream import StreamSettings, scored

# matplotlib's text layout (its mathtext parser) is not thread-safe: a widget callback that draws from
# another thread while the kernel draws too fails with "ParseException ... (at char 0)". Draw under a
# lock, and from the thread that built the explorer (the kernel's main thread) when it has an event loop.
_DRAW_LOCK = threading.RLock()


class DriftExplorer:
    """``DriftExplorer(pipeline, threshold, profile).widget`` in a notebook cell.
    ``show(scenario, day, column)`` renders without widgets (also what the controls call)."""

    def __init__(self, pipeline, threshold: float, profile, settings: StreamSettings | None = None):
        import ipywidgets as w

        self.pipeline, self.threshold, self.profile = pipeline, threshold, profile
        self.settings = settings or StreamSettings()
        self._frames: dict[str, pd.DataFrame] = {}
        self.scenario = w.Dropdown(options=list(data.SCENARIOS), value="holiday_season", description="scenario")
        self.day = w.IntSlider(value=self.settings.drift_day + 3, min=self.settings.window_days,
                               max=self.settings.days, description="day")
        self.column = w.Dropdown(options=list(profile.columns_), value=next(iter(profile.columns_)), description="column")
        self.output = w.Output()
        for control in (self.scenario, self.day, self.column):
            control.observe(lambda _change: self.refresh(), names="value")
        self.widget = w.VBox([w.HBox([self.scenario, self.day, self.column]), self.output])
        self.last_report = None
        self._thread = threading.current_thread()
        try:
            import asyncio

            self._loop = asyncio.get_running_loop()  # in a kernel, the loop of the thread running cells
        except RuntimeError:
            self._loop = None
        self.refresh()

    def window(self, scenario: str, day: int) -> pd.DataFrame:
        """The trailing window that ends at midnight after ``day`` days, scored by the model."""
        if scenario not in self._frames:
            s = self.settings
            frame = data.simulate_transactions(days=s.days, start=s.start, seed=s.seed, scenario=scenario,
                                               drift_start=s.drift_start, per_day=s.per_day)
            self._frames[scenario] = scored(self.pipeline, self.threshold, frame)
        frame = self._frames[scenario]
        end = pd.Timestamp(self.settings.start) + pd.Timedelta(days=day)
        ts = frame["timestamp"]
        return frame[(ts >= end - pd.Timedelta(days=self.settings.window_days)) & (ts < end)]

    def title(self, scenario: str, day: int) -> str:
        """What the window is, in words: the control never drifts; other scenarios start on ``drift_day``."""
        s = self.settings
        if scenario == "none":
            return f"{scenario} (the control: no drift), window ending on day {day}"
        if day <= s.drift_day:
            return f"{scenario}, window ending on day {day} (before the drift begins on day {s.drift_day})"
        return f"{scenario}, window ending on day {day}, {day - s.drift_day} day(s) after the drift began"

    def show(self, scenario: str, day: int, column: str):
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        window = self.window(scenario, day)
        with _DRAW_LOCK:
            report = self.profile.compare(window[list(self.profile.columns_)])
            self.last_report = report
            display(HTML(render.report_html(report, self.title(scenario, day))))
            fig, ax = plt.subplots(figsize=(7, 3))
            if self.profile.columns_[column].kind == "numeric":
                plot_numeric(self.profile, window, column, ax=ax, report=report)
            else:
                render.plot_column(self.profile, window, column, ax=ax, report=report)
            plt.show()
            plt.close(fig)
        return report

    def refresh(self) -> None:
        if threading.current_thread() is not self._thread and self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._render)  # draw on the kernel's own thread
            return
        self._render()

    def _render(self) -> None:
        with _DRAW_LOCK:
            self.output.clear_output(wait=True)
            with self.output:
                self.show(self.scenario.value, self.day.value, self.column.value)


def plot_numeric(profile, current: pd.DataFrame, column: str, ax, report=None):
    """Reference and current values of a numeric column as the share of payments per bin. When the values
    span orders of magnitude (amounts in cents beside amounts in euros), the bins are log-spaced and the x
    axis logarithmic; shares (not densities) keep a far-away current window as tall as the reference."""
    from .drift import _numeric

    ref = np.asarray(profile.columns_[column].values, dtype=float)
    cur, _, _ = _numeric(current[column])
    cur = np.asarray(cur, dtype=float)
    both = np.concatenate([ref, cur])
    if not both.size:
        ax.set_title(f"{column}: no values")
        return ax
    positive = both.min() > 0
    wide = positive and np.quantile(both, 0.99) / max(np.quantile(both, 0.01), 1e-12) > 100
    bins = np.geomspace(both.min(), both.max(), 60) if wide else np.histogram_bin_edges(both, 50)
    ax.hist(ref, bins=bins, weights=np.full(len(ref), 1 / len(ref)), alpha=0.5, label=f"reference ({len(ref):,})")
    if cur.size:
        ax.hist(cur, bins=bins, weights=np.full(len(cur), 1 / len(cur)), alpha=0.5, label=f"current ({len(cur):,})")
    if wide:
        ax.set_xscale("log")
    ax.set_ylabel("share of payments")
    title = column
    if report is not None:
        row = report.table.set_index("column").loc[column]
        title += f": {'DRIFT' if row['drifted'] else 'no drift'}"
    ax.set_title(title + (" (log scale)" if wide else ""))
    ax.legend()
    return ax


def drift_explorer(model=None, profile=None, settings: StreamSettings | None = None):
    """The explorer for the course's champion and reference profile (lab 07)."""
    from .stream import champion, course_profile

    model = model or champion()
    explorer = DriftExplorer(model.pipeline, model.threshold, profile or course_profile(model), settings)
    return explorer.widget
