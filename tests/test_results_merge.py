"""Several evals into one --out: every dimension kept exactly once, each with its own provenance,
never relabelled by a later run with other settings (docs/results-merge.md)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

from clihelp import run_cli

ENV = {k: v for k, v in os.environ.items() if k != "COMPTRUST_KILL_AT"}
ENV.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

# four dimensions whose data files do not overlap (so each provenance is checkably its own)
DIMS = {"stereotype": "data/stereotype/", "toxicity": "data/toxicity/", "machine_ethics": "data/machine_ethics/",
        "fairness": "data/fairness/"}


def _load_unique(path: Path) -> dict:
    """results.json, failing on a key that appears twice in one object (json.loads keeps the last)."""
    def pairs(items):
        keys = [k for k, _ in items]
        assert len(keys) == len(set(keys)), f"duplicate keys in {path}: {keys}"
        return dict(items)
    return json.loads(path.read_text(), object_pairs_hook=pairs)


def _eval(model, out, *flags):
    return ["eval", "--model", str(model), "--out", str(out), "--limit", "2", "-q", *flags]


def test_second_eval_adds_its_dimension_and_keeps_the_firsts_provenance(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "stereotype"))[0] == 0
    first = _load_unique(out / "results.json")["dimensions"]["stereotype"]
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "toxicity"))[0] == 0
    res = _load_unique(out / "results.json")
    assert set(res["dimensions"]) == {"stereotype", "toxicity"}
    assert res["dimensions"]["stereotype"]["provenance"] == first["provenance"]  # untouched by the second run
    files = res["provenance"]["data"]["files"]
    assert any(f.startswith("data/stereotype/") for f in files) and any(f.startswith("data/toxicity/") for f in files)
    assert set(res["provenance"]["scorers"]) == {"toxicity"}
    assert not list(out.glob(".*")), "lock or temp files left behind"


def test_rerun_with_another_profile_is_refused_not_mislabelled(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "stereotype,toxicity"))[0] == 0
    before = (out / "results.json").read_bytes()
    code, _, err = run_cli(capsys, *_eval(tiny_model, out, "-p", "mmlu", "--profile", "quick"))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "profile smoke" in lines[0] and "quick" in lines[0] and "another --out" in lines[0]
    assert (out / "results.json").read_bytes() == before
    # also refused: other options, another seed, another data dir (the document would mislabel them)
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "mmlu", "--seed", "1"))[0] == 2
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "fairness", "--option", "fairness_unknown_policy=exclude"))[0] == 2
    assert (out / "results.json").read_bytes() == before
    # a run that rewrites every dimension there replaces the document, truthfully labelled
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "stereotype,toxicity", "--profile", "quick"))[0] == 0
    res = _load_unique(out / "results.json")
    assert res["profile"]["name"] == "quick"
    assert {d["provenance"]["profile"]["name"] for d in res["dimensions"].values()} == {"quick"}
    assert any(f.startswith("data/stereotype/") for f in res["provenance"]["data"]["files"])


def test_eval_of_another_model_into_the_dir_is_refused(capsys, tmp_path, tiny_model):
    from comptrust.testing import make_tiny_model

    other = make_tiny_model(tmp_path / "other", seed=1)
    out = tmp_path / "run"
    assert run_cli(capsys, *_eval(tiny_model, out, "-p", "stereotype"))[0] == 0
    code, _, err = run_cli(capsys, *_eval(other, out, "-p", "toxicity"))
    assert code == 2 and "of another model" in err, err


KILL_POINTS = [None, None, "generate.batch:1", "score:1", "results.merge:1", "atomic.rename:1", "results.write:1"]


def _start(model, out, dim, kill_at):
    env = dict(ENV)
    if kill_at:
        env["COMPTRUST_KILL_AT"] = kill_at
    return subprocess.Popen([sys.executable, "-m", "comptrust", *_eval(model, out, "-p", dim, "--batch-size", "1")],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_concurrent_evals_killed_at_random_then_rerun_keep_every_dimension_once(tmp_path, tiny_model):
    rng = random.Random(16)
    out = tmp_path / "run"
    kills = {d: rng.choice(KILL_POINTS) for d in DIMS}
    kills[rng.choice(list(DIMS))] = "results.merge:1"  # at least one dies holding the lock mid-merge
    procs = {d: _start(tiny_model, out, d, k) for d, k in kills.items()}
    for d, p in procs.items():
        _, err = p.communicate(timeout=600)
        want = -signal.SIGKILL if kills[d] else 0
        assert p.returncode == want, f"{d} (kill at {kills[d]}): rc {p.returncode}\n{err[-2000:]}"
    res = _load_unique(out / "results.json") if (out / "results.json").exists() else {"dimensions": {}}
    survivors = {d for d, k in kills.items() if k is None}
    assert survivors <= set(res["dimensions"]), f"a finished eval's dimension was lost: {kills}"

    procs = {d: _start(tiny_model, out, d, None) for d in DIMS}  # all re-run at once
    for d, p in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{d} re-run: rc {p.returncode}\n{err[-2000:]}"
    res = _load_unique(out / "results.json")
    assert sorted(res["dimensions"]) == sorted(DIMS), kills
    for d, prefix in DIMS.items():
        dim = res["dimensions"][d]
        prov = dim["provenance"]
        assert prov["profile"] == res["profile"] and prov["backend"] == "hf"
        others = tuple(p for o, p in DIMS.items() if o != d)
        assert any(f.startswith(prefix) for f in prov["data"]["files"]), (d, prov["data"])
        assert not any(f.startswith(others) for f in prov["data"]["files"]), (d, prov["data"])  # its own files only
        assert all(res["provenance"]["data"]["files"][f] == h for f, h in prov["data"]["files"].items())
        lines = (out / "samples" / f"{d}.jsonl").read_text().splitlines()
        assert len(lines) == dim["counts"]["requests"] > 0
    assert set(res["provenance"]["scorers"]) == {"toxicity"}
    assert not list(out.rglob(".*tmp*")) and not list(out.glob(".*.lock")), "temp or lock files left behind"
