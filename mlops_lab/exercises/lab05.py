"""Lab 05: Container. Fix a Dockerfile: a non-root user, a narrow COPY, a health check."""

from __future__ import annotations

from .. import container
from . import exercise, require_attempt

_GOOD_COPY = "COPY mlops_lab/ /app/mlops_lab/\nCOPY bundle/ /app/bundle/\n"
_USER = "USER 10001:10001\n"
_HEALTHCHECK_START = "HEALTHCHECK --interval"


def broken_dockerfile() -> str:
    """The course's Dockerfile with three classic mistakes: root, COPY of everything, no health check."""
    text = container.dockerfile()
    text = text.replace(_GOOD_COPY, "COPY . /app/\n").replace(_USER, "")
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(_HEALTHCHECK_START))
    del lines[start:start + 2]  # the HEALTHCHECK and its continuation line
    return "".join(lines)


def _step(n: int) -> str:
    text = broken_dockerfile()
    if n >= 1:
        text = text.replace("EXPOSE 8000\n", _USER + "EXPOSE 8000\n")
    if n >= 2:
        text = text.replace("COPY . /app/\n", _GOOD_COPY)
    if n >= 3:
        good = container.dockerfile().splitlines(keepends=True)
        start = next(i for i, line in enumerate(good) if line.startswith(_HEALTHCHECK_START))
        text = text.replace("CMD [\"python\", \"-m\"", "".join(good[start:start + 2]) + "CMD [\"python\", \"-m\"", 1)
    return text


def _rules(text) -> set[str]:
    assert isinstance(text, str) and "FROM" in text, "expected the Dockerfile's text (a string with FROM lines)"
    return {rule for rule, _ in container.dockerfile_problems(text)}


def _unchanged(value, exercise: int) -> None:
    """The stub hands on the previous answer unedited: that is not an attempt at this exercise."""
    if value in (broken_dockerfile(), _step(exercise - 1)):
        from . import NotAttempted

        raise NotAttempted


@exercise(
    "5.1",
    "Do not run as root",
    solution='dockerfile = broken.replace("EXPOSE 8000\\n", "USER 10001:10001\\nEXPOSE 8000\\n")',
    hints=(
        "Without a USER instruction, the server runs as root inside the container.",
        "Add `USER 10001:10001` in the final stage, after the COPY lines and before CMD.",
    ),
    reference=lambda: _step(1),
)
def _check_user(value) -> None:
    require_attempt(value)
    _unchanged(value, 1)
    rules = _rules(value)
    assert "runs as root" not in rules, "the final stage still runs as root: add `USER 10001:10001` before CMD"
    assert "user by name" not in rules, "use a numeric user id such as 10001, not a name"


@exercise(
    "5.2",
    "Copy only what serving needs",
    solution='dockerfile = dockerfile.replace("COPY . /app/\\n", "COPY mlops_lab/ /app/mlops_lab/\\nCOPY bundle/ /app/bundle/\\n")',
    hints=(
        "`COPY . /app/` copies the whole build context: notebooks, data, anything left lying around.",
        "The server needs two folders of the context: `mlops_lab/` and `bundle/`. Copy each to /app/.",
    ),
    reference=lambda: _step(2),
)
def _check_copy(value) -> None:
    require_attempt(value)
    _unchanged(value, 2)
    rules = _rules(value)
    assert "copies the whole context" not in rules, "there is still a COPY of `.`: copy mlops_lab/ and bundle/ only"
    assert "COPY mlops_lab/ /app/mlops_lab/" in value and "COPY bundle/ /app/bundle/" in value, (
        "the server still needs its code and its model: COPY mlops_lab/ /app/mlops_lab/ and COPY bundle/ /app/bundle/"
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
        "The slim image has no curl: use Python's urllib in the exec form, as the course's Dockerfile does.",
    ),
    reference=lambda: _step(3),
)
def _check_healthcheck(value) -> None:
    require_attempt(value)
    _unchanged(value, 3)
    rules = _rules(value)
    assert "no HEALTHCHECK" not in rules, "the final stage has no HEALTHCHECK (HEALTHCHECK NONE does not count)"
    check = next(line for line in value.splitlines() if line.startswith("HEALTHCHECK") and "NONE" not in line)
    following = value[value.index(check):].split("\n", 2)
    body = check + (following[1] if check.rstrip().endswith("\\") and len(following) > 1 else "")
    assert "/ready" in body, "probe /ready: /health is up before the model is loaded"
