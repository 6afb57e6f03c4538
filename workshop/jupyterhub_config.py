"""JupyterHub for a workshop room on one machine: `jupyterhub -f workshop/jupyterhub_config.py`.

Every learner on the roster of the running workshop server (`mlops-lab workshop server`) logs in
and gets a Jupyter server of their own, started as a local process, with:
  - their own workspace: MLOPS_LAB_HOME=<homes>/<id> (nothing shared on disk);
  - their tracking credentials in the environment (MLOPS_LAB_TRACKING_URI, MLFLOW_TRACKING_USERNAME,
    MLFLOW_TRACKING_PASSWORD) read from the server's credentials file, so every lab works unchanged;
  - memory and CPU limits announced (MEM_LIMIT, CPU_LIMIT). A local-process spawner cannot enforce
    them; on Kubernetes (docs/workshops.md) KubeSpawner does.

Settings come from the environment so the same file serves a real room and the test:
  MLOPS_WORKSHOP_DIR  the workshop server's folder (state.json, credentials.csv); default: workspace/workshop
  MLOPS_HUB_HOMES     where learners' workspaces go (default: <workshop dir>/homes)
  MLOPS_HUB_PORT      the public port on 127.0.0.1 (default 8000)
  MLOPS_HUB_PAM=1     log in with the machine's Unix accounts and run servers as those users
                      (one Unix user per learner); otherwise a shared password (MLOPS_HUB_PASSWORD)
                      and servers run as the hub's own user (the test, a trusted room)
  MLOPS_HUB_API_TOKEN optional: a token for automation (the test) with admin scopes
"""

import csv
import json
import os
import shutil
import sys
from pathlib import Path

c = get_config()  # noqa: F821 - injected by jupyterhub when it loads this file

workshop_dir = Path(os.environ.get("MLOPS_WORKSHOP_DIR")
                    or Path(os.environ.get("MLOPS_LAB_HOME") or Path.home() / "mlops-lab-workspace") / "workshop")
state = json.loads((workshop_dir / "state.json").read_text())
with open(workshop_dir / "credentials.csv", newline="") as f:
    passwords = {row["id"]: row["password"] for row in csv.DictReader(f)}
homes = Path(os.environ.get("MLOPS_HUB_HOMES") or workshop_dir / "homes")
hub_dir = workshop_dir / "hub"
COURSE = Path(__file__).resolve().parents[1]  # this repository: labs/ are copied from here
hub_dir.mkdir(parents=True, exist_ok=True)

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("MLOPS_HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(hub_dir / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(hub_dir / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")
c.ConfigurableHTTPProxy.command = [shutil.which("configurable-http-proxy") or "configurable-http-proxy"]

c.Authenticator.allowed_users = set(passwords)
if os.environ.get("MLOPS_HUB_PAM") == "1":
    c.JupyterHub.authenticator_class = "pam"
    c.JupyterHub.spawner_class = "localprocess"  # runs each server as the learner's Unix user
else:
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = os.environ.get("MLOPS_HUB_PASSWORD", "")
    c.JupyterHub.spawner_class = "simple"  # every server runs as the hub's user, in its own folder
    c.SimpleLocalProcessSpawner.home_dir_template = str(homes / "{username}")

c.Spawner.cmd = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab/tree/labs/00_welcome.ipynb"
c.Spawner.mem_limit = os.environ.get("MLOPS_HUB_MEM_LIMIT", "2G")  # per-lab peak is well under 1 GB
c.Spawner.cpu_limit = float(os.environ.get("MLOPS_HUB_CPU_LIMIT", "1"))
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120
if os.geteuid() == 0 and os.environ.get("MLOPS_HUB_PAM") != "1":
    c.Spawner.args = ["--allow-root"]  # the test runs as root in CI; a real room never does


def learner_environment(spawner):
    """Each learner's own workspace and tracking credentials, set just before their server starts."""
    name = spawner.user.name
    home = homes / name
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "labs").exists():  # the learner's own copy of the labs, never overwritten
        shutil.copytree(COURSE / "labs", home / "labs")
    spawner.environment.update({
        "MLOPS_LAB_HOME": str(home / "mlops-lab-workspace"),
        "MLOPS_LAB_TRACKING_URI": state.get("address", state["uri"]),  # the room's address, as handed out
        "MLFLOW_TRACKING_USERNAME": name,
        "MLFLOW_TRACKING_PASSWORD": passwords[name],
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        # MLflow's telemetry (nowhere to send it in a room) raced on an environment variable under load
        "MLFLOW_DISABLE_TELEMETRY": "true",
    })


c.Spawner.pre_spawn_hook = learner_environment

token = os.environ.get("MLOPS_HUB_API_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "workshop-automation", "api_token": token}]
    c.JupyterHub.load_roles = [{"name": "workshop-automation", "services": ["workshop-automation"],
                                "scopes": ["admin:users", "admin:servers", "access:servers"]}]
