"""A ninth dimension from an installed plugin runs through eval and report, touching no project file.

The fixture tests/fixtures/tiny_plugin holds a package and its .dist-info (an installed
distribution as pip lays it out); putting that directory on the subprocess's sys.path makes
importlib.metadata see its `comptrust.perspectives` entry point. Nothing in comptrust names it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from comptrust.perspectives.base import list_perspectives

PLUGIN_DIR = Path(__file__).parent / "fixtures" / "tiny_plugin"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), *filter(None, [env.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "comptrust", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_plugin_perspective_through_eval_and_report(tmp_path, tiny_model):
    assert "echo_check" not in list_perspectives()  # only the plugin's installed metadata brings it in
    ls = _cli("ls")
    assert ls.returncode == 0 and "echo_check" in ls.stdout, ls.stderr

    run = tmp_path / "run"
    r = _cli("eval", "--model", str(tiny_model), "-p", "echo_check", "--option", "echo_prefix=Kindly",
             "--out", str(run), "--quiet")
    assert r.returncode == 0, r.stderr
    res = json.loads((run / "results.json").read_text())
    d = res["dimensions"]["echo_check"]
    assert d["title"] == "Echo check (plugin)" and d["version"] == "7"
    assert d["score"] is not None and d["counts"]["requests"] == 3
    assert res["overall"]["dimensions_used"] == ["echo_check"]  # a trust dimension of the catalogue
    rows = [json.loads(x) for x in (run / "samples" / "echo_check.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all("Kindly" in x["prompt"] for x in rows)  # the option reached requests()

    bad = _cli("eval", "--model", str(tiny_model), "-p", "echo_check", "--option", "echo_prefx=x",
               "--out", str(tmp_path / "bad"), "--quiet")
    assert bad.returncode == 2 and "echo_prefix" in bad.stderr and not (tmp_path / "bad").exists()

    rep = _cli("report", str(run), "--out", str(tmp_path / "rep"), "--n-boot", "20")
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "EchoPlug" in md  # the catalogue's column title
    assert "(1/9)" in md  # 8 built-in trust dimensions + the plugin
    assert "EchoPlug" in (tmp_path / "rep" / "report.html").read_text()
