"""Build time of calibrated methods at a few calibration sizes -> the planner's cost coefficients.

Builds each requested (method, n_samples, seq_len) on the embedded model (variants are thrown
away), prints the compression wall time of each build and, per method, the least-squares fit of
`seconds = fixed_s + per_ktoken_s x n_samples x seq_len / 1000` used in comptrust.compress.cost.
Every build is also recorded in the comptrust cache (compress-timings.jsonl), which the planner
reads to rescale its estimates to this machine.

    nice -n 10 .venv/bin/python benchmarks/compress_cost.py --runs gptq:16x256,gptq:32x256,awq:8x256,awq:16x256

Figures hold for the machine (and its load) at the time; the header prints the load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """(fixed, slope) of seconds = fixed + slope x ktokens; one point -> all slope."""
    if len({x for x, _ in points}) < 2:
        x, y = points[0]
        return 0.0, y / x
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--runs", default="gptq:16x256,gptq:32x256,awq:8x256,awq:16x256",
                    help="comma-separated method:NxSEQ (bits 4, bundled calibration, seed 0)")
    args = ap.parse_args()

    import torch

    from comptrust.compress.build import build_variant
    from comptrust.compress.methods import CompressSpec

    runs = []
    for item in args.runs.split(","):
        method, size = item.split(":")
        n, seq = (int(x) for x in size.split("x"))
        runs.append((method, n, seq))
    print(f"# compress cost — {args.model}; {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}; "
          f"load average at start {os.getloadavg()[0]:.2f}; started {time.strftime('%Y-%m-%d %H:%M:%S')}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="compress-cost-"))
    points: dict[str, list[tuple[float, float]]] = {}
    try:
        for method, n, seq in runs:
            spec = CompressSpec.make(method, bits=4, n_calib=n, seq_len=seq, seed=0)
            load0 = os.getloadavg()[0]
            man = build_variant(spec, args.model, work / f"{method}-{n}x{seq}")
            points.setdefault(method, []).append((n * seq / 1000, man.wall_time_s))
            print(f"{method}-w4 {n}x{seq}: {man.wall_time_s:.1f} s compress wall time "
                  f"(load average {load0:.2f} -> {os.getloadavg()[0]:.2f})", flush=True)
            shutil.rmtree(work / f"{method}-{n}x{seq}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for method, pts in points.items():
        fixed, slope = fit(pts)
        print(f"fit {method}: fixed_s={fixed:.1f} per_ktoken_s={slope:.2f} "
              f"-> 128x512 predicted {fixed + slope * 65.536:.0f} s, 32x512 {fixed + slope * 16.384:.0f} s", flush=True)
    print(f"# finished {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
