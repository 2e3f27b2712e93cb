"""Comparison reports: load run dirs -> compare (stats) -> results.json + report.md + report.html."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..faults import checkpoint
from ..atomic import temp_path
from ..results_schema import ComparisonResults
from .compare import Aggregator, CompareOptions, build_comparison, registry_aggregator
from .html import render_html
from .load import LoadedRun, is_run_dir, load_run, load_runs
from .markdown import render_markdown

__all__ = ["CompareOptions", "ReportFiles", "generate_report", "build_comparison", "load_run", "load_runs",
           "render_html", "render_markdown", "write_report"]


@dataclass
class ReportFiles:
    results: Path
    markdown: Path
    html: Path
    comparison: ComparisonResults


def write_report(cmp: ComparisonResults, out_dir: str | Path) -> ReportFiles:
    """Render everything in memory first, then write each file via a temp file + rename, so a
    failure never leaves a half-written report."""
    out = Path(out_dir).expanduser()
    if is_run_dir(out):
        raise ConfigError(f"--out {out} is a run directory (it holds a run's results.json); choose another output dir")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory; choose another output dir")
    payload = {
        "results.json": cmp.model_dump_json(indent=2) + "\n",
        "report.md": render_markdown(cmp),
        "report.html": render_html(cmp),
    }
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out, payload)
    # Every temp file is complete before the first rename, and results.json (what a sweep and
    # `comptrust report` read back) is renamed last: a kill mid-write leaves only dot-temp files
    # or a stale-but-consistent old report, never a new report.html beside no results.json.
    tmps = {}
    for name, text in payload.items():
        tmp = temp_path(out / name)
        tmp.write_text(text, encoding="utf-8")
        tmps[name] = tmp
        checkpoint("report.write")
    for name in ("report.md", "report.html", "results.json"):
        os.replace(tmps[name], out / name)
        checkpoint("report.rename")
    return ReportFiles(out / "results.json", out / "report.md", out / "report.html", cmp)


def _remove_stale_temps(out: Path, names) -> None:
    """Temp files a killed report write left behind (their writer process is gone)."""
    for name in names:
        for tmp in out.glob(f".{name}.tmp-*"):
            try:
                os.kill(int(tmp.name.rsplit("-", 1)[1]), 0)
            except ProcessLookupError:
                tmp.unlink(missing_ok=True)
            except (ValueError, PermissionError):
                continue


def generate_report(
    run_dirs: list[str | Path],
    out_dir: str | Path,
    *,
    kind: str = "report",
    baseline: str | Path | None = None,
    noise_floor: list[str | Path] | None = None,
    options: CompareOptions | None = None,
    aggregator: Aggregator = registry_aggregator,
) -> ReportFiles:
    if not run_dirs:
        raise ConfigError("no run directories given; pass one or more RUN_DIRs written by `comptrust eval`")
    run_dirs = list(run_dirs)
    resolved = [Path(d).expanduser().resolve() for d in run_dirs]
    extra = []
    if baseline is not None and Path(baseline).expanduser().resolve() not in resolved:
        extra.append(baseline)
    all_runs: list[LoadedRun] = load_runs(run_dirs + extra + list(noise_floor or []))
    runs = all_runs[: len(run_dirs)]
    base = None
    if baseline is not None:
        bpath = Path(baseline).expanduser().resolve()
        base = next(r for r in all_runs if r.dir.resolve() == bpath)
    nf = all_runs[len(run_dirs) + len(extra):]
    cmp = build_comparison(runs, kind=kind, baseline=base, noise_floor=nf, options=options, aggregator=aggregator)
    return write_report(cmp, out_dir)
