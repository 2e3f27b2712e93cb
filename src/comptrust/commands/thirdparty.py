"""One clean console: everything third-party libraries print goes to a log file instead.

llm-compressor logs through loguru to stdout, compressed-tensors / datasets / transformers draw
tqdm bars on stderr, transformers and torch emit `logging` records and Python warnings, and
C++ code (torch) writes straight to file descriptors 1 and 2. Inside `third_party_to_log()`,
file descriptors 1 and 2 point at the log file, so all of that lands there whatever route it
takes; comptrust's own console (commands.progress.console) writes to a duplicate of the
original stderr, so the plan, the progress display and comptrust's result lines stay on the
terminal. Warnings are also collected, and `summary_lines()` gives one line per distinct
warning worth the user's attention (known-harmless ones are counted, not listed).

The log starts in a temporary file (the sweep directory may not exist yet while the input is
being validated) and `move_to()` carries it into the sweep directory once that exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Iterator

LOG_NAME = "comptrust.log"
# llm-compressor's format, with the logging module's name (llm-compressor's own set-up omits it)
LOGURU_FORMAT = "{time:YYYY-MM-DDTHH:mm:ss.SSSS} | {name}:{function} | {level} - {message}"
_LOGURU_WARNING = re.compile(r"^\S+ \| (\S+) \| (WARNING|ERROR|CRITICAL) - (.*)$", re.M)

# Messages that are expected on the machines comptrust targets and change nothing for the user;
# each is still written to the log, only left out of the console summary.
HARMLESS = (
    re.compile(r"No accelerator available"),  # llm-compressor on a CPU-only machine: expected
    re.compile(r"Disabling tokenizer parallelism"),  # llm-compressor sets TOKENIZERS_PARALLELISM itself
    re.compile(r"generation flags are not valid and may be ignored"),  # transformers, sampling flags at greedy
    # compressed-tensors on save after llm-compressor's sequential pipeline "offloaded" modules to
    # the CPU they already live on (the CPU device here): no copy to make room for
    re.compile(r"Attempting to save a model with offloaded modules"),
    # torch, while llm-compressor's sequential pipeline traces a decoder layer with torch.fx
    re.compile(r"is_fx_tracing will return true for both fx.symbolic_trace and torch.export"),
)


def _normalise(text: str) -> str:
    """First line, numbers folded, so 30 'layer 12 ...' messages count as one warning."""
    first = (text.strip().splitlines() or [""])[0]
    return re.sub(r"\d+(\.\d+)?", "N", first)[:160]


class _Collector(logging.Handler):
    def __init__(self, cap: "ThirdPartyLog") -> None:
        super().__init__(level=logging.WARNING)
        self.cap = cap

    def emit(self, record: logging.LogRecord) -> None:
        self.cap.note(record.name.split(".")[0] or "logging", record.getMessage())


class ThirdPartyLog:
    def __init__(self, file) -> None:
        self.file = file
        self.path = Path(file.name)
        self.start = 0  # where this session's part of the log begins
        self.moved = False  # False: still the temporary file (removed at the end)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.first: dict[tuple[str, str], str] = {}

    def note(self, source: str, message: str) -> None:
        key = (source, _normalise(message))
        self.counts[key] += 1
        first = (message.strip().splitlines() or [""])[0]
        self.first.setdefault(key, first if len(first) <= 160 else first[:159] + "…")

    def collect_loguru_warnings(self) -> None:
        """loguru WARNING+ lines written to the log (llm-compressor's format) -> noted warnings."""
        self.file.seek(self.start)
        for m in _LOGURU_WARNING.finditer(self.file.read()):
            where = m.group(1)
            source = where.split(":")[0].split(".")[0] if ":" in where else "llmcompressor"
            self.note(source, m.group(3))
        self.file.seek(0, os.SEEK_END)

    def move_to(self, directory: Path) -> Path:
        """Continue the log in directory/comptrust.log (appended to, so a resumed run keeps the old one)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / LOG_NAME
        _flush_std()
        self.file.flush()
        new = open(target, "a+", encoding="utf-8", errors="replace", buffering=1)
        self.start = new.tell()
        self.file.seek(0)
        shutil.copyfileobj(self.file, new)
        new.flush()
        old, old_path = self.file, self.path
        self.file, self.path, self.moved = new, target, True
        _point_std_at(new)
        old.close()
        with contextlib.suppress(OSError):
            old_path.unlink()
        return target

    def summary_lines(self, limit: int = 6) -> list[str]:
        """One line per distinct warning that matters (most frequent first), then a count of the rest."""
        shown, harmless = [], 0
        for key, n in self.counts.most_common():
            text = self.first[key]
            if any(p.search(text) for p in HARMLESS):
                harmless += n
                continue
            shown.append(f"warning ({key[0]}{f', x{n}' if n > 1 else ''}): {text}")
        lines = shown[:limit]
        if len(shown) > limit:
            lines.append(f"... {len(shown) - limit} more distinct warnings")
        if harmless:
            lines.append(f"{harmless} known-harmless warning(s) (e.g. no accelerator on a CPU machine) are in the log only")
        return lines


def _flush_std() -> None:
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()


def _point_std_at(f) -> None:
    f.flush()
    os.dup2(f.fileno(), 1)
    os.dup2(f.fileno(), 2)


def _terminal_stream(stream):
    """A stream for comptrust's own console that survives the redirect of fds 1 and 2."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return stream, False  # not fd-backed (e.g. a test's in-memory capture): the redirect cannot reach it
    return os.fdopen(os.dup(fd), "w", encoding=getattr(stream, "encoding", None) or "utf-8",
                     errors="replace", buffering=1), True


@contextlib.contextmanager
def third_party_to_log() -> Iterator[ThirdPartyLog]:
    """Route all third-party output to a log file for the duration; comptrust's console stays."""
    from loguru import logger

    from .progress import console

    tmp = tempfile.NamedTemporaryFile("w+", prefix="comptrust-", suffix=".log", delete=False,
                                      encoding="utf-8", errors="replace")
    cap = ThirdPartyLog(tmp)
    term, owned = _terminal_stream(sys.stderr)
    old_console_file = console._file  # None = follow sys.stderr
    _flush_std()
    saved = (os.dup(1), os.dup(2))
    old_std = (sys.stdout, sys.stderr)
    old_showwarning = warnings.showwarning
    collector = _Collector(cap)
    loggers = [logging.getLogger(), logging.getLogger("transformers"), logging.getLogger("torch"),
               logging.getLogger("datasets"), logging.getLogger("huggingface_hub")]

    def showwarning(message, category, filename, lineno, file=None, line=None):
        cap.note(category.__name__, str(message))
        cap.file.write(warnings.formatwarning(message, category, filename, lineno, line))

    log_stream = _LogStream(cap)
    # loguru's handlers hold the stream objects they were given (llm-compressor's: sys.stdout as
    # it was at import); replace them by one that writes the log, in llm-compressor's format.
    # llm-compressor's own import (if it happens inside the block) does the same with
    # sys.stdout, which is then the log too. Its warnings are read back from the log at the end.
    logger.remove()
    logger.add(log_stream, level="INFO", format=LOGURU_FORMAT)
    try:
        console.file = term
        _point_std_at(tmp)
        # Python-level writers that captured another stream object (pytest's, say) follow too.
        sys.stdout = sys.stderr = log_stream
        warnings.showwarning = showwarning
        for lg in loggers:
            lg.addHandler(collector)
        yield cap
    finally:
        with contextlib.suppress(Exception):
            cap.file.flush()
            cap.collect_loguru_warnings()
        logger.remove()
        for lg in loggers:
            lg.removeHandler(collector)
        warnings.showwarning = old_showwarning
        _flush_std()
        sys.stdout, sys.stderr = old_std
        with contextlib.suppress(Exception):
            cap.file.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        console.file = old_console_file
        _restore_loguru(logger)
        if owned:
            term.close()
        cap.file.close()
        if not cap.moved:  # validation or a dry run: nothing worth keeping outside a sweep dir
            with contextlib.suppress(OSError):
                cap.path.unlink()


def _restore_loguru(logger) -> None:
    """Back to the library defaults: llm-compressor's console logger if it is loaded, else loguru's."""
    if "llmcompressor" in sys.modules:
        from llmcompressor.logger import configure_logger

        configure_logger()
    else:
        logger.add(sys.stderr)


class _LogStream:
    """sys.stdout/sys.stderr stand-in: writes go to the current log file."""

    def __init__(self, cap: ThirdPartyLog) -> None:
        self.cap = cap

    def write(self, s: str) -> int:
        return self.cap.file.write(s)

    def flush(self) -> None:
        self.cap.file.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.cap.file.fileno()

    @property
    def encoding(self) -> str:
        return "utf-8"

    def writable(self) -> bool:
        return True
