"""The serving container: build context (bundle + serving code + pinned requirements), the
Dockerfile, building and running with the Docker SDK, and the no-daemon fallback that runs the
same entrypoint as a local process (Binder has no Docker)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from enum import StrEnum
from importlib import metadata
from pathlib import Path

from . import config
from .errors import LabError

FILES = Path(__file__).parent / "container_files"
DEFAULT_BASE_IMAGE = "python:3.11-slim"
DEFAULT_TAG = "cardguard:latest"
# what the image needs to serve, and nothing else (no MLflow, no Jupyter)
SERVING_PACKAGES = ("fastapi", "uvicorn", "pydantic", "prometheus-client", "scikit-learn", "numpy", "pandas",
                    "scipy", "fastapi-offline")


# the package modules the server imports (training: the pickled pipeline refers to it)
SERVING_MODULES = ("__init__.py", "errors.py", "config.py", "contract.py", "data.py", "training.py", "scoring.py", "tracking.py")


def dockerfile() -> str:
    return (FILES / "Dockerfile").read_text()


def base_image() -> str:
    """MLOPS_LAB_BASE_IMAGE if set (CI builds a local one: Docker Hub is out of reach there)."""
    import os

    return os.environ.get("MLOPS_LAB_BASE_IMAGE") or DEFAULT_BASE_IMAGE


def requirements() -> str:
    """Pinned serving requirements: the exact versions this environment runs."""
    return "".join(f"{name}=={metadata.version(name)}\n" for name in SERVING_PACKAGES)


def build_context(dest: str | Path | None = None, alias: str = "champion", name: str | None = None) -> Path:
    """Assemble the build context: Dockerfile, .dockerignore, requirements.txt, the serving code
    (this package's source) and the model bundle exported from the registry at ``alias``."""
    from .serving.model import export_bundle

    dest = Path(dest) if dest else config.ensure_home() / "container" / "context"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    shutil.copy(FILES / "Dockerfile", dest / "Dockerfile")
    shutil.copy(FILES / ".dockerignore", dest / ".dockerignore")
    (dest / "requirements.txt").write_text(requirements())
    package = Path(__file__).parent
    (dest / "mlops_lab").mkdir()
    for module in SERVING_MODULES:
        shutil.copy(package / module, dest / "mlops_lab" / module)
    shutil.copytree(package / "serving", dest / "mlops_lab" / "serving",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "server.py"))
    export_bundle(dest / "bundle", alias=alias, name=name)
    return dest


# --------------------------------------------------------------------------- Dockerfile checks


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\s*\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerfile_problems(text: str) -> list[tuple[str, str]]:
    """What is wrong with a serving Dockerfile, as (rule, why) pairs. Looks at the final stage."""
    steps = _instructions(text)
    starts = [i for i, (word, _) in enumerate(steps) if word == "FROM"]
    if not starts:
        return [("no FROM", "a Dockerfile starts from a base image: FROM ${BASE_IMAGE}")]
    final = steps[starts[-1]:]
    problems = []
    users = [args for word, args in final if word == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(("runs as root", "add `USER 10001:10001` (a numeric, unprivileged user) before CMD"))
    elif not users[-1].split(":")[0].isdigit():
        problems.append(("user by name", "use a numeric user id (USER 10001:10001) so Kubernetes can verify it is not root"))
    for word, args in steps:
        if word in ("COPY", "ADD") and not args.startswith("--from"):
            sources = [a for a in args.split()[:-1] if not a.startswith("--")]
            if any(s in (".", "./", "*") for s in sources):
                problems.append(("copies the whole context",
                                 f"`{word} {args}` copies everything (notebooks, data, secrets): copy only "
                                 "mlops_lab/ and bundle/"))
        if word == "RUN" and re.search(r"pip3? install", args) and "-r" not in args.split() \
                and "--requirement" not in args:
            packages = [a for a in args.split("install", 1)[1].split() if not a.startswith("-")]
            if any("==" not in p for p in packages):
                problems.append(("unpinned pip install", f"`RUN {args}`: install from the pinned requirements.txt"))
    if not any(word == "HEALTHCHECK" and args.upper() != "NONE" for word, args in final):
        problems.append(("no HEALTHCHECK", "add a HEALTHCHECK that calls /ready, so Docker knows when the model serves"))
    cmds = [args for word, args in final if word == "CMD"]
    if not cmds:
        problems.append(("no CMD", "say what the container runs: CMD [\"python\", \"-m\", \"uvicorn\", ...]"))
    elif not cmds[-1].startswith("["):
        problems.append(("shell-form CMD", "use the exec form CMD [\"python\", ...] so SIGTERM reaches uvicorn"
                         " and shutdown is graceful"))
    return problems


def hadolint(path: str | Path) -> tuple[int, str] | None:
    """Run hadolint (missing HEALTHCHECK is an error, warnings fail); None when it is not installed."""
    import sys

    # the virtualenv's own bin/ first: it is not on PATH when python is called by its full path
    beside = Path(sys.executable).parent / "hadolint"
    exe = str(beside) if beside.exists() else shutil.which("hadolint")
    if exe is None:
        return None
    out = subprocess.run([exe, "--no-color", "--error", "DL3057", "--failure-threshold", "warning", str(path)],
                         capture_output=True, text=True)
    return out.returncode, (out.stdout + out.stderr).strip()


# --------------------------------------------------------------------------- Docker


def docker_client(timeout: int = 300):
    """A Docker SDK client, or LabError saying why not and what the lab does instead."""
    try:
        import docker

        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except Exception as exc:
        raise LabError(
            f"No Docker daemon answers here ({type(exc).__name__}). That is expected on Binder. The lab runs the "
            "same server entrypoint as a local process instead: container.run_local(context)."
        ) from None


def docker_available() -> bool:
    """True when a Docker daemon answers (it may still lack the base image: see docker_status)."""
    try:
        docker_client(timeout=10)
        return True
    except LabError:
        return False


LOCAL_BASE_IMAGE = "mlops-lab/python:3.11-slim-local"  # what .ci/base-image.sh builds


class Situation(StrEnum):
    NO_DAEMON = "no daemon"
    NO_BASE_IMAGE = "no base image"
    READY = "ready"


@dataclass(frozen=True)
class DockerStatus:
    """Which of the three Docker situations this machine is in, and why, in words."""

    situation: Situation
    reason: str
    base_image: str

    @property
    def ready(self) -> bool:
        """A real image can be built (and lab 05 need not fall back to a local process)."""
        return self.situation is Situation.READY


def docker_status(base: str | None = None) -> DockerStatus:
    """Tell apart: no Docker daemon; a daemon that cannot get the base image (not on this machine,
    and its registry out of reach); a daemon with the base image (here, or pullable). Pulls nothing:
    for an image that is not here it asks the registry for the image's manifest only."""
    base = base or base_image()
    try:
        client = docker_client(timeout=20)
    except LabError as exc:
        return DockerStatus(Situation.NO_DAEMON, str(exc).split(". ")[0], base)
    import docker

    try:
        client.images.get(base)
        return DockerStatus(Situation.READY, f"the base image {base} is on this machine", base)
    except docker.errors.ImageNotFound:
        pass
    try:
        client.api.inspect_distribution(base)
        return DockerStatus(Situation.READY, f"the base image {base} can be pulled from its registry", base)
    except Exception as exc:
        why = str(getattr(exc, "explanation", None) or exc).strip().splitlines()[0][:200]
    try:
        client.images.get(LOCAL_BASE_IMAGE)
        fix = f"A local one (built by `bash .ci/base-image.sh`) is here: set MLOPS_LAB_BASE_IMAGE={LOCAL_BASE_IMAGE}."
    except docker.errors.ImageNotFound:
        fix = (f"Without access to its registry, build a local one from Debian packages (`bash .ci/base-image.sh`) "
               f"and set MLOPS_LAB_BASE_IMAGE={LOCAL_BASE_IMAGE}.")
    return DockerStatus(Situation.NO_BASE_IMAGE,
                        f"the base image {base} is not on this machine and could not be pulled ({why}). {fix}", base)


def build_image(context: str | Path, tag: str = DEFAULT_TAG, base: str | None = None, report=print) -> dict:
    """Build the image with the Docker SDK, reporting each build step; return id, tag, size."""
    base = base or base_image()
    status = docker_status(base)
    if status.situation is Situation.NO_BASE_IMAGE:
        raise LabError(f"Cannot build the image: {status.reason}")
    client = docker_client()
    start = time.perf_counter()
    tail: list[str] = []
    try:
        for chunk in client.api.build(path=str(context), tag=tag, buildargs={"BASE_IMAGE": base}, rm=True,
                                      forcerm=True, decode=True):
            if "stream" in chunk:
                line = chunk["stream"].rstrip()
                if line:
                    tail = (tail + [line])[-30:]
                    if line.startswith("Step ") or line.startswith("Successfully"):
                        report(line)
            if "error" in chunk:
                error = chunk["error"].strip()
                hint = ""
                if any(word in error for word in ("registry", "pull access", "no such host", "manifest")):
                    hint = (f"\nThe base image {base} could not be pulled. Without access to Docker Hub, build a "
                            "local one from Debian packages (`bash .ci/base-image.sh`) and set "
                            "MLOPS_LAB_BASE_IMAGE=mlops-lab/python:3.11-slim-local.")
                raise LabError(f"docker build failed: {error}{hint}\nLast build output:\n" + "\n".join(tail[-15:]))
    except LabError:
        raise
    except Exception as exc:
        raise LabError(f"docker build failed: {type(exc).__name__}: {exc}") from None
    image = client.images.get(tag)
    return {"id": image.id, "tag": tag, "base_image": base, "size_mb": image.attrs["Size"] / 1e6,
            "seconds": time.perf_counter() - start}


@dataclass
class ContainerHandle:
    container: object
    url: str
    seconds_to_ready: float

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def health(self) -> str:
        self.container.reload()
        return self.container.attrs["State"].get("Health", {}).get("Status", "none")

    def user(self) -> str:
        code, out = self.container.exec_run(["python", "-c", "import os; print(os.getuid())"])
        return out.decode().strip()

    def stop(self) -> None:
        try:
            self.container.stop(timeout=10)
        finally:
            self.container.remove(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_container(tag: str = DEFAULT_TAG, port: int | None = None, timeout: float = 120, env: dict | None = None,
                  wait_for_health: bool = False) -> ContainerHandle:
    """Run the image with port 8000 published on 127.0.0.1; wait until /ready answers (and, if asked,
    until Docker's HEALTHCHECK reports healthy)."""
    from .serving.server import free_port, wait_until_ready

    client = docker_client()
    port = port or free_port()
    start = time.perf_counter()
    container = client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", port)},
                                      environment=env or {}, labels={"mlops-lab": "serving"})
    handle = ContainerHandle(container, f"http://127.0.0.1:{port}", 0.0)

    def alive():
        container.reload()
        return container.status in ("created", "running")

    try:
        wait_until_ready(handle.url, timeout, alive=alive, logs=handle.logs)
        handle.seconds_to_ready = time.perf_counter() - start
        while wait_for_health and handle.health() != "healthy":
            if time.perf_counter() - start > timeout:
                raise LabError(f"The container never became healthy. Its log ends with:\n{handle.logs()[-2000:]}")
            time.sleep(0.5)
    except BaseException:
        handle.stop()
        raise
    return handle


@dataclass
class LocalHandle:
    """The fallback's running server, shaped like ContainerHandle (url, logs(), stop()), so a
    notebook prints the same things whichever path ran."""

    server: object  # serving.server.ServerHandle
    url: str
    seconds_to_ready: float

    def logs(self) -> str:
        return self.server.logs()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def run_local(context: str | Path, **kwargs) -> LocalHandle:
    """Without Docker: run the image's entrypoint (uvicorn + app_from_env on the bundle) as a local process."""
    from .serving.server import start_server

    start = time.perf_counter()
    server = start_server(bundle=Path(context) / "bundle", **kwargs)
    return LocalHandle(server, server.url, time.perf_counter() - start)


# --------------------------------------------------------------------------- lab 05: a HEALTHCHECK as Docker runs it


@dataclass(frozen=True)
class Health:
    """What Docker made of an image's own HEALTHCHECK."""

    status: str  # "healthy", "unhealthy", "starting" or "none" (the image has no HEALTHCHECK)
    exit_code: int | None  # of the last probe
    output: str  # what the last probe printed
    seconds: float  # from `docker run` to the verdict


def probe_health(tag: str, interval: float = 1.0, probes_after_ready: int = 3, timeout: float = 90) -> Health:
    """Run ``tag`` and let Docker run the image's own HEALTHCHECK (its test, timeout, retries and
    start period), only every ``interval`` seconds instead of the image's interval, so a check
    takes seconds. Returns as soon as Docker calls the container healthy, or once /ready has
    answered 200 and the probe has had ``probes_after_ready`` more chances."""
    from .serving.server import free_port, wait_until_ready

    client = docker_client()
    port = free_port()
    start = time.perf_counter()
    # an empty test inherits the image's HEALTHCHECK; only the interval is overridden
    running = client.containers.run(tag, detach=True, ports={"8000/tcp": ("127.0.0.1", port)},
                                    labels={"mlops-lab": "health"}, healthcheck={"interval": int(interval * 1e9)})

    def logs() -> str:
        return running.logs().decode(errors="replace")

    def state() -> dict:
        running.reload()
        return running.attrs["State"]

    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout,
                         alive=lambda: state()["Status"] in ("created", "running"), logs=logs)
        ready_at = time.perf_counter()
        while True:
            health = state().get("Health") or {}
            last = (health.get("Log") or [{}])[-1]
            status = health.get("Status", "none")
            waited = time.perf_counter() - ready_at
            if status in ("healthy", "none") or waited > probes_after_ready * interval + 4:
                return Health(status, last.get("ExitCode"), (last.get("Output") or "").strip()[-600:],
                              time.perf_counter() - start)
            time.sleep(0.25)
    finally:
        running.remove(force=True)  # a throwaway container: no graceful stop needed
