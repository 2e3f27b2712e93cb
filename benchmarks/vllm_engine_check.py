"""vLLM backend as the engine of an eval: prefix caching and n-sample requests, checked for exactness.

Builds a sampled + few-shot workload in the main environment (stereotype and toxicity: t>0, 3
samples per prompt with consecutive seeds; fairness and adv_demonstration: long shared few-shot
prefixes; quick profile, bundled data unless --data-dir), then, in the vLLM environment
(`--worker`, comptrust from src/), answers it twice with the VLLMBackend:
  together:   every sample at once (one SamplingParams(n=3, seed=s) request per prompt, prefix caching on);
  one by one: each sample alone, n=1 (what a resumed run asks for).
Prints tokens/s of each, vLLM's prefix-cache hit rate where its metrics expose it, and how many
samples are identical between the two (must be all: a sample depends only on its seed).

    python benchmarks/vllm_engine_check.py [--model REF] [--limit 6] [--vllm-python .venv-vllm/bin/python]
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
DIMS = ["stereotype", "toxicity", "fairness", "adv_demonstration"]


def build(model: str, limit: int, data_dir: str | None) -> dict:
    from comptrust.runner import EvalConfig, build_plan

    cfg = EvalConfig(model=model, perspectives=DIMS, out_dir=Path("/nonexistent"), profile="quick", limit=limit,
                     data_dir=Path(data_dir) if data_dir else None, backend="vllm")
    plan = build_plan(cfg)
    rows = []
    first_seed: dict[str, int] = {}
    for us in plan.units.values():
        for u in us:
            if u.request.choices:
                continue
            p = u.request.params
            # sample i of a prompt gets seed(sample 0) + i here, so its samples form one n-sample
            # vLLM request (the runner's seeds.sample_seed hashes i in, which makes n=1 requests)
            base = first_seed.setdefault(u.prompt, u.seed)  # units come in sample order
            rows.append({"key": u.key, "prompt": u.prompt, "sample_idx": u.sample_idx,
                         "seed": base + u.sample_idx if p.temperature > 0 else 0,
                         "params": {"max_new_tokens": p.max_new_tokens, "temperature": p.temperature, "top_p": p.top_p,
                                    "top_k": getattr(p, "top_k", 0), "n": p.n, "stop": list(p.stop), "seed": p.seed}})
    return {"model_path": str(plan.resolved.path), "rows": rows}


def worker(inp: Path, out: Path) -> None:
    from comptrust.backends.base import GenItem
    from comptrust.backends.vllm import VLLMBackend, sample_runs
    from comptrust.models.resolve import ResolvedModel
    from comptrust.types import GenParams

    spec = json.loads(inp.read_text())
    path = Path(spec["model_path"])
    backend = VLLMBackend(ResolvedModel(ref=str(path), kind="local", path=path, fingerprint="check", display_name=path.name))
    items = [GenItem(r["key"], r["prompt"], GenParams(**{**r["params"], "stop": tuple(r["params"]["stop"])}), r["sample_idx"], r["seed"])
             for r in spec["rows"]]
    res: dict = {"requests_together": len(sample_runs(items)), "samples": len(items)}
    for mode in ("together", "one_by_one"):
        t0 = time.perf_counter()
        got: dict = {}
        if mode == "together":
            for batch in backend.generate(items):
                got.update({o.key: [o.text, o.n_tokens] for o in batch})
        else:
            for it in items:
                for batch in backend.generate([it]):
                    got.update({o.key: [o.text, o.n_tokens] for o in batch})
        res[mode] = {"seconds": time.perf_counter() - t0, "out": got}
    try:  # vLLM V1 exposes counters through LLM.get_metrics()
        m = {x.name: getattr(x, "value", None) for x in backend.llm.get_metrics()}
        q, h = m.get("vllm:prefix_cache_queries"), m.get("vllm:prefix_cache_hits")
        res["prefix_cache_hit_rate"] = (h / q) if q else None
    except Exception as e:  # noqa: BLE001 - older vLLM: no metrics API
        res["prefix_cache_hit_rate"] = f"unavailable ({type(e).__name__})"
    out.write_text(json.dumps(res))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="embedded:smollm2-135m-instruct")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--vllm-python", default=os.environ.get("VLLM_PYTHON", str(REPO / ".venv-vllm" / "bin" / "python")))
    ap.add_argument("--worker", nargs=2, metavar=("IN", "OUT"))
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.worker[0]), Path(args.worker[1]))
        return 0
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "in.json", Path(d) / "out.json"
        inp.write_text(json.dumps(build(args.model, args.limit, args.data_dir)))
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1", "VLLM_LOGGING_LEVEL": "WARNING"}
        r = subprocess.run([args.vllm_python, __file__, "--worker", str(inp), str(out)], env=env, text=True,
                           capture_output=True, timeout=1800)
        if r.returncode != 0:
            print(f"vLLM worker failed (exit {r.returncode}):\n{r.stderr[-3000:]}")
            return 1
        res = json.loads(out.read_text())
    tog, one = res["together"], res["one_by_one"]
    same = sum(tog["out"][k] == one["out"][k] for k in tog["out"])
    toks = sum(v[1] for v in tog["out"].values())
    print(f"vLLM: {res['samples']} samples of {', '.join(DIMS)} sent as {res['requests_together']} requests")
    print(f"together (n-sample requests, prefix caching): {tog['seconds']:.1f} s, {toks / tog['seconds']:.0f} generated tok/s")
    print(f"one by one (n=1 each):                       {one['seconds']:.1f} s")
    print(f"prefix-cache hit rate over both passes: {res['prefix_cache_hit_rate']}")
    print(f"identical samples together vs one by one: {same}/{len(tog['out'])}")
    return 0 if same == len(tog["out"]) else 1


if __name__ == "__main__":
    sys.exit(main())
