"""Compression: a base model + a method request -> a variant directory that knows what it is.

A variant is a compressed-tensors checkpoint plus manifest.json (recipe, calibration, library
versions and facts measured from the saved weights). `build_variant` is the entry point; the
other modules each do one job (methods: request -> llm-compressor modifiers; groupsize: the
group-size fallback; workarounds: known llm-compressor problems; calibration; measure; manifest;
efficiency).
"""

from .methods import METHODS, CompressSpec

__all__ = ["METHODS", "CompressSpec", "build_variant"]


def build_variant(*args, **kwargs):  # lazy: importing torch/llmcompressor costs seconds
    from .build import build_variant as _build

    return _build(*args, **kwargs)
