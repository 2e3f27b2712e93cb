"""The generation engine behind the HF backend: each token's work is done once.

- **Prefill once per prompt**: the n samples of a prompt share one prefill; its KV rows are copied
  to every sample, and each sample then draws with noise keyed by its own seed and step
  (backends.sampling), so a sample's text depends only on (prompt, params, seed), never on its
  batch or on the other samples present.
- **Shared-prefix reuse**: unique prompts are sorted by their token ids, and a small dynamic
  programme cuts the sorted list into groups that share a token prefix (system prompt, task text,
  few-shot demonstrations); a group's prefix is prefilled once (batch 1) and broadcast into the
  KV rows of every member, then the members' suffixes are prefilled together.
- **Prefill passes together**: the groups of the buckets admitted at one time make their passes
  in shared forwards (LeanForward.run: one GEMM per projection over every pass's tokens, attention
  per pass), in waves that keep the store's reuse what it is with groups one at a time.
- **Continuous decoding**: buckets of similar-length prompts (each with its own preallocated KV
  buffer) decode together, one forward per step over every active row, each bucket attending over
  its own buffer; a finished bucket's room is refilled by the next prefill. On CPU a bucket's
  decode attention reads KV that several rows hold once (a group's prefix, a prompt for its
  samples) and merges the parts by log-sum-exp.
- **No waste in the loop**: no per-step torch.cat over the whole cache, attention sees
  grouped-query heads without repeat_kv copies, only the last position's logits are computed,
  finished rows are dropped from their bucket, stop strings are checked on a short token tail,
  masks are additive (converted once a pass, not once a layer), and on CPU the linear weights sit
  in oneDNN's prepacked layout (lean forward, fp32) or in the storage order MKL's small-M GEMM
  prefers (any other model).

Each pass is the model's own arithmetic: Llama-family decoders run backends.lean_forward (the same
computation in fewer ops, q/k/v and gate/up fused), any other model its own forward; either gets
position ids, a 4-D additive mask (prefix + left-padded suffix + generated tokens) and a cache
whose layers write into the engine's buffers.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from dataclasses import dataclass, field
from typing import Iterator, Sequence

from ..types import GenParams
from .base import GenItem, GenOut, finished_text
from .lean_forward import LeanForward, Pass, engine_weights

ATTN_NAME = "comptrust_gqa"
GROUP_OVERHEAD_TOKENS = 8  # a forward pass's fixed cost, in prompt-token equivalents, for grouping
PREFILL_CHUNK = 256  # queries per attention call in a long masked prefill pass
MIN_REUSE_TOKENS = 16  # a stored prefix shorter than this is not worth a copy
# decode attention splits a bucket by who holds the same KV (_split_attention: a group's prompts
# share its prefix, a prompt's samples the rest of the prompt) where each extra attention call
# this adds saves reading at least this many KV columns x rows a layer; below it the call costs
# more than the bytes (measured on 2 cores, stereotype --limit 48: at 256 decode attention took
# 10.5 s against 13.9 s unsplit, at 1,024 it kept half that gain, at 2,048 none; at 1 the limit-8
# slice of all 8 dimensions spent ~45% more on attention)
SPLIT_MIN_SAVED = 256
# devices where a masked pass of several queries uses sdpa's own grouped-query path: on CPU,
# folding the heads into the query length instead copies the mask once per query head (2 rows x
# 256 queries x 1024 keys: 6 MB a layer); outputs are bit-identical in every shape measured, and
# on the limit-8 slice of benchmarks/eval_throughput.py the prefill attention took 4.01 s against
# 4.27 s. Not on GPUs: no run there measured which kernel sdpa picks for it.
KERNEL_GQA_DEVICES = frozenset({"cpu"})


# -- grouping (pure) -----------------------------------------------------------------------------
def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class PrefillGroup:
    members: tuple[int, ...]  # indices into the unique-prompt list (sorted order)
    prefix_len: int  # tokens prefilled once for all members (0: no shared pass)


def plan_groups(prompts: Sequence[Sequence[int]], n_rows: Sequence[int], *, max_rows: int,
                max_prefill_tokens: int, row_cost: Sequence[int] | None = None,
                max_row_cost: int | None = None) -> list[PrefillGroup]:
    """Cut the unique prompts into prefix-sharing groups with the least prefill work.

    prompts: token ids of the unique prompts; n_rows: samples (decode rows) each needs. Sorted
    lexicographically, prompts that share a prefix are neighbours, so a group is a run of
    neighbours; the cost of a group is its prefix once + every member's suffix padded to the
    longest + a fixed per-pass overhead. A group of several members needs a prefix of at least one
    token (a left-padded row with nothing to attend to would make NaNs) and leaves every member at
    least one suffix token (that is where its first logits come from).
    Constraints: rows <= max_rows, members x padded suffix <= max_prefill_tokens (single prompts
    are exempt), sum(row_cost) <= max_row_cost (KV memory).
    """
    order = sorted(range(len(prompts)), key=lambda i: list(prompts[i]))
    toks = [prompts[i] for i in order]
    rows = [n_rows[i] for i in order]
    rc = [row_cost[i] for i in order] if row_cost is not None else [0] * len(order)
    adj = [0] + [_lcp(toks[k - 1], toks[k]) for k in range(1, len(toks))]
    inf = float("inf")
    best = [0.0] + [inf] * len(toks)
    cut: list[tuple[int, int]] = [(0, 0)] * (len(toks) + 1)
    for j in range(len(toks)):
        lcp, maxlen, minlen, nrows, cost_rows = len(toks[j]), 0, 1 << 60, 0, 0
        for i in range(j, -1, -1):
            if i < j:
                lcp = min(lcp, adj[i + 1])
            maxlen, minlen = max(maxlen, len(toks[i])), min(minlen, len(toks[i]))
            nrows += rows[i]
            cost_rows += rc[i]
            u = j - i + 1
            if u > 1 and (nrows > max_rows or (max_row_cost is not None and cost_rows > max_row_cost)):
                break
            p = 0 if u == 1 else min(lcp, minlen - 1)
            if u > 1 and p < 1:
                break  # lcp only shrinks further back
            s = maxlen - p
            if u > 1 and u * s > max_prefill_tokens:
                break
            c = best[i] + p + u * s + GROUP_OVERHEAD_TOKENS
            if c < best[j + 1]:
                best[j + 1], cut[j + 1] = c, (i, p)
    groups: list[PrefillGroup] = []
    j = len(toks)
    while j > 0:
        i, p = cut[j]
        groups.append(PrefillGroup(tuple(order[i:j]), p))
        j = i
    groups.reverse()
    return groups


class PrefixStore:
    """KV of prefixes already prefilled in this generate call, for groups that plan_groups put
    apart (a group holds <= max_rows rows and one prefix level, and buckets go by length, so a
    system prompt or a few-shot block shared by many groups would otherwise run once per group).
    Least recently used entries go first once `max_tokens` is reached. Lookups compare token ids,
    so a hit is an exact prefix: the reused KV is what the model computes for those tokens (up to
    float rounding of a different pass shape)."""

    def __init__(self, max_tokens: int, min_tokens: int = MIN_REUSE_TOKENS):
        from collections import OrderedDict

        self.max_tokens, self.min_tokens = max_tokens, min_tokens
        self.entries: OrderedDict[int, tuple] = OrderedDict()  # id -> (token ids, keys, values)
        self.tokens = 0
        self._next = 0
        self.hit_tokens = 0  # prefill tokens served from the store (benchmarks, tests)

    def _best(self, want: Sequence[int]) -> tuple[int, int | None]:
        import numpy as np

        w = np.asarray(want)
        best, hit = 0, None
        for key, (t, _, _) in self.entries.items():
            n = min(len(t), len(w))
            if n <= best:
                continue
            eq = t[:n] == w[:n]
            m = n if eq.all() else int(eq.argmin())
            if m > best:
                best, hit = m, key
        return best, hit

    def peek(self, want: Sequence[int]) -> int:
        """How many leading tokens of `want` a lookup would serve now (0 below min_tokens)."""
        best, _ = self._best(want)
        return best if best >= self.min_tokens else 0

    def lookup(self, want: Sequence[int]):
        """(m, keys, values) of the stored prefix sharing the most leading tokens with `want`, m of
        them (0 and None below min_tokens)."""
        best, hit = self._best(want)
        if best < self.min_tokens:
            return 0, None, None
        self.entries.move_to_end(hit)
        self.hit_tokens += best
        _, k, v = self.entries[hit]
        return best, k, v

    def keeps(self, n: int) -> bool:
        """Whether add() stores a prefix of n tokens."""
        return self.min_tokens <= n <= self.max_tokens

    def add(self, tokens: Sequence[int], keys: list, values: list) -> None:
        """Store the KV of `tokens` (per layer [1, kv heads, len(tokens), head dim], cloned here)."""
        import numpy as np

        n = len(tokens)
        if not self.keeps(n):
            return
        while self.tokens + n > self.max_tokens:
            _, (t, _, _) = self.entries.popitem(last=False)
            self.tokens -= len(t)
        self.entries[self._next] = (np.asarray(tokens), [k.clone() for k in keys], [v.clone() for v in values])
        self._next += 1
        self.tokens += n


# -- model plumbing ------------------------------------------------------------------------------
def _bias(allowed, dtype):
    """The additive attention mask of a boolean one (0 where True, -inf where False): the
    attention kernel adds it as is, where a boolean mask would be converted in every layer (a
    masked attention call runs ~20% faster on it)."""
    import torch

    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


def _causal_tail(start: int, n: int, device):
    """[n - start, n] bool: query i (position start + i) attends keys 0..start + i; the mask of
    every pass that extends a sequence already in the cache by positions start..n-1."""
    import torch

    return torch.arange(n, device=device)[None, :] <= torch.arange(start, n, device=device)[:, None]


def _gqa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """sdpa over grouped-query heads without a repeat_kv copy of the cache: the heads folded into
    the query length, or for a masked multi-query pass on CPU the kernel's own grouped-query path.

    query [B, H, q, d], key/value [B, Hkv, k, d], mask [B|1, 1, q, k] additive (0 = attend, -inf
    = not; see _bias)."""
    import torch

    if isinstance(key, _BucketKV):  # a decode step over several buckets, each with its own KV buffer
        return key.attend(query, scaling), None
    b, h, q, d = query.shape
    hkv = key.shape[1]
    rep = h // hkv
    if attention_mask is None:  # an unpadded causal pass (a group's prefix): skip the upper triangle
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, is_causal=q > 1, scale=scaling,
                                                               enable_gqa=rep > 1)
        return out.transpose(1, 2).contiguous(), None
    if q > PREFILL_CHUNK and key.shape[2] >= q:
        # every masked pass the engine makes is causal with its queries the last q key positions,
        # so a chunk of queries never attends past its own last position: cutting the keys there
        # skips the upper triangle the flash kernel would otherwise compute under the mask
        # (measured: 2 rows x 817 queries over 886 keys, 32 ms -> 16 ms a layer)
        k0 = key.shape[2] - q
        outs = [_gqa_attention(module, query[:, :, a:a + PREFILL_CHUNK], key[:, :, :k0 + a + PREFILL_CHUNK],
                               value[:, :, :k0 + a + PREFILL_CHUNK],
                               attention_mask[..., a:a + PREFILL_CHUNK, :k0 + a + PREFILL_CHUNK], scaling=scaling)[0]
                for a in range(0, q, PREFILL_CHUNK)]
        return torch.cat(outs, dim=1), None
    if q > 1 and query.device.type in KERNEL_GQA_DEVICES:
        out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                               scale=scaling, enable_gqa=rep > 1)
        return out.transpose(1, 2).contiguous(), None
    query = query.reshape(b, hkv, rep * q, d)  # heads are grouped contiguously by kv head
    if q > 1:
        m = attention_mask
        attention_mask = m.unsqueeze(2).expand(m.shape[0], 1, rep, q, m.shape[-1]).reshape(m.shape[0], 1, rep * q, m.shape[-1])
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling)
    out = out.reshape(b, h, q, d).transpose(1, 2).contiguous()
    return out, None


def _attend(query, key, value, mask, scaling):
    """The engine's attention as LeanForward calls it: [B, q, heads, head dim]."""
    return _gqa_attention(None, query, key, value, mask, scaling=scaling)[0]


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTN_NAME, _gqa_attention)
    AttentionMaskInterface.register(ATTN_NAME, sdpa_mask)


@contextlib.contextmanager
def _engine_attention(model):
    cfgs = {id(c): c for c in (model.config, getattr(model.config, "text_config", None)) if c is not None}
    saved = {k: c._attn_implementation for k, c in cfgs.items()}
    for c in cfgs.values():
        c._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        for k, c in cfgs.items():
            c._attn_implementation = saved[k]


def supports_engine(model) -> bool:
    """Plain causal decoders with full attention in every layer (Llama, Mistral without sliding
    window, Qwen2, ...); anything else uses transformers' generate."""
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False) or getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", True):
        return False
    if any(t != "full_attention" for t in (getattr(cfg, "layer_types", None) or [])):
        return False
    return all(hasattr(cfg, a) for a in ("num_hidden_layers", "num_attention_heads", "hidden_size"))


def _kv_shape(model) -> tuple[int, int, int]:
    cfg = model.config
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return cfg.num_hidden_layers, kv, hd


def share_runs(srcs: Sequence[int]) -> list[tuple[int, int, int]]:
    """The runs (a, P, s) of a bucket's active rows: rows a..a + P*s - 1 are P prompts with s rows
    each (a prompt's samples are contiguous rows). srcs: each active row's prompt."""
    counts = [len(list(g)) for _, g in itertools.groupby(srcs)]
    runs, a = [], 0
    for s, g in itertools.groupby(counts):
        n_p = len(list(g))
        runs.append((a, n_p, s))
        a += n_p * s
    return runs


def _merge(out, lse, o, lo) -> None:
    """Fold the softmax part (o, lo) into (out, lse) in place: weights e^lse and e^lo."""
    import torch

    w = torch.sigmoid(lo - lse)
    out.lerp_(o, w.unsqueeze(-1))
    lse.copy_(torch.logaddexp(lse, lo))


def _split_attention(query, bk, layer: int, scaling):
    """Decode attention of one bucket split by who holds the same KV (CPU), each part read once:
    a cascade unit's rows (a group's prompts) share its prefix's columns, all queries of the unit
    attending to them in one call from one row; a prompt's samples share the rest of the prompt's
    columns [rest0, gen0) (P prompts x s samples as one [P, kv heads, s x rep, d] call per run of
    equal s, read from each prompt's first row); every row attends to its own generated columns
    [gen0, n]. The softmax parts are merged by their log-sum-exp: the same attention up to float
    rounding, reading shared KV once instead of once per row. query [rows, heads, 1, d]; returns
    [rows, 1, heads, d]."""
    import torch

    flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    k, h, _, d = query.shape
    kb, vb = bk.kb[layer], bk.vb[layer]
    hkv = kb.shape[1]
    rep = h // hkv
    g0, n, c = bk.gen0, bk.n + 1, bk.rest0
    q = query.reshape(k, hkv, rep, d)
    out, lse = flash(q, kb[:, :, g0:n], vb[:, :, g0:n], 0.0, False, scale=scaling)  # generated: all valid
    out = out.contiguous()
    for a, n_p, s in bk.share:
        b = a + n_p * s
        qs = q[a:b].view(n_p, s, hkv, rep, d).transpose(1, 2).reshape(n_p, hkv, s * rep, d)
        o, lo = flash(qs, kb[a:b:s, :, c:g0], vb[a:b:s, :, c:g0], 0.0, False,
                      attn_mask=bk.rest_bias[a:b:s, ..., c:g0], scale=scaling)
        _merge(out[a:b], lse[a:b], o.reshape(n_p, hkv, s, rep, d).transpose(1, 2).reshape(b - a, hkv, rep, d),
               lo.view(n_p, hkv, s, rep).transpose(1, 2).reshape(b - a, hkv, rep))
    for a, b, c0, c1 in bk.unit_rows:
        m = b - a
        qs = q[a:b].transpose(0, 1).reshape(1, hkv, m * rep, d)
        o, lo = flash(qs, kb[a:a + 1, :, c0:c1], vb[a:a + 1, :, c0:c1], 0.0, False, scale=scaling)
        _merge(out[a:b], lse[a:b], o.reshape(hkv, m, rep, d).transpose(0, 1), lo.reshape(hkv, m, rep).transpose(0, 1))
    return out.reshape(k, 1, h, d)


class _BucketKV:
    """What a decode step's cache layer hands the attention instead of one key/value tensor: the
    active buckets and the layer. Each bucket's rows attend over their own buffer up to their own
    length, so a short prompt never reads a long one's padding and the linear layers still see
    every active row at once."""

    __slots__ = ("layer", "buckets")

    def __init__(self, layer: int, buckets):
        self.layer, self.buckets = layer, buckets

    def attend(self, query, scaling):
        """[rows, q, heads, head dim], as the attention interface returns it."""
        import torch

        outs, r = [], 0
        for bk in self.buckets:
            k = len(bk.active)
            if bk.split:
                outs.append(_split_attention(query[r:r + k], bk, self.layer, scaling))
            else:
                outs.append(_gqa_attention(None, query[r:r + k], bk.kb[self.layer][:, :, :bk.n + 1],
                                           bk.vb[self.layer][:, :, :bk.n + 1], bk.bias[..., :bk.n + 1],
                                           scaling=scaling)[0])
            r += k
        return torch.cat(outs) if len(outs) > 1 else outs[0]


@functools.cache
def _layer_classes():
    """The two cache-layer classes, defined once (transformers is imported lazily). Classes made
    per call would sit in reference cycles holding the KV buffers until the garbage collector
    ran, so a finished bucket's memory would come back at a random later time."""
    from transformers.cache_utils import DynamicLayer

    class BucketLayer(DynamicLayer):
        """Decode step over several buckets: writes every bucket's new key/value into that
        bucket's buffer at its own column and hands the attention the buckets (_BucketKV)."""

        def __init__(self, i, buckets):
            super().__init__()
            self.i, self.buckets = i, buckets
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            r = 0
            for bk in self.buckets:
                k = len(bk.active)
                bk.kb[self.i][:, :, bk.n:bk.n + 1] = key_states[r:r + k]
                bk.vb[self.i][:, :, bk.n:bk.n + 1] = value_states[r:r + k]
                r += k
            return _BucketKV(self.i, self.buckets), None

        def get_seq_length(self) -> int:
            return max(bk.n for bk in self.buckets)

    class BufferLayer(DynamicLayer):
        """Prefill: writes into (a view of) one bucket's preallocated buffer."""

        def __init__(self, k, v):
            super().__init__()
            self.kbuf, self.vbuf = k, v
            self.n = 0
            self.rows = None  # row indices this forward writes; None = every row of the view
            self.dtype, self.device = k.dtype, k.device
            self.keys, self.values = k[:, :, :0], v[:, :, :0]
            self.is_initialized = True

        def update(self, key_states, value_states, *args, **kwargs):
            a, b = self.n, self.n + key_states.shape[-2]
            self.n = b
            if self.rows is not None:
                self.kbuf[self.rows, :, a:b] = key_states
                self.vbuf[self.rows, :, a:b] = value_states
                return self.kbuf[self.rows, :, :b], self.vbuf[self.rows, :, :b]
            self.kbuf[:, :, a:b] = key_states  # a batch-1 prefix broadcasts over the group's rows
            self.vbuf[:, :, a:b] = value_states
            r = key_states.shape[0]
            return self.kbuf[:r, :, :b], self.vbuf[:r, :, :b]

        def get_seq_length(self) -> int:
            return self.n

    return BucketLayer, BufferLayer


def _bucket_cache(buckets):
    """The cache of one decode step over several buckets."""
    from transformers.cache_utils import Cache

    bucket_layer, _ = _layer_classes()
    return Cache(layers=[bucket_layer(i, buckets) for i in range(len(buckets[0].kb))])


def _buffer_cache(kbufs, vbufs):
    """A transformers Cache whose layers write into (views of) our preallocated buffers."""
    from transformers.cache_utils import Cache

    _, buffer_layer = _layer_classes()
    return Cache(layers=[buffer_layer(k, v) for k, v in zip(kbufs, vbufs)])


# -- the engine ----------------------------------------------------------------------------------
@dataclass
class _Row:
    item: GenItem
    prompt_len: int
    seed: int  # the sample's seed (t>0 rows draw with it, backends.sampling)
    toks: list[int]
    src: int = -1  # the unique prompt it answers (its samples are contiguous rows of a bucket)
    done: bool = False

    @property
    def params(self) -> GenParams:
        return self.item.params


@dataclass
class _Bucket:
    """Prompts of similar length decoding together in one KV buffer (prefilled together)."""
    rows: list[_Row]  # every row, in buffer order at prefill
    active: list[int]  # indices into rows of the rows still in the buffers, aligned with them
    kb: list  # per layer [len(active), kv heads, cap, head dim]
    vb: list
    bias: object  # [len(active), 1, 1, cap] 0 / -inf: the columns each row attends to (_bias)
    pos: object  # [len(active)] the next position id of each row
    n: int  # columns filled
    logits: object  # [len(active), vocab] each active row's next-token logits
    next_ids: list[int] | None = None
    # split attention (_split_attention), on CPU: units of rows whose prompts share a group
    # prefix's columns [c0, c1), runs of prompts' samples, and whether the split pays
    split: bool = False
    units: list[tuple[int, int]] = field(default_factory=list)
    row_unit: list[int] = field(default_factory=list)  # aligned with active; -1: in no unit
    unit_rows: list[tuple[int, int, int, int]] = field(default_factory=list)  # (a, b, c0, c1): active rows a..b-1
    rest_bias: object = None  # [len(active), 1, 1, cap] 0 / -inf: the columns each row reads outside its unit
    rest0: int = 0  # the first column any row reads outside its unit
    share: list[tuple[int, int, int]] = field(default_factory=list)  # share_runs of the active rows
    gen0: int = 0  # the first generated column (every prompt ends at gen0 - 1)

    def plan_split(self) -> None:
        """share and split for the active rows: split where the columns it saves reading (a unit's
        prefix once instead of once per prompt, a prompt once instead of once per sample) reach
        SPLIT_MIN_SAVED per extra attention call."""
        self.share = share_runs([self.rows[a].src for a in self.active])
        saved = sum(n_p * (s - 1) for _, n_p, s in self.share) * (self.gen0 - self.rest0)
        for a, b, c0, c1 in self.unit_rows:
            saved += (len({self.rows[self.active[i]].src for i in range(a, b)}) - 1) * (c1 - c0)
        self.split = saved >= SPLIT_MIN_SAVED * (len(self.share) + len(self.unit_rows))

    def index_units(self) -> None:
        """unit_rows from row_unit (a unit's rows stay contiguous: compaction keeps the order)."""
        self.unit_rows, a = [], 0
        for u, run in itertools.groupby(self.row_unit):
            b = a + len(list(run))
            if u >= 0:
                self.unit_rows.append((a, b, *self.units[u]))
            a = b

    @property
    def kv_tokens(self) -> int:
        return self.kb[0].shape[0] * self.kb[0].shape[2]


@dataclass
class _Fill:
    """A bucket being prefilled: its groups, buffers and each group's result once done."""
    groups: list[PrefillGroup]
    longest: int  # the bucket's longest prompt: every prompt ends at this column
    kb: list
    vb: list
    valid: object  # [rows, cap] bool: the columns each row attends to
    done: list  # per group (first logits, shared columns, rows), filled by _prefill_wave


def _longest_shared(seqs: Sequence[Sequence[int]], want: Sequence[int]) -> int:
    return max((_lcp(s, want) for s in seqs), default=0)


class Engine:
    """Answers GenItems of any mix of parameters: rows carry their own temperature, top_p,
    max_new_tokens and stop strings, so requests of different dimensions share prefill passes and
    decode steps.

    Decoding is continuous: prompts are prefilled bucket by bucket (similar lengths, at most
    `bucket_rows` rows), and every decode step runs all active buckets' rows through the model at
    once (up to `max_rows`), each bucket attending over its own buffer; a bucket leaves when its
    last row finishes and the next one is prefilled into the freed room, so the linear layers see
    wide batches all the way through instead of a batch that empties row by row."""

    def __init__(self, model, tokenizer, eos_ids: Sequence[int], *, device: str, max_rows: int = 64,
                 bucket_rows: int = 16, max_kv_bytes: int = 2 << 30, max_prefill_tokens: int = 8192,
                 max_store_bytes: int = 512 << 20, lean: bool = True, pack: bool = True):
        import torch

        _register_attention()
        self.model, self.tok, self.device = model, tokenizer, device
        self.eos = set(eos_ids)
        self.max_rows = max(1, max_rows)
        self.bucket_rows = max(1, min(bucket_rows, self.max_rows))
        self.max_prefill_tokens = max_prefill_tokens
        self.layers, self.kv_heads, self.head_dim = _kv_shape(model)
        self.dtype = next(model.parameters()).dtype
        elem = torch.finfo(self.dtype).bits // 8
        self.bytes_per_token_row = 2 * self.layers * self.kv_heads * self.head_dim * elem
        self.max_kv_tokens = max(1, max_kv_bytes // self.bytes_per_token_row)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        # counters for benchmarks and tests: tokens actually run through the model
        self.prefill_tokens_run = 0
        self.decode_tokens_run = 0
        self.max_store_tokens = max(0, max_store_bytes // self.bytes_per_token_row)
        self.store = PrefixStore(self.max_store_tokens)
        self.lean = lean  # LeanForward where lean_supported, else the model's own forward
        self.pack = pack  # LeanForward's linears on oneDNN-prepacked weights where it can (engine_weights)
        self._lean: LeanForward | None = None

    def generate(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        """Yields the answers bucket by bucket, as each finishes (the caller commits each)."""
        uniq: dict[str, list[GenItem]] = {}
        for it in items:
            uniq.setdefault(it.prompt, []).append(it)
        texts = list(uniq)
        if not texts:
            return
        self.store = PrefixStore(self.max_store_tokens)  # prefixes are shared within one call
        with engine_weights(self.model, lean=self.lean, pack=self.pack) as self._lean:
            try:
                yield from self._generate(texts, uniq)
            finally:
                self._lean = None

    def _generate(self, texts: list[str], uniq: dict[str, list[GenItem]]) -> Iterator[list[GenOut]]:
        ids = self.tok(texts, add_special_tokens=False)["input_ids"]
        samples = [uniq[t] for t in texts]
        new_cap = [max(it.params.max_new_tokens for it in s) for s in samples]
        groups = plan_groups(ids, [len(s) for s in samples], max_rows=self.max_rows,
                             max_prefill_tokens=self.max_prefill_tokens,
                             row_cost=[len(s) * (len(p) + c) for s, p, c in zip(samples, ids, new_cap)],
                             max_row_cost=self.max_kv_tokens)
        # buckets: groups of similar length together (every row of a bucket attends over the
        # bucket's longest prompt, masked or not), up to bucket_rows rows and the KV budget; a
        # group bigger than bucket_rows is a bucket of its own
        groups.sort(key=lambda g: (max(len(ids[m]) for m in g.members), max(new_cap[m] for m in g.members)))
        specs: list[tuple[list[PrefillGroup], int, int]] = []  # (groups, rows, KV tokens)
        bucket: list[PrefillGroup] = []
        rows = longest = most_new = 0
        for g in groups:
            g_rows = sum(len(samples[m]) for m in g.members)
            n_long = max(longest, max(len(ids[m]) for m in g.members))
            n_new = max(most_new, max(new_cap[m] for m in g.members))
            if bucket and (rows + g_rows > self.bucket_rows or (rows + g_rows) * (n_long + n_new) > self.max_kv_tokens):
                specs.append((bucket, rows, rows * (longest + most_new)))
                bucket, rows = [], 0
                n_long = max(len(ids[m]) for m in g.members)
                n_new = max(new_cap[m] for m in g.members)
            bucket.append(g)
            rows += g_rows
            longest, most_new = n_long, n_new
        if bucket:
            specs.append((bucket, rows, rows * (longest + most_new)))
        yield from self._run(specs, ids, samples)

    # -- internals ---------------------------------------------------------------------------
    def _forward(self, input_ids, position_ids, mask, cache):
        """The last position's logits [B, vocab] of one pass writing into `cache`."""
        if self._lean is not None:
            return self._lean(input_ids, position_ids, mask, cache, _attend)
        return self.model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, past_key_values=cache,
                          use_cache=True, logits_to_keep=1).logits[:, -1]

    def _run(self, specs, ids, samples) -> Iterator[list[GenOut]]:
        import torch

        pending = list(reversed(specs))  # pop() takes the shortest first
        active: list[_Bucket] = []
        with torch.inference_mode(), _engine_attention(self.model):
            while pending or active:
                admit: list[list[PrefillGroup]] = []
                rows_now = sum(len(b.active) for b in active)
                kv_now = sum(b.kv_tokens for b in active)
                while pending and ((not active and not admit) or (rows_now + pending[-1][1] <= self.max_rows
                                                                   and kv_now + pending[-1][2] <= self.max_kv_tokens)):
                    groups, n_rows, kv = pending.pop()
                    admit.append(groups)
                    rows_now, kv_now = rows_now + n_rows, kv_now + kv
                if admit:
                    active += self._prefill_buckets(admit, ids, samples)
                stepping, done = [], []
                for b in active:
                    (stepping if self._advance(b) else done).append(b)
                active = stepping
                for b in done:
                    yield [self._answer(r) for r in b.rows]
                if active:
                    self._step(active)

    def _answer(self, r: _Row) -> GenOut:
        text, n = finished_text(self.tok, r.toks, self.eos, r.params.stop)
        return GenOut(r.item.key, text, n)

    def _prefill_buckets(self, specs: list[list[PrefillGroup]], ids, samples) -> list[_Bucket]:
        """Prefill the buckets admitted together. Their groups run in waves: every group of a wave
        makes its passes (prefix, then suffix) in the same forwards as the others (_run_passes),
        so the many short passes of a bucket cost a few wide GEMMs. A group whose prefix is being
        computed by an earlier group of the wave (what it would find in the store had that group
        finished) starts the next wave, so the store serves at least what it serves with the groups
        run one by one (more only where, one by one, an entry would be evicted in between)."""
        import torch

        dev = self.device
        fills, jobs = [], []
        for groups in specs:
            longest = max(len(ids[m]) for g in groups for m in g.members)
            most_new = max(it.params.max_new_tokens for g in groups for m in g.members for it in samples[m])
            n_rows = sum(len(samples[m]) for g in groups for m in g.members)
            shape = (n_rows, self.kv_heads, longest + most_new, self.head_dim)
            fill = _Fill(groups, longest,
                         [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(self.layers)],
                         [torch.zeros(shape, dtype=self.dtype, device=dev) for _ in range(self.layers)],
                         torch.zeros((n_rows, shape[2]), dtype=torch.bool, device=dev), [None] * len(groups))
            fills.append(fill)
            r0 = 0
            for gi, g in enumerate(groups):
                jobs.append((fill, gi, r0))
                r0 += sum(len(samples[m]) for m in g.members)
        wave: list = []
        computing: list[Sequence[int]] = []  # what the wave's groups will add to the store
        for job in jobs:
            g = job[0].groups[job[1]]
            lead = ids[g.members[0]]
            want = lead[:g.prefix_len] if g.prefix_len else lead[:-1]
            if wave and _longest_shared(computing, want) >= max(self.store.peek(want) + 1, self.store.min_tokens):
                self._prefill_wave(wave, ids, samples)
                wave, computing = [], []
            wave.append(job)
            stored = lead[:g.prefix_len or len(lead)]
            if self.store.keeps(len(stored)):  # a prefix the store will not keep makes no one wait
                computing.append(stored)
        self._prefill_wave(wave, ids, samples)
        return [self._bucket_of(fill) for fill in fills]

    def _prefill_wave(self, jobs, ids, samples) -> None:
        """Run the groups of one wave: each group's generator (_prefill_group) yields its passes
        in order; the passes the groups are at run together."""
        gens = {k: self._prefill_group(fill.groups[gi], ids, samples, fill.kb, fill.vb, fill.valid, r0, fill.longest)
                for k, (fill, gi, r0) in enumerate(jobs)}
        at = {k: next(gen) for k, gen in gens.items()}  # every group makes at least its suffix pass
        while at:
            keys = list(at)
            outs = self._run_passes([at[k] for k in keys])
            at = {}
            for k, logits in zip(keys, outs):
                try:
                    at[k] = gens[k].send(logits)
                except StopIteration as stop:
                    fill, gi, _ = jobs[k]
                    fill.done[gi] = stop.value

    def _run_passes(self, passes: list[Pass]) -> list:
        """Each pass's last-position logits: LeanForward runs passes together, up to
        max_prefill_tokens tokens a forward; the model's own forward runs them one by one."""
        if self._lean is None:
            return [self._forward(p.ids, p.pos, p.mask, p.cache) for p in passes]
        outs, batch, n = [], [], 0
        for p in passes:
            t = p.ids.numel()
            if batch and n + t > self.max_prefill_tokens:
                outs += self._lean.run(batch, _attend)
                batch, n = [], 0
            batch.append(p)
            n += t
        return outs + self._lean.run(batch, _attend)

    def _bucket_of(self, fill: "_Fill") -> _Bucket:
        """The decoding bucket of a prefilled _Fill: rows and first logits in group order; on CPU the
        split of its decode attention (units where a group's prompts share enough prefix columns,
        runs of each prompt's samples)."""
        import torch

        dev = self.device
        rows: list[_Row] = []
        first_logits = []
        units, row_unit = [], []
        for logits, (c0, c1), g_rows in fill.done:
            first_logits.append(logits)
            rows += g_rows
            n_p = len({r.src for r in g_rows})  # a lone prompt's samples share it through share_runs
            if dev == "cpu" and (n_p - 1) * (c1 - c0) >= SPLIT_MIN_SAVED:
                units.append((c0, c1))
                row_unit += [len(units) - 1] * len(g_rows)
            else:
                row_unit += [-1] * len(g_rows)
        valid, longest = fill.valid, fill.longest
        pos = torch.tensor([r.prompt_len for r in rows], dtype=torch.long, device=dev)
        valid[:, longest:] = True  # generated columns: each is filled before it is read
        bk = _Bucket(rows, list(range(len(rows))), fill.kb, fill.vb, _bias(valid[:, None, None, :], self.dtype), pos,
                     longest, torch.cat(first_logits))
        if dev == "cpu":
            rest = valid
            if units:
                rest = valid.clone()
                for i, u in enumerate(row_unit):
                    if u >= 0:
                        rest[i, units[u][0]:units[u][1]] = False
                bk.units, bk.row_unit = units, row_unit
                bk.index_units()
            bk.rest_bias = _bias(rest[:, None, None, :], self.dtype) if units else bk.bias
            bk.rest0, bk.gen0 = int(rest[:, :longest].any(0).nonzero()[0]), longest
            bk.plan_split()
        return bk

    def _prefill_group(self, g: PrefillGroup, ids, samples, kb, vb, valid, r0: int, longest: int):
        """Prefill one group into rows r0.. of the bucket's buffers: a generator that yields its
        passes (Pass; the prefix's, then the suffixes') and is sent each one's logits. Returns the
        rows' first logits, the columns [c0, c1) in which every row of the group holds the same KV
        (its prefix, or the whole prompt of a lone prompt's samples: what the store keeps; a
        prefix shared by several prompts is what a split attention unit reads once), and the
        group's rows."""
        import torch

        dev = self.device
        members = g.members
        lead = ids[members[0]]
        p = g.prefix_len
        s = max(len(ids[m]) for m in members) - p
        c0 = longest - p - s
        n_g = sum(len(samples[m]) for m in members)
        r1 = r0 + n_g
        cache = _buffer_cache([k[r0:r1, :, c0:] for k in kb], [v[r0:r1, :, c0:] for v in vb])
        # what earlier groups left in the store: the group's prefix, or all of a lone prompt but its
        # last token (the suffix pass needs one token for its logits)
        reuse, sk, sv = self.store.lookup(lead[:p] if p else lead[:-1])
        if reuse:
            for layer, k, v in zip(cache.layers, sk, sv):
                layer.kbuf[:, :, :reuse] = k[:, :, :reuse]  # broadcast over the group's rows
                layer.vbuf[:, :, :reuse] = v[:, :, :reuse]
                layer.n = reuse
        if p > reuse:
            pre = torch.tensor([lead[reuse:p]], device=dev)
            # no mask: one unpadded causal sequence (the attention takes is_causal, half the work);
            # after a reused part, causal over it + the new tokens
            mask = None if not reuse else _bias(_causal_tail(reuse, p, dev)[None, None], self.dtype)
            yield Pass(pre, torch.arange(reuse, p, device=dev)[None], mask, cache)
            self.prefill_tokens_run += p - reuse
        stored = p or len(lead)  # what this group adds to the store: its prefix, or a lone prompt
        if not p and reuse:  # a lone prompt: the reused part is its prefix
            p, s = reuse, s - reuse
        # the members' suffixes, left-padded to s, written to each member's lead row
        leads, r = [], 0
        sfx = torch.full((len(members), s), self.pad_id, dtype=torch.long, device=dev)
        pos = torch.zeros((len(members), s), dtype=torch.long, device=dev)
        col_ok = torch.ones((len(members), p + s), dtype=torch.bool, device=dev)
        for u, m in enumerate(members):
            t = ids[m][p:]
            sfx[u, s - len(t):] = torch.tensor(t, dtype=torch.long)
            pos[u, s - len(t):] = torch.arange(p, p + len(t))
            col_ok[u, p:p + s - len(t)] = False
            leads.append(r)
            valid[r0 + r:r0 + r + len(samples[m]), c0:c0 + p] = True
            valid[r0 + r:r0 + r + len(samples[m]), longest - len(t):longest] = True
            r += len(samples[m])
        need_rows = n_g != len(members)
        if need_rows:
            lead_idx = torch.tensor(leads, device=dev)
            for layer in cache.layers:
                layer.rows = lead_idx
        if p == 0 and all(len(ids[m]) == s for m in members):
            mask = None  # unpadded prompts from position 0: the causal pass (half the attention work)
        else:
            mask = _bias(col_ok[:, None, None, :] & _causal_tail(p, p + s, dev)[None, None], self.dtype)
        logits = (yield Pass(sfx, pos, mask, cache)).float()
        self.prefill_tokens_run += len(members) * s
        if reuse < stored:
            self.store.add(lead[:stored], [k[r0:r0 + 1, :, c0:c0 + stored] for k in kb],
                           [v[r0:r0 + 1, :, c0:c0 + stored] for v in vb])
        if need_rows:  # copy each prompt's KV from its lead row to its other samples
            counts = [len(samples[m]) for m in members]
            for u, k in enumerate(counts):
                if k > 1:
                    a = r0 + leads[u]
                    for buf in (*kb, *vb):
                        buf[a + 1:a + k, :, c0:longest] = buf[a:a + 1, :, c0:longest]
            logits = torch.repeat_interleave(logits, torch.tensor(counts, device=logits.device), dim=0)
        rows = [_Row(it, len(ids[m]), it.seed, [], m) for m in members for it in samples[m]]
        return logits, (c0, c0 + stored), rows

    @staticmethod
    def _choose(logits, rows: list[_Row]) -> list[int]:
        """Each row's next token: argmax when greedy, else a draw keyed by the row's seed and step
        (backends.sampling: temperature -> top-k -> top-p -> Gumbel-max, the sampler of the
        generate path too)."""
        from .sampling import draw_tokens

        by_kind: dict[tuple[float, int, float], list[int]] = {}
        greedy = []
        for i, r in enumerate(rows):
            p = r.params
            if r.done:
                continue
            if p.temperature > 0:
                by_kind.setdefault((p.temperature, p.top_k, p.top_p), []).append(i)
            else:
                greedy.append(i)
        # an argmax over the vocabulary costs ~75 us a row on 2 cores: only for the rows that use it
        chosen = [0] * len(rows)  # a finished row's token is ignored
        if greedy:
            picked = (logits[greedy] if len(greedy) < len(rows) else logits).argmax(-1).tolist()
            for i, t in zip(greedy, picked):
                chosen[i] = t
        for (temp, top_k, top_p), idx in by_kind.items():
            picked = draw_tokens(logits[idx] if len(idx) < len(rows) else logits, [rows[i].seed for i in idx],
                                 [len(rows[i].toks) for i in idx], temp, top_k, top_p)
            for i, t in zip(idx, picked):
                chosen[i] = t
        return chosen

    def _finished(self, r: _Row) -> bool:
        if r.toks[-1] in self.eos or len(r.toks) >= r.params.max_new_tokens:
            return True
        stops = r.params.stop
        if stops:
            tail = self.tok.decode(r.toks[-(max(len(s) for s in stops) + 4):])
            return any(s in tail for s in stops)
        return False

    def _advance(self, b: _Bucket) -> bool:
        """Append each active row's next token; drop finished rows from the buffers once a quarter
        of them are done. False when the bucket has finished."""
        import torch

        live = [b.rows[a] for a in b.active]
        chosen = self._choose(b.logits, live)
        keep = []
        for k, (r, t) in enumerate(zip(live, chosen)):
            if r.done:  # finished, not yet compacted out: its row still runs, its token is ignored
                continue
            r.toks.append(t)
            if self._finished(r):
                r.done = True
            else:
                keep.append(k)
        if not keep:
            return False
        if len(keep) <= 0.75 * len(b.active):
            idx = torch.tensor(keep, device=self.device)
            b.kb = [k.index_select(0, idx) for k in b.kb]
            b.vb = [v.index_select(0, idx) for v in b.vb]
            b.bias, b.pos = b.bias.index_select(0, idx), b.pos.index_select(0, idx)
            b.active = [b.active[k] for k in keep]
            chosen = [chosen[k] for k in keep]
            if b.units:
                b.rest_bias = b.rest_bias.index_select(0, idx)
                b.row_unit = [b.row_unit[k] for k in keep]
                b.index_units()
            elif b.rest_bias is not None:
                b.rest_bias = b.bias
            if b.gen0:  # fewer rows: the runs change, and the split may no longer pay
                b.plan_split()
        b.next_ids = chosen
        return True

    def _step(self, active: list[_Bucket]) -> None:
        """One decode step of every active row: linear layers over all rows at once, attention per
        bucket (see _BucketKV)."""
        import torch

        dev = self.device
        ids = torch.tensor([t for b in active for t in b.next_ids], dtype=torch.long, device=dev)[:, None]
        pos = torch.cat([b.pos for b in active])[:, None]
        # the attention reads each bucket's own mask; this one only tells transformers the mask is
        # prepared (a 4-D mask passes through untouched)
        mask = torch.ones((ids.shape[0], 1, 1, 1), dtype=torch.bool, device=dev)
        logits = self._forward(ids, pos, mask, _bucket_cache(active)).float()
        self.decode_tokens_run += ids.shape[0]
        r = 0
        for b in active:
            k = len(b.active)
            b.logits = logits[r:r + k]
            b.pos = b.pos + 1
            b.n += 1
            r += k
