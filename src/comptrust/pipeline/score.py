"""Score and aggregate: per-sample scores from each perspective's scorer, then its 0-100
dimension result (DESIGN's score and aggregate arrows). Pure given the perspective."""

from __future__ import annotations

from typing import Any

from ..perspectives.base import Perspective, PerspectiveContext
from ..types import Generation, SampleScore


def score_all(p, gens: list[Generation]) -> list[SampleScore]:
    return list(p.score_many(gens))


def score_dimension(p: Perspective, gens: list[Generation], ctx: PerspectiveContext) -> tuple[dict[str, Any], list[SampleScore]]:
    """(the dimension's result as results.json holds it, without its provenance; the sample scores)."""
    scores = score_all(p, gens)
    d = p.aggregate(scores, ctx).to_json()
    d["title"] = p.title
    d["version"] = p.version
    d["notes"] = list(dict.fromkeys([*ctx.notes, *d.get("notes", [])]))
    d["counts"] = {"requests": len(gens), "samples": sum(max(1, len(g.texts)) for g in gens), **d.get("counts", {})}
    return d, scores
