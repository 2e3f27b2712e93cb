"""Build a variant: base model + CompressSpec -> variant directory (checkpoint + manifest.json).

Order of work, cheapest checks first: validate the output location; resolve the base; if --out
already holds a variant made from the same request, base fingerprint, library versions and
calibration source content, reuse it at once (no model or tokenizer load, no calibration cut:
those inputs determine the fingerprint); otherwise load the base, pick the effective group size,
cut the calibration set, compute the fingerprint (an existing identical variant is reused, a
different one is refused), then compress in a temp directory next to the output, save, load the
saved checkpoint back and measure it, write the manifest, and rename the temp directory into
place. A failure at any point leaves no variant behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import CompressionError
from ..faults import checkpoint
from ..locks import locked
from ..types import stable_hash
from .calibration import HUB_SOURCES, CalibrationSet, build_calibration
from .cost import record_build
from .groupsize import effective_group_size, quantized_input_widths
from .manifest import MANIFEST_NAME, BaseRef, GroupSize, Manifest, library_versions
from .measure import measure_checkpoint
from .methods import VLLM_WEIGHT_BITS, CompressSpec, calib_file_tag, make_modifiers, recipe_record, recipe_yaml
from .workarounds import apply_magnitude_pruning, awq_pin_memory_guard


def _check_out_dir(out_dir: Path) -> Manifest | None:
    """The existing variant at out_dir, None if out_dir is absent or empty; refuse anything else."""
    if not out_dir.exists():
        if not out_dir.parent.exists():
            raise CompressionError(f"--out {out_dir}: parent directory {out_dir.parent} does not exist; create it first")
        return None
    if not out_dir.is_dir():
        raise CompressionError(f"--out {out_dir} is a file; pass a new or empty directory")
    if (out_dir / MANIFEST_NAME).is_file():
        return Manifest.read(out_dir)
    if any(out_dir.iterdir()):
        raise CompressionError(f"--out {out_dir} is not empty and holds no comptrust variant; pass a new or empty directory")
    return None


def _calib_source_sha(spec: CompressSpec) -> str | None:
    """The calibration source's content hash as the manifest records it; None for hub sources,
    whose content is only known after a download."""
    from ..data.files import file_sha256
    from .calibration import load_records

    if spec.calib == "bundled":
        return load_records("bundled")[1]
    if spec.calib in HUB_SOURCES:
        return None
    path = Path(spec.calib).expanduser()
    return file_sha256(path) if path.is_file() else None


def _same_inputs(existing: Manifest, spec: CompressSpec, base_fp: str) -> bool:
    """True when existing was built from exactly these inputs, so its fingerprint is the one a
    rebuild would compute. Hub calibration sources never qualify (their content is unknown
    until downloaded): they take the full check."""
    if existing.request != spec.to_dict() or existing.base.fingerprint != base_fp or existing.versions != library_versions():
        return False
    if not spec.needs_calibration:
        return existing.calibration is None
    if spec.calib in HUB_SOURCES or existing.calibration is None:
        return False
    sha = _calib_source_sha(spec)
    return sha is not None and existing.calibration.get("source_sha256") == sha


def variant_fingerprint(base_fp: str, spec: CompressSpec, recipe: dict, calib: CalibrationSet | None, versions: dict) -> str:
    return stable_hash({
        "base": base_fp, "recipe": recipe, "request": spec.to_dict(),
        "calibration": calib.content_hash if calib else None, "seed": spec.seed, "versions": versions,
    })


def _compress(model, tok, spec: CompressSpec, modifiers: list, calib: CalibrationSet | None, ignore: list[str]) -> list[str]:
    import torch

    torch.manual_seed(spec.seed or 0)
    notes: list[str] = []
    if spec.method == "magnitude":
        apply_magnitude_pruning(model, spec.sparsity, spec.nm, ignore)
        notes.append("magnitude masks computed and applied directly (llm-compressor's oneshot MagnitudePruningModifier leaves weights untouched)")
        return notes
    from llmcompressor import oneshot

    kwargs = {}
    if calib is not None:
        kwargs = {"dataset": calib.dataset(), "num_calibration_samples": calib.n_samples,
                  "max_seq_length": calib.seq_len, "shuffle_calibration_samples": False}
    guard = awq_pin_memory_guard() if spec.method == "awq" else contextlib.nullcontext(False)
    with guard as patched:
        if patched:
            notes.append("AWQ memory pinning skipped: no accelerator present")
        oneshot(model=model, tokenizer=tok, recipe=modifiers, **kwargs)
    return notes


def build_variant(
    spec: CompressSpec,
    model_ref: str,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> Manifest:
    """Build (or reuse) the variant of model_ref described by spec at out_dir; returns its manifest."""
    out_dir = Path(out_dir).expanduser().absolute()
    _check_out_dir(out_dir)  # the parent must exist before the lock file can be made there
    # Two processes building the same variant dir (two sweeps sharing variants, or two
    # `comptrust compress`) take turns: the second finds the first's manifest and reuses it
    # instead of failing to rename its own build over a non-empty directory.
    # The lock file is removed when the build ends, failed or not (comptrust/locks.py).
    with locked(out_dir.parent / f".{out_dir.name}.lock"):
        return _build_locked(spec, model_ref, out_dir, _check_out_dir(out_dir), cache_dir, trust_remote_code, allow_pickle, log)


def _build_locked(spec: CompressSpec, model_ref: str, out_dir: Path, existing: Manifest | None, cache_dir,
                  trust_remote_code: bool, allow_pickle: bool, log: Callable[[str], None]) -> Manifest:
    from ..models.resolve import check_architecture, resolve_model

    # the architecture check imports transformers (seconds): only once we know we build
    base = resolve_model(model_ref, cache_dir_override=cache_dir, trust_remote_code=trust_remote_code,
                         allow_pickle=allow_pickle, check_arch=False)
    if base.kind == "variant":
        raise CompressionError(
            f"{model_ref} is already a compressed variant ({base.display_name}); compress its base model "
            f"{(base.manifest or {}).get('base', {}).get('ref', '')} instead"
        )
    if "vllm" not in spec.loadable_by:
        log(f"warning: {spec.bits}-bit weights load in transformers but not in vLLM (its int kernels take "
            f"{' or '.join(map(str, VLLM_WEIGHT_BITS))} bits); evaluate this variant with --backend hf")
    if existing is not None and _same_inputs(existing, spec, base.fingerprint):
        log(f"{out_dir} already holds this variant ({existing.name}); nothing to do")
        return existing
    check_architecture(base)
    import torch  # only now: importing torch/transformers costs seconds that a reuse never needs
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base.path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    calib = None
    if spec.needs_calibration:
        calib = build_calibration(spec.calib, tok, n=spec.n_calib, seq_len=spec.seq_len, seed=spec.seed,
                                  chat_template=spec.chat_template_calib)
        log(f"calibration: {calib.n_samples} samples x <= {calib.seq_len} tokens from {calib.source} (hash {calib.content_hash[:12]})")
        if calib.overlap_warning():
            log(calib.overlap_warning())

    t_load = time.time()
    from ..models.resolve import quiet_transformers

    quiet_transformers()  # no loading bars on the terminal ahead of a one-line error
    model = AutoModelForCausalLM.from_pretrained(base.path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    model.eval()
    model_cfg = model.config
    names = {m: n for n, m in model.named_modules()}
    out_emb = model.get_output_embeddings()
    ignore = [names[out_emb]] if out_emb is not None and out_emb in names else []
    base_emb_sparsity = float((out_emb.weight == 0).float().mean()) if out_emb is not None else 0.0
    base_params = sum(p.numel() for p in model.parameters())

    notes: list[str] = list(base.notes)
    eff_g = None
    reason = None
    if spec.is_quant:
        widths = quantized_input_widths(model, ignore)
        eff_g = effective_group_size(spec.group_size, widths.values())
        if eff_g != spec.group_size:
            bad = sorted({w for w in widths.values() if w % spec.group_size})
            reason = (f"group size {spec.group_size} does not divide layer input width(s) {', '.join(map(str, bad))}; "
                      f"largest valid size <= {spec.group_size} is {eff_g}")
            notes.append(reason)
            log(reason)
    modifiers = make_modifiers(spec, group_size=eff_g if eff_g is not None else 0, ignore=ignore)
    recipe = recipe_record(spec, modifiers, group_size=eff_g or 0, ignore=ignore)
    versions = library_versions()
    fp = variant_fingerprint(base.fingerprint, spec, recipe, calib, versions)
    if existing is not None:
        if existing.fingerprint == fp:
            log(f"{out_dir} already holds this variant ({existing.name}); nothing to do")
            return existing
        raise CompressionError(
            f"--out {out_dir} already holds a different variant ({existing.name}, fingerprint {existing.fingerprint[:12]}); "
            "pass another --out or delete that directory"
        )

    tmp = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        t0 = time.time()
        checkpoint("compress.start")
        notes += _compress(model, tok, spec, modifiers, calib, ignore)
        if spec.method == "magnitude":  # never went through oneshot: a plain transformers save
            model.save_pretrained(tmp)
        else:  # llm-compressor's patched save writes the compressed-tensors format + recipe.yaml
            model.save_pretrained(tmp, save_compressed=True)
        # llm-compressor's recipe.yaml holds a `!!python/object/apply` tag (yaml.safe_load refuses
        # it) and only the arguments we set: replace it with the complete record, as safe YAML.
        (tmp / "recipe.yaml").write_text(recipe_yaml(recipe), encoding="utf-8")
        tok.save_pretrained(tmp)
        checkpoint("compress.saved")
        wall = time.time() - t0
        log(f"compressed in {wall:.1f} s (base loaded in {t0 - t_load:.1f} s); measuring the saved checkpoint")
        del model
        cfg = json.loads((tmp / "config.json").read_text())
        qcfg = cfg.get("quantization_config") or {}
        storage = qcfg.get("format") or "dense"
        measured = measure_checkpoint(tmp, group_size=eff_g, nm=spec.nm)
        # The output embedding must come out as it went in (it may already hold exact zeros, e.g.
        # a GGUF-dequantized base); a rise means a modifier ignored our `ignore` list.
        if (measured["output_embedding_sparsity"] or 0.0) > base_emb_sparsity + 0.001:
            raise CompressionError(
                f"internal check failed: the output embedding was pruned ({base_emb_sparsity:.2%} -> "
                f"{measured['output_embedding_sparsity']:.2%} zeros); please report this"
            )
        if not spec.is_quant:
            notes.append("pruned weights are stored dense (compressed-tensors 0.19 has no sparse format): no size gain on disk")
        tag = None
        if calib is not None and spec.calib not in ("bundled", *HUB_SOURCES):
            tag = f"{calib_file_tag(spec.calib)}.{(calib.source_sha256 or calib.content_hash)[:8]}"
        name = f"{base.display_name}-{spec.short_name(eff_g, calib_tag=tag)}"
        manifest = Manifest(
            name=name, fingerprint=fp,
            base=BaseRef(ref=base.ref, fingerprint=base.fingerprint, display_name=base.display_name),
            method=spec.method, kind="quantization" if spec.is_quant else "pruning", bits=spec.bits,
            symmetric=spec.symmetric, sparsity=spec.sparsity, structure=spec.structure,
            group_size=GroupSize(requested=spec.group_size if spec.is_quant else None, effective=eff_g, reason=reason),
            bits_per_weight=measured["bits_per_weight"], size_bytes=measured["size_bytes"],
            recipe=recipe, recipe_yaml=recipe_yaml(recipe),
            calibration=calib.record() if calib else None, seed=spec.seed, request=spec.to_dict(),
            versions=versions, wall_time_s=round(wall, 2),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            storage_format=storage, loadable_by=spec.loadable_by, measured=measured, notes=notes,
        )
        manifest.write(tmp)
        checkpoint("compress.manifest")  # complete in the temp dir, not renamed into place yet
        if out_dir.exists():
            out_dir.rmdir()  # _check_out_dir guaranteed it is empty
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    record_build({"method": spec.method, "bits": spec.bits, "params": base_params, "awq_n_grid": spec.awq_n_grid,
                  "layers": getattr(model_cfg, "num_hidden_layers", None),
                  "n_samples": calib.n_samples if calib else 0, "seq_len": calib.seq_len if calib else 0,
                  "wall_s": round(wall, 2), "cpus": os.cpu_count(), "base": base.fingerprint, "created": manifest.created})
    log(f"wrote {out_dir} ({manifest.name}, fingerprint {fp[:12]})")
    return manifest
