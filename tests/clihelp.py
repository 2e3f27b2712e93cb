"""Run the real CLI entry point in-process and capture its exit code and output."""

from __future__ import annotations

import sqlite3
import sys

import pytest


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    from comptrust.cli import main

    old = sys.argv
    sys.argv = ["comptrust", *args]
    try:
        with pytest.raises(SystemExit) as exc:
            main()
            raise SystemExit(0)
    finally:
        sys.argv = old
    out = capsys.readouterr()
    code = exc.value.code if isinstance(exc.value.code, int) else (0 if exc.value.code is None else 1)
    return code, out.out, out.err


def response_count(db) -> int:
    """Answers committed in a run's store so far (0 while the store does not exist yet)."""
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0
