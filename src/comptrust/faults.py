"""Test-only fault injection: SIGKILL this process at a named point (see docs/testing.md).

COMPTRUST_KILL_AT=<point>:<n> kills the process (SIGKILL: no cleanup handlers, no finally
blocks — what a power cut or the OOM killer does) the n-th time `checkpoint(point)` is reached.
When the variable is unset, checkpoint() is one dict lookup, parsed once per process.
COMPTRUST_KILL_SIGNAL=INT sends SIGINT instead (what Ctrl-C does), to test the interrupt path.
"""

from __future__ import annotations

import os
import signal

_ENV = "COMPTRUST_KILL_AT"
_target: tuple[str, int] | None = None
_parsed_from: str | None = None
_seen: dict[str, int] = {}


def _parse(raw: str) -> tuple[str, int] | None:
    point, _, n = raw.rpartition(":")
    if not point:
        return (raw, 1) if raw else None
    try:
        return (point, max(1, int(n)))
    except ValueError:
        return (raw, 1)


def checkpoint(point: str) -> None:
    global _target, _parsed_from
    raw = os.environ.get(_ENV)
    if not raw:
        return
    if raw != _parsed_from:
        _target, _parsed_from = _parse(raw), raw
        _seen.clear()
    if _target is None or _target[0] != point:
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] == _target[1]:
        sig = os.environ.get("COMPTRUST_KILL_SIGNAL", "KILL").upper().removeprefix("SIG")
        os.kill(os.getpid(), getattr(signal, f"SIG{sig}", signal.SIGKILL))
