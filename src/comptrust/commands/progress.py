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


# -- the sweep's live display ---------------------------------------------------------------------


def sweep_progress() -> Progress:
    """One live display for a sweep: the overall job bar and the current job's bar, each with its
    own time left. stdout/stderr are NOT redirected through it (third-party output goes to the log
    file, see thirdparty.py; rich's proxy would put it back on the terminal above the bars)."""
    from rich.table import Column

    return Progress(
        TextColumn("{task.fields[what]}", table_column=Column(width=34, no_wrap=True, overflow="ellipsis")),
        BarColumn(bar_width=20), MofNCompleteColumn(), TextColumn("{task.fields[tps]}"),
        TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
        console=console, transient=False, redirect_stdout=False, redirect_stderr=False,
    )


class SweepDisplay:
    """SweepEvents on sweep_progress(): the overall bar says how many jobs are done and about how
    long the rest takes (the plan's estimates, corrected by what this run has measured); the
    current job's bar shows a build's elapsed vs estimated time or a generation's answers, tok/s
    and time left. Result lines (one per finished job) are printed above the bars."""

    def __init__(self, progress: Progress, total: int, cost=None, out_dir=None) -> None:
        self.p = progress
        self.console = console
        self.cost, self.out_dir = cost, out_dir
        self.overall = progress.add_task("sweep", total=total, what="[bold]sweep[/bold]", tps="", eta="")
        self.cur = None
        self.t_job = 0.0
        self.t_gen, self.tokens = 0.0, 0
        # job id -> estimated seconds, for the jobs still to run
        self.left: dict[str, float] = {}
        if cost is not None:
            rem = set(cost.remaining)
            self.left = {j: s for j, s in {**cost.build_seconds, **cost.eval_seconds_each}.items() if j in rem}
        self.build_ratio: list[float] = []  # measured / estimated, finished builds
        self.rates: list[float] = []  # measured tok/s, finished evals
        self._show_eta()

    # time left -------------------------------------------------------------------------------
    def _estimate(self, job_id: str) -> float:
        import statistics

        s = self.left[job_id]
        if job_id.startswith("build") and self.build_ratio:
            return s * statistics.median(self.build_ratio)
        if job_id.startswith("eval") and self.rates and self.cost is not None:
            return self.cost.workload.token_budget / statistics.median(self.rates)
        return s

    def _show_eta(self) -> None:
        from ..plan import fmt_seconds

        left = sum(self._estimate(j) for j in self.left)
        self.p.update(self.overall, eta=f"about {fmt_seconds(left)} left" if self.left else "")

    def _measured_rate(self, job) -> float | None:
        import json

        if self.out_dir is None:
            return None
        try:
            tps = json.loads((self.out_dir / job.out_dir / "results.json").read_text())["efficiency"]["tokens_per_s"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return float(tps) if tps else None

    # SweepEvents -----------------------------------------------------------------------------
    # a build's progress notes that its result line restates (calibration, compression time, where
    # it was written) go to the log; the rest (group-size fallbacks, warnings) stay on the console
    RESTATED = ("calibration: ", "compressed in ", "wrote ")

    def log(self, text: str) -> None:
        import sys

        if text.startswith(self.RESTATED):
            print(f"comptrust: {text}", file=sys.stderr, flush=True)  # the log file while third_party_to_log runs
            return
        self.console.print(f"[dim]  {escape(text)}[/dim]")

    def job_started(self, job, index: int, total: int, note: str = "") -> None:
        from ..plan import fmt_seconds

        self.t_job = time.perf_counter()
        if note:
            return
        if not self.console.is_terminal:  # no live display to show it: one line instead
            self.console.print(f"[bold][{index + 1}/{total}][/bold] {escape(job.id)}")
        est = self._estimate(job.id) if job.id in self.left else None
        self.cur = self.p.add_task(job.id, total=None, what=escape(f"{'building' if job.kind == 'build' else 'loading'} {job.id}"),
                                   tps="", eta=f"est. {fmt_seconds(est)}" if est is not None else "")

    def job_finished(self, job, status: str, detail: str = "") -> None:
        from ..plan import fmt_seconds

        if self.cur is not None:
            self.p.remove_task(self.cur)
            self.cur = None
        self.p.advance(self.overall)
        took = time.perf_counter() - self.t_job
        est = self.left.pop(job.id, None)
        if status == "done" and detail.startswith("skipped"):
            self._show_eta()
            return
        if status == "done" and est and job.kind == "build":
            self.build_ratio.append(took / est)
        if status == "done" and job.kind == "eval":
            rate = self._measured_rate(job)
            if rate:
                self.rates.append(rate)
        self._show_eta()
        color = {"done": "green", "failed": "red"}.get(status, "yellow")
        self.console.print(f"[{color}]{status}[/{color}] {escape(job.id)}" + (f": {escape(detail)}" if detail else "")
                           + f" [dim]({fmt_seconds(took)})[/dim]")

    def eval_progress(self, job):
        def on_start(total: int):
            from ..plan import fmt_seconds

            self.t_gen, self.tokens = time.perf_counter(), 0
            if self.cur is None:
                self.cur = self.p.add_task(job.id, total=total, what="", tps="", eta="")
            self.p.update(self.cur, total=total, completed=0, what=escape(f"generating {job.target}"))

            def advance(units: int, tokens: int) -> None:
                self.tokens += tokens
                dt = max(1e-6, time.perf_counter() - self.t_gen)
                task = self.p.tasks[[t.id for t in self.p.tasks].index(self.cur)]
                done = task.completed + units
                left = (task.total - done) * dt / done if done else None
                self.p.update(self.cur, advance=units, tps=f"{self.tokens / dt:.1f} tok/s",
                              eta=f"{fmt_seconds(left)} left" if left is not None else "")

            return advance

        return on_start

    def report_started(self) -> None:
        self.console.print("writing the report (bootstrap CIs)...")
