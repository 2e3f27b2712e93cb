"""The header of a .safetensors file: 8-byte little-endian length, then that many bytes of JSON
(tensor name -> dtype, shape, data_offsets; plus "__metadata__"). Read without the weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_header(path: Path) -> tuple[bytes, dict[str, Any]]:
    """(raw header bytes, parsed header). ValueError when the file is too short for its header or
    the header is not a JSON object."""
    size = path.stat().st_size
    with path.open("rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if size < 8 or n <= 0 or 8 + n > size:
            raise ValueError("header runs past the end of the file")
        raw = f.read(n)
    header = json.loads(raw)
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    return raw, header


def tensors(header: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in header.items() if k != "__metadata__"}
