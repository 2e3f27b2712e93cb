"""`comptrust sweep SPEC --out DIR [--dry-run]`: the whole study from one spec (see docs/sweep.md).

Prints the plan and its cost first (jobs, prompts, token budget, estimated time and where the
throughput figure comes from), asks nothing, then builds, evaluates and reports, resumably.
"""

from __future__ import annotations

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
        from ..backends.base import check_backend_name
        from ..spec import backend_fit_errors

        check_backend_name(backend, "--backend")
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
            # the group size actually used (<= requested, dividing the layer widths) is known only at build time
            what = (f"{s.method} W{s.bits} g{s.group_size} requested" if s.is_quant else f"{s.method} {s.sparsity:g} {s.structure}")
            if s.needs_calibration:
                what += f", calib {s.calib} {s.n_calib}x{s.seq_len} seed {s.seed}"
            if s.awq_n_grid:
                what += f", {s.awq_n_grid}-point grid"
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


def plan_and_cost(prepared, tokens_per_s: float | None = None):
    from ..plan import Throughput, default_throughput, estimate, measure_workload, measured_throughput, params_from_name, params_in_checkpoint

    workload = measure_workload(prepared.loaded)
    runs = [prepared.out_dir / j.out_dir for j in prepared.plan.evals]
    if tokens_per_s is not None:
        throughput = Throughput(tokens_per_s, "given with --tokens-per-s")
    else:
        throughput = measured_throughput(runs) or _calibrated(prepared) or default_throughput()
    params = {}
    for m in prepared.plan.models:
        r = prepared.resolved.get(m.name)
        params[m.name] = (params_in_checkpoint(r.path) if r else None) or params_from_name(m.ref)
    done = {k for k, v in prepared.status.items() if v == "done"}
    return workload, estimate(prepared.plan, workload, throughput, params, done, gpu=_on_gpu(prepared.loaded.spec.device))


def _calibrated(prepared):
    """This machine's measured throughput for the sweep's first model (calibrate.py; cached after
    the first plan), for the hf backend only: it says nothing about vLLM or an endpoint."""
    spec = prepared.loaded.spec
    if getattr(spec, "backend", "hf") != "hf":
        return None
    resolved = next((r for r in prepared.resolved.values() if r is not None), None)
    if resolved is None:
        return None
    from rich.markup import escape

    from ..calibrate import calibrated_throughput
    from .progress import console

    return calibrated_throughput(resolved, spec.device, log=lambda s: console.print(f"[dim]note: {escape(s)}[/dim]"))


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

    from ..report import CompareOptions
    from ..sweep import SweepError, prepare, run_sweep
    from .progress import SweepDisplay, console, sweep_progress
    from .thirdparty import third_party_to_log

    # Third-party output (llm-compressor's loguru lines, tqdm bars, transformers/torch warnings)
    # goes to DIR/comptrust.log; the console shows comptrust's plan, one live display and its
    # own result lines, then one line per warning that matters.
    with third_party_to_log() as tp:
        prepared = prepare(loaded, out, download=not dry_run, log=lambda s: console.print(f"[dim]note: {escape(s)}[/dim]"))
        workload, cost = plan_and_cost(prepared, tokens_per_s)
        print_plan(prepared, workload, cost, verbose=dry_run)
        if dry_run:
            console.print("dry run: nothing built, evaluated or written")
        else:
            log_path = tp.move_to(prepared.out_dir)
            console.print(f"[dim]third-party logs (llm-compressor, transformers, progress bars): {escape(str(log_path))}[/dim]")
            with sweep_progress() as progress:
                events = SweepDisplay(progress, len(prepared.plan.jobs), cost, prepared.out_dir)
                result = run_sweep(prepared, events, report_options=CompareOptions(n_boot=n_boot), executor=executor)
    for line in tp.summary_lines():
        console.print(f"[yellow]{escape(line)}[/yellow]")
    if dry_run:
        return None
    print_summary(result, list(loaded.spec.dimensions))
    if result.failed:
        raise SweepError(f"{len(result.failed)} job(s) failed ({', '.join(result.failed)}); see {prepared.out_dir / 'sweep.json'}, "
                         "fix the cause and re-run the same command to resume")
    return result


def register(app: typer.Typer) -> None:
    @app.command("sweep")
    def sweep(
        spec: str = typer.Argument(..., help="sweep spec: a .yaml path or a built-in name (paper, demo, demo-full)"),
        out: Path = typer.Option(..., "--out", "-o", help="sweep directory (created; re-running resumes)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its cost, then stop"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="override the spec's data_dir (a DecodingTrust checkout)"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="override the spec's cap on prompts per dimension"),
        profile: Optional[str] = typer.Option(None, "--profile", help="override the spec's profile: smoke | quick | full"),
        n_boot: int = typer.Option(1000, "--n-boot", min=1, help="bootstrap replicates per delta in the report"),
        tokens_per_s: Optional[float] = typer.Option(None, "--tokens-per-s", min=0.001, help="generation throughput for the time estimate (default: measured by finished runs in this sweep, else by a short calibration on this machine, cached; else 40 on CPU)"),
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
