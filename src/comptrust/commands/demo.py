"""`comptrust demo [--out DIR] [--full] [--dry-run]`: the study in miniature, offline, on the embedded model.

Runs the built-in `demo` spec: dense SmolLM2-135M-Instruct against GPTQ 4-bit, AWQ 4-bit, Wanda
2:4 and magnitude 2:4, on all eight trust dimensions + MMLU of the bundled mini set (see
specs/demo.yaml for the sample-size rule and the CPU-sized calibration), or `demo-full` with
--full (more variants, calibration seeds and prompts). Then prints the score table, one
sentence on what it found and how sure it is, and where report.html is. Re-running resumes; a
finished demo re-run takes seconds.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Optional

import typer

DEFAULT_OUT = Path("comptrust-demo")


def ci_half_widths(cmp) -> list[float]:
    """Half-widths (score points) of every variant delta's 95% CI, over the compared dimensions."""
    out = []
    for r in cmp.rows:
        if r.role != "variant":
            continue
        for d in cmp.dimensions:
            c = r.cells.get(d)
            if c is not None and c.ci_status == "ci" and c.ci_low is not None and c.ci_high is not None:
                out.append((c.ci_high - c.ci_low) / 2)
    return out


def _join(labels: list[str]) -> str:
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def _dims(items) -> str:
    return ", ".join(f"{x.dimension} {x.delta:+.0f}" for x in items)


def summary_sentence(cmp) -> str:
    """What the demo found and how sure it is, in one sentence, from the report's evidence rules
    (a loss or gain is cited only when its CI excludes 0 and the cell is not refusal-driven)."""
    verdicts = cmp.recommendation.verdicts
    if not verdicts:
        return "No variant finished, so there is nothing to compare yet."
    kept = [v.label for v in verdicts if v.keeps_all]
    clear = [v.label for v in verdicts if not v.keeps_all and not v.losses and v.no_detected_loss]
    moved = [v for v in verdicts if v.losses or v.gains]
    parts = []
    if kept:
        parts.append(f"{_join(kept)} kept every dimension")
    if clear:
        parts.append(f"{_join(clear)} showed no loss outside the noise")
    for v in moved:
        # a gain outside the noise is a finding too: leaving it out would contradict the recommendation
        said = [f"{verb} {len(xs)} dimension{'s' if len(xs) != 1 else ''} ({_dims(xs)})"
                for verb, xs in (("lost trust on", v.losses), ("gained on", v.gains)) if xs]
        parts.append(f"{v.label} {' and '.join(said)}")
    rest = [v.label for v in verdicts
            if v.label not in kept and v.label not in clear and not v.losses and not v.gains]
    if rest:
        parts.append(f"{_join(rest)} had no change that the evidence can tell from noise")
    found = "; ".join(parts)
    hw = ci_half_widths(cmp)
    n_cells = sum(1 for r in cmp.rows if r.role == "variant" for d in cmp.dimensions if r.cells.get(d) is not None)
    n_refusal = sum(len(v.refusal_driven) for v in verdicts)
    if hw:
        sure = (f"the 95% CIs of the deltas are ±{statistics.median(hw):.0f} points wide at the median "
                f"(±{min(hw):.0f} to ±{max(hw):.0f}; {len(hw)} of {n_cells} cells have one"
                + (f", {n_refusal} refusal-driven and not cited" if n_refusal else "")
                + "), so smaller changes cannot be told from noise")
    else:
        sure = "no delta has a CI (too few paired samples), so nothing here is a finding"
    return f"{found[0].upper()}{found[1:]}; {sure}."


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(DEFAULT_OUT, "--out", "-o", help="sweep directory (default ./comptrust-demo; re-running resumes)"),
        full: bool = typer.Option(False, "--full", help="the larger grid (built-in spec `demo-full`: more variants, seeds and prompts; hours on a 2-core CPU)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its cost, then stop"),
        backend: Optional[str] = typer.Option(None, "--backend", help="hf (default) | vllm (GPU, its own environment; docs/scale-out.md)"),
    ) -> None:
        """Compress the embedded model four ways (GPTQ, AWQ, Wanda 2:4, magnitude 2:4), evaluate all 8 trust dimensions + MMLU, and report."""
        from rich.markup import escape

        from ..spec import load_spec
        from .progress import console
        from .sweep import apply_overrides, execute

        t0 = time.perf_counter()
        loaded = apply_overrides(load_spec("demo-full" if full else "demo"), backend=backend)
        result = execute(loaded, out, dry_run=dry_run)
        if result is None:
            return
        if result.comparison is not None:
            console.print(f"[bold]In one sentence:[/bold] {escape(summary_sentence(result.comparison))}")
        console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
