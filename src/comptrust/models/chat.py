"""Chat formatting: Messages -> the exact prompt string the model sees.

Order of preference (DecodingTrust release branch behaviour, protocol §8.2):
1. the tokenizer's own chat template;
2. a known fallback (Llama-2, Vicuna v1.1) only when the tokenizer has none, picked by name or
   by --chat-template;
3. a plain completion layout for base models without any template.
A template that rejects the system role gets the system text merged into the first user turn;
the formatter records that (`system_role_merged`) so the run can report it. The system prompt
is never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ConfigError
from ..types import Message

# Meta's Llama-2 chat format, with the [INST]/<<SYS>> wrappers kept (DT main's FastChat path
# dropped them by overwriting conv.system; protocol §1).
LLAMA2_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = '' %}{% set msgs = messages %}{% endif %}"
    "{% for m in msgs %}"
    "{% if m['role'] == 'user' %}"
    "{% if loop.first and sys %}{{ bos_token + '[INST] <<SYS>>\\n' + sys + '\\n<</SYS>>\\n\\n' + m['content'].strip() + ' [/INST]' }}"
    "{% else %}{{ bos_token + '[INST] ' + m['content'].strip() + ' [/INST]' }}{% endif %}"
    "{% else %}{{ ' ' + m['content'].strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}"
)

# FastChat's vicuna_v1.1 conversation template.
VICUNA_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}{% set msgs = messages[1:] %}"
    "{% else %}{% set sys = \"A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions.\" %}{% set msgs = messages %}{% endif %}"
    "{{ sys + ' ' }}"
    "{% for m in msgs %}"
    "{% if m['role'] == 'user' %}{{ 'USER: ' + m['content'] + ' ' }}"
    "{% else %}{{ 'ASSISTANT: ' + m['content'] + eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

# Completion layout for base models (the paper used FastChat's redpajama-incite-instruct).
PLAIN_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}{{ m['content'] + '\\n\\n' }}"
    "{% elif m['role'] == 'user' %}{{ 'Q: ' + m['content'] + '\\n' }}"
    "{% else %}{{ 'A: ' + m['content'] + '\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'A:' }}{% endif %}"
)

FALLBACKS = {"llama-2": LLAMA2_TEMPLATE, "vicuna_v1.1": VICUNA_TEMPLATE, "plain": PLAIN_TEMPLATE}


def guess_fallback(model_name: str) -> str:
    n = model_name.lower()
    if "vicuna" in n:
        return "vicuna_v1.1"
    if "llama-2" in n and "chat" in n:
        return "llama-2"
    return "plain"


@dataclass
class ChatFormatter:
    tokenizer: object
    template_name: str  # "tokenizer" or a FALLBACKS key
    template: str | None = None  # explicit jinja source for fallbacks
    system_role_supported: bool = True
    notes: list[str] = field(default_factory=list)

    @classmethod
    def for_tokenizer(cls, tokenizer, model_name: str = "", override: str | None = None) -> "ChatFormatter":
        if override is not None and override not in FALLBACKS and override != "tokenizer":
            raise ConfigError(f"unknown chat template {override!r}; use tokenizer, {', '.join(FALLBACKS)}")
        own = getattr(tokenizer, "chat_template", None)
        if override == "tokenizer" or (override is None and own):
            if not own:
                raise ConfigError("the tokenizer has no chat template; pass --chat-template llama-2|vicuna_v1.1|plain")
            f = cls(tokenizer, "tokenizer")
        else:
            name = override or guess_fallback(model_name)
            f = cls(tokenizer, name, FALLBACKS[name])
            f.notes.append(f"tokenizer has no chat template; used the {name} fallback" if not own
                           else f"chat template overridden with {name}")
        f.system_role_supported = f._probe_system_role()
        if not f.system_role_supported:
            f.notes.append("chat template has no system role: system text merged into the first user turn")
        return f

    def _render(self, msgs: list[dict]) -> str:
        kwargs = {"tokenize": False, "add_generation_prompt": True}
        if self.template is not None:
            kwargs["chat_template"] = self.template
        return self.tokenizer.apply_chat_template(msgs, **kwargs)

    def _probe_system_role(self) -> bool:
        marker = "SYSTEM-ROLE-PROBE-7f3a"
        try:
            out = self._render([{"role": "system", "content": marker}, {"role": "user", "content": "hi"}])
        except Exception:  # jinja raise_exception('System role not supported') and friends
            return False
        return marker in out

    def format(self, messages: Sequence[Message]) -> str:
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if not self.system_role_supported and msgs and msgs[0]["role"] == "system":
            sys = msgs.pop(0)["content"]
            if msgs and msgs[0]["role"] == "user":
                msgs[0] = {"role": "user", "content": f"{sys}\n\n{msgs[0]['content']}"}
            else:
                msgs.insert(0, {"role": "user", "content": sys})
        return self._render(msgs)

    @property
    def system_role_merged(self) -> bool:
        return not self.system_role_supported
