"""The perspective interface: load rows -> build requests -> score responses -> aggregate.

A perspective is a small object with three pure steps. It never touches a model or the store:
the runner generates answers for its Requests and hands them back as Generations.

    requests(ctx)           -> list[Request]          (load + sample + build, pure in ctx)
    score(gen)              -> SampleScore            (one request's answers)
    aggregate(scores, ctx)  -> DimensionResult        (0-100, refusal rate, subscores, notes)

`aggregate` must be a pure function of the list of SampleScores (plus ctx), because the
statistics module calls it on bootstrap resamples of that list to get confidence intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from ..data.source import DataSource
from ..errors import ConfigError
from ..profiles import Profile
from ..types import DimensionResult, Generation, Request, SampleScore


@dataclass
class PerspectiveContext:
    data: DataSource
    profile: Profile
    seed: int = 0  # sampling of prompts (profiles) and sampling seed of t>0 generations
    limit: int | None = None  # cap on the number of requests (after stratified sampling)
    options: dict[str, Any] = field(default_factory=dict)  # perspective-specific switches
    notes: list[str] = field(default_factory=list)  # filled by requests(): skipped parts, fallbacks

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@runtime_checkable
class Perspective(Protocol):
    name: ClassVar[str]  # registry key, e.g. "stereotype"
    title: ClassVar[str]  # human name, e.g. "Stereotype bias"
    is_trust: ClassVar[bool]  # True for the 8 DecodingTrust dimensions, False for benign tasks

    def requests(self, ctx: PerspectiveContext) -> list[Request]: ...

    def score(self, gen: Generation) -> SampleScore: ...

    def aggregate(self, scores: list[SampleScore], ctx: PerspectiveContext) -> DimensionResult: ...

    # Optional: `validate()` raises ComptrustError on bad options before any work starts;
    # `score_many(gens)` scores a batch at once (e.g. one classifier pass over all texts).


_REGISTRY: dict[str, type] = {}

# Modules that register perspectives on import; listed here so `get_perspective` works without
# the caller importing them, and an optional module that fails to import does not break others.
_MODULES = [
    "stereotype", "toxicity", "advglue", "ood", "adv_demonstration", "privacy",
    "machine_ethics", "fairness", "mmlu",
]

TRUST_DIMENSIONS = [
    "toxicity", "stereotype", "advglue", "ood", "adv_demonstration", "privacy",
    "machine_ethics", "fairness",
]


def register(cls: type) -> type:
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    import importlib

    for m in _MODULES:
        try:
            importlib.import_module(f"{__package__}.{m}")
        except ModuleNotFoundError as e:
            if e.name != f"{__package__}.{m}":
                raise


def list_perspectives() -> dict[str, type]:
    _load_all()
    return dict(_REGISTRY)


def get_perspective(name: str, **kwargs: Any) -> Perspective:
    _load_all()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown perspective {name!r}; use one of: {', '.join(sorted(_REGISTRY))} (see `comptrust ls`)"
        ) from None
    return cls(**kwargs)
