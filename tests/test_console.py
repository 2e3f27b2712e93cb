"""One clean console: third-party output goes to the sweep's log file, comptrust's own stays.

The end-to-end test runs a real `comptrust sweep` in a subprocess (tiny random model, a GPTQ
build through llm-compressor's oneshot, so loguru, tqdm and transformers all get their chance to
print) and checks the captured stdout/stderr line by line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

from comptrust.commands.thirdparty import LOG_NAME, third_party_to_log

# What third-party output looks like on a console: loguru's default format as llm-compressor sets
# it ("2026-01-01T10:00:00.0000 | oneshot | INFO - ..."), tqdm bars ("45%|####  | 9/20 [00:01<00:01, 8.1it/s]"),
# transformers/python warnings, torch's C++ warnings.
THIRD_PARTY = [
    re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[.\d]* \| \w+ \| [A-Z]+ "),  # loguru (llm-compressor)
    re.compile(r"\d+%\|"),  # a tqdm bar
    re.compile(r"\d+(\.\d+)?(it|s)/(s|it)\]"),  # a tqdm rate
    re.compile(r"Warning: |UserWarning|FutureWarning|DeprecationWarning"),  # python warnings
    re.compile(r"llmcompressor|compressed_tensors|transformers\.|loguru", re.I),
    re.compile(r"No accelerator available"),
]


# comptrust's own one-line summaries of third-party warnings (thirdparty.summary_lines)
OWN_SUMMARY = re.compile(r"^(warning \(|\d+ known-harmless warning|\.\.\. \d+ more distinct warnings)")


def _third_party_lines(text: str) -> list[str]:
    return [ln for ln in re.split(r"[\r\n]+", text)
            if any(p.search(ln) for p in THIRD_PARTY) and not OWN_SUMMARY.match(ln)]


def test_every_route_lands_in_the_log_and_comptrust_stays_on_the_console(tmp_path, capfd, monkeypatch):
    import logging

    import tqdm
    from loguru import logger

    # an earlier test in this process may have run models.resolve.quiet_transformers (level ERROR),
    # which drops the warning below before any handler sees it
    monkeypatch.setattr(logging.getLogger("transformers"), "level", logging.WARNING)
    logging.getLogger("transformers").manager._clear_cache()

    from comptrust.commands.progress import console

    with third_party_to_log() as tp:
        console.print("comptrust: own line")
        print("print to stdout")
        sys.stderr.write("write to stderr\n")
        os.write(1, b"fd 1 write\n")
        os.write(2, b"fd 2 write\n")
        logger.warning("a loguru warning that matters")
        logger.info("a loguru info line")
        warnings.warn("a python warning", UserWarning)
        for _ in tqdm.tqdm(range(3), desc="third-party bar"):
            pass
        logging.getLogger("transformers.modeling_utils").warning("a transformers warning")
        log = tp.move_to(tmp_path)
        os.write(2, b"after the move\n")
    out, err = capfd.readouterr()
    assert "comptrust: own line" in err
    assert not _third_party_lines(out + err), out + err
    for s in ("print to stdout", "write to stderr", "fd 1 write", "fd 2 write", "print to stdout"):
        assert s not in out + err
    text = (tmp_path / LOG_NAME).read_text()
    assert log == tmp_path / LOG_NAME
    for s in ("print to stdout", "write to stderr", "fd 1 write", "fd 2 write", "a loguru warning that matters",
              "a loguru info line", "a python warning", "third-party bar", "after the move"):
        assert s in text, s
    lines = tp.summary_lines()
    assert any("a loguru warning that matters" in ln for ln in lines)
    assert any("a python warning" in ln for ln in lines)
    assert any("a transformers warning" in ln for ln in lines)
    assert not any("info line" in ln for ln in lines)
    # after the block, output goes where it went before
    os.write(2, b"restored fd 2\n")
    print("restored stdout")
    out, err = capfd.readouterr()
    assert "restored fd 2" in err and "restored stdout" in out


def test_harmless_warnings_are_counted_not_listed():
    from loguru import logger

    with third_party_to_log() as tp:
        for _ in range(3):
            logger.warning("No accelerator available! Compressing model on CPU instead")
        logger.warning("layer 3 has 12 outliers")
        logger.warning("layer 4 has 7 outliers")
    lines = tp.summary_lines()
    assert lines[0] == "warning (test_console, x2): layer 3 has 12 outliers"
    assert lines[-1].startswith("3 known-harmless warning(s)")
    assert not any("accelerator" in ln for ln in lines[:-1])
    assert not Path(tp.path).exists()  # never moved into a sweep dir: the temporary log is gone


SPEC = """\
models:
  - ref: {model}
    name: tiny
variants:
  - {{name: gptq4, method: gptq, bits: 4, n_calib: 2, seq_len: 16}}
dimensions: [stereotype]
profile: smoke
limit: 2
batch_size: 2
"""


def test_a_sweeps_console_has_no_third_party_line(tmp_path, tiny_model):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(model=tiny_model))
    out_dir = tmp_path / "sweep"
    env = {**os.environ, "COLUMNS": "120", "PYTHONWARNINGS": "default"}
    p = subprocess.run([sys.executable, "-m", "comptrust", "sweep", str(spec), "--out", str(out_dir), "--n-boot", "20"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    console = p.stdout + p.stderr
    assert not _third_party_lines(console), "\n".join(_third_party_lines(console))
    # comptrust's own lines are there: the plan, one result line per job, where the log is, the report
    assert "done build/tiny/gptq4" in console and "done eval/tiny/gptq4" in console
    assert f"third-party logs (llm-compressor, transformers, progress bars): {out_dir / LOG_NAME}" in console.replace("\n", "")
    assert "report.html" in console
    # ... and the third-party output did happen: it is in the log
    log = (out_dir / LOG_NAME).read_text()
    assert re.search(r"\| [A-Z]+ - ", log), log[:2000]  # llm-compressor's loguru lines
