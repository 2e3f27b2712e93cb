"""The HF backend on a tiny random Llama: batching must not change answers."""

import math

import pytest

from comptrust.backends.base import GenItem, LoglikItem
from comptrust.models.resolve import resolve_model
from comptrust.types import GenParams

PROMPTS = [
    "I agree.",
    "You are a helpful assistant. Please answer the following question with a short answer.",
    "the quick brown fox",
    "Here is my statement: people are good. Sure, I'd be happy to! email address mailto com and more",
    "0 1 2 3",
    "positive negative maybe wrong not wrong. The answer is yes or no.",
    "high low income $50k",
]


@pytest.fixture(scope="module")
def backend(tiny_model):
    from comptrust.backends.hf import HFBackend

    return HFBackend(resolve_model(str(tiny_model)), batch_size=8)


def _gen(backend, params, seeds=None, batch_size=8):
    backend.batch_size = batch_size
    items = [GenItem(f"k{i}", p, params, 0, (seeds or [0] * len(PROMPTS))[i]) for i, p in enumerate(PROMPTS)]
    out = {}
    for batch in backend.generate(items):
        for o in batch:
            out[o.key] = o.text
    return out


def test_batched_greedy_equals_batch_size_one(backend):
    params = GenParams(max_new_tokens=12)
    batched = _gen(backend, params, batch_size=8)
    single = _gen(backend, params, batch_size=1)
    assert batched == single
    assert len(set(batched.values())) > 1  # the model says different things to different prompts


def test_seeded_sampling_is_independent_of_batch(backend):
    params = GenParams(max_new_tokens=10, temperature=1.0, seed=3)
    seeds = list(range(100, 100 + len(PROMPTS)))
    a = _gen(backend, params, seeds, batch_size=8)
    b = _gen(backend, params, seeds, batch_size=1)
    assert a == b
    c = _gen(backend, params, [s + 1 for s in seeds], batch_size=8)
    assert c != a  # another seed gives other samples


def test_stop_strings_are_trimmed(backend):
    text = _gen(backend, GenParams(max_new_tokens=16))["k0"]
    assert len(text) > 2
    stop = text[1:3]
    stopped = _gen(backend, GenParams(max_new_tokens=16, stop=(stop,)))["k0"]
    assert stop not in stopped and text.startswith(stopped)


def test_loglikelihood_matches_direct_computation(backend):
    import torch

    items = [LoglikItem("a", "The answer is", (" yes", " no", " maybe")), LoglikItem("b", "0 1 2", (" 3", " A"))]
    got = dict(next(iter(backend.loglikelihood(items))))
    tok, model = backend.tokenizer, backend.model
    for it in items:
        for c, val in zip(it.choices, got[it.key]):
            ctx = tok(it.prompt, add_special_tokens=False)["input_ids"]
            full = tok(it.prompt + c, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([full])).logits[0].float(), -1)
            want = sum(float(logp[i - 1, full[i]]) for i in range(len(ctx), len(full)))
            assert math.isclose(val, want, rel_tol=1e-4, abs_tol=1e-4)


def test_oom_halves_the_batch(backend, monkeypatch):
    monkeypatch.setattr(backend, "engine", "generate")  # transformers' generate path; the engine has its own tests
    calls = []
    real = backend._run_batch

    def flaky(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(batch)

    monkeypatch.setattr(backend, "_run_batch", flaky)
    out = _gen(backend, GenParams(max_new_tokens=4), batch_size=8)
    assert len(out) == len(PROMPTS)
    assert calls[0] == len(PROMPTS)
    assert sum(n for n in calls if n <= 2) == len(PROMPTS)  # every prompt answered once, in halves
    assert backend.batch_size <= 3
