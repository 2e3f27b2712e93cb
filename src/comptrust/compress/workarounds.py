"""Known llm-compressor 0.14 / compressed-tensors 0.19 problems, and the smallest fix for each.

Every fix lives here, is scoped as narrowly as possible, and has a test in
tests/test_compress_workarounds.py that fails if the fix stops working (or becomes unneeded).

1. Group size must divide every quantized layer's input width (576 = 9 x 64 breaks g128):
   fallback rule in groupsize.py (`effective_group_size`), recorded in the manifest.
2. AWQ pins memory unconditionally (`IntermediatesCache.pin_memory` in its smoothing loop), and
   `Tensor.pin_memory()` raises "Cannot access accelerator device when none is available" on
   CPU-only torch: `awq_pin_memory_guard` makes that one method a no-op, only when no
   accelerator exists and only for the duration of the AWQ run.
3. SparseGPT/Wanda build layer names as f"{layer}.{submodule}", so the output embedding is
   seen as "lm_head." and an `ignore=["lm_head"]` entry never matches: lm_head was pruned to
   50% in our test. `pruning_ignore` turns each name into an anchored regex that matches both.
4. `MagnitudePruningModifier` in oneshot computes masks but applies them only on optimizer
   steps, so a oneshot run "succeeds" with the weights untouched (measured sparsity 0.0003).
   `apply_magnitude_pruning` computes and applies the masks directly, per layer, incl. N:M.
5. compressed-tensors 0.19 has no sparse storage formats any more: pruned variants are saved
   dense and are as large as the base. build records sparsity measured from the weights and
   claims no size gain (nothing to patch; documented in docs/compression.md).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

from .groupsize import effective_group_size  # noqa: F401  (problem 1; re-exported so all fixes are findable here)


def accelerator_available() -> bool:
    import torch

    acc = getattr(torch, "accelerator", None)
    if acc is not None and hasattr(acc, "is_available"):
        return bool(acc.is_available())
    return bool(torch.cuda.is_available())


@contextlib.contextmanager
def awq_pin_memory_guard() -> Iterator[bool]:
    """Problem 2. Yields True when the patch is active. Pinning only speeds host->device copies,
    so skipping it where there is no device changes no result."""
    if accelerator_available():
        yield False
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    original = IntermediatesCache.__dict__["pin_memory"]
    IntermediatesCache.pin_memory = lambda self, batch_index, input_names=None: None
    try:
        yield True
    finally:
        IntermediatesCache.pin_memory = original


def pruning_ignore(names: list[str]) -> list[str]:
    """Problem 3: exact module names -> regexes that also match the pruners' "name." form."""
    return [n if n.startswith("re:") else f"re:^{re.escape(n)}\\.?$" for n in names]


def magnitude_mask(weight, sparsity: float, nm: tuple[int, int] | None):
    """Problem 4. Boolean mask of weights to ZERO, by |w|.

    Unstructured: exactly round(numel * sparsity) smallest |w| of the whole matrix (wanda's
    `prune_magnitude` also ranks per matrix). N:M: the N smallest |w| of every M consecutive
    input weights of each row (input width must be a multiple of M).
    """
    import torch

    score = weight.detach().abs().float()
    if nm is None:
        k = int(round(score.numel() * sparsity))
        mask = torch.zeros(score.numel(), dtype=torch.bool)
        if k:
            # a stable sort breaks ties by position, so exactly k weights are zeroed
            idx = torch.sort(score.flatten(), stable=True).indices[:k]
            mask[idx] = True
        return mask.view_as(score)
    n, m = nm
    rows, cols = score.shape
    if cols % m:
        from ..errors import CompressionError

        raise CompressionError(f"a layer's input width {cols} is not a multiple of {m}; {n}:{m} pruning cannot tile it, use --structure unstructured")
    groups = score.view(rows, cols // m, m)
    idx = torch.sort(groups, dim=-1, stable=True).indices[..., :n]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, idx, True)
    return mask.view(rows, cols)


def apply_magnitude_pruning(model, sparsity: float, nm: tuple[int, int] | None, ignore: list[str]) -> list[str]:
    """Zero weights of every Linear but `ignore`, in place; returns the pruned layer names."""
    import torch

    pruned = []
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear) and name not in ignore:
                mod.weight[magnitude_mask(mod.weight, sparsity, nm)] = 0
                pruned.append(name)
    return pruned
