"""The perspective contract: typed options through one channel, the registry, the catalogue."""

from __future__ import annotations

from typing import ClassVar

import pytest
from clihelp import run_cli

from comptrust.errors import ConfigError
from comptrust.perspectives import registry
from comptrust.perspectives.base import (
    Perspective,
    PerspectiveOptions,
    catalogue,
    get_perspective,
    list_perspectives,
    register,
    resolve_options,
)
from comptrust.results_schema import compute_overall


def test_cli_unknown_option_exits_2_naming_the_valid_keys(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--perspectives", "stereotype",
                           "--option", "no_such_key=1", "--out", str(out))
    assert code == 2 and "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "'no_such_key'" in lines[0]
    for key in ("stereotype_parser", "stereotype_duplicate_task_desc", "stereotype_round"):
        assert key in lines[0]
    assert not out.exists()


def test_cli_ill_typed_option_exits_2(capsys, tmp_path, tiny_model):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "eval", "--model", str(tiny_model), "--perspectives", "stereotype",
                           "--option", "stereotype_parser=llm", "--out", str(out))
    assert code == 2 and "stereotype_parser='llm'" in err and "Input should be 'dt'" in err
    assert not out.exists()


def test_resolve_options_splits_by_perspective_and_names_the_owner():
    opts = resolve_options(["stereotype", "fairness"], {"stereotype_parser": "comptrust",
                                                        "fairness_unknown_policy": "exclude"})
    assert opts["stereotype"].stereotype_parser == "comptrust"
    assert opts["fairness"].fairness_unknown_policy == "exclude"
    with pytest.raises(ConfigError, match=r"'advglue_tasks' \(an option of advglue, which is not evaluated\)"):
        resolve_options(["stereotype"], {"advglue_tasks": "sst2"})
    # a perspective's options are frozen and typed
    p = get_perspective("mmlu", mmlu_ntrain="3")
    assert p.options.mmlu_ntrain == 3
    with pytest.raises(ConfigError, match="mmlu_ntrain"):
        get_perspective("mmlu", mmlu_ntrain=-1)


def test_deviations_are_the_non_default_options_only():
    assert get_perspective("stereotype").deviations() == []
    p = get_perspective("stereotype", stereotype_parser="comptrust", stereotype_round=True)
    assert p.deviations() == ["stereotype_parser=comptrust"]


def test_catalogue_is_the_registry():
    cat = {d.name: d for d in catalogue()}
    assert set(cat) == set(list_perspectives())
    trust = [d.name for d in catalogue() if d.is_trust]
    assert trust == ["toxicity", "stereotype", "advglue", "ood", "adv_demonstration", "privacy",
                     "machine_ethics", "fairness"]
    assert registry.heatmap_order()[:3] == ["mmlu", "advglue", "ood"]  # paper Fig. 2
    assert cat["advglue"].short_title == "AdvGLUE++"
    for d in catalogue():
        assert get_perspective(d.name).version  # every perspective has a version


def test_registry_rejects_a_second_class_under_a_taken_name():
    class Impostor(Perspective):
        name: ClassVar[str] = "stereotype"
        title: ClassVar[str] = "Not stereotype"

    with pytest.raises(ConfigError, match="two perspectives are named 'stereotype'"):
        register(Impostor)
    assert list_perspectives()["stereotype"] is not Impostor


def test_registry_rejects_a_non_perspective():
    class Loose:
        name = "loose"
        title = "Loose"

    with pytest.raises(ConfigError, match="not a comptrust Perspective subclass"):
        register(Loose)


def test_broken_entry_point_is_an_error(monkeypatch):
    from importlib.metadata import EntryPoint

    ep = EntryPoint(name="ghost", value="no_such_module_xyz:Ghost", group=registry.GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    monkeypatch.setattr(registry, "_loaded", False)
    with pytest.raises(ConfigError, match="perspective 'ghost' .* failed to load: ModuleNotFoundError"):
        registry.list_perspectives()


def test_options_model_must_be_the_perspectives_own():
    class Other(PerspectiveOptions):
        pass

    with pytest.raises(TypeError):
        get_perspective("stereotype", Other())


def test_overall_counts_the_catalogues_trust_dimensions():
    names = [d.name for d in catalogue() if d.is_trust]
    o = compute_overall({n: 50.0 for n in names})
    assert o.trust_mean == 50.0 and o.dimensions_used == names
    o = compute_overall({n: 50.0 for n in names[:-1]})
    assert o.trust_mean is None and o.trust_mean_present == 50.0


def test_hooks_the_report_uses():
    import random

    from comptrust.report.compare import registry_aggregator
    from comptrust.types import SampleScore

    # mmlu declares its score to be 100 * mean(correct): true on any resample
    P = get_perspective("mmlu")
    rng = random.Random(0)
    for _ in range(5):
        ss = [SampleScore(f"r{i}", rng.choice("ab"), {"correct": float(rng.random() < 0.5)}) for i in range(9)]
        from comptrust.data.source import DataSource
        from comptrust.perspectives.base import PerspectiveContext
        from comptrust.profiles import get_profile

        res = P.aggregate(ss, PerspectiveContext(DataSource.bundled(), get_profile("smoke")))
        assert res.score == pytest.approx(100 * sum(s.values["correct"] for s in ss) / len(ss))
    assert P.bootstrap_mean_key == "correct"
    # fairness has a per-request utility (its aggregate on one request alone is undefined)
    F = get_perspective("fairness")
    right = SampleScore("a", "g", {"pred": 1.0, "known": 1.0, "label": 1.0, "sensitive": 0.0})
    wrong = SampleScore("a", "g", {"pred": 0.0, "known": 1.0, "label": 1.0, "sensitive": 0.0})
    assert F.sample_utility(right) == 1.0 and F.sample_utility(wrong) == 0.0
    assert get_perspective("stereotype").sample_utility(right) is None  # default: not defined
