"""`comptrust demo [--out DIR] [--full]`: the study in miniature, offline, on the embedded model.

Runs the built-in `demo-mini` spec (dense SmolLM2-135M-Instruct, RTN 4-bit and 50% magnitude
pruning, three trust dimensions of the bundled mini set; about 10 minutes on a 2-core CPU), or
`demo` with --full (the whole demo grid; about 40 minutes), then prints the score table and
where report.html is. Re-running resumes; a finished demo re-run takes seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

DEFAULT_OUT = Path("comptrust-demo")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        out: Path = typer.Option(DEFAULT_OUT, "--out", "-o", help="sweep directory (default ./comptrust-demo; re-running resumes)"),
        full: bool = typer.Option(False, "--full", help="the whole demo grid (built-in spec `demo`, ~40 min on a 2-core CPU)"),
        dry_run: bool = typer.Option(False, "--dry-run", help="print the plan and its cost, then stop"),
    ) -> None:
        """Compress the embedded model two ways, evaluate, and report: the whole study in minutes."""
        from ..spec import load_spec
        from .progress import console
        from .sweep import execute

        t0 = time.perf_counter()
        result = execute(load_spec("demo" if full else "demo-mini"), out, dry_run=dry_run)
        if result is not None:
            console.print(f"demo finished in {time.perf_counter() - t0:.0f} s")
