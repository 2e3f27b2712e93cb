"""The test session never writes the user's comptrust cache (conftest points COMPTRUST_CACHE away)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from comptrust.models.resolve import cache_dir


def test_cache_is_the_sessions_temp_dir_here_and_in_subprocesses():
    home_cache = (Path.home() / ".cache" / "comptrust").resolve()
    here = cache_dir().resolve()
    assert here != home_cache and Path(tempfile.gettempdir()).resolve() in here.parents
    out = subprocess.run([sys.executable, "-c", "from comptrust.models.resolve import cache_dir; print(cache_dir())"],
                         capture_output=True, text=True, check=True, env=dict(os.environ)).stdout.strip()
    assert Path(out).resolve() == here
