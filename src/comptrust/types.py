"""Typed records passed between the pipeline stages (build -> generate -> score -> aggregate).

Kept free of torch/transformers so perspectives and statistics import nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class GenParams:
    """Decoding parameters of one request. temperature 0 means greedy."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    # Sampling keeps only the top_k most likely tokens (0 = the full vocabulary). DT's HF path
    # sampled with transformers' default top_k=50; the `paper` protocol preset sets it.
    top_k: int = 0
    n: int = 1  # samples per prompt (each sample is stored under its own key)
    stop: tuple[str, ...] = ()
    seed: int = 0  # sampling seed; ignored when greedy

    def key_dict(self) -> dict[str, Any]:
        """The parameters that change the text of one sample (n does not: sample i is the same
        whether 5 or 25 samples are asked for)."""
        d = asdict(self)
        d.pop("n")
        if self.temperature == 0 or not self.top_k:
            d.pop("top_k")  # absent when off, so keys of runs before top_k existed still match
        if self.temperature == 0:
            d.pop("seed")
            d.pop("top_p")
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Request:
    """One prompt a perspective wants answered.

    id: stable within the perspective (same data row -> same id for every model), used to pair
        dense and variant answers. group: the sub-scenario, used for stratified sampling and
        stratified bootstrap. meta: what the scorer needs (label, options, ...); JSON-able.
    """

    id: str
    group: str
    messages: tuple[Message, ...]
    params: GenParams
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # When non-empty, the request asks for the log-likelihood of each continuation after the
    # prompt instead of generated text (lm-eval style multiple choice); see Generation.logprobs.
    choices: tuple[str, ...] = ()
    # True: the text of the messages (one user turn) is the whole prompt, sent with the
    # tokenizer's default special tokens (BOS) and no chat template, as comp-trust's MMLU script did.
    raw_prompt: bool = False


@dataclass(frozen=True)
class Generation:
    """The answers to one Request: texts[i] is sample i."""

    request: Request
    texts: tuple[str, ...]
    prompt: str = ""  # the fully formatted prompt the model saw
    logprobs: tuple[float, ...] = ()  # sum log p(choice | prompt) per Request.choices entry


@dataclass
class SampleScore:
    """Per-request outcome from a perspective's scorer.

    values: named per-request quantities the aggregate needs (e.g. correct=1.0, max_tox=0.3).
    refusal: fraction of this request's samples counted as refusal (0..1).
    parsed: the parsed answer(s), for reports.
    """

    request_id: str
    group: str
    values: dict[str, float]
    refusal: float = 0.0
    parsed: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DimensionResult:
    """One trust dimension's aggregate (score on 0-100, higher is more trustworthy)."""

    dimension: str
    score: float | None
    refusal_rate: float | None
    subscores: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # skipped sub-scenarios, deviations, ...
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def stable_hash(obj: Any, n: int = 32) -> str:
    """sha256 of the canonical JSON of obj (hex, first n chars)."""
    blob = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]
