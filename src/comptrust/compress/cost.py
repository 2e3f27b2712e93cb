"""How long a build takes: measured builds -> a per-method cost model -> the planner's estimate.

Model (CPU). A calibrated method's compression time grows with the calibration tokens pushed
through every layer, plus a fixed per-layer part (GPTQ's Hessian solve, AWQ's scale search on
the cached activations), both in proportion to the model's parameters:

    seconds = params / REF_PARAMS x (fixed_s + per_ktoken_s x n_samples x seq_len / 1000)

Uncalibrated methods (RTN, magnitude) have the fixed part only. The reference coefficients in
`REFERENCE` come from builds of the embedded SmolLM2-135M on this project's 2-core machine
(benchmarks/compress_cost.py measures them; the figures are in docs/compression.md, "Build time").

Every real build appends one record to `timings_path()` (a JSON-lines file in the comptrust
cache; $COMPTRUST_COMPRESS_TIMINGS overrides it). `estimate_seconds` then rescales the reference
model by this machine's own measurements for the same method: the median of measured/predicted
over the records of models within 2x of the target's size (a tiny test model says nothing about
a 13b build). So after one real build, estimates follow the machine they will run on.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REF_PARAMS = 134_515_008  # SmolLM2-135M-Instruct, the embedded model


@dataclass(frozen=True)
class CostModel:
    fixed_s: float  # at REF_PARAMS, independent of the calibration size
    per_ktoken_s: float  # at REF_PARAMS, per 1000 calibration tokens (n_samples x seq_len)
    source: str  # where the coefficients come from, said to the user

    def predict(self, params: int | None, n_samples: int, seq_len: int, token_factor: float = 1.0) -> float:
        scale = (params or REF_PARAMS) / REF_PARAMS
        return scale * (self.fixed_s + self.per_ktoken_s * token_factor * n_samples * seq_len / 1000)


AWQ_DEFAULT_GRID = 20  # llm-compressor's (and the paper's) n_grid


def token_factor(method: str, awq_n_grid: int | None) -> float:
    """AWQ's scale search re-runs each layer on the calibration set once per grid point, so its
    per-token cost is taken in proportion to n_grid (an assumption, not a measurement)."""
    return (awq_n_grid or AWQ_DEFAULT_GRID) / AWQ_DEFAULT_GRID if method == "awq" else 1.0


# GPTQ and AWQ: least-squares fits of benchmarks/compress_cost.py on a quiet 2-core machine
# (2026-12-01, load < 2, 2 torch threads, compression wall time): GPTQ-W4 16 x 256 54.7 s and
# 32 x 256 80.2 s; AWQ-W4 (20-point grid) 8 x 256 109.1 s and 16 x 256 204.7 s. Extrapolated to
# 128 x 512: GPTQ 438 s (issue 18 measured 461 s quiet) and AWQ 3,073 s (issue 18 scaled 16 x 512
# to ~4,000 s). SparseGPT and Wanda: DESIGN.md's ~300 s at 64 x 512, all per-token.
# RTN and magnitude read no calibration data.
REFERENCE: dict[str, CostModel] = {
    "gptq": CostModel(fixed_s=29.1, per_ktoken_s=6.24,
                      source="GPTQ-W4 fit: 54.7 s at 16 x 256, 80.2 s at 32 x 256 (quiet 2-core CPU, 2 threads)"),
    "awq": CostModel(fixed_s=13.5, per_ktoken_s=46.69,
                     source="AWQ-W4 fit (20-point grid): 109.1 s at 8 x 256, 204.7 s at 16 x 256 (quiet 2-core CPU, 2 threads)"),
    "sparsegpt": CostModel(fixed_s=0.0, per_ktoken_s=300.0 / 32.768, source="DESIGN.md: ~300 s at 64 x 512 tokens"),
    "wanda": CostModel(fixed_s=0.0, per_ktoken_s=300.0 / 32.768, source="DESIGN.md: ~300 s at 64 x 512 tokens"),
    "rtn": CostModel(fixed_s=1.0, per_ktoken_s=0.0, source="DESIGN.md: RTN < 1 s"),
    "magnitude": CostModel(fixed_s=5.0, per_ktoken_s=0.0, source="sorts weights like RTN rounds them: a few seconds"),
}


def timings_path() -> Path:
    env = os.environ.get("COMPTRUST_COMPRESS_TIMINGS")
    if env:
        return Path(env)
    from ..models.resolve import cache_dir

    return cache_dir() / "compress-timings.jsonl"


def record_build(rec: dict[str, Any], path: Path | None = None) -> None:
    """Append one measured build (method, bits, params, n_samples, seq_len, wall_s, ...).
    Best effort: a read-only cache must not fail a finished build."""
    path = path or timings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    except OSError:
        pass


def load_records(path: Path | None = None) -> list[dict[str, Any]]:
    path = path or timings_path()
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash: skip it, keep the rest
        if isinstance(r, dict) and isinstance(r.get("wall_s"), (int, float)) and r.get("method") in REFERENCE:
            out.append(r)
    return out


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str


def estimate_seconds(method: str, params: int | None, n_samples: int, seq_len: int,
                     records: list[dict[str, Any]] | None = None, awq_n_grid: int | None = None) -> Estimate:
    """The reference model for `method`, rescaled by this machine's measured builds of similar size."""
    ref = REFERENCE[method]
    base = ref.predict(params, n_samples, seq_len, token_factor(method, awq_n_grid))
    records = load_records() if records is None else records
    target = params or REF_PARAMS
    ratios = []
    for r in records:
        p = r.get("params") or 0
        if r.get("method") != method or not (target / 2 <= p <= target * 2):
            continue
        pred = ref.predict(p, int(r.get("n_samples") or 0), int(r.get("seq_len") or 0),
                           token_factor(method, r.get("awq_n_grid")))
        if pred > 0 and r["wall_s"] > 0:
            ratios.append(r["wall_s"] / pred)
    if not ratios:
        return Estimate(base, ref.source)
    factor = statistics.median(ratios)
    return Estimate(base * factor, f"{ref.source}; x{factor:.2f} from {len(ratios)} build(s) on this machine")
