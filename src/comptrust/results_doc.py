"""The run directory's documents: results.json and samples/<dimension>.jsonl.

Several evals may write one run directory, one after another or at the same time (each with
its own dimensions). Every write is a read-merge-write under an exclusive lock on
OUT/.results.json.lock, so no writer's dimension is lost; the lock is released by the kernel
if the writer dies, and results.json is replaced atomically, so it is always whole.

A merge only combines dimensions produced by the same model under the same settings (profile,
seed, limit, sample count, options, data source and file hashes, backend, chat template,
bad-row policy): those are what the document's top-level fields claim for every dimension.
A run whose settings differ from a dimension it would keep is refused with one line (exit 2)
before anything is generated, and again at write time under the lock (a concurrent writer may
have got there first). A run that rewrites every dimension already there replaces the
document. Each dimension also keeps its own `provenance` record. See docs/results-merge.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .atomic import atomic_write_text
from .errors import ConfigError
from .faults import checkpoint
from .locks import locked
from .profiles import get_profile
from .results_schema import SCHEMA_VERSION as RESULTS_SCHEMA_VERSION
from .results_schema import (
    BackendInfo, CompressionInfo, DataProvenance, DimensionScore, EfficiencyInfo, ModelInfo, ProfileInfo,
    ProtocolInfo, Provenance, RunResults, compute_overall,
)
from .versions import library_versions
from .perspectives.base import option_deviations

if TYPE_CHECKING:
    from .runner import EvalConfig, Plan
    from .types import Generation, SampleScore


RESULTS_NAME = "results.json"
LOCK_NAME = f".{RESULTS_NAME}.lock"

# Options the CLI always passes with their default value; absent means the same.
_DEFAULT_OPTIONS = {"toxicity_scorer": "default"}


def _versions() -> dict[str, str]:
    return {"comptrust": __version__, "python": platform.python_version(),
            **library_versions(("torch", "transformers", "llmcompressor", "compressed-tensors", "datasets", "fairlearn"))}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _same_model(prev: dict | None, plan: "Plan") -> bool:
    return bool(prev) and prev.get("model", {}).get("fingerprint") == plan.resolved.fingerprint


def check_out_dir(out: Path) -> None:
    """Fail in one line, before any model is loaded, when --out cannot become a run directory.
    Probes by creating (and removing) a temp dir in the nearest existing ancestor: permission
    bits alone do not tell (root, read-only mounts, /proc)."""
    import tempfile

    from .sanitize import clean

    p = Path(out)
    fix = "pass a writable directory"
    if p.exists() and not p.is_dir():
        raise ConfigError(clean(f"--out {p}: exists and is not a directory; {fix}"))
    anc = p if p.exists() else next((a for a in p.absolute().parents if a.exists()), Path("/"))
    if not anc.is_dir():
        raise ConfigError(clean(f"--out {p}: cannot create the run directory (Not a directory: {anc}); {fix}"))
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".comptrust-probe-", dir=anc))
    except OSError as e:
        raise ConfigError(clean(f"--out {p}: cannot create the run directory ({e.strerror}); {fix}")) from None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _norm_options(options: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (options or {}).items() if _DEFAULT_OPTIONS.get(k, object()) != v}


def profile_info(cfg: "EvalConfig") -> dict[str, Any]:
    return {"name": cfg.profile, "seed": cfg.seed, "limit": cfg.limit, "n_samples": get_profile(cfg.profile).n_samples,
            "gen_seed": cfg.gen_seed}


def _settings(cfg: "EvalConfig", plan: "Plan") -> dict[str, Any]:
    """What the document's top-level fields claim for every dimension (compared on merge)."""
    return {"profile": profile_info(cfg), "options": _norm_options(_json_options(cfg.options)),
            "data source": plan.data.label, "backend": cfg.backend,
            "chat template": plan.formatter.template_name, "--on-bad-row": cfg.on_bad_row,
            "--protocol": plan.protocol.get("name", "")}


def _settings_of_dimension(prev: dict, dim: dict) -> dict[str, Any]:
    """The same, as recorded for a dimension already in a document (older documents have no
    per-dimension record: their top-level fields speak for every dimension)."""
    p = dim.get("provenance")
    if p:
        return {"profile": p.get("profile"), "options": _norm_options(p.get("options", {})),
                "data source": (p.get("data") or {}).get("source"), "backend": p.get("backend"),
                "chat template": p.get("chat_template"), "--on-bad-row": p.get("on_bad_row"),
                # dimensions written before protocol presets carry none: not compared
                **({"--protocol": p["protocol"]} if p.get("protocol") else {})}
    return {"profile": prev.get("profile"), "options": _norm_options(prev.get("options", {})),
            "data source": ((prev.get("provenance") or {}).get("data") or {}).get("source"),
            "backend": (prev.get("backend") or {}).get("name"),
            "chat template": (prev.get("model") or {}).get("chat_template")}


def _files_of_dimension(prev: dict, dim: dict) -> dict[str, str]:
    p = dim.get("provenance")
    if p:
        return dict((p.get("data") or {}).get("files") or {})
    return dict(((prev.get("provenance") or {}).get("data") or {}).get("files") or {})


def _show(v: Any) -> str:
    if isinstance(v, dict) and set(v) >= {"name", "seed", "limit"}:
        gen = f", generation seed {v['gen_seed']}" if v.get("gen_seed") is not None else ""
        return f"{v['name']} (seed {v['seed']}{gen}, limit {v['limit']}, {v.get('n_samples')} samples)"
    return json.dumps(v, sort_keys=True) if isinstance(v, dict) else repr(v)


def check_merge(prev: dict | None, cfg: "EvalConfig", plan: "Plan", dims: list[str]) -> None:
    """Refuse (ConfigError, one line) when `prev` keeps a dimension this run does not rewrite
    and that dimension came from another model or other settings."""
    if not prev:
        return
    out = Path(cfg.out_dir)
    kept = [d for d in prev.get("dimensions", {}) if d not in dims]
    if not kept:
        return  # this run rewrites every dimension: nothing of the old document survives
    from .sanitize import clean

    fix = f"pass another --out, or re-run {', '.join(kept)} too"
    if not _same_model(prev, plan):
        other = (prev.get("model") or {}).get("display_name") or (prev.get("model") or {}).get("ref")
        raise ConfigError(clean(f"--out {out} holds {', '.join(kept)} of another model ({other}); {fix}"))
    mine = _settings(cfg, plan)
    files = plan.data.used
    for d in kept:
        theirs = _settings_of_dimension(prev, prev["dimensions"][d])
        for key, value in mine.items():
            if key == "profile" and isinstance(theirs.get(key), dict) and "gen_seed" not in theirs[key]:
                value = {k: v for k, v in value.items() if k != "gen_seed"}  # recorded before gen_seed was
            if key in theirs and theirs[key] != value:
                raise ConfigError(clean(
                    f"--out {out} holds {d} evaluated with {key} {_show(theirs[key])}, this run has {_show(value)}; "
                    f"one results.json holds one setting: pass the same flags, or another --out"))
        for rel, sha in _files_of_dimension(prev, prev["dimensions"][d]).items():
            if rel in files and files[rel] != sha:
                raise ConfigError(clean(
                    f"--out {out} holds {d} evaluated on another version of {rel} (sha256 {sha[:12]}, now "
                    f"{files[rel][:12]}); {fix}"))


def dimension_provenance(cfg: "EvalConfig", plan: "Plan", name: str, scorer: Any = None) -> dict[str, Any]:
    return {"created_at": _now(), "comptrust_version": __version__, "profile": profile_info(cfg),
            "options": _json_options(cfg.options), "backend": cfg.backend,
            "chat_template": plan.formatter.template_name, "protocol": plan.protocol.get("name", ""),
            "on_bad_row": cfg.on_bad_row,
            "data": plan.data.provenance(name), "scorer": scorer, "partial": bool(getattr(cfg, "allow_partial", False))}


def _merged_data(prev: dict | None, plan: "Plan") -> dict[str, Any]:
    now = plan.data.provenance()
    old = ((prev or {}).get("provenance") or {}).get("data") or {}
    examples = list(dict.fromkeys([*old.get("bad_row_examples", []), *now["bad_row_examples"]]))[:20]
    return {"source": now["source"], "files": dict(sorted({**old.get("files", {}), **now["files"]}.items())),
            "bad_rows_skipped": {**old.get("bad_rows_skipped", {}), **now["bad_rows_skipped"]},
            "bad_row_examples": examples}


def _merged_protocol(prev: dict | None, plan: "Plan") -> dict[str, Any]:
    """This run's protocol record plus the switches recorded for the dimensions it keeps (a merge
    requires the same preset, so only the perspective switches of other dimensions are added)."""
    now = dict(plan.protocol or {})
    old = (prev or {}).get("protocol") or {}
    if old.get("name") and old.get("name") == now.get("name"):
        now["switches"] = {**old.get("switches", {}), **now.get("switches", {})}
        now["overridden"] = {**old.get("overridden", {}), **now.get("overridden", {})}
    return now


def run_deviations(plan: "Plan", prev: dict | None, dims: dict) -> list[str]:
    """The effective non-default switches: this run's perspective options that differ from the
    protocol preset (where it sets them) or their defaults, the run-level switches overridden
    against the preset, and those recorded for kept dimensions of a merged document."""
    from .protocol import PRESETS, RUN_KEYS

    proto = getattr(plan, "protocol", None) or {}
    now = option_deviations(plan.options, PRESETS.get(proto.get("name"), {}))
    now += [f"{k}={v.get('effective')} (protocol {proto.get('name')}: {v.get('preset')})"
            for k, v in (proto.get("overridden") or {}).items() if k in RUN_KEYS]
    old = ((prev or {}).get("provenance") or {}).get("deviations") or []
    kept = [d for d in old if d.partition(":")[0] in dims and d.partition(":")[0] not in plan.options]
    return sorted(set(now + kept))


def _results_doc(cfg: "EvalConfig", plan: "Plan", dims: dict, eff: dict, prev: dict | None, scorers: dict,
                 own_data: bool = False) -> RunResults:
    """The document for `dims` (every dimension it will hold), built as the schema's models; `prev`
    is the document being merged into, already checked compatible (or None when it is replaced).
    own_data: this run rewrites every dimension, so the data record is this run's alone."""
    r = plan.resolved
    m = r.manifest or {}
    gs = m.get("group_size") or {}
    compression = None
    if r.is_variant:
        calib = m.get("calibration") or {}
        compression = CompressionInfo(
            method=m.get("method"), bits=m.get("bits"), sparsity=m.get("sparsity"),
            structure=m.get("structure"), group_size_requested=gs.get("requested"),
            group_size_effective=gs.get("effective"), calib_source=calib.get("source"),
            calib_hash=calib.get("hash"), n_calib=calib.get("n_samples"), seq_len=calib.get("seq_len"),
            seed=calib.get("seed", m.get("seed")),
        )
    prev_eff = (prev or {}).get("efficiency", {}) if _same_model(prev, plan) else {}
    prev_backend = (prev or {}).get("backend") if _same_model(prev, plan) else None
    efficiency = EfficiencyInfo(
        size_bytes=r.size_bytes(),
        peak_load_mem_bytes=eff.get("peak_load_mem_bytes", prev_eff.get("peak_load_mem_bytes")),
        tokens_per_s=eff.get("tokens_per_s", prev_eff.get("tokens_per_s")),
    )
    # every answer from the store and no earlier record: the backend that made them (it is in
    # each answer's key) is known, the device and dtype it ran on are not
    backend = BackendInfo.model_validate(eff.get("backend") or prev_backend or {"name": cfg.backend})
    # this run's dimensions and the kept ones arrive as the dicts results.json holds (the kept ones
    # read back from it): validated here, where a writer's drift fails before anything is written
    dimensions = {k: DimensionScore.model_validate(v) for k, v in dims.items()}
    prev_scorers = ((prev or {}).get("provenance") or {}).get("scorers") or {}
    all_scorers = {k: v for k, v in {**prev_scorers, **scorers}.items() if k in dims}
    data = plan.data.provenance() if own_data else _merged_data(prev, plan)
    return RunResults(
        schema_version=RESULTS_SCHEMA_VERSION,
        comptrust_version=__version__,
        created_at=_now(),
        run_id=Path(cfg.out_dir).name,
        model=ModelInfo(
            ref=r.ref, display_name=m.get("name") or r.display_name, fingerprint=r.fingerprint,
            kind="variant" if r.is_variant else "dense",
            base_fingerprint=(m.get("base") or {}).get("fingerprint") if r.is_variant else None,
            compression=compression, bits_per_weight=m.get("bits_per_weight"),
            size_bytes=r.size_bytes(), chat_template=plan.formatter.template_name,
            system_role_merged=plan.formatter.system_role_merged,
            notes=[*r.notes, *plan.formatter.notes],
        ),
        backend=backend,
        efficiency=efficiency,
        profile=ProfileInfo(**profile_info(cfg)),
        options=_json_options(cfg.options),
        protocol=ProtocolInfo.model_validate(_merged_protocol(prev, plan)),
        dimensions=dimensions,
        overall=compute_overall(dimensions),
        provenance=Provenance(data=DataProvenance.model_validate(data), scorers=all_scorers,
                              deviations=run_deviations(plan, prev, dims)),
        versions=_versions(),
    )


_atomic_write = atomic_write_text  # the name runner and sweep import


def _document(results: RunResults) -> tuple[dict, str]:
    """(the document as plain JSON data, the text results.json holds). The text is json.dumps of
    the model's JSON-mode dump, not model_dump_json: that one writes floats below 1e-4 in another
    notation (1e-05 as 0.00001), so documents would change bytes for the same numbers."""
    doc = results.model_dump(mode="json")
    return doc, json.dumps(doc, indent=2, ensure_ascii=False)


def _samples_text(gens: "list[Generation]", scores: "list[SampleScore]") -> str:
    lines = []
    for g, s in zip(gens, scores):
        rec = s.to_json()
        rec["prompt"] = g.prompt
        rec["texts"] = list(g.texts)
        if g.logprobs:
            rec["logprobs"] = list(g.logprobs)
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    return "\n".join(lines) + "\n"


def write_samples(out_dir: Path, name: str, gens: "list[Generation]", scores: "list[SampleScore]") -> None:
    (out_dir / "samples").mkdir(exist_ok=True)
    _atomic_write(out_dir / "samples" / f"{name}.jsonl", _samples_text(gens, scores))


@contextlib.contextmanager
def results_lock(out_dir: Path):
    """Held while a run directory's documents are read and rewritten. Temp files found inside
    are a killed writer's (only the holder writes them) and are removed."""
    with locked(Path(out_dir) / LOCK_NAME):
        for d in (Path(out_dir), Path(out_dir) / "samples"):
            for tmp in d.glob(".*.tmp-*"):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        yield


def write_results(cfg: "EvalConfig", plan: "Plan", dims: dict, eff: dict,
                  samples: "dict[str, tuple[list[Generation], list[SampleScore]]] | None" = None) -> dict:
    """Merge this run's dimensions into OUT/results.json under the lock, write their samples
    files, validate against the published schema (drift fails here, not in a report) and replace
    results.json atomically. Returns the document written."""
    out = Path(cfg.out_dir)
    with results_lock(out):
        prev = _read_json(out / RESULTS_NAME)
        check_merge(prev, cfg, plan, list(dims))
        checkpoint("results.merge")
        kept = {k: v for k, v in (prev or {}).get("dimensions", {}).items() if k not in dims} if prev else {}
        merged = {**kept, **dims}
        scorers = {k: d["provenance"]["scorer"] for k, d in dims.items()
                   if (d.get("provenance") or {}).get("scorer") is not None}
        results = _results_doc(cfg, plan, merged, eff, prev if _same_model(prev, plan) else None, scorers,
                               own_data=not kept)
        doc, text = _document(results)
        for name, (gens, scores) in (samples or {}).items():
            write_samples(out, name, gens, scores)
        checkpoint("results.write")
        _atomic_write(out / RESULTS_NAME, text)
    return doc


def update_results(out_dir: Path, change: Callable[[dict], dict]) -> dict:
    """Apply `change` to OUT/results.json under the lock (e.g. the Ray executor adding the
    workers' throughput), validate and write it. Returns the new document."""
    out = Path(out_dir)
    with results_lock(out):
        doc = _read_json(out / RESULTS_NAME)
        if doc is None:
            raise ConfigError(f"{out / RESULTS_NAME} is missing or not JSON; re-run the eval")
        doc, text = _document(RunResults.model_validate(change(doc)))
        _atomic_write(out / RESULTS_NAME, text)
    return doc
