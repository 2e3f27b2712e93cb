"""Next-token sampling shared by the HF decoding loops (the engine and the generate path):
temperature, then top-k, then top-p (transformers' warper order, which DT's HF path used through
`generate`), then a Gumbel-max draw whose noise is a hash of (sample seed, step, token id).

Why this sampler:
- cost: torch.multinomial draws one exponential per vocabulary entry (49k for SmolLM2) for every
  sampled token, and the full-vocabulary softmax and masking before it cost as much again (31 ms
  a step at 16 rows on 2 cores); with top-k only the k candidates get noise (3 ms);
- common random numbers: the noise of a token depends on the sample's seed, the step and the
  token's id, not on the model, so the dense model and a variant given the same seed draw the
  same token wherever their distributions barely differ (the coupling that makes paired deltas
  tight, seeds.py); an inverse-CDF draw over probability-sorted candidates would lose it;
- independence: a draw depends only on the row's logits, seed and step, never on other rows.
"""

from __future__ import annotations

from typing import Sequence

# Part of every sampled answer's store key (store.request_key): answers drawn by another sampler
# are never reused for this one's.
SAMPLER = "gumbel-hash-1"
_M32 = 0xFFFFFFFF


def sampling_probs(logits, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """Row-wise probabilities (float32, CPU) over the whole vocabulary that draw_tokens samples
    from. top_k=0 keeps the full vocabulary; top_k keeps ties with the k-th logit, as
    transformers' TopKLogitsWarper does."""
    import torch

    x = logits.float().cpu() / temperature
    if top_k and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if top_p < 1.0:
        sp, si = torch.sort(probs, descending=True, dim=-1)
        sp = sp * _top_p_keep(sp, top_p)
        probs = torch.zeros_like(probs).scatter(-1, si, sp / sp.sum(-1, keepdim=True))
    return probs


def _mix32(x):
    """lowbias32 (Chris Wellons' integer hash) of the low 32 bits; the same operators serve
    Python ints (a row's key) and int64 tensors (a row's candidate tokens)."""
    x = x & _M32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def row_key(seed: int, step: int) -> int:
    """32-bit key of one sample's step: every bit of the 64-bit seed and the step mixed in."""
    return _mix32(_mix32(_mix32(seed) ^ ((seed >> 32) & _M32)) ^ _mix32(step + 0x9E3779B9))


def gumbel_noise(keys, token_ids):
    """Gumbel(0, 1) noise [n, c] for token ids [n, c] of rows with 32-bit keys [n]."""
    import torch

    x = _mix32((keys[:, None] ^ _mix32(token_ids + 0x632BE5AB)) & _M32)
    x = _mix32(x ^ 0x5BD1E995)
    u = (x.double() + 0.5) / 4294967296.0  # in (0, 1)
    return -torch.log(-torch.log(u))


def draw_tokens(logits, seeds: Sequence[int], steps: Sequence[int], temperature: float, top_k: int = 0,
                top_p: float = 1.0) -> list[int]:
    """One token per row of `logits` [n, vocab]: argmax over the candidates (top-k, then top-p) of
    logit / temperature + Gumbel noise keyed by (seeds[i], steps[i], token id). Rows whose k-th
    logit ties with further logits keep every tie (transformers' semantics)."""
    import torch

    n, vocab = logits.shape
    if n == 0:
        return []
    x = logits.float().cpu() / temperature
    keys = torch.tensor([row_key(s, t) for s, t in zip(seeds, steps)], dtype=torch.long)
    if top_k and top_k < vocab:
        # one more than k: a logit tied with the k-th beyond it shows as the (k+1)-th (a pass
        # over the vocabulary counting x >= k-th costs as much as the topk itself)
        vals, idx = torch.topk(x, top_k + 1, dim=-1)  # sorted, descending
        tied = vals[:, top_k] == vals[:, top_k - 1]
        vals, idx = vals[:, :top_k], idx[:, :top_k]
        if bool(tied.any()):  # rare: fall back to the whole vocabulary, masked, for every row
            return _draw_full(x.masked_fill(x < vals[:, -1:], float("-inf")), keys, top_p)
        if top_p < 1.0:
            vals = vals.masked_fill(~_top_p_keep(torch.softmax(vals, dim=-1), top_p), float("-inf"))
        pick = (vals.double() + gumbel_noise(keys, idx)).argmax(-1, keepdim=True)
        return idx.gather(-1, pick).flatten().tolist()
    return _draw_full(x, keys, top_p)


def _draw_full(x, keys, top_p: float) -> list[int]:
    import torch

    if top_p < 1.0:
        sp, si = torch.sort(torch.softmax(x, dim=-1), descending=True, dim=-1)
        drop = torch.zeros_like(x, dtype=torch.bool).scatter(-1, si, ~_top_p_keep(sp, top_p))
        x = x.masked_fill(drop, float("-inf"))
    ids = torch.arange(x.shape[-1], dtype=torch.long).expand(x.shape[0], -1)
    return (x.double() + gumbel_noise(keys, ids)).argmax(-1).tolist()


def _top_p_keep(sorted_probs, top_p: float):
    return (sorted_probs.cumsum(-1) - sorted_probs) < top_p  # always keeps the top token
