"""Lab 05: Container. Fix a Dockerfile (a non-root user, a narrow COPY, a health check), then write
your own. Where a Docker daemon and a base image are at hand, the health check (5.3) is built and
Docker runs it until it calls the container healthy, and your own Dockerfile (5.4) is built and run
until ``/ready`` and ``/predict`` answer; where none is, both are linted and checked statically,
with the same verdicts for every known mistake."""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

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


# --------------------------------------------------------------------------- a Dockerfile, by what it means

_VARIABLE = re.compile(r"\\\$|\$\{(\w+)(?::([-+])([^}]*))?\}|\$(\w+)")
# where Docker substitutes build arguments and environment variables (not RUN, CMD, ENTRYPOINT, HEALTHCHECK)
_SUBSTITUTED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "ARG"}


def _substitute(text: str, variables: dict[str, str]) -> str:
    """``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``${VAR:+word}`` as Docker expands them."""
    def one(match):
        if match.group(0) == "\\$":
            return "$"
        name = match.group(1) or match.group(4)
        value = variables.get(name, "")
        if match.group(2) == "-":
            return value or _substitute(match.group(3) or "", variables)
        if match.group(2) == "+":
            return _substitute(match.group(3) or "", variables) if value else ""
        return value

    return _VARIABLE.sub(one, text)


def logical_lines(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) as Docker reads them: instructions in any case, line continuations
    joined (comment and blank lines inside them dropped), comments dropped."""
    out, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if re.search(r"\\\s*$", line):
            pending += re.sub(r"\\\s*$", "", line if pending else line.lstrip())
            continue
        whole = (pending + line) if pending else line.strip()
        pending = ""
        word, _, rest = whole.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    if pending.strip():
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _argv(args: str) -> tuple[list[str], bool]:
    """(argv, shell form?) of CMD, ENTRYPOINT or a HEALTHCHECK's command: the exec form is a JSON list
    of strings; anything else runs as ``/bin/sh -c "..."``."""
    if args.startswith("["):
        try:
            words = json.loads(args)
            if isinstance(words, list) and all(isinstance(w, str) for w in words):
                return words, False
        except ValueError:
            pass
    return ["/bin/sh", "-c", args], True


def _env_pairs(args: str, variables: dict[str, str]) -> dict[str, str]:
    """ENV KEY=value KEY2="quoted value" (values may use earlier variables), or the legacy ENV KEY value."""
    first = args.split(None, 1)[0] if args.strip() else ""
    if "=" not in first:
        key, _, value = args.partition(" ")
        return {key: _substitute(value.strip(), variables)}
    pairs = {}
    try:
        tokens = shlex.split(args, posix=True)
    except ValueError:
        tokens = args.split()
    scope = dict(variables)
    for token in tokens:
        key, _, value = token.partition("=")
        pairs[key] = scope[key] = _substitute(value, scope)
    return pairs


@dataclass
class Stage:
    """One build stage of a Dockerfile, normalised: what an image built from it would hold and run."""

    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments as written)
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None  # after substitution
    user_written: str | None = None
    workdir: str = "/"
    copies: list[tuple[str, str, str | None]] = field(default_factory=list)  # (source, destination, --from)
    runs: list[str] = field(default_factory=list)
    healthcheck: list[str] | None = None  # the probe's argv; None: none; [] for HEALTHCHECK NONE
    healthcheck_shell: bool = False
    entrypoint: tuple[list[str], bool] | None = None
    cmd: tuple[list[str], bool] | None = None
    exposed: list[str] = field(default_factory=list)

    @property
    def program(self) -> list[str]:
        """What the container runs: ENTRYPOINT and CMD together, as Docker combines them."""
        if self.entrypoint is not None:
            argv, shell = self.entrypoint
            if shell:
                return _as_run(argv, self.env)
            return _as_run(argv + (self.cmd[0] if self.cmd is not None else []), self.env)
        return _as_run(self.cmd[0], self.env) if self.cmd is not None else []

    @property
    def shell_form(self) -> bool:
        """The server is started through /bin/sh (so it does not get SIGTERM), unless the shell execs it."""
        program = self.program
        return _runs_a_shell(program) and not program[2].lstrip().startswith("exec ")


def _runs_a_shell(argv: list[str]) -> bool:
    """``/bin/sh -c SCRIPT`` (the shell form), or ``sh -c SCRIPT`` written in the exec form."""
    return len(argv) >= 3 and PurePosixPath(argv[0]).name in ("sh", "bash", "dash") and argv[1] == "-c"


def _as_run(argv: list[str], env: dict[str, str]) -> list[str]:
    """``argv`` as the container runs it: a shell (the shell form's /bin/sh -c, or sh -c in the exec form)
    expands the image's ENV variables in its script; the exec form itself expands nothing."""
    if not _runs_a_shell(argv):
        return argv

    def one(match):
        name = match.group(1) or match.group(4)
        return env[name] if name in env and not match.group(2) else match.group(0)

    return argv[:2] + [_VARIABLE.sub(one, argv[2])] + argv[3:]


def parse(text) -> list[Stage]:
    """The Dockerfile's stages, normalised: case of instructions, line continuations, comments, ARG and
    ENV substitution, quoted ENV values, exec or shell form of CMD/ENTRYPOINT/HEALTHCHECK."""
    assert isinstance(text, str) and any(word == "FROM" for word, _ in logical_lines(text)), (
        "expected the Dockerfile's text (a string with FROM lines)"
    )
    global_args = {"BASE_IMAGE": container.base_image()}  # the build passes BASE_IMAGE
    stages_: list[Stage] = []
    variables: dict[str, str] = {}
    for word, args in logical_lines(text):
        if word == "ARG":
            name, _, default = args.partition("=")
            name = name.strip()
            if not stages_:  # before the first FROM: a global build argument (the build passes BASE_IMAGE)
                if name != "BASE_IMAGE":
                    global_args[name] = _substitute(default.strip().strip('"'), global_args)
                continue
            value = _substitute(default.strip().strip('"'), variables) if "=" in args else global_args.get(name, "")
            variables[name] = value
            stages_[-1].steps.append((word, args))
            continue
        if word == "FROM":
            words = _substitute(args, global_args).split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            base = next((w for w in words if not w.startswith("--")), "")
            parent = next((s for s in stages_ if s.name and s.name == base), None)
            stage = Stage(base=base, name=name, env=dict(parent.env) if parent else {},
                          user=parent.user if parent else None, workdir=parent.workdir if parent else "/")
            stages_.append(stage)
            variables = dict(stage.env)  # a global ARG is not seen inside a stage until the stage declares it
            continue
        if not stages_:
            continue
        stage = stages_[-1]
        stage.steps.append((word, args))
        expanded = _substitute(args, variables) if word in _SUBSTITUTED else args
        if word == "ENV":
            pairs = _env_pairs(args, variables)
            stage.env.update(pairs)
            variables.update(pairs)
        elif word == "USER":
            stage.user, stage.user_written = expanded.strip(), args.strip()
        elif word == "WORKDIR":
            stage.workdir = str(PurePosixPath(stage.workdir) / expanded.strip().strip('"'))
        elif word in ("COPY", "ADD"):
            flags, rest = re.match(r"((?:--\S+\s+)*)(.*)", expanded, re.S).groups()
            source_stage = re.search(r"--from=(\S+)", flags)
            paths = _words(rest.strip())
            if len(paths) >= 2:
                *sources, dest = paths
                target = PurePosixPath(stage.workdir) / dest
                for source in sources:
                    name = source.strip("/").removeprefix("./").strip("/")
                    stage.copies.append((name or ".", str(target), source_stage.group(1) if source_stage else None))
        elif word == "RUN":
            stage.runs.append(args)
        elif word == "EXPOSE":
            stage.exposed += [p.split("/")[0] for p in expanded.split()]
        elif word in ("CMD", "ENTRYPOINT"):
            argv = _argv(args)
            if word == "CMD":
                stage.cmd = argv
            else:
                stage.entrypoint = argv
        elif word == "HEALTHCHECK":
            if args.strip().upper() == "NONE":
                stage.healthcheck, stage.healthcheck_shell = [], False
            else:
                command = re.sub(r"^(?:--\S+\s+)*", "", args.strip())
                command = re.sub(r"(?i)^cmd\s+", "", command)
                stage.healthcheck, stage.healthcheck_shell = _argv(command)
    return stages_


# uvicorn's options that take a value (the rest are flags)
_UVICORN_VALUES = {"--host", "--port", "--uds", "--fd", "--workers", "--loop", "--http", "--ws", "--lifespan",
                   "--env-file", "--log-config", "--log-level", "--root-path", "--limit-concurrency",
                   "--backlog", "--limit-max-requests", "--timeout-keep-alive", "--timeout-graceful-shutdown",
                   "--app-dir", "--forwarded-allow-ips", "--header", "--h11-max-incomplete-event-size",
                   "--ssl-keyfile", "--ssl-certfile", "--reload-dir", "--interface", "--ws-max-size"}


@dataclass(frozen=True)
class Server:
    """The uvicorn command a container runs, normalised: ``--host=0.0.0.0`` and ``--host 0.0.0.0``,
    ``python``/``python3 -m uvicorn`` and the ``uvicorn`` script, exec or shell form are all the same."""

    app: str | None
    options: dict[str, str]
    flags: frozenset[str]

    @property
    def host(self) -> str:
        return self.options.get("--host", "127.0.0.1")

    @property
    def port(self) -> str:
        return self.options.get("--port", "8000")


def server_command(program: list[str]) -> Server | None:
    """The uvicorn server in a container's program (ENTRYPOINT + CMD), or None if it starts no uvicorn."""
    argv = list(program)
    if _runs_a_shell(argv):
        try:
            argv = shlex.split(argv[2])
        except ValueError:
            return None
        if argv[:1] == ["exec"]:
            argv = argv[1:]
    while argv and ("=" in argv[0] and not argv[0].startswith("-")):  # VAR=value before the command
        argv = argv[1:]
    if not argv:
        return None
    program_name = PurePosixPath(argv[0]).name
    if re.fullmatch(r"python(3(\.\d+)?)?", program_name) and argv[1:3] == ["-m", "uvicorn"]:
        rest = argv[3:]
    elif program_name == "uvicorn":
        rest = argv[1:]
    else:
        return None
    app, options, flags = None, {}, set()
    i = 0
    while i < len(rest):
        word = rest[i]
        if word.startswith("--") and "=" in word:
            key, _, value = word.partition("=")
            options[key] = value
        elif word in _UVICORN_VALUES and i + 1 < len(rest):
            options[word] = rest[i + 1]
            i += 1
        elif word.startswith("-"):
            flags.add(word)
        elif app is None:
            app = word
        i += 1
    return Server(app, options, frozenset(flags))


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


def stages(text) -> list[list[tuple[str, str]]]:
    """The Dockerfile's build stages, each a list of (INSTRUCTION, arguments) as written."""
    return [stage.steps for stage in parse(text)]


def copies(stage) -> list[tuple[str, str]]:
    """(source, where it lands in the image) for each COPY/ADD from the build context in a stage,
    following Docker's rules: a directory's *contents* go to the destination, relative
    destinations start at the WORKDIR in effect."""
    if not isinstance(stage, Stage):  # the steps of one stage, as stages() gives them
        stage = parse("FROM scratch\n" + "".join(f"{word} {args}\n" for word, args in stage))[0]
    return [(source, dest) for source, dest, from_stage in stage.copies if from_stage is None]


# --------------------------------------------------------------------------- 5.1-5.3


def _unchanged(value, exercise: int) -> None:
    """The stub hands on the previous answer unedited: that is not an attempt at this exercise."""
    if value in (broken_dockerfile(), _step(exercise - 1)):
        raise NotAttempted


def _check_user(value, exactly_10001: bool = False) -> None:
    """A numeric user that is not root, in a group that is not root. ``exactly_10001``: 5.1's text asks for
    user 10001, group 10001 (without a group, a user missing from /etc/passwd runs in group 0, root's)."""
    final = parse(value)[-1]
    earlier = [s for s in parse(value)[:-1] if s.user_written]
    if final.user_written is None:
        raise AssertionError(
            "the final stage has no USER, so the server runs as root. "
            + ("A USER in the build stage does not carry over to the final stage: add" if earlier else "Add")
            + " `USER 10001:10001` there (after the last FROM)")
    user = (final.user or "").strip()
    if "#" in user or len(user.split()) > 1:
        raise AssertionError(
            f"`USER {final.user_written}`: Docker takes the whole rest of the line as the user (it does not strip "
            "a comment after an instruction), so the container would fail to start. Put the comment on a line of "
            "its own, above the USER line")
    uid, _, gid = (part.strip() for part in user.partition(":"))
    if not uid:
        raise AssertionError(
            f"`USER {final.user_written}` is empty in the final stage: a build argument declared before FROM is not "
            "seen inside a stage until the stage declares it again (`ARG UID` after the FROM), so this runs as root")
    if uid in ("root", "0"):
        raise AssertionError(f"`USER {final.user_written}` still runs as root: use the numeric user 10001")
    if not uid.isdigit():
        raise AssertionError(
            f"`USER {final.user_written}` names a user: use a numeric user id such as 10001 (Kubernetes can only "
            "verify that a numeric user is not root, and the name may not exist in the image)")
    if gid in ("0", "root"):
        raise AssertionError(
            f"`USER {final.user_written}` runs in group {gid}, root's group: files that group may write stay "
            "writable. Use the group 10001 too: `USER 10001:10001`")
    if exactly_10001 and uid != "10001":
        raise AssertionError(f"`USER {final.user_written}` runs as user {uid}: the exercise asks for the numeric "
                             "user 10001 (group 10001): `USER 10001:10001`")
    if exactly_10001 and gid != "10001":
        raise AssertionError(
            f"`USER {final.user_written}` " + ("gives no group" if not gid else f"runs in group {gid}")
            + ": the exercise asks for group 10001 too (`USER 10001:10001`). Without a group, a user that "
            "/etc/passwd does not list runs in group 0, root's group")


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
        wrong("a global ARG not declared in the stage", lambda: "ARG UID=10001\n" + broken_dockerfile().replace(
            "EXPOSE 8000", "USER ${UID}\nEXPOSE 8000"), "declares it again"),
        wrong("nobody by name", lambda: broken_dockerfile().replace("EXPOSE 8000", "user nobody\nEXPOSE 8000"),
              "numeric user id"),
        wrong("user without group", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER 10001\nEXPOSE 8000"),
              "group 10001"),
        wrong("another user", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER 1000:1000\nEXPOSE 8000"),
              "user 10001"),
        wrong("root group", lambda: broken_dockerfile().replace("EXPOSE 8000", "USER 10001:0\nEXPOSE 8000"),
              "root's group"),
        wrong("inline comment", lambda: broken_dockerfile().replace(
            "EXPOSE 8000", "USER 10001:10001 # not root\nEXPOSE 8000"), "does not strip"),
        right("ARG in the stage and USER ${UID}:${GID}", lambda: broken_dockerfile().replace(
            "EXPOSE 8000", "ARG UID=10001\nARG GID=10001\nUSER ${UID}:${GID}\nEXPOSE 8000")),
        right("lower-case user at the very end", lambda: broken_dockerfile() + "user 10001:10001\n"),
    ),
)
def _check_user_exercise(value) -> None:
    require_attempt(value)
    _unchanged(value, 1)
    _check_user(value, exactly_10001=True)


def _check_serving_copies(value) -> None:
    all_stages = parse(value)
    for stage in all_stages:
        for source, dest, from_stage in stage.copies:
            if from_stage is None and source in (".", "*"):
                raise AssertionError(
                    f"there is still a COPY of `{source}` (to {dest}): it copies everything in the build context "
                    "(notebooks, data, secrets). Copy mlops_lab/ and bundle/ only")
    landed = copies(all_stages[-1])
    earlier = [c for stage in all_stages[:-1] for c in copies(stage)]
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
        partial = [source for source, _ in landed if source.startswith(f"{folder}/")]
        if partial:
            raise AssertionError(f"COPY {partial[0]} copies part of {folder}/ only: copy the whole folder to "
                                 f"/app/{folder}/ (the server imports its subpackages too)")
        raise AssertionError(f"the server needs {folder}/ at /app/{folder} (COPY {folder}/ /app/{folder}/): "
                             f"{'its code' if folder == 'mlops_lab' else 'the model bundle'} is missing")


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
        wrong("the package's top-level files only", lambda: _step(1).replace(
            "COPY . /app/\n", "COPY mlops_lab/*.py /app/mlops_lab/\nCOPY bundle/ /app/bundle/\n"), "part of mlops_lab/"),
        wrong("the bundle at /bundle", lambda: _step(1).replace(
            "COPY . /app/\n", "COPY mlops_lab/ /app/mlops_lab/\nCOPY bundle/ /bundle/\n"), "/app/bundle"),
        wrong("the whole context, then the folders", lambda: _step(1).replace(
            "COPY . /app/\n", "COPY . /tmp/src/\n" + _GOOD_COPY), "still a COPY of `.`"),
        right("relative to WORKDIR, no trailing slashes",
              lambda: _step(1).replace("COPY . /app/\n", "COPY mlops_lab mlops_lab\nCOPY bundle ./bundle\n")),
        right("ADD, destinations without a trailing slash", lambda: _step(1).replace(
            "COPY . /app/\n", "ADD mlops_lab /app/mlops_lab\nADD bundle /app/bundle\n")),
        right("exec form with --chown", lambda: _step(1).replace(
            "COPY . /app/\n", 'COPY --chown=10001:10001 ["mlops_lab/", "/app/mlops_lab/"]\n'
                              "COPY --chown=10001:10001 bundle/ /app/bundle/\n")),
        right("a destination from ENV, lower-case copy", lambda: _step(1).replace(
            "COPY . /app/\n", "ENV APP_HOME=/app\ncopy mlops_lab/ ${APP_HOME}/mlops_lab/\ncopy bundle/ $APP_HOME/bundle/\n")),
    ),
)
def _check_copy(value) -> None:
    require_attempt(value)
    _unchanged(value, 2)
    _check_serving_copies(value)


def _healthcheck_with(command: str) -> str:
    return _step(2).replace('CMD ["python", "-m"', f"HEALTHCHECK --interval=5s CMD {command}\n" + 'CMD ["python", "-m"', 1)


def _probe_of(text) -> tuple[Stage, list[str]]:
    final = parse(text)[-1]
    if not final.healthcheck:
        raise AssertionError("the final stage has no HEALTHCHECK (HEALTHCHECK NONE does not count)")
    return final, _as_run(final.healthcheck, final.env)


_PROBE_TOOLS = ("curl", "wget")


def _check_probe_statically(text) -> list[str]:
    """The probe's argv, once what can be read off it is right (tools in the image, address, port, path, syntax)."""
    final, probe = _probe_of(text)
    command = " ".join(probe)
    installs = " ".join(final.runs)
    for tool in _PROBE_TOOLS:
        if re.search(rf"(^|[\s;&|/\"'])({tool})(\s|$)", command) and not re.search(rf"\binstall\b.*\b{tool}\b", installs):
            raise AssertionError(
                f"the slim Python image has no {tool} (and this Dockerfile does not install it), so this check would "
                "fail forever and Docker would call the container unhealthy: use Python's urllib, as in the hint")
    url = re.search(r"https?://([\w.-]+|\[[\w:]+\])(?::(\d+))?(/[\w/.?=&-]*)?", command)
    if url:
        computed = command[url.end(1):url.end(1) + 1] == ":" and not url.group(2)  # e.g. ':%s' % os.environ['PORT']
        host, port, path = url.group(1), url.group(2) or ("computed" if computed else "80"), url.group(3) or "/"
        assert host in ("127.0.0.1", "localhost", "0.0.0.0", "[::1]"), (
            f"the check runs inside the container: call the server at 127.0.0.1, not {host}")
        assert port in (str(PORT), "computed"), (
            f"the check runs inside the container, where uvicorn listens on port {PORT} (the CMD's --port), not {port}")
        assert computed or path.split("?")[0].rstrip("/") == "/ready", (
            f"probe /ready, not {path}: /health is up before the model is loaded")
    else:
        assert re.search(rf"\b{PORT}\b", command), (
            f"the probe never names port {PORT}: inside the container, uvicorn listens on 127.0.0.1:{PORT}")
        assert "/ready" in command, "probe /ready: it answers 200 only once the model can serve (/health is up before)"
    code = _python_code(probe)
    if code is not None:
        try:
            compile(code, "<HEALTHCHECK>", "exec")
        except SyntaxError as exc:
            raise AssertionError(
                f"the probe's Python code does not parse ({exc.msg}): after the shell has taken its quotes, Python "
                f"gets `{code[:120]}`. Quotes inside quotes: use single quotes for the URL inside the double-quoted "
                "code, or the exec form CMD [\"python\", \"-c\", \"...\"]"
            ) from None
    return probe


def _python_code(probe: list[str]) -> str | None:
    """The code of a ``python -c CODE`` probe (exec form, or shell form that the shell splits), else None."""
    words = probe
    if probe[:2] == ["/bin/sh", "-c"]:
        try:
            words = shlex.split(probe[2])
        except ValueError:
            return None
    if words and re.fullmatch(r"python(3(\.\d+)?)?", PurePosixPath(words[0]).name) and "-c" in words[:-1]:
        return words[words.index("-c") + 1]
    return None


def problems(text) -> list[str]:
    """What is still wrong with a serving Dockerfile, read as Docker reads it (lab 05 prints this after 5.3):
    the user, what is copied, unpinned installs, the health check's presence, the form of CMD."""
    def cmd_form(text):
        assert not parse(text)[-1].shell_form, (
            "CMD in shell form: /bin/sh is PID 1 and does not pass SIGTERM on to uvicorn; use the exec form")

    found = []
    for rule in (_check_user, _check_serving_copies, lambda t: _check_pins(parse(t)), _probe_of, cmd_form):
        try:
            rule(text)
        except AssertionError as exc:
            found.append(str(exc))
    return found


# --------------------------------------------------------------------------- running a probe for real


def _serve_in_thread(app) -> str:
    """Run ``app`` with uvicorn on a free 127.0.0.1 port in a daemon thread (it lives as long as this process)."""
    from ..serving.server import serve_in_thread

    return serve_in_thread(app, report=None, path="/health")[0]


@functools.cache
def _probe_servers() -> dict[str, str]:
    """Two real CardGuard servers (uvicorn on 127.0.0.1) the learner's probe is run against: one ready, one up
    but not ready (its /ready answers 503, as while the model loads). Started once per process."""
    import logging

    from ..serving.app import create_app
    from ..serving.server import wait_until_ready
    from . import _scratch_folder
    from .lab04 import _never_ready, _quiet_unready, champion_model

    print("Starting two CardGuard servers on 127.0.0.1 for health checks to run against (once per session, "
          "a few seconds)...", flush=True)
    logging.getLogger("mlops_lab.serving").addFilter(_quiet_unready)
    model = champion_model()
    ready = _serve_in_thread(create_app(load_model=lambda: model, prediction_log=f"{_scratch_folder()}/probe.jsonl"))
    wait_until_ready(ready, 60)
    unready = _serve_in_thread(create_app(load_model=_never_ready, prediction_log=f"{_scratch_folder()}/probe2.jsonl"))
    return {"ready": ready, "unready": unready}


def run_probe(probe: list[str], url: str, timeout: float = 15, env: dict[str, str] | None = None
              ) -> tuple[int | None, str]:
    """Run a HEALTHCHECK's command here, aimed at ``url`` instead of 127.0.0.1:8000; (exit code, output).
    ``python`` is this environment's, standing in for the image's /opt/venv/bin/python; ``env``: the image's
    ENV, which the probe sees as it would in the container (with the port aimed at ``url`` too); the exit code
    is None when the probe did not finish in ``timeout``."""
    port = url.rsplit(":", 1)[1]
    argv = [re.sub(rf"\b{PORT}\b", port, word.replace(_IMAGE_VENV_BIN, "")) for word in probe]
    image_env = {key: re.sub(rf"\b{PORT}\b", port, value) for key, value in (env or {}).items()
                 if key not in ("PATH", "HOME", "PYTHONPATH")}
    env = {**os.environ, **image_env,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    except FileNotFoundError:
        return 127, f"{argv[0]}: command not found"
    except subprocess.TimeoutExpired:
        return None, f"still running after {timeout:.0f} s"
    return out.returncode, (out.stdout + out.stderr).strip()[-600:]


def _down_url() -> str:
    from ..serving.server import free_port

    return f"http://127.0.0.1:{free_port()}"  # nothing listens there


def _live_probe_servers() -> dict[str, str]:
    """The servers of ``_probe_servers``, started again if they are gone (a ready server that does not answer
    would fail every right answer)."""
    import httpx

    servers = _probe_servers()
    try:
        if httpx.get(f"{servers['ready']}/ready", timeout=5).status_code == 200:
            return servers
    except httpx.HTTPError:
        pass
    _probe_servers.cache_clear()
    return _probe_servers()


_IMAGE_VENV_BIN = "/opt/venv/bin/"  # the image's interpreter: this environment's stands in for it here


def _check_probe_runs(probe: list[str], env: dict[str, str] | None = None) -> None:
    """The probe passes against a ready server, and fails against one that is not ready and where none listens.
    It runs here, with this environment's python standing in for the image's /opt/venv/bin/python and the
    image's ENV (``env``) set as Docker sets it."""
    from concurrent.futures import ThreadPoolExecutor

    servers = _live_probe_servers()
    with ThreadPoolExecutor(3) as pool:  # three probes at once: each is a process that mostly waits
        runs = dict(zip(("ready", "down", "unready"), pool.map(
            lambda url: run_probe(probe, url, env=env), (servers["ready"], _down_url(), servers["unready"])), strict=True))
    code, output = runs["ready"]
    assert code == 0, (
        f"your probe fails against a ready server (its /ready answers 200): it exited with {code} and printed: "
        f"{output or '(nothing)'}. Docker would call a healthy container unhealthy (the check ran it here, with this "
        "environment's python standing in for the image's)"
    )
    code, output = runs["down"]
    assert code != 0, (
        "your probe passes when no server listens at all: it swallows its error (`|| exit 0`, `|| true`, "
        "`except: pass`), so Docker would call a dead server healthy. Let the error end the probe with a non-zero "
        "exit code"
    )
    code, output = runs["unready"]
    assert code != 0, (
        "your probe passes while the server is up but not ready (/ready answers 503 until the model has answered "
        "its serving examples), so Docker would send traffic to a server that cannot score: make the probe fail on "
        "any status but 200 (urllib's urlopen raises on 503, http.client does not: compare `status` with 200; "
        "curl needs -f)"
    )


def _probe_in_image_without_server(tag: str, probe: list[str]) -> tuple[int | None, str]:
    """Run the image's probe in a container where the server was never started: it must fail."""
    client = container.docker_client()
    running = client.containers.run(tag, entrypoint=probe[:1], command=probe[1:], detach=True,
                                    labels={"mlops-lab": "probe-down"}, network_mode="none")
    try:
        result = running.wait(timeout=60)
        return result.get("StatusCode"), running.logs().decode(errors="replace").strip()[-600:]
    except Exception as exc:  # noqa: BLE001 - a probe that hangs
        return None, f"{type(exc).__name__}: {exc}"
    finally:
        running.remove(force=True)


def _check_probe_in_docker(tag: str, probe: list[str]) -> None:
    code, output = _probe_in_image_without_server(tag, probe)
    assert code != 0, (  # None: it hung until stopped, which Docker counts as a failure too
        "Docker ran your probe in your image with no server started, and it passed: it swallows its error, so "
        "Docker would call a dead container healthy"
    )


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
        "The check runs your probe against a ready server (it must pass), one that is up but not ready and one that "
        "is down (it must fail): a probe that swallows its error (`|| exit 0`, `except: pass`) calls a dead server "
        "healthy.",
        "Where Docker runs, the check builds your Dockerfile and lets Docker run your HEALTHCHECK: if it says "
        "'unhealthy' or 'starting', read the probe's output in the message, then try the command with "
        "`docker exec` in a running container.",
    ),
    reference=lambda: _step(3),
    stub=lambda: _step(2),
    cases=(
        right("the image's own interpreter", lambda: _healthcheck_with(
            '["/opt/venv/bin/python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('
            '\'http://127.0.0.1:8000/ready\', timeout=2).status != 200)"]')),
        right("ENV PORT, read by the probe's Python", lambda: _healthcheck_with(
            '["python", "-c", "import os, urllib.request; urllib.request.urlopen(\'http://127.0.0.1:%s/ready\' '
            '% os.environ[\'PORT\'], timeout=2)"]').replace("HEALTHCHECK --interval", "ENV PORT=8000\nHEALTHCHECK --interval", 1)),
        right("ENV PORT, expanded by the shell form", lambda: _healthcheck_with(
            "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:${PORT}/ready', timeout=2)\""
        ).replace("HEALTHCHECK --interval", "ENV PORT=8000\nHEALTHCHECK --interval", 1)),
        wrong("ARG PORT in the exec form (nothing expands it)", lambda: _healthcheck_with(
            '["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:${PORT}/ready\', '
            'timeout=2)"]').replace("HEALTHCHECK --interval", "ARG PORT=8000\nHEALTHCHECK --interval", 1), "port"),
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
        wrong("swallows its error with || exit 0", lambda: _healthcheck_with(
            "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)\" "
            "|| exit 0"), "swallows its error"),
        wrong("a bare except: pass", lambda: _healthcheck_with(json.dumps(
            ["python", "-c", "import urllib.request\ntry:\n    urllib.request.urlopen('http://127.0.0.1:8000/ready', "
             "timeout=2)\nexcept:\n    pass"])), "swallows its error"),
        wrong("|| true", lambda: _healthcheck_with(
            "python3 -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready')\" || true"),
            "swallows its error"),
        wrong("http.client without a status check", lambda: _healthcheck_with(json.dumps(
            ["python", "-c", "import http.client; c = http.client.HTTPConnection('127.0.0.1', 8000, timeout=2); "
             "c.request('GET', '/ready'); c.getresponse()"])), "not ready"),
        wrong("a misspelt keyword", lambda: _healthcheck_with(
            "[\"python\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', "
            "timout=2)\"]"), "fails against a ready server"),
        wrong("never calls the server", lambda: _healthcheck_with(
            '["python", "-c", "print(\'http://127.0.0.1:8000/ready\')"]'), "passes when no server listens"),
        right("urlopen's getcode compared with 200", lambda: _healthcheck_with(
            '["python", "-c", "import urllib.request, sys; r = urllib.request.urlopen(\'http://127.0.0.1:8000/ready\'); '
            'sys.exit(0 if r.getcode() == 200 else 1)"]')),
        right("shell form, one line", lambda: _healthcheck_with(
            "python -c \"import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)\"")),
        right("indented, on one line, localhost", lambda: _step(2).replace('CMD ["python", "-m"', "  HEALTHCHECK CMD "
              "[\"python\", \"-c\", \"import urllib.request; urllib.request.urlopen('http://localhost:8000/ready')\"]\n"
              'CMD ["python", "-m"', 1)),
        right("http.client, status compared, pip3-era python3", lambda: _healthcheck_with(json.dumps(
            ["python3", "-c", "import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', 8000, timeout=2); "
             "c.request('GET', '/ready'); sys.exit(0 if c.getresponse().status == 200 else 1)"]))),
        right("lower-case healthcheck, options, line continuation, || exit 1", lambda: _step(2).replace(
            'CMD ["python", "-m"', "healthcheck --interval=10s --timeout=3s \\\n  cmd python -c \"import urllib.request;"
            " urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)\" || exit 1\n" + 'CMD ["python", "-m"', 1)),
    ),
)
def _check_healthcheck(value) -> None:
    require_attempt(value)
    _unchanged(value, 3)
    probe = _check_probe_statically(value)
    _check_probe_runs(probe, parse(value)[-1].env)
    base = buildable_base()
    if base is None:
        return  # no daemon or no base image here: the probe ran against local servers, the image was not built
    health = build_and_probe(value, base)
    assert health.status == "healthy", (
        f"Docker built your image and ran your HEALTHCHECK in it: the server answered /ready, but your probe never "
        f"passed, so Docker calls the container {health.status!r}. The probe's last run exited with "
        f"{health.exit_code} and printed: {health.output or '(nothing)'}"
    )
    _check_probe_in_docker("cardguard:healthcheck", probe)


def checked_how() -> str:
    """One line saying how 5.3 and 5.4 were checked on this machine."""
    base = buildable_base()
    if base is None:
        return ("No Docker daemon or base image here: your health checks ran against real servers on this machine "
                "(ready, not ready, down), and your Dockerfiles were linted and checked statically, not built. With "
                "Docker, the checks also build them and run them.")
    return (f"Docker is here: the checks of 5.3 and 5.4 build your Dockerfiles on {base} and run them, and run your "
            "health check against a ready server, one that is not ready and one that is down.")


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
_CMD = ('CMD ["python", "-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", "--host", "0.0.0.0", '
        '"--port", "8000"]')


def _reference_dockerfile() -> str:
    return _runtime(_RUNTIME)


def _check_pins(all_stages: list[Stage]) -> None:
    for stage in all_stages:
        for run in stage.runs:
            for command in re.split(r"&&|;|\|\|", run):
                words = command.split()
                if not any(PurePosixPath(w).name in ("pip", "pip3") or w == "pip" for w in words[:4]) \
                        or "install" not in words:
                    continue
                rest = words[words.index("install") + 1:]
                if "-r" in rest or "--requirement" in rest or any(w.startswith("--requirement=") for w in rest):
                    continue
                packages = [w for w in rest if not w.startswith("-")]
                loose = [p for p in packages if "==" not in p]
                assert not loose, (
                    f"`RUN {run.strip()}` installs {', '.join(loose)} without a pinned version: install from the "
                    "pinned requirements.txt (pip install --requirement /tmp/requirements.txt), so every build gets "
                    "the versions this course was tested with")


def check_statically(text) -> None:
    """Everything about a serving Dockerfile that can be checked without building it."""
    all_stages = parse(text)
    assert len(all_stages) >= 2, (
        "one stage only: put the dependencies in a build stage and copy the virtualenv into a slim final stage "
        "(start from lab05.build_stage())"
    )
    final = all_stages[-1]
    _check_user(text)
    _check_serving_copies(text)
    _check_pins(all_stages)
    assert any(from_stage is not None for _, _, from_stage in final.copies), (
        "the final stage has no dependencies: copy the virtualenv from the build stage "
        "(COPY --from=build /opt/venv /opt/venv) and put /opt/venv/bin first on PATH"
    )
    _check_probe_statically(text)
    server = server_command(final.program)
    assert server is not None and server.app == "mlops_lab.serving.app:app_from_env" and "--factory" in server.flags, (
        "CMD should start uvicorn on the app factory: python -m uvicorn mlops_lab.serving.app:app_from_env --factory "
        f"(the container would run: {' '.join(final.program) or 'nothing of its own'})"
    )
    assert not final.shell_form, (
        "CMD in shell form runs /bin/sh as PID 1, which does not pass SIGTERM on to uvicorn: shutdown is not "
        "graceful and the prediction log may lose its tail. Use the exec form CMD [\"python\", \"-m\", \"uvicorn\", ...]"
    )
    assert server.host in ("0.0.0.0", "::", "[::]"), (
        f"uvicorn listens on {server.host}{'' if '--host' in server.options else ' (its default)'}, which inside a "
        "container is the container itself: Docker's port mapping cannot reach it. Pass --host 0.0.0.0"
    )
    assert server.port == str(PORT), (
        f"uvicorn listens on port {server.port}; the image promises {PORT} (EXPOSE, the health check)")
    bundle = next((dest for source, dest in copies(final) if source == "bundle"), "/app/bundle")
    assert final.env.get("MLOPS_LAB_BUNDLE", "").rstrip("/") == bundle.rstrip("/"), (
        f"set ENV MLOPS_LAB_BUNDLE={bundle}: without it the server looks for the MLflow registry, which is not "
        "in the image, and never becomes ready"
        if "MLOPS_LAB_BUNDLE" not in final.env else
        f"ENV MLOPS_LAB_BUNDLE={final.env['MLOPS_LAB_BUNDLE']}, but the bundle is copied to {bundle}: the server "
        "would not find its model"
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
    if isinstance(text, str) and logical_lines(text) == logical_lines(build_stage()):
        raise NotAttempted
    check_statically(text)
    _check_probe_runs(_probe_of(text)[1], parse(text)[-1].env)
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
    _check_probe_in_docker("cardguard:yours", parse(text)[-1].healthcheck)


def _hadolint(text: str):
    """hadolint's verdict, its lines naming `Dockerfile` (not a temporary path). DL3025 (JSON notation for CMD)
    is not held against a shell-form CMD that execs the server: the text accepts either form, and with
    `exec` uvicorn is PID 1 and gets SIGTERM just as in the exec form."""
    with tempfile.TemporaryDirectory(prefix="mlops-lab-hadolint-") as tmp:
        path = f"{tmp}/Dockerfile"
        with open(path, "w") as f:
            f.write(text)
        lint = container.hadolint(path)
    if lint is None:
        return None
    code, output = lint
    lines = [line.replace(path, "Dockerfile") for line in output.splitlines() if line.strip()]
    final = parse(text)[-1]
    if _runs_a_shell(final.program) and not final.shell_form:  # `CMD exec uvicorn ...`
        lines = [line for line in lines if " DL3025 " not in line]
        code = code if lines else 0
    return code, "\n".join(lines)


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
        wrong("uvicorn's default host", lambda: _runtime(_RUNTIME.replace('"--host", "0.0.0.0", ', '')), "its default"),
        wrong("no bundle setting", lambda: _runtime(_RUNTIME.replace("    MLOPS_LAB_BUNDLE=/app/bundle \\\n", "")),
              "MLOPS_LAB_BUNDLE"),
        wrong("virtualenv not copied", lambda: _runtime(_RUNTIME.replace("COPY --from=build /opt/venv /opt/venv\n", "")),
              "copy the virtualenv"),
        wrong("both folders into /app/", lambda: _runtime(_RUNTIME.replace(
            "COPY mlops_lab/ mlops_lab/\nCOPY bundle/ bundle/\n", "COPY mlops_lab bundle /app/\n")), "contents"),
        wrong("root", lambda: _runtime(_RUNTIME.replace("USER 10001:10001\n", "")), "runs as root"),
        wrong("shell-form CMD", lambda: _runtime(_RUNTIME.replace(_CMD, "CMD python -m uvicorn "
              "mlops_lab.serving.app:app_from_env --factory --host 0.0.0.0 --port 8000")), "exec form"),
        wrong("the app, not the factory", lambda: _runtime(_RUNTIME.replace('"--factory", ', '')), "app factory"),
        right("ENV PORT and CMD [\"sh\", \"-c\", \"exec ... $PORT\"]", lambda: _runtime(_RUNTIME.replace(
            "EXPOSE 8000", "ENV PORT=8000\nEXPOSE 8000").replace(_CMD, 'CMD ["sh", "-c", "exec python -m uvicorn '
            'mlops_lab.serving.app:app_from_env --factory --host 0.0.0.0 --port $PORT"]'))),
        right("shell-form CMD that execs uvicorn", lambda: _runtime(_RUNTIME.replace(_CMD, "CMD exec python -m uvicorn "
              "mlops_lab.serving.app:app_from_env --factory --host 0.0.0.0 --port 8000"))),
        wrong("uvicorn on 8080 behind EXPOSE 8000", lambda: _runtime(_RUNTIME.replace('"--port", "8000"',
                                                                                        '"--port", "8080"')), "8080"),
        wrong("a probe that swallows its error", lambda: _runtime(_RUNTIME.replace(
            "timeout=2)\"]", "timeout=2)\"]").replace(
            '    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8000/ready\', '
            'timeout=2)"]', "    CMD python -c \"import urllib.request; urllib.request.urlopen("
            "'http://127.0.0.1:8000/ready', timeout=2)\" || exit 0")), "swallows its error"),
        wrong("pip3 install without pins", lambda: _runtime(_RUNTIME).replace(
            "RUN /opt/venv/bin/pip install --no-cache-dir --requirement /tmp/requirements.txt",
            "RUN /opt/venv/bin/pip3 install --no-cache-dir fastapi uvicorn"), "without a pinned version"),
        wrong("the bundle setting points elsewhere", lambda: _runtime(_RUNTIME.replace(
            "MLOPS_LAB_BUNDLE=/app/bundle", "MLOPS_LAB_BUNDLE=/bundle")), "the server would not find its model"),
        wrong("no health check", lambda: _runtime(_RUNTIME[:_RUNTIME.index("HEALTHCHECK")] + _CMD + "\n"),
              "no HEALTHCHECK"),
        right("the course's own Dockerfile", container.dockerfile),
        right("legacy ENV lines, ENTRYPOINT uvicorn with CMD for host and port", lambda: _runtime(_RUNTIME.replace(
            "ENV PATH=/opt/venv/bin:$PATH \\\n    PYTHONPATH=/app \\\n    MLOPS_LAB_BUNDLE=/app/bundle \\\n"
            "    MLOPS_LAB_HOME=/tmp/mlops-lab", "ENV PATH /opt/venv/bin:$PATH\nENV MLOPS_LAB_BUNDLE /app/bundle\n"
            "ENV MLOPS_LAB_HOME /tmp/mlops-lab").replace(_CMD, 'ENTRYPOINT ["uvicorn", "--factory", '
            '"mlops_lab.serving.app:app_from_env"]\nCMD ["--host", "0.0.0.0", "--port", "8000"]'))),
        right("ENTRYPOINT + CMD, --opt=value, quoted ENV, ARG UID, continuation with a comment", lambda: _runtime(
            """# --- runtime stage
from ${BASE_IMAGE}
ARG UID=10001
ENV PATH="/opt/venv/bin:${PATH}" \\
    MLOPS_LAB_BUNDLE="/app/bundle" \\
    MLOPS_LAB_HOME='/tmp/mlops-lab'
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=${UID}:${UID} mlops_lab/ ./mlops_lab/
COPY --chown=${UID}:${UID} bundle ./bundle
USER ${UID}
EXPOSE 8000/tcp
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s \\
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/ready', timeout=2)"]
ENTRYPOINT ["python3", "-m", "uvicorn"]
CMD ["mlops_lab.serving.app:app_from_env", "--factory", \\
     # every interface: the port mapping reaches it
     "--host=0.0.0.0", "--port=8000"]
""")),
        right("the uvicorn script from the virtualenv, http.client probe", lambda: _runtime(
            _RUNTIME.replace(_CMD, 'CMD ["/opt/venv/bin/uvicorn", "--factory", "--host", "0.0.0.0", "--port", "8000", '
                                   '"mlops_lab.serving.app:app_from_env"]').replace(
                '    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(\'http://127.0.0.1:8000/ready\', '
                'timeout=2)"]', "    CMD " + json.dumps(
                    ["python", "-c", "import http.client, sys; c = http.client.HTTPConnection('127.0.0.1', 8000, "
                     "timeout=2); c.request('GET', '/ready'); sys.exit(c.getresponse().status != 200)"])))),
    ),
)
def _check_own_dockerfile(text) -> None:
    _check_dockerfile(text)
