"""Evaluate one model on some perspectives into a run directory (local executor).

Order of work, chosen so that bad input fails before anything is written; each arrow of
DESIGN's flow is its own module:
  pipeline/build.py     validate + build every request (pure) -> format prompts with the model's
                        chat template -> key every sample
  (here)                open the store -> print the plan
  pipeline/generate.py  generate only what the store lacks (batch commits)
  pipeline/score.py     score -> aggregate
  results_doc.py        write samples/<dimension>.jsonl and merge results.json atomically
A re-run of a finished run loads no model weights and takes seconds. The names other modules
import from here (EvalConfig, build_plan, run_eval, generate_missing, ...) stay importable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError
from .faults import checkpoint
from .perspectives.base import get_perspective
from .pipeline.build import (  # noqa: F401  (re-exported)
    BACKENDS, EvalConfig, Plan, Unit, _with_sampling_seed, _zero_prompts_message, build_plan, load_tokenizer,
    make_data_source,
)
from .pipeline.generate import ProgressFn, _make_backend, collect_generations, generate_missing  # noqa: F401
from .pipeline.score import score_all, score_dimension  # noqa: F401
from .results_doc import (  # noqa: F401  (the underscored names stay importable from here)
    _atomic_write, _read_json, _results_doc, _same_model, _versions, check_merge, dimension_provenance, write_results,
    write_samples,
)
from .store import Store


def run_eval(cfg: EvalConfig, *, plan: Plan | None = None, on_plan: Callable[[Plan, int], None] | None = None,
             on_start: Callable[[int], ProgressFn] | None = None) -> dict[str, Any]:
    plan = plan or build_plan(cfg)
    out = Path(cfg.out_dir)
    # refuse a merge that would mislabel or drop dimensions before generating anything
    check_merge(_read_json(out / "results.json"), cfg, plan, list(plan.requests))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot create the run directory ({e.strerror}); pass a writable directory") from None
    from .pipeline.uptodate import INPUTS_FILE, inputs_digest, record_inputs

    digest = inputs_digest(cfg)
    (out / INPUTS_FILE).unlink(missing_ok=True)  # stamped again only once this run has finished
    with Store(out / "store.sqlite") as store:
        if on_plan:
            have = store.get_many(u.key for us in plan.units.values() for u in us)
            on_plan(plan, sum(1 for us in plan.units.values() for u in us if u.key not in have))
        eff = generate_missing(cfg, plan, store, on_start)
        gens = collect_generations(plan, store)
        dims: dict[str, Any] = {}  # this run's; write_results merges them with the document's
        samples: dict[str, Any] = {}
        for name, gl in gens.items():
            checkpoint("score")
            # one instance scores and aggregates (the score cache lets a scorer skip known texts)
            p = get_perspective(name, plan.options[name], score_cache=store.score_cache())
            d, scores = score_dimension(p, gl, plan.contexts[name])
            d["provenance"] = dimension_provenance(cfg, plan, name, d.get("extra", {}).get("scorer"))
            dims[name] = d
            samples[name] = (gl, scores)
    results = write_results(cfg, plan, dims, eff, samples)
    record_inputs(cfg, digest)
    return results
