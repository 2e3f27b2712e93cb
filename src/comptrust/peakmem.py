"""Peak resident memory of this process over a stretch of work (Linux).

`PeakMemory.start()` resets the kernel's high-water mark (VmHWM, via /proc/self/clear_refs) and
notes the resident size; `peak_added()` is the high-water mark since then minus that size: what
the work (a model load and its first forward pass, say) needed at its worst, not what was still
resident when it ended. Where the mark cannot be reset (not Linux, or no permission) the answer
is None rather than a lifetime figure that may predate the work.
"""

from __future__ import annotations



def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_bytes() -> int | None:
    """Resident memory of this process now (None where /proc is not there)."""
    kb = _status_kb("VmRSS")
    return kb * 1024 if kb is not None else None


class PeakMemory:
    def __init__(self, base: int | None, resettable: bool) -> None:
        self.base = base
        self.resettable = resettable

    @classmethod
    def start(cls) -> "PeakMemory":
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset VmHWM to the current RSS
            ok = True
        except OSError:
            ok = False
        rss = _status_kb("VmRSS")
        return cls(rss * 1024 if rss is not None else None, ok and rss is not None)

    def peak_added(self) -> int | None:
        """Bytes: peak RSS since start() minus RSS at start(); None where it cannot be measured."""
        if not self.resettable or self.base is None:
            return None
        hwm = _status_kb("VmHWM")
        if hwm is None:
            return None
        return max(0, hwm * 1024 - self.base)


__all__ = ["PeakMemory"]
