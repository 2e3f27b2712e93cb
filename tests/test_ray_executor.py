"""The Ray executor on a local 2-CPU cluster, run inside a network namespace that has only a
loopback interface (Ray 2.60 listens on every interface and talks over the machine's external
address otherwise; no test may send traffic off loopback)."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from clihelp import run_cli

pytestmark = pytest.mark.ray

HERE = Path(__file__).resolve().parent


def _netns_available() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip"):
        return False
    r = subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"], capture_output=True)
    return r.returncode == 0


@pytest.fixture(scope="module")
def scenario(tiny_model, tmp_path_factory):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'comptrust[ray]')")
    if not _netns_available():
        pytest.skip("cannot create a loopback-only network namespace (unshare -n needs root/CAP_SYS_ADMIN); "
                    "Ray would use the external interface")
    work = tmp_path_factory.mktemp("ray")
    summary = work / "summary.json"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
           sys.executable, str(HERE / "ray_scenario.py"), str(tiny_model), str(work), str(summary)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return work, json.loads(summary.read_text())


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT key, perspective, request_id, sample_idx, text FROM responses ORDER BY key").fetchall()
    finally:
        con.close()


def test_only_loopback(scenario):
    _, s = scenario
    assert "inet " in s["interfaces"]
    for line in s["interfaces"].splitlines():
        if " inet" in line:
            assert "127.0.0.1" in line or "::1" in line, line
    for line in (s["listening"] + s["connections"]).splitlines():
        addrs = [a for a in line.split()[3:5] if ":" in a]
        for a in addrs:
            host = a.rsplit(":", 1)[0].strip("[]").replace("::ffff:", "")
            assert host in ("127.0.0.1", "::1", "*", "0.0.0.0", "::"), line


def test_ray_equals_local(scenario):
    work, s = scenario
    names = sorted(p.name for p in (work / "local" / "samples").glob("*.jsonl"))
    assert names == ["fairness.jsonl", "machine_ethics.jsonl"]
    for n in names:  # greedy results identical across executors, sample by sample
        assert (work / "ray" / "samples" / n).read_text() == (work / "local" / "samples" / n).read_text()
    local, ray = (json.loads((work / d / "results.json").read_text()) for d in ("local", "ray"))
    assert ray["dimensions"].keys() == local["dimensions"].keys()
    for d in local["dimensions"]:
        assert ray["dimensions"][d]["score"] == local["dimensions"][d]["score"]
    assert ray["backend"]["name"] == "hf" == local["backend"]["name"]  # which backend produced the numbers
    assert ray["efficiency"]["tokens_per_s"] == s["tokens_per_s"] and s["tokens_per_s"] > 0


def test_killed_worker_retried_nothing_lost_or_duplicated(scenario):
    work, s = scenario
    killed = s["killed"]
    assert killed, "the worker was not killed (the job finished first?)"
    job = next(j for j in s["jobs"] if j["perspectives"] == ["fairness"])
    assert job["pid"] != killed["pid"]  # the retry ran in another worker
    local, ray = _rows(work / "local" / "store.sqlite"), _rows(work / "ray" / "store.sqlite")
    assert len(ray) == len({r[0] for r in ray})  # no duplicates
    assert ray == local  # nothing lost: the same keys with the same texts
    fairness_total = sum(1 for r in ray if r[1] == "fairness")
    # the retry generated only what the killed attempt had not committed
    assert job["generated"] <= fairness_total - killed["rows_before"]


def test_address_that_does_not_answer(capsys):
    from comptrust.backends.local_server import free_port
    from comptrust.distributed import RayExecutor
    from comptrust.errors import ConfigError

    pytest.importorskip("ray")
    addr = f"127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError) as e:
        RayExecutor(address=addr).start()
    msg = str(e.value)
    assert "no Ray cluster answers at" in msg and addr in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="HOST:PORT"):
        RayExecutor(address="not an address").start()


def test_sweep_through_ray(scenario):
    _, s = scenario
    sw = s["sweep"]
    assert sw["failed"] == [] and sorted(sw["ran"]) == ["build/tiny/rtn4", "eval/tiny/dense", "eval/tiny/rtn4"]
    assert "backend: hf on cpu" in sw["report_md"]  # the report names the backend of every run


def test_sweep_cli_dead_address_exit_2(capsys, tmp_path, tiny_model):
    pytest.importorskip("ray")
    from comptrust.backends.local_server import free_port

    spec = tmp_path / "spec.yaml"
    spec.write_text(f"models:\n  - ref: {tiny_model}\n    name: tiny\ndimensions: [fairness]\nprofile: smoke\nlimit: 1\n")
    out = tmp_path / "sweep"
    addr = f"127.0.0.1:{free_port()}"
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out), "--executor", "ray", "--address", addr)
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert addr in lines[0] and "ray start --head" in lines[0]
    assert not out.exists()
    code, _, err = run_cli(capsys, "sweep", str(spec), "--out", str(out), "--address", addr)
    assert code == 2 and "--executor ray" in err and not out.exists()
