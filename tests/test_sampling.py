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


def test_draw_tokens_samples_the_warped_distribution():
    """Frequencies over many seeds match sampling_probs for each warper combination."""
    from comptrust.backends.sampling import draw_tokens

    x = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).repeat(20000, 1)
    for top_k, top_p in ((0, 1.0), (3, 1.0), (0, 0.8), (4, 0.8)):
        got = torch.tensor(draw_tokens(x, list(range(20000)), [0] * 20000, 1.0, top_k, top_p))
        freq = torch.bincount(got, minlength=5) / 20000.0
        want = sampling_probs(x[:1], 1.0, top_k, top_p)[0]
        assert torch.allclose(freq, want, atol=0.015), (top_k, top_p, freq, want)
        assert (freq[want == 0] == 0).all()  # a warped-away token is never drawn


def test_draw_tokens_depends_on_seed_and_step_only_and_couples_close_models():
    from comptrust.backends.sampling import draw_tokens

    torch.manual_seed(0)
    logits = torch.randn(64, 1000) * 2
    seeds, steps = [1000 + i for i in range(64)], [3] * 64
    a = draw_tokens(logits, seeds, steps, 1.0, 50)
    # the same row alone, or among other rows in another order, draws the same token
    assert [draw_tokens(logits[i:i + 1], seeds[i:i + 1], [3], 1.0, 50)[0] for i in range(64)] == a
    assert draw_tokens(logits.flip(0), seeds[::-1], steps, 1.0, 50) == a[::-1]
    assert draw_tokens(logits, seeds, [4] * 64, 1.0, 50) != a  # the step is part of the key
    # common random numbers: a slightly perturbed model mostly draws the same tokens
    near = draw_tokens(logits + 0.05 * torch.randn(64, 1000), seeds, steps, 1.0, 50)
    other = draw_tokens(logits, [s + 7919 for s in seeds], steps, 1.0, 50)
    same_near = sum(p == q for p, q in zip(a, near))
    same_other = sum(p == q for p, q in zip(a, other))
    assert same_near >= 56 and same_other < same_near


def test_draw_tokens_keeps_ties_with_the_kth_logit():
    from comptrust.backends.sampling import draw_tokens

    x = torch.tensor([[2.0, 1.0, 1.0, -5.0]]).repeat(4000, 1)
    got = set(draw_tokens(x, list(range(4000)), [0] * 4000, 1.0, 2))
    assert got == {0, 1, 2}  # both tied tokens are candidates, the one below never is
