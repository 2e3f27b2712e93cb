"""Generation engine vs the machine's compute floor, on a fixed slice of the 8 trust dimensions.

    python benchmarks/eval_throughput.py --profile quick --limit 8 --data-dir ../shared/decodingtrust

Runs the same requests (every trust dimension's plan, `--limit` prompts each) three ways in one
process, on the same loaded model:
  (a) one prompt at a time, no reuse (DecodingTrust's HF path: one request -> one generate call);
  (b) batched transformers generate without reuse (the HF backend as landed before the engine);
  (c) the engine (prefill once per prompt, shared-prefix KV reuse, preallocated KV buffers).
It measures this machine's fp32 matmul peak (torch threads as given, default 2; the better of
MKL's and oneDNN's matmul) before each way and uses the highest figure, so a loaded machine
lowers the floor's speed and raises nobody's fraction. The floor of a way = FLOPs of the work it answered / peak, with
  linear   2 x (every nn.Linear weight of the decoder layers) per prompt and generated token,
  attention 4 x heads x head_dim x (keys attended) per token per layer (causal, QK^T and AV),
  lm-head  2 x vocab x hidden per generated token (one logits row per token produced; prompt
           positions need no logits),
every sample's prompt counted in full (reuse is credited nothing). fraction = floor / wall.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

TRUST = ["advglue", "adv_demonstration", "fairness", "machine_ethics", "ood", "privacy", "stereotype", "toxicity"]


def matmul_peak(clock, seconds: float = 3.0, n: int = 1536) -> float:
    """fp32 GFLOP/s of an n x n x n matmul, best of repeated runs for `seconds` of wall time,
    timed with `clock` (wall: perf_counter; cpu: this process's CPU time), and the best of two
    libraries: torch.mm (MKL on x86 builds) and, where this torch runs it, oneDNN's linear on a
    prepacked weight (what the engine's CPU linears run; lean_forward.engine_weights). On the
    AMD EPYC (AVX2) machine of 2026-12-02 oneDNN read ~135-155 GFLOP/s against MKL's ~114-116,
    so a peak of MKL alone would flatter every fraction."""
    import torch

    from comptrust.backends.lean_forward import pack_weight, packed_linear, packed_linear_works

    a, b = torch.randn(n, n), torch.randn(n, n)
    fns = [lambda: torch.mm(a, b)]
    if packed_linear_works():
        w = pack_weight(b)
        fns.append(lambda: packed_linear(a, w, None))
    best = 0.0
    for fn in fns:
        fn()
        t_end = time.perf_counter() + seconds / len(fns)
        while time.perf_counter() < t_end:
            t0 = clock()
            fn()
            dt = clock() - t0
            if dt > 0:
                best = max(best, 2 * n ** 3 / dt / 1e9)
    return best


def model_flops(model):
    """(linear FLOPs per token, attention FLOPs per token per attended key, lm-head FLOPs per logits row)."""
    import torch

    cfg = model.config
    lin = sum(m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear))
    heads = cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    attn_per_key = 4 * heads * hd * cfg.num_hidden_layers
    head = model.lm_head.weight.numel()
    return 2 * lin, attn_per_key, 2 * head


def work_flops(fl, prompt_lens: list[int], gen_lens: list[int]) -> float:
    lin, attn, head = fl
    total = 0.0
    for p, g in zip(prompt_lens, gen_lens):
        n = p + g
        total += lin * n + attn * n * (n + 1) / 2 + head * g
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--limit", type=int, default=8, help="prompts per dimension")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--dims", default=",".join(TRUST))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16, help="(b)'s batch size, as landed")
    ap.add_argument("--engine-rows", type=int, default=None, help="(c)'s decode rows (default: eval's --batch-size default)")
    ap.add_argument("--skip", default="", help="ways to skip, e.g. 'a' (then speedup is not printed)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time each way (and the peak) by wall clock, or by this process's CPU time: on a machine "
                         "shared with other jobs, wall time counts the time the cores ran them; with --threads 1 "
                         "CPU time is the time a core ran us")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    from comptrust.backends.base import GenItem
    from comptrust.backends.hf import HFBackend
    from comptrust.calibrate import unit_seed
    from comptrust.runner import EvalConfig, build_plan

    cfg = EvalConfig(model=args.model, perspectives=args.dims.split(","), out_dir=Path("/nonexistent"),
                     data_dir=args.data_dir, profile=args.profile, limit=args.limit)
    plan = build_plan(cfg)
    units = [u for us in plan.units.values() for u in us if not u.request.choices]
    items = [GenItem(u.key, u.prompt, u.request.params, u.sample_idx, unit_seed(u), u.request.messages) for u in units]
    backend = HFBackend(plan.resolved, batch_size=args.batch_size)
    default_rows = EvalConfig.model_fields["batch_size"].default
    fl = model_flops(backend.model)
    plen = {it.key: backend.count_tokens(it.prompt) for it in items}
    per_dim = {name: len([u for u in us if not u.request.choices]) for name, us in plan.units.items()}
    print(f"model {plan.resolved.display_name}, {backend.device} {backend.dtype}, torch threads {args.threads}; "
          f"profile {args.profile}, --limit {args.limit}: {len(items)} samples "
          f"({', '.join(f'{k} {v}' for k, v in per_dim.items())}); the matmul peak is measured in this run, "
          f"before each way; times by the {args.clock} clock", flush=True)

    peaks: list[float] = []
    results = {}
    ways = [("a", "one prompt at a time, no reuse", "generate", 1), ("b", f"batched generate bs={args.batch_size}, no reuse", "generate", args.batch_size),
            ("c", "engine: prefill once + prefix reuse", "reuse", args.engine_rows or default_rows)]
    for tag, label, engine, bs in ways:
        if tag in args.skip:
            continue
        peaks.append(matmul_peak(clock))
        backend.engine, backend.batch_size = engine, bs
        t0, w0 = clock(), time.perf_counter()
        outs = {o.key: o for batch in backend.generate(items) for o in batch}
        wall = clock() - t0
        results[tag] = (label, wall, outs)
        print(f"({tag}) done: {wall:.1f} s {args.clock}, {time.perf_counter() - w0:.1f} s wall", flush=True)
    peak = max(peaks)
    print(f"fp32 matmul peak ({args.threads} thread{'s' if args.threads > 1 else ''}, {args.clock} clock): {peak:.1f} GFLOP/s "
          f"(best of {', '.join(f'{p:.1f}' for p in peaks)}, one measured before each way, each the better of MKL and oneDNN)")
    frac = {}
    for tag, (label, wall, outs) in results.items():
        pl = [plen[k] for k in outs]
        gl = [outs[k].n_tokens for k in outs]
        floor = work_flops(fl, pl, gl) / (peak * 1e9)
        frac[tag] = floor / wall
        print(f"({tag}) {label:<40} {args.clock} {wall:8.1f} s  prompt {sum(pl):7d} + generated {sum(gl):6d} tokens  "
              f"{(sum(pl) + sum(gl)) / wall:8.1f} tokens/s  floor {floor:6.1f} s = {frac[tag]:.3f} of floor")
    if "c" in results and getattr(backend, "engine_counts", None):
        ec = backend.engine_counts
        print(f"(c) ran {ec['prefill_tokens_run']} prompt tokens through the model (of {sum(plen.values())} counted by the floor) "
              f"and {ec['decode_rows_run']} decode rows (finished rows still in a batch included)")
    greedy = [it.key for it in items if it.params.temperature == 0]
    ref = "a" if "a" in results else "b" if "b" in results else None
    same = sum(results[ref][2][k].text == results["c"][2][k].text for k in greedy) if "c" in results and ref else 0
    if "b" in results and ref == "a":
        same_b = sum(results["a"][2][k].text == results["b"][2][k].text for k in greedy)
        print(f"(b) greedy texts identical to (a): {same_b}/{len(greedy)}")
    speed = f"{results['a'][1] / results['c'][1]:.2f}x" if "a" in results and "c" in results else "n/a"
    print(f"floor_fraction={frac.get('c', float('nan')):.3f} speedup_vs_sequential={speed} "
          + (f"identical_greedy={same}/{len(greedy)}" if ref else "identical_greedy=n/a") + ("" if ref in ("a", None) else " (vs b: a skipped)")
          + ("" if args.clock == "wall" else f" (clock={args.clock}, threads={args.threads})"))


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
