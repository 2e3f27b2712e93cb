"""Safe loading: no checkpoint code without --trust-remote-code, no pickle weights without
--allow-pickle (local dirs too), and no spec name that writes outside the sweep directory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from comptrust.errors import ModelRefError
from comptrust.models.resolve import resolve_model
from comptrust.spec import SpecError, parse_spec


def _copy(tiny: Path, dst: Path) -> Path:
    shutil.copytree(tiny, dst)
    return dst


def test_auto_map_needs_trust_remote_code(tmp_path, tiny_model):
    d = _copy(tiny_model, tmp_path / "custom")
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelRefError, match="--trust-remote-code"):
        resolve_model(str(d))
    assert resolve_model(str(d), trust_remote_code=True).trust_remote_code is True


def test_pickle_only_local_dir_needs_allow_pickle(tmp_path, tiny_model):
    d = _copy(tiny_model, tmp_path / "pickled")
    for st in d.glob("*.safetensors"):
        st.rename(d / "pytorch_model.bin")  # the name is what matters for the check
    with pytest.raises(ModelRefError, match="--allow-pickle"):
        resolve_model(str(d))
    assert resolve_model(str(d), allow_pickle=True).kind == "local"
    # safetensors beside a .bin: loaded from safetensors, nothing to refuse
    shutil.copy(next(tiny_model.glob("*.safetensors")), d)
    assert resolve_model(str(d)).kind == "local"


@pytest.mark.parametrize("name", ["../../etc", "..", "/abs", "a\\b", "rtn4\n", ".hidden"])
@pytest.mark.parametrize("where", ["variant", "model"])
def test_spec_names_cannot_leave_the_sweep_dir(tmp_path, tiny_model, name, where):
    v = json.dumps(name) if where == "variant" else "rtn4"
    m = json.dumps(name) if where == "model" else "tiny"
    text = (f"models:\n  - {{ref: {tiny_model}, name: {m}}}\nvariants:\n  - {{name: {v}, method: rtn, bits: 4}}\n"
            "dimensions: [stereotype]\n")
    with pytest.raises(SpecError, match="safe directory name|name"):
        parse_spec(text, "spec.yaml", tmp_path)


def test_sweep_spec_allow_pickle_per_model(tmp_path, tiny_model):
    from comptrust.spec import check_models

    d = _copy(tiny_model, tmp_path / "pickled")
    for st in d.glob("*.safetensors"):
        st.rename(d / "pytorch_model.bin")
    base = "models:\n  - {ref: %s, name: p%s}\nvariants:\n  - {name: rtn4, method: rtn, bits: 4}\ndimensions: [stereotype]\n"
    with pytest.raises(SpecError, match="allow-pickle"):
        check_models(parse_spec(base % (d, ""), "spec.yaml", tmp_path))
    resolved = check_models(parse_spec(base % (d, ", allow_pickle: true"), "spec.yaml", tmp_path))
    assert resolved["p"].allow_pickle is True
