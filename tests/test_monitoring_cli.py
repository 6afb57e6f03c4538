"""`mlops-lab monitor`: a drift report from two files, exit code 1 on drift."""

from mlops_lab import data

from .conftest import run_cli


def test_monitor_command_reports_drift_and_writes_html(tmp_path):
    data.simulate_transactions(days=3, seed=1).to_parquet(tmp_path / "reference.parquet")
    data.simulate_transactions(days=1, seed=2, scenario="amount_in_cents").to_parquet(tmp_path / "current.parquet")
    data.simulate_transactions(days=1, seed=3).to_parquet(tmp_path / "calm.parquet")
    drifted = run_cli("monitor", str(tmp_path / "reference.parquet"), str(tmp_path / "current.parquet"),
                      "--contract", "--html", str(tmp_path / "drift.html"))
    assert drifted.returncode == 1, drifted.stderr
    assert "Drift in 1 of 10 columns: amount." in drifted.stdout
    assert "Drift in 1 of 10 columns" in (tmp_path / "drift.html").read_text()
    calm = run_cli("monitor", str(tmp_path / "reference.parquet"), str(tmp_path / "calm.parquet"), "--contract")
    assert calm.returncode == 0 and "No drift" in calm.stdout


def test_monitor_command_names_missing_columns(tmp_path):
    frame = data.simulate_transactions(300, seed=1)
    frame.to_parquet(tmp_path / "reference.parquet")
    frame.drop(columns=["hour"]).to_csv(tmp_path / "current.csv", index=False)
    result = run_cli("monitor", str(tmp_path / "reference.parquet"), str(tmp_path / "current.csv"), "--contract")
    assert result.returncode == 2 and "lacks column(s) the profile has: hour" in result.stderr
