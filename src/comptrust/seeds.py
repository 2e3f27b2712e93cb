"""The two seeds of an evaluation, one meaning each, and the per-sample generation seed.

- prompt-sampling seed (`EvalConfig.seed`, `--seed`, spec `seed`, results.json `profile.seed`):
  which rows a profile draws from the benchmark (and the perspectives' own row-level draws).
- generation seed (`EvalConfig.gen_seed`, `--gen-seed`, spec `gen_seed`, results.json
  `profile.gen_seed`): sampling at temperature > 0. It never changes which prompts are asked.

Sample i of a t>0 request gets `sample_seed(gen_seed, perspective, request id, params, i)`. The
model's fingerprint is deliberately not an input: the dense model and every variant draw sample i
of a prompt with the same seed (common random numbers), so a paired delta cancels the sampling
noise instead of adding it. Two dense runs that differ only in the generation seed give the noise
floor. The seed is part of a t>0 answer's store key (store.request_key) and is stored with the
answer (responses.params["sample_seed"]), so a cached answer is always the one its seed gives.
"""

from __future__ import annotations

from .types import GenParams, stable_hash

SCHEME = "sha256(gen_seed, perspective, request id, generation params, sample index)[:15 hex]"


def sample_seed(gen_seed: int, perspective: str, request_id: str, params: GenParams, sample_idx: int) -> int:
    """A 60-bit seed for sample `sample_idx` of one request; independent of the model."""
    rec = {"g": int(gen_seed), "p": perspective, "r": request_id, "k": params.key_dict(), "i": int(sample_idx)}
    return int(stable_hash(rec, 15), 16)
