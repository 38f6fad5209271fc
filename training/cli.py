"""The ``hunkwise`` command. Heavy libraries (torch, transformers, peft, datasets) are
imported inside the commands that need them, so ``--help`` and ``mine`` start fast."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from training import __version__
from training.errors import HunkwiseError


def user_errors(command):
    """Turn expected problems into one line on stderr and exit status 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except HunkwiseError as error:
            click.echo(f"hunkwise: error: {error}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("hunkwise: interrupted", err=True)
            sys.exit(130)

    return wrapper


def _console(json_output: bool):
    from rich.console import Console

    # With --json, stdout carries only the JSON document; progress goes to stderr.
    return Console(stderr=True) if json_output else Console()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hunkwise")
def main() -> None:
    """hunkwise: a code reviewer trained on your repository's own history."""


@main.command()
@click.argument("repo", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write <task>/{train,valid,test}.jsonl and stats.json into.")
@click.option("--rev", default="HEAD", show_default=True, help="Revision whose history is mined.")
@click.option("--max-commits", type=click.IntRange(min=1), default=None,
              help="Mine only the newest N commits of that history.")
@click.option("--horizon-commits", type=click.IntRange(min=1), default=None,
              help="A hunk needed review if a fix touched its lines within the next N commits "
                   "[default: 100 unless --horizon-days is given].")
@click.option("--horizon-days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Or: within D days of the commit (instead of --horizon-commits).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes for record building (the git walk is one stream).")
@click.option("--max-file-bytes", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Skip files whose diff in one commit is larger than this.")
@click.option("--max-hunk-lines", type=click.IntRange(min=1), default=200, show_default=True,
              help="Skip hunks longer than this many lines.")
@click.option("--json", "json_output", is_flag=True, help="Print stats as JSON on stdout.")
@user_errors
def mine(repo: Path, out: Path, rev: str, max_commits: int | None, horizon_commits: int | None,
         horizon_days: float | None, jobs: int, max_file_bytes: int, max_hunk_lines: int,
         json_output: bool) -> None:
    """Mine REPO's git history into review training records (default: the current directory)."""
    from training.mining.miner import MineOptions, mine_repository
    from training.progress import summary_table

    if horizon_commits is not None and horizon_days is not None:
        raise click.UsageError("give either --horizon-commits or --horizon-days, not both")
    options = MineOptions(
        rev=rev,
        max_commits=max_commits,
        horizon_commits=horizon_commits if horizon_days is None and horizon_commits else 100,
        horizon_days=horizon_days,
        jobs=jobs,
        max_file_bytes=max_file_bytes,
        max_hunk_lines=max_hunk_lines,
    )
    console = _console(json_output)
    stats = mine_repository(repo, out, options, console=console)
    if json_output:
        click.echo(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        console.print(summary_table(stats, title=f"hunkwise mine: {stats['repo']} -> {out}"))
