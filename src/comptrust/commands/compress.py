"""`comptrust compress`: build one compressed variant of a model (see docs/compression.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..compress.methods import DEFAULT_N_CALIB, DEFAULT_SEQ_LEN
from ..errors import CompressionError


def _parse_bool_flag(value: Optional[str], name: str) -> Optional[bool]:
    if value is None:
        return None
    v = value.strip().lower()
    if v in ("sym", "symmetric", "true", "yes"):
        return True
    if v in ("asym", "asymmetric", "false", "no"):
        return False
    raise CompressionError(f"{name} {value!r} is not understood; use sym or asym")


def compress(
    model: str = typer.Option("embedded:smollm2-135m-instruct", "--model", help="Base model: embedded:<name>, HF id, checkpoint dir or .gguf."),
    method: str = typer.Option(..., "--method", help="gptq | awq | rtn | sparsegpt | wanda | magnitude"),
    out: Path = typer.Option(..., "--out", help="Variant directory to create (must be new or empty)."),
    bits: Optional[int] = typer.Option(None, "--bits", help="Weight bits for quantization: 3, 4 or 8 (default 4)."),
    group_size: Optional[int] = typer.Option(None, "--group-size", help="Quantization group size (default 128; falls back to the largest valid size; -1 = per channel)."),
    symmetry: Optional[str] = typer.Option(None, "--symmetry", help="sym | asym (default: GPTQ/RTN sym, AWQ asym, as the reference implementations)."),
    sparsity: Optional[float] = typer.Option(None, "--sparsity", help="Pruning fraction in (0, 1) (default 0.5; fixed by an N:M structure)."),
    structure: Optional[str] = typer.Option(None, "--structure", help="unstructured | 2:4 | 4:8 | 1:2 (pruning only)."),
    calib: str = typer.Option("bundled", "--calib", help="bundled | c4 | pile | alpaca | path to a .txt/.jsonl file."),
    n_calib: int = typer.Option(DEFAULT_N_CALIB, "--n-calib", help="Number of calibration samples (default: what the bundled text holds for seeds 0-3 disjoint; the paper used 128)."),
    seq_len: int = typer.Option(DEFAULT_SEQ_LEN, "--seq-len", help="Tokens per calibration sample."),
    seed: int = typer.Option(0, "--seed", help="Seed for the calibration sample selection (and torch)."),
    chat_template_calib: bool = typer.Option(False, "--chat-template-calib/--no-chat-template-calib", help="Wrap calibration samples in the model's chat template."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Model cache (default $COMPTRUST_CACHE or ~/.cache/comptrust)."),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="Allow custom model code from the checkpoint."),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="Allow pickle checkpoints (.bin/.pt), which can run code when loaded."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON instead of a summary."),
) -> None:
    """Compress a model into a variant directory: compressed-tensors checkpoint + manifest.json."""
    from ..compress.methods import CompressSpec

    # Validate everything the user typed before touching any model or file.
    spec = CompressSpec.make(
        method, bits=bits, group_size=group_size, symmetric=_parse_bool_flag(symmetry, "--symmetry"),
        sparsity=sparsity, structure=structure, calib=calib, n_calib=n_calib, seq_len=seq_len, seed=seed,
        chat_template_calib=chat_template_calib,
    )
    from ..compress.build import build_variant

    manifest = build_variant(spec, model, out, cache_dir=cache_dir, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                             log=lambda s: typer.echo(s, err=True))
    if as_json:
        typer.echo(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return
    m = manifest.measured
    lines = [
        f"variant      {manifest.name}",
        f"directory    {Path(out).expanduser().absolute()}",
        f"fingerprint  {manifest.fingerprint}",
        f"method       {manifest.method}" + (f"  W{manifest.bits}A16 group {manifest.group_size.effective} "
                                             f"(requested {manifest.group_size.requested}) {'sym' if manifest.symmetric else 'asym'}"
                                             if manifest.kind == "quantization" else f"  sparsity {manifest.sparsity:g} {manifest.structure}"),
        f"measured     sparsity {m['sparsity_overall']:.4f} (layers {m['sparsity_min_layer']:.4f}-{m['sparsity_max_layer']:.4f})"
        + (f", max levels/group {m['max_levels_per_group']}" if m.get("max_levels_per_group") else "")
        + (f", N:M valid {m['nm_pattern_valid']}" if "nm_pattern_valid" in m else ""),
        f"size         {manifest.size_bytes / 1e6:.1f} MB on disk, {manifest.bits_per_weight:.3f} bits/weight in Linear layers "
        f"({m['bits_per_param_overall']:.3f} bits/param overall), format {manifest.storage_format}",
        f"loadable by  {', '.join(manifest.loadable_by or ['unknown (manifest v1)'])}",
    ]
    cal = manifest.calibration
    if cal:
        ov = cal.get("overlap_with_seed0")
        lines.append(f"calibration  {cal['n_samples']} x {cal['seq_len']} tokens from {cal['source']}, seed {cal['seed']}"
                     + ("" if ov is None else f", {ov:.0%} shared with seed 0"))
    lines.append(f"wall time    {manifest.wall_time_s:.1f} s")
    lines += [f"note         {n}" for n in manifest.notes]
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("compress")(compress)
