"""Generate: answer every keyed sample the store lacks, batch by batch (DESIGN's generate arrow),
and read all answers back as Generations. The only stage that loads a model."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any, Callable

from ..backends.base import GenItem, LoglikItem
from ..faults import checkpoint
from ..models.resolve import ResolvedModel
from ..peakmem import PeakMemory
from ..store import Store
from ..types import Generation
from .build import EvalConfig, Plan, Unit


def _make_backend(cfg: EvalConfig, resolved: ResolvedModel):
    # cfg.backend is one of BACKEND_NAMES: EvalConfig checked it when it was made
    if cfg.backend == "openai":
        from ..backends.openai_compat import OpenAIBackend

        return OpenAIBackend(resolved.endpoint or "", resolved.display_name, api_key_env=cfg.api_key_env,
                             concurrency=cfg.concurrency, timeout=cfg.request_timeout,
                             max_retries=cfg.max_retries, batch_size=cfg.batch_size)
    if cfg.backend == "vllm":
        from ..backends.vllm import VLLMBackend

        return VLLMBackend(resolved, device=cfg.device, dtype=cfg.dtype,
                           tensor_parallel_size=cfg.tensor_parallel_size, batch_size=max(cfg.batch_size, 256))
    from ..backends.hf import HFBackend

    return HFBackend(resolved, device=cfg.device, dtype=cfg.dtype, batch_size=cfg.batch_size)


ProgressFn = Callable[[int, int], None]  # (done_units_delta, generated_tokens_delta)


def generate_missing(cfg: EvalConfig, plan: Plan, store: Store, on_start: Callable[[int], ProgressFn] | None = None) -> dict[str, Any]:
    """Generate every unit the store lacks; commits batch by batch. Returns efficiency figures."""
    all_units = [u for us in plan.units.values() for u in us]
    have = store.get_many(u.key for u in all_units)
    missing = [u for u in all_units if u.key not in have]
    if not missing:
        return {}
    by_key = {u.key: u for u in missing}
    advance = on_start(len(missing)) if on_start else (lambda a, b: None)
    mem = PeakMemory.start()  # the load and the first batch: weights, buffers, activations
    t_load = time.perf_counter()
    backend = _make_backend(cfg, plan.resolved)
    load_s = time.perf_counter() - t_load
    peak: list[int | None] = []  # set once, after the first batch of either kind

    def first_batch_done() -> None:
        if not peak:
            peak.append(mem.peak_added())

    def row(u: Unit, text: str, n_tokens: int) -> dict[str, Any]:
        return {"key": u.key, "model_fp": plan.resolved.fingerprint, "backend": backend.name,
                "perspective": u.perspective, "request_id": u.request.id, "sample_idx": u.sample_idx,
                "params": {**dataclasses.asdict(u.request.params), "sample_seed": u.seed},  # the seed it was drawn with
                "prompt": u.prompt, "text": text, "n_tokens": n_tokens}

    gen_items = [GenItem(u.key, u.prompt, u.request.params, u.sample_idx, u.seed, u.request.messages)
                 for u in missing if not u.request.choices]
    ll_items = [LoglikItem(u.key, u.prompt, u.request.choices) for u in missing if u.request.choices]
    for batch in backend.generate(gen_items):
        checkpoint("generate.batch")
        store.put_many([row(by_key[o.key], o.text, o.n_tokens) for o in batch])
        first_batch_done()
        advance(len(batch), sum(o.n_tokens for o in batch))
    if ll_items:
        for batch in backend.loglikelihood(ll_items):
            store.put_many([row(by_key[k], json.dumps(list(v)), 0) for k, v in batch])
            first_batch_done()
            advance(len(batch), 0)
    eff = {"backend": {"name": backend.name, "device": backend.device, "dtype": backend.dtype},
           "load_seconds": round(load_s, 2),
           # peak resident memory added from before the load through the first batch
           "peak_load_mem_bytes": peak[0] if peak else None}
    if backend.gen_seconds > 0 and backend.gen_tokens > 0:
        eff["tokens_per_s"] = round(backend.gen_tokens / backend.gen_seconds, 2)
    return eff


def collect_generations(plan: Plan, store: Store) -> dict[str, list[Generation]]:
    have = store.get_many(u.key for us in plan.units.values() for u in us)
    out: dict[str, list[Generation]] = {}
    for name, reqs in plan.requests.items():
        by_req: dict[str, list[Unit]] = {}
        for u in plan.units[name]:
            by_req.setdefault(u.request.id, []).append(u)
        gens = []
        for r in reqs:
            us = sorted(by_req[r.id], key=lambda u: u.sample_idx)
            missing = [u for u in us if u.key not in have]
            if missing:
                raise RuntimeError(f"{len(missing)} answers missing for {name}/{r.id} after generation")
            if r.choices:
                gens.append(Generation(r, (), us[0].prompt, tuple(json.loads(have[us[0].key][0]))))
            else:
                gens.append(Generation(r, tuple(have[u.key][0] for u in us), us[0].prompt))
        out[name] = gens
    return out
