"""Write a file so that readers see the old content or the new, never half of it."""

from __future__ import annotations

import os
from pathlib import Path

from .faults import checkpoint


def temp_path(path: Path) -> Path:
    """The dot-temp name beside `path` this process writes before renaming (its pid in the name,
    so a later run can tell a dead writer's leftovers from a live one's)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path: Path, text: str, fault_point: str = "atomic.rename") -> None:
    tmp = temp_path(path)
    tmp.write_text(text, encoding="utf-8")
    checkpoint(fault_point)
    os.replace(tmp, path)
