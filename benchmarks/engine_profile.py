"""Where the engine's time goes: torch profiler over one prefill-heavy slice (fairness: ~1,800-token
few-shot prompts, short answers) and one decode-heavy slice (stereotype: 3 samples per prompt,
long answers), on the embedded model.

    python benchmarks/engine_profile.py [--data-dir ../shared/decodingtrust] [--limit 4] [--threads 1]

Prints per slice: wall seconds, the share of time in the model's matmuls (aten::mm/addmm/bmm/linear),
attention (scaled_dot_product_attention and its kernels), and everything else, then the top ops
by self CPU time.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

MATMUL = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear")
ATTN = ("scaled_dot_product", "_flash_attention", "_scaled_dot_product")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--slices", default="fairness,stereotype")
    args = ap.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    from comptrust.backends.base import GenItem
    from comptrust.backends.hf import HFBackend
    from comptrust.runner import EvalConfig, build_plan

    backend = None
    for dim in args.slices.split(","):
        cfg = EvalConfig(model=args.model, perspectives=[dim], out_dir=Path("/nonexistent"), data_dir=args.data_dir,
                         profile="quick", limit=args.limit)
        plan = build_plan(cfg)
        units = [u for us in plan.units.values() for u in us if not u.request.choices]
        items = [GenItem(u.key, u.prompt, u.request.params, u.sample_idx, getattr(u, "seed", 0), u.request.messages) for u in units]
        backend = backend or HFBackend(plan.resolved)  # eval's default rows
        t0 = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            outs = [o for b in backend.generate(items) for o in b]
        wall = time.perf_counter() - t0
        ev = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in ev)
        mm = sum(e.self_cpu_time_total for e in ev if e.key in MATMUL)
        at = sum(e.self_cpu_time_total for e in ev if any(a in e.key for a in ATTN))
        ptoks = sum(backend.count_tokens(it.prompt) for it in items)
        print(f"\n== {dim}: {len(items)} samples, {ptoks} prompt tokens (every sample counted), "
              f"{sum(o.n_tokens for o in outs)} generated; wall {wall:.1f} s (profiler on)")
        print(f"   self CPU: matmul {100 * mm / total:.0f}%, attention {100 * at / total:.0f}%, other {100 * (total - mm - at) / total:.0f}%"
              f"; engine ran {backend.engine_counts}")
        print(ev.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
