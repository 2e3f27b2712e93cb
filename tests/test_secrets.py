"""Secrets and untrusted names: an eval with fake API keys in the environment (the Perspective
scorer against a loopback fake server, which must receive its key) leaves the keys in no log
line, store row, results.json or report; a model named with rich markup, Markdown pipes and
backticks is shown literally on the terminal and escaped in report.md."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

KEYS = {
    "OPENAI_API_KEY": "sk-FAKE0penai5ecretA1b2C3",
    "PERSPECTIVE_API_KEY": "FAKEpersp5ecretD4e5F6",
    "HF_TOKEN": "hf_FAKE5ecretG7h8I9",
}
EVIL = "evil[bold red]x[link=https:e.vil]y|pipe`tick`"  # a directory name: no "/"


class _FakePerspective(BaseHTTPRequestHandler):
    keys_seen: list[str] = []

    def do_POST(self):  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        json.loads(self.rfile.read(n))
        type(self).keys_seen.append(self.headers.get("X-Goog-Api-Key", ""))
        body = json.dumps({"attributeScores": {a: {"summaryScore": {"value": 0.25}} for a in
                                               ("TOXICITY", "SEVERE_TOXICITY", "IDENTITY_ATTACK", "INSULT",
                                                "PROFANITY", "THREAT", "SEXUALLY_EXPLICIT", "FLIRTATION")}})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *a):
        pass


def _all_bytes(root: Path) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in root.rglob("*") if p.is_file()]


def test_keys_never_written_and_names_escaped(tmp_path, tiny_model):
    model = tmp_path / EVIL
    shutil.copytree(tiny_model, model)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakePerspective)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    run, rep = tmp_path / "run", tmp_path / "rep"
    env = {**os.environ, **KEYS, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "400"}
    try:
        r = subprocess.run(
            [sys.executable, "-m", "comptrust", "eval", "--model", str(model), "-p", "toxicity",
             "--toxicity-scorer", "perspective", "--option", f"toxicity_perspective_url=http://127.0.0.1:{srv.server_port}",
             "--option", "toxicity_perspective_qps=1000", "--limit", "2", "--out", str(run)],
            env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        r2 = subprocess.run([sys.executable, "-m", "comptrust", "report", str(run), "--out", str(rep), "--n-boot", "20"],
                            env=env, capture_output=True, text=True, timeout=600)
        assert r2.returncode == 0, r2.stderr[-3000:]
    finally:
        srv.shutdown()
    # the scorer did use the key from the environment (so the check below is not vacuous)
    assert _FakePerspective.keys_seen and set(_FakePerspective.keys_seen) == {KEYS["PERSPECTIVE_API_KEY"]}

    logs = r.stdout + r.stderr + r2.stdout + r2.stderr
    files = _all_bytes(run) + _all_bytes(rep)
    assert any(p.name == "store.sqlite" for p, _ in files) and (run / "results.json").is_file()
    for name, key in KEYS.items():
        assert key not in logs, f"{name} in the terminal output"
        for p, data in files:
            assert key.encode() not in data, f"{name} written to {p}"

    # terminal: rich markup in the model name is printed literally, not interpreted
    assert "evil[bold red]x[link=https:e.vil]y" in r.stderr
    # report.md: the name's pipe and backticks cannot break the Markdown table
    md = (rep / "report.md").read_text()
    assert not re.search(r"(?<!\\)\|pipe", md) and not re.search(r"(?<!\\)`tick", md)
    assert "\\|pipe\\`tick\\`" in md
    html = (rep / "report.html").read_text()
    assert "evil[bold red]x[link=https:e.vil]y" in html  # shown as text (the browser test covers HTML escaping)
