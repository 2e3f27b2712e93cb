"""The OpenAI-compatible backend against a live server on 127.0.0.1: `transformers serve` on the
tiny random model, with a fault-injecting proxy in front for retries, timeouts and 401s."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pytest

from clihelp import run_cli

pytestmark = pytest.mark.server

SECRET = "sk-test-0f9c1d2e-NEVER-LOG-ME"


@pytest.fixture(scope="module")
def server(tiny_model):
    pytest.importorskip("fastapi", reason="transformers[serving] is not installed")
    from comptrust.backends.local_server import transformers_server

    with transformers_server(tiny_model) as url:
        yield url


def _cfg(model_ref: str, out: Path, **kw):
    from comptrust.runner import EvalConfig

    return EvalConfig(model=model_ref, perspectives=["fairness"], out_dir=out, profile="smoke", limit=4, **kw)


def _texts(run: Path, name: str = "fairness") -> list:
    return [json.loads(l)["texts"] for l in (run / "samples" / f"{name}.jsonl").read_text().splitlines()]


def _all_bytes(run: Path) -> bytes:
    return b"".join(p.read_bytes() for p in run.rglob("*") if p.is_file())


def test_greedy_matches_hf_and_key_stays_secret(server, tiny_model, tmp_path, monkeypatch, caplog, capsys):
    from comptrust.backends.local_server import FaultProxy
    from comptrust.runner import run_eval

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    with FaultProxy(server, require_key=SECRET) as proxy:  # 401 unless the key is sent
        res = run_eval(_cfg(f"openai:{tiny_model}@{proxy.base_url}", tmp_path / "api", concurrency=4))
    assert proxy.requests == 4 and all(proxy.seen_auth)
    assert res["backend"]["name"] == "openai"
    assert res["model"]["chat_template"] == "endpoint"
    assert res["efficiency"]["size_bytes"] is None  # no local weights to measure
    hf = run_eval(_cfg(str(tiny_model), tmp_path / "hf"))
    # the server applies the same chat template to the same messages: greedy text is identical
    assert _texts(tmp_path / "api") == _texts(tmp_path / "hf")

    con = sqlite3.connect(tmp_path / "api" / "store.sqlite")
    rows = con.execute("SELECT backend, model_fp, prompt FROM responses").fetchall()
    con.close()
    assert {r[0] for r in rows} == {"openai"} and {r[1] for r in rows} == {res["model"]["fingerprint"]}
    assert all(json.loads(r[2])[-1]["role"] == "user" for r in rows)  # keyed on the chat turns
    assert res["model"]["fingerprint"] != hf["model"]["fingerprint"]

    out = capsys.readouterr()
    assert SECRET.encode() not in _all_bytes(tmp_path / "api")
    assert SECRET not in out.out + out.err + caplog.text


def test_fingerprint_names_model_and_url():
    from comptrust.models.resolve import resolve_model

    a = resolve_model("openai:m@http://127.0.0.1:8000/v1")
    assert a.fingerprint == resolve_model("openai:m@http://127.0.0.1:8000/v1/").fingerprint
    assert a.fingerprint != resolve_model("openai:m@http://127.0.0.1:8001/v1").fingerprint
    assert a.fingerprint != resolve_model("openai:other@http://127.0.0.1:8000/v1").fingerprint


def test_retries_injected_500s_then_matches(server, tiny_model, tmp_path):
    from comptrust.backends.local_server import FaultProxy
    from comptrust.runner import _make_backend, run_eval

    with FaultProxy(server, fail_first=3, fail_status=500) as proxy:
        cfg = _cfg(f"openai:{tiny_model}@{proxy.base_url}", tmp_path / "flaky", concurrency=2)
        res = run_eval(cfg)
    assert proxy.failed == 3 and proxy.requests == 4 + 3  # every failure was retried once more
    assert res["dimensions"]["fairness"]["counts"]["requests"] == 4
    clean = run_eval(_cfg(f"openai:{tiny_model}@{server}", tmp_path / "clean"))
    assert _texts(tmp_path / "flaky") == _texts(tmp_path / "clean")
    assert clean["model"]["fingerprint"] != res["model"]["fingerprint"]  # another URL, another model
    assert _make_backend  # imported for the API check below
    from comptrust.backends.openai_compat import OpenAIBackend

    b = OpenAIBackend(server, "x", concurrency=1)
    assert "sk-" not in repr(b)


def test_timeout_gives_one_clear_error_and_consistent_store(server, tiny_model, tmp_path):
    from comptrust.backends.local_server import FaultProxy
    from comptrust.errors import BackendError
    from comptrust.runner import run_eval

    with FaultProxy(server, delay=1.5) as proxy:
        cfg = _cfg(f"openai:{tiny_model}@{proxy.base_url}", tmp_path / "slow", request_timeout=0.3, max_retries=1,
                   concurrency=1)
        with pytest.raises(BackendError, match="no answer within 0.3 s"):
            run_eval(cfg)
    assert not (tmp_path / "slow" / "results.json").exists()
    con = sqlite3.connect(tmp_path / "slow" / "store.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def _assert_one_line_exit_2(code: int, err: str, *needles: str) -> str:
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def test_wrong_key_is_401_exit_2_without_the_key(server, tiny_model, tmp_path, monkeypatch, capsys):
    from comptrust.backends.local_server import FaultProxy

    monkeypatch.setenv("MY_KEY", SECRET)
    out = tmp_path / "run"
    with FaultProxy(server, require_key="sk-the-right-one") as proxy:
        code, stdout, err = run_cli(capsys, "eval", "--backend", "openai", "--base-url", proxy.base_url,
                                    "--api-model", str(tiny_model), "--api-key-env", "MY_KEY",
                                    "-p", "fairness", "--limit", "2", "--out", str(out), "--quiet")
    line = _assert_one_line_exit_2(code, err, "HTTP 401", "MY_KEY")
    assert SECRET not in line + stdout
    assert not (out / "results.json").exists()
    assert SECRET.encode() not in _all_bytes(out)


def test_unreachable_endpoint_exit_2(tmp_path, capsys):
    from comptrust.backends.local_server import free_port

    out = tmp_path / "run"
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    code, _, err = run_cli(capsys, "eval", "--model", f"openai:some-model@{url}", "-p", "fairness", "--limit", "2",
                           "--max-retries", "1", "--out", str(out), "--quiet")
    _assert_one_line_exit_2(code, err, "failed after 2 tries", "cannot connect", "--base-url")
    con = sqlite3.connect(out / "store.sqlite")
    assert con.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 0
    con.close()
    assert not (out / "results.json").exists()


def test_loglikelihood_perspective_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", "openai:m@http://127.0.0.1:9/v1", "-p", "mmlu",
                           "--protocol", "comptrust", "--out", str(out), "--quiet")
    _assert_one_line_exit_2(code, err, "log-likelihood", "--backend hf or vllm")
    assert not out.exists()


def test_raw_completion_prompt_is_refused_before_anything_is_written(tmp_path, capsys):
    """The paper protocol's MMLU prompt is raw text (no chat template), which an endpoint cannot take."""
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", "openai:m@http://127.0.0.1:9/v1", "-p", "mmlu",
                           "--out", str(out), "--quiet")
    _assert_one_line_exit_2(code, err, "raw completion prompts", "mmlu_prompt=chat")
    assert not out.exists()


def test_backend_flag_needs_a_model_name(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", "--backend", "openai", "--out", str(tmp_path / "r"))
    _assert_one_line_exit_2(code, err, "--api-model")


def test_credentials_in_url_refused(tmp_path, capsys):
    code, _, err = run_cli(capsys, "eval", "--model", "openai:m@http://user:sk-secret@127.0.0.1:9/v1",
                           "--out", str(tmp_path / "r"))
    line = _assert_one_line_exit_2(code, err, "OPENAI_API_KEY")
    assert "sk-secret" not in line
