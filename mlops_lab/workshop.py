"""Workshop mode: one shared MLflow server for a room of learners, and the instructor's view of it.

The server is MLflow's own: ``mlflow server`` with a PostgreSQL backend store (a URI given, or a
local cluster started from Debian's ``postgresql`` binaries with its data in the workshop folder),
artifacts through the server's proxy (``--serve-artifacts``) and MLflow's ``basic-auth`` app.

Isolation uses basic-auth resource permissions, not ``--enable-workspaces``. Workspaces group
resources for *teams* and are a fallback layer on top of the same auth app; a learner is one user
owning one experiment and one registered model, which is exactly a per-resource grant. So the
auth app's ``default_permission`` is READ (everyone reads everything: the instructor's and the
other learners' runs), and the instructor creates each learner's experiment ``cardguard-<id>`` and
model ``cardguard-<id>`` up front and grants that learner MANAGE on them. Pre-creating matters: a
resource's creator owns it, so nobody can claim another learner's names first.

Learners connect with environment variables only (``MLOPS_LAB_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``); ``config`` derives their names from
the username. Every ``lab.check`` outcome lands on the learner's experiment as a tag, which
:func:`status` reads; :func:`leaderboard` scores every champion on one common holdout itself.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import config
from .errors import LabError

if TYPE_CHECKING:
    import pandas as pd

ADMIN = "instructor"
CHECK_TAG = "mlops_lab.check."  # + exercise id, on the learner's experiment
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
# A busy server (a room training at once) can take seconds to answer; a down one refuses at once.
_TIMEOUT = {"timeout": 20.0, "connect": 3.0}
PG_LIB = Path("/usr/lib/postgresql")  # Debian's versioned server binaries: PG_LIB/<major>/bin


def workshop_dir() -> Path:
    """Where ``workshop server`` keeps its state, database, artifacts and the credentials file."""
    return config.path("workshop")


# --------------------------------------------------------------------------- roster


@dataclass(frozen=True)
class Learner:
    id: str
    name: str


def read_roster(path: str | Path) -> list[Learner]:
    """A roster CSV with columns ``id,name`` (a header line is optional)."""
    path = Path(path)
    try:
        rows = [r for r in csv.reader(path.read_text().splitlines()) if any(c.strip() for c in r)]
    except OSError as exc:
        raise LabError(f"Cannot read the roster {path} ({exc.strerror or exc}). Give a CSV file with one "
                       "learner per line: `id,display name`.") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["id", "name"]:
        rows = rows[1:]
    learners, seen = [], {}
    for n, row in enumerate(rows, start=1):
        lid = row[0].strip()
        name = row[1].strip() if len(row) > 1 and row[1].strip() else lid
        if not _ID.match(lid) or lid == ADMIN:
            raise LabError(f"Roster {path}, learner {n}: id {lid!r} cannot be an MLflow user and a model name. "
                           f"Use letters, digits, '-' and '_' (at most 40, not {ADMIN!r}), e.g. 'ada-l'.")
        if lid.lower() in seen:
            raise LabError(f"Roster {path}: the id {lid!r} appears twice (learners {seen[lid.lower()]} and {n}). "
                           "Ids name each learner's account, experiment and model, so they must be unique: "
                           "give one of them another id, e.g. with an initial.")
        seen[lid.lower()] = n
        learners.append(Learner(lid, name))
    if not learners:
        raise LabError(f"The roster {path} lists no learners. Write one per line: `id,display name`.")
    return learners


# --------------------------------------------------------------------------- PostgreSQL


def postgres_bin() -> Path:
    """The folder with ``initdb`` and ``pg_ctl`` (Debian keeps them out of PATH)."""
    found = shutil.which("pg_ctl")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(PG_LIB.glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    raise LabError("PostgreSQL's server binaries (initdb, pg_ctl) are not installed. On Debian or Ubuntu: "
                   "`sudo apt-get install -y postgresql`; or pass an existing database with "
                   "`mlops-lab workshop server --database-uri postgresql://user:password@host/db`.")


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its binaries as the ``postgres`` user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise LabError("Running as root, but there is no 'postgres' user to run PostgreSQL as (it refuses "
                       "root). Install Debian's `postgresql` package, which creates it, or run as a normal user.") from None
    return ["runuser", "-u", "postgres", "--"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    from .serving.server import free_port

    return free_port()


def _run(cmd: list[str], what: str, log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        more = f" (log: {log})" if log else ""
        raise LabError(f"{what} failed: {' / '.join(tail)}{more}. Run `mlops-lab workshop stop`, then try again; "
                       "if it persists, delete the workshop folder's postgres/ directory to start a fresh cluster.")


def start_postgres(root: Path, port: int | None = None) -> dict:
    """Initialise (once) and start a local PostgreSQL cluster in ``root/postgres``; return its settings."""
    bin_dir, as_pg = postgres_bin(), _as_postgres()
    data, log = root / "postgres", root / "postgres.log"
    port = port or _free_port()
    if not _port_free(port):
        raise LabError(f"Port {port} on 127.0.0.1 is already taken, so PostgreSQL cannot listen there. Pick "
                       "another with --db-port, or leave it out to take a free one.")
    password_file = root / "postgres.password"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        password_file.write_text(secrets.token_urlsafe(18) + "\n")
        password_file.chmod(0o600)
        if as_pg:
            log.touch()
            for p in (data, password_file, log):
                shutil.chown(p, "postgres", "postgres")
            probe = subprocess.run([*as_pg, "test", "-w", str(data)], capture_output=True)
            if probe.returncode:
                raise LabError(f"The 'postgres' user cannot reach {data} (a parent folder is private to root). "
                               "Choose a workshop folder it can traverse, e.g. `--dir /srv/workshop`, or "
                               "`chmod o+x` the parent folders.")
        _run([*as_pg, str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "-A", "scram-sha-256",
              f"--pwfile={password_file}", "-E", "UTF8", "--locale=C"], "initdb")
    elif as_pg and not log.exists():
        log.touch()
        shutil.chown(log, "postgres", "postgres")
    password = password_file.read_text().strip()
    _run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
          f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data}", "start"],
         "Starting PostgreSQL", log)
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=port, user="mlflow", password=password, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("select 1 from pg_database where datname = 'mlflow'")
            if cur.fetchone() is None:
                cur.execute("create database mlflow")
    finally:
        conn.close()
    return {"data": str(data), "port": port, "bin": str(bin_dir), "as_postgres": bool(as_pg),
            "uri": f"postgresql+psycopg2://mlflow:{password}@127.0.0.1:{port}/mlflow"}


def stop_postgres(pg: dict) -> None:
    as_pg = ["runuser", "-u", "postgres", "--"] if pg.get("as_postgres") else []
    subprocess.run([*as_pg, str(Path(pg["bin"]) / "pg_ctl"), "-D", pg["data"], "-m", "fast", "-w", "stop"],
                   capture_output=True)


# --------------------------------------------------------------------------- the server


def _state_file(root: Path) -> Path:
    return root / "state.json"


def _load_state(root: Path | None = None) -> dict:
    root = Path(root or workshop_dir())
    try:
        return json.loads(_state_file(root).read_text())
    except (OSError, ValueError):
        raise LabError(f"No workshop server was started from {root}. Start one with "
                       "`mlops-lab workshop server --roster roster.csv` (or pass the folder with --dir).") from None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


class Admin:
    """The instructor's account on a running server: REST calls with basic auth, errors made plain."""

    def __init__(self, uri: str, username: str, password: str):
        import httpx

        self.uri, self.username, self.password = uri.rstrip("/"), username, password
        self.http = httpx.Client(base_url=self.uri, auth=(username, password), timeout=30)

    def call(self, method: str, endpoint: str, ok: tuple[str, ...] = (), version: str = "2.0", **kwargs) -> dict:
        response = self.http.request(method, f"/api/{version}/mlflow/{endpoint}", **kwargs)
        if response.status_code >= 400:
            try:
                code = response.json().get("error_code", "")
            except ValueError:
                code = ""
            if code in ok:
                return {}
            hint = ("the instructor password in admin.password no longer matches the server's"
                    if response.status_code == 401 else "the server's log (mlflow-server.log) says why")
            raise LabError(f"The workshop server refused {endpoint} ({response.status_code}: "
                           f"{response.text[:200]}): {hint}.")
        return response.json() if response.content else {}

    @contextlib.contextmanager
    def as_mlflow_user(self):
        """MLflow's Python client reads credentials from the environment: lend it ours for a while."""
        keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
        saved = {k: os.environ.get(k) for k in keys}
        os.environ.update(dict(zip(keys, (self.username, self.password), strict=True)))
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def _write_auth_config(root: Path, database_uri: str, admin_password: str) -> Path:
    ini = root / "basic_auth.ini"
    ini.write_text("[mlflow]\n"
                   "# everyone reads everything; each learner manages only their own experiment and model\n"
                   "default_permission = READ\n"
                   f"database_uri = {database_uri}\n"
                   f"admin_username = {ADMIN}\n"
                   f"admin_password = {admin_password}\n"
                   "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                   "# PBKDF2 per request costs ~1 s on a busy machine; cache a checked password for a minute\n"
                   "auth_cache_ttl_seconds = 60\n")
    ini.chmod(0o600)
    return ini


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise LabError(f"mlflow server exited at start ({tail}). Full log: {log}.")
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise LabError(f"mlflow server did not answer {uri}/health within {seconds:.0f} s. Its log: {log}.")


def start(roster: str | Path, root: str | Path | None = None, database_uri: str | None = None,
          port: int | None = None, workers: int = 2, report: Callable[[str], None] = print) -> dict:
    """Start the workshop's MLflow server and create the roster's accounts; return the state."""
    learners = read_roster(roster)
    root = Path(root or workshop_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if _state_file(root).exists():
        old = _load_state(root)
        if _alive(old.get("pid")):
            raise LabError(f"A workshop server from {root} is already running at {old['uri']}. Stop it first with "
                           "`mlops-lab workshop stop`.")
    if port is not None and not _port_free(port):
        raise LabError(f"Port {port} on 127.0.0.1 is already taken. Pick another with --port, or leave --port "
                       "out to take a free one.")
    port = port or _free_port()
    pg = None
    if database_uri is None:
        pg = start_postgres(root)
        database_uri = pg["uri"]
    elif not database_uri.startswith("postgresql"):
        raise LabError(f"--database-uri must be a PostgreSQL URI (postgresql://user:password@host:port/db), "
                       f"not {database_uri.split(':')[0]}: SQLite locks under a room of writers.")
    admin_password = secrets.token_urlsafe(18)
    previous = root / "admin.password"
    if previous.exists():  # the auth database keeps the first admin password
        admin_password = previous.read_text().strip()
    previous.write_text(admin_password + "\n")
    previous.chmod(0o600)
    ini = _write_auth_config(root, database_uri, admin_password)
    (root / "artifacts").mkdir(exist_ok=True)
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(ini),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    log = root / "mlflow-server.log"
    mlflow_cmd = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_cmd) if mlflow_cmd.exists() else "mlflow", "server",
           "--backend-store-uri", database_uri, "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--app-name", "basic-auth",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           # a busy machine imports a worker slowly; uvicorn's 5 s health check would kill it in a loop
           "--uvicorn-opts", "--timeout-worker-healthcheck 120"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    state = {"uri": uri, "pid": proc.pid, "postgres": pg, "admin": {"username": ADMIN, "password": admin_password},
             "roster": [learner.__dict__ for learner in learners], "started": time.time(), "log": str(log)}
    _state_file(root).write_text(json.dumps(state, indent=1))
    _state_file(root).chmod(0o600)
    try:
        _wait_healthy(uri, proc, log)
        credentials = add_learners(state, learners)
    except BaseException:
        stop(root, report=lambda _: None)
        raise
    handout = _write_handout(root, uri, credentials)
    report(f"Workshop server: {uri} (PostgreSQL backend, artifact proxy, basic auth), {len(learners)} learners.")
    report(f"Credentials to hand out: {handout}. A learner connects with three variables, e.g.:")
    first = credentials[0]
    report(f"  export MLOPS_LAB_TRACKING_URI={uri} MLFLOW_TRACKING_USERNAME={first[0].id} "
           f"MLFLOW_TRACKING_PASSWORD={first[1]}")
    report("Then `mlops-lab doctor` checks the connection. `mlops-lab workshop status` shows the room; "
           "`mlops-lab workshop stop` stops the server.")
    return state


def add_learners(state: dict, learners: list[Learner]) -> list[tuple[Learner, str]]:
    """Create each learner's account, experiment and model, and give them MANAGE on those two only."""
    admin = Admin(state["uri"], **state["admin"])
    made = []
    for learner in learners:
        password = secrets.token_urlsafe(12)
        if admin.call("POST", "users/create", ok=("RESOURCE_ALREADY_EXISTS",),
                      json={"username": learner.id, "password": password}) == {}:
            admin.call("PATCH", "users/update-password", json={"username": learner.id, "password": password})
        name = f"{config.MODEL_NAME}-{learner.id}"
        experiment = admin.call("GET", "experiments/get-by-name", ok=("RESOURCE_DOES_NOT_EXIST",),
                                params={"experiment_name": name})
        experiment_id = (experiment.get("experiment", {}).get("experiment_id")
                         or admin.call("POST", "experiments/create", json={"name": name})["experiment_id"])
        admin.call("POST", "experiments/set-experiment-tag",
                   json={"experiment_id": experiment_id, "key": "mlops_lab.learner", "value": learner.name})
        admin.call("POST", "registered-models/create", ok=("RESOURCE_ALREADY_EXISTS",), json={"name": name})
        for kind, resource in (("experiment", experiment_id), ("registered_model", name)):
            admin.call("POST", "users/permissions/grant", version="3.0", json={
                "username": learner.id, "resource_type": kind, "resource_id": resource, "permission": "MANAGE"})
        made.append((learner, password))
    return made


def _write_handout(root: Path, uri: str, credentials: list[tuple[Learner, str]]) -> Path:
    handout = root / "credentials.csv"
    with open(handout, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "name", "password", "connect"])
        for learner, password in credentials:
            writer.writerow([learner.id, learner.name, password,
                             f"export MLOPS_LAB_TRACKING_URI={uri} MLFLOW_TRACKING_USERNAME={learner.id} "
                             f"MLFLOW_TRACKING_PASSWORD={password}"])
    handout.chmod(0o600)
    return handout


def credentials(root: str | Path | None = None) -> dict[str, str]:
    """learner id -> password, from the handout file of the running workshop."""
    root = Path(root or workshop_dir())
    with open(root / "credentials.csv", newline="") as f:
        return {row["id"]: row["password"] for row in csv.DictReader(f)}


def stop(root: str | Path | None = None, report: Callable[[str], None] = print) -> None:
    """Stop the workshop's MLflow server and its local PostgreSQL (the data stays for next time)."""
    root = Path(root or workshop_dir()).resolve()
    state = _load_state(root)
    pid = state.get("pid")
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _alive(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0]:
                    break
            time.sleep(0.2)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    if state.get("postgres"):
        stop_postgres(state["postgres"])
    state["pid"] = None
    _state_file(root).write_text(json.dumps(state, indent=1))
    report(f"Workshop server {state['uri']} stopped; its database and artifacts stay in {root}.")


# --------------------------------------------------------------------------- learner side


def remote() -> bool:
    """True when the tracking URI is an HTTP server (a workshop), not a local store."""
    return config.tracking_uri().startswith(("http://", "https://"))


def explain(exc: BaseException, action: str) -> str | None:
    """The fix for an error from the workshop server, or None when it is not one we know."""
    text = f"{type(exc).__name__}: {exc}"
    user = os.environ.get("MLFLOW_TRACKING_USERNAME") or "(no MLFLOW_TRACKING_USERNAME)"
    uri = config.tracking_uri()
    if "403" in text or "PERMISSION_DENIED" in text:
        return (f"The workshop server refused to let you ({user}) {action} (403 Forbidden). You may change only "
                f"your own experiment {config.experiment_name()!r} and model {config.model_name()!r}; the other "
                "learners' are read-only for you. Leave out name=..., so the lab functions use your own names.")
    if "401" in text or "UNAUTHENTICATED" in text or "not authenticated" in text:
        return (f"The workshop server {uri} did not accept the user name and password ({user}): 401 Unauthorized. "
                "Copy MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD again from the instructor's handout, "
                "restart the kernel, and check with `lab.doctor()`.")
    if any(s in text for s in ("Max retries", "Connection refused", "ConnectError", "ConnectionError",
                               "Failed to establish", "timed out")):
        return (f"The workshop server {uri} does not answer, so it could not {action}. Your work in this notebook "
                "is safe; ask the instructor whether the server is up, then run the cell again.")
    return None


@contextlib.contextmanager
def server_errors(action: str):
    """Turn a 401, 403 or unreachable workshop server into one LabError that says what to do."""
    try:
        yield
    except LabError:
        raise
    except Exception as exc:
        message = explain(exc, action) if remote() else None
        if message is None:
            raise
        raise LabError(message) from None


def _learner_http():
    import httpx

    auth = (os.environ.get("MLFLOW_TRACKING_USERNAME", ""), os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    return httpx.Client(base_url=config.tracking_uri().rstrip("/"), auth=auth, timeout=httpx.Timeout(**_TIMEOUT))


def record_check(id: str, status: str, report: Callable[[str], None] = print) -> bool:
    """Record a check's outcome as tags on the learner's experiment. Never raises: the verdict was
    already shown, and a server that is down must not break the learner's notebook."""
    if not remote():
        return False
    now = f"{time.time():.0f}"
    try:
        with _learner_http() as http:
            got = http.get("/api/2.0/mlflow/experiments/get-by-name",
                           params={"experiment_name": config.experiment_name()})
            got.raise_for_status()
            experiment = got.json()["experiment"]
            tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
            new = {f"{CHECK_TAG}{id}": f"{status}@{now}"}
            if status == "correct" and f"mlops_lab.correct.{id}" not in tags:
                new[f"mlops_lab.correct.{id}"] = now
            for key, value in new.items():
                http.post("/api/2.0/mlflow/experiments/set-experiment-tag", json={
                    "experiment_id": experiment["experiment_id"], "key": key, "value": value}).raise_for_status()
        return True
    except Exception as exc:  # noqa: BLE001 - whatever went wrong, the learner keeps working
        why = explain(exc, "record this check") or f"{type(exc).__name__}: {str(exc)[:120]}"
        report(f"(Not recorded on the workshop server: {why} Your verdict and local progress are kept.)")
        return False


def check_connection() -> list[tuple[str, bool, str]]:
    """For ``lab.doctor()``: does the server answer, are the credentials right, may I write my own
    experiment and model? One line each, saying which is wrong."""
    import httpx

    uri, user = config.tracking_uri(), os.environ.get("MLFLOW_TRACKING_USERNAME")
    try:
        httpx.get(uri.rstrip("/") + "/health", timeout=httpx.Timeout(**_TIMEOUT)).raise_for_status()
    except httpx.HTTPError as exc:
        return [("workshop server", False, f"{uri} does not answer ({type(exc).__name__}). Check "
                 "MLOPS_LAB_TRACKING_URI against the instructor's handout, and ask whether the server is up.")]
    results = [("workshop server", True, f"{uri} answers")]
    if not user:
        return results + [("credentials", False, "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD are not "
                           "set: export both from the instructor's handout, then restart the kernel.")]
    with _learner_http() as http:
        me = http.get("/api/3.0/mlflow/users/current/permissions")
        if me.status_code == 401:
            return results + [("credentials", False, f"user {user!r} or its password is wrong (401). Copy both "
                               "again from the instructor's handout, then restart the kernel.")]
        if me.status_code == 404:  # a server without the auth app: nothing to check
            return results + [("credentials", True, "server has no accounts (no basic-auth app)")]
        results.append(("credentials", True, f"signed in as {user}"))
        experiment = http.get("/api/2.0/mlflow/experiments/get-by-name",
                              params={"experiment_name": config.experiment_name()})
        grants = {(p.get("resource_type"), str(p.get("resource_id") or p.get("resource_pattern")), p.get("permission"))
                  for p in me.json().get("permissions", [])}
    if experiment.status_code != 200:
        return results + [("permissions", False, f"there is no experiment {config.experiment_name()!r} for you on the "
                           "server: ask the instructor to add you to the roster (or check MLOPS_LAB_USER is unset).")]
    experiment_id = experiment.json()["experiment"]["experiment_id"]
    writable = {"EDIT", "MANAGE"}
    ok_experiment = me.json().get("is_admin") or any(
        t == "experiment" and r == experiment_id and p in writable for t, r, p in grants)
    ok_model = me.json().get("is_admin") or any(
        t == "registered_model" and r == config.model_name() and p in writable for t, r, p in grants)
    if not (ok_experiment and ok_model):
        return results + [("permissions", False, f"{user} may not write experiment {config.experiment_name()!r} "
                           f"and model {config.model_name()!r}: ask the instructor to re-run "
                           "`mlops-lab workshop server` with you on the roster.")]
    return results + [("permissions", True, f"you manage {config.experiment_name()!r} and {config.model_name()!r}")]


# --------------------------------------------------------------------------- instructor side


def _admin(root: str | Path | None = None) -> tuple[Admin, dict]:
    state = _load_state(root)
    return Admin(state["uri"], **state["admin"]), state


def status(root: str | Path | None = None, now: float | None = None) -> pd.DataFrame:
    """One row per learner: last lab reached, exercises correct / incorrect / not attempted, runs,
    champion, and minutes since their last activity (checks and runs recorded on the server)."""
    import pandas as pd

    from .exercises import all_exercises

    admin, state = _admin(root)
    total = len(all_exercises())
    now = now or time.time()
    rows = []
    for learner in state["roster"]:
        name = f"{config.MODEL_NAME}-{learner['id']}"
        experiment = admin.call("GET", "experiments/get-by-name", params={"experiment_name": name})["experiment"]
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        checks = {k.removeprefix(CHECK_TAG): v.split("@") for k, v in tags.items() if k.startswith(CHECK_TAG)}
        correct = {k.removeprefix("mlops_lab.correct.") for k in tags if k.startswith("mlops_lab.correct.")}
        incorrect = {k for k, (s, _) in checks.items() if s == "incorrect" and k not in correct}
        runs = admin.call("POST", "runs/search", json={
            "experiment_ids": [experiment["experiment_id"]], "max_results": 1000,
            "order_by": ["attributes.start_time DESC"]}).get("runs", [])
        champion = admin.call("GET", "registered-models/alias", ok=("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"),
                              params={"name": name, "alias": "champion"}).get("model_version", {})
        times = [float(t) for _, t in checks.values()]
        times += [int(r["info"].get("end_time") or r["info"]["start_time"]) / 1000 for r in runs[:1]]
        labs = [int(k.split(".")[0]) for k, (s, _) in checks.items() if s != "not attempted"]
        labs += [2] * bool(runs) + [3] * bool(champion)
        rows.append({"learner": learner["id"], "name": learner["name"],
                     "last_lab": max(labs) if labs else None, "correct": len(correct),
                     "incorrect": len(incorrect), "not_attempted": total - len(correct) - len(incorrect),
                     "runs": len(runs), "champion": champion.get("version"),
                     "idle_min": round((now - max(times)) / 60, 1) if times else None})
    table = pd.DataFrame(rows).set_index("learner")
    return table.astype({"last_lab": "Int64", "idle_min": "Float64"})


def leaderboard(root: str | Path | None = None, holdout: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every learner's champion scored by the instructor on one common holdout (the course
    dataset's last week): PR-AUC and expected cost, best (cheapest) first. Not self-reported."""
    import pandas as pd

    from . import data, training

    admin, state = _admin(root)
    if holdout is None:
        holdout = data.time_split(data.course_dataset())[2]
    import mlflow

    rows = []
    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(state["uri"])
    mlflow.set_registry_uri(state["uri"])  # models:/ URIs resolve against the global registry
    with admin.as_mlflow_user(), training._quiet_mlflow(), contextlib.ExitStack() as undo:
        undo.callback(mlflow.set_tracking_uri, saved[0])
        undo.callback(mlflow.set_registry_uri, saved[1])
        client = mlflow.MlflowClient(tracking_uri=state["uri"], registry_uri=state["uri"])
        for learner in state["roster"]:
            name = f"{config.MODEL_NAME}-{learner['id']}"
            try:
                version = client.get_model_version_by_alias(name, "champion")
            except Exception:  # noqa: BLE001 - no champion yet is a normal state in a workshop
                continue
            pipeline = mlflow.sklearn.load_model(f"models:/{name}/{version.version}")
            threshold = float(version.tags.get("threshold") or 0.5)
            scores = training.evaluate(pipeline, holdout, threshold)
            rows.append({"learner": learner["id"], "version": version.version,
                         "model_kind": version.tags.get("model_kind", ""), "threshold": round(threshold, 3),
                         "pr_auc": round(scores["pr_auc"], 4), "cost": round(scores["cost"], 2),
                         "cost_per_1000": round(scores["cost_per_1000"], 2)})
    columns = ["learner", "version", "model_kind", "threshold", "pr_auc", "cost", "cost_per_1000"]
    table = pd.DataFrame(rows, columns=columns).sort_values(["cost", "pr_auc"], ascending=[True, False])
    table.insert(0, "rank", range(1, len(table) + 1))
    return table.set_index("rank")


def progress_history(root: str | Path | None = None) -> pd.DataFrame:
    """When each learner first got each exercise right: one row per (learner, exercise, time)."""
    import pandas as pd

    admin, state = _admin(root)
    rows = []
    for learner in state["roster"]:
        name = f"{config.MODEL_NAME}-{learner['id']}"
        experiment = admin.call("GET", "experiments/get-by-name", params={"experiment_name": name})["experiment"]
        for tag in experiment.get("tags", []):
            if tag["key"].startswith("mlops_lab.correct."):
                rows.append({"learner": learner["id"], "exercise": tag["key"].removeprefix("mlops_lab.correct."),
                             "time": pd.Timestamp(float(tag["value"]), unit="s")})
    return pd.DataFrame(rows, columns=["learner", "exercise", "time"]).sort_values("time")


def progress_plot(root: str | Path | None = None):
    """Exercises correct over the session, one line per learner (a matplotlib Figure)."""
    import matplotlib.pyplot as plt

    history, state = progress_history(root), _load_state(root)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    start = time.time() if history.empty else history["time"].min()
    for learner in [r["id"] for r in state["roster"]]:
        mine = history[history["learner"] == learner]
        minutes = [0.0] + ([] if mine.empty else list((mine["time"] - start).dt.total_seconds() / 60))
        ax.step(minutes, range(len(minutes)), where="post", label=learner)
    ax.set_xlabel("minutes since the first correct answer")
    ax.set_ylabel("exercises correct")
    ax.set_title("Progress over the session")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
