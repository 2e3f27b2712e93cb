"""Build: validate every input, turn each perspective's data rows into Requests, format the
prompts with the model's chat template and key every sample (DESIGN's build arrow). Pure apart
from reading the data and the tokenizer; raises on any bad input and writes nothing."""

from __future__ import annotations

import dataclasses
import os
import reprlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ..backends.base import BACKEND_NAMES, DEFAULT_BATCH_SIZE, check_backend_name
from ..data.source import DataSource
from ..errors import ConfigError
from ..models.chat import ChatFormatter, check_chat_template
from ..models.resolve import ResolvedModel, resolve_model
from ..perspectives.base import PerspectiveContext, get_perspective, resolve_options
from ..profiles import get_profile
from ..protocol import check_protocol
from ..protocol import resolve as resolve_protocol
from ..seeds import sample_seed
from ..store import request_key
from ..types import Request


def check_on_bad_row(policy: str) -> str:
    """The one check of a bad-row policy (EvalConfig, make_data_source)."""
    if policy not in ("fail", "skip"):
        raise ConfigError(f"--on-bad-row must be fail or skip, not {policy!r}")
    return policy


class EvalConfig(BaseModel):
    """One evaluation: a model, its perspectives and every setting, checked once, when it is made.

    A pydantic model like the sweep spec's (spec.py): typed fields, unknown keywords rejected, so
    a misspelt setting is an error rather than a silent default. A bad value raises ConfigError
    with one line naming the problem and the fix (the CLI exits 2 and writes nothing); pydantic's
    own ValidationError never leaves __init__. Frozen, so every value stays the validated one: a
    changed copy is made with `replace()`, which validates again.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None
    perspectives: list[str]
    out_dir: Path
    data_dir: Path | None = None  # None: the bundled mini set; "hub" / "hub@REV": the HF dataset
    profile: str = "smoke"
    seed: int = 0  # prompt-sampling seed: which rows a profile draws (seeds.py)
    limit: int | None = Field(default=None, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)
    gen_seed: int = 0  # generation seed: sampling at t > 0, the same for every model (seeds.py)
    on_bad_row: str = "fail"
    device: str | None = None
    dtype: str | None = None
    batch_size: int = Field(default=DEFAULT_BATCH_SIZE, ge=1)  # HF engine: rows decoding at once (docs/engine.md)
    chat_template: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False  # pickle (.bin/.pt) checkpoints can run code when loaded
    backend: str = "hf"  # hf | vllm | openai
    # openai backend: the endpoint (or pass model="openai:MODEL@URL"); the key is read from the
    # environment variable api_key_env only
    base_url: str | None = None
    api_model: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=8, ge=1)
    request_timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=4, ge=0)
    tensor_parallel_size: int = Field(default=1, ge=1)  # vllm backend
    # protocol preset (protocol.py): paper | dt-main | comptrust; --option values override it
    protocol: str = "paper"
    # a perspective ending with 0 prompts (its data files absent) is an error unless this is set;
    # it is recorded in each dimension's provenance
    allow_partial: bool = False

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise _config_error(e) from None

    def replace(self, **changes: Any) -> "EvalConfig":
        """A copy with `changes`, validated like a new one (model_copy(update=...) would skip the
        validators, letting a bad value through)."""
        return type(self)(**{**self.model_dump(), **changes})

    @model_validator(mode="before")
    @classmethod
    def _endpoint_model(cls, data: Any) -> Any:
        # on the raw keywords, before the field checks: a frozen model cannot be changed after
        # them; whatever is passed still meets the fields' own type checks next
        if not isinstance(data, dict):
            return data
        data = dict(data)
        model = data.get("model")
        if isinstance(model, os.PathLike):  # a local checkpoint directory given as a Path
            data["model"] = model = os.fspath(model)
        endpoint_ref = isinstance(model, str) and model.startswith("openai:")
        if endpoint_ref and data.get("backend", "hf") == "hf":
            data["backend"] = "openai"  # an endpoint reference implies the endpoint backend
        if data.get("backend") == "openai" and not endpoint_ref:
            if not data.get("api_model"):
                raise ValueError("--backend openai needs --api-model NAME (and --base-url URL), or --model openai:NAME@URL")
            base_url = data.get("base_url")
            data["model"] = f"openai:{data['api_model']}" + (f"@{base_url}" if base_url else "")
        return data

    @field_validator("perspectives")
    @classmethod
    def _some_perspectives(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("no perspectives given; pass --perspectives stereotype (see `comptrust ls`)")
        return v

    # names checked elsewhere too (sweep spec, `--backend`, the chat formatter, make_data_source):
    # the one check each, so every path gives the same line
    @field_validator("on_bad_row", "profile", "protocol", "backend", "chat_template")
    @classmethod
    def _known_name(cls, v: Any, info: ValidationInfo) -> Any:
        _checked(_NAME_CHECKS[info.field_name], v)
        return v


_NAME_CHECKS = {"on_bad_row": check_on_bad_row, "profile": get_profile, "protocol": check_protocol,
                "backend": check_backend_name, "chat_template": check_chat_template}


def _checked(check: Any, value: Any) -> Any:
    """Run one of the project's name checks inside a validator: pydantic collects a ValueError
    (a ConfigError would escape it), and _config_error turns it back into the same line."""
    try:
        return check(value)
    except ConfigError as e:
        raise ValueError(str(e)) from None


_FIXES = {  # pydantic error type -> the fix to name
    "int_parsing": "pass a whole number", "int_type": "pass a whole number", "int_from_float": "pass a whole number",
    "float_parsing": "pass a number", "float_type": "pass a number", "bool_parsing": "pass True or False",
    "bool_type": "pass True or False", "string_type": "pass a string", "list_type": "pass a list of names",
    "dict_type": "pass a dict", "path_type": "pass a directory path", "greater_than_equal": "pass a larger value",
    "greater_than": "pass a larger value",
}


def _config_error(e: ValidationError) -> ConfigError:
    """pydantic's multi-line report -> the project's one line: the first problem and its fix."""
    errs = e.errors()
    err = errs[0]
    field_name = ".".join(str(p) for p in err["loc"])
    if err["type"] == "value_error":  # one of the validators above: the message names the fix
        msg = err["msg"].removeprefix("Value error, ")
    elif err["type"] == "extra_forbidden":
        msg = (f"EvalConfig has no setting {field_name!r}; fix its spelling "
               f"(settings: {', '.join(EvalConfig.model_fields)})")
    elif err["type"] == "missing":
        msg = f"EvalConfig needs {field_name}=...; pass it"
    else:  # a wrong type or range: reachable from Python callers (the CLI and spec type their values)
        text = "not a path" if err["type"] == "path_type" else err["msg"][:1].lower() + err["msg"][1:]
        fix = _FIXES.get(err["type"], "pass a valid value")
        msg = f"EvalConfig {field_name}={reprlib.repr(err.get('input'))}: {text}; {fix}"
    more = len(errs) - 1
    return ConfigError(msg + (f" (and {more} more error{'s' if more > 1 else ''})" if more else ""))


@dataclass
class Unit:
    """One sample to generate (or one log-likelihood request)."""

    perspective: str
    request: Request
    sample_idx: int
    prompt: str
    key: str
    seed: int = 0  # the sample's generation seed (seeds.sample_seed; 0 for greedy and log-likelihood units)


@dataclass
class Plan:
    resolved: ResolvedModel
    formatter: ChatFormatter
    requests: dict[str, list[Request]]
    units: dict[str, list[Unit]]
    contexts: dict[str, PerspectiveContext]
    data: DataSource
    options: dict[str, Any] = field(default_factory=dict)  # name -> the perspective's typed Options
    protocol: dict[str, Any] = field(default_factory=dict)  # protocol.Resolved.record(): preset + effective switches

    def summary(self) -> list[dict[str, Any]]:
        rows = []
        for name, reqs in self.requests.items():
            prompts, samples, budget = request_counts(reqs)
            rows.append({
                "perspective": name, "prompts": prompts, "samples": samples,
                "max_new_tokens": max((r.params.max_new_tokens for r in reqs), default=0),
                "token_budget": budget,
            })
        return rows


def request_counts(reqs: list[Request]) -> tuple[int, int, int]:
    """(prompts, samples, token budget): one sample per generation (n per request) or per
    log-likelihood request; the budget sums max_new_tokens over samples (an upper bound). Pure;
    the plan's cost estimate counts with it too."""
    n = [1 if r.choices else r.params.n for r in reqs]
    return len(reqs), sum(n), sum(k * r.params.max_new_tokens for k, r in zip(n, reqs))


def _with_sampling_seed(req: Request, seed: int, top_k: int | None = None) -> Request:
    """The run's sampling seed (and the protocol's top-k, when given) on a t>0 request."""
    if req.params.temperature <= 0:
        return req
    change: dict[str, Any] = {}
    if req.params.seed != seed:
        change["seed"] = seed
    if top_k is not None and req.params.top_k != top_k:
        change["top_k"] = top_k
    return dataclasses.replace(req, params=dataclasses.replace(req.params, **change)) if change else req


def is_hub_data(data_dir: Path | str | None) -> bool:
    """`--data-dir hub[@REV]` names the HF hub dataset (unless a local folder has that name)."""
    text = str(data_dir) if data_dir is not None else ""
    return (text == "hub" or text.startswith("hub@")) and not Path(text).exists()


def make_data_source(data_dir: Path | None, on_bad_row: str) -> DataSource:
    check_on_bad_row(on_bad_row)  # also called with a sweep spec's value (plan.py)
    if data_dir is None:
        return DataSource.bundled(on_bad_row)
    text = str(data_dir)
    if is_hub_data(text):
        # the HF hub dataset AI-Secure/DecodingTrust, materialised once into the DT layout
        from ..data.hub import HubSource
        from ..models.resolve import cache_dir

        revision = text.partition("@")[2] or None
        return HubSource(cache_dir=cache_dir() / "data", revision=revision).data_source(on_bad_row=on_bad_row)
    return DataSource.from_dir(data_dir, on_bad_row)


def load_tokenizer(resolved: ResolvedModel):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=resolved.trust_remote_code)


def build_plan(cfg: EvalConfig, resolved: ResolvedModel | None = None, tokenizer=None) -> Plan:
    """Everything up to (not including) generation; raises on any bad input, writes nothing."""
    profile = get_profile(cfg.profile)
    proto = resolve_protocol(cfg.protocol, list(cfg.perspectives), cfg.options)
    options = resolve_options(list(cfg.perspectives), proto.perspective_options)  # unknown keys fail here
    perspectives = {name: get_perspective(name, options[name]) for name in cfg.perspectives}
    for p in perspectives.values():
        p.check()
    data = make_data_source(cfg.data_dir, cfg.on_bad_row)
    resolved = resolved or resolve_model(cfg.model, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle)
    if (resolved.kind == "endpoint") != (cfg.backend == "openai"):
        raise ConfigError(f"model {resolved.ref} and --backend {cfg.backend} do not fit: openai:NAME@URL models need --backend openai, local ones hf or vllm")
    if resolved.kind == "endpoint":
        # the endpoint applies its own chat template: key and send the chat turns themselves
        from ..backends.openai_compat import MessagesFormatter

        formatter = MessagesFormatter()
    else:
        tokenizer = tokenizer or load_tokenizer(resolved)
        formatter = ChatFormatter.for_tokenizer(tokenizer, resolved.display_name, cfg.chat_template,
                                                rendering=proto.chat_rendering)
    requests: dict[str, list[Request]] = {}
    units: dict[str, list[Unit]] = {}
    contexts: dict[str, PerspectiveContext] = {}
    for name, p in perspectives.items():
        ctx = PerspectiveContext(data=data, profile=profile, seed=cfg.seed, limit=cfg.limit)
        with data.recording(name):
            reqs = [_with_sampling_seed(r, cfg.gen_seed, proto.sampling_top_k) for r in p.requests(ctx)]
        if not reqs and not cfg.allow_partial:
            raise ConfigError(_zero_prompts_message(name, data, ctx))
        if cfg.backend == "openai" and any(r.raw_prompt for r in reqs):
            raise ConfigError(f"{name} sends raw completion prompts ({cfg.protocol} protocol), which chat endpoints do not take; "
                              "evaluate it with --backend hf or vllm, or pass --option mmlu_prompt=chat")
        if cfg.backend == "openai" and any(r.choices for r in reqs):
            raise ConfigError(f"{name} asks for log-likelihoods, which chat endpoints do not give; evaluate it with --backend hf or vllm")
        ids = [r.id for r in reqs]
        if len(set(ids)) != len(ids):
            raise AssertionError(f"perspective {name} produced duplicate request ids")  # a bug, not user input
        requests[name], contexts[name] = reqs, ctx
        us = []
        for r in reqs:
            prompt = formatter.format_raw(r.messages) if r.raw_prompt else formatter.format(r.messages)
            n = 1 if r.choices else r.params.n
            sampled = r.params.temperature > 0 and not r.choices
            for i in range(n):
                seed = sample_seed(cfg.gen_seed, name, r.id, r.params, i) if sampled else 0
                key = request_key(resolved.fingerprint, cfg.backend, prompt, r.params, i, r.choices,
                                  sample_seed=seed if sampled else None)
                us.append(Unit(name, r, i, prompt, key, seed))
        units[name] = us
    return Plan(resolved, formatter, requests, units, contexts, data, options, proto.record())


def _zero_prompts_message(name: str, data: DataSource, ctx: PerspectiveContext) -> str:
    from ..sanitize import clean

    missing = data.missing_by.get(name) or []
    if missing:
        shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        why = f"{shown} not found under {data.root}"
    else:
        why = "; ".join(ctx.notes[:2]) or "no rows selected"
    return clean(f"{name}: 0 prompts ({why}); add the data files, or pass --allow-partial to record an empty result")


BACKENDS = BACKEND_NAMES  # the name runner re-exports
