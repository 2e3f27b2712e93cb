import pytest

from comptrust.errors import ConfigError
from comptrust.models.chat import ChatFormatter
from comptrust.testing import NO_SYSTEM_TEMPLATE, make_tokenizer
from comptrust.types import Message

MSGS = (Message("system", "Be kind."), Message("user", "Is the sky blue?"))


def test_own_template_keeps_system_role():
    f = ChatFormatter.for_tokenizer(make_tokenizer())
    out = f.format(MSGS)
    assert f.template_name == "tokenizer" and not f.system_role_merged
    assert "<|im_start|>system\nBe kind.<|im_end|>" in out
    assert out.endswith("<|im_start|>assistant\n")


def test_template_without_system_role_merges_into_first_user_turn():
    f = ChatFormatter.for_tokenizer(make_tokenizer(NO_SYSTEM_TEMPLATE))
    out = f.format(MSGS)
    assert f.system_role_merged
    assert "<|im_start|>system" not in out
    assert "<|im_start|>user\nBe kind.\n\nIs the sky blue?<|im_end|>" in out
    assert any("merged" in n for n in f.notes)


def test_fallback_only_when_tokenizer_has_none():
    f = ChatFormatter.for_tokenizer(make_tokenizer(None), "meta-llama/Llama-2-13b-chat-hf")
    assert f.template_name == "llama-2"
    out = f.format(MSGS)
    assert "[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nIs the sky blue? [/INST]" in out
    assert any("fallback" in n for n in f.notes)
    v = ChatFormatter.for_tokenizer(make_tokenizer(None), "lmsys/vicuna-13b-v1.3")
    assert v.template_name == "vicuna_v1.1"
    assert v.format(MSGS) == "Be kind. USER: Is the sky blue? ASSISTANT:"
    # a tokenizer with its own template is not overridden by the name guess
    assert ChatFormatter.for_tokenizer(make_tokenizer(), "vicuna").template_name == "tokenizer"


def test_few_shot_turns_stay_user_assistant():
    f = ChatFormatter.for_tokenizer(make_tokenizer())
    out = f.format((Message("system", "S"), Message("user", "x1"), Message("assistant", "Yes"), Message("user", "x2")))
    assert out.count("<|im_start|>assistant\n") == 2 and out.count("<|im_start|>system") == 1


def test_unknown_override_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown chat template"):
        ChatFormatter.for_tokenizer(make_tokenizer(), override="alpaca")
