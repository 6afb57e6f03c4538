"""An ipywidgets drift explorer: pick a scenario, a day and a column; see which columns drift in
the trailing window, why, and the two distributions overlaid. Thin: the profile computes, the
report module draws."""

from __future__ import annotations

import pandas as pd

from .. import data
from . import report as render
from .stream import StreamSettings, scored


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

    def show(self, scenario: str, day: int, column: str):
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        window = self.window(scenario, day)
        report = self.profile.compare(window[list(self.profile.columns_)])
        self.last_report = report
        started = "" if day <= self.settings.drift_day else f", {day - self.settings.drift_day} day(s) after the drift began"
        display(HTML(render.report_html(report, f"{scenario}, window ending on day {day}{started}")))
        fig, ax = plt.subplots(figsize=(7, 3))
        render.plot_column(self.profile, window, column, ax=ax, report=report)
        plt.show()
        return report

    def refresh(self) -> None:
        self.output.clear_output(wait=True)
        with self.output:
            self.show(self.scenario.value, self.day.value, self.column.value)


def drift_explorer(model=None, profile=None, settings: StreamSettings | None = None):
    """The explorer for the course's champion and reference profile (lab 07)."""
    from .stream import champion, course_profile

    model = model or champion()
    explorer = DriftExplorer(model.pipeline, model.threshold, profile or course_profile(model), settings)
    return explorer.widget
