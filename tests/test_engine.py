"""The generation engine (prefill once per prompt, shared-prefix KV reuse) on a tiny random Llama:
it must answer exactly what transformers' generate answers one prompt at a time, and a sample must
not depend on which other requests share its batch or its prefix."""

import pytest
import torch

from comptrust.backends.base import GenItem
from comptrust.backends.engine import plan_groups
from comptrust.models.resolve import resolve_model
from comptrust.types import GenParams, Message

SYSTEM = "You are a helpful assistant. Please answer the following question with a short answer."
USER = [
    "I agree.", "the quick brown fox", "Here is my statement: people are good.", "0 1 2 3",
    "positive negative maybe wrong not wrong. The answer is yes or no.", "high low income $50k",
    "Here is my statement: people are bad.", "the quick brown dog",
]


@pytest.fixture(scope="module")
def backend(tiny_model):
    from comptrust.backends.hf import HFBackend

    b = HFBackend(resolve_model(str(tiny_model)), batch_size=8)
    assert b.engine == "reuse"  # the tiny Llama is a model the engine supports
    return b


@pytest.fixture(scope="module")
def prompts(backend):
    from comptrust.models.chat import ChatFormatter

    fmt = ChatFormatter.for_tokenizer(backend.tokenizer, "tiny")
    shared = [fmt.format((Message("system", SYSTEM), Message("user", u))) for u in USER]
    return shared + USER[:3]  # chat prompts share a long prefix; raw ones share nothing


def _run(backend, items, engine="reuse", rows=8):
    backend.engine, backend.batch_size = engine, rows
    try:
        return {o.key: (o.text, o.n_tokens) for batch in backend.generate(items) for o in batch}
    finally:
        backend.engine = "reuse"


def _items(prompts, params, n=1, seed0=1000):
    return [GenItem(f"p{i}-s{j}", p, params, j, seed0 + 97 * i + j) for i, p in enumerate(prompts) for j in range(n)]


def test_plan_groups_share_prefixes_and_keep_limits():
    a = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    b = [1, 2, 3, 4, 5, 6, 7, 8, 9, 20, 21]
    c = [1, 2, 3, 4, 5, 6, 7, 8, 9, 30]
    d = [50, 51, 52]
    groups = plan_groups([d, a, b, c], [1, 3, 1, 1], max_rows=64, max_prefill_tokens=1000)
    by_member = {m: g for g in groups for m in g.members}
    assert by_member[1] is by_member[2] is by_member[3] and by_member[1].prefix_len == 9
    assert by_member[0].members == (0,) and by_member[0].prefix_len == 0
    assert sorted(m for g in groups for m in g.members) == [0, 1, 2, 3]
    # the rows limit splits a group; every multi-member group keeps >= 1 prefix and 1 suffix token
    small = plan_groups([a, b, c], [3, 3, 3], max_rows=6, max_prefill_tokens=1000)
    assert all(sum([3] * len(g.members)) <= 6 for g in small) and len(small) == 2
    same_but_one = plan_groups([[1, 2, 3], [1, 2, 3, 4]], [1, 1], max_rows=8, max_prefill_tokens=100)
    assert [g.prefix_len for g in same_but_one] == [2]  # the shorter prompt keeps one suffix token


def test_greedy_with_reuse_equals_generate_one_at_a_time(backend, prompts):
    params = GenParams(max_new_tokens=12)
    items = _items(prompts, params)
    ref = _run(backend, items, engine="generate", rows=1)
    for rows in (8, 3, 1):
        got = _run(backend, items, rows=rows)
        assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in ref.items()}, rows
    assert len({v[0] for v in ref.values()}) > 1


def test_samples_independent_of_batch_composition_with_reuse(backend, prompts):
    params = GenParams(max_new_tokens=10, temperature=1.0, seed=3)
    items = _items(prompts, params, n=3)
    together = _run(backend, items, rows=16)
    # each sample alone; the samples of one prompt without their siblings; a reshuffled, smaller batch
    alone = {}
    for it in items[::4]:
        alone.update(_run(backend, [it], rows=1))
    odd = _run(backend, [it for it in items if it.sample_idx != 1], rows=5)
    shuffled = _run(backend, list(reversed(items)), rows=7)
    assert all(together[k] == v for k, v in alone.items())
    assert all(together[k] == v for k, v in odd.items())
    assert shuffled == together
    # and the engine samples exactly as the per-row sampler of generate did
    assert _run(backend, items[:6], engine="generate", rows=1) == {k: together[k] for k in [it.key for it in items[:6]]}
    assert len({together[f"p0-s{j}"] for j in range(3)}) > 1  # the samples of a prompt differ


def test_each_prompt_is_prefilled_once_and_prefixes_once(backend, prompts):
    from comptrust.backends.engine import Engine

    params = GenParams(max_new_tokens=4, temperature=0.7, seed=1)
    items = _items(prompts, params, n=3)
    eng = Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=64)
    outs = [o for batch in eng.generate(items) for o in batch]
    assert len(outs) == len(items)
    every = sum(backend.count_tokens(it.prompt) for it in items)
    once = sum(backend.count_tokens(p) for p in prompts)
    assert eng.prefill_tokens_run < once < every  # shared prefixes ran once, samples shared a prefill


def test_stop_strings_and_eos_with_reuse(backend, prompts):
    plain = _run(backend, _items(prompts, GenParams(max_new_tokens=16)))
    text = plain["p1-s0"][0]
    assert len(text) > 3
    stop = text[1:3]
    params = GenParams(max_new_tokens=16, stop=(stop,))
    got = _run(backend, _items(prompts, params))
    ref = _run(backend, _items(prompts, params), engine="generate", rows=1)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in ref.items()}
    assert stop not in got["p1-s0"][0] and text.startswith(got["p1-s0"][0])
    assert got["p1-s0"][1] < 16  # generation stopped at the stop string, not at max_new_tokens


@pytest.mark.slow
def test_embedded_model_greedy_reuse_identical():
    from comptrust.backends.hf import HFBackend
    from comptrust.data.source import DataSource
    from comptrust.models.chat import ChatFormatter
    from comptrust.perspectives.base import PerspectiveContext, get_perspective
    from comptrust.profiles import get_profile

    try:
        resolved = resolve_model("embedded:smollm2-135m-instruct")
    except Exception as e:
        pytest.skip(f"embedded model unavailable: {e}")
    b = HFBackend(resolved, batch_size=16)
    fmt = ChatFormatter.for_tokenizer(b.tokenizer, resolved.display_name)
    ctx = PerspectiveContext(data=DataSource.bundled(), profile=get_profile("smoke"), seed=0, limit=6)
    prompts = [fmt.format(r.messages) for name in ("stereotype", "fairness") for r in get_perspective(name).requests(ctx)]
    items = _items(prompts, GenParams(max_new_tokens=16))
    ref = _run(b, items, engine="generate", rows=1)
    got = _run(b, items, rows=16)
    assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in ref.items()}


def test_sigkill_then_resume_with_reuse_on(tiny_model, tmp_path):
    """A run killed mid-generation, with prefix reuse and shared prefills on (decode batches of 4
    rows, so several prompts share each prefix pass), resumes to exactly the uninterrupted result."""
    import json
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    def cmd(out):
        return [sys.executable, "-m", "comptrust", "eval", "--model", str(tiny_model), "--perspectives",
                "stereotype,fairness", "--profile", "smoke", "--batch-size", "4", "--out", str(out), "--quiet"]

    from clihelp import response_count as count

    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = killed / "store.sqlite"
    deadline = time.time() + 300
    while time.time() < deadline and count(db) < 4 and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = count(db)
    assert partial >= 4 and not (killed / "results.json").exists()
    subprocess.run(cmd(killed), check=True, capture_output=True)
    subprocess.run(cmd(clean), check=True, capture_output=True)
    con = sqlite3.connect(db)
    total, distinct = con.execute("SELECT COUNT(*), COUNT(DISTINCT perspective || '/' || request_id || '/' || sample_idx) FROM responses").fetchone()
    con.close()
    assert total == distinct == count(clean / "store.sqlite") > partial
    for name in ("stereotype", "fairness"):
        a = (killed / "samples" / f"{name}.jsonl").read_text()
        b = (clean / "samples" / f"{name}.jsonl").read_text()
        assert a == b
    def dims(run):  # provenance.created_at is when the dimension was written, the one volatile field
        d = json.loads((run / "results.json").read_text())["dimensions"]
        for v in d.values():
            v.get("provenance", {}).pop("created_at", None)
        return d

    assert dims(killed) == dims(clean)


def test_buckets_decode_together_and_answer_as_one_prompt_at_a_time(backend, prompts):
    """Continuous decoding: several buckets of different lengths share each decode step (each
    attending over its own buffer), later buckets join as earlier ones finish; greedy answers are
    those of generate one prompt at a time, and sampled answers those of the engine run alone."""
    from comptrust.backends.engine import Engine

    greedy = _items(prompts, GenParams(max_new_tokens=12))
    sampled = [GenItem("t" + it.key, it.prompt, it.params, it.sample_idx, it.seed)
               for it in _items(prompts[:5], GenParams(max_new_tokens=9, temperature=1.0), n=2, seed0=55)]
    ref = _run(backend, greedy, engine="generate", rows=1)
    eng = Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=6, bucket_rows=2)
    steps = []
    orig = eng._step
    eng._step = lambda active: (steps.append(len(active)), orig(active))
    got = {o.key: (o.text, o.n_tokens) for batch in eng.generate(greedy + sampled) for o in batch}
    assert max(steps) >= 2  # buckets really shared decode steps
    assert {k: got[k][0] for k in ref} == {k: v[0] for k, v in ref.items()}
    alone = {}
    for it in sampled:
        alone.update(_run(backend, [it], rows=1))
    assert {k: got[k] for k in alone} == alone


def test_prefix_store_finds_longest_exact_prefix_and_evicts_oldest():
    import torch

    from comptrust.backends.engine import PrefixStore

    kv = lambda n, x: ([torch.full((1, 1, n, 2), float(x))], [torch.full((1, 1, n, 2), -float(x))])  # noqa: E731
    st = PrefixStore(max_tokens=10, min_tokens=2)
    st.add([1, 2, 3, 4], *kv(4, 1))
    st.add([1, 2, 9, 9, 9], *kv(5, 2))
    m, k, v = st.lookup([1, 2, 3, 7])
    assert m == 3 and k[0][0, 0, 0, 0] == 1 and v[0][0, 0, 0, 0] == -1
    assert st.lookup([1, 2, 9, 9, 9, 9])[0] == 5
    assert st.lookup([1, 5])[0] == 0  # one shared token is below min_tokens
    st.add([7, 7, 7], *kv(3, 3))  # 4 + 5 + 3 > 10: the least recently used entry ([1, 2, 3, 4]) goes
    assert st.tokens == 8 and st.lookup([1, 2, 3, 4])[0] == 2  # only [1, 2, 9, ...] shares with it now
    st.add(list(range(11)), *kv(11, 4))  # longer than the whole store: not kept
    assert st.tokens == 8 and st.hit_tokens == 3 + 5 + 2


def test_groups_put_apart_reuse_the_store_and_answer_as_generate(backend, prompts, monkeypatch):
    """Decode rows of 2 split the prefix-sharing chat prompts into several groups; later groups take
    the shared system prompt from the store instead of running it again. A small PREFILL_CHUNK
    makes every masked pass attend in causal chunks. Greedy answers stay those of generate."""
    from comptrust.backends import engine as E

    params = GenParams(max_new_tokens=10)
    items = _items(prompts, params)
    ref = _run(backend, items, engine="generate", rows=1)
    monkeypatch.setattr(E, "PREFILL_CHUNK", 3)
    eng = E.Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=2)
    got = {o.key: o.text for batch in eng.generate(items) for o in batch}
    assert got == {k: v[0] for k, v in ref.items()}
    assert eng.store.hit_tokens > 0
    off = E.Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=2,
                   max_store_bytes=0)
    assert {o.key: o.text for batch in off.generate(items) for o in batch} == got
    assert off.store.hit_tokens == 0 and off.prefill_tokens_run == eng.prefill_tokens_run + eng.store.hit_tokens


def test_split_decode_attention_answers_as_generate(backend, prompts, monkeypatch):
    """With the threshold at 1, every bucket splits its decode attention by who holds the same KV
    (a group's prefix once per unit, a prompt once for its samples, each row's generated columns)
    and merges by log-sum-exp: each call equals plain attention over the row's own columns, greedy
    answers stay those of generate one prompt at a time, sampled ones those of the plain path."""
    from comptrust.backends import engine as E

    greedy = _items(prompts, GenParams(max_new_tokens=12))
    sampled = [GenItem("t" + it.key, it.prompt, it.params, it.sample_idx, it.seed)
               for it in _items(prompts, GenParams(max_new_tokens=9, temperature=1.0), n=3, seed0=7)]
    ref = _run(backend, greedy, engine="generate", rows=1)
    monkeypatch.setattr(E, "SPLIT_MIN_SAVED", 10 ** 9)
    plain = _run(backend, sampled, rows=64)
    monkeypatch.setattr(E, "SPLIT_MIN_SAVED", 1)
    eng = E.Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=64)
    seen = []
    orig = E._split_attention

    def checked(q, bk, layer, sc):
        out = orig(q, bk, layer, sc)
        n = bk.n + 1
        want = E._gqa_attention(None, q, bk.kb[layer][:, :, :n], bk.vb[layer][:, :, :n], bk.bias[..., :n], scaling=sc)[0]
        torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
        seen.append((len(bk.unit_rows), max(s for _, _, s in bk.share)))
        return out

    monkeypatch.setattr(E, "_split_attention", checked)
    got = {o.key: (o.text, o.n_tokens) for batch in eng.generate(greedy + sampled) for o in batch}
    # units and samples (a greedy item and the 3 draws of one prompt share it: 4 rows) both split
    assert max(u for u, _ in seen) >= 1 and max(s for _, s in seen) >= 3
    assert {k: got[k][0] for k in ref} == {k: v[0] for k, v in ref.items()}
    assert {k: got[k] for k in plain} == plain


def test_share_runs_cut_rows_into_prompts_of_equal_samples():
    from comptrust.backends.engine import share_runs

    assert share_runs([4, 4, 4, 7, 7, 7, 2, 9, 9, 5, 5]) == [(0, 2, 3), (6, 1, 1), (7, 2, 2)]
    assert share_runs([1]) == [(0, 1, 1)]


def test_groups_prefilled_together_keep_the_reuse_of_one_by_one(backend, prompts, monkeypatch):
    """Groups admitted together make their passes in shared forwards (waves); a group whose prefix
    an earlier group of the wave is computing waits for the next wave, so the store serves exactly
    what it serves when groups run one at a time. Small groups (a tight padded-suffix budget) make
    several groups share the chat prompts' system prompt."""
    from comptrust.backends import engine as E

    plan = E.plan_groups
    monkeypatch.setattr(E, "plan_groups", lambda *a, **kw: plan(*a, **{**kw, "max_prefill_tokens": 12}))
    params = GenParams(max_new_tokens=8)
    items = _items(prompts, params)
    ref = _run(backend, items, engine="generate", rows=1)
    calls: list[int] = []
    run_passes = E.Engine._run_passes
    monkeypatch.setattr(E.Engine, "_run_passes", lambda self, ps: calls.append(len(ps)) or run_passes(self, ps))

    def answer(**kw):
        eng = E.Engine(backend.model, backend.tokenizer, backend.eos_ids, device=backend.device, max_rows=16, **kw)
        return {o.key: o.text for batch in eng.generate(items) for o in batch}, eng

    together, eng = answer()
    merged = max(calls)
    calls.clear()
    monkeypatch.setattr(E, "_longest_shared", lambda seqs, want: 1 << 30)  # every group its own wave
    alone, one = answer()
    assert merged > 1 and max(calls) == 1  # passes did run together, and not in the reference
    assert together == alone == {k: v[0] for k, v in ref.items()}
    assert eng.store.hit_tokens == one.store.hit_tokens > 0
    assert eng.prefill_tokens_run == one.prefill_tokens_run


@pytest.mark.parametrize("kernel_gqa", [True, False])
def test_masked_grouped_query_attention_matches_repeated_heads(kernel_gqa, monkeypatch):
    """Both ways the engine attends a masked pass of several queries over grouped-query heads (sdpa's
    own grouped-query path, or the heads folded into the query length with the mask repeated)
    give the attention of the key/value heads repeated to every query head, under a causal,
    left-padded mask with the queries the last keys; the output is [B, q, heads, d]."""
    import torch

    from comptrust.backends import engine as E

    monkeypatch.setattr(E, "KERNEL_GQA_DEVICES", frozenset({"cpu"}) if kernel_gqa else frozenset())
    g = torch.Generator().manual_seed(3)
    b, h, hkv, q, k, d = 2, 6, 2, 5, 9, 8
    query = torch.randn(b, q, h, d, generator=g).transpose(1, 2)  # strided, as LeanForward passes it
    key, value = torch.randn(b, hkv, k, d, generator=g), torch.randn(b, hkv, k, d, generator=g)
    allowed = E._causal_tail(k - q, k, "cpu")[None, None].repeat(b, 1, 1, 1)
    allowed[1, ..., :3] = False  # row 1 is left-padded by 3 columns
    mask = E._bias(allowed, torch.float32)
    got = E._gqa_attention(None, query, key, value, mask, scaling=0.3)[0]
    rep = h // hkv
    want = torch.nn.functional.scaled_dot_product_attention(
        query, key.repeat_interleave(rep, 1), value.repeat_interleave(rep, 1), attn_mask=mask, scale=0.3)
    assert got.shape == (b, q, h, d)
    torch.testing.assert_close(got, want.transpose(1, 2), rtol=1e-5, atol=1e-6)
