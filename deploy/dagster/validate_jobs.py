"""Validate, offline, what Dagster would create on Kubernetes for CardGuard's loop (docs/orchestration.md).

1. ``deploy/dagster/dagster.yaml`` against Dagster's own instance schema (unknown or mistyped keys fail).
2. The Job that dagster-k8s' run launcher builds for a run of ``weekly_loop``: the launcher is made from
   that file's ``run_launcher`` config (only the cluster credentials swapped for a placeholder kubeconfig:
   no cluster is reached), it launches a run, and the Kubernetes API call is intercepted; the manifest it
   would have sent is checked against the Kubernetes schemas (kubernetes-validate, strict) and for what
   the course relies on.

Run it in the virtualenv of ``deploy/dagster/requirements.txt`` (dagster-k8s pins a dagster that cannot sit
beside the course's MLflow): ``python deploy/dagster/validate_jobs.py [--kubernetes-version 1.33.0]``.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import kubernetes
import kubernetes_validate
import yaml
from dagster import DagsterInstance
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.instance.config import dagster_instance_config
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher

HERE = Path(__file__).resolve().parent
PLACEHOLDER_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: offline, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: offline, user: {token: offline}}]
contexts: [{name: offline, context: {cluster: offline, user: offline}}]
current-context: offline
"""


def rendered_job(config_path: Path) -> dict:
    """The Job manifest dagster-k8s would create for one run of ``weekly_loop`` under ``config_path``."""
    config = yaml.safe_load(config_path.read_text())
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / "dagster.yaml").write_text(config_path.read_text())
        dagster_instance_config(home)  # raises DagsterInvalidConfigError on any schema problem
        kubeconfig = Path(home) / "kubeconfig"
        kubeconfig.write_text(PLACEHOLDER_KUBECONFIG)
        launcher_config = {**config["run_launcher"]["config"], "load_incluster_config": False,
                           "kubeconfig_file": str(kubeconfig)}
        launcher = K8sRunLauncher.from_config_value(None, launcher_config)
        (Path(home) / "instance").mkdir()
        instance = DagsterInstance.local_temp(tempdir=str(Path(home) / "instance"))
        launcher.register_instance(instance)
        sent = []
        launcher._api_client.create_namespaced_job_with_retries = lambda body, namespace: sent.append((body, namespace))
        origin = JobPythonOrigin("weekly_loop", RepositoryPythonOrigin(
            executable_path="/usr/local/bin/python", code_pointer=ModuleCodePointer("mlops_lab.orchestration", "defs", None),
            container_image=None))
        run = instance.add_run(DagsterRun(job_name="weekly_loop", run_id="0123456789abcdef0123456789abcdef",
                                          job_code_origin=origin, tags={"dagster/partition": "2026-03-02"}))
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        (job, namespace), = sent
        assert namespace == config["run_launcher"]["config"]["job_namespace"], namespace
        return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def expectations(manifest: dict, config: dict) -> list[str]:
    """What the course relies on, in the manifest (empty when all hold)."""
    launcher = config["run_launcher"]["config"]
    spec = manifest["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    problems = []
    want = {
        "the image": container["image"] == launcher["job_image"],
        "Dagster's run labels": {"dagster/job", "dagster/run-id"} <= set(manifest["metadata"]["labels"]),
        "the run's command (dagster api execute_run)": container["args"][-4:-1] == ["dagster", "api", "execute_run"],
        "the workspace volume": any(v["name"] == "workspace" for v in pod.get("volumes", []))
        and any(m["mountPath"] == "/workspace" for m in container.get("volumeMounts", [])),
        "resources": container.get("resources", {}).get("limits", {}).get("memory") == "2Gi",
        "backoffLimit 0 (Dagster retries steps; Kubernetes must not rerun a run)": spec.get("backoffLimit") == 0,
        "a non-root container": container.get("securityContext", {}).get("runAsNonRoot") is True,
        "MLOPS_LAB_HOME on the volume": {"name": "MLOPS_LAB_HOME", "value": "/workspace"} in container.get("env", []),
    }
    problems += [f"the Job lacks {what}" for what, ok in want.items() if not ok]
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HERE / "dagster.yaml")
    parser.add_argument("--kubernetes-version", default="1.33.0")
    args = parser.parse_args(argv)
    manifest = rendered_job(args.config)
    try:
        kubernetes_validate.validate(manifest, args.kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        print(f"FAIL: the Job is not valid Kubernetes {args.kubernetes_version}: {exc.message} "
              f"at {'/'.join(map(str, exc.path))}", file=sys.stderr)
        return 1
    problems = expectations(manifest, yaml.safe_load(args.config.read_text()))
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    if problems:
        return 1
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    print(f"ok: {args.config.name} is a valid Dagster instance config; the run launcher's Job "
          f"{manifest['metadata']['name']} (image {container['image']}, {len(container.get('env', []))} env vars) "
          f"is valid Kubernetes {args.kubernetes_version} (strict)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
