"""Facts measured from a saved checkpoint, never taken from the request.

`measure_checkpoint(dir)` reads the safetensors headers (bytes per tensor) and loads the
checkpoint back through transformers exactly as a user would (compressed-tensors decompresses
packed int weights to dense on load), then measures per Linear layer: the fraction of exact
zeros, N:M pattern validity, the number of distinct values per quantization group, and the
storage cost in bits per weight including scales, zero points and group indices.
"""

from __future__ import annotations

import json
import re
import struct
import warnings
from pathlib import Path
from typing import Any

DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16, "I64": 64, "I32": 32, "I16": 16, "I8": 8, "U8": 8,
              "BOOL": 8, "F8_E4M3": 8, "F8_E5M2": 8}


# What compressed-tensors registers beside a quantized weight (scales, zero points, group
# indices, the packed weight's original shape): storage, not model parameters.
_QUANT_AUX = re.compile(r"(^|\.)(weight|input|output)_(scale|zero_point|g_idx|shape|global_scale|packed)$")


def model_parameters(model) -> int:
    """The model's own parameters (tied weights once), without quantization storage tensors."""
    return sum(p.numel() for n, p in model.named_parameters() if not _QUANT_AUX.search(n))


def safetensors_tensors(model_dir: Path) -> dict[str, dict[str, Any]]:
    """name -> {dtype, shape, nbytes} for every tensor of every *.safetensors file (headers only)."""
    out: dict[str, dict[str, Any]] = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        with f.open("rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            out[name] = {"dtype": info["dtype"], "shape": info["shape"], "nbytes": end - start}
    return out


def dir_bytes(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in Path(model_dir).rglob("*") if p.is_file())


def load_dense(model_dir: Path):
    """The checkpoint as a dense fp32 model on CPU (packed int weights decompressed)."""
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    if (cfg.get("quantization_config") or {}).get("quant_method") == "compressed-tensors":
        from transformers.utils.quantization_config import CompressedTensorsConfig

        kwargs["quantization_config"] = CompressedTensorsConfig(dequantize=True)
    with warnings.catch_warnings():
        # transformers warns that the checkpoint's own quantization_config wins; only `dequantize` is ours
        warnings.filterwarnings("ignore", message=".*quantization_config.*")
        model = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
    model.eval()
    return model


def distinct_per_group(w, group_size: int):
    """Number of distinct values in each group of `group_size` consecutive input weights per row
    (-1 = the whole row). Returns a (rows, groups) int tensor."""
    import torch

    rows, cols = w.shape
    g = cols if group_size == -1 else group_size
    if cols % g:
        g = cols
    s = torch.sort(w.reshape(rows, cols // g, g), dim=-1).values
    return (s[..., 1:] != s[..., :-1]).sum(-1) + 1


def nm_valid_fraction(w, nm: tuple[int, int]) -> float:
    """Fraction of M-groups (consecutive input weights of a row) holding at least N zeros."""
    n, m = nm
    rows, cols = w.shape
    if cols % m:
        return 0.0
    zeros = (w.reshape(rows, cols // m, m) == 0).sum(-1)
    return float((zeros >= n).float().mean())


def measure_checkpoint(
    model_dir: Path, *, group_size: int | None = None, nm: tuple[int, int] | None = None, model=None
) -> dict[str, Any]:
    """Measured facts for a saved variant. group_size: the effective quantization group size
    (None for unquantized checkpoints); nm: the N:M pattern to check, if any."""
    import torch

    model_dir = Path(model_dir)
    tensors = safetensors_tensors(model_dir)
    model = model if model is not None else load_dense(model_dir)
    out_emb = model.get_output_embeddings()
    layers: list[dict[str, Any]] = []
    zeros_total = params_total = 0
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear) or mod is out_emb:
            continue
        w = mod.weight.detach().float()
        numel = w.numel()
        zeros = int((w == 0).sum())
        stored = {k: v for k, v in tensors.items() if k.startswith(name + ".weight")}
        stored_bytes = sum(v["nbytes"] for v in stored.values())
        quantized = any(k.endswith(("weight_packed", "weight_scale")) for k in stored)
        rec: dict[str, Any] = {
            "name": name, "shape": list(w.shape), "sparsity": round(zeros / numel, 6),
            "quantized": quantized, "bits_per_weight": round(8 * stored_bytes / numel, 4),
        }
        if quantized and group_size is not None:
            rec["max_levels_per_group"] = int(distinct_per_group(w, group_size).max())
        if nm is not None:
            rec["nm_valid_fraction"] = round(nm_valid_fraction(w, nm), 6)
        layers.append(rec)
        zeros_total += zeros
        params_total += numel

    all_params = model_parameters(model)
    weight_bytes = sum(v["nbytes"] for v in tensors.values())
    linear_bytes = sum(
        v["nbytes"] for k, v in tensors.items() if any(k.startswith(rec["name"] + ".weight") for rec in layers)
    )
    facts: dict[str, Any] = {
        "n_layers": len(layers),
        "n_quantized_layers": sum(1 for r in layers if r["quantized"]),
        "sparsity_overall": round(zeros_total / max(params_total, 1), 6),
        "sparsity_min_layer": min((r["sparsity"] for r in layers), default=0.0),
        "sparsity_max_layer": max((r["sparsity"] for r in layers), default=0.0),
        "bits_per_weight": round(8 * linear_bytes / max(params_total, 1), 4),
        "bits_per_param_overall": round(8 * weight_bytes / max(all_params, 1), 4),
        "params": all_params,
        "linear_params": params_total,
        "weight_bytes": weight_bytes,
        "size_bytes": dir_bytes(model_dir),
        "output_embedding_sparsity": round(float((out_emb.weight == 0).float().mean()), 6) if out_emb is not None else None,
        "layers": layers,
    }
    levels = [r["max_levels_per_group"] for r in layers if "max_levels_per_group" in r]
    facts["max_levels_per_group"] = max(levels) if levels else None
    if nm is not None:
        facts["nm_valid_fraction_min"] = min((r["nm_valid_fraction"] for r in layers), default=0.0)
        facts["nm_pattern_valid"] = facts["nm_valid_fraction_min"] == 1.0
    return facts
