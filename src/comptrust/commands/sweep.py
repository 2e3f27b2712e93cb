"""`comptrust sweep SPEC --out DIR [--dry-run]`: the whole study from one spec (see docs/sweep.md).

Prints the plan and its cost first (jobs, prompts, token budget, estimated time and where the
throughput figure comes from), asks nothing, then builds, evaluates and reports, resumably.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer


def apply_overrides(loaded, *, data_dir: Optional[Path] = None, limit: Optional[int] = None,
                    profile: Optional[str] = None, backend: Optional[str] = None):
    """Command-line overrides of a spec's eval settings (validated like the spec's own)."""
    import dataclasses

    from ..profiles import get_profile

    upd = {}
    if limit is not None:
        upd["limit"] = limit
    if profile is not None:
        get_profile(profile)
        upd["profile"] = profile
    if backend is not None:
        from ..errors import ConfigError
        from ..spec import BACKENDS, backend_fit_errors

        if backend not in BACKENDS:
            raise ConfigError(f"unknown --backend {backend!r}; use {' | '.join(BACKENDS)}")
        problems = backend_fit_errors(loaded.spec.model_copy(update={"backend": backend}))
        if problems:
            raise ConfigError(f"--backend {backend}: {problems[0][1]}")
        upd["backend"] = backend
    new = loaded
    if upd:
        new = dataclasses.replace(new, spec=new.spec.model_copy(update=upd))
    if data_dir is not None:
        from ..errors import ConfigError

        d = Path(data_dir).expanduser().resolve()
        if not d.is_dir():
            raise ConfigError(f"--data-dir {data_dir} is not a directory; pass a DecodingTrust checkout (holds data/)")
        new = dataclasses.replace(new, spec=new.spec.model_copy(update={"data_dir": str(d)}), data_dir=d)
    return new


def print_plan(prepared, workload, cost, verbose: bool = True) -> None:
    gpu = _on_gpu(prepared.loaded.spec.device)
    from rich.markup import escape
    from rich.table import Table

    from ..plan import BuildJob, fmt_seconds
    from .progress import console

    spec = prepared.loaded.spec
    console.print(f"[bold]sweep[/bold] {escape(prepared.loaded.source)} -> {escape(str(prepared.out_dir))}"
                  + (f"  [dim]{escape(spec.description)}[/dim]" if spec.description else ""))
    console.print(f"profile {spec.profile}, seed {spec.seed}, limit {spec.limit or 'none'}, data "
                  f"{escape(str(prepared.loaded.data_dir or 'bundled mini set'))}")
    t = Table(title="jobs", title_justify="left")
    for col in ("#", "job", "what", "est. time", "status"):
        t.add_column(col, justify="right" if col in ("#", "est. time") else "left")
    for i, job in enumerate(prepared.plan.jobs, 1):
        if isinstance(job, BuildJob):
            s = job.spec
            what = (f"{s.method} W{s.bits} g{s.group_size}" if s.is_quant else f"{s.method} {s.sparsity:g} {s.structure}")
            if s.needs_calibration:
                what += f", calib {s.calib} {s.n_calib}x{s.seq_len} seed {s.seed}"
            est = cost.build_seconds[job.id]
        else:
            what = f"{len(spec.dimensions)} dimensions, {cost.workload.samples} samples"
            est = cost.eval_seconds_each[job.id]
        status = prepared.status[job.id]
        t.add_row(str(i), escape(job.id), escape(what), fmt_seconds(est),
                  "[green]done[/green]" if status == "done" else status)
    console.print(t)
    w = Table(title="per eval job (every model gets the same prompts)", title_justify="left")
    for col in ("dimension", "prompts", "samples", "token budget"):
        w.add_column(col, justify="left" if col == "dimension" else "right")
    for r in cost.workload.rows:
        w.add_row(escape(r.dimension), str(r.prompts), str(r.samples), f"{r.token_budget:,}")
    w.add_row("[bold]total[/bold]", str(cost.workload.prompts), str(cost.workload.samples), f"{cost.workload.token_budget:,}")
    console.print(w)
    n_done = sum(1 for s in prepared.status.values() if s == "done")
    console.print(
        f"{cost.n_builds} variant builds + {cost.n_evals} eval jobs ({n_done} done already); "
        f"{cost.total_prompts:,} prompts and at most {cost.total_token_budget:,} generated tokens in all"
    )
    basis = ("the paper's GPU figure (13b, 4 bits, A40: 30 min)" if gpu else "DESIGN.md's 2-core CPU figures")
    console.print(f"throughput {cost.throughput.tokens_per_s:g} tok/s ({escape(cost.throughput.source)}); "
                  f"compression times from {basis}, scaled by n_calib and model size")
    console.print(f"[bold]estimated time left: {fmt_seconds(cost.eta_seconds)}[/bold] "
                  "(generation at the full token budget and the throughput above)")
    if verbose:
        for n in cost.workload.notes:
            console.print(f"[dim]note: {escape(n)}[/dim]")
    elif cost.workload.notes:
        console.print(f"[dim]{len(cost.workload.notes)} notes on the data (skipped parts, profile caps): "
                      "shown by --dry-run and in the report[/dim]")


class RichEvents:
    """SweepEvents on a rich Progress: one bar for the job list, one for the current generation."""

    def __init__(self, progress, total: int, cost=None, out_dir: Path | None = None) -> None:
        from .progress import console

        self.p = progress
        self.console = console
        self.overall = progress.add_task("sweep", total=total, what="jobs", tps="")
        self.gen = None
        self.t0 = 0.0
        self.tokens = 0
        self.cost, self.out_dir = cost, out_dir
        self.pending = set(cost.remaining) if cost else set()
        self.measured: list[float] = []

    def _time_left(self, job) -> None:
        """After an eval: its measured throughput and the time left at the median measured rate."""
        import json
        import statistics

        from ..plan import fmt_seconds

        if self.cost is None or self.out_dir is None:
            return
        try:
            tps = json.loads((self.out_dir / job.out_dir / "results.json").read_text())["efficiency"]["tokens_per_s"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if not tps:
            return
        self.measured.append(float(tps))
        rate = statistics.median(self.measured)
        left = sum(s for j, s in self.cost.build_seconds.items() if j in self.pending)
        left += sum(1 for j in self.cost.eval_seconds_each if j in self.pending) * self.cost.workload.token_budget / rate
        self.console.print(f"  [dim]measured {tps:g} tok/s; about {fmt_seconds(left)} left at {rate:g} tok/s[/dim]")

    def log(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"[dim]  {escape(text)}[/dim]")

    def job_started(self, job, index: int, total: int, note: str = "") -> None:
        from rich.markup import escape

        self.p.update(self.overall, what=escape(job.id))
        if not note:
            self.console.print(f"[bold][{index + 1}/{total}][/bold] {escape(job.id)}")

    def job_finished(self, job, status: str, detail: str = "") -> None:
        from rich.markup import escape

        if self.gen is not None:
            self.p.remove_task(self.gen)
            self.gen = None
        self.p.advance(self.overall)
        self.pending.discard(job.id)
        if status == "done" and detail.startswith("skipped"):
            return
        color = {"done": "green", "failed": "red"}.get(status, "yellow")
        self.console.print(f"  [{color}]{status}[/{color}] {escape(job.id)}" + (f": {escape(detail)}" if detail else ""))
        if status == "done" and job.kind == "eval" and self.pending:
            self._time_left(job)

    def eval_progress(self, job):
        def on_start(total: int):
            self.t0, self.tokens = time.perf_counter(), 0
            self.gen = self.p.add_task("gen", total=total, what="generating", tps="")

            def advance(units: int, tokens: int) -> None:
                self.tokens += tokens
                dt = max(1e-6, time.perf_counter() - self.t0)
                self.p.update(self.gen, advance=units, tps=f"{self.tokens / dt:.1f} tok/s")

            return advance

        return on_start

    def report_started(self) -> None:
        self.console.print("writing the report (bootstrap CIs)...")


def plan_and_cost(prepared, tokens_per_s: float | None = None):
    from ..plan import Throughput, default_throughput, estimate, measure_workload, measured_throughput, params_from_name, params_in_checkpoint

    workload = measure_workload(prepared.loaded)
    runs = [prepared.out_dir / j.out_dir for j in prepared.plan.evals]
    if tokens_per_s is not None:
        throughput = Throughput(tokens_per_s, "given with --tokens-per-s")
    else:
        throughput = measured_throughput(runs) or default_throughput()
    params = {}
    for m in prepared.plan.models:
        r = prepared.resolved.get(m.name)
        params[m.name] = (params_in_checkpoint(r.path) if r else None) or params_from_name(m.ref)
    done = {k for k, v in prepared.status.items() if v == "done"}
    return workload, estimate(prepared.plan, workload, throughput, params, done, gpu=_on_gpu(prepared.loaded.spec.device))


def _on_gpu(device: str | None) -> bool:
    if device is not None:
        return device.startswith("cuda")
    import torch

    return torch.cuda.is_available()


def print_summary(result, dimensions: list[str]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from ..sweep import summary_table

    out = Console()
    if result.comparison is None:
        out.print("no finished runs to report")
        return
    header, rows = summary_table(result.comparison, dimensions)
    from ..report.compare import MARK_LEGEND

    t = Table(title="scores (0-100; delta vs dense; " + MARK_LEGEND + ")", title_justify="left")
    for i, h in enumerate(header):
        t.add_column(escape(h), justify="left" if i == 0 else "right")
    # colour = evidence: red/green outside noise, dim within noise, blue too few, yellow refusal-driven
    styles = {"≈": "dim", "?": "blue", "†": "dim", "⊘": "yellow"}
    for r in rows:
        cells = []
        for i, c in enumerate(r):
            mark = next((m for m in styles if f"{m})" in c or c.endswith(m) or f" {m} " in c), None)
            style = styles[mark] if mark else ("green" if "(+" in c else "red" if "(-" in c else "")
            cells.append(f"[{style}]{escape(c)}[/]" if style and i else escape(c))
        t.add_row(*cells)
    out.print(t)
    for p in result.comparison.recommendation.paragraphs:
        out.print(escape(p))
    out.print(f"report: {escape(str(result.out_dir / 'report' / 'report.html'))}", soft_wrap=True)


def make_executor(executor: str, address: str | None, ray_cpus: int | None = None):
    """None for the local executor; a started RayExecutor (address checked) for ray."""
    from ..errors import ConfigError

    if executor == "local":
        if address:
            raise ConfigError("--address is for --executor ray; add --executor ray or drop --address")
        return None
    if executor != "ray":
        raise ConfigError(f"unknown executor {executor!r}; use local or ray")
    from ..distributed import RayExecutor

    ex = RayExecutor(address=address, num_cpus=ray_cpus)
    ex.start()
    return ex


def execute(loaded, out: Path, *, dry_run: bool = False, n_boot: int = 1000, tokens_per_s: float | None = None,
            executor=None) -> object | None:
    """Plan, print the cost, and (unless dry_run) run the sweep; returns the SweepResult."""
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..report import CompareOptions
    from ..sweep import SweepError, prepare, run_sweep
    from .progress import console

    prepared = prepare(loaded, out, download=not dry_run, log=lambda s: console.print(f"[dim]note: {escape(s)}[/dim]"))
    workload, cost = plan_and_cost(prepared, tokens_per_s)
    print_plan(prepared, workload, cost, verbose=dry_run)
    if dry_run:
        console.print("dry run: nothing built, evaluated or written")
        return None
    progress = Progress(TextColumn("{task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[tps]}"), TimeElapsedColumn(), console=console, transient=False)
    with progress:
        events = RichEvents(progress, len(prepared.plan.jobs), cost, prepared.out_dir)
        result = run_sweep(prepared, events, report_options=CompareOptions(n_boot=n_boot), executor=executor)
    print_summary(result, list(loaded.spec.dimensions))
    if result.failed:
        raise SweepError(f"{len(result.failed)} job(s) failed ({', '.join(result.failed)}); see {prepared.out_dir / 'sweep.json'}, "
                         "fix the cause and re-run the same command to resume")
    return result


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        spec: str = typer.Argument(..., help="sweep spec: a .yaml path or a built-in name (paper, demo, demo-mini)"),
        out: Path = typer.Option(..., "--out", "-o", help="sweep directory (created; re-running resumes)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its cost, then stop"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="override the spec's data_dir (a DecodingTrust checkout)"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="override the spec's cap on prompts per dimension"),
        profile: Optional[str] = typer.Option(None, "--profile", help="override the spec's profile: smoke | quick | full"),
        n_boot: int = typer.Option(1000, "--n-boot", min=1, help="bootstrap replicates per delta in the report"),
        tokens_per_s: Optional[float] = typer.Option(None, "--tokens-per-s", min=0.001, help="generation throughput for the time estimate (default: measured by finished runs, else 40 on CPU)"),
        executor: str = typer.Option("local", "--executor", help="local | ray (pip install 'comptrust[ray]'; docs/scale-out.md)"),
        address: Optional[str] = typer.Option(None, "--address", help="--executor ray: HOST:PORT of a running cluster (default: start a local one)"),
        ray_cpus: Optional[int] = typer.Option(None, "--ray-cpus", min=1, help="--executor ray without --address: CPUs of the local cluster"),
        backend: Optional[str] = typer.Option(None, "--backend", help="override the spec's backend: hf | vllm (GPU, its own environment; docs/scale-out.md) | openai"),
    ) -> None:
        """Compress, evaluate and report a whole grid from one spec; resumable."""
        from ..spec import load_spec

        loaded = apply_overrides(load_spec(spec), data_dir=data_dir, limit=limit, profile=profile, backend=backend)
        ex = None if dry_run else make_executor(executor, address, ray_cpus)
        try:
            execute(loaded, out, dry_run=dry_run, n_boot=n_boot, tokens_per_s=tokens_per_s, executor=ex)
        finally:
            if ex is not None:
                ex.shutdown()
