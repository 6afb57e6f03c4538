"""Workshop mode against the real thing: `mlflow server` on a local PostgreSQL cluster, with its
artifact proxy and basic-auth accounts; three learners in separate processes, connected by
environment variables only, run labs 02-03 at the same time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mlops_lab import config, workshop
from mlops_lab.errors import LabError

from .conftest import ROOT, using_home

# The module's fixture starts PostgreSQL and the server and runs three learners: allow it time.
pytestmark = pytest.mark.timeout(1500)

LEARNERS = {"ada": "logistic_regression,gradient_boosting", "bob": "logistic_regression",
            "cy": "gradient_boosting"}

# What one learner does: labs 01-03 through the package functions, plus two checks (bob gets 2.1 wrong).
LEARNER_SCRIPT = """
import sys
import mlops_lab as lab
from mlops_lab import config, data, registry, training

lab.setup(2)  # lab 01's dataset
train, valid, holdout = data.time_split(data.load_snapshot())
lab.check("0.1", 100)
lab.check("2.1", "accuracy" if config.learner() == "bob" else "pr_auc")
for kind in sys.argv[1].split(","):
    params = {"max_iter": 60} if kind == "gradient_boosting" else {}  # a shorter fit keeps the test short
    run_id = training.train_and_log(kind, train, valid, **params)
    print(registry.promote_if_better(registry.register(run_id), holdout))
print("champion", config.model_name(), registry.alias_version("champion"))
"""


def _learner_env(server: dict, learner: str, password: str, home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "MLOPS_LAB_"))}
    env.update(MLOPS_LAB_HOME=str(home), MLOPS_LAB_TRACKING_URI=server["uri"], MLFLOW_TRACKING_USERNAME=learner,
               MLFLOW_TRACKING_PASSWORD=password, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")  # one core each
    return env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workshop.postgres_bin()  # fails the module with the install hint when PostgreSQL is missing
    # PostgreSQL runs as the 'postgres' user when the tests run as root: it must reach the folder.
    root = Path(tempfile.mkdtemp(prefix="mlops-workshop-"))
    root.chmod(0o755)
    roster = root / "roster.csv"
    roster.write_text("id,name\n" + "".join(f"{lid},{lid.title()} Learner\n" for lid in LEARNERS))
    state = workshop.start(roster, root=root / "server", report=lambda _: None)
    state["root"], state["roster_file"] = root / "server", roster
    state["passwords"] = workshop.credentials(root / "server")
    yield state
    try:
        workshop.stop(root / "server", report=lambda _: None)
    except LabError:
        pass
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def room(server, tmp_path_factory):
    """The three learners run labs 02-03 concurrently, each in their own process and workspace."""
    from mlops_lab import data

    homes = {lid: tmp_path_factory.mktemp(f"home-{lid}") for lid in LEARNERS}
    with using_home(homes["ada"]):  # lab 01's dataset is the same for everyone: simulate it once
        data.save_snapshot(data.course_dataset())
    for lid in list(LEARNERS)[1:]:
        shutil.copytree(homes["ada"], homes[lid], dirs_exist_ok=True)

    def run(lid):
        env = _learner_env(server, lid, server["passwords"][lid], homes[lid])
        return lid, subprocess.run([sys.executable, "-c", LEARNER_SCRIPT, LEARNERS[lid]], env=env,
                                   capture_output=True, text=True, timeout=900)

    with ThreadPoolExecutor(len(LEARNERS)) as pool:
        results = dict(pool.map(run, LEARNERS))
    for lid, proc in results.items():
        assert proc.returncode == 0, f"{lid}: {proc.stderr[-2000:]}"
    return {"homes": homes, "results": results}


@pytest.fixture
def as_learner(server, monkeypatch, tmp_path):
    def become(lid, password=None):
        for key, value in _learner_env(server, lid, password or server["passwords"][lid], tmp_path).items():
            if key.startswith(("MLFLOW_", "MLOPS_LAB_")):
                monkeypatch.setenv(key, value)
    return become


def test_each_learner_ends_with_their_own_champion(server, room, as_learner):
    from mlops_lab import registry, training

    for lid, proc in room["results"].items():
        assert f"champion cardguard-{lid} " in proc.stdout
        assert "[correct] 0.1" in proc.stdout
    as_learner("ada")
    mlflow = training.mlflow_client()
    client = mlflow.MlflowClient()
    for lid, kinds in LEARNERS.items():
        champion = client.get_model_version_by_alias(f"cardguard-{lid}", "champion")
        run = client.get_run(champion.run_id)
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.name == f"cardguard-{lid}"  # trained and logged by that learner, nobody else
        assert run.data.params["model_kind"] in kinds.split(",")
        # the model files came through the server's artifact proxy into its destination folder
        assert champion.source.startswith("models:/") or "mlflow-artifacts" in run.info.artifact_uri
    assert any((server["root"] / "artifacts").rglob("model.pkl"))
    assert registry.versions("cardguard-bob")["model_kind"].tolist() == ["logistic_regression"]


def test_a_learner_cannot_overwrite_another_learners_alias(server, room, as_learner):
    from mlops_lab import registry

    as_learner("ada")
    before = registry.alias_version("champion", "cardguard-bob")
    with pytest.raises(LabError, match=r"403 Forbidden.*read-only for you") as info:
        registry.set_alias("champion", "1", name="cardguard-bob")
    assert "cardguard-ada" in str(info.value)
    assert registry.alias_version("champion", "cardguard-bob") == before
    registry.set_alias("challenger", registry.alias_version("champion"))  # their own model: allowed


def test_a_learner_cannot_write_to_another_learners_experiment(server, room, as_learner):
    from mlops_lab import training

    as_learner("ada")
    mlflow = training.mlflow_client()
    bob = mlflow.get_experiment_by_name("cardguard-bob")  # reading is allowed
    with pytest.raises(LabError, match=r"refused to let you \(ada\).*403 Forbidden"):
        with workshop.server_errors("log a run in cardguard-bob"):
            mlflow.MlflowClient().create_run(bob.experiment_id)


def test_status_and_leaderboard_show_all_three(server, room):
    table = workshop.status(server["root"])
    print("\n" + table.to_string())
    assert list(table.index) == list(LEARNERS)
    assert table["lab"].tolist() == [3, 3, 3] and table["reported_lab"].tolist() == [2, 2, 2]
    assert table["reported_correct"].tolist() == [2, 1, 2] and table["reported_incorrect"].tolist() == [0, 1, 0]
    assert table["champion"].notna().all() and (table["runs"] == [2, 1, 1]).all()
    assert (table["versions"] == [2, 1, 1]).all() and (table["loop_runs"] == 0).all()
    assert (table["idle_min"] < 30).all()
    board = workshop.leaderboard(server["root"])
    print("\n" + board.to_string())
    assert sorted(board["learner"]) == sorted(LEARNERS) and (board["not_scored"] == "").all()
    assert board.index.tolist() == [1, 2, 3]
    assert board.set_index("learner").loc["bob", "model_kind"] == "logistic_regression"
    assert board["pr_auc"].between(0.05, 1).all() and board["cost"].is_monotonic_increasing
    assert len(workshop.progress_history(server["root"])) == 5
    workshop.progress_plot(server["root"])


def test_instructor_dashboard_runs_on_the_same_functions(server, room, tmp_path):
    import nbformat
    import papermill

    out = tmp_path / "dashboard.ipynb"
    papermill.execute_notebook(str(ROOT / "instructor" / "dashboard.ipynb"), str(out), kernel_name="python3",
                               parameters={"WORKSHOP_DIR": str(server["root"])}, progress_bar=False)
    text = "".join(str(o) for c in nbformat.read(out, as_version=4).cells for o in c.get("outputs", []))
    assert all(f"{lid.title()} Learner" in text for lid in LEARNERS)  # the status table
    assert "pr_auc" in text and "image/png" in text


def _logs_in(uri: str, user: str, password: str) -> int:
    import httpx

    return httpx.get(f"{uri}/api/2.0/mlflow/users/current", auth=(user, password), timeout=60).status_code


def _restart(server, roster=None, **kwargs) -> dict:
    state = workshop.start(roster or server["roster_file"], root=server["root"], report=lambda _: None, **kwargs)
    server.update(state, passwords=workshop.credentials(server["root"]))
    return state


def test_no_secret_on_a_command_line_or_in_an_environment(server):
    root = server["root"]
    secrets = {"database": (root / "postgres.password").read_text().strip(),
               "admin": (root / "admin.password").read_text().strip(), **server["passwords"]}
    args = subprocess.run(["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=True).stdout  # full width
    assert "mlflow server" in args and "--backend-store-uri postgresql" in args  # the server is what we read
    assert [who for who, secret in secrets.items() if secret in args] == []
    group = [int(p) for p in os.listdir("/proc") if p.isdigit() and workshop._proc_stat(p)
             and int(workshop._proc_stat(p)[2]) == server["pid"]]
    assert len(group) >= 2  # mlflow server and its uvicorn workers
    for pid in group:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert [who for who in ("database", "admin") if secrets[who] in environ] == [], pid
        assert f"PGPASSFILE={root / 'pgpass'}" in environ
    for name in ("pgpass", "postgres.password", "admin.password", "basic_auth.ini", "credentials.csv", "state.json"):
        assert (root / name).stat().st_mode & 0o077 == 0, name


def test_auth_refuses_other_schemes_throttles_guesses_and_hides_the_user_list(server):
    import httpx

    uri, api = server["uri"], server["uri"] + "/api/2.0/mlflow"
    assert httpx.get(f"{api}/experiments/search", params={"max_results": 1}, headers={
        "Authorization": "Bearer x"}, timeout=60).status_code == 401
    assert httpx.get(f"{api}/experiments/search", params={"max_results": 1}, headers={
        "Authorization": "Digest username=ada"}, timeout=60).status_code == 401
    codes = [_logs_in(uri, "mallory", f"guess-{i}") for i in range(workshop.LOGIN_FAILURES + 2)]
    assert codes == [401] * workshop.LOGIN_FAILURES + [429, 429]  # across both server workers
    assert _logs_in(uri, "ada", server["passwords"]["ada"]) == 200  # another account is not locked out
    assert httpx.get(f"{api}/users/list", auth=("bob", server["passwords"]["bob"]), timeout=60).status_code == 403
    assert httpx.get(f"{api}/users/list", auth=(workshop.ADMIN, server["admin"]["password"]),
                     timeout=60).status_code == 200


def test_restart_with_the_same_roster_is_the_same_room(server, room):
    before = dict(server["passwords"]), server["uri"]
    workshop.stop(server["root"], report=lambda _: None)
    _restart(server)
    assert (server["passwords"], server["uri"]) == before
    assert [_logs_in(server["uri"], lid, pw) for lid, pw in server["passwords"].items()] == [200] * len(LEARNERS)
    assert workshop.status(server["root"])["champion"].notna().all()  # the room's work is still there


def test_crash_then_start_with_new_learners_keeps_everyone_else(server, room, as_learner):
    before = dict(server["passwords"]), server["uri"]
    import time

    os.kill(server["pid"], signal.SIGKILL)  # the server's main process dies; its workers hold the port
    deadline = time.monotonic() + 30
    while workshop._alive(server["pid"]) and time.monotonic() < deadline:  # the kill lands asynchronously
        time.sleep(0.1)
    assert workshop._answers(server["uri"])  # its orphaned workers still serve the port
    roster = server["root"].parent / "roster-more.csv"
    roster.write_text(server["roster_file"].read_text() + "dan,Dan Learner\neve,Eve Learner\n")
    _restart(server, roster)
    assert server["uri"] == before[1]
    assert {lid: server["passwords"][lid] for lid in LEARNERS} == before[0]
    assert [_logs_in(server["uri"], lid, pw) for lid, pw in server["passwords"].items()] == [200] * 5
    # every name a lab creates for dan exists already, and only dan may write it
    assert [name for _, name in workshop.learner_resources("dan")] == [
        "cardguard-dan", "cardguard-dan-evaluation", "cardguard-dan-loop", "cardguard-dan", "cardguard-dan-whatif"]
    as_learner("dan", server["passwords"]["dan"])
    assert all(ok for _, ok, _ in workshop.check_connection())
    from mlops_lab import training

    mlflow = training.mlflow_client()
    client = mlflow.MlflowClient()
    as_learner("ada")
    for make in (lambda: client.create_registered_model("cardguard-dan-whatif"),
                 lambda: client.create_model_version("cardguard-dan-whatif", "models:/x/1"),
                 lambda: client.create_run(mlflow.get_experiment_by_name("cardguard-dan-loop").experiment_id)):
        with pytest.raises(Exception, match="403|PERMISSION_DENIED|RESOURCE_ALREADY_EXISTS"):
            make()


def test_a_junk_champion_is_listed_with_the_reason_not_scored(server, room, as_learner):
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from mlops_lab import training

    as_learner("dan", server["passwords"]["dan"])
    mlflow = training.mlflow_client()
    X, y = np.random.default_rng(0).normal(size=(60, 3)), np.arange(60) % 2
    mlflow.set_experiment("cardguard-dan")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(LogisticRegression().fit(X, y), name="model", input_example=X[:2])
    version = mlflow.register_model(info.model_uri, "cardguard-dan")
    mlflow.MlflowClient().set_registered_model_alias("cardguard-dan", "champion", version.version)
    board = workshop.leaderboard(server["root"])
    print("\n" + board.to_string())
    ranked = board[board.index.notna()]
    assert sorted(ranked["learner"]) == sorted(LEARNERS) and ranked["cost"].is_monotonic_increasing
    dan = board[board["learner"] == "dan"]
    assert len(dan) == 1 and dan.index.isna().all()
    assert "not the data contract's named features" in dan["not_scored"].iloc[0]


def test_forged_progress_is_shown_as_self_reported(server, room, as_learner):
    import httpx

    from mlops_lab.exercises import all_exercises

    experiment = httpx.get(f"{server['uri']}/api/2.0/mlflow/experiments/get-by-name", params={
        "experiment_name": "cardguard-eve"}, auth=("eve", server["passwords"]["eve"]), timeout=60).json()
    for exercise in [*all_exercises(), "99.9"]:  # every exercise "correct", and one that does not exist
        for key, value in ((f"mlops_lab.check.{exercise}", "correct@1700000000"),
                           (f"mlops_lab.correct.{exercise}", "1700000000")):
            httpx.post(f"{server['uri']}/api/2.0/mlflow/experiments/set-experiment-tag", json={
                "experiment_id": experiment["experiment"]["experiment_id"], "key": key, "value": value},
                auth=("eve", server["passwords"]["eve"]), timeout=60).raise_for_status()
    table = workshop.status(server["root"])
    print("\n" + table.to_string())
    eve = table.loc["eve"]
    assert eve["reported_correct"] == len(all_exercises()) and eve["reported_not_attempted"] == 0
    assert pd_isna(eve["lab"]) and eve["runs"] == 0 and eve["versions"] == 0 and pd_isna(eve["champion"])
    assert "eve" not in set(workshop.leaderboard(server["root"])["learner"])


def pd_isna(value) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_passwords_change_only_with_reset_passwords(server, room):
    before = dict(server["passwords"])
    workshop.stop(server["root"], report=lambda _: None)
    _restart(server, server["root"].parent / "roster-more.csv", reset_passwords=True)
    assert set(server["passwords"]) == set(before)
    assert all(server["passwords"][lid] != before[lid] for lid in before)
    assert [_logs_in(server["uri"], lid, pw) for lid, pw in server["passwords"].items()] == [200] * len(before)
    assert _logs_in(server["uri"], "ada", before["ada"]) == 401


def test_doctor_says_which_is_wrong(server, as_learner):
    as_learner("ada")
    assert all(ok for _, ok, _ in workshop.check_connection())
    as_learner("ada", password="not-the-password")
    (_, ok1, _), (name, ok2, detail) = workshop.check_connection()
    assert ok1 and not ok2 and name == "credentials" and "401" in detail


def test_wrong_password_gets_a_clear_error(server, as_learner):
    from mlops_lab import training

    as_learner("bob", password="guess")
    with pytest.raises(LabError, match="did not accept the user name and password.*handout"):
        training.use_tracking()


def _run_notebook_in_kernel(base: str, token: str, notebook: Path) -> list[str]:
    """Execute every code cell of ``notebook`` in a new kernel on a Jupyter server, through the
    kernel REST and websocket API as JupyterLab does; return the errors (empty when all ran)."""
    import asyncio
    import json
    import uuid

    import httpx
    import nbformat
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"token {token}"}
    kernel = httpx.post(f"{base}api/kernels", json={"name": "python3"}, headers=headers, timeout=120).json()
    cells = [c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]

    async def run() -> list[str]:
        url = f"{base.replace('http', 'ws', 1)}api/kernels/{kernel['id']}/channels"
        ws = await websocket_connect(HTTPRequest(url, headers=headers))
        session, errors = uuid.uuid4().hex, []
        for code in cells:
            msg_id = uuid.uuid4().hex
            await ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "session": session, "username": "test", "msg_type": "execute_request",
                           "version": "5.3"}, "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True}}))
            while True:
                msg = json.loads(await asyncio.wait_for(ws.read_message(), timeout=300))
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "error":
                    errors.append(f"{msg['content']['ename']}: {msg['content']['evalue']}")
                if msg["msg_type"] == "execute_reply":
                    break
        ws.close()
        return errors

    try:
        # in a thread of its own: a session-wide event loop (Playwright's, in tests/browser) may be running here
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, run()).result()
    finally:
        httpx.delete(f"{base}api/kernels/{kernel['id']}", headers=headers, timeout=60)


def test_jupyterhub_room_runs_lab_00_for_two_learners(configurable_http_proxy, server, room, tmp_path):
    import secrets
    import time

    import httpx

    from mlops_lab.serving.server import free_port

    hub_bin = Path(sys.executable).parent / "jupyterhub"
    token, port = secrets.token_hex(16), free_port()
    env = {**os.environ, "MLOPS_WORKSHOP_DIR": str(server["root"]), "MLOPS_HUB_HOMES": str(tmp_path / "homes"),
           "MLOPS_HUB_PORT": str(port), "MLOPS_HUB_API_TOKEN": token, "PYTHONPATH": str(ROOT)}
    for key in ("MLOPS_LAB_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)  # the hub's spawner, not the hub, gives learners their credentials
    log = open(tmp_path / "hub.log", "wb")
    hub = subprocess.Popen([str(hub_bin), "-f", str(ROOT / "workshop" / "jupyterhub_config.py")], cwd=tmp_path,
                           env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    api, headers = f"http://127.0.0.1:{port}/hub/api", {"Authorization": f"token {token}"}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert hub.poll() is None, (tmp_path / "hub.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api}/", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        users = ["ada", "bob"]
        for user in users:
            assert httpx.post(f"{api}/users/{user}/server", headers=headers, timeout=60).status_code in (201, 202)
        for user in users:
            deadline = time.monotonic() + 180
            while not httpx.get(f"{api}/users/{user}", headers=headers).json()["servers"].get("", {}).get("ready"):
                assert time.monotonic() < deadline, (tmp_path / "hub.log").read_text()[-3000:]
                time.sleep(1)
        for user in users:
            errors = _run_notebook_in_kernel(f"http://127.0.0.1:{port}/user/{user}/", token,
                                             ROOT / "labs" / "00_welcome.ipynb")
            assert errors == [], f"{user}: {errors}"
            # each learner had their own workspace, from the spawner's environment
            assert (tmp_path / "homes" / user / "mlops-lab-workspace" / "progress.json").exists()
    finally:
        os.killpg(hub.pid, signal.SIGTERM)
        hub.wait(timeout=60)
        log.close()
    table = workshop.status(server["root"])
    print("\n" + table.to_string())
    admin, _ = workshop._admin(server["root"])
    for user in users:
        tags = admin.call("GET", "experiments/get-by-name", params={"experiment_name": f"cardguard-{user}"})
        assert "mlops_lab.check.0.2" in {t["key"] for t in tags["experiment"]["tags"]}  # only lab 00 checks 0.2
        assert table.loc[user, "idle_min"] < 5


def test_check_prints_its_verdict_when_the_server_is_down(server, room, as_learner, capsys):
    import mlops_lab as lab

    workshop.stop(server["root"], report=lambda _: None)
    as_learner("cy")
    lab.check("0.1", 100)
    out = capsys.readouterr().out
    assert "[correct] 0.1" in out and "does not answer" in out and "local progress are kept" in out
    assert "0.1" in (Path(os.environ["MLOPS_LAB_HOME"]) / "progress.json").read_text()
    assert not workshop.check_connection()[0][1]


# ---------------------------------------------------------------- bad input, no server needed


def test_roster_with_duplicate_ids_is_refused(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("id,name\nada,Ada\nbob,Bob\nAda,Ada Again\n")
    with pytest.raises(LabError, match=r"'Ada' appears twice \(learners 1 and 3\)"):
        workshop.read_roster(roster)
    roster.write_text("ada lovelace,Ada\n")
    with pytest.raises(LabError, match="letters, digits"):
        workshop.read_roster(roster)


def test_taken_port_is_refused_before_anything_starts(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("ada,Ada\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LabError, match=f"Port {port} on 127.0.0.1 is already taken"):
            workshop.start(roster, root=tmp_path / "w", port=port)
    assert not (tmp_path / "w" / "postgres").exists()


def test_missing_postgres_binaries_say_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(workshop, "PG_LIB", tmp_path / "no-postgresql")
    with pytest.raises(LabError, match="apt-get install -y postgresql.*--database-uri"):
        workshop.postgres_bin()


def test_local_names_stay_plain_and_workshop_names_follow_the_account(monkeypatch):
    monkeypatch.delenv("MLOPS_LAB_USER", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ada")
    monkeypatch.delenv("MLOPS_LAB_TRACKING_URI", raising=False)
    assert config.model_name() == "cardguard" and not workshop.remote()
    assert config.model_name("whatif") == "cardguard-whatif" and config.experiment_name("loop") == "cardguard-loop"
    monkeypatch.setenv("MLOPS_LAB_TRACKING_URI", "http://127.0.0.1:9")
    assert config.model_name() == "cardguard-ada" and config.experiment_name() == "cardguard-ada"
    # every name a lab makes for ada is one the server creates and grants ahead
    assert {name for _, name in workshop.learner_resources("ada")} == {
        config.model_name(kind) for kind in config.MODELS} | {config.experiment_name(kind) for kind in config.EXPERIMENTS}
    assert config.model_name("whatif") == "cardguard-ada-whatif" and config.experiment_name("loop") == "cardguard-ada-loop"
    assert not workshop.record_check("0.1", "correct", report=lambda _: None)  # nothing listens: no raise


def test_status_with_the_server_down_says_so_in_one_line(tmp_path):
    from click.testing import CliRunner

    from mlops_lab.cli import main

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (tmp_path / "state.json").write_text(json.dumps({
        "uri": f"http://127.0.0.1:{port}", "pid": None, "port": port, "postgres": None,
        "admin": {"username": "instructor", "password": "x"}, "roster": [{"id": "ada", "name": "Ada"}]}))
    with pytest.raises(LabError, match=r"workshop server http://127.0.0.1:\d+ is down \(stopped\)"):
        workshop.status(tmp_path)
    result = CliRunner().invoke(main, ["workshop", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "is down" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2, result.output


def test_a_database_password_moves_out_of_the_uri(tmp_path):
    uri, pgpass = workshop.database_uri_without_password("postgresql://ml:s3%3Acr%40t@db.example:5433/mlflow", tmp_path)
    assert uri == "postgresql+psycopg2://ml@db.example:5433/mlflow" and "s3" not in uri
    assert pgpass.read_text() == "db.example:5433:mlflow:ml:s3\\:cr@t\n" and pgpass.stat().st_mode & 0o777 == 0o600
    assert workshop.database_uri_without_password("postgresql://ml@db/mlflow", tmp_path / "x") == (
        "postgresql+psycopg2://ml@db/mlflow", None)
    with pytest.raises(LabError, match="must be a PostgreSQL URI"):
        workshop.database_uri_without_password("sqlite:///x.db", tmp_path)
