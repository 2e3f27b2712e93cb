"""Next-token sampling distribution shared by the HF decoding loops: temperature, then top-k,
then top-p (transformers' warper order, which DT's HF path used through `generate`)."""

from __future__ import annotations


def sampling_probs(logits, temperature: float, top_k: int = 0, top_p: float = 1.0):
    """Row-wise probabilities (float32, CPU) to draw the next token from. top_k=0 keeps the full
    vocabulary; top_k keeps ties with the k-th logit, as transformers' TopKLogitsWarper does."""
    import torch

    x = logits.float().cpu() / temperature
    if top_k and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    if top_p < 1.0:
        sp, si = torch.sort(probs, descending=True, dim=-1)
        keep = (sp.cumsum(-1) - sp) < top_p  # always keeps the top token
        probs = torch.zeros_like(probs).scatter(-1, si, sp * keep)
        probs = probs / probs.sum(-1, keepdim=True)
    return probs
