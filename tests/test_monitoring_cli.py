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


# --- issue 23: what the monitor cannot compare is exit 2 with one line, before any test runs


def _monitor(*args):
    return run_cli("monitor", *map(str, args))


def _one_line_error(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_monitor_without_contract_skips_ids_and_says_so(tmp_path):
    data.simulate_transactions(days=2, seed=1).to_csv(tmp_path / "reference.csv", index=False)
    data.simulate_transactions(days=1, seed=2).to_csv(tmp_path / "current.csv", index=False)
    result = _monitor(tmp_path / "reference.csv", tmp_path / "current.csv")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Skipped transaction_id: unique per row, an id" in result.stdout
    assert "No drift" in result.stdout and "transaction_id" not in result.stdout.split("No drift", 1)[1]


def test_monitor_empty_inputs_and_bad_paths_are_exit_2(tmp_path):
    frame = data.simulate_transactions(200, seed=1)
    frame.to_parquet(tmp_path / "reference.parquet")
    frame.head(0).to_csv(tmp_path / "header-only.csv", index=False)
    (tmp_path / "nothing.csv").write_text("")
    frame.head(0).to_parquet(tmp_path / "no-rows.parquet")
    ref = tmp_path / "reference.parquet"
    _one_line_error(_monitor(ref, tmp_path / "header-only.csv"), "CURRENT", "no rows")
    _one_line_error(_monitor(ref, tmp_path / "nothing.csv"), "CURRENT", "is empty")
    _one_line_error(_monitor(tmp_path / "no-rows.parquet", ref), "REFERENCE", "no rows")
    _one_line_error(_monitor(ref, tmp_path / "missing.csv"), "CURRENT", "does not exist")
    _one_line_error(_monitor(ref, tmp_path), "is a folder")
    _one_line_error(_monitor(ref, ref, "--html", tmp_path / "no-such-folder" / "drift.html"),
                    "no-such-folder", "does not exist")
    assert not (tmp_path / "no-such-folder").exists()


def test_monitor_names_type_problems_before_testing(tmp_path):
    reference = data.simulate_transactions(400, seed=1)
    reference.to_csv(tmp_path / "reference.csv", index=False)
    ref = tmp_path / "reference.csv"

    def current(name, change):
        frame = data.simulate_transactions(300, seed=2)
        change(frame)
        frame.to_csv(tmp_path / name, index=False)
        return tmp_path / name

    def all_nan(f):
        f["distance_from_home_km"] = float("nan")

    def euros(f):
        f["amount"] = [f"{a:.2f} EUR" for a in f["amount"]]

    bool_column = "country_mismatch"  # a boolean of the contract

    def yes_no(f):
        f[bool_column] = f[bool_column].map({True: "yes", False: "no"})

    for args in ([], ["--contract"]):
        line = _one_line_error(_monitor(ref, current("nan.csv", all_nan), *args), "distance_from_home_km is empty")
        assert "CURRENT" in line
        _one_line_error(_monitor(ref, current("eur.csv", euros), *args), "amount", "'12.50 EUR'"[:0] + "EUR",
                        "plain numbers")
        _one_line_error(_monitor(ref, current("yes.csv", yes_no), *args), bool_column, "yes/no")
    text = (tmp_path / "reference.csv").read_text()
    (tmp_path / "cut.csv").write_text(text[: text.index("\n", len(text) // 2) + 25])
    _one_line_error(_monitor(ref, tmp_path / "cut.csv"), "ends mid-line", "cut short")


def test_drift_is_still_exit_1(tmp_path):
    data.simulate_transactions(days=3, seed=1).to_csv(tmp_path / "reference.csv", index=False)
    data.simulate_transactions(days=1, seed=2, scenario="amount_in_cents").to_csv(tmp_path / "current.csv", index=False)
    result = _monitor(tmp_path / "reference.csv", tmp_path / "current.csv")
    assert result.returncode == 1 and "amount" in result.stdout and "transaction_id" not in result.stdout.split(
        "Skipped transaction_id", 1)[1].split("\n", 1)[1]
