"""The engine's forward pass for Llama-family decoders: the model's own arithmetic in fewer ops.

transformers' forward costs the engine two things on CPU that are not the model's arithmetic:
per-op Python and dispatch work (a decode step is ~50 small ops a layer), and the narrow GEMMs of
separate q/k/v and gate/up projections. This pass runs the same computation from the same
weights with q/k/v and gate/up each one GEMM over weights fused into one tensor (the modules'
weights become views into it while the engine runs: no extra memory; on oneDNN's prepacked
weights gate and up run apart, see LeanForward.pack), RMSNorm as one op, and
only the last position through the final norm and the output head. Rotary embeddings come from
the model's own rotary module and rotation function, so every RoPE variant transformers
implements is the model's own. Attention and the KV cache are the engine's (its cache layers'
`update` and its attention function), exactly what the model's forward would call.

Used only where it is the same model: the architectures listed in LEAN_MODEL_TYPES, every
projection a plain torch.nn.Linear (a quantized or hooked module runs its own forward, so it falls
back to transformers), SiLU-gated MLP, no module hooks. Anything else runs transformers' forward.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from dataclasses import dataclass

# decoders whose forward is embed -> [rmsnorm, attention, residual, rmsnorm, silu-gated MLP,
# residual] x layers -> rmsnorm -> lm_head, with nothing else (no embedding scale, no extra norms)
LEAN_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
# tokens per chunk of the MLP (norm, gate/up, product, down: per token, so chunks are the same
# arithmetic): over a long prefill forward the [tokens, 2 x intermediate] activations of one GEMM
# are tens of MB, fresh pages that fall out of cache before the product and the down projection
# read them. Measured on 2 cores of an Intel Xeon (AVX-512), the embedded model's MLPs over 30
# layers: 2,752 tokens 2.05 s whole against 1.76 s in chunks of 1,024 (1.79 at 512, 1.92 at 128);
# 8,192 tokens 5.85 against 4.93 s; 918 tokens the same either way (docs/engine.md)
MLP_ROWS = 1024


@dataclass
class _Layer:
    ln1: object  # the layer's RMSNorm modules (_rms_norm)
    qkv: object  # [q + 2 kv, hidden]: the fused weight (q/k/v_proj.weight are views of it)
    qkv_b: object
    o: object
    o_b: object
    ln2: object
    gu: object  # [2 intermediate, hidden]; None on packed weights, where gate and up run apart (LeanForward.pack)
    gu_b: object
    down: object
    down_b: object
    scaling: float
    gate: object = None  # packed gate and up weights [intermediate, hidden], and their biases
    gate_b: object = None
    up: object = None
    up_b: object = None


def _plain_linear(m) -> bool:
    """An nn.Linear whose forward is F.linear(x, weight, bias): not a subclass, no hooks, no
    instance-level forward (compressed-tensors wraps a quantized module that way, with packed
    parameters in place of `weight`), no parameters or buffers but weight and bias."""
    import torch

    return (type(m) is torch.nn.Linear and "forward" not in vars(m) and not (m._forward_hooks or m._forward_pre_hooks)
            and isinstance(m._parameters.get("weight"), torch.Tensor) and set(m._parameters) <= {"weight", "bias"}
            and not m._buffers)


def lean_supported(model) -> bool:
    """Whether LeanForward computes exactly what this model's forward computes."""
    cfg = model.config
    if getattr(cfg, "model_type", None) not in LEAN_MODEL_TYPES or getattr(cfg, "hidden_act", None) != "silu":
        return False
    base = getattr(model, "model", None)
    if not all(hasattr(base, a) for a in ("embed_tokens", "layers", "norm", "rotary_emb")):
        return False
    if not _plain_linear(getattr(model, "lm_head", None)) or hasattr(model, "_hf_hook"):
        return False
    for layer in base.layers:
        att, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        mods = [getattr(att, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        mods += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        if not all(_plain_linear(m) for m in mods):
            return False
        q, k, v, _, gate, up, _ = mods
        # the fused GEMMs take one bias each: q/k/v all or none, gate/up both or neither (o and
        # down keep their own)
        if len({q.bias is None, k.bias is None, v.bias is None}) > 1 or (gate.bias is None) != (up.bias is None):
            return False
        for norm in (getattr(layer, "input_layernorm", None), getattr(layer, "post_attention_layernorm", None)):
            if not hasattr(norm, "weight") or not hasattr(norm, "variance_epsilon"):
                return False
        if any(getattr(m, "_hf_hook", None) is not None for m in (layer, att, mlp)):
            return False
    return hasattr(base.norm, "variance_epsilon") and hasattr(base.layers[0].self_attn, "scaling")


def _fuse(mods, cpu_layout: bool):
    """One weight tensor for `mods` (stacked along the output dim), each module's weight becoming
    a view into it; on CPU stored [in, out] (see engine_weights)."""
    import torch

    w = torch.cat([m.weight.data for m in mods], 0)
    if cpu_layout:
        w = w.t().contiguous().t()
    r = 0
    for m in mods:
        n = m.weight.shape[0]
        m.weight.data = w[r:r + n]
        r += n
    return w


@functools.cache
def packed_linear_works() -> bool:
    """Whether this torch build runs oneDNN's linear on prepacked fp32 weights (x86 builds with
    MKL-DNN do), checked once on a small case against F.linear."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w, b, x = torch.randn(24, 16), torch.randn(24), torch.randn(3, 16)
        got = packed_linear(x, pack_weight(w), b)
        return bool(torch.allclose(got, torch.nn.functional.linear(x, w, b), atol=1e-4, rtol=1e-4))
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def pack_weight(w):
    """A linear weight [out, in] prepacked into oneDNN's blocked layout, for packed_linear."""
    import torch

    return torch.ops.mkldnn._reorder_linear_weight(w)


def packed_linear(x, w, b):
    """F.linear(x, W, b) where w is pack_weight(W)."""
    import torch

    return torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], "")


def _release(t):
    """A tensor of t's shape and dtype that holds no memory (one element, zero strides): what a
    module's weight points at while its values live in a packed copy."""
    import torch

    return torch.zeros(1, dtype=t.dtype, device=t.device).expand(t.shape)


@contextlib.contextmanager
def engine_weights(model, *, lean: bool, pack: bool = True):
    """The model's weights as the engine runs them; yields a LeanForward, or None when the model
    runs its own forward. With `lean` (where lean_supported) q/k/v are fused into one tensor, and
    so are gate/up where the weights are not packed (packed, they run as two GEMMs). Then, on CPU
    in fp32 with `pack` (and a torch whose oneDNN runs it, packed_linear_works), every projection and the output head run as oneDNN linears on weights
    prepacked once into its blocked layout (measured on 2 cores of an AMD EPYC with AVX2, the
    decoder's GEMMs of 30 layers: 68 against 126 ms at 16 rows, 160 against 228 at 64, 859 against
    1002 at 512; the head at 48 rows 31 against 64 ms; on an Intel AVX2 machine an earlier session
    found the decoder's GEMMs no faster and the head faster; docs/engine.md). The packed copy
    replaces the decoder's weights, which hold no memory meanwhile (_release) and are unpacked on
    exit, bit-exact; the head is packed beside its own weight, which the input embedding may share. Otherwise, on CPU every
    linear weight [out, in] is held in [in, out] storage (same values and shape, transposed
    strides: MKL's small-M GEMM was faster on it on an AVX2 machine, 54 against 75 ms at 16 rows,
    and 6% slower at 48 rows on an AVX-512 one). On exit every weight is a contiguous tensor of its
    own again (other code, e.g. saving a checkpoint, expects that); the decoder's weights are never
    held twice, but for one fused tensor while it is split back."""
    import torch

    first = next(model.parameters())
    cpu = first.device.type == "cpu"
    use_lean = lean and lean_supported(model)
    packing = use_lean and pack and cpu and first.dtype == torch.float32 and packed_linear_works()
    groups: list[tuple] = []  # modules whose weights share one fused tensor
    fused: list[tuple[object, object]] = []  # per layer (qkv, gate_up)
    if use_lean:
        for layer in model.model.layers:
            att, mlp = layer.self_attn, layer.mlp
            groups.append((att.q_proj, att.k_proj, att.v_proj))
            qkv = _fuse(groups[-1], cpu and not packing)
            gu = None  # packed, gate and up run apart from their own weights (LeanForward.pack): no fused copy
            if not packing:
                groups.append((mlp.gate_proj, mlp.up_proj))
                gu = _fuse(groups[-1], cpu)
            fused.append((qkv, gu))
    done = {id(m.weight) for g in groups for m in g}
    moved = []  # weights held transposed
    if cpu and not packing:
        for mod in model.modules():
            w = getattr(mod, "weight", None)
            if isinstance(mod, torch.nn.Linear) and w is not None and id(w) not in done and w.dim() == 2 \
                    and w.is_contiguous():
                done.add(id(w))
                moved.append(w)
                w.data = w.data.t().contiguous().t()
    fwd = LeanForward(model, fused) if use_lean else None
    del fused
    unpack: list[tuple[tuple, object]] = []  # (modules sharing one packed weight, the packed weight)
    try:
        if packing:
            fwd.pack(model, unpack)
        yield fwd
    finally:
        if fwd is not None:
            fwd.layers.clear()  # drop its references, so a fused tensor goes once split back
            fwd.lm_w = None
        for mods, packed in unpack:  # the decoder's weights back from their packed copies
            w = packed.to_dense()
            r = 0
            for m in mods:
                n = m.weight.shape[0]
                m.weight.data = w[r:r + n]
                r += n
        for w in moved:
            w.data = w.data.contiguous()
        for g in groups:
            for m in g:  # a copy: a row slice of the fused tensor is contiguous but shares its storage
                m.weight.data = m.weight.data.clone(memory_format=torch.contiguous_format)


@dataclass
class Pass:
    """One forward pass: rows of token ids [b, t] at positions [b, t], the additive mask its
    attention takes (None: causal, unpadded), and the cache whose layers store its keys/values."""
    ids: object
    pos: object
    mask: object
    cache: object


class LeanForward:
    """fwd(input_ids, position_ids, mask, cache, attention) -> the last position's logits [B, vocab];
    fwd.run(passes, attention) runs several independent passes as one.

    `cache.layers[i].update(k, v)` stores and returns the layer's keys/values, `attention(q, k, v,
    mask, scaling)` attends: the same calls the model's own attention makes."""

    def __init__(self, model, fused):
        import torch

        base = model.model
        self.embed = base.embed_tokens
        self.rotary = base.rotary_emb
        mod = sys.modules[type(base.layers[0].self_attn).__module__]
        self.rope = mod.apply_rotary_pos_emb  # the model's own rotation (its rotate_half convention)
        self.norm = base.norm
        self.lm_w, self.lm_b = model.lm_head.weight, model.lm_head.bias
        att0 = base.layers[0].self_attn
        self.head_dim = getattr(att0, "head_dim", None) or att0.q_proj.weight.shape[0] // model.config.num_attention_heads
        self.n_q = att0.q_proj.weight.shape[0]
        self.n_kv = att0.k_proj.weight.shape[0]
        self.inter = base.layers[0].mlp.gate_proj.weight.shape[0]
        self.layers = []
        for layer, (qkv, gu) in zip(base.layers, fused):
            att, mlp = layer.self_attn, layer.mlp
            qkv_b = None if att.q_proj.bias is None else _cat_bias(att.q_proj, att.k_proj, att.v_proj)
            gu_b = None if gu is None or mlp.gate_proj.bias is None else _cat_bias(mlp.gate_proj, mlp.up_proj)
            self.layers.append(_Layer(
                layer.input_layernorm,
                qkv, qkv_b, att.o_proj.weight, att.o_proj.bias,
                layer.post_attention_layernorm,
                gu, gu_b, mlp.down_proj.weight, mlp.down_proj.bias,
                att.scaling))
        self.linear = torch.nn.functional.linear  # or packed_linear, after pack()
        self.mlp_rows = MLP_ROWS

    def pack(self, model, record: list) -> None:
        """Run every projection and the head as oneDNN linears on prepacked weights (see
        engine_weights): each projection's packed weight replaces the dense one, whose modules then
        hold no memory; `record` gets (modules, packed weight) as each is done, for engine_weights
        to unpack on exit, however far this got."""
        for lay, layer in zip(self.layers, model.model.layers):
            att, mlp = layer.self_attn, layer.mlp
            # gate and up as two GEMMs, each writing a contiguous output that SiLU and the product
            # then update in place: the same values as the fused GEMM's halves (bit-identical, checked
            # at 1-1,024 rows), without a strided SiLU over the fused output and a third tensor for
            # the product (on 2 cores of an AMD EPYC Zen 4, 30 layers' MLPs over 2,752 tokens ran at
            # 180 against 172 GFLOP/s; the limit-8 benchmark slice, 7 interleaved pairs: faster in 6
            # by 1.0-4.0 s, slower in 1 by 7.0 s, every answer identical; docs/engine.md)
            lay.gate_b, lay.up_b = mlp.gate_proj.bias, mlp.up_proj.bias
            for name, mods, dense in (("qkv", (att.q_proj, att.k_proj, att.v_proj), lay.qkv), ("o", (att.o_proj,), lay.o),
                                      ("gate", (mlp.gate_proj,), mlp.gate_proj.weight), ("up", (mlp.up_proj,), mlp.up_proj.weight),
                                      ("down", (mlp.down_proj,), lay.down)):
                packed = pack_weight(dense)
                record.append((mods, packed))
                setattr(lay, name, packed)
                for m in mods:
                    m.weight.data = _release(m.weight)
            lay.gu = lay.gu_b = None
        self.lm_w = pack_weight(self.lm_w)
        self.linear = packed_linear

    def __call__(self, input_ids, position_ids, mask, cache, attention):
        return self.run([Pass(input_ids, position_ids, mask, cache)], attention)[0]

    def run(self, passes, attention) -> list:
        """Independent passes as one forward: every linear layer runs once over all their tokens
        (a short pass alone is dominated by reading the weights and by the small-M GEMM), while
        each pass attends over its own cache with its own mask. Per-token arithmetic is the same
        as running each pass alone. Returns each pass's last-position logits [b, vocab]."""
        import torch
        import torch.nn.functional as F

        shapes = [tuple(p.ids.shape) for p in passes]
        offs = [0]
        for b, t in shapes:
            offs.append(offs[-1] + b * t)
        one = len(passes) == 1
        ids = passes[0].ids.reshape(-1) if one else torch.cat([p.ids.reshape(-1) for p in passes])
        pos = passes[0].pos.reshape(-1) if one else torch.cat([p.pos.reshape(-1) for p in passes])
        h = self.embed(ids)  # [tokens, hidden]
        n = h.shape[0]
        cos, sin = self.rotary(h[None], pos[None])
        d, nq, nkv, inter = self.head_dim, self.n_q, self.n_kv, self.inter
        for i, layer in enumerate(self.layers):
            x = _rms_norm(layer.ln1, h)
            qkv = self.linear(x, layer.qkv, layer.qkv_b)
            q = qkv[:, :nq].view(1, n, -1, d).transpose(1, 2)
            k = qkv[:, nq:nq + nkv].view(1, n, -1, d).transpose(1, 2)
            v = qkv[:, nq + nkv:].view(n, -1, d)
            q, k = self.rope(q, k, cos, sin)  # [1, heads, tokens, d]
            outs = []
            for p, (b, t), o in zip(passes, shapes, offs):
                qp = q[0, :, o:o + b * t].unflatten(1, (b, t)).transpose(0, 1)  # [b, heads, t, d]
                kp = k[0, :, o:o + b * t].unflatten(1, (b, t)).transpose(0, 1)
                vp = v[o:o + b * t].view(b, t, -1, d).transpose(1, 2)
                kp, vp = p.cache.layers[i].update(kp, vp)
                outs.append(attention(qp, kp, vp, p.mask, layer.scaling).reshape(b * t, nq))
            h += self.linear(outs[0] if one else torch.cat(outs), layer.o, layer.o_b)
            for a in range(0, n, self.mlp_rows):  # per token: rows in chunks whose activations stay in cache
                hs = h[a:a + self.mlp_rows]
                x = _rms_norm(layer.ln2, hs)
                if layer.gu is None:  # packed: gate and up apart (pack)
                    act = F.silu(self.linear(x, layer.gate, layer.gate_b), inplace=True)
                    act.mul_(self.linear(x, layer.up, layer.up_b))
                else:
                    gu = self.linear(x, layer.gu, layer.gu_b)
                    # a contiguous product: oneDNN's linear copies a strided input (the gate's columns of gu) first
                    act = torch.mul(F.silu(gu[:, :inter], inplace=True), gu[:, inter:])
                hs += self.linear(act, layer.down, layer.down_b)
        last = torch.cat([torch.arange(o + t - 1, o + b * t, t, device=h.device) for (b, t), o in zip(shapes, offs)])
        logits = self.linear(_rms_norm(self.norm, h[last]), self.lm_w, self.lm_b)
        return list(logits.split([b for b, _ in shapes]))


def _rms_norm(mod, x):
    """The model's RMSNorm: one fused op in fp32, where it is the same arithmetic; in half precision
    the module itself, which rounds to the input dtype before the weight multiply."""
    import torch

    if x.dtype == torch.float32:
        return torch.nn.functional.rms_norm(x, (x.shape[-1],), mod.weight, mod.variance_epsilon)
    return mod(x)


def _cat_bias(*mods):
    import torch

    return torch.cat([m.bias for m in mods])
