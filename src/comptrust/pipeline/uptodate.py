"""Is a finished run directory already the answer to this eval? (make's rule, for `comptrust eval`)

A finished eval writes `inputs.json` next to results.json: a digest of everything its results
depend on, computed without loading a tokenizer, a model or the benchmark rows:
- the EvalConfig (every field but the run directory),
- the model's fingerprint (what resolve_model records; no transformers import),
- the data: size and mtime of every file under --data-dir (the bundled set is part of the code),
- the code: size and mtime of every file of the installed comptrust package.
A re-run whose digest matches, and whose results.json is still there, is answered from it at
once (rebuilding the plan means re-reading every benchmark file and importing transformers: ~12
CPU-s for the 8 trust dimensions). Any change (an option, a data file, a model, an upgrade)
misses and the run goes the normal way, resuming from the store. Hub data (`--data-dir hub`)
and endpoints never take the shortcut: their inputs cannot be stamped locally.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..types import stable_hash
from .build import EvalConfig, is_hub_data

INPUTS_FILE = "inputs.json"
_PACKAGE = Path(__file__).resolve().parent.parent


def _tree_stamp(root: Path) -> list[tuple[str, int, int]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for f in sorted(filenames):
            if f.endswith(".pyc"):
                continue
            st = os.stat(os.path.join(dirpath, f))
            out.append((os.path.relpath(os.path.join(dirpath, f), root), st.st_size, st.st_mtime_ns))
    return out


def inputs_digest(cfg: EvalConfig) -> str | None:
    """The digest of this eval's inputs, or None where they cannot be stamped locally."""
    from ..models.resolve import resolve_model

    if cfg.backend == "openai" or str(cfg.model).startswith("openai:"):
        return None
    data: Any = None
    if cfg.data_dir is not None:
        if is_hub_data(cfg.data_dir):
            return None
        root = Path(cfg.data_dir)
        if not root.is_dir():
            return None
        data = _tree_stamp(root.resolve())
    try:
        fp = resolve_model(cfg.model, trust_remote_code=cfg.trust_remote_code, allow_pickle=cfg.allow_pickle,
                           check_arch=False).fingerprint
    except Exception:  # the normal path reports a bad model with its own message
        return None
    doc = cfg.model_dump(mode="json")
    doc.pop("out_dir", None)
    return stable_hash({"config": doc, "model": fp, "data": data, "code": _tree_stamp(_PACKAGE)}, 40)


def finished_results(cfg: EvalConfig) -> dict | None:
    """results.json of cfg.out_dir when it was written by an eval with exactly these inputs."""
    out = Path(cfg.out_dir)
    try:
        recorded = json.loads((out / INPUTS_FILE).read_text())["digest"]
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return None
    digest = inputs_digest(cfg)
    return results if digest is not None and digest == recorded else None


def record_inputs(cfg: EvalConfig, digest: str | None) -> None:
    """After a finished eval: stamp the run directory with the digest of the inputs it started
    from (taken before anything was read, so data changed mid-run is not certified)."""
    path = Path(cfg.out_dir) / INPUTS_FILE
    if digest is None:
        path.unlink(missing_ok=True)
        return
    atomic_write_text(path, json.dumps({"digest": digest, "note": "comptrust eval: the inputs results.json answers "
                                        "(pipeline/uptodate.py); delete this file to force a full re-run"}, indent=2))
