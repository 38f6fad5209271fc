"""Progress bars and summary tables for long commands (rich), shared by every command."""

from __future__ import annotations

from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table


@contextmanager
def progress_bar(console: Console | None, description: str, total: int | None):
    """Yield ``advance(n)``: a rich progress bar when ``console`` is set, else a no-op."""
    if console is None:
        yield lambda n=1: None
        return
    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)


def summary_table(stats: dict, title: str) -> Table:
    """Records per task and split (rnp with its yes/no balance), from a ``stats.json`` dict."""
    table = Table(title=title)
    table.add_column("task")
    for name in ("train", "valid", "test"):
        table.add_column(name, justify="right")
    table.add_column("labels", justify="left")
    for task, splits in stats.get("splits", {}).items():
        labels: dict[str, int] = {}
        for entry in splits.values():
            for label, count in entry.get("labels", {}).items():
                labels[label] = labels.get(label, 0) + count
        table.add_row(
            task,
            *(str(splits.get(name, {}).get("records", 0)) for name in ("train", "valid", "test")),
            ", ".join(f"{label} {count}" for label, count in labels.items()),
        )
    skipped = stats.get("skipped") or {}
    if skipped:
        table.caption = "skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
    return table
