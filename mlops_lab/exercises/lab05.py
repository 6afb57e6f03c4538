"""Lab 05: Container. Fix a Dockerfile (a non-root user, a narrow COPY, a health check), then write
your own. Where a Docker daemon and a base image are at hand, the health check (5.3) is built and
Docker runs it until it calls the container healthy, and your own Dockerfile (5.4) is built and run
until ``/ready`` and ``/predict`` answer; where none is, both are linted and checked statically,
with the same verdicts for every known mistake."""

from __future__ import annotations

import json
import re
import shlex
import tempfile
from pathlib import PurePosixPath

from .. import container
from . import NotAttempted, exercise, require_attempt, right, wrong

_GOOD_COPY = "COPY mlops_lab/ /app/mlops_lab/\nCOPY bundle/ /app/bundle/\n"
_USER = "USER 10001:10001\n"
_HEALTHCHECK_START = "HEALTHCHECK --interval"
PORT = 8000


def broken_dockerfile() -> str:
    """The course's Dockerfile with three classic mistakes: root, COPY of everything, no health check."""
    text = container.dockerfile()
    text = text.replace(_GOOD_COPY, "COPY . /app/\n").replace(_USER, "")
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(_HEALTHCHECK_START))
    del lines[start:start + 2]  # the HEALTHCHECK and its continuation line
    return "".join(lines)


def _healthcheck_lines() -> str:
    good = container.dockerfile().splitlines(keepends=True)
    start = next(i for i, line in enumerate(good) if line.startswith(_HEALTHCHECK_START))
    return "".join(good[start:start + 2])


def _step(n: int) -> str:
    text = broken_dockerfile()
    if n >= 1:
        text = text.replace("EXPOSE 8000\n", _USER + "EXPOSE 8000\n")
    if n >= 2:
        text = text.replace("COPY . /app/\n", _GOOD_COPY)
    if n >= 3:
        text = text.replace("CMD [\"python\", \"-m\"", _healthcheck_lines() + "CMD [\"python\", \"-m\"", 1)
    return text


# --------------------------------------------------------------------------- reading a Dockerfile


def stages(text) -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each a list of (INSTRUCTION, arguments)."""
    assert isinstance(text, str) and re.search(r"(?im)^\s*FROM\s", text), (
        "expected the Dockerfile's text (a string with FROM lines)"
    )
    out: list[list[tuple[str, str]]] = []
    for word, args in container._instructions(text):
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, args))
    return out


def _words(args: str) -> list[str]:
    """Arguments in JSON (exec) form or shell form, as a list."""
    if args.startswith("["):
        try:
            return [str(a) for a in json.loads(args)]
        except ValueError:
            pass
    try:
        return shlex.split(args)
    except ValueError:
        return args.split()


def copies(stage: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(source, where it lands in the image) for each COPY/ADD from the build context in a stage,
    following Docker's rules: a directory's *contents* go to the destination, relative
    destinations start at the WORKDIR in effect."""
    workdir = PurePosixPath("/")
    landed = []
    for word, args in stage:
        if word == "WORKDIR":
            workdir = workdir / args.strip().strip('"')
        if word not in ("COPY", "ADD"):
            continue
        flags, rest = re.match(r"((?:--\S+\s+)*)(.*)", args, re.S).groups()
        paths = _words(rest.strip())
        if "--from" in flags or len(paths) < 2:
            continue
        *sources, dest = paths
        target = workdir / dest
        for source in sources:
            name = source.strip("/").removeprefix("./").strip("/")
            landed.append((name or ".", str(target)))
    return landed


def _cmd(stage) -> list[str]:
    cmds = [args for word, args in stage if word == "CMD"]
    return _words(cmds[-1]) if cmds else []


def _healthcheck(stage) -> str | None:
    checks = [args for word, args in stage if word == "HEALTHCHECK"]
    return checks[-1] if checks and checks[-1].strip().upper() != "NONE" else None


# --------------------------------------------------------------------------- 5.1-5.3


def _unchanged(value, exercise: int) -> None:
    """The stub hands on the previous answer unedited: that is not an attempt at this exercise."""
    if value in (broken_dockerfile(), _step(exercise - 1)):
        raise NotAttempted


def _rules(text) -> set[str]:
    stages(text)
    return {rule for rule, _ in container.dockerfile_problems(text)}


@exercise(
    "5.1",
    "Do not run as root",
    solution='dockerfile = broken.replace("EXPOSE 8000\\n", "USER 10001:10001\\nEXPOSE 8000\\n")',
    hints=(
        "Without a USER instruction, the server runs as root inside the container.",
        "Add `USER 10001:10001` in the final stage, after the COPY lines and before CMD.",
    ),
    reference=lambda: _step(1),
    stub=broken_dockerfile,
    cases=(
        wrong("USER root", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER root\nEXPOSE 8000"),
              "still runs as root"),
        wrong("a user by name", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER cardguard\nEXPOSE 8000"),
              "numeric user id"),
        wrong("USER in the build stage", lambda: broken_dockerfile().replace(
            "RUN python3 -m venv /opt/venv\n", "USER 10001:10001\nRUN python3 -m venv /opt/venv\n"), "final stage"),
        wrong("USER 0", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER 0:0\nEXPOSE 8000"), "still runs as root"),
        right("user without group", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER 10001\nEXPOSE 8000")),
    ),
)
def _check_user(value) -> None:
    require_attempt(value)
    _unchanged(value, 1)
    rules = _rules(value)
    final = stages(value)[-1]
    users = [args for word, args in final if word == "USER"]
    assert "runs as root" not in rules or users, (
        "the final stage has no USER: the server would run as root. A USER in the build stage does not carry over "
        "to the final stage: add `USER 10001:10001` there, before CMD"
    )
    assert "runs as root" not in rules, "the final stage still runs as root: add `USER 10001:10001` before CMD"
    assert "user by name" not in rules, "use a numeric user id such as 10001, not a name"


@exercise(
    "5.2",
    "Copy only what serving needs",
    solution='dockerfile = dockerfile.replace("COPY . /app/\\n", "COPY mlops_lab/ /app/mlops_lab/\\nCOPY bundle/ /app/bundle/\\n")',
    hints=(
        "`COPY . /app/` copies the whole build context: notebooks, data, anything left lying around.",
        "The server needs two folders of the context: `mlops_lab/` and `bundle/`, at /app/mlops_lab and /app/bundle.",
        "A directory's *contents* are copied: `COPY mlops_lab /app/` would spill the package's files into /app.",
    ),
    reference=lambda: _step(2),
    stub=lambda: _step(1),
    cases=(
        wrong("./ instead of .", lambda: _step(1).replace("COPY . /app/\n", "COPY ./ /app/\n"),
              "there is still a COPY of `.`"),
        wrong("COPY lines moved to the build stage", lambda: _step(1).replace("COPY . /app/\n", "").replace(
            "COPY requirements.txt /tmp/requirements.txt\n", "COPY requirements.txt /tmp/requirements.txt\n" + _GOOD_COPY),
            "final stage"),
        wrong("both folders into /app/", lambda: _step(1).replace("COPY . /app/\n", "COPY mlops_lab bundle /app/\n"),
              "contents"),
        wrong("the bundle forgotten", lambda: _step(1).replace("COPY . /app/\n", "COPY mlops_lab/ /app/mlops_lab/\n"),
              "bundle"),
        right("relative to WORKDIR, no trailing slashes",
              lambda: _step(1).replace("COPY . /app/\n", "COPY mlops_lab mlops_lab\nCOPY bundle ./bundle\n")),
        right("exec form with --chown", lambda: _step(1).replace(
            "COPY . /app/\n", 'COPY --chown=10001:10001 ["mlops_lab/", "/app/mlops_lab/"]\n'
                              "COPY --chown=10001:10001 bundle/ /app/bundle/\n")),
    ),
)
def _check_copy(value) -> None:
    require_attempt(value)
    _unchanged(value, 2)
    rules = _rules(value)
    assert "copies the whole context" not in rules, "there is still a COPY of `.`: copy mlops_lab/ and bundle/ only"
    _check_serving_copies(value)


def _check_serving_copies(value) -> None:
    landed = copies(stages(value)[-1])
    earlier = [c for stage in stages(value)[:-1] for c in copies(stage)]
    for folder in ("mlops_lab", "bundle"):
        if (folder, f"/app/{folder}") in landed:
            continue
        if any(source == folder for source, _ in earlier):
            raise AssertionError(f"{folder}/ is copied in the build stage, which the image does not keep: copy it in "
                                 f"the final stage (after the last FROM), to /app/{folder}")
        spilled = [dest for source, dest in landed if source == folder]
        if spilled:
            raise AssertionError(f"COPY puts the contents of {folder}/ into {spilled[0]}: a directory's contents are "
                                 f"copied, not the directory. Copy it to /app/{folder}/")
        raise AssertionError(f"the server needs {folder}/ at /app/{folder} (COPY {folder}/ /app/{folder}/): "
                             f"{'its code' if folder == 'mlops_lab' else 'the model bundle'} is missing")


def _healthcheck_with(command: str) -> str:
    return _step(2).replace('CMD ["python", "-m"', f"HEALTHCHECK --interval=5s CMD {command}\n" + 'CMD ["python", "-m"', 1)


@exercise(
    "5.3",
    "Add a health check",
    solution='''
healthcheck = (
    'HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \\\\\\n'
    '    CMD ["python", "-c", "import sys, urllib.request; '
    "sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2).status != 200)\\"]\\n"
)
dockerfile = dockerfile.replace('CMD ["python", "-m"', healthcheck + 'CMD ["python", "-m"', 1)
''',
    hints=(
        "Docker only knows the container is *running*; a HEALTHCHECK tells it when the model can *serve*.",
        "Probe /ready (not /health): it answers 200 only once the model has scored its serving examples.",
        "The slim image has no curl: use Python's urllib in the exec form, as the course's Dockerfile does. The "
        "server listens on port 8000 inside the container.",
        "Where Docker runs, the check builds your Dockerfile and lets Docker run your HEALTHCHECK: if it says "
        "'unhealthy' or 'starting', read the probe's output in the message, then try the command with "
        "`docker exec` in a running container.",
    ),
    reference=lambda: _step(3),
    stub=lambda: _step(2),
    cases=(
        wrong("HEALTHCHECK NONE", lambda: _step(2).replace(
            "CMD [\"python\", \"-m\"", "HEALTHCHECK NONE\nCMD [\"python\", \"-m\""), "HEALTHCHECK NONE does not count"),
        wrong("curl in a slim image", lambda: _healthcheck_with("curl -f http://127.0.0.1:8000/ready || exit 1"),
              "no curl"),
        wrong("the published port, not the container's", lambda: _healthcheck_with(
            "[\"python\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready')\"]"),
            "port 8000"),
        wrong("probes /health", lambda: _healthcheck_with(
            "[\"python\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')\"]"),
            "probe /ready"),
        wrong("quotes inside quotes", lambda: _healthcheck_with(
            'python -c "import urllib.request; urllib.request.urlopen("http://127.0.0.1:8000/ready")"'),
            "does not parse"),
        right("shell form, one line", lambda: _healthcheck_with(
            "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)\"")),
        right("indented, on one line, localhost", lambda: _step(2).replace('CMD ["python", "-m"', "  HEALTHCHECK CMD "
              "[\"python\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://localhost:8000/ready')\"]\n"
              'CMD ["python", "-m"', 1)),
    ),
)
def _check_healthcheck(value) -> None:
    require_attempt(value)
    _unchanged(value, 3)
    _check_probe(value)
    base = buildable_base()
    if base is None:
        return  # no daemon or no base image here: checked statically, as above
    health = build_and_probe(value, base)
    assert health.status == "healthy", (
        f"Docker built your image and ran your HEALTHCHECK in it: the server answered /ready, but your probe never "
        f"passed, so Docker calls the container {health.status!r}. The probe's last run exited with "
        f"{health.exit_code} and printed: {health.output or '(nothing)'}"
    )


def _check_probe(value) -> None:
    final = stages(value)[-1]
    probe = _healthcheck(final)
    if probe is None:
        raise AssertionError("the final stage has no HEALTHCHECK (HEALTHCHECK NONE does not count)")
    command = probe[probe.upper().index("CMD") + 3:] if "CMD" in probe.upper() else probe
    assert not re.search(r"\b(curl|wget)\b", command), (
        "the slim Python image has no curl or wget, so this check would fail forever and Docker would call the "
        "container unhealthy: use Python's urllib, as in the hint"
    )
    url = re.search(r"https?://([\w.-]+)(?::(\d+))?(/[\w/.-]*)?", command)
    assert url, "the health check calls no http:// address: probe http://127.0.0.1:8000/ready"
    host, port, path = url.group(1), url.group(2) or "80", url.group(3) or "/"
    assert host in ("127.0.0.1", "localhost", "0.0.0.0"), (
        f"the check runs inside the container: call the server at 127.0.0.1, not {host}"
    )
    assert port == str(PORT), (
        f"the check runs inside the container, where uvicorn listens on port {PORT} (the CMD's --port), not {port}"
    )
    assert path.rstrip("/") == "/ready", f"probe /ready, not {path}: /health is up before the model is loaded"
    words = _words(command.strip())
    code = words[words.index("-c") + 1] if "-c" in words[:-1] and "python" in words[0] else None
    if code is not None:
        try:
            compile(code, "<HEALTHCHECK>", "exec")
        except SyntaxError as exc:
            raise AssertionError(
                f"the probe's Python code does not parse ({exc.msg}): after the shell has taken its quotes, Python "
                f"gets `{code[:120]}`. Quotes inside quotes: use single quotes for the URL inside the double-quoted "
                "code, or the exec form CMD [\"python\", \"-c\", \"...\"]"
            ) from None


def checked_how() -> str:
    """One line saying how 5.3 and 5.4 were checked on this machine."""
    base = buildable_base()
    if base is None:
        return ("No Docker daemon or base image here: your Dockerfiles were linted and checked statically, "
                "not built. With Docker, the checks build them and run them.")
    return f"Docker is here: the checks of 5.3 and 5.4 build your Dockerfiles on {base} and run them."


# --------------------------------------------------------------------------- 5.4: your own Dockerfile

LOCAL_BASE_IMAGE = "mlops-lab/python:3.11-slim-local"


def build_stage() -> str:
    """The course's build stage (dependencies into /opt/venv), to start a Dockerfile with: the same
    instructions on the same base hit Docker's layer cache, so the dependencies are not installed again."""
    text = container.dockerfile()
    return text[:text.index("# --- runtime stage")]


def buildable_base() -> str | None:
    """A base image Docker can build from here without the network, or None (no daemon, or no
    image present). MLOPS_LAB_BASE_IMAGE first, then the public default, then the course's local one."""
    try:
        client = container.docker_client()
    except Exception:
        return None
    import os

    for image in filter(None, (os.environ.get("MLOPS_LAB_BASE_IMAGE"), container.DEFAULT_BASE_IMAGE, LOCAL_BASE_IMAGE)):
        try:
            client.images.get(image)
            return image
        except Exception:
            continue
    return None


def _runtime(lines: str) -> str:
    return build_stage() + lines


_RUNTIME = """# --- runtime stage
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \\
    PYTHONPATH=/app \\
    MLOPS_LAB_BUNDLE=/app/bundle \\
    MLOPS_LAB_HOME=/tmp/mlops-lab
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY mlops_lab/ mlops_lab/
COPY bundle/ bundle/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s \\
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
CMD ["python", "-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", "--host", "0.0.0.0", "--port", "8000"]
"""


def _reference_dockerfile() -> str:
    return _runtime(_RUNTIME)


def check_statically(text) -> None:
    """Everything about a serving Dockerfile that can be checked without building it."""
    all_stages = stages(text)
    assert len(all_stages) >= 2, (
        "one stage only: put the dependencies in a build stage and copy the virtualenv into a slim final stage "
        "(start from lab05.build_stage())"
    )
    final = all_stages[-1]
    problems = container.dockerfile_problems(text)
    assert not problems, f"{problems[0][0]}: {problems[0][1]}"
    assert any(word == "COPY" and "--from" in args for word, args in final), (
        "the final stage has no dependencies: copy the virtualenv from the build stage "
        "(COPY --from=build /opt/venv /opt/venv) and put /opt/venv/bin first on PATH"
    )
    _check_serving_copies(text)
    _check_probe(text)
    cmd = _cmd(final)
    joined = " ".join(cmd)
    assert "uvicorn" in joined and "mlops_lab.serving.app:app_from_env" in joined and "--factory" in cmd, (
        "CMD should start uvicorn on the app factory: python -m uvicorn mlops_lab.serving.app:app_from_env --factory"
    )
    host = cmd[cmd.index("--host") + 1] if "--host" in cmd[:-1] else "127.0.0.1"
    assert host == "0.0.0.0", (
        f"uvicorn listens on {host} (its default is 127.0.0.1), which inside a container is the container itself: "
        "Docker's port mapping cannot reach it. Pass --host 0.0.0.0"
    )
    port = cmd[cmd.index("--port") + 1] if "--port" in cmd[:-1] else "8000"
    assert port == str(PORT), f"uvicorn listens on port {port}; the image promises {PORT} (EXPOSE, the health check)"
    env = " ".join(args for word, args in final if word == "ENV")
    assert re.search(r"MLOPS_LAB_BUNDLE[= ]+/app/bundle", env), (
        "set ENV MLOPS_LAB_BUNDLE=/app/bundle: without it the server looks for the MLflow registry, which is not "
        "in the image, and never becomes ready"
    )


def build_and_run(text: str, base: str, tag: str = "cardguard:yours", report=lambda line: None) -> dict:
    """Build ``text`` on the course's build context with Docker, run it, wait for /ready and for its
    HEALTHCHECK to report healthy; return what was seen. Raises LabError (with the build or container log) when it fails."""
    import httpx

    from .. import data, serving

    image = _built(text, base, tag, report)
    payment = serving.to_payload(data.simulate_transactions(1, start="2026-02-16", seed=8))[0]
    # healthy means Docker ran your HEALTHCHECK and it passed
    with container.run_container(tag, timeout=90, wait_for_health=True) as running:
        ready = httpx.get(f"{running.url}/ready", timeout=5)
        predict = httpx.post(f"{running.url}/predict", json=payment, timeout=5)
        return {"ready": ready.status_code, "predict": predict.status_code, "answer": predict.json(),
                "user": running.user(), "size_mb": image["size_mb"]}


def _built(text: str, base: str, tag: str, report=lambda line: None) -> dict:
    """Build ``text`` on a fresh course build context (the champion's bundle); LabError with the build log on failure."""
    with tempfile.TemporaryDirectory(prefix="mlops-lab-dockerfile-") as tmp:
        context = container.build_context(tmp)
        (context / "Dockerfile").write_text(text)
        return container.build_image(context, tag=tag, base=base, report=report)


def build_and_probe(text: str, base: str, tag: str = "cardguard:healthcheck") -> container.Health:
    """Build ``text`` and let Docker run its HEALTHCHECK, every second instead of every few seconds."""
    from ..errors import LabError

    try:
        _built(text, base, tag)
        return container.probe_health(tag)
    except LabError as exc:
        raise AssertionError(f"your image does not serve: {str(exc)[-800:]}") from None


def _check_dockerfile(text) -> None:
    from ..errors import LabError

    require_attempt(text)
    if isinstance(text, str) and container._instructions(text) == container._instructions(build_stage()):
        raise NotAttempted
    check_statically(text)
    lint = _hadolint(text)
    if lint is not None:
        assert lint[0] == 0, f"hadolint finds problems:\n{lint[1]}"
    base = buildable_base()
    if base is None:
        return  # no daemon or no base image here: linted and checked statically, as above
    try:
        seen = build_and_run(text, base)
    except LabError as exc:
        raise AssertionError(f"your image does not serve: {str(exc)[-800:]}") from None
    assert seen["ready"] == 200, f"the container answers /ready with {seen['ready']}, not 200"
    assert seen["predict"] == 200 and "decision" in seen["answer"], (
        f"the container answers /ready, but /predict gives {seen['predict']}: {str(seen['answer'])[:300]}"
    )
    assert seen["user"] not in ("0", ""), "the container runs as root"


def _hadolint(text: str):
    with tempfile.TemporaryDirectory(prefix="mlops-lab-hadolint-") as tmp:
        path = f"{tmp}/Dockerfile"
        with open(path, "w") as f:
            f.write(text)
        return container.hadolint(path)


@exercise(
    "5.4",
    "Write your own Dockerfile",
    solution='''
my_dockerfile = lab05.build_stage() + """# --- runtime stage
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \\\\
    PYTHONPATH=/app \\\\
    MLOPS_LAB_BUNDLE=/app/bundle \\\\
    MLOPS_LAB_HOME=/tmp/mlops-lab
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY mlops_lab/ mlops_lab/
COPY bundle/ bundle/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s \\\\
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"]
CMD ["python", "-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", "--host", "0.0.0.0", "--port", "8000"]
"""
''',
    hints=(
        "Start from `lab05.build_stage()` (it installs the dependencies into /opt/venv) and write the runtime stage: "
        "FROM, ENV, COPY --from=build, the two COPY lines, USER, EXPOSE, HEALTHCHECK, CMD.",
        "The server reads its model from the folder in MLOPS_LAB_BUNDLE and must listen on 0.0.0.0:8000.",
        "Compare with `print(container.dockerfile())`, but write each line yourself and say why it is there.",
    ),
    reference=_reference_dockerfile,
    stub=build_stage,
    cases=(
        wrong("uvicorn on 127.0.0.1", lambda: _runtime(_RUNTIME.replace('"0.0.0.0"', '"127.0.0.1"')), "0.0.0.0"),
        wrong("no bundle setting", lambda: _runtime(_RUNTIME.replace("    MLOPS_LAB_BUNDLE=/app/bundle \\\n", "")),
              "MLOPS_LAB_BUNDLE"),
        wrong("virtualenv not copied", lambda: _runtime(_RUNTIME.replace("COPY --from=build /opt/venv /opt/venv\n", "")),
              "copy the virtualenv"),
        wrong("both folders into /app/", lambda: _runtime(_RUNTIME.replace(
            "COPY mlops_lab/ mlops_lab/\nCOPY bundle/ bundle/\n", "COPY mlops_lab bundle /app/\n")), "contents"),
        wrong("root", lambda: _runtime(_RUNTIME.replace("USER 10001:10001\n", "")), "runs as root"),
        wrong("shell-form CMD", lambda: _runtime(_RUNTIME.replace(
            'CMD ["python", "-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", "--host", "0.0.0.0", '
            '"--port", "8000"]', "CMD python -m uvicorn mlops_lab.serving.app:app_from_env --factory --host 0.0.0.0 "
            "--port 8000")), "exec form"),
        right("the course's own Dockerfile", container.dockerfile),
    ),
)
def _check_own_dockerfile(text) -> None:
    _check_dockerfile(text)
