"""Workshop mode: one shared MLflow server for a room of learners, and the instructor's view of it.

The server is MLflow's own: ``mlflow server`` with a PostgreSQL backend store (a URI given, or a
local cluster started from Debian's ``postgresql`` binaries with its data in the workshop folder),
artifacts through the server's proxy (``--serve-artifacts``) and MLflow's ``basic-auth`` app.

Isolation uses basic-auth resource permissions, not ``--enable-workspaces``. Workspaces group
resources for *teams* and are a fallback layer on top of the same auth app; a learner is one user
owning one experiment and one registered model, which is exactly a per-resource grant. So the
auth app's ``default_permission`` is READ (everyone reads everything: the instructor's and the
other learners' runs), and the instructor creates every experiment and model a lab makes for a
learner (``learner_resources``: ``cardguard-<id>``, ``cardguard-<id>-loop``, ``cardguard-<id>-whatif``)
up front and grants that learner MANAGE on them. Pre-creating matters: a resource's creator owns it,
so nobody can claim another learner's names first.

No secret is on a command line or in an environment we set: passwords live in 0600 files of the
workshop folder (libpq reads the database's from ``pgpass``). ``start`` is idempotent: the same roster
starts the same room (accounts, passwords, port); the login check is MLflow's, behind the auth app's
own hook (:func:`authenticate`).

Learners connect with environment variables only (``MLOPS_LAB_TRACKING_URI``,
``MLFLOW_TRACKING_USERNAME``, ``MLFLOW_TRACKING_PASSWORD``); ``config`` derives their names from
the username. Every ``lab.check`` outcome lands on the learner's experiment as a tag, which
:func:`status` shows as self-reported beside what the server holds (runs, versions, aliases);
:func:`leaderboard` scores every champion that fits the data contract on one common holdout itself.
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
from .tracking import (  # noqa: F401 - re-exported: workshop.<name> is the instructor's vocabulary
    CHECK_TAG,
    _learner_http,
    explain,
    record_check,
    remote,
    server_errors,
)
from .tracking import SERVER_TIMEOUT as _TIMEOUT

if TYPE_CHECKING:
    import pandas as pd

ADMIN = "instructor"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
PG_LIB = Path("/usr/lib/postgresql")  # Debian's versioned server binaries: PG_LIB/<major>/bin
# Sized by benchmarks/tracking.py at 30 learners (docs/workshops.md §4): server workers, and the SQLAlchemy
# pool each worker keeps per store (tracking, registry and auth stores share the database).
WORKERS = 2
POOL_SIZE = 5
MAX_OVERFLOW = 5
PG_MAX_CONNECTIONS = 200


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
        # as the servers bind: a stopped server's connections in TIME_WAIT do not hold the port, a listener does
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


def _postgres_running(bin_dir: Path, data: Path, as_pg: list[str]) -> bool:
    return subprocess.run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "status"],
                          capture_output=True).returncode == 0


def start_postgres(root: Path, port: int | None = None) -> dict:
    """Initialise (once) and start a local PostgreSQL cluster in ``root/postgres``; return its settings.

    No secret leaves a 0600 file: the URI carries no password, libpq reads it from ``root/pgpass``
    (``PGPASSFILE``), so neither ``ps`` nor a process environment shows it. A cluster that is already
    running (a server that crashed and left it up) is used as it is."""
    bin_dir, as_pg = postgres_bin(), _as_postgres()
    data, log = root / "postgres", root / "postgres.log"
    password_file = root / "postgres.password"
    if (data / "PG_VERSION").exists() and _postgres_running(bin_dir, data, as_pg):
        port = port or int((data / "postmaster.pid").read_text().splitlines()[3])
    else:
        port = port or _free_port()
        if not _port_free(port):
            raise LabError(f"Port {port} on 127.0.0.1 is already taken, so PostgreSQL cannot listen there. Stop "
                           "whatever holds it, or delete `postgres_port` from the workshop's state.json to take "
                           "another.")
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
        # max_connections: every server worker holds up to POOL_SIZE + MAX_OVERFLOW connections per store
        _run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
              f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data} "
              f"-c max_connections={PG_MAX_CONNECTIONS}", "start"], "Starting PostgreSQL", log)
    password = password_file.read_text().strip()
    pgpass = _write_private(root / "pgpass", f"127.0.0.1:{port}:*:mlflow:{password}\n")
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
            "uri": f"postgresql+psycopg2://mlflow@127.0.0.1:{port}/mlflow", "pgpass": str(pgpass)}


def _write_private(path: Path, text: str) -> Path:
    """Write a secret: the file is 0600 before the secret is in it."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)
    return path


def database_uri_without_password(uri: str, root: Path) -> tuple[str, Path | None]:
    """A PostgreSQL URI given with a password: the password moves to ``root/pgpass`` (0600, read by
    libpq through ``PGPASSFILE``) and the URI handed to ``mlflow server`` carries none."""
    from sqlalchemy.engine import URL, make_url

    if not uri.startswith("postgresql"):
        raise LabError(f"--database-uri must be a PostgreSQL URI (postgresql://user@host:port/db), not "
                       f"{uri.split(':')[0]}: SQLite locks under a room of writers.")
    url = make_url(uri)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg2")
    if not url.password:
        return url.render_as_string(hide_password=False), None
    entry = ":".join(str(x).replace("\\", "\\\\").replace(":", "\\:")
                     for x in (url.host or "localhost", url.port or 5432, url.database or "*", url.username or "*",
                               url.password))
    pgpass = _write_private(root / "pgpass", entry + "\n")
    bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
    return bare.render_as_string(hide_password=False), pgpass


def stop_postgres(pg: dict) -> None:
    as_pg = ["runuser", "-u", "postgres", "--"] if pg.get("as_postgres") else []
    subprocess.run([*as_pg, str(Path(pg["bin"]) / "pg_ctl"), "-D", pg["data"], "-m", "fast", "-w", "stop"],
                   capture_output=True)


# --------------------------------------------------------------------------- the server


def server_environment(pgpass: str | Path | None = None) -> dict[str, str]:
    """The environment ``mlflow server`` runs with: the pool sizes above, libpq's password file, and
    no secret (passwords stay in 0600 files; a process's environment is readable by its user)."""
    drop = ("PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_BACKEND_STORE_URI")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(MLFLOW_SQLALCHEMYSTORE_POOL_SIZE=str(POOL_SIZE), MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW=str(MAX_OVERFLOW))
    if pgpass:
        env["PGPASSFILE"] = str(pgpass)
    return env



def _state_file(root: Path) -> Path:
    return root / "state.json"


def _load_state(root: str | Path | None = None) -> dict:
    root = Path(root or workshop_dir())
    try:
        return json.loads(_state_file(root).read_text())
    except (OSError, ValueError):
        raise LabError(f"No workshop server was started from {root}. Start one with "
                       "`mlops-lab workshop server --roster roster.csv` (or pass the folder with --dir).") from None


def _save_state(root: Path, state: dict) -> None:
    _write_private(_state_file(root), json.dumps(state, indent=1))


def _proc_stat(pid: int | str) -> list[str] | None:
    """State, parent and process group of a process, from /proc (None when it is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie (killed, not yet reaped) is not running


def _group(pgid: int) -> list[int]:
    """The live processes of the server's process group that are MLflow's (its uvicorn workers
    outlive a SIGKILLed ``mlflow server`` and keep its port); none when the group id was reused."""
    members = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        stat = _proc_stat(stat_file.parent.name)
        if stat and stat[0] != "Z" and int(stat[2]) == pgid:
            members.append(int(stat_file.parent.name))
    try:
        ours = any(b"mlflow" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in members)
    except OSError:
        ours = True
    return members if ours else []


def _end_group(pgid: int, seconds: float = 20) -> None:
    """SIGTERM the server's process group, then SIGKILL what is left; reap our own child."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if not _group(pgid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and _group(pgid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pgid, os.WNOHANG)
            time.sleep(0.2)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)


class Admin:
    """The instructor's account on a running server: REST calls with basic auth, errors made plain."""

    def __init__(self, uri: str, username: str, password: str):
        import httpx

        self.uri, self.username, self.password = uri.rstrip("/"), username, password
        self.http = httpx.Client(base_url=self.uri, auth=(username, password), timeout=30)

    def call(self, method: str, endpoint: str, ok: tuple[str, ...] = (), version: str = "2.0", **kwargs) -> dict:
        import httpx

        try:
            response = self.http.request(method, f"/api/{version}/mlflow/{endpoint}", **kwargs)
        except httpx.TransportError as exc:
            raise LabError(f"The workshop server {self.uri} does not answer ({type(exc).__name__}): it is not "
                           "running. Start it again with `mlops-lab workshop server --roster <the same roster>`: "
                           "same accounts, passwords and address.") from None
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


# ------------------------------------------------- the server's login check (runs inside mlflow server)

LOGIN_FAILURES = 5  # wrong passwords for one account from one address within LOGIN_WINDOW s: then 429
LOGIN_WINDOW = 60.0
_ADMIN_ONLY = ("/mlflow/users/list",)  # MLflow lets any account list every user; in a room only the instructor


@contextlib.contextmanager
def _login_failures():
    """Failed logins as {"user address": [times]}, shared by every server worker: a 0600 JSON file beside
    the server's basic_auth.ini, read and written under an exclusive lock (rewritten only when changed)."""
    import fcntl

    path = Path(os.environ.get("MLFLOW_AUTH_CONFIG_PATH") or workshop_dir() / "basic_auth.ini")
    fd = os.open(path.with_name("login_failures.json"), os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        text = f.read()
        try:
            failures = json.loads(text) if text else {}
        except ValueError:
            failures = {}
        before = json.dumps(failures, sort_keys=True)
        yield failures
        after = json.dumps(failures, sort_keys=True)
        if after != before:
            f.seek(0)
            f.truncate()
            f.write(after)


def authenticate():
    """The workshop server's ``authorization_function`` (basic_auth.ini): MLflow's own basic-auth
    check, plus what a room needs. Any scheme but Basic gets 401 (MLflow's cached check fails with
    500 on ``Bearer``); after LOGIN_FAILURES wrong passwords for one account from one address within
    LOGIN_WINDOW seconds, 429 until the window has passed, across all server workers; listing the
    users is for the instructor only."""
    from flask import make_response, request
    from mlflow.server import auth

    given = request.authorization
    if given is None or (given.type or "").lower() != "basic" or not given.username or given.password is None:
        return auth.make_basic_auth_response()
    key, now = f"{given.username} {request.remote_addr or ''}", time.time()
    with _login_failures() as failures:
        recent = [t for t in failures.pop(key, []) if now - t < LOGIN_WINDOW]
        if recent:
            failures[key] = recent
    if len(recent) >= LOGIN_FAILURES:
        wait = int(LOGIN_WINDOW - (now - recent[0])) + 1
        response = make_response(f"Too many wrong passwords for {given.username!r} from this address: wait "
                                 f"{wait} s, then copy the password again from the instructor's handout.", 429)
        response.headers["Retry-After"] = str(wait)
        return response
    result = auth.authenticate_request_basic_auth()
    if getattr(result, "status_code", None) == 401:
        with _login_failures() as failures:
            failures.setdefault(key, []).append(now)
        return result
    if request.path.endswith(_ADMIN_ONLY) and not auth.store.get_user(given.username).is_admin:
        return auth.make_forbidden_response()
    return result


def _write_auth_config(root: Path, database_uri: str, admin_password: str) -> Path:
    return _write_private(root / "basic_auth.ini", (
        "[mlflow]\n"
        "# everyone reads everything; each learner manages only their own experiments and models\n"
        "default_permission = READ\n"
        "# no password here: libpq reads it from the pgpass file (PGPASSFILE)\n"
        f"database_uri = {database_uri}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {admin_password}\n"
        "# MLflow's basic auth, plus 401 for other schemes, failed-login throttling, users listed to admins only\n"
        "authorization_function = mlops_lab.workshop:authenticate\n"
        "# PBKDF2 per request costs ~1 s on a busy machine; cache a checked password for a minute\n"
        "auth_cache_ttl_seconds = 60\n"))


def _wait_healthy(uri: str, proc: subprocess.Popen, log: Path, seconds: float = 300,
                  report: Callable[[str], None] | None = None) -> None:
    import httpx

    start = time.monotonic()
    deadline, said = start + seconds, start
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
            raise LabError(f"mlflow server exited at start ({tail}). Full log: {log}.")
        try:
            if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if report and time.monotonic() - said > 10:
            said = time.monotonic()
            report(f"  ... waiting for mlflow server's workers ({said - start:.0f} s; log: {log})")
        time.sleep(0.5)
    raise LabError(f"mlflow server did not answer {uri}/health within {seconds:.0f} s. Its log: {log}.")


def learner_resources(learner_id: str) -> list[tuple[str, str]]:
    """(resource type, name) of every experiment and registered model the labs create for one learner:
    created and granted ahead by the server, so nobody can claim another learner's name first."""
    base = f"{config.MODEL_NAME}-{learner_id}"
    return ([("experiment", base + suffix) for suffix in config.EXPERIMENTS.values()]
            + [("registered_model", base + suffix) for suffix in config.MODELS.values()])


def _address(address: str | None, port: int) -> tuple[str, str, list[str]]:
    """The room's address -> (URL learners use, host to bind, Host headers MLflow may accept)."""
    from urllib.parse import urlsplit

    url = (address or f"http://127.0.0.1:{port}").rstrip("/")
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabError(f"--address {address!r} is not a URL: give the address learners will use, e.g. "
                       "http://room.example.org:5000 (their handout and the server's allowed Host headers).")
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    hosts = [f"127.0.0.1:{port}", f"localhost:{port}", parts.netloc]
    if parts.port is None:
        hosts.append(f"{parts.hostname}:{443 if parts.scheme == 'https' else 80}")
    return f"{parts.scheme}://{parts.netloc}", "127.0.0.1" if loopback else "0.0.0.0", list(dict.fromkeys(hosts))


def start(roster: str | Path, root: str | Path | None = None, database_uri: str | None = None,
          port: int | None = None, workers: int = WORKERS, address: str | None = None,
          reset_passwords: bool = False, report: Callable[[str], None] = print) -> dict:
    """Start the workshop's MLflow server and create the roster's accounts; return the state.

    Idempotent: the same roster starts the same room from the workshop folder (accounts, passwords,
    permissions, port and address kept there); learners new to the roster are added; a learner left
    off the roster keeps their account. Passwords change only with ``reset_passwords``."""
    learners = read_roster(roster)
    root = Path(root or workshop_dir()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    old = _load_state(root) if _state_file(root).exists() else {}
    if _alive(old.get("pid")):
        raise LabError(f"A workshop server from {root} is already running at {old['uri']}. To add learners or "
                       "reset passwords, stop it first (`mlops-lab workshop stop`), then run the same command again.")
    if old.get("pid"):
        _end_group(old["pid"])  # a crashed server's workers may still hold its port
    port = port or old.get("port") or _free_port()
    if not _port_free(port):
        kept = " (the room's port, kept from the last start so handed-out addresses stay valid)" \
            if port == old.get("port") else ""
        raise LabError(f"Port {port} on 127.0.0.1 is already taken{kept}. Stop what holds it, or pick another with "
                       "--port (then hand out the new address).")
    address, host, allowed_hosts = _address(address or old.get("address"), port)
    pg, pgpass = None, None
    database_uri = database_uri or old.get("database_uri")
    if database_uri is None:
        pg = start_postgres(root, port=(old.get("postgres") or {}).get("port"))
        database_uri, pgpass = pg["uri"], pg["pgpass"]
    else:
        database_uri, pgpass = database_uri_without_password(database_uri, root)
        if pgpass:
            report(f"The database password now lives in {root / 'pgpass'} (0600), not in the URI the server sees. "
                   "It was on your own command line: next time give the URI without it.")
        elif (root / "pgpass").exists():
            pgpass = root / "pgpass"
    admin_file = root / "admin.password"
    # the auth database keeps the first admin password: never change it here
    admin_password = admin_file.read_text().strip() if admin_file.exists() else secrets.token_urlsafe(18)
    _write_private(admin_file, admin_password + "\n")
    ini = _write_auth_config(root, database_uri, admin_password)
    (root / "artifacts").mkdir(exist_ok=True)
    everyone = {r["id"]: Learner(**r) for r in old.get("roster", [])}
    new = [learner for learner in learners if learner.id not in everyone]
    everyone.update({learner.id: learner for learner in learners})
    uri = f"http://127.0.0.1:{port}"
    env = {**server_environment(pgpass), "MLFLOW_AUTH_CONFIG_PATH": str(ini),
           # MLflow requires one; it signs the UI's form tokens only (learners use Basic auth, no session)
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)}
    log = root / "mlflow-server.log"
    mlflow_cmd = Path(sys.executable).parent / "mlflow"
    cmd = [str(mlflow_cmd) if mlflow_cmd.exists() else "mlflow", "server",
           "--backend-store-uri", database_uri, "--serve-artifacts",
           "--artifacts-destination", str(root / "artifacts"), "--app-name", "basic-auth",
           "--host", host, "--port", str(port), "--workers", str(workers),
           "--allowed-hosts", ",".join(allowed_hosts), "--cors-allowed-origins", address,
           # a busy machine imports a worker slowly; uvicorn's 5 s health check would kill it in a loop
           "--uvicorn-opts", "--timeout-worker-healthcheck 120"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    state = {"uri": uri, "address": address, "port": port, "pid": proc.pid, "postgres": pg,
             "database_uri": None if pg else database_uri, "admin": {"username": ADMIN, "password": admin_password},
             "roster": [learner.__dict__ for learner in everyone.values()], "started": time.time(), "log": str(log)}
    _save_state(root, state)
    report(f"Starting mlflow server on {uri} ({workers} workers; log: {log}) ...")
    try:
        _wait_healthy(uri, proc, log, report=report)
        kept = {} if reset_passwords else _read_credentials(root)
        credentials = add_learners(state, list(everyone.values()), kept, report=report)
    except BaseException:
        stop(root, report=lambda _: None)
        raise
    handout = _write_handout(root, address, credentials)
    changed = [learner.id for learner, _ in credentials if learner.id not in kept]
    report(f"Workshop server: {address} (PostgreSQL backend, artifact proxy, basic auth), {len(everyone)} learners"
           + (f", {len(new)} new: {', '.join(learner.id for learner in new)}" if old and new else "") + ".")
    report(f"Credentials to hand out: {handout}" + (f" (new passwords: {', '.join(changed)}; the others are "
                                                    "unchanged)" if old and changed else "")
           + ". A learner connects with three variables, e.g.:")
    first = credentials[0]
    report(f"  export MLOPS_LAB_TRACKING_URI={address} MLFLOW_TRACKING_USERNAME={first[0].id} "
           f"MLFLOW_TRACKING_PASSWORD={first[1]}")
    report("Then `mlops-lab doctor` checks the connection. `mlops-lab workshop status` shows the room; "
           "`mlops-lab workshop stop` stops the server; the same `workshop server` command starts the same room.")
    return state


def add_learners(state: dict, learners: list[Learner], passwords: dict[str, str] | None = None,
                 report: Callable[[str], None] = print) -> list[tuple[Learner, str]]:
    """Create each learner's account, experiments and models (``learner_resources``), and give them
    MANAGE on those only. Idempotent: a learner in ``passwords`` keeps that password; anyone else
    gets a new one (a new account, or ``--reset-passwords``)."""
    admin = Admin(state["uri"], **state["admin"])
    passwords = passwords or {}
    made = []
    for n, learner in enumerate(learners, start=1):
        if n % 10 == 0:
            report(f"  ... accounts {n}/{len(learners)}")
        password = passwords.get(learner.id) or secrets.token_urlsafe(12)
        created = admin.call("POST", "users/create", ok=("RESOURCE_ALREADY_EXISTS",),
                             json={"username": learner.id, "password": password})
        if not created and learner.id not in passwords:
            admin.call("PATCH", "users/update-password", json={"username": learner.id, "password": password})
        for kind, name in learner_resources(learner.id):
            if kind == "experiment":
                found = admin.call("GET", "experiments/get-by-name", ok=("RESOURCE_DOES_NOT_EXIST",),
                                   params={"experiment_name": name})
                resource = (found.get("experiment", {}).get("experiment_id")
                            or admin.call("POST", "experiments/create", json={"name": name})["experiment_id"])
                admin.call("POST", "experiments/set-experiment-tag",
                           json={"experiment_id": resource, "key": "mlops_lab.learner", "value": learner.name})
            else:
                admin.call("POST", "registered-models/create", ok=("RESOURCE_ALREADY_EXISTS",), json={"name": name})
                resource = name
            admin.call("POST", "users/permissions/grant", version="3.0", ok=("RESOURCE_ALREADY_EXISTS",), json={
                "username": learner.id, "resource_type": kind, "resource_id": resource, "permission": "MANAGE"})
        made.append((learner, password))
    return made


def _write_handout(root: Path, uri: str, credentials: list[tuple[Learner, str]]) -> Path:
    handout = root / "credentials.csv"
    handout.touch(mode=0o600, exist_ok=True)
    handout.chmod(0o600)
    with open(handout, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "name", "password", "connect"])
        for learner, password in credentials:
            writer.writerow([learner.id, learner.name, password,
                             f"export MLOPS_LAB_TRACKING_URI={uri} MLFLOW_TRACKING_USERNAME={learner.id} "
                             f"MLFLOW_TRACKING_PASSWORD={password}"])
    return handout


def _read_credentials(root: Path) -> dict[str, str]:
    try:
        return credentials(root)
    except (OSError, KeyError):
        return {}


def credentials(root: str | Path | None = None) -> dict[str, str]:
    """learner id -> password, from the handout file of the running workshop."""
    root = Path(root or workshop_dir())
    with open(root / "credentials.csv", newline="") as f:
        return {row["id"]: row["password"] for row in csv.DictReader(f)}


def stop(root: str | Path | None = None, report: Callable[[str], None] = print) -> None:
    """Stop the workshop's MLflow server and its local PostgreSQL (the data stays for next time)."""
    root = Path(root or workshop_dir()).resolve()
    state = _load_state(root)
    if state.get("pid"):
        _end_group(state["pid"])
    if state.get("postgres"):
        stop_postgres(state["postgres"])
    state["pid"] = None
    _save_state(root, state)
    report(f"Workshop server {state.get('address', state['uri'])} stopped; its accounts, database and artifacts "
           f"stay in {root}: the same `workshop server` command starts the same room again.")


# --------------------------------------------------------------------------- learner side


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
    """The instructor's account on the running server; a server that is down says so in one line."""
    state = _load_state(root)
    if not _alive(state.get("pid")) and not _answers(state["uri"]):
        raise LabError(f"The workshop server {state.get('address', state['uri'])} is down"
                       f"{' (stopped)' if state.get('pid') is None else ' (its process has ended)'}. Start it "
                       "again with `mlops-lab workshop server --roster <the same roster>`: same accounts, "
                       "passwords and address.")
    return Admin(state["uri"], **state["admin"]), state


def _answers(uri: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{uri}/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _search_runs(admin: Admin, experiment_id: str | None) -> list[dict]:
    if experiment_id is None:
        return []
    return admin.call("POST", "runs/search", json={
        "experiment_ids": [experiment_id], "max_results": 1000,
        "order_by": ["attributes.start_time DESC"]}).get("runs", [])


def status(root: str | Path | None = None, now: float | None = None) -> pd.DataFrame:
    """One row per learner. What the server holds, which a learner cannot claim without doing it:
    ``lab`` (2: runs logged; 3: a champion alias; 8: lab 08's loop retrained), ``runs``, ``versions``
    registered, the ``champion`` and ``challenger`` versions, ``loop_runs``; scores on the common
    holdout are the leaderboard's. What each learner's notebook reports (``lab.check`` outcomes, tags
    they could also set by hand) is kept apart, in the ``reported_*`` columns. ``idle_min``: minutes
    since the last activity of either kind."""
    import pandas as pd

    from .exercises import all_exercises

    admin, state = _admin(root)
    exercises = set(all_exercises())
    now = now or time.time()
    rows = []
    for learner in state["roster"]:
        (_, name), (_, loop_name) = learner_resources(learner["id"])[:2]
        experiment = admin.call("GET", "experiments/get-by-name", ok=("RESOURCE_DOES_NOT_EXIST",),
                                params={"experiment_name": name}).get("experiment", {})
        loop = admin.call("GET", "experiments/get-by-name", ok=("RESOURCE_DOES_NOT_EXIST",),
                          params={"experiment_name": loop_name}).get("experiment", {})
        tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
        checks = {k.removeprefix(CHECK_TAG): v.split("@") for k, v in tags.items() if k.startswith(CHECK_TAG)}
        checks = {k: v for k, v in checks.items() if len(v) == 2 and _number(v[1]) is not None}
        correct = {k.removeprefix("mlops_lab.correct.") for k in tags if k.startswith("mlops_lab.correct.")}
        incorrect = {k for k, (s, _) in checks.items() if s == "incorrect" and k not in correct}
        runs = _search_runs(admin, experiment.get("experiment_id"))
        loop_runs = _search_runs(admin, loop.get("experiment_id"))
        versions = admin.call("GET", "model-versions/search", params={"filter": f"name = '{name}'",
                                                                         "max_results": 1000}).get("model_versions", [])
        aliases = {}
        for alias in ("champion", "challenger"):
            aliases[alias] = admin.call("GET", "registered-models/alias", ok=(
                "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST"), params={"name": name, "alias": alias}
            ).get("model_version", {}).get("version")
        times = [_number(t) for _, t in checks.values()]
        times += [int(r["info"].get("end_time") or r["info"]["start_time"]) / 1000 for r in (runs + loop_runs)[:1]]
        times += [int(v.get("last_updated_timestamp") or v["creation_timestamp"]) / 1000 for v in versions]
        times = [t for t in times if t is not None and t <= now + 60]
        reported = [int(k.split(".")[0]) for k, (s, _) in checks.items() if s != "not attempted" and k in exercises]
        lab = [2] * bool(runs) + [3] * bool(aliases["champion"]) + [8] * bool(loop_runs)
        rows.append({"learner": learner["id"], "name": learner["name"], "lab": max(lab) if lab else None,
                     "runs": len(runs), "versions": len(versions), "champion": aliases["champion"],
                     "challenger": aliases["challenger"], "loop_runs": len(loop_runs),
                     "reported_lab": max(reported) if reported else None,
                     "reported_correct": len(correct & exercises), "reported_incorrect": len(incorrect & exercises),
                     "reported_not_attempted": len(exercises - correct - incorrect),
                     "idle_min": round((now - max(times)) / 60, 1) if times else None})
    table = pd.DataFrame(rows).set_index("learner")
    return table.astype({"lab": "Int64", "reported_lab": "Int64", "idle_min": "Float64"})


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def contract_mismatch(signature) -> str | None:
    """Why a model's MLflow signature is not the data contract's (None when it is): named input
    columns that are exactly the contract's features, and a two-column probability output."""
    from . import data

    if signature is None:
        return "logged without a signature, so its inputs cannot be checked against the data contract"
    inputs = getattr(signature, "inputs", None)
    names = inputs.input_names() if inputs is not None and inputs.has_input_names() else []
    if not names or any(isinstance(n, int) for n in names):
        return "its signature takes unnamed inputs (a tensor), not the data contract's named features"
    features = data.feature_columns()
    missing, extra = [c for c in features if c not in names], [c for c in names if c not in features]
    if missing or extra:
        parts = ([f"lacks {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"] if missing else []) + \
                ([f"takes {', '.join(extra[:4])}{' ...' if len(extra) > 4 else ''} that the contract does not have"]
                 if extra else [])
        return f"its signature's inputs are not the contract's {len(features)} features: it {' and '.join(parts)}"
    outputs = getattr(signature, "outputs", None)
    shape = getattr(outputs.inputs[0], "shape", None) if outputs is not None and len(outputs.inputs) == 1 else None
    if outputs is not None and not (shape and len(shape) == 2 and shape[-1] == 2):
        return "its output is not predict_proba's two columns (no fraud probability to score)"
    return None


def leaderboard(root: str | Path | None = None, holdout: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every learner's champion scored by the instructor on one common holdout (the course
    dataset's last week): PR-AUC and expected cost, best (cheapest) first. Not self-reported.
    Only champions whose signature is the data contract's are loaded and scored; the others are
    listed after the ranked ones, without a rank, with the reason in ``not_scored``."""
    import numpy as np
    import pandas as pd

    from . import data, tracking, training

    admin, state = _admin(root)
    if holdout is None:
        holdout = data.time_split(data.course_dataset())[2]
    import mlflow
    from mlflow.models import get_model_info

    rows = []
    saved = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(state["uri"])
    mlflow.set_registry_uri(state["uri"])  # models:/ URIs resolve against the global registry
    with admin.as_mlflow_user(), tracking._quiet_mlflow(), contextlib.ExitStack() as undo:
        undo.callback(mlflow.set_tracking_uri, saved[0])
        undo.callback(mlflow.set_registry_uri, saved[1])
        client = mlflow.MlflowClient(tracking_uri=state["uri"], registry_uri=state["uri"])
        for learner in state["roster"]:
            name = learner_resources(learner["id"])[0][1]
            try:
                version = client.get_model_version_by_alias(name, "champion")
            except Exception:  # noqa: BLE001 - no champion yet is a normal state in a workshop
                continue
            row = {"learner": learner["id"], "version": version.version,
                   "model_kind": str(version.tags.get("model_kind", ""))[:40]}
            uri = f"models:/{name}/{version.version}"
            try:
                reason = contract_mismatch(get_model_info(uri).signature)
                threshold = _number(version.tags.get("threshold", 0.5))
                if reason is None and (threshold is None or not 0 <= threshold <= 1):
                    reason = f"its threshold tag {str(version.tags.get('threshold'))[:20]!r} is not a probability"
                if reason is None:
                    scores = training.evaluate(mlflow.sklearn.load_model(uri), holdout, threshold)
                    if not np.isfinite([scores["pr_auc"], scores["cost"]]).all():
                        reason = "its scores on the holdout are not finite numbers"
            except Exception as exc:  # noqa: BLE001 - one learner's model must not end the instructor's view
                reason = f"could not be loaded and scored: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"
            if reason:
                rows.append({**row, "not_scored": reason})
                continue
            rows.append({**row, "threshold": round(threshold, 3), "pr_auc": round(scores["pr_auc"], 4),
                         "cost": round(scores["cost"], 2), "cost_per_1000": round(scores["cost_per_1000"], 2),
                         "not_scored": ""})
    columns = ["learner", "version", "model_kind", "threshold", "pr_auc", "cost", "cost_per_1000", "not_scored"]
    table = pd.DataFrame(rows, columns=columns)
    scored = table[table["not_scored"] == ""].sort_values(["cost", "pr_auc"], ascending=[True, False])
    table = pd.concat([scored, table[table["not_scored"] != ""]])
    table.insert(0, "rank", pd.array(list(range(1, len(scored) + 1)) + [None] * (len(table) - len(scored)),
                                     dtype="Int64"))
    return table.set_index("rank")


def progress_history(root: str | Path | None = None) -> pd.DataFrame:
    """When each learner's notebook reported each exercise correct (self-reported by ``lab.check``:
    a picture of the session's pace, not proof): one row per (learner, exercise, time)."""
    import pandas as pd

    admin, state = _admin(root)
    rows = []
    for learner in state["roster"]:
        name = learner_resources(learner["id"])[0][1]
        experiment = admin.call("GET", "experiments/get-by-name", ok=("RESOURCE_DOES_NOT_EXIST",),
                                params={"experiment_name": name}).get("experiment", {})
        for tag in experiment.get("tags", []):
            if tag["key"].startswith("mlops_lab.correct.") and _number(tag["value"]) is not None:
                rows.append({"learner": learner["id"], "exercise": tag["key"].removeprefix("mlops_lab.correct."),
                             "time": pd.Timestamp(_number(tag["value"]), unit="s")})
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
    ax.set_ylabel("exercises correct (self-reported)")
    ax.set_title("Progress over the session")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return fig
