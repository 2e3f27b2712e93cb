"""The run directory's results.json: build the document for one eval and write it.

Moved out of runner.py so that the document's one job — what a run directory says it holds —
lives in one place, apart from building requests, generating and scoring.
"""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .faults import checkpoint
from .profiles import get_profile
from .results_schema import SCHEMA_VERSION as RESULTS_SCHEMA_VERSION
from .results_schema import RunResults, compute_overall

if TYPE_CHECKING:
    from .runner import EvalConfig, Plan


RESULTS_NAME = "results.json"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"comptrust": __version__, "python": platform.python_version()}
    for pkg in ("torch", "transformers", "llmcompressor", "compressed-tensors", "datasets", "fairlearn"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out



def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _same_model(prev: dict | None, plan: "Plan") -> bool:
    return bool(prev) and prev.get("model", {}).get("fingerprint") == plan.resolved.fingerprint


def _results_doc(cfg: "EvalConfig", plan: "Plan", dims: dict, eff: dict, prev: dict | None, scorers: dict) -> dict:
    r = plan.resolved
    m = r.manifest or {}
    gs = m.get("group_size") or {}
    compression = None
    if r.is_variant:
        calib = m.get("calibration") or {}
        compression = {
            "method": m.get("method"), "bits": m.get("bits"), "sparsity": m.get("sparsity"),
            "structure": m.get("structure"), "group_size_requested": gs.get("requested"),
            "group_size_effective": gs.get("effective"), "calib_source": calib.get("source"),
            "calib_hash": calib.get("hash"), "n_calib": calib.get("n_samples"), "seq_len": calib.get("seq_len"),
            "seed": calib.get("seed", m.get("seed")),
        }
    prev_eff = (prev or {}).get("efficiency", {}) if _same_model(prev, plan) else {}
    prev_backend = (prev or {}).get("backend") if _same_model(prev, plan) else None
    efficiency = {
        "size_bytes": r.size_bytes(),
        "peak_load_mem_bytes": eff.get("peak_load_mem_bytes", prev_eff.get("peak_load_mem_bytes")),
        "tokens_per_s": eff.get("tokens_per_s", prev_eff.get("tokens_per_s")),
    }
    deviations = sorted({n for d in dims.values() for n in d.get("notes", [])})
    return {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "comptrust_version": __version__,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_id": Path(cfg.out_dir).name,
        "model": {
            "ref": r.ref, "display_name": m.get("name") or r.display_name, "fingerprint": r.fingerprint,
            "kind": "variant" if r.is_variant else "dense",
            "base_fingerprint": (m.get("base") or {}).get("fingerprint") if r.is_variant else None,
            "compression": compression, "bits_per_weight": m.get("bits_per_weight"),
            "size_bytes": r.size_bytes(), "chat_template": plan.formatter.template_name,
            "system_role_merged": plan.formatter.system_role_merged,
            "notes": [*r.notes, *plan.formatter.notes],
        },
        "backend": eff.get("backend") or prev_backend or {"name": cfg.backend, "device": cfg.device or "cpu", "dtype": cfg.dtype or "float32"},
        "efficiency": efficiency,
        "profile": {"name": cfg.profile, "seed": cfg.seed, "limit": cfg.limit, "n_samples": get_profile(cfg.profile).n_samples},
        "options": {k: v for k, v in cfg.options.items() if isinstance(v, (str, int, float, bool, type(None)))},
        "protocol": getattr(plan, "protocol", None) or {},
        "dimensions": dims,
        "overall": compute_overall({k: v.get("score") for k, v in dims.items()}).model_dump(),
        "provenance": {"data": plan.data.provenance(), "scorers": scorers, "deviations": deviations},
        "versions": _versions(),
    }


def write_results(cfg: "EvalConfig", plan: "Plan", dims: dict, eff: dict, prev: dict | None, scorers: dict) -> dict:
    """Build, validate against the published schema (drift fails here, not in a report) and
    write OUT/results.json atomically. Returns the document written."""
    from .runner import _atomic_write

    results = _results_doc(cfg, plan, dims, eff, prev, scorers)
    results = RunResults.model_validate(results).model_dump(mode="json")
    checkpoint("results.write")
    _atomic_write(Path(cfg.out_dir) / RESULTS_NAME, json.dumps(results, indent=2, ensure_ascii=False, default=str))
    return results
