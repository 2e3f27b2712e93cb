"""Efficiency of a checkpoint: size on disk, memory to load, generation speed.

Load memory and speed are measured in a fresh Python subprocess, so earlier allocations of the
caller (another model, a dataset) cannot distort them: peak RSS after loading minus RSS before,
then greedy generation of `max_new_tokens` for each fixed prompt (one warm-up generation first,
not timed). Figures are for the machine they ran on; compare variants measured on the same one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import CompressionError
from .measure import dir_bytes

DEFAULT_PROMPTS = (
    "Explain in two sentences why the sky looks blue.",
    "Write a short note thanking a colleague for their help.",
    "List three things to check before crossing a street.",
)

_CHILD = r"""
import json, resource, sys, time
from comptrust.peakmem import PeakMemory, rss_bytes
args = json.loads(sys.argv[1])
def rss_kib():
    b = rss_bytes()
    return b // 1024 if b is not None else 0
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.manual_seed(0)
torch.set_num_threads(args["threads"]) if args["threads"] else None
before = rss_kib()
mem = PeakMemory.start()  # the same measure as an eval's results.json efficiency.peak_load_mem_bytes
t0 = time.perf_counter()
tok = AutoTokenizer.from_pretrained(args["dir"])
model = AutoModelForCausalLM.from_pretrained(args["dir"], dtype=torch.float32)
model.eval()
load_s = time.perf_counter() - t0
after_load = rss_kib()
def gen(prompt, n):
    msgs = [{"role": "user", "content": prompt}]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) if tok.chat_template else prompt
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    return out.shape[1] - enc["input_ids"].shape[1]
gen(args["prompts"][0], 2)  # warm-up: compressed-tensors decompresses on the first forward
after_first = rss_kib()
peak_load = mem.peak_added()
tokens = 0
t0 = time.perf_counter()
for p in args["prompts"]:
    tokens += gen(p, args["max_new_tokens"])
gen_s = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("RESULT " + json.dumps({
    "load_s": load_s, "load_rss_delta_bytes": (after_load - before) * 1024,
    "ready_rss_delta_bytes": (after_first - before) * 1024, "peak_rss_bytes": peak * 1024,
    "peak_load_mem_bytes": peak_load,
    "generated_tokens": tokens, "generate_s": gen_s, "tokens_per_s": tokens / gen_s if gen_s else None,
}))
"""


def measure_efficiency(
    model_dir: str | Path,
    prompts: list[str] | tuple[str, ...] = DEFAULT_PROMPTS,
    max_new_tokens: int = 32,
    *,
    threads: int | None = None,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Size on disk, RSS growth to load (and after the first forward), peak RSS, tokens/s."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise CompressionError(f"{model_dir} is not a model directory (no config.json); pass a checkpoint or variant dir")
    args = {"dir": str(model_dir), "prompts": list(prompts), "max_new_tokens": int(max_new_tokens), "threads": threads}
    proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(args)], capture_output=True, text=True, timeout=timeout_s)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise CompressionError(f"{model_dir}: could not load and generate for the efficiency measurement ({tail})")
    res = json.loads(line[len("RESULT "):])
    res["size_bytes"] = dir_bytes(model_dir)
    res["prompts"] = len(prompts)
    res["max_new_tokens"] = max_new_tokens
    return res
