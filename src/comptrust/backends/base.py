"""The backend protocol: formatted prompts in, texts out. Backends know nothing of perspectives
or the store; the runner batches requests to them and commits what they return."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

from ..errors import ConfigError
from ..types import GenParams, Message

BACKEND_NAMES = ("hf", "vllm", "openai")
# HF engine: rows decoding at once (its KV memory is bounded apart, by max_kv_bytes); generate
# path and endpoints: requests per batch. 128 rather than 64: wider decode GEMMs. Measured on
# 2026-12-02 (docs/engine.md), same process: a decode-heavy slice (stereotype + privacy, 400
# samples) took 154 s at 64 rows and 138 s at 128; the limit-8 slice of
# benchmarks/eval_throughput.py, 3 interleaved runs each, 49.6 s against 46.5 s (medians).
# 256 rows (with a 4 GiB KV budget) took 129 s on the first slice but then gave no gain on the
# whole quick profile (16 min 16 s against 16 min 11 s). 256 rather than 128, with the KV budget
# still 2 GiB: on 2026-12-03 (an AMD EPYC Zen 4), after the engine's linears moved to oneDNN's
# packed weights, the --limit 24 slice of the 8 trust dimensions (288 samples), 2 interleaved runs
# each in one process, took 85.4 / 85.6 s at 128 rows against 81.8 / 77.4 s at 256 (and 73.8 /
# 74.0 s at 256 against 76.0 / 75.7 s at 512), every answer identical; the whole quick profile
# of the 8 trust dimensions, one run each, 13 min 13 s at 256 against 13 min 22 s at 128 (all
# 3,325 stored answers identical): a gain on decode-heavy slices, ~1% on the whole profile
DEFAULT_BATCH_SIZE = 256


def check_backend_name(name: str, what: str = "backend") -> str:
    """The one check of a backend name (eval config, sweep spec, --backend)."""
    if name not in BACKEND_NAMES:
        raise ConfigError(f"unknown {what} {name!r}; use {' | '.join(BACKEND_NAMES)}")
    return name


@dataclass(frozen=True)
class GenItem:
    key: str  # store key of this (prompt, params, sample index)
    prompt: str  # fully formatted prompt
    params: GenParams
    sample_idx: int
    seed: int  # per-row sampling seed (seeds.sample_seed: the same for every model), so a sample never depends on its batch
    # The request's chat turns, for backends that send messages rather than a formatted prompt
    # (the OpenAI-compatible backend; the endpoint applies its own chat template).
    messages: tuple[Message, ...] = ()


@dataclass(frozen=True)
class GenOut:
    key: str
    text: str
    n_tokens: int


def finished_text(tokenizer, toks: list[int], eos, stop) -> tuple[str, int]:
    """One sample's answer: its tokens up to the first EOS (the count it reports), decoded, then cut
    at every stop string (the HF generate path and the engine must agree token for token)."""
    n = next((j for j, t in enumerate(toks) if t in eos), len(toks))
    text = tokenizer.decode(toks[:n], skip_special_tokens=True)
    for s in stop:
        cut = text.find(s)
        if cut >= 0:
            text = text[:cut]
    return text, n


@dataclass(frozen=True)
class LoglikItem:
    key: str
    prompt: str
    choices: tuple[str, ...]


class Backend(Protocol):
    name: str
    device: str
    dtype: str

    def generate(self, items: list[GenItem]) -> Iterator[list[GenOut]]:
        """Answer items; yield results batch by batch so the caller can commit each batch."""
        ...

    def loglikelihood(self, items: list[LoglikItem]) -> Iterator[list[tuple[str, tuple[float, ...]]]]:
        ...

    def count_tokens(self, text: str) -> int: ...
