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


@main.command()
def doctor() -> None:
    """Check that this machine can run the course (exit 0 when it can)."""
    from .course import doctor as run_doctor

    sys.exit(0 if run_doctor(report=click.echo) else 1)


@main.command()
@click.argument("lab", type=str)
def setup(lab: str) -> None:
    """Prepare the workspace for LAB (what the earlier labs would have left behind)."""
    from .course import setup as run_setup

    run_setup(int(lab) if lab.isdigit() else lab, report=click.echo)


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
@click.option("--keep-workspace", is_flag=True, help="Run in your own workspace instead of a fresh one.")
@click.option("--timeout", default=120, show_default=True, help="Seconds allowed per cell.")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), help="The course folder.")
def run(numbers: tuple[str, ...], labs: bool, keep_workspace: bool, timeout: int, root: Path | None) -> None:
    """Run the course headless (all notebooks, or lab NUMBERS) and print a summary table."""
    from .notebooks import run as run_course
    from .notebooks import summary_table

    results = run_course(list(numbers), labs=labs, fresh=not keep_workspace, root=root, timeout=timeout,
                         report=click.echo)
    click.echo("\n" + summary_table(results))
    failed = [r for r in results if not r.ok]
    if failed:
        for r in failed:
            click.echo(f"FAILED {r.notebook}: {r.error} (executed copy: {r.output})", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
