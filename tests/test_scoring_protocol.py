"""MLflow's scoring protocol: our /invocations next to a real `mlflow models serve --env-manager local`
serving the same registered champion, and MLflow's own client against our server.

The request cases are ported from MLflow's scoring-server tests (tests/pyfunc/test_scoring_server.py in
the mlflow repository), those that apply to a tabular model; each names the MLflow test it comes from.
Every case MLflow answers with 200 gets the same predictions from us (to 1e-9); every case MLflow
rejects, we reject with a 4xx. CONTRACT_CASES are where we differ on purpose: MLflow scores rows that
break the data contract, we answer 422 naming the row and field."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from mlops_lab import config, data
from mlops_lab.serving import start_server, to_payload
from mlops_lab.serving.schemas import MAX_BATCH
from mlops_lab.serving.server import free_port, wait_until_ready

from .conftest import using_home

J, CSV = "application/json", "text/csv"


@pytest.fixture(scope="module")
def servers(course_home, tmp_path_factory):
    """(mlflow's url, ours) both serving the champion of the course workspace."""
    with using_home(course_home):
        port = free_port()
        # both URIs: mlflow.set_registry_uri() exports MLFLOW_REGISTRY_URI, so an earlier test's store leaks in
        env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri(), "MLFLOW_REGISTRY_URI": config.tracking_uri(),
               # `mlflow models serve` execs uvicorn from PATH
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        log = tmp_path_factory.mktemp("mlflow") / "serve.log"
        with open(log, "wb") as out:
            mlflow = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m",
                                       f"models:/{config.model_name()}@champion", "--env-manager", "local",
                                       "-h", "127.0.0.1", "-p", str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            mlflow_url = f"http://127.0.0.1:{port}"
            wait_until_ready(mlflow_url, 240, alive=lambda: mlflow.poll() is None, logs=log.read_text, path="/ping")
            # one after the other: two model loads at once on a busy 2-core machine can take minutes
            with start_server(prediction_log=tmp_path_factory.mktemp("ours") / "p.jsonl", timeout=240) as ours:
                yield mlflow_url, ours.url
        finally:
            mlflow.terminate()
            mlflow.wait(30)


@pytest.fixture(scope="module")
def frame():
    """Five payments as a DataFrame of the contract's features, missing values as NaN (as pandas has them)."""
    payments = data.simulate_transactions(400, start="2026-03-02", seed=5)
    with_missing = payments[payments["avg_amount_30d"].isna() | payments["distance_from_home_km"].isna()].head(2)
    chosen = pd.concat([payments.head(3), with_missing])
    assert chosen[data.feature_columns()].isna().any().any()  # the NaN-as-missing path is exercised
    return chosen[data.feature_columns()].reset_index(drop=True)


def _records(frame):
    return to_payload(frame)


def _dumps(value) -> str:
    return json.dumps(value)  # NaN stays NaN, as MLflow's client sends it


# (name, the MLflow test it is ported from, body builder, content type)
PORTED = [
    ("malformed json", "responds_to_malformed_json_input", lambda f: "this is,,,, not valid json", J),
    ("json number", "responds_to_invalid_json_format", lambda f: "1", J),
    ("json string", "responds_to_invalid_json_format", lambda f: '"1"', J),
    ("json list", "responds_to_invalid_json_format", lambda f: "[1]", J),
    ("no format key", "responds_to_invalid_json_format", lambda f: _dumps({"not": "a serialized dataframe"}), J),
    ("two format keys", "responds_to_invalid_json_format",
     lambda f: _dumps({"dataframe_records": [], "dataframe_split": {"data": []}}), J),
    ("records given split", "responds_to_invalid_pandas_input_format",
     lambda f: _dumps({"dataframe_records": f.to_dict(orient="split")}), J),
    ("split given records", "responds_to_invalid_pandas_input_format",
     lambda f: _dumps({"dataframe_split": _records(f)}), J),
    ("split index and data mismatch", "responds_to_invalid_dataframe",
     lambda f: _dumps({"dataframe_split": {"index": [1, 2], "data": [[1], [2], [3]]}}), J),
    ("incompatible dataframe", "responds_to_incompatible_inference_dataframe",
     lambda f: _dumps({"dataframe_split": pd.DataFrame({"0": range(10)}).to_dict(orient="split")}), J),
    ("empty csv", "responds_to_invalid_csv_input", lambda f: "", CSV),
    ("records", "successfully_evaluates_correct_dataframes_with_pandas_records_orientation",
     lambda f: _dumps({"dataframe_records": _records(f)}), J),
    ("records charset", "successfully_evaluates_correct_dataframes_with_pandas_records_orientation",
     lambda f: _dumps({"dataframe_records": _records(f)}), J + "; charset=UTF-8"),
    ("split", "successfully_evaluates_correct_dataframes_with_pandas_split_orientation",
     lambda f: _dumps({"dataframe_split": f.to_dict(orient="split")}), J),
    ("split charset", "successfully_evaluates_correct_dataframes_with_pandas_split_orientation",
     lambda f: _dumps({"dataframe_split": f.to_dict(orient="split")}), J + "; charset=UTF-8"),
    ("unsupported content type", "responds_to_invalid_content_type_request_with_unsupported_content_type_code",
     lambda f: f.to_json(orient="split"), "not_a_supported_content_type"),
    ("unrecognized content type parameter", "responds_to_invalid_content_type_request_with_unrecognized_content_param",
     lambda f: f.to_json(orient="split"), J + "; something=something"),
    ("instances as lists", "successfully_evaluates_correct_tf_serving_sklearn",
     lambda f: _dumps({"instances": f.astype(object).where(f.notna(), None).values.tolist()}), J),
    ("instances as records", "successfully_evaluates_correct_tf_serving_keras_instances",
     lambda f: _dumps({"instances": _records(f)}), J),
    ("inputs as columns", "serving_model_with_schema (inputs)",
     lambda f: _dumps({"inputs": f.astype(object).where(f.notna(), None).to_dict(orient="list")}), J),
    ("split, shuffled columns", "parse_with_schema", lambda f: _dumps({"dataframe_split": f[f.columns[::-1]].to_dict(
        orient="split")}), J),
    ("records, shuffled columns", "parse_with_schema",
     lambda f: _dumps({"dataframe_records": f[f.columns[::-1]].to_dict(orient="records")}), J),
    ("csv", "parse_with_schema_csv", lambda f: f.to_csv(index=False), CSV),
    ("csv, shuffled columns", "parse_with_schema_csv", lambda f: f[f.columns[::-1]].to_csv(index=False), CSV),
    ("params not in the model's schema", "serving_model_with_param_schema",
     lambda f: _dumps({"dataframe_split": f.to_dict(orient="split"), "params": {"invalid_param": "value"}}), J),
    ("split with index", "split_oriented_json_to_df",
     lambda f: _dumps({"dataframe_split": {**f.to_dict(orient="split"), "index": list(range(10, 10 + len(f)))}}), J),
    ("charset other than utf-8", "scoring_server.invocations (charset check)",
     lambda f: _dumps({"dataframe_records": _records(f)}), J + "; charset=latin-1"),
]


@pytest.mark.parametrize("name, origin, body, content_type", PORTED, ids=[c[0] for c in PORTED])
def test_mlflow_case(servers, frame, name, origin, body, content_type):
    mlflow_url, ours_url = servers
    payload = body(frame)
    theirs = httpx.post(f"{mlflow_url}/invocations", content=payload, headers={"content-type": content_type}, timeout=60)
    ours = httpx.post(f"{ours_url}/invocations", content=payload, headers={"content-type": content_type}, timeout=60)
    if theirs.status_code == 200:
        assert ours.status_code == 200, f"MLflow scored {name!r}, we answered {ours.status_code}: {ours.text}"
        np.testing.assert_allclose(np.array(ours.json()["predictions"]), np.array(theirs.json()["predictions"]),
                                   rtol=0, atol=1e-9)
    else:
        assert 400 <= theirs.status_code < 500, theirs.text
        assert 400 <= ours.status_code < 500, f"MLflow rejected {name!r} ({theirs.status_code}), we answered {ours.status_code}"
        assert ours.json()["detail"]  # and we say why in one line


def _break(field, value):
    return lambda f: _dumps({"dataframe_records": [{**r, field: value} for r in _records(f)]})


# Where we differ on purpose: MLflow scores these rows (its schema has no ranges, categories or strictness);
# the data contract rejects them, naming the row and field.
CONTRACT_CASES = [
    ("extra column", lambda f: _dumps({"dataframe_records": [{**r, "cvv": "123"} for r in _records(f)]}),
     "dataframe_records[0].cvv", "extra_forbidden"),
    ("negative amount", _break("amount", -5.0), "dataframe_records[0].amount", "greater_than_equal"),
    ("hour 3.5", _break("hour", 3.5), "dataframe_records[0].hour", "int_type"),
    ("amount as a string", _break("amount", "12.5"), "dataframe_records[0].amount", "float_type"),
    ("unknown category", _break("channel", "fax"), "dataframe_records[0].channel", "literal_error"),
    ("NaN amount", _break("amount", float("nan")), "dataframe_records[0].amount", "finite_number"),
]


@pytest.mark.parametrize("name, body, field, rule", CONTRACT_CASES, ids=[c[0] for c in CONTRACT_CASES])
def test_contract_is_stricter_than_mlflow(servers, frame, name, body, field, rule):
    mlflow_url, ours_url = servers
    payload = body(frame)
    assert httpx.post(f"{mlflow_url}/invocations", content=payload, headers={"content-type": J}, timeout=60).status_code == 200
    ours = httpx.post(f"{ours_url}/invocations", content=payload, headers={"content-type": J}, timeout=60)
    assert ours.status_code == 422
    assert {"field": field, "rule": rule} in [{"field": e["field"], "rule": e["rule"]} for e in ours.json()["errors"]]


def test_csv_rows_are_checked_like_json(servers, frame):
    _, ours_url = servers
    broken = frame.copy()
    broken.loc[1, "hour"] = 99
    answer = httpx.post(f"{ours_url}/invocations", content=broken.to_csv(index=False), headers={"content-type": CSV})
    assert answer.status_code == 422
    assert [(e["field"], e["rule"]) for e in answer.json()["errors"]] == [("csv[1].hour", "less_than_equal")]
    too_many = pd.concat([frame] * (MAX_BATCH // len(frame) + 1)).to_csv(index=False)
    answer = httpx.post(f"{ours_url}/invocations", content=too_many, headers={"content-type": CSV})
    assert answer.status_code == 422 and f"at most {MAX_BATCH} rows" in answer.json()["detail"]
    ragged = "amount,hour\n1.0,2,3\n"
    answer = httpx.post(f"{ours_url}/invocations", content=ragged, headers={"content-type": CSV})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "csv[0]"


def test_mlflow_client_end_to_end(servers, frame, course_home):
    """MLflow's own client, which nobody here wrote, against our server."""
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    from mlops_lab import registry

    _, ours_url = servers
    host, port = ours_url.removeprefix("http://").split(":")
    client = ScoringServerClient(host, int(port))
    client.ping()
    client.wait_server_ready(timeout=10)
    predictions = client.invoke(frame).get_predictions()
    with using_home(course_home):
        pipeline = registry.load(registry.alias_version("champion"))
    np.testing.assert_allclose(predictions.to_numpy()[:, 1], pipeline.predict_proba(frame)[:, 1], rtol=0, atol=1e-9)
    assert predictions.shape == (len(frame), 2)


# --- CSV read as JSON is read (issue 23): the parser the /invocations handler calls, beside the JSON one


def _csv_answer(text: str):
    """What /invocations makes of a CSV body: (status, first error's field and rule) or (200, rows)."""
    from mlops_lab.serving import protocol

    try:
        return 200, protocol.validate_rows(*protocol.rows_from_csv(text.encode()))
    except protocol.Problem as problem:
        first = (problem.errors or [{}])[0]
        return problem.status, (first.get("field"), first.get("rule"), problem.detail)


def test_csv_with_a_repeated_column_is_a_422_like_json(frame):
    text = frame.head(2).to_csv(index=False)
    header, rest = text.split("\n", 1)
    first = header.split(",")[0]
    status, (field, rule, detail) = _csv_answer(f"{header},{first}\n" + "\n".join(
        f"{line},{line.split(',')[0]}" for line in rest.strip().split("\n")) + "\n")
    assert status == 422 and (field, rule) == ("csv", "format") and f"{first!r} more than once" in detail


def test_csv_with_a_byte_order_mark_reads_like_one_without(frame):
    text = frame.head(3).to_csv(index=False)
    status, rows = _csv_answer("\ufeff" + text)
    assert status == 200 and rows == _csv_answer(text)[1]


@pytest.mark.parametrize("value", ["1_000", "١٢٣", " 12", "+5", "0x10", "1e", "inf", "Infinity"])
def test_csv_numbers_are_read_as_json_reads_them(frame, value):
    from mlops_lab.serving import protocol

    text = frame.head(1).to_csv(index=False)
    header, row = text.strip().split("\n")
    names, cells = header.split(","), row.split(",")
    cells[names.index("amount")] = value
    status, (field, rule, _) = _csv_answer(f"{header}\n{','.join(cells)}\n")
    assert status == 422 and field == "csv[0].amount", (value, field, rule)
    record = dict(zip(names, [protocol._csv_value(n, c) for n, c in zip(names, cells, strict=True)], strict=True))
    record["amount"] = value
    with pytest.raises(protocol.Problem):  # the JSON formats refuse it too
        protocol.validate_rows("dataframe_records", [record])


def test_csv_keeps_what_json_accepts(frame):
    text = frame.head(1).to_csv(index=False)
    header, row = text.strip().split("\n")
    names, cells = header.split(","), row.split(",")
    for value, expected in [("12.5", 12.5), ("1e3", 1000.0), ("7", 7.0), ("0.25", 0.25)]:
        cells[names.index("amount")] = value
        status, rows = _csv_answer(f"{header}\n{','.join(cells)}\n")
        assert status == 200 and rows[0].amount == expected, value
