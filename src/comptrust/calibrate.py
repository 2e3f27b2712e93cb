"""This machine's generation throughput for the plan's time estimate, measured once and cached.

The first sweep plan on a machine (per model fingerprint, device, torch version and thread count)
runs a short calibration: the HF backend's engine answers a fixed slice of the 8 trust dimensions
(the bundled mini set, `quick` profile, one prompt per dimension: short and long few-shot
prompts, greedy and sampled), and the figure kept is that slice's token budget (sum of
max_new_tokens over its samples, the quantity plan.estimate divides) per second of generation.
The result is cached in the comptrust cache dir (throughput-calibration.json), so later plans
read it instantly; `--tokens-per-s` or a finished run in the sweep take precedence over it.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

CALIBRATION_DIMS = ["advglue", "adv_demonstration", "fairness", "machine_ethics", "ood", "privacy", "stereotype", "toxicity"]
# bump when the calibration workload or the engine changes what it measures
# (2: prefix store, cascade attention; 3: lean forward, additive masks; 4: 128 rows, split decode
# attention)
VERSION = 4


def unit_seed(u) -> int:
    """The sample seed the runner hands the backend for a unit (runner.generate_missing)."""
    s = getattr(u, "seed", None)
    return int(u.key[:15], 16) if s is None else s


def calibration_path() -> Path:
    from .models.resolve import cache_dir

    env = os.environ.get("COMPTRUST_THROUGHPUT_CALIBRATION")
    return Path(env) if env else cache_dir() / "throughput-calibration.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(fingerprint: str, device: str) -> str:
    import torch

    return json.dumps({"v": VERSION, "model": fingerprint, "device": device, "cpu": _cpu_name(),
                       "threads": torch.get_num_threads(), "torch": torch.__version__}, sort_keys=True)


def _load(path: Path) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def measure(resolved, device: str | None = None) -> dict[str, Any]:
    """Run the calibration slice with the HF backend; returns the record to cache."""
    from .backends.base import GenItem
    from .backends.hf import HFBackend
    from .runner import EvalConfig, build_plan

    cfg = EvalConfig(model=resolved.ref, perspectives=list(CALIBRATION_DIMS), out_dir=Path("/nonexistent"),
                     profile="quick", limit=1, device=device, allow_partial=True)
    plan = build_plan(cfg, resolved=resolved)
    units = [u for us in plan.units.values() for u in us if not u.request.choices]
    items = [GenItem(u.key, u.prompt, u.request.params, u.sample_idx, unit_seed(u), u.request.messages) for u in units]
    backend = HFBackend(resolved, device=device)
    t0 = time.perf_counter()
    generated = sum(o.n_tokens for batch in backend.generate(items) for o in batch)
    wall = time.perf_counter() - t0
    budget = sum(it.params.max_new_tokens for it in items)
    return {"tokens_per_s": round(budget / max(wall, 1e-9), 2), "seconds": round(wall, 1), "samples": len(items),
            "token_budget": budget, "generated_tokens": generated, "engine": backend.engine,
            "measured_at": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}


def calibrated_throughput(resolved, device: str | None = None, *, log: Callable[[str], None] = lambda s: None,
                          run: Callable[..., dict[str, Any]] = measure):
    """The cached figure for (model, machine), measuring it first when there is none; None when
    the model cannot run here (the caller falls back to its default)."""
    from .models.resolve import default_device
    from .plan import Throughput

    if os.environ.get("COMPTRUST_NO_CALIBRATION"):
        return None
    device = device or default_device()
    key = machine_key(resolved.fingerprint, device)
    path = calibration_path()
    rec = _load(path).get(key)
    if not rec:
        log(f"measuring this machine's generation throughput once ({len(CALIBRATION_DIMS)} short prompts on "
            f"{resolved.display_name}; cached in {path})")
        try:
            rec = run(resolved, device)
        except Exception as e:  # noqa: BLE001 - an estimate must never stop a plan; say why and fall back
            log(f"throughput calibration failed ({type(e).__name__}: {str(e)[:120]}); using the default figure")
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _load(path)
        data[key] = rec
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    return Throughput(float(rec["tokens_per_s"]),
                      f"calibrated on this machine {rec['measured_at']} UTC: {rec['samples']} samples of the 8 trust "
                      f"dimensions, {rec['token_budget']} budget tokens in {rec['seconds']} s ({path.name})")
