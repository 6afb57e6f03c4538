"""The data contract module: its own home, re-exported by data, and validation that never crashes."""

import ast
import pathlib

import pandas as pd
import pytest

from mlops_lab import contract, data


@pytest.fixture(scope="module")
def batch():
    return data.simulate_transactions(200, seed=3)


def test_data_re_exports_the_contract_names():
    for name in ("CONTRACT", "CONTRACT_VERSION", "Column", "contract_columns", "feature_columns",
                 "contract_hash", "describe_contract", "validate_batch", "ValidationReport"):
        assert getattr(data, name) is getattr(contract, name)


@pytest.mark.parametrize("module", ["contract.py", "serving/schemas.py", "serving/client.py"])
def test_contract_users_do_not_import_the_simulator(module):
    tree = ast.parse((pathlib.Path(contract.__file__).parent / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names} | {node.module for node in ast.walk(tree)
                                            if isinstance(node, ast.ImportFrom) and node.module}
    assert "data" not in imported


def test_empty_valid_batch_is_valid(batch):
    report = contract.validate_batch(batch.iloc[:0])
    assert report.ok and report.rows == 0


@pytest.mark.parametrize("change", [
    lambda b: b.astype({"hour": "float64"}),  # a wrong dtype on an empty batch raised TypeError
    lambda b: b.astype(object),
    lambda b: b.astype({"country_mismatch": "float64", "amount": "object"}),
])
def test_empty_batch_with_wrong_dtypes_is_reported_not_crashed(batch, change):
    report = contract.validate_batch(change(batch.iloc[:0]))
    assert not report.ok
    assert (report.violations["rule"].str.startswith("must be")).any()
    assert "dtype" in str(report)


def test_empty_frame_without_columns_lists_every_missing_column():
    report = contract.validate_batch(pd.DataFrame())
    assert set(report.violations["column"]) == {c.name for c in contract.CONTRACT}
    assert set(report.violations["rule"]) == {"is missing (required by the data contract)"}


def test_empty_feature_batch(batch):
    report = contract.validate_batch(batch[contract.feature_columns()].iloc[:0], columns=contract.feature_columns())
    assert report.ok
