"""One test per known llm-compressor problem in compress/workarounds.py: each shows the problem
exists in the installed version (so the fix is still needed) and that the fix works."""

from __future__ import annotations

import pytest
import torch

from comptrust.compress import workarounds
from comptrust.compress.groupsize import candidates, effective_group_size
from comptrust.errors import CompressionError


# -- 1. group size ------------------------------------------------------------------------------

@pytest.mark.parametrize("requested,widths,expected", [
    (128, [576, 1536], 64),      # SmolLM2-135M: 576 = 9 x 64
    (128, [192, 384], 64),       # the test model
    (128, [4096, 11008], 128),   # Llama-2-7B: 128 is valid, kept
    (128, [5120, 13824], 128),   # Llama-2-13B
    (96, [576, 1536], 96),       # a requested non-power-of-two size that divides is kept
    (100, [576], 64),            # ...and one that does not falls back to powers of two
    (64, [64], 64),
    (-1, [577], -1),             # per-channel needs no divisibility
])
def test_effective_group_size(requested, widths, expected):
    assert effective_group_size(requested, widths) == expected


def test_effective_group_size_is_largest_valid_candidate():
    for widths in ([576, 1536], [192, 384], [640, 2560], [4096]):
        g = effective_group_size(128, widths)
        assert all(w % g == 0 for w in widths)
        assert not any(all(w % c == 0 for w in widths) for c in candidates(128) if c > g)


def test_effective_group_size_refuses_tiny_groups():
    with pytest.raises(CompressionError, match="--group-size -1"):
        effective_group_size(128, [577])


def test_llmcompressor_still_rejects_indivisible_group_size(tmp_path):
    """Problem 1 exists: llm-compressor refuses group 128 for width 192 at initialize."""
    from comptrust.testing import make_tiny_model
    from transformers import AutoModelForCausalLM
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    d = make_tiny_model(tmp_path / "m", hidden_size=192, intermediate_size=384, num_layers=1)
    model = AutoModelForCausalLM.from_pretrained(d)
    with pytest.raises(ValueError, match="not divisible by group_size"):
        oneshot(model=model, recipe=[QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])])


# -- 2. AWQ pin_memory -----------------------------------------------------------------------------

def test_pin_memory_guard_is_scoped_and_only_without_accelerator(monkeypatch):
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    monkeypatch.setattr(workarounds, "accelerator_available", lambda: False)
    with workarounds.awq_pin_memory_guard() as patched:
        assert patched is True
        assert IntermediatesCache.__dict__["pin_memory"] is not original
        assert IntermediatesCache.pin_memory(object(), 0) is None  # no-op, no pinning attempted
    assert IntermediatesCache.__dict__["pin_memory"] is original  # restored after

    monkeypatch.setattr(workarounds, "accelerator_available", lambda: True)
    with workarounds.awq_pin_memory_guard() as patched:
        assert patched is False
        assert IntermediatesCache.__dict__["pin_memory"] is original  # untouched where pinning works


def test_pin_memory_guard_restores_on_error(monkeypatch):
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    monkeypatch.setattr(workarounds, "accelerator_available", lambda: False)
    with pytest.raises(RuntimeError):
        with workarounds.awq_pin_memory_guard():
            raise RuntimeError("boom")
    assert IntermediatesCache.__dict__["pin_memory"] is original


@pytest.mark.skipif(workarounds.accelerator_available(), reason="the problem only exists without an accelerator")
def test_pin_memory_fails_on_cpu_only_torch():
    """Problem 2 exists: pinning raises on CPU-only torch."""
    with pytest.raises(RuntimeError):
        torch.zeros(2).pin_memory()


# -- 3. pruning ignore names -----------------------------------------------------------------------

def test_pruning_ignore_matches_the_pruners_name_form():
    from compressed_tensors.utils import match_targets

    lin = torch.nn.Linear(2, 2)
    ignore = workarounds.pruning_ignore(["lm_head"])
    assert match_targets("lm_head.", lin, ignore)  # the name SparseGPT/Wanda build for the output embedding
    assert match_targets("lm_head", lin, ignore)
    assert not match_targets("model.layers.0.mlp.lm_head_proj.", lin, ignore)
    assert not match_targets("lm_head.", lin, ["lm_head"])  # problem 3 exists: the plain name misses


# -- 4. magnitude pruning ---------------------------------------------------------------------------

@pytest.mark.parametrize("nm", [None, (2, 4), (4, 8), (1, 2)])
def test_magnitude_mask(nm):
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    mask = workarounds.magnitude_mask(w, 0.5, nm)
    assert mask.sum() == w.numel() // 2
    if nm is None:
        assert w.abs()[mask].max() <= w.abs()[~mask].min()
    else:
        n, m = nm
        g = mask.view(16, -1, m)
        assert bool((g.sum(-1) == n).all())
        wa = w.abs().view(16, -1, m)
        assert bool((torch.where(g, wa, -1.0).amax(-1) <= torch.where(~g, wa, 1e9).amin(-1)).all())


def test_magnitude_mask_ties_give_exact_count():
    w = torch.zeros(4, 8)
    assert workarounds.magnitude_mask(w, 0.25, None).sum() == 8


def test_llmcompressor_magnitude_oneshot_is_still_a_noop(tmp_path):
    """Problem 4 exists: MagnitudePruningModifier in oneshot leaves the weights dense."""
    from comptrust.testing import make_tiny_model
    from transformers import AutoModelForCausalLM
    from llmcompressor import oneshot
    from llmcompressor.modifiers.pruning import MagnitudePruningModifier

    d = make_tiny_model(tmp_path / "m", num_layers=1)
    model = AutoModelForCausalLM.from_pretrained(d)
    oneshot(model=model, recipe=[MagnitudePruningModifier(targets="re:.*proj", init_sparsity=0.5, final_sparsity=0.5, start=0, end=1)])
    w = model.model.layers[0].mlp.up_proj.weight
    assert float((w == 0).float().mean()) < 0.1


def test_build_refuses_a_variant_whose_output_embedding_was_pruned(tmp_path, monkeypatch):
    """Without the problem-3 fix, SparseGPT prunes lm_head; build's own check must catch that
    and leave no variant behind."""
    from comptrust.compress import build
    from comptrust.compress.methods import CompressSpec
    from comptrust.testing import make_tiny_model

    base = make_tiny_model(tmp_path / "m", num_layers=1)
    calib = tmp_path / "c.txt"
    calib.write_text("the quick brown fox jumps over the lazy dog " * 40)
    monkeypatch.setattr(workarounds, "pruning_ignore", lambda names: list(names))  # undo the fix
    spec = CompressSpec.make("sparsegpt", calib=str(calib), n_calib=2, seq_len=16)
    with pytest.raises(CompressionError, match="output embedding was pruned"):
        build.build_variant(spec, str(base), tmp_path / "v")
    assert not (tmp_path / "v").exists() and not list(tmp_path.glob(".*building*"))
