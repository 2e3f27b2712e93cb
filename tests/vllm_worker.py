"""Runs inside the vLLM environment for tests/test_vllm_backend.py (comptrust from src/ on
PYTHONPATH): the VLLMBackend on the items in IN, answers to OUT.

    python tests/vllm_worker.py MODEL_DIR IN_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    model, inp, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    from comptrust.backends.base import GenItem, LoglikItem
    from comptrust.backends.vllm import VLLMBackend
    from comptrust.models.resolve import ResolvedModel
    from comptrust.types import GenParams

    spec = json.loads(inp.read_text())
    backend = VLLMBackend(ResolvedModel(ref=str(model), kind="local", path=model, fingerprint="t", display_name="t"))

    def items(rows):
        return [GenItem(r["key"], r["prompt"], GenParams(**{**r["params"], "stop": tuple(r["params"]["stop"])}), 0, r["seed"])
                for r in rows]

    res: dict = {"device": backend.device, "dtype": backend.dtype, "name": backend.name}
    for group in ("greedy", "sampled", "sampled_alone", "sampled_run", "sampled_run_alone"):
        texts = {}
        for batch in backend.generate(items(spec[group])):
            texts.update({o.key: [o.text, o.n_tokens] for o in batch})
        res[group] = texts
    ll = [LoglikItem(r["key"], r["prompt"], tuple(r["choices"])) for r in spec["loglik"]]
    res["loglik"] = {k: list(v) for batch in backend.loglikelihood(ll) for k, v in batch}
    out.write_text(json.dumps(res))
    return 0


if __name__ == "__main__":  # the engine spawns processes
    sys.exit(main())
