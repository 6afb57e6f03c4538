"""The ``mlops-lab`` command. Each subcommand is a thin wrapper over a package function."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .errors import LabError


class _Group(click.Group):
    """Turns a LabError into its one-paragraph message and exit code 2, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LabError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="mlops-lab")
def main() -> None:
    """mlops-lab: an executable MLOps course around CardGuard, a card-fraud detector."""
    import os

    from .config import PROCESS_DEFAULTS

    for name, value in PROCESS_DEFAULTS.items():  # before anything imports MLflow or Arrow, here or in what it starts
        os.environ.setdefault(name, value)


@main.command()
def doctor() -> None:
    """Check that this machine can run the course (exit 0 when it can)."""
    from .course import doctor as run_doctor

    sys.exit(0 if run_doctor(report=click.echo) else 1)


@main.command()
@click.argument("lab", type=str)
@click.option("--fresh", is_flag=True, help="Empty the workspace first (as `reset` does), then build it up.")
def setup(lab: str, fresh: bool) -> None:
    """Prepare the workspace for LAB (what the earlier labs would have left behind)."""
    from .course import setup as run_setup

    run_setup(int(lab) if lab.isdigit() else lab, fresh=fresh, report=click.echo)


@main.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Wipe the workspace (MLOPS_LAB_HOME): data, MLflow store, bundles, logs, progress."""
    from . import config

    if not yes:
        click.confirm(f"Delete everything in {config.home()}?", abort=True)
    click.echo(f"Workspace {config.reset()} is empty again.")


@main.command()
@click.option("--check", is_flag=True, help="Write nothing; exit 1 and name the labs that are out of date.")
@click.option("--execute", "execute", is_flag=True,
              help="Maintainers: first re-execute solutions/ and store their outputs (nbval compares them).")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), help="The course folder.")
def build(check: bool, execute: bool, root: Path | None) -> None:
    """Generate labs/ from solutions/ (exercise regions replaced by their stubs)."""
    from .notebooks import build as run_build
    from .notebooks import execute_solutions, summary_table

    if execute:
        results = execute_solutions(root=root, report=click.echo)
        click.echo(summary_table(results))
        if not all(r.ok for r in results):
            sys.exit(1)

    stale = run_build(root, check=check)
    if check:
        if stale:
            names = ", ".join(str(p.relative_to(p.parents[1])) for p in stale)
            click.echo(f"Out of date: {names}. Run `mlops-lab build` and commit the result.", err=True)
            sys.exit(1)
        click.echo("labs/ is up to date with solutions/.")
    else:
        click.echo(f"Rebuilt {len(stale)} lab(s)." if stale else "labs/ was already up to date.")


@main.command()
@click.argument("numbers", nargs=-1)
@click.option("--labs", is_flag=True, help="Run the exercise notebooks (unanswered) instead of the solutions.")
@click.option("--workspace", type=click.Path(path_type=Path, file_okay=False),
              help="Run in this workspace (created if needed; kept) instead of a fresh temporary one.")
@click.option("--keep-workspace", is_flag=True, help="Run in your own workspace (MLOPS_LAB_HOME).")
@click.option("--timeout", default=120, show_default=True, help="Seconds allowed per cell.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), help="The course folder.")
def run(numbers: tuple[str, ...], labs: bool, workspace: Path | None, keep_workspace: bool, timeout: int,
        root: Path | None) -> None:
    """Run the course headless (all notebooks, or lab NUMBERS) and print a summary table."""
    from . import config
    from .notebooks import run as run_course
    from .notebooks import summary_table

    if workspace and keep_workspace:
        raise click.UsageError("Give --workspace DIR or --keep-workspace, not both.")
    results = run_course(list(numbers), labs=labs, workspace=config.home() if keep_workspace else workspace,
                         root=root, timeout=timeout, report=click.echo)
    click.echo("\n" + summary_table(results))
    if any(r.status == "interrupted" for r in results):
        click.echo(f"Interrupted: {len(results) - 1} notebook(s) finished before Ctrl-C.", err=True)
        sys.exit(130)
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            click.echo(f"FAILED {r.notebook}: {r.error} (executed copy: {r.output}; kernel log: "
                       f"{r.output.with_suffix('.kernel.log')})", err=True)
        sys.exit(1)


@main.command()
@click.option("--bundle", type=click.Path(path_type=Path, file_okay=False), help="Serve an exported bundle.")
@click.option("--alias", default="champion", show_default=True, help="Registry alias to serve (without --bundle).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True)
def serve(bundle: Path | None, alias: str, host: str, port: int) -> None:
    """Serve the champion (or a bundle) with uvicorn in the foreground; Ctrl+C stops it gracefully."""
    import os

    import uvicorn

    os.environ["MLOPS_LAB_MODEL_ALIAS"] = alias
    if not bundle:  # (serving WP) fail now with the shell's fix, not a server that never gets ready
        from .serving.model import require_registered

        require_registered(alias, setup="`mlops-lab setup 4`")
    if bundle:
        os.environ["MLOPS_LAB_BUNDLE"] = str(bundle.resolve())
    # slow clients are cut: headers after MLOPS_LAB_HEADER_SECONDS, bodies after MLOPS_LAB_BODY_SECONDS (10 s)
    uvicorn.run("mlops_lab.serving.app:app_from_env", factory=True, host=host, port=port,
                http="mlops_lab.serving.server:H11WithHeaderTimeout")


@main.command()
@click.option("--tag", default="cardguard:latest", show_default=True)
@click.option("--base-image", help="Base image (default: MLOPS_LAB_BASE_IMAGE or python:3.11-slim).")
@click.option("--run", "run_it", is_flag=True, help="Also run the image and wait until it is healthy.")
def container(tag: str, base_image: str | None, run_it: bool) -> None:
    """Build the serving image from the champion (context in the workspace) with the Docker SDK."""
    from . import container as c

    context = c.build_context()
    click.echo(f"build context: {context}")
    info = c.build_image(context, tag=tag, base=base_image, report=click.echo)
    click.echo(f"built {info['tag']} ({info['size_mb']:.0f} MB) in {info['seconds']:.0f} s")
    if run_it:
        handle = c.run_container(tag, wait_for_health=True)
        click.echo(f"container {handle.container.short_id} is healthy at {handle.url} "
                   f"(ready {handle.seconds_to_ready:.1f} s after start); stop it with "
                   f"`docker rm -f {handle.container.short_id}`")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--copy-only", is_flag=True, help="Copy the labs into the workspace; do not start JupyterLab.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), help="The course folder.")
@click.argument("jupyter_args", nargs=-1, type=click.UNPROCESSED)
def lab(copy_only: bool, root: Path | None, jupyter_args: tuple[str, ...]) -> None:
    """Open the labs in JupyterLab, on your own copies in the workspace: `mlops-lab lab [NN] [JUPYTER ARGS]`.

    Each lab is copied into $MLOPS_LAB_HOME/labs once and never overwritten, so your answers are safe
    and labs/ in the repository stays as built. JupyterLab opens lab NN (default 00); other arguments
    go to JupyterLab (e.g. --no-browser)."""
    import os

    from . import learner

    number = "00"
    if jupyter_args and jupyter_args[0].isdigit():
        number, jupyter_args = jupyter_args[0], jupyter_args[1:]

    click.echo(f"Your copies of the labs: {learner.copies_folder()}")
    learner.copy_labs(root, report=click.echo)
    if copy_only:
        return
    command = learner.jupyter_lab_command(number, jupyter_args, root)
    if "--allow-root" in command and "--allow-root" not in jupyter_args:
        click.echo("Running as root (as in many containers and cloud machines): passing --allow-root to "
                   "JupyterLab, which refuses root without it.")
    click.echo("Starting JupyterLab there (Ctrl+C stops it). MLflow's UI: the launcher's 'MLflow UI' tile.")
    sys.stdout.flush()
    os.execve(command[0], command, learner.jupyter_environment())


# --------------------------------------------------------------------------- workshop (issue 14)


@main.group()
def workshop() -> None:
    """Instructors: a shared MLflow server for a room (PostgreSQL, accounts, artifact proxy) and its status."""


@workshop.command("server")
@click.option("--roster", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="CSV with one learner per line: id,display name.")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False),
              help="Where the server keeps its database, artifacts and credentials (default: workspace/workshop).")
@click.option("--database-uri", help="An existing PostgreSQL database instead of a local cluster.")
@click.option("--port", type=int, help="Port for the MLflow server (default: the last start's, else a free one).")
@click.option("--workers", type=int, help="MLflow server worker processes (default: sized for 30 learners).")
@click.option("--address", help="The URL learners use (default http://127.0.0.1:PORT): handout, allowed hosts, CORS.")
@click.option("--reset-passwords", is_flag=True, help="Give every learner a new password (else they are kept).")
def workshop_server(roster: Path, root: Path | None, database_uri: str | None, port: int | None, workers: int | None,
                    address: str | None, reset_passwords: bool) -> None:
    """Start the workshop's MLflow server and create the roster's accounts; print how learners connect.
    The same roster starts the same room again; new names on it are added."""
    from .workshop import WORKERS, start

    start(roster, root=root, database_uri=database_uri, port=port, workers=workers or WORKERS, address=address,
          reset_passwords=reset_passwords, report=click.echo)


@workshop.command("stop")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False))
def workshop_stop(root: Path | None) -> None:
    """Stop the workshop's MLflow server and its local PostgreSQL (data and artifacts are kept)."""
    from .workshop import stop

    stop(root, report=click.echo)


@workshop.command("status")
@click.option("--dir", "root", type=click.Path(path_type=Path, file_okay=False))
@click.option("--leaderboard/--no-leaderboard", default=True, show_default=True,
              help="Also score every champion on the common holdout.")
@click.option("--plot", type=click.Path(path_type=Path, dir_okay=False), help="Save the progress plot (PNG).")
def workshop_status(root: Path | None, leaderboard: bool, plot: Path | None) -> None:
    """Who is where: a row per learner, the leaderboard on the common holdout, optionally a plot."""
    from . import workshop as w

    click.echo(w.status(root).to_string())
    if leaderboard:
        click.echo("\nLeaderboard (champions scored by the instructor on the common holdout):")
        click.echo(w.leaderboard(root).to_string())
    if plot:
        w.progress_plot(root).savefig(plot, dpi=100)
        click.echo(f"\nProgress plot: {plot}")


# --- ci (issue 10): the local pipeline, the same stages as .github/workflows/ci.yml
@main.command()
@click.option("--stage", "stages", multiple=True, metavar="NAME",
              help="Run only this stage (repeatable); the stages run in pipeline order.")
@click.option("--keep-going", is_flag=True, help="Run every stage even after a failure.")
@click.option("--require-container", is_flag=True, help="Fail (instead of skip) when no Docker daemon answers.")
def ci(stages: tuple[str, ...], keep_going: bool, require_container: bool) -> None:
    """Run the CI pipeline locally: lint, unit tests, data, train, quality, latency, behaviour,
    container, register. Prints a stage table; exits 1 when a stage fails."""
    from . import ci as pipeline

    result = pipeline.run(list(stages), keep_going=keep_going, require_container=require_container,
                          report=lambda line: click.echo(line, err=True))
    click.echo(result.table())
    if not result.ok:
        sys.exit(1)


# ---------------------------------------------------------------- monitoring (lab 07)
# Exit codes: 0 no drift, 1 drift, 2 the inputs cannot be compared (a one-line reason, before any test runs).
_UNIT_NUMBER = r"^\s*[^\d\s.+-]{0,4}\s*[-+]?\d[\d,]*(?:\.\d+)?\s*[A-Za-z%$€£¥]{1,4}\.?\s*$"
_YES_NO = {"yes", "no", "y", "n"}


def _read_table(path: Path, label: str):
    """A Parquet or CSV file as a DataFrame, or a LabError saying what is wrong with it."""
    import contextlib
    import csv

    import pandas as pd

    if not path.exists():
        raise LabError(f"{label} {path} does not exist: give the path of a Parquet or CSV file.")
    if path.is_dir():
        raise LabError(f"{label} {path} is a folder: give the path of a Parquet or CSV file.")
    csv_file = path.suffix.lower() == ".csv"
    try:
        frame = pd.read_csv(path) if csv_file else pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise LabError(f"{label} {path} is empty: it has no header and no rows.") from None
    except Exception as exc:
        raise LabError(f"Cannot read {label} {path} ({type(exc).__name__}): give a Parquet or CSV file.") from None
    if csv_file:  # pandas fills a line cut short with NaN, silently
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            text = f.read()
        if text and not text.endswith(("\n", "\r")):
            records = list(csv.reader(text.splitlines()))
            if len(records) > 1 and len(records[-1]) < len(records[0]):
                raise LabError(f"{label} {path} ends mid-line: its last line has {len(records[-1])} of "
                               f"{len(records[0])} fields. The file was cut short: export it again.")
    if csv_file:  # dates and times as Parquet has them (the monitor leaves them out), not as text categories
        for name in frame.columns:
            if not (pd.api.types.is_object_dtype(frame[name]) or pd.api.types.is_string_dtype(frame[name])):
                continue
            values = frame[name].dropna().astype(str)
            if len(values) and values.str.match(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?").all():
                with contextlib.suppress(ValueError, TypeError):
                    frame[name] = pd.to_datetime(frame[name], format="ISO8601")
    if frame.empty:
        raise LabError(f"{label} {path} has no rows ({len(frame.columns)} column(s), 0 rows): there is nothing "
                       "to compare.")
    return frame


def _kind(series) -> str:
    """'empty', 'boolean', 'yes/no', 'number with a unit', 'numeric' or 'text' (what a monitor must not guess)."""
    import pandas as pd

    values = series.dropna()
    if values.empty:
        return "empty"
    if pd.api.types.is_bool_dtype(series):
        return "boolean"
    if pd.api.types.is_numeric_dtype(series):
        return "numeric"
    text = values.astype(str).str.strip()
    lowered = set(text.str.lower().unique())
    if lowered <= _YES_NO | {"true", "false"} and lowered & _YES_NO:
        return "yes/no"
    if lowered <= {"true", "false"}:
        return "boolean"
    if text.str.match(_UNIT_NUMBER).mean() >= 0.9 and text.str.contains(r"[A-Za-z%$€£¥]").any():
        return "number with a unit"
    return "text"


def _id_like(series) -> bool:
    """Unique per row and not a measurement (text or whole numbers): an id, which always 'drifts'."""
    import pandas as pd

    if len(series) < 20 or series.isna().any() or pd.api.types.is_float_dtype(series) \
            or pd.api.types.is_bool_dtype(series):
        return False
    return series.nunique() == len(series)


def monitor_inputs(reference, current, contract: bool) -> tuple:
    """The two frames ready to compare, and the columns skipped as ids; a LabError naming every type
    problem (an empty column, numbers written with a unit, yes/no booleans, a column that changed type)."""
    from . import data

    skipped = []
    if not contract:
        skipped = [str(c) for c in reference.columns if _id_like(reference[c]) and c in current
                   and _id_like(current[c])]
    columns = data.feature_columns() if contract else [c for c in reference.columns if str(c) not in skipped]
    problems = []
    for name in columns:
        kinds = {label: _kind(frame[name]) for label, frame in (("REFERENCE", reference), ("CURRENT", current))
                 if name in frame}
        for label, kind in kinds.items():
            if kind == "empty":
                problems.append(f"{name} is empty in {label} (every value missing)")
            elif kind == "number with a unit":
                example = next(v for v in (reference if label == "REFERENCE" else current)[name].dropna())
                problems.append(f"{name} in {label} holds numbers with a unit or currency ({str(example)!r}): "
                                "write plain numbers")
            elif kind == "yes/no":
                problems.append(f"{name} in {label} holds yes/no text: write booleans as true/false (or 1/0)")
        if len(kinds) == 2 and "empty" not in kinds.values() and len(set(kinds.values())) == 2 \
                and not any(k in ("number with a unit", "yes/no") for k in kinds.values()):
            problems.append(f"{name} is {kinds['REFERENCE']} in REFERENCE but {kinds['CURRENT']} in CURRENT")
    if problems:
        raise LabError("The files cannot be compared as they are: " + "; ".join(problems) + ".")
    return reference.drop(columns=skipped), current.drop(columns=[c for c in skipped if c in current]), skipped


@main.command()
@click.argument("reference", type=click.Path(path_type=Path))
@click.argument("current", type=click.Path(path_type=Path))
@click.option("--contract", is_flag=True, help="Take the columns and their kinds from the data contract.")
@click.option("--html", type=click.Path(path_type=Path), help="Also write the report as HTML.")
def monitor(reference: Path, current: Path, contract: bool, html: Path | None) -> None:
    """Drift report of CURRENT against REFERENCE (Parquet or CSV files). Exit 0: no drift; 1: a column
    drifts; 2: the files cannot be compared (missing, empty, cut short, or with type problems)."""
    from .monitoring import ReferenceProfile

    if html is not None and not html.parent.is_dir():
        raise LabError(f"Cannot write the HTML report to {html}: the folder {html.parent} does not exist.")
    ref, cur, skipped = monitor_inputs(_read_table(reference, "REFERENCE"), _read_table(current, "CURRENT"),
                                       contract)
    for name in skipped:
        click.echo(f"Skipped {name}: unique per row, an id (it always 'drifts'); give --contract to choose "
                   "columns from the data contract.")
    report = ReferenceProfile.fit(ref, contract=True if contract else None).compare(cur)
    click.echo(repr(report))
    if html:
        from .monitoring.report import save_html

        try:
            click.echo(f"HTML report: {save_html(report, html)}")
        except OSError as exc:
            raise LabError(f"Cannot write the HTML report to {html}: {exc.strerror or exc}.") from None
    sys.exit(1 if report.drifted else 0)


# ---------------------------------------------------------------- the retraining loop (lab 08)
@main.command()
@click.option("--weeks", default=6, show_default=True, help="Simulate up to this week (resumes where it stopped).")
@click.option("--schedule", default="none", show_default=True,
              help="Scenario per week: 'card_testing@3' (from week 3), 'none,none,card_testing', or 'none'.")
@click.option("--retrain-every", type=int, help="Also retrain every N weeks without an alert.")
@click.option("--per-day", default=1000, show_default=True, help="Payments a day.")
@click.option("--fresh", is_flag=True, help="Start the loop again (its events and state; the registry keeps its versions).")
def loop(weeks: int, schedule: str, retrain_every: int | None, per_day: int, fresh: bool) -> None:
    """Run the retraining loop of lab 08 against a local server: one line per week, then the timeline."""
    import pandas as pd

    from . import pipeline

    table = pipeline.run_loop(weeks, schedule, pipeline.Policy(retrain_every=retrain_every), resume=not fresh,
                              per_day=per_day, report=click.echo)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 60):
        click.echo("\n" + table.to_string())
    click.echo(f"\nEvents: {pipeline.events_path()}")


if __name__ == "__main__":
    main()
