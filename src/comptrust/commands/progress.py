"""Rich output shared by commands: the plan table and the generation progress bar."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape as _rich_escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from ..sanitize import clean

console = Console(stderr=True)


def escape(text: object) -> str:
    """Rich-markup-escaped, control characters made visible (names here are user input)."""
    return _rich_escape(clean(text))


def print_plan(plan, missing: int) -> None:
    t = Table(title=f"plan: {escape(plan.resolved.display_name)} ({plan.resolved.fingerprint[:12]})", title_justify="left")
    for col in ("perspective", "prompts", "samples", "max new tokens", "token budget"):
        t.add_column(col, justify="right" if col != "perspective" else "left")
    for row in plan.summary():
        t.add_row(escape(row["perspective"]), str(row["prompts"]), str(row["samples"]),
                  str(row["max_new_tokens"]), f"{row['token_budget']:,}")
    console.print(t)
    total = sum(len(u) for u in plan.units.values())
    console.print(f"{total - missing} of {total} answers already in the store; {missing} to generate")
    for n in plan.formatter.notes + plan.resolved.notes:
        console.print(f"[dim]note: {escape(n)}[/dim]")


@contextmanager
def generation_progress(enabled: bool = True) -> Iterator:
    """Yields an on_start(total) -> advance(units, tokens) pair for runner.generate_missing."""
    progress = Progress(
        TextColumn("[bold]generating"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        console=console, disable=not enabled, transient=False,
    )
    state = {"tokens": 0, "t0": 0.0}

    def on_start(total: int):
        state["t0"] = time.perf_counter()
        task = progress.add_task("gen", total=total, tps="")
        progress.start()

        def advance(units: int, tokens: int) -> None:
            state["tokens"] += tokens
            dt = max(1e-6, time.perf_counter() - state["t0"])
            progress.update(task, advance=units, tps=f"{state['tokens'] / dt:.1f} tok/s")

        return advance

    try:
        yield on_start
    finally:
        progress.stop()
