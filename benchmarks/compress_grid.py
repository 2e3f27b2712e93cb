"""Compression grid on the embedded model: build each variant, then measure it.

Per variant: wall time to compress, size on disk, bits per weight (Linear layers, incl. scales and
zero points), measured sparsity and max distinct levels per group, perplexity on the project's
held-out prose (sliding window), and load memory / generation speed in a fresh subprocess.

    nice -n 10 .venv/bin/python benchmarks/compress_grid.py --n-calib 32 --seq-len 256 \
        --save benchmarks/results/compress_grid.txt

The report starts with the exact command that produced it; docs/compression.md pastes its table
beside that command. Perplexity defaults (window 1024, stride 512, the whole held-out text) are
those of `comptrust benign --perplexity bundled`, so the dense row reproduces with that command.

Figures are for the machine they ran on (see the header it prints); wall times on a shared CPU
are noisy. Tests never assert on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

GRID = {  # name -> CompressSpec.make keyword arguments
    "rtn-w4": dict(method="rtn", bits=4),
    "gptq-w4": dict(method="gptq", bits=4),
    "gptq-w3": dict(method="gptq", bits=3),
    "gptq-w8": dict(method="gptq", bits=8),
    "awq-w4": dict(method="awq", bits=4),
    "sparsegpt-50": dict(method="sparsegpt", sparsity=0.5),
    "wanda-2:4": dict(method="wanda", structure="2:4"),
    "magnitude-50": dict(method="magnitude", sparsity=0.5),
}


def heldout_text() -> tuple[str, str]:
    try:
        from comptrust.benign.perplexity import load_text

        return load_text("bundled")
    except ImportError:  # the benign package is optional for this script
        p = Path(__file__).parent / "data" / "heldout.txt"
        return p.read_text(encoding="utf-8"), f"file:{p}"


def ppl(model_dir: Path, text: str, max_length: int, stride: int) -> tuple[float, int]:
    import torch
    from transformers import AutoTokenizer

    from comptrust.compress.measure import load_dense

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_dense(model_dir)
    try:
        from comptrust.benign.perplexity import perplexity

        r = perplexity(model, tok, text, max_length=max_length, stride=stride)
        return r.ppl, r.n_tokens
    except ImportError:
        import math

        ids = tok(text, return_tensors="pt")["input_ids"]
        nll, n = 0.0, 0
        with torch.no_grad():
            for b in range(0, ids.shape[1] - 1, max_length):
                w = ids[:, b : b + max_length]
                if w.shape[1] < 2:
                    break
                out = model(input_ids=w, labels=w)
                nll += float(out.loss) * (w.shape[1] - 1)
                n += w.shape[1] - 1
        return math.exp(nll / n), n


def table_row(r: dict) -> str:
    e = r["eff"]
    return "| {variant} | {wall} | {size:.1f} | {bpw:.3f} | {bpp:.3f} | {group} | {sp} | {lv} | {nm} | {ld} | {ppl:.2f} | {rss} | {tps} |".format(
        variant=r["variant"], wall="-" if r["wall_s"] is None else f"{r['wall_s']:.0f}", size=r["size_mb"], bpw=r["bpw"],
        bpp=r["bpp"], ld=r["loadable"], group=r["group"], sp="-" if r["sparsity"] is None else f"{r['sparsity']:.4f}",
        lv=r["levels"] or "-", nm={None: "-", True: "yes", False: "NO"}[r.get("nm")], ppl=r["ppl"],
        rss=f"{e['ready_rss_delta_bytes'] / 1e6:.0f}" if e else "-", tps=f"{e['tokens_per_s']:.1f}" if e else "-")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(GRID))
    ap.add_argument("--n-calib", type=int, default=32)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--calib", default="bundled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ppl-max-length", type=int, default=1024, help="as `comptrust benign --max-length`")
    ap.add_argument("--ppl-stride", type=int, default=512, help="as `comptrust benign --stride`")
    ap.add_argument("--ppl-chars", type=int, default=0, help="score only the first N characters of the held-out text (0 = all)")
    ap.add_argument("--gen-tokens", type=int, default=16, help="new tokens per prompt for tokens/s (0 = skip efficiency)")
    ap.add_argument("--keep", type=Path, default=None, help="keep the variants under this directory")
    ap.add_argument("--calib-label", default=None, help="how to describe --calib in the report (e.g. for a snapshot file)")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense baseline row (when resuming a grid)")
    ap.add_argument("--save", type=Path, default=None, help="also write the printed report to this file")
    args = ap.parse_args()

    import torch

    from comptrust.compress.build import build_variant
    from comptrust.compress.efficiency import measure_efficiency
    from comptrust.compress.manifest import library_versions
    from comptrust.compress.measure import dir_bytes
    from comptrust.compress.methods import CompressSpec
    from comptrust.models.resolve import resolve_model

    names = [n for n in (args.only.split(",") if args.only else GRID) if n]
    unknown = [n for n in names if n not in GRID]
    if unknown:
        print(f"unknown grid entries: {unknown}; choose from {list(GRID)}", file=sys.stderr)
        return 2
    lines: list[str] = []

    def out(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    base = resolve_model(args.model)
    text, text_label = heldout_text()
    if args.ppl_chars and len(text) > args.ppl_chars:
        cut = text.rfind("\n\n", 0, args.ppl_chars)  # end on a paragraph boundary
        text = text[: cut if cut > 0 else args.ppl_chars]
        text_label += f" (first {len(text)} chars)"
    work = args.keep or Path(tempfile.mkdtemp(prefix="compress-grid-"))
    work.mkdir(parents=True, exist_ok=True)
    out(f"# command: {shlex.join(['.venv/bin/python', 'benchmarks/compress_grid.py', *sys.argv[1:]])}")
    if not args.ppl_chars and (args.ppl_max_length, args.ppl_stride) == (1024, 512):
        out(f"# the dense perplexity reproduces with: comptrust benign --model {args.model} --perplexity bundled")
    out(f"# compress grid — {base.display_name} ({base.ref}, fingerprint {base.fingerprint[:12]})")
    out(f"# machine: {platform.machine()} {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, "
        f"accelerator: {torch.cuda.is_available()}; {json.dumps(library_versions())}")
    out(f"# calibration: {args.calib_label or args.calib}, {args.n_calib} x {args.seq_len} tokens, seed {args.seed}; "
        f"perplexity: {text_label}, window {args.ppl_max_length}, stride {args.ppl_stride}")
    out(f"# started {time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")
    rows = []
    t = time.time()
    if not args.no_dense:
        dense_ppl, n_tok = ppl(base.path, text, args.ppl_max_length, args.ppl_stride)
        eff = measure_efficiency(base.path, max_new_tokens=args.gen_tokens) if args.gen_tokens else {}
        rows.append({"variant": "dense (fp32)", "wall_s": None, "size_mb": dir_bytes(base.path) / 1e6, "bpw": 32.0, "bpp": 32.0,
                     "sparsity": None, "levels": None, "group": "-", "ppl": dense_ppl, "eff": eff,
                     "loadable": "transformers, vllm"})
        out(f"dense: ppl {dense_ppl:.2f} over {n_tok} tokens ({time.time() - t:.0f} s)")
        out(f"row: {table_row(rows[-1])}")  # each row as soon as it is measured: a stopped grid keeps them
    for name in names:
        kw = dict(GRID[name])
        spec = CompressSpec.make(kw.pop("method"), calib=args.calib, n_calib=args.n_calib, seq_len=args.seq_len,
                                 seed=args.seed, **kw)
        vdir = work / name.replace(":", "of")
        try:
            man = build_variant(spec, args.model, vdir)
        except Exception as e:  # report the failure and go on with the rest of the grid
            out(f"{name}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            continue
        m = man.measured
        p, _ = ppl(vdir, text, args.ppl_max_length, args.ppl_stride)
        eff = measure_efficiency(vdir, max_new_tokens=args.gen_tokens) if args.gen_tokens else {}
        g = man.group_size
        rows.append({"variant": name, "wall_s": man.wall_time_s, "size_mb": man.size_bytes / 1e6,
                     "bpw": man.bits_per_weight, "bpp": m["bits_per_param_overall"],
                     "loadable": ", ".join(man.loadable_by or ["?"]), "sparsity": m["sparsity_overall"], "levels": m.get("max_levels_per_group"),
                     "nm": m.get("nm_pattern_valid"), "group": f"{g.effective}/{g.requested}" if g.effective else "-",
                     "ppl": p, "eff": eff})
        out(f"{name}: built in {man.wall_time_s:.0f} s, ppl {p:.2f}, sparsity {m['sparsity_overall']:.4f}, "
            f"levels {m.get('max_levels_per_group')}, {man.bits_per_weight:.3f} bits/weight")
        out(f"row: {table_row(rows[-1])}")
    out()
    out("| variant | compress s | size MB | bits/weight | bits/param | group eff/req | sparsity | max levels/group | N:M valid "
        "| loadable by | ppl | load RSS MB | tok/s |")
    out("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        out(table_row(r))
    out()
    out("bits/weight: bytes of the Linear layers' stored tensors (packed ints + scales + zero points) x 8 / weights; "
        "lm_head and embeddings stay dense and are not counted. Pruned variants are stored dense (fp32).")
    out("bits/param: every stored tensor's bytes x 8 / the model's real parameters (embeddings included; "
        "scale, zero-point and shape tensors are storage, not parameters).")
    out("load RSS: resident memory growth from before loading to after the first forward (compressed-tensors "
        "decompresses packed weights then, so quantized variants use dense memory in transformers on CPU).")
    out(f"# finished {time.strftime('%Y-%m-%d %H:%M:%S')}")
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
