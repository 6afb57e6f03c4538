"""Drift: the statistics against scipy, properties (hypothesis), edge cases, and ground truth."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from mlops_lab import contract, data
from mlops_lab.errors import LabError
from mlops_lab.monitoring import REPORT_COLUMNS, ReferenceProfile
from mlops_lab.monitoring.drift import TAIL_P, ks_wasserstein, psi

# the sample sizes lab 07 uses: a 28-day reference (the training period) and weekly windows
LAB_REFERENCE_DAYS, LAB_WINDOW_DAYS = 28, 7
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def course_profile():
    return ReferenceProfile.fit(data.simulate_transactions(days=LAB_REFERENCE_DAYS, seed=1), contract=True)


@pytest.mark.parametrize("n,m", [(50, 80), (3_000, 9_000), (20_000, 15_000), (40_000, 40_000)])
def test_ks_and_wasserstein_match_scipy(n, m):
    rng = np.random.default_rng(n)
    a = np.sort(rng.normal(size=n))
    b = np.sort(rng.normal(0.05, 1.1, size=m).round(1))  # ties, too
    d, p, w = ks_wasserstein(a, b)
    ref = stats.ks_2samp(a, b)
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    if ref.pvalue >= TAIL_P:  # scipy's own p-value where a verdict could depend on its digits
        assert p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)
    else:  # the far tail: the limiting distribution (scipy's exact one takes 0.1-0.2 s per column there)
        assert p < TAIL_P and abs(np.log10(p) - np.log10(ref.pvalue)) < 0.5
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.02, 0.04, 0.3])
def test_ks_and_wasserstein_match_scipy_without_ties_at_window_sizes(shift):
    """Continuous values (no ties) at benchmark sizes, from no drift to a far-tail p-value."""
    rng = np.random.default_rng(int(shift * 100))
    a, b = np.sort(rng.normal(size=30_000)), np.sort(rng.normal(shift, 1, size=25_000))
    d, p, w = ks_wasserstein(a, b)
    ref = stats.ks_2samp(a, b)
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    if ref.pvalue >= TAIL_P:
        assert p == pytest.approx(ref.pvalue, rel=1e-6, abs=1e-300)
    else:  # asymptotic: within a few per cent to about 1e-20, of the right order of magnitude beyond
        assert p < TAIL_P and p == pytest.approx(ref.pvalue, rel=0.05 if ref.pvalue > 1e-20 else 0.9)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


def test_psi_noise_level_holds_under_no_drift():
    rng = np.random.default_rng(0)
    ref = np.sort(rng.normal(size=20_000))
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    values = [psi(ref, np.sort(rng.normal(size=2_000)), edges) for _ in range(200)]
    below = np.mean([v <= noise for v, noise in values])
    assert 0.9 <= below <= 0.99  # the noise level is a 95th percentile
    shifted, noise = psi(ref, np.sort(rng.normal(0.3, 1, size=2_000)), edges)
    assert shifted > 3 * noise


def test_report_has_the_public_columns(course_profile):
    report = course_profile.compare(data.simulate_transactions(days=1, seed=5))
    assert list(report.table.columns) == REPORT_COLUMNS
    assert report.table["drifted"].dtype == bool
    assert set(report.table["column"]) == set(contract.feature_columns())
    assert report.table["p_value_corrected"].ge(report.table["p_value"]).all()
    assert not report.drifted and report.verdict.startswith("No drift")


@pytest.mark.parametrize("scenario", list(data.SCENARIOS))
def test_each_scenario_flags_exactly_its_drifted_columns(course_profile, scenario):
    window = data.simulate_transactions(days=LAB_WINDOW_DAYS, seed=11, scenario=scenario, start="2026-02-02")
    report = course_profile.compare(window)
    assert sorted(report.drifted_columns) == sorted(data.scenario_truth(scenario).drifted_columns), report


def test_control_false_alarm_rate_over_20_seeds(course_profile):
    alarms = []
    for seed in range(200, 220):
        window = data.simulate_transactions(days=LAB_WINDOW_DAYS, seed=seed, start="2026-02-02")
        alarms += course_profile.compare(window).drifted_columns
    # 0 of 20 windows x 10 columns: the false-alarm rate at the lab's sizes is 0/200
    assert alarms == []


def test_huge_windows_do_not_flag_negligible_shifts():
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(size=200_000), "c": rng.choice(list("abc"), 200_000, p=[.5, .3, .2])})
    cur = pd.DataFrame({"x": rng.normal(0.03, 1, size=200_000),
                        "c": rng.choice(list("abc"), 200_000, p=[.49, .31, .2])})
    report = ReferenceProfile.fit(ref).compare(cur)
    table = report.table.set_index("column")
    assert (table["p_value_corrected"] < 0.05).all()  # real, detectable ...
    assert not report.drifted  # ... and too small to matter
    assert table["reason"].str.contains("negligible").all()


def test_tiny_windows_do_not_flag_noise(course_profile):
    for seed in range(5):
        assert not course_profile.compare(data.simulate_transactions(40, seed=seed)).drifted


# ------------------------------------------------------------------ properties

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@PROPERTY
@given(st.lists(finite, min_size=30, max_size=400), st.lists(st.sampled_from("abcd"), min_size=30, max_size=400))
def test_identical_data_never_drifts(xs, cats):
    n = min(len(xs), len(cats))
    frame = pd.DataFrame({"x": xs[:n], "c": cats[:n]})
    report = ReferenceProfile.fit(frame).compare(frame)
    assert not report.drifted
    assert (report.table["p_value"] == 1).all()


@PROPERTY
@given(finite, st.integers(30, 500), st.integers(30, 500))
def test_a_constant_column_gives_p_1(value, n, m):
    report = ReferenceProfile.fit(pd.DataFrame({"x": [value] * n})).compare(pd.DataFrame({"x": [value] * m}))
    row = report.table.iloc[0]
    assert row["p_value"] == 1 and not row["drifted"]
    assert "constant" in row["reason"]


@settings(max_examples=5, deadline=None)
@given(st.integers(0, 10_000))
def test_a_shift_of_0_2_sd_at_10000_rows_is_caught(seed):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"x": rng.normal(10, 3, 10_000)})
    cur = pd.DataFrame({"x": rng.normal(10 + 0.2 * 3, 3, 10_000)})
    assert ReferenceProfile.fit(ref).compare(cur).drifted_columns == ["x"]


@PROPERTY
@given(st.integers(0, 10_000))
def test_row_order_does_not_matter(seed):
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"x": rng.normal(size=300), "c": rng.choice(list("xyz"), 300)})
    cur = pd.DataFrame({"x": rng.normal(0.3, 1, size=200), "c": rng.choice(list("xyzw"), 200)})
    cur.loc[::7, "x"] = np.nan
    profile = ReferenceProfile.fit(ref)
    a = profile.compare(cur).table
    b = profile.compare(cur.sample(frac=1, random_state=seed)).table
    pd.testing.assert_frame_equal(a, b)
    c = ReferenceProfile.fit(ref.sample(frac=1, random_state=seed + 1)).compare(cur).table
    pd.testing.assert_frame_equal(a, c)


@PROPERTY
@given(st.lists(st.sampled_from(["a", "b", "new", None]), min_size=30, max_size=300),
       st.lists(st.one_of(finite, st.just(float("nan")), st.just(float("inf"))), min_size=30, max_size=300))
def test_unseen_categories_and_missing_values_are_reported(cats, xs):
    ref = pd.DataFrame({"c": ["a", "b"] * 50, "x": np.linspace(0, 1, 100)})
    n = min(len(cats), len(xs))
    cur = pd.DataFrame({"c": cats[:n], "x": xs[:n]})
    report = ReferenceProfile.fit(ref).compare(cur)
    assert report.table["drifted"].isin([True, False]).all()
    detail = report.details.set_index("column")
    c, x = cur["c"], pd.Series(xs[:n])
    assert detail.loc["c", "missing_current"] == pytest.approx(c.isna().mean())
    assert detail.loc["x", "missing_current"] == pytest.approx((~np.isfinite(x)).mean())
    if (c == "new").any():
        assert "new" in detail.loc["c", "unseen"]
        assert "unseen categories: new" in detail.loc["c", "reason"]
    if np.isinf(x).any():
        assert "infinite" in detail.loc["x", "reason"]


# ------------------------------------------------------------------ defined results for awkward input


def test_empty_window_single_row_nan_and_inf(course_profile):
    window = data.simulate_transactions(days=1, seed=3)
    empty = course_profile.compare(window.iloc[:0]).table
    assert not empty["drifted"].any() and empty["reason"].str.startswith("empty window").all()
    single = course_profile.compare(window.iloc[:1]).table
    assert not single["drifted"].any() and single["reason"].str.contains("at least 30").all()
    broken = window.copy()
    broken["amount"] = np.inf
    broken.loc[::2, "hour"] = np.nan
    table = course_profile.compare(broken).table.set_index("column")
    assert table.loc["amount", "drifted"] and "infinite" in table.loc["amount", "reason"]
    assert table.loc["hour", "drifted"] and "missing-value rate 0.0% -> 50.0%" in table.loc["hour", "reason"]
    assert not table.drop(["amount", "hour"])["drifted"].any()


def test_columns_that_do_not_match_are_named(course_profile):
    window = data.simulate_transactions(100, seed=3).rename(columns={"amount": "amount_eur"})
    with pytest.raises(LabError, match="lacks column.*amount.*profile does not: .*amount_eur"):
        course_profile.compare(window)


def test_output_drift_is_in_the_report():
    rng = np.random.default_rng(0)
    ref = pd.DataFrame({"x": rng.normal(size=5_000), "score": rng.beta(1, 60, 5_000)})
    ref["decision"] = np.where(ref["score"] > 0.05, "flag", "approve")
    cur = pd.DataFrame({"x": rng.normal(size=5_000), "score": rng.beta(1, 25, 5_000)})
    cur["decision"] = np.where(cur["score"] > 0.05, "flag", "approve")
    report = ReferenceProfile.fit(ref).compare(cur)
    assert list(report.output_drift["column"]) == ["score", "decision"]
    assert report.drifted_columns == ["score", "decision"]


def test_json_round_trip_and_contract_version(course_profile, tmp_path):
    path = course_profile.save(tmp_path / "profile.json")
    window = data.simulate_transactions(days=1, seed=9, scenario="holiday_season")
    pd.testing.assert_frame_equal(ReferenceProfile.load(path).compare(window).table,
                                  course_profile.compare(window).table)
    stored = json.loads(path.read_text())
    stored["contract_version"], stored["contract_hash"] = "0.9", "0123456789ab"
    path.write_text(json.dumps(stored))
    with pytest.raises(LabError, match="contract v0.9.*refit"):
        ReferenceProfile.load(path)


def test_report_renders_html_and_plots(course_profile, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from mlops_lab.monitoring import report as render

    window = data.simulate_transactions(days=7, seed=4, scenario="amount_in_cents", start="2026-02-02")
    report = course_profile.compare(window)
    page = render.save_html(report, tmp_path / "drift.html").read_text()
    assert "Drift in 1 of 10 columns: amount" in page and page.count("DRIFT") == 1
    fig = render.plot_report(course_profile, window, report, columns=["amount", "channel"])
    assert [ax.get_title() for ax in fig.axes] == ["amount: DRIFT", "channel: no drift"]
