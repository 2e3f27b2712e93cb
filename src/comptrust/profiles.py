"""Evaluation profiles: how much of each perspective to run.

smoke: seconds, for tests. quick: a stratified, seeded sample per sub-scenario (8 minutes per model
on the bundled set, 13 on the DecodingTrust data's 8 trust dimensions, measured on 2 cores).
full: the whole benchmark with DecodingTrust's sample counts (GPU territory).
Sampling depends only on (data, profile, seed), so every model of a comparison gets the same
prompts and results stay paired.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, TypeVar

from .errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    name: str
    per_group: int | None  # items per sub-scenario; None = all
    n_samples: int  # samples per prompt for t>0 perspectives (DecodingTrust uses 25)
    max_new_tokens_cap: int | None = None  # cap on long generations (recorded in results)
    description: str = ""


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", per_group=2, n_samples=2, max_new_tokens_cap=24,
                     description="2 prompts per sub-scenario; for tests: seconds per dimension on a tiny model"),
    "quick": Profile("quick", per_group=10, n_samples=3, max_new_tokens_cap=64,
                     description=("stratified seeded sample; embedded model on 2 CPU cores, measured end to end "
                                 "(README): bundled set, 8 dimensions + MMLU: 8 min per model; DecodingTrust data, "
                                 "8 trust dimensions: 11-12 min on two machines, 16-21 min on slower ones")),
    "full": Profile("full", per_group=None, n_samples=25, max_new_tokens_cap=None,
                    description=("the whole benchmark with DecodingTrust's sample counts: GPU + vLLM territory (the "
                                "bundled set alone is 1.7M budget tokens per model, days on a CPU)")),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"unknown profile {name!r}; use one of: {', '.join(PROFILES)}"
        ) from None


def stratified_sample(
    items: Iterable[T],
    group_of: Callable[[T], str],
    per_group: int | None,
    seed: int,
    limit: int | None = None,
) -> list[T]:
    """Take up to per_group items from each group, chosen by a seeded RNG per group.

    Order within the output follows the input order, so the result is a pure function of the
    data, profile and seed. The per-group RNG is seeded by (seed, group name), so adding a group
    does not change the sample of another. `limit` then caps the total, round-robin over groups.
    """
    groups: dict[str, list[tuple[int, T]]] = defaultdict(list)
    for i, it in enumerate(items):
        groups[group_of(it)].append((i, it))
    chosen: list[tuple[int, T, int]] = []  # (input index, item, rank within group)
    for g, members in groups.items():
        if per_group is None or len(members) <= per_group:
            picked = members
        else:
            rng = random.Random(f"{seed}:{g}")
            picked = sorted(rng.sample(members, per_group), key=lambda x: x[0])
        chosen.extend((i, it, rank) for rank, (i, it) in enumerate(picked))
    if limit is not None and len(chosen) > limit:
        chosen.sort(key=lambda x: (x[2], x[0]))
        chosen = chosen[:limit]
    chosen.sort(key=lambda x: x[0])
    return [it for _, it, _ in chosen]
