import torch

from comptrust.backends.sampling import sampling_probs
from comptrust.types import GenParams


def test_top_k_keeps_only_the_k_most_likely_tokens():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    full = sampling_probs(logits, 1.0)
    assert (full > 0).sum() == 5
    p = sampling_probs(logits, 1.0, top_k=2)
    assert (p > 0).sum() == 2 and p[0, 0] > p[0, 1] > 0
    assert torch.allclose(p.sum(-1), torch.tensor([1.0]))
    # ties with the k-th logit are kept (transformers' TopKLogitsWarper)
    assert (sampling_probs(torch.tensor([[2.0, 1.0, 1.0, 0.0]]), 1.0, top_k=2) > 0).sum() == 3
    # top_k at or above the vocabulary size is the full distribution
    assert torch.allclose(sampling_probs(logits, 1.0, top_k=50), full)


def test_top_k_then_top_p():
    logits = torch.tensor([[3.0, 2.9, 0.0, -1.0]])
    p = sampling_probs(logits, 1.0, top_k=3, top_p=0.6)
    assert (p > 0).sum() == 2


def test_top_k_is_in_the_key_only_when_it_changes_the_text():
    base = GenParams(max_new_tokens=8, temperature=1.0)
    assert "top_k" not in base.key_dict()
    assert GenParams(max_new_tokens=8, temperature=1.0, top_k=50).key_dict()["top_k"] == 50
    assert "top_k" not in GenParams(max_new_tokens=8, temperature=0.0, top_k=50).key_dict()


def test_hf_backend_honours_top_k(tiny_model):
    """top_k=1 sampling at t=1 is greedy decoding; the full vocabulary is not."""
    from comptrust.backends.base import GenItem
    from comptrust.backends.hf import HFBackend
    from comptrust.models.resolve import resolve_model

    be = HFBackend(resolve_model(str(tiny_model)), batch_size=4)
    prompts = ["I agree.", "the quick brown fox", "0 1 2 3", "high low income $50k"]

    def run(params):
        items = [GenItem(f"k{i}", p, params, 0, 1000 + i) for i, p in enumerate(prompts)]
        return {o.key: o.text for batch in be.generate(items) for o in batch}

    greedy = run(GenParams(max_new_tokens=10))
    assert run(GenParams(max_new_tokens=10, temperature=1.0, top_k=1)) == greedy
    assert run(GenParams(max_new_tokens=10, temperature=1.0)) != greedy
