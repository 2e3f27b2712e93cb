"""Where llm-compressor spends its time on the embedded model, per method (CPU).

For each method: one oneshot run on the embedded SmolLM2-135M-Instruct with a small calibration
set, its wall time, and a cProfile breakdown into the parts that matter: calibration forwards,
Hessian accumulation (GPTQ/SparseGPT), the per-layer compression step (GPTQ/SparseGPT column
loops, Wanda's masks), AWQ's scale grid search, and pipeline overhead (tracing, caching).

    nice -n 10 .venv/bin/python benchmarks/compress_profile.py --methods gptq,awq,sparsegpt,wanda \
        --n-calib 16 --seq-len 128 --pipeline independent

Figures are for the machine it ran on; on a shared CPU they are noisy. Tests never assert on them.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time

BUCKETS = {  # substring of "file:function" in the profile -> bucket (first match wins, most specific first)
    "grid search (AWQ)": ("_compute_best_scale", "_run_samples"),
    "compress step (GPTQ)": ("quantize_weight", "gptq_quantize"),
    "compress step (SparseGPT)": ("sparsify_weight",),
    "compress step (Wanda)": ("make_wanda", "wanda_sparsity"),
    "Hessian accumulation": ("accumulate_hessian", "add_batch", "_accumulate"),
    "tracing (sequential)": ("trace_subgraphs", "torch/fx", "ast_helpers"),
}


def bucketize(prof: cProfile.Profile) -> dict[str, float]:
    st = pstats.Stats(prof)
    out: dict[str, float] = {}
    for (file, _line, fn), (_cc, _nc, _tt, ct, _callers) in st.stats.items():  # type: ignore[attr-defined]
        key = f"{file}:{fn}"
        for bucket, needles in BUCKETS.items():
            if any(n in key for n in needles):
                out[bucket] = max(out.get(bucket, 0.0), ct)  # the outermost matching frame's cumulative time
                break
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="gptq,awq,sparsegpt,wanda")
    ap.add_argument("--n-calib", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--pipeline", default=None, help="llm-compressor pipeline (default: its own choice)")
    ap.add_argument("--awq-n-grid", type=int, default=None)
    ap.add_argument("--awq-duo-scaling", default=None, choices=("true", "false", "both"))
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads during oneshot (default: torch's)")
    ap.add_argument("--top", type=int, default=12, help="also print the top N functions by cumulative time")
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.compress.calibration import build_calibration
    from comptrust.compress.groupsize import effective_group_size, quantized_input_widths
    from comptrust.compress.methods import CompressSpec, make_modifiers
    from comptrust.compress.workarounds import awq_pin_memory_guard
    from comptrust.models.resolve import resolve_model

    if args.threads:
        torch.set_num_threads(args.threads)
    base = resolve_model("embedded:smollm2-135m-instruct")
    tok = AutoTokenizer.from_pretrained(base.path)
    print(f"torch threads {torch.get_num_threads()}; calibration {args.n_calib} x {args.seq_len}; pipeline {args.pipeline or 'default'}")
    for method in args.methods.split(","):
        kw = {"bits": 4} if method in ("gptq", "awq", "rtn") else {"structure": "2:4"}
        spec = CompressSpec.make(method, n_calib=args.n_calib, seq_len=args.seq_len, **kw)
        calib = build_calibration(spec.calib, tok, n=spec.n_calib, seq_len=spec.seq_len, seed=0)
        model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32)
        model.eval()
        ignore = ["lm_head"]
        g = effective_group_size(128, quantized_input_widths(model, ignore).values()) if spec.is_quant else 0
        mods = make_modifiers(spec, group_size=g, ignore=ignore)
        if method == "awq":
            if args.awq_n_grid is not None:
                mods[0].n_grid = args.awq_n_grid
            if args.awq_duo_scaling is not None:
                mods[0].duo_scaling = {"true": True, "false": False}.get(args.awq_duo_scaling, "both")
        from llmcompressor import oneshot

        extra = {"pipeline": args.pipeline} if args.pipeline else {}
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        with awq_pin_memory_guard() if method == "awq" else _null():
            prof.enable()
            oneshot(model=model, tokenizer=tok, recipe=mods, dataset=calib.dataset(),
                    num_calibration_samples=calib.n_samples, max_seq_length=calib.seq_len,
                    shuffle_calibration_samples=False, **extra)
            prof.disable()
        wall = time.perf_counter() - t0
        parts = bucketize(prof)
        print(f"\n{method}: {wall:.1f} s wall (profiled)")
        for k, v in sorted(parts.items(), key=lambda kv: -kv[1]):
            print(f"  {k:28s} {v:7.1f} s")
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(args.top)
        print("\n".join(line for line in s.getvalue().splitlines() if line.strip())[-3000:])
        del model


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *a):
        return False


if __name__ == "__main__":
    main()
