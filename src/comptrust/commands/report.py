"""`comptrust report RUN_DIR... --out DIR` and `comptrust compare RUN_A RUN_B --out DIR`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _opts(n_boot: int, seed: int, threshold: float, top_k: int):
    from ..errors import ConfigError
    from ..report import CompareOptions

    if n_boot < 1:
        raise ConfigError(f"--n-boot {n_boot}: must be at least 1 (1000 is the default)")
    return CompareOptions(n_boot=n_boot, seed=seed, threshold=threshold, top_k=top_k)


def _done(files) -> None:
    from ..sanitize import clean

    # paths and labels are user input: control characters shown as visible escapes
    print(clean(f"wrote {files.html}, {files.markdown}, {files.results}"))
    for p in files.comparison.recommendation.paragraphs:
        print(clean(p))


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        run_dirs: list[Path] = typer.Argument(..., help="run directories (each holds results.json)"),
        out: Path = typer.Option(..., "--out", "-o", help="output directory for report.html, report.md, results.json"),
        baseline: Optional[Path] = typer.Option(None, "--baseline", help="the run dir to compare every other run against (default: the dense run of each variant's base model)"),
        noise_floor: list[Path] = typer.Option([], "--noise-floor", help="a re-run of the dense model (another sampling seed): shown as the noise floor"),
        n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap replicates per delta"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
        threshold: float = typer.Option(5.0, "--threshold", help="points of change the recommendation calls a loss / gain"),
        top_k: int = typer.Option(5, "--top-k", help="worst-regressing samples shown per dimension"),
    ) -> None:
        """Compare a dense model and its compressed variants: deltas with bootstrap CIs, seed spread, recommendation."""
        from ..report import generate_report

        _done(generate_report(run_dirs, out, baseline=baseline, noise_floor=noise_floor,
                              options=_opts(n_boot, seed, threshold, top_k)))

    @app.command("compare")
    def compare(
        run_a: Path = typer.Argument(..., help="the baseline run dir"),
        run_b: Path = typer.Argument(..., help="the run dir compared against it"),
        out: Path = typer.Option(..., "--out", "-o", help="output directory"),
        n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap replicates per delta"),
        seed: int = typer.Option(0, "--seed", help="bootstrap seed"),
        threshold: float = typer.Option(5.0, "--threshold", help="points of change called a loss / gain"),
        top_k: int = typer.Option(5, "--top-k", help="worst-regressing samples shown per dimension"),
    ) -> None:
        """Compare two arbitrary runs (A is the baseline) with the same statistics."""
        from ..report import generate_report

        _done(generate_report([run_a, run_b], out, kind="compare", baseline=run_a,
                              options=_opts(n_boot, seed, threshold, top_k)))
