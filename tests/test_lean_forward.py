"""The engine's lean forward pass computes what the model's own forward computes, restores the
checkpoint's weights, and steps aside for any model it does not cover."""

import pytest
import torch

from comptrust.backends import engine as E
from comptrust.backends.lean_forward import engine_weights, lean_supported


def _model(kind: str = "llama", **kw):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    common = dict(vocab_size=101, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=256)
    model = Qwen2ForCausalLM(Qwen2Config(**common)) if kind == "qwen2" else LlamaForCausalLM(LlamaConfig(**common, **kw))
    with torch.no_grad():  # biases too: Qwen2's q/k/v biases, Llama's with attention_bias/mlp_bias
        for p in model.parameters():
            p.normal_(0, 0.2)
    return model.eval()


def _two_passes(model, lean: bool, mlp_rows: int | None = None, pack: bool = True):
    """A causal pass over 5 tokens of 2 rows, then a masked pass extending it by 4 tokens (row 1
    left-padded by one): both passes' last logits and the cache's keys. mlp_rows: the lean
    forward's MLP chunk, in tokens (its default covers these passes in one chunk); pack: its
    linears on oneDNN's prepacked weights where this torch runs them (gate and up apart), else
    on dense ones (gate and up one fused GEMM)."""
    E._register_attention()
    layers, kvh, hd = E._kv_shape(model)
    kb = [torch.zeros(2, kvh, 9, hd) for _ in range(layers)]
    vb = [torch.zeros(2, kvh, 9, hd) for _ in range(layers)]
    cache = E._buffer_cache(kb, vb)
    ids = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(1))
    allowed = E._causal_tail(5, 9, "cpu")[None, None].repeat(2, 1, 1, 1)
    allowed[1, ..., 5] = False
    mask = E._bias(allowed, torch.float32)
    with torch.inference_mode(), E._engine_attention(model), engine_weights(model, lean=lean, pack=pack) as fwd:
        assert (fwd is not None) == lean
        if mlp_rows is not None:
            fwd.mlp_rows = mlp_rows

        def run(x, pos, m):
            if fwd is not None:
                return fwd(x, pos, m, cache, E._attend)
            return model(input_ids=x, position_ids=pos, attention_mask=m, past_key_values=cache, use_cache=True,
                         logits_to_keep=1).logits[:, -1]

        first = run(ids[:, :5], torch.arange(5)[None].repeat(2, 1), None)
        second = run(ids[:, 5:], torch.arange(5, 9)[None].repeat(2, 1), mask)
    return first, second, torch.stack(kb)


# mlp_rows 3 and 4: the passes of 10 and 8 tokens go through the MLP in row chunks, with a
# remainder in each (3) or the second pass exactly two chunks (4); pack False: the dense weights
@pytest.mark.parametrize("kind,kw,mlp_rows,pack", [
    ("llama", {}, None, True), ("llama", {"attention_bias": True, "mlp_bias": True}, None, True),
    ("llama", {"attention_bias": True}, None, True), ("qwen2", {}, None, True),
    ("llama", {"mlp_bias": True}, 3, True), ("llama", {"mlp_bias": True}, 4, True),
    ("llama", {"mlp_bias": True}, 3, False)])
def test_lean_forward_matches_the_models_forward(kind, kw, mlp_rows, pack):
    model = _model(kind, **kw)
    assert lean_supported(model)
    ref = _two_passes(model, lean=False)
    got = _two_passes(model, lean=True, mlp_rows=mlp_rows, pack=pack)
    for a, b in zip(got, ref):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4), (a - b).abs().max()


@pytest.mark.parametrize("pack", [False, True])
def test_checkpoint_weights_are_restored_after_the_engine(pack):
    from comptrust.backends.lean_forward import packed_linear_works

    if pack and not packed_linear_works():
        pytest.skip("this torch build has no oneDNN linear on packed weights")
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with engine_weights(model, lean=True, pack=pack) as fwd:
        att = model.model.layers[0].self_attn
        assert fwd is not None
        if pack:  # the packed copies replace the decoder's weights, which hold no memory meanwhile
            assert fwd.layers[0].qkv.is_mkldnn and fwd.lm_w.is_mkldnn
            assert fwd.layers[0].gate.is_mkldnn and fwd.layers[0].up.is_mkldnn and fwd.layers[0].gu is None
            for m in (att.q_proj, att.o_proj, model.model.layers[1].mlp.down_proj):
                assert m.weight.untyped_storage().nbytes() == 4, m
            assert model.lm_head.weight.untyped_storage().nbytes() == model.lm_head.weight.numel() * 4
        else:  # q, k and v are views of one fused tensor while the engine runs
            assert att.q_proj.weight.untyped_storage().data_ptr() == att.v_proj.weight.untyped_storage().data_ptr()
    att = model.model.layers[0].self_attn
    assert att.q_proj.weight.untyped_storage().data_ptr() != att.v_proj.weight.untyped_storage().data_ptr()
    for n, p in model.named_parameters():
        assert p.is_contiguous(), n
        assert p.untyped_storage().nbytes() == p.numel() * 4, n
        assert torch.equal(p, before[n]), n


def test_weights_come_back_when_the_engine_fails_midway():
    """An error while the engine runs (here: packing stops halfway) leaves the checkpoint's
    weights as they were."""
    from comptrust.backends import lean_forward as LF

    if not LF.packed_linear_works():
        pytest.skip("this torch build has no oneDNN linear on packed weights")
    model = _model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    real, calls = torch.ops.mkldnn._reorder_linear_weight, []

    def flaky(w):
        calls.append(1)
        if len(calls) == 6:  # the second layer's q/k/v (a layer packs q/k/v, o, gate, up, down), after the first layer's are released
            raise RuntimeError("out of memory")
        return real(w)

    class Ops:
        _reorder_linear_weight = staticmethod(flaky)

    orig = torch.ops.mkldnn
    with pytest.raises(RuntimeError, match="out of memory"):
        try:
            torch.ops.mkldnn = Ops
            with engine_weights(model, lean=True):
                pass
        finally:
            torch.ops.mkldnn = orig
    for n, p in model.named_parameters():
        assert p.is_contiguous() and torch.equal(p, before[n]), n


def _hooked(model):
    model.model.layers[1].mlp.up_proj.register_forward_hook(lambda *a: None)


def _subclassed(model):
    class Quantized(torch.nn.Linear):
        pass

    old = model.model.layers[0].self_attn.k_proj
    new = Quantized(old.in_features, old.out_features, bias=False)
    new.weight = old.weight
    model.model.layers[0].self_attn.k_proj = new


def _gelu(model):
    model.config.hidden_act = "gelu"


def _gate_bias_only(model):  # gate and up share one fused GEMM, so one bias must cover both
    mlp = model.model.layers[0].mlp
    mlp.gate_proj.bias = torch.nn.Parameter(torch.zeros(mlp.gate_proj.out_features))


@pytest.mark.parametrize("change", [_hooked, _subclassed, _gelu, _gate_bias_only])
def test_models_it_does_not_cover_run_their_own_forward(change):
    model = _model()
    change(model)
    assert not lean_supported(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with engine_weights(model, lean=True) as fwd:
        assert fwd is None
    assert all(torch.equal(p, before[n]) and p.is_contiguous() for n, p in model.named_parameters())


def test_a_compressed_tensors_variant_runs_its_own_forward(tiny_model, tmp_path):
    """A quantized variant as the sweep builds it: compressed-tensors keeps nn.Linear modules but
    packs their weights and wraps their forward, so the lean pass must step aside; the engine then
    answers through the variant's own forward."""
    from comptrust.backends.base import GenItem
    from comptrust.backends.hf import HFBackend
    from comptrust.compress.build import build_variant
    from comptrust.compress.methods import CompressSpec
    from comptrust.models.resolve import resolve_model
    from comptrust.types import GenParams

    calib = tmp_path / "calib.txt"
    calib.write_text("\n".join(f"the river carries {i} small stones past quiet farms" for i in range(40)))
    out = tmp_path / "rtn4"
    build_variant(CompressSpec.make("rtn", bits=4, calib=str(calib), n_calib=4, seq_len=32), str(tiny_model), out)
    backend = HFBackend(resolve_model(str(out)), batch_size=4)
    assert backend.engine == "reuse" and not lean_supported(backend.model)
    items = [GenItem(f"k{i}", p, GenParams(max_new_tokens=4), 0, 1) for i, p in enumerate(["the river", "quiet farms"])]
    engine = {o.key: o.text for batch in backend.generate(items) for o in batch}
    backend.engine = "generate"
    assert engine == {o.key: o.text for batch in backend.generate(items) for o in batch}
    assert sorted(engine) == ["k0", "k1"]


def test_passes_run_together_equal_each_pass_run_alone():
    """LeanForward.run over independent passes (different rows, lengths, masks and caches) gives
    every pass the logits and cache contents it gets alone: only the linear layers are shared."""
    from comptrust.backends.lean_forward import Pass

    model = _model("llama")
    E._register_attention()
    layers, kvh, hd = E._kv_shape(model)
    gen = torch.Generator().manual_seed(2)

    def caches():
        bufs = [([torch.zeros(r, kvh, 12, hd) for _ in range(layers)], [torch.zeros(r, kvh, 12, hd) for _ in range(layers)])
                for r in (2, 1, 3)]
        return bufs, [E._buffer_cache(k, v) for k, v in bufs]

    ids = [torch.randint(0, 101, (r, 12), generator=gen) for r in (2, 1, 3)]
    pad = E._causal_tail(4, 9, "cpu")[None, None].repeat(3, 1, 1, 1)
    pad[2, ..., 4] = False  # row 2 of the third prompt left-padded by one

    def first(cs):  # causal passes of 4, 7 and 4 tokens
        return [Pass(ids[0][:, :4], torch.arange(4)[None].repeat(2, 1), None, cs[0]),
                Pass(ids[1][:, :7], torch.arange(7)[None], None, cs[1]),
                Pass(ids[2][:, :4], torch.arange(4)[None].repeat(3, 1), None, cs[2])]

    def second(cs):  # masked extensions: 3 tokens, 1 token (a decode-like row), 5 tokens padded
        return [Pass(ids[0][:, 4:7], torch.arange(4, 7)[None].repeat(2, 1),
                     E._bias(E._causal_tail(4, 7, "cpu")[None, None], torch.float32), cs[0]),
                Pass(ids[1][:, 7:8], torch.tensor([[7]]), E._bias(E._causal_tail(7, 8, "cpu")[None, None], torch.float32), cs[1]),
                Pass(ids[2][:, 4:9], torch.arange(4, 9)[None].repeat(3, 1), E._bias(pad, torch.float32), cs[2])]

    with torch.inference_mode(), E._engine_attention(model), engine_weights(model, lean=True) as fwd:
        bufs_t, cs = caches()
        together = fwd.run(first(cs), E._attend) + fwd.run(second(cs), E._attend)
        bufs_a, cs = caches()
        alone = [fwd.run([p], E._attend)[0] for p in first(cs)] + [fwd.run([p], E._attend)[0] for p in second(cs)]
    assert [t.shape for t in together] == [a.shape for a in alone] == [(r, 101) for r in (2, 1, 3) * 2]
    for t, a in zip(together, alone):
        assert torch.allclose(t, a, atol=1e-5, rtol=1e-5), (t - a).abs().max()
    for (kt, vt), (ka, va) in zip(bufs_t, bufs_a):
        assert torch.allclose(torch.stack(kt), torch.stack(ka), atol=1e-5) and torch.allclose(torch.stack(vt), torch.stack(va), atol=1e-5)
