"""EvalConfig is a pydantic model: every value checked when it is made, one ConfigError line for a
bad one (never pydantic's multi-line ValidationError), unknown keywords rejected, paths kept as
Paths, changed copies checked again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from clihelp import run_cli
from comptrust.errors import ConfigError
from comptrust.runner import EvalConfig


def _cfg(**kw) -> EvalConfig:
    return EvalConfig(**{"model": "m", "perspectives": ["stereotype"], "out_dir": Path("run"), **kw})


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text and "validation error" not in text.lower() and "pydantic" not in text, text
    return text


@pytest.mark.parametrize("kw, needle", [
    ({"batch_size": 0}, "EvalConfig batch_size=0: input should be greater than or equal to 1; pass a larger value"),
    ({"limit": "many"}, "EvalConfig limit='many': input should be a valid integer"),
    ({"out_dir": None}, "EvalConfig out_dir=None: not a path; pass a directory path"),
    ({"on_bad_row": "maybe"}, "--on-bad-row must be fail or skip, not 'maybe'"),
    ({"backend": "tpu"}, "unknown backend 'tpu'; use hf | vllm | openai"),
    ({"profile": "huge"}, "unknown profile 'huge'; use one of: smoke, quick, full"),
    ({"protocol": "release"}, "unknown protocol 'release'"),
    ({"chat_template": "klingon"}, "unknown chat template 'klingon'"),
    ({"perspectives": []}, "no perspectives given; pass --perspectives stereotype"),
    ({"backend": "openai"}, "--backend openai needs --api-model NAME"),
])
def test_bad_value_is_one_config_error_line(kw, needle):
    with pytest.raises(ConfigError) as e:
        _cfg(**kw)
    assert needle in _one_line(e)


def test_unknown_keyword_is_rejected_with_the_valid_names():
    with pytest.raises(ConfigError) as e:
        _cfg(batchsize=4)
    line = _one_line(e)
    assert "no setting 'batchsize'" in line and "batch_size" in line and "fix its spelling" in line


def test_several_bad_values_name_the_first_and_count_the_rest():
    with pytest.raises(ConfigError) as e:
        _cfg(seed="x", batch_size=0)
    assert _one_line(e).startswith("EvalConfig seed='x'") and str(e.value).endswith("(and 1 more error)")


def test_paths_stay_paths_and_endpoint_refs_are_normalised():
    c = _cfg(out_dir="runs/x", data_dir="hub@main", model=Path("models/tiny"))
    assert c.out_dir == Path("runs/x") and isinstance(c.out_dir, Path) and isinstance(c.data_dir, Path)
    assert str(c.data_dir) == "hub@main"  # make_data_source recognises the hub by the path's text
    assert c.model == "models/tiny"
    assert _cfg(model="openai:gpt@http://127.0.0.1:9/v1").backend == "openai"
    c = _cfg(model=None, backend="openai", api_model="gpt", base_url="http://127.0.0.1:9/v1")
    assert c.model == "openai:gpt@http://127.0.0.1:9/v1"


def test_frozen_and_replace_validates_again():
    c = _cfg()
    with pytest.raises(ValidationError):  # a programming error, not user input
        c.batch_size = 0
    d = c.replace(perspectives=["fairness"], batch_size=2)
    assert (d.perspectives, d.batch_size, c.perspectives) == (["fairness"], 2, ["stereotype"])
    with pytest.raises(ConfigError) as e:
        c.replace(batch_size=0)
    assert "batch_size=0" in _one_line(e)


def test_ray_doc_round_trip_and_split():
    from comptrust.distributed import config_from_doc, config_to_doc, split_by_dimension

    c = _cfg(perspectives=["stereotype", "fairness"], data_dir=Path("/data/dt"), options={"stereotype_round": False})
    doc = config_to_doc(c)
    assert json.loads(json.dumps(doc)) == doc and doc["out_dir"] == "run" and doc["data_dir"] == "/data/dt"
    assert config_from_doc(doc) == c and isinstance(config_from_doc(doc).out_dir, Path)
    parts = split_by_dimension(c)
    assert [p.perspectives for p in parts] == [["stereotype"], ["fairness"]]
    assert all(p.out_dir == c.out_dir and p.options == c.options for p in parts)
    with pytest.raises(ConfigError):
        config_from_doc({**doc, "on_bad_row": "maybe"})


def test_generation_job_without_ray(tmp_path, tiny_model):
    """What a Ray worker runs, as a plain call: the config goes through its JSON doc and back."""
    from comptrust.distributed import config_to_doc, generation_job

    cfg = EvalConfig(model=str(tiny_model), perspectives=["stereotype"], out_dir=tmp_path / "run", limit=1)
    res = generation_job(config_to_doc(cfg))
    assert res["perspectives"] == ["stereotype"] and res["generated"] > 0
    assert generation_job(config_to_doc(cfg))["generated"] == 0  # all in the store now


def test_cli_bad_value_exits_2_with_one_line(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--protocol", "release", "--out", str(out))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: unknown protocol 'release'"), err
    assert not out.exists()
