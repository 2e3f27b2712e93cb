"""Fail fast when the HF hub cannot be reached, instead of a minute of retry lines.

Offline, `datasets.load_dataset` / `huggingface_hub` retry every request with backoff and log a
line per retry (12 lines, about a minute, for MMLU's two splits) before the error. One TCP
connect to the hub endpoint (3 s) tells us first; when it fails, the load runs in the libraries'
offline mode for its duration, so a warmed cache still works and a cold one fails at once.
"""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Iterator
from urllib.parse import urlsplit


def hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
    parts = urlsplit(endpoint)
    host = parts.hostname or "huggingface.co"
    port = parts.port or (443 if parts.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_flags(on: bool) -> list[tuple[object, str, object]]:
    """Set the offline switches the libraries read at call time; returns what to restore."""
    saved = []
    for mod_name, attr in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                           ("datasets.config", "HF_DATASETS_OFFLINE")):
        try:
            mod = __import__(mod_name, fromlist=[attr])
        except ImportError:
            continue
        if hasattr(mod, attr):
            saved.append((mod, attr, getattr(mod, attr)))
            setattr(mod, attr, on)
    return saved


@contextlib.contextmanager
def offline_unless_reachable() -> Iterator[bool]:
    """Yields True when the hub answered (normal mode), False when the block runs offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE") or hub_reachable():
        yield True
        return
    saved = _offline_flags(True)
    try:
        yield False
    finally:
        for mod, attr, value in saved:
            setattr(mod, attr, value)
