"""Group-size fallback: a group must tile a layer's input width exactly.

llm-compressor 0.14 refuses (at initialize) any GROUP-quantized Linear whose input width is not
a multiple of the group size, and compressed-tensors cannot save or run such a layer. The
paper's group size 128 does not divide SmolLM2-135M's hidden width 576 (= 9 x 64), so a W4
"g128" request would simply fail there.

Rule: the effective group size is the largest candidate <= the requested size that divides the
input width of EVERY quantized layer (one group size per variant keeps the variant describable
by one number). Candidates are the requested size itself and the powers of two below it: GPU
int kernels (Marlin, Machete, ExLlama) are built for power-of-two groups (32/64/128), so 576
falls back to 64, not to 96 (which divides 576 and 1536 but few kernels accept). The manifest
records both the requested and the effective size.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import CompressionError

MIN_GROUP = 8  # below this the scales cost more than the bits saved; ask for per-channel instead


def candidates(requested: int) -> list[int]:
    """The requested size, then the powers of two below it, largest first."""
    out = [requested]
    p = 1
    while p * 2 < requested:
        p *= 2
    while p >= 1:
        if p not in out:
            out.append(p)
        p //= 2
    return out


def effective_group_size(requested: int, widths: Iterable[int]) -> int:
    """The largest valid group size <= requested for layers with these input widths (-1 = per-channel)."""
    if requested == -1:
        return -1
    widths = sorted(set(int(w) for w in widths))
    if not widths:
        raise CompressionError("the model has no Linear layers to quantize; pass a decoder LLM checkpoint")
    for g in candidates(requested):
        if all(w % g == 0 for w in widths):
            if g < MIN_GROUP:
                break
            return g
    raise CompressionError(
        f"no group size between {MIN_GROUP} and {requested} divides every layer input width ({', '.join(map(str, widths))}); "
        "pass --group-size -1 for one scale per output channel"
    )


def quantized_input_widths(model, ignore: list[str]) -> dict[str, int]:
    """Input width of every Linear layer that will be quantized (all Linear but `ignore`)."""
    import torch

    return {
        name: int(mod.in_features)
        for name, mod in model.named_modules()
        if isinstance(mod, torch.nn.Linear) and name not in ignore
    }
