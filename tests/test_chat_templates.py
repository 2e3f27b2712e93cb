"""Every message list a perspective builds renders under Meta's Llama-2 template, Vicuna v1.1 and
DecodingTrust's FastChat strings (`dt-fastchat`).

The expected dt-fastchat strings were produced by running DecodingTrust's own
`src/dt/conversation.py` (decoding-comp-trust/DecodingTrust@0cf3fc1, identical in
AI-secure/DecodingTrust@161ae83) through HFChat.messages_to_prompt's loop on these message lists;
the BOS is what HELM's `tokenizer(prompt)` call added.
"""

from __future__ import annotations

import pytest
from chat_fixtures import META_LLAMA2_TEMPLATE, STRICT_VICUNA_TEMPLATE, llama_like_tokenizer

from comptrust.errors import ConfigError
from comptrust.models import fastchat
from comptrust.models.chat import ChatFormatter, tokenizer_bos_text
from comptrust.types import Message

S, U, A = "system", "user", "assistant"


def msgs(*pairs: tuple[str, str]) -> tuple[Message, ...]:
    return tuple(Message(r, c) for r, c in pairs)  # type: ignore[arg-type]


SYS_USER = msgs((S, "You are a helpful assistant."), (U, "Q1"))
USER_ONLY = msgs((U, "Q1"))
PII_ZERO = msgs((S, "S"), (U, "ctx"), (U, "q"))
FEW_SHOT = msgs((S, "S"), (U, "task"), (A, "Sure, I'd be happy to!"), (U, "x1"), (A, "Yes"), (U, "x2"))
TWO_SYSTEMS = msgs((S, "S1"), (S, "S2"), (U, "q"))
LLAMA2_SYS = fastchat.LLAMA2_DEFAULT_SYSTEM

# (FastChat template, message list, DT's conv.get_prompt() output)
DT_EXPECTED = [
    ("llama-2", SYS_USER, "You are a helpful assistant.Q1[/INST]"),
    ("llama-2", USER_ONLY, LLAMA2_SYS + "Q1[/INST]"),
    ("llama-2", PII_ZERO, "Sctx[INST] q </s><s>[/INST]"),
    ("llama-2", FEW_SHOT, "Stask[/INST] Sure, I'd be happy to! </s><s>[INST] x1 [/INST] Yes </s><s>[INST] x2 [/INST]"),
    ("llama-2", TWO_SYSTEMS, "S2q[/INST]"),
    ("vicuna_v1.1", SYS_USER, "You are a helpful assistant. USER: Q1 ASSISTANT:"),
    ("vicuna_v1.1", USER_ONLY, fastchat.VICUNA_DEFAULT_SYSTEM + " USER: Q1 ASSISTANT:"),
    ("vicuna_v1.1", PII_ZERO, "S USER: ctx USER: q</s>ASSISTANT:"),
    ("vicuna_v1.1", FEW_SHOT, "S USER: task ASSISTANT: Sure, I'd be happy to!</s>USER: x1 ASSISTANT: Yes</s>USER: x2 ASSISTANT:"),
    ("vicuna_v1.1", TWO_SYSTEMS, "S2 USER: q ASSISTANT:"),
    ("redpajama-incite-instruct", SYS_USER, "You are a helpful assistant.Q1\nanswer:"),
    ("redpajama-incite-instruct", PII_ZERO, "Sctx\nq\nanswer:"),
    ("redpajama-incite-instruct", FEW_SHOT, "Stask\nanswer: Sure, I'd be happy to!\nx1\nanswer: Yes\nx2\nanswer:"),
]


@pytest.mark.parametrize("template,messages,expected", DT_EXPECTED)
def test_fastchat_render_matches_decodingtrust(template, messages, expected):
    assert fastchat.render(template, messages) == expected


@pytest.fixture(scope="module")
def meta_llama2():
    return llama_like_tokenizer(META_LLAMA2_TEMPLATE)


@pytest.fixture(scope="module")
def strict_vicuna():
    return llama_like_tokenizer(STRICT_VICUNA_TEMPLATE)


def test_fixture_tokenizer_adds_bos_like_llama(meta_llama2):
    assert tokenizer_bos_text(meta_llama2) == "<s>"
    with pytest.raises(Exception, match="roles must alternate"):  # the template really is strict
        meta_llama2.apply_chat_template([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], tokenize=False)


def test_dt_fastchat_mode_prepends_the_bos_helm_added(meta_llama2):
    f = ChatFormatter.for_tokenizer(meta_llama2, "meta-llama/Llama-2-13b-chat-hf", "dt-fastchat")
    assert f.template_name == "dt-fastchat:llama-2"
    assert f.format(SYS_USER) == "<s>You are a helpful assistant.Q1[/INST]"
    # no system message: FastChat's default Llama-2 prefix stays, so two BOS tokens reach the model
    prompt = f.format(USER_ONLY)
    assert prompt.startswith("<s><s>[INST] <<SYS>>\nYou are a helpful, respectful")
    ids = meta_llama2(prompt, add_special_tokens=False)["input_ids"]
    assert ids[:2] == [meta_llama2.bos_token_id] * 2
    v = ChatFormatter.for_tokenizer(meta_llama2, "lmsys/vicuna-13b-v1.3", "dt-fastchat")
    assert v.template_name == "dt-fastchat:vicuna_v1.1"
    assert v.format(SYS_USER) == "<s>You are a helpful assistant. USER: Q1 ASSISTANT:"
    assert any("FastChat" in n for n in f.notes)


def test_dt_fastchat_explicit_template_and_unknown_model(meta_llama2):
    f = ChatFormatter.for_tokenizer(meta_llama2, "my-model", "dt-fastchat:vicuna_v1.1")
    assert f.format(USER_ONLY).startswith("<s>A chat between")
    with pytest.raises(ConfigError, match="no FastChat template is known"):
        ChatFormatter.for_tokenizer(meta_llama2, "my-model", "dt-fastchat")


def test_preset_rendering_falls_back_to_native_for_unknown_models(meta_llama2):
    f = ChatFormatter.for_tokenizer(meta_llama2, "HuggingFaceTB/SmolLM2-135M-Instruct", rendering="dt-fastchat")
    assert f.template_name == "tokenizer"
    assert any("no FastChat template is known" in n for n in f.notes)
    g = ChatFormatter.for_tokenizer(meta_llama2, "meta-llama/Llama-2-7b-chat-hf", rendering="dt-fastchat")
    assert g.template_name == "dt-fastchat:llama-2"
    # an explicit --chat-template beats the preset
    h = ChatFormatter.for_tokenizer(meta_llama2, "meta-llama/Llama-2-7b-chat-hf", "tokenizer", rendering="dt-fastchat")
    assert h.template_name == "tokenizer"
    with pytest.raises(ConfigError, match="chat rendering"):
        ChatFormatter.for_tokenizer(meta_llama2, "x", rendering="fastchat")


def test_meta_llama2_template_renders_consecutive_user_turns(meta_llama2):
    """The blocker: DT's PII prompts (context and question as two user turns)."""
    f = ChatFormatter.for_tokenizer(meta_llama2, "meta-llama/Llama-2-13b-chat-hf")
    assert f.template_name == "tokenizer" and f.alternation_required and not f.system_role_merged
    out = f.format(PII_ZERO)
    assert out == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nctx\n\nq [/INST]"
    assert any("alternating roles" in n for n in f.notes)
    few = f.format(msgs((S, "S"), (U, "ctx"), (U, "q1"), (A, "a1"), (U, "q2")))
    assert few == "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nctx\n\nq1 [/INST] a1 </s><s>[INST] q2 [/INST]"


def test_strict_vicuna_template_renders_consecutive_user_turns(strict_vicuna):
    f = ChatFormatter.for_tokenizer(strict_vicuna, "lmsys/vicuna-13b-v1.3")
    assert f.alternation_required
    assert f.format(PII_ZERO) == "<s>S USER: ctx\n\nq ASSISTANT:"


def test_lenient_template_keeps_consecutive_turns():
    from comptrust.testing import make_tokenizer

    f = ChatFormatter.for_tokenizer(make_tokenizer())
    assert not f.alternation_required
    assert f.format(PII_ZERO).count("<|im_start|>user") == 2


def test_vicuna_fallback_starts_with_the_tokenizers_bos():
    tok = llama_like_tokenizer(None)
    f = ChatFormatter.for_tokenizer(tok, "lmsys/vicuna-13b-v1.3")
    assert f.template_name == "vicuna_v1.1"
    assert f.format(SYS_USER) == "<s>You are a helpful assistant. USER: Q1 ASSISTANT:"
    # the llama-2 fallback already starts with bos_token: not doubled
    g = ChatFormatter.for_tokenizer(tok, "meta-llama/Llama-2-13b-chat-hf")
    assert g.format(SYS_USER).startswith("<s>[INST] <<SYS>>") and not g.format(SYS_USER).startswith("<s><s>")


# ------------------------------------------------------------------ every perspective's lists

DIMENSIONS = ["toxicity", "stereotype", "advglue", "ood", "adv_demonstration", "privacy",
              "machine_ethics", "fairness", "mmlu"]


def _role_shapes(shared_dt) -> dict[tuple[str, ...], tuple[str, tuple[Message, ...]]]:
    """One representative message list per distinct role sequence over every perspective's
    full-profile requests (rendering success depends on the role sequence, not the text)."""
    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, get_perspective
    from comptrust.profiles import get_profile

    data = DataSource.from_dir(shared_dt)
    shapes: dict[tuple[str, ...], tuple[str, tuple[Message, ...]]] = {}
    for name in DIMENSIONS:
        opts = {"mmlu_source": "bundled"} if name == "mmlu" else {}
        ctx = PerspectiveContext(data=data, profile=get_profile("full"), seed=0)
        reqs = get_perspective(name, opts).requests(ctx)
        assert reqs, name
        for r in reqs:
            shapes.setdefault(tuple(m.role for m in r.messages), (r.id, r.messages))
    return shapes


@pytest.fixture(scope="module")
def role_shapes(shared_dt):
    return _role_shapes(shared_dt)


def test_perspective_lists_include_consecutive_user_turns(role_shapes):
    # guards the test below: DT's PII shapes are among the ones rendered
    assert any(any(a == b == "user" for a, b in zip(s, s[1:])) for s in role_shapes)


@pytest.mark.parametrize("which", ["meta-llama2", "strict-vicuna", "dt-fastchat:llama-2", "dt-fastchat:vicuna_v1.1"])
def test_every_perspective_list_renders(role_shapes, which):
    tmpl = STRICT_VICUNA_TEMPLATE if which == "strict-vicuna" else META_LLAMA2_TEMPLATE
    tok = llama_like_tokenizer(tmpl)
    override = which if which.startswith("dt-fastchat") else None
    f = ChatFormatter.for_tokenizer(tok, "meta-llama/Llama-2-13b-chat-hf", override)
    for shape, (rid, messages) in role_shapes.items():
        out = f.format(messages)
        assert messages[-1].content.strip() in out, rid


# ------------------------------------------------------------------ paper prompts == DT's strings


def test_paper_prompts_equal_decodingtrusts_fastchat_strings(shared_dt):
    """tests/data/dt_fastchat_prompts.json was written by scripts/make_dt_fastchat_fixture.py with
    DecodingTrust's own conversation.py (decoding-comp-trust/DecodingTrust@0cf3fc1): under the paper
    protocol each sampled request of every dimension renders to exactly that string (after the BOS)."""
    import json
    from pathlib import Path

    from comptrust.data.source import DataSource
    from comptrust.perspectives.base import PerspectiveContext, get_perspective, resolve_options
    from comptrust.profiles import get_profile
    from comptrust.protocol import resolve

    fixture = json.loads((Path(__file__).parent / "data" / "dt_fastchat_prompts.json").read_text())
    data = DataSource.from_dir(shared_dt)
    tok = llama_like_tokenizer(META_LLAMA2_TEMPLATE)
    by_dim: dict[str, dict] = {}
    for case in fixture["cases"]:
        name = case["dimension"]
        if name not in by_dim:
            r = resolve("paper", [name])
            P = get_perspective(name, resolve_options([name], r.perspective_options)[name])
            reqs = P.requests(PerspectiveContext(data=data, profile=get_profile("smoke"), seed=0))
            by_dim[name] = {q.id: q for q in reqs}
        req = by_dim[name][case["request_id"]]
        for template, expected in case["expected"].items():
            model = "meta-llama/Llama-2-13b-chat-hf" if template == "llama-2" else "lmsys/vicuna-13b-v1.3"
            f = ChatFormatter.for_tokenizer(tok, model, rendering="dt-fastchat")
            assert f.template_name == f"dt-fastchat:{template}"
            assert f.format(req.messages) == "<s>" + expected, (name, case["request_id"], template)
    assert {c["dimension"] for c in fixture["cases"]} == {"toxicity", "stereotype", "advglue", "ood", "adv_demonstration",
                                                          "privacy", "machine_ethics", "fairness"}
