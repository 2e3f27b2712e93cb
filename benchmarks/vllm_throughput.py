"""vLLM vs the HF backend on the same prompts: greedy agreement and tokens/s, and which
compressed variants vLLM loads.

vLLM pins its own torch and compressed-tensors, so it runs in its own environment (default
.venv-vllm, or --vllm-python). This script runs in the main environment: it builds the prompts,
runs the HF backend in-process, and drives the vLLM backend in a subprocess of the vLLM
environment (`--worker`), which imports comptrust from src/ (no install there needed).

    python benchmarks/vllm_throughput.py [--model REF] [--prompts 24] [--max-new-tokens 32]
        [--variant DIR ...] [--vllm-python .venv-vllm/bin/python] [--json OUT]

Prints, per backend: load seconds, generated tokens, tokens/s, and greedy agreement with HF
(identical text per prompt); per variant: whether vLLM loaded it, its tokens/s and its greedy
agreement with the HF backend on the same variant. Exit 1 when vLLM is not available.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GREEDY_PERSPECTIVES = ["fairness", "machine_ethics", "ood", "advglue", "stereotype"]


def build_items(model_ref: str, n_prompts: int, max_new_tokens: int) -> list[dict]:
    """Greedy prompts from the bundled data, formatted with the model's chat template."""
    from comptrust.data.source import DataSource
    from comptrust.models.chat import ChatFormatter
    from comptrust.models.resolve import resolve_model
    from comptrust.perspectives.base import PerspectiveContext, get_perspective
    from comptrust.profiles import get_profile
    from comptrust.runner import load_tokenizer

    resolved = resolve_model(model_ref)
    fmt = ChatFormatter.for_tokenizer(load_tokenizer(resolved), resolved.display_name)
    items: list[dict] = []
    per = max(1, n_prompts // len(GREEDY_PERSPECTIVES) + 1)
    for name in GREEDY_PERSPECTIVES:
        ctx = PerspectiveContext(data=DataSource.bundled(), profile=get_profile("quick"), seed=0, limit=per)
        for r in get_perspective(name).requests(ctx)[:per]:
            if r.choices:
                continue
            items.append({"key": f"{name}/{r.id}", "prompt": fmt.format(r.messages)})
    return items[:n_prompts]


def run_backend(kind: str, model_path: str, items: list[dict], max_new_tokens: int, device: str | None = None) -> dict:
    """Generate greedily with one backend in this process; returns texts and timings."""
    from comptrust.backends.base import GenItem
    from comptrust.models.resolve import ResolvedModel
    from comptrust.types import GenParams

    resolved = ResolvedModel(ref=model_path, kind="local", path=Path(model_path), fingerprint="bench",
                             display_name=Path(model_path).name)
    t0 = time.perf_counter()
    try:
        if kind == "vllm":
            from comptrust.backends.vllm import VLLMBackend

            backend = VLLMBackend(resolved, device=device)
        else:
            from comptrust.backends.hf import HFBackend

            backend = HFBackend(resolved, batch_size=16, device=device)
    except Exception as e:  # noqa: BLE001 - a benchmark reports what failed and goes on
        return {"loaded": False, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
    load_s = time.perf_counter() - t0
    params = GenParams(max_new_tokens=max_new_tokens)
    gen = [GenItem(it["key"], it["prompt"], params, 0, 0) for it in items]
    texts: dict[str, str] = {}
    t0 = time.perf_counter()
    for batch in backend.generate(gen):
        texts.update({o.key: o.text for o in batch})
    wall = time.perf_counter() - t0
    return {"loaded": True, "device": backend.device, "dtype": backend.dtype, "load_s": round(load_s, 1),
            "tokens": backend.gen_tokens, "gen_s": round(wall, 2),
            "tokens_per_s": round(backend.gen_tokens / wall, 1) if wall > 0 else None,
            "texts": [texts[it["key"]] for it in items]}


def run_vllm_subprocess(python: str, model_path: str, items: list[dict], max_new_tokens: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "in.json", Path(d) / "out.json"
        inp.write_text(json.dumps({"model": model_path, "items": items, "max_new_tokens": max_new_tokens}))
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "VLLM_LOGGING_LEVEL": "WARNING", "TOKENIZERS_PARALLELISM": "false"}
        r = subprocess.run([python, __file__, "--worker", str(inp), str(out)], env=env, capture_output=True, text=True)
        if not out.is_file():
            tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
            return {"loaded": False, "error": f"vLLM worker exited {r.returncode}: {' | '.join(tail)[:400]}"}
        return json.loads(out.read_text())


def agreement(a: list[str], b: list[str]) -> float:
    return sum(x == y for x, y in zip(a, b)) / max(1, len(a))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--prompts", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--variant", action="append", default=[], help="compressed variant dir (repeatable)")
    ap.add_argument("--vllm-python", default=os.environ.get("COMPTRUST_VLLM_PYTHON", str(REPO / ".venv-vllm" / "bin" / "python")))
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--worker", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:  # inside the vLLM environment
        spec = json.loads(Path(args.worker[0]).read_text())
        res = run_backend("vllm", spec["model"], spec["items"], spec["max_new_tokens"])
        Path(args.worker[1]).write_text(json.dumps(res))
        return 0

    from comptrust.models.resolve import resolve_model

    if not Path(args.vllm_python).is_file():
        print(f"vLLM environment not found at {args.vllm_python}; build it (docs/scale-out.md) or pass --vllm-python")
        return 1
    model_path = str(resolve_model(args.model).path)
    items = build_items(args.model, args.prompts, args.max_new_tokens)
    report: dict = {"model": args.model, "prompts": len(items), "max_new_tokens": args.max_new_tokens, "runs": {}}
    rows = []
    for label, path in [("dense", model_path), *[(Path(v).name, str(Path(v).resolve())) for v in args.variant]]:
        hf = run_backend("hf", path, items, args.max_new_tokens)
        vl = run_vllm_subprocess(args.vllm_python, path, items, args.max_new_tokens)
        agree = agreement(hf["texts"], vl["texts"]) if hf.get("loaded") and vl.get("loaded") else None
        report["runs"][label] = {"hf": {k: v for k, v in hf.items() if k != "texts"},
                                 "vllm": {k: v for k, v in vl.items() if k != "texts"}, "greedy_agreement": agree}
        if agree is not None and agree < 1:
            report["runs"][label]["first_difference"] = next(
                {"hf": a, "vllm": b} for a, b in zip(hf["texts"], vl["texts"]) if a != b)
        for name, r in (("hf", hf), ("vllm", vl)):
            rows.append((label, name, r))
        print(f"{label}: greedy agreement vLLM vs HF = {'n/a' if agree is None else f'{100 * agree:.0f}%'}", flush=True)
    print(f"\n{len(items)} greedy prompts, max_new_tokens {args.max_new_tokens}")
    print(f"{'model':28} {'backend':8} {'device':6} {'dtype':9} {'load s':>7} {'tokens':>7} {'tok/s':>8}")
    for label, name, r in rows:
        if not r.get("loaded"):
            print(f"{label:28} {name:8} did not load: {r.get('error')}")
            continue
        print(f"{label:28} {name:8} {r['device']:6} {r['dtype']:9} {r['load_s']:>7} {r['tokens']:>7} {r['tokens_per_s']:>8}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":  # vLLM's engine spawns processes: the guard is required
    sys.exit(main())
