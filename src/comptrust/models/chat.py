"""Chat formatting: Messages -> the exact prompt string the model sees.

Modes (`--chat-template`, or the protocol preset's `chat_rendering`):
1. native (default under the `comptrust` and `dt-main` presets): the tokenizer's own chat
   template; a known fallback (Llama-2, Vicuna v1.1) only when the tokenizer has none, picked by
   name or by --chat-template; a plain completion layout for base models without any template.
2. dt-fastchat (the `paper` preset, for the models DT had FastChat templates for): DecodingTrust's
   FastChat strings exactly (models/fastchat.py), including the BOS HELM's tokenizer call added.
   A model with no known FastChat template under the preset keeps mode 1, with a note.

Native templates differ in what they accept, and any message list a perspective builds must
render under every one of them:
- a template that rejects the system role gets the system text merged into the first user turn
  (`system_role_merged`, reported);
- a template that requires alternating roles (Meta's Llama-2, strict Vicuna) gets consecutive
  turns of one role joined with a blank line (DT's PII prompts put the context and the question
  in two user turns); a note says so.
The system prompt is never dropped silently. Our own fallbacks start with the BOS text when the
tokenizer adds one by default, as the model saw in DT (the backends encode with
add_special_tokens=False, so the prompt string must carry it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from ..errors import ConfigError
from ..types import Message
from . import fastchat

# Meta's Llama-2 chat format, with the [INST]/<<SYS>> wrappers kept (DT main's FastChat path
# dropped them by overwriting conv.system; protocol §1). Unlike Meta's own template it does not
# raise on consecutive user turns (each becomes its own [INST] block).
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

# FastChat's vicuna_v1.1 conversation template (the BOS is prepended by the formatter).
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
# Fallbacks whose text does not start with bos_token itself.
_NEEDS_BOS_PREFIX = frozenset({"vicuna_v1.1", "plain"})
DT_FASTCHAT = "dt-fastchat"
RENDERINGS = ("native", DT_FASTCHAT)  # the protocol preset's chat_rendering values
OVERRIDES = ("tokenizer", *FALLBACKS, DT_FASTCHAT, *(f"{DT_FASTCHAT}:{t}" for t in fastchat.TEMPLATES))
MERGE_SEP = "\n\n"


def check_chat_template(override: str | None) -> str | None:
    """--chat-template's value, or a ConfigError before any model is loaded."""
    if override is not None and override not in OVERRIDES:
        raise ConfigError(f"unknown chat template {override!r}; use {', '.join(OVERRIDES)}")
    return override


def guess_fallback(model_name: str) -> str:
    n = model_name.lower()
    if "vicuna" in n:
        return "vicuna_v1.1"
    if "llama-2" in n and "chat" in n:
        return "llama-2"
    return "plain"


def tokenizer_bos_text(tokenizer) -> str:
    """The BOS token's text when `tokenizer(text)` (default special tokens, as HELM called it)
    starts with it, else ''."""
    bos, bos_id = getattr(tokenizer, "bos_token", None), getattr(tokenizer, "bos_token_id", None)
    if not bos or bos_id is None:
        return ""
    try:
        ids = tokenizer("x")["input_ids"]
    except Exception:  # a tokenizer that cannot encode a probe has no default BOS to mirror
        return ""
    return bos if ids and ids[0] == bos_id else ""


def _merge_same_role(msgs: list[dict]) -> tuple[list[dict], bool]:
    out: list[dict] = []
    merged = False
    for m in msgs:
        if out and out[-1]["role"] == m["role"] and m["role"] != "system":
            out[-1] = {"role": m["role"], "content": out[-1]["content"] + MERGE_SEP + m["content"]}
            merged = True
        else:
            out.append(dict(m))
    return out, merged


@dataclass
class ChatFormatter:
    tokenizer: object
    template_name: str  # "tokenizer", a FALLBACKS key, or "dt-fastchat:<FastChat template>"
    template: str | None = None  # explicit jinja source for fallbacks
    system_role_supported: bool = True
    alternation_required: bool = False  # the template raises on two turns of one role in a row
    bos_text: str = ""  # prepended to the rendered text (fallbacks without bos_token, dt-fastchat)
    notes: list[str] = field(default_factory=list)
    _raw_bos: str | None = field(default=None, repr=False)

    @classmethod
    def for_tokenizer(cls, tokenizer, model_name: str = "", override: str | None = None,
                      rendering: str = "native") -> "ChatFormatter":
        """override: --chat-template; rendering: the protocol preset's chat_rendering, used when
        no override is given."""
        check_chat_template(override)
        if rendering not in RENDERINGS:
            raise ConfigError(f"unknown chat rendering {rendering!r}; use {' | '.join(RENDERINGS)}")
        conv = None
        if override is not None and override.startswith(DT_FASTCHAT):
            conv = override.partition(":")[2] or fastchat.guess_template(model_name)
            if conv is None:
                raise ConfigError(f"--chat-template {DT_FASTCHAT}: no FastChat template is known for {model_name!r}; "
                                  f"name one: {', '.join(f'{DT_FASTCHAT}:{t}' for t in fastchat.TEMPLATES)}")
        elif override is None and rendering == DT_FASTCHAT:
            conv = fastchat.guess_template(model_name)
        if conv is not None:
            f = cls(tokenizer, f"{DT_FASTCHAT}:{conv}", bos_text=tokenizer_bos_text(tokenizer))
            f.notes.append(f"chat rendering {DT_FASTCHAT}:{conv}: DecodingTrust's FastChat strings "
                           f"({fastchat.SOURCE}), system prompt overwriting conv.system"
                           + (", BOS prepended as HELM's tokenizer call added it" if f.bos_text else ""))
            return f
        own = getattr(tokenizer, "chat_template", None)
        if override == "tokenizer" or (override is None and own):
            if not own:
                raise ConfigError("the tokenizer has no chat template; pass --chat-template llama-2|vicuna_v1.1|plain")
            f = cls(tokenizer, "tokenizer")
        else:
            name = override or guess_fallback(model_name)
            f = cls(tokenizer, name, FALLBACKS[name],
                    bos_text=tokenizer_bos_text(tokenizer) if name in _NEEDS_BOS_PREFIX else "")
            f.notes.append(f"tokenizer has no chat template; used the {name} fallback" if not own
                           else f"chat template overridden with {name}")
        if override is None and rendering == DT_FASTCHAT:
            f.notes.append(f"protocol asks for {DT_FASTCHAT} rendering, but no FastChat template is known for "
                           f"{model_name or 'this model'!r}: rendered with {f.template_name}")
        f.system_role_supported = f._probe_system_role()
        if not f.system_role_supported:
            f.notes.append("chat template has no system role: system text merged into the first user turn")
        f.alternation_required = f._probe_alternation()
        return f

    @property
    def is_fastchat(self) -> bool:
        return self.template_name.startswith(DT_FASTCHAT + ":")

    def _render(self, msgs: list[dict]) -> str:
        kwargs = {"tokenize": False, "add_generation_prompt": True}
        if self.template is not None:
            kwargs["chat_template"] = self.template
        return self.bos_text + self.tokenizer.apply_chat_template(msgs, **kwargs)

    def _probe_system_role(self) -> bool:
        marker = "SYSTEM-ROLE-PROBE-7f3a"
        try:
            out = self._render([{"role": "system", "content": marker}, {"role": "user", "content": "hi"}])
        except Exception:  # jinja raise_exception('System role not supported') and friends
            return False
        return marker in out

    def _probe_alternation(self) -> bool:
        try:
            self._render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
        except Exception:  # Meta's 'Conversation roles must alternate user/assistant/...'
            return True
        return False

    def format(self, messages: Sequence[Message]) -> str:
        if self.is_fastchat:
            return self.bos_text + fastchat.render(self.template_name.partition(":")[2], messages)
        msgs = [{"role": m.role, "content": m.content} for m in messages]
        if not self.system_role_supported and msgs and msgs[0]["role"] == "system":
            sys = msgs.pop(0)["content"]
            if msgs and msgs[0]["role"] == "user":
                msgs[0] = {"role": "user", "content": f"{sys}\n\n{msgs[0]['content']}"}
            else:
                msgs.insert(0, {"role": "user", "content": sys})
        if self.alternation_required:
            msgs, merged = _merge_same_role(msgs)
            note = "chat template requires alternating roles: consecutive turns of one role joined with a blank line"
            if merged and note not in self.notes:
                self.notes.append(note)
        try:
            return self._render(msgs)
        except Exception as e:
            raise ConfigError(f"chat template {self.template_name!r} cannot render a {'/'.join(m['role'] for m in msgs)} "
                              f"conversation ({e}); pass --chat-template llama-2|vicuna_v1.1|plain|{DT_FASTCHAT}") from None

    def format_raw(self, messages: Sequence[Message]) -> str:
        """A raw completion prompt (Request.raw_prompt): the turns' text as is, after the BOS the
        tokenizer adds by default (as `tokenizer(prompt)` did in comp-trust's MMLU script)."""
        if len(messages) != 1 or messages[0].role != "user":
            raise AssertionError("a raw prompt is one user turn")  # a perspective bug, not user input
        if self._raw_bos is None:
            self._raw_bos = tokenizer_bos_text(self.tokenizer)
        return self._raw_bos + messages[0].content

    @property
    def system_role_merged(self) -> bool:
        return not self.system_role_supported
