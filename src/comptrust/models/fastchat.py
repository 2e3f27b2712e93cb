"""DecodingTrust's FastChat rendering, string for string (the `dt-fastchat` chat-template mode).

The paper's runs (decoding-comp-trust/DecodingTrust 0cf3fc1, identical to AI-secure main
161ae83 here) format chat turns with `src/dt/conversation.py`, a copy of FastChat's templates,
through `HFChat.messages_to_prompt`:

    conv = get_conv_template(name).copy()
    for m in messages:
        system    -> conv.system = m.content          (overwrites, wherever it appears; the last wins)
        user      -> conv.append_message(conv.roles[0], m.content)
        assistant -> conv.append_message(conv.roles[1], m.content)
    conv.append_message(conv.roles[1], None)
    prompt = conv.get_prompt()

HELM's HuggingFace client then encodes that string with `tokenizer(prompt)`, i.e. with the
tokenizer's special tokens (a BOS for Llama/Vicuna). `render` reproduces `get_prompt` for the
templates the paper used; `ChatFormatter` prepends the BOS text the tokenizer would add, since
our backends encode with add_special_tokens=False.

Consequences kept on purpose (they are what the paper's models saw):
- llama-2: the template's `system` holds the whole `<s>[INST] <<SYS>>...<</SYS>>\\n\\n` prefix,
  and the first turn is rendered as `system + message` with no separator. A DT system prompt
  replaces that prefix, so the model sees `<BOS>` + system + user + `[/INST]` with no `[INST]`
  or `<<SYS>>`; with no system message Meta's default system prompt stays in, and the prompt
  starts with two BOS tokens (the template's literal `<s>` plus the tokenizer's).
- consecutive user turns are appended as they are (FastChat does not require alternation).
- several system messages collapse to the last one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..types import Message

# The commit the strings below were copied from (src/dt/conversation.py).
SOURCE = "decoding-comp-trust/DecodingTrust@0cf3fc1 src/dt/conversation.py (= AI-secure/DecodingTrust@161ae83)"

LLAMA2_DEFAULT_SYSTEM = (
    "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while being safe. "
    "Your answers should not include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. "
    "Please ensure that your responses are socially unbiased and positive in nature.\n\n"
    "If a question does not make any sense, or is not factually coherent, explain why instead of answering something not correct. "
    "If you don't know the answer to a question, please don't share false information.\n<</SYS>>\n\n"
)
VICUNA_DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


@dataclass(frozen=True)
class ConvTemplate:
    name: str
    system: str
    roles: tuple[str, str]
    style: str  # LLAMA2 | ADD_COLON_TWO | INSTRUCT (FastChat's SeparatorStyle)
    sep: str
    sep2: str | None = None


TEMPLATES: dict[str, ConvTemplate] = {
    "llama-2": ConvTemplate("llama-2", LLAMA2_DEFAULT_SYSTEM, ("[INST]", "[/INST]"), "LLAMA2", " ", " </s><s>"),
    "vicuna_v1.1": ConvTemplate("vicuna_v1.1", VICUNA_DEFAULT_SYSTEM, ("USER", "ASSISTANT"), "ADD_COLON_TWO", " ", "</s>"),
    # base models in the paper (LLaMA-2-13b) ran with this one
    "redpajama-incite-instruct": ConvTemplate("redpajama-incite-instruct", "", ("", "answer"), "INSTRUCT", "\n"),
}


def guess_template(model_name: str) -> str | None:
    """The FastChat template DT's model configs name for this model, or None when unknown."""
    n = model_name.lower()
    if "vicuna" in n:
        return "vicuna_v1.1"
    if "llama-2" in n or "llama2" in n:
        return "llama-2" if "chat" in n else "redpajama-incite-instruct"
    return None


def render(template: str, messages: Sequence[Message]) -> str:
    """`messages_to_prompt` + `Conversation.get_prompt` of DT's conversation.py."""
    t = TEMPLATES[template]
    system = t.system
    turns: list[tuple[str, str | None]] = []
    for m in messages:
        if m.role == "system":
            system = m.content
        elif m.role == "user":
            turns.append((t.roles[0], m.content))
        else:
            turns.append((t.roles[1], m.content))
    turns.append((t.roles[1], None))
    if t.style == "LLAMA2":
        seps = [t.sep, t.sep2 or ""]
        ret = ""
        for i, (role, msg) in enumerate(turns):
            if msg:
                ret += system + msg if i == 0 else role + " " + msg + seps[i % 2]
            else:
                ret += role
        return ret
    if t.style == "ADD_COLON_TWO":
        seps = [t.sep, t.sep2 or ""]
        ret = system + seps[0]
        for i, (role, msg) in enumerate(turns):
            ret += role + ": " + msg + seps[i % 2] if msg else role + ":"
        return ret
    if t.style == "INSTRUCT":
        ret = system
        for role, msg in turns:
            if msg:
                ret += (role + ": " + msg + t.sep) if role == "answer" else (msg + t.sep)
            else:
                ret += role + ":"
        return ret
    raise AssertionError(f"unhandled FastChat style {t.style}")  # a bug: TEMPLATES lists only the three
