"""Comparison report from synthetic run dirs: table values, colours/noise marks, recommendation,
escaping, bad input, baselines, docs up to date."""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from comptrust.errors import ComptrustError
from comptrust.report import CompareOptions, generate_report
from comptrust.report.charts import all_charts
from comptrust.report.compare import BaselineError, variant_label
from comptrust.report.markdown import md_cell
from comptrust.results_schema import (
    ComparisonResults,
    CompressionInfo,
    DimensionScore,
    render_schema_markdown,
)

sys.path.insert(0, str(Path(__file__).parent))
from report_fixtures import (  # noqa: E402
    DENSE_NAME,
    PAYLOAD,
    build_scenario,
    dense_vectors,
    fast_aggregator,
    flip,
    slow_aggregator,
    write_run,
)

OPTS = CompareOptions(n_boot=200, seed=0)
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    runs = build_scenario(root)
    files = generate_report(list(runs.values()), root / "out", options=OPTS, aggregator=fast_aggregator)
    return files, runs


def row(cmp: ComparisonResults, label: str):
    return next(r for r in cmp.rows if r.label == label)


class _Table(HTMLParser):
    """Rows of <table id=summary-table>: [(tr attrs, [(td attrs, text)])]."""

    def __init__(self):
        super().__init__()
        self.rows, self._in, self._cell = [], False, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table" and a.get("id") == "summary-table":
            self._in = True
        elif self._in and tag == "tr":
            self.rows.append((a, []))
        elif self._in and tag in ("td", "th"):
            self._cell = [a, ""]

    def handle_endtag(self, tag):
        if tag == "table":
            self._in = False
        elif self._in and tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append(tuple(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def test_table_values_deltas_and_noise(report):
    files, _ = report
    cmp = ComparisonResults.model_validate_json(files.results.read_text())
    dv = dense_vectors()
    assert [r.label for r in cmp.rows] == [DENSE_NAME, "GPTQ W4 g64* s0", "GPTQ W4 g64* s1", "GPTQ W4 g64* s2",
                                          "AWQ W4 g128", "SparseGPT 50%"]
    dense = cmp.rows[0]
    assert dense.role == "baseline"
    assert dense.cells["fairness"].score == pytest.approx(dv["fairness"].mean() * 100)
    assert dense.overall_score == pytest.approx(sum(dv[d].mean() * 100 for d in list(dv)[:8]) / 8)
    sg = row(cmp, "SparseGPT 50%")
    f, p = sg.cells["fairness"], sg.cells["privacy"]
    assert f.delta == pytest.approx(-20.0) and f.within_noise is False and f.ci_high < 0
    assert p.delta == pytest.approx(-7.5) and p.within_noise is True and p.ci_low < 0 < p.ci_high
    assert f.n_paired == 40 and f.n_boot == 200
    assert sg.overall_delta.delta == pytest.approx(-27.5 / 8)
    awq = row(cmp, "AWQ W4 g128")
    assert all(c.delta == pytest.approx(0.0) and c.within_noise for c in awq.cells.values())
    ref = {r.label: r for r in cmp.runs}
    assert ref["GPTQ W4 g64* s0"].group_size_note.startswith("g64*: group size 64 used instead of the requested 128")
    assert ref["AWQ W4 g128"].group_size_note is None
    # seed spread of the GPTQ family
    (fam,) = cmp.seed_families
    assert fam.seeds == [0, 1, 2] and fam.dimensions["ood"].range == pytest.approx(7.5)
    assert fam.dimensions["ood"].exceeds and not fam.dimensions["fairness"].exceeds


def test_recommendation_text(report):
    files, _ = report
    cmp = ComparisonResults.model_validate_json(files.results.read_text())
    text = "\n".join(cmp.recommendation.paragraphs)
    # identical answers on 40 paired requests: the Agresti-Min interval is +/-4.7 < 5, so "shown to keep"
    assert ("Shown to stay within 5 points of the dense baseline on every dimension compared (every 95% CI's lower "
            "bound is at least −5): GPTQ W4 g64* s0 (lowest: AdvDemo, Δ +0.0, 95% CI [−4.7, +4.7], n = 40) and "
            "GPTQ W4 g64* s1") in text
    # AWQ's flips leave delta 0 but a CI of +/-7.5: no detected loss, and no claim that it keeps every dimension
    assert "No loss of more than 5 points outside the noise, but the CIs cannot rule one out: " in text
    assert "AWQ W4 g128 (lowest: AdvGLUE++, Δ +0.0, 95% CI [−7.5, +7.5], n = 40)" in text
    assert re.search(r"SparseGPT 50% loses more than 5 points on Fairness \(Δ −20\.0, 95% CI \[−\d+\.\d, −\d+\.\d\], "
                     r"n = 40\)\.", text)
    assert "Privacy" not in text.split("SparseGPT 50% loses")[1].split(".")[0]  # within noise: not a loss
    assert re.search(r"do not confirm .*GPTQ W4 g64\* s2 on OOD \(Δ −7\.5, 95% CI \[−\d+\.\d, \+\d\.\d\], n = 40\); "
                     r"SparseGPT 50% on Privacy \(Δ −7\.5, ", text)
    assert "The calibration seed alone moves GPTQ W4 g64* (seeds 0, 1, 2) by more than 5 points on OOD (range 7.5)" in text
    assert cmp.recommendation.best == "GPTQ W4 g64* s0"
    v = {x.label: x for x in cmp.recommendation.verdicts}
    assert v["AWQ W4 g128"].no_detected_loss and not v["AWQ W4 g128"].keeps_all
    assert [x.dimension for x in v["SparseGPT 50%"].losses] == ["fairness"]
    assert [x.dimension for x in v["SparseGPT 50%"].inconclusive] == ["privacy"]
    md = files.markdown.read_text()
    assert "SparseGPT 50% loses more than 5 points on Fairness" in md


def test_html_table_colours_and_marks(report):
    files, _ = report
    html = files.html.read_text()
    t = _Table()
    t.feed(html)
    head = [c[1].strip() for c in t.rows[0][1]]
    assert head[:10] == ["Model", "Toxicity", "Stereotype", "AdvGLUE++", "OOD", "AdvDemo", "Privacy", "Ethics",
                         "Fairness", "MMLU"]
    assert head[10:] == ["Overall", "Bits/weight", "Size on disk", "Tokens/s"]
    body = {cells[0][1].strip(): cells for attrs, cells in t.rows[1:]}
    sg = body["SparseGPT 50%"]
    fair, priv, tox = sg[head.index("Fairness")], sg[head.index("Privacy")], sg[head.index("Toxicity")]
    assert fair[0]["class"] == "down" and "rgba(218,54,51," in fair[0]["style"] and fair[1] == "42.5−20.0r29%"
    assert "outside noise" in fair[0]["title"] and "95% CI [−" in fair[0]["title"]
    assert priv[0]["class"] == "noise" and "≈−7.5" in priv[1] and "rgba(218,54,51,0.12)" in priv[0]["style"]
    assert "within noise" in priv[0]["title"]
    assert tox[0]["class"] == "noise" and "style" not in tox[0]  # delta 0: no colour
    dense = body[DENSE_NAME]
    assert dense[head.index("Fairness")][1] == "62.5r19%"
    assert body["GPTQ W4 g64* s0"][head.index("Size on disk")][1] == "100.0 MiB"
    assert body["AWQ W4 g128"][head.index("Tokens/s")][1] == "42.0"
    assert "* g64*: group size 64 used instead of the requested 128" in html


def test_html_is_self_contained_and_escaped(report):
    files, _ = report
    html = files.html.read_text()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html
    assert "onerror=&#34;window.__pwned=2&#34;" in html or "onerror=&quot;window.__pwned=2&quot;" in html
    assert "SmolLM2 &lt;i&gt;dense&lt;/i&gt;" in html and "<i>dense" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html and "@import" not in html and not re.search(r"url\((?!#)", html)
    assert not re.search(r"""xlink:href=["'](?!data:|#)""", html)
    assert "Content-Security-Policy" in html
    assert html.count("<svg") >= 5 + 4  # 5 radars, heatmap, scatter, refusal, seeds
    # provenance: files, hashes, scorers, deviations, per-dimension notes, backend
    for s in ["data/x.jsonl", "ab" * 32, "detoxify-original 0.5.2", "crime sensitive attribute",
              "understanding: q1 only | as DT &lt;does&gt;", "hf on cpu (float32)"]:
        assert s in html, s


def test_svg_labels_are_escaped(report):
    files, _ = report
    cmp = ComparisonResults.model_validate_json(files.results.read_text())
    cmp.rows[0].label = "evil <script>alert(1)</script> & $x$"
    charts = all_charts(cmp)
    svgs = [s for _, s in charts["radars"]] + [charts["scatter"], charts["refusal"]]
    for s in svgs:
        assert s.startswith("<svg") and "<script" not in s
        assert "evil &lt;script&gt;alert(1)&lt;/script&gt; &amp; $x$" in s
    assert "<!DOCTYPE" not in charts["heatmap"]
    # deterministic output, unique ids across charts
    again = all_charts(cmp)
    assert again["heatmap"] == charts["heatmap"]
    ids = re.findall(r'id="([^"]+)"', "".join(svgs + [charts["heatmap"], charts["seeds"]]))
    assert len(ids) == len(set(ids))


def test_markdown_escaping_and_table_shape(report):
    files, _ = report
    assert md_cell("a|b`c\nd<e>&*f_g") == "a\\|b\\`c ⏎ d&lt;e&gt;&amp;\\*f\\_g"
    md = files.markdown.read_text()
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    summary = lines[: 1 + 6]
    n_cols = len(re.split(r"(?<!\\)\|", summary[0])) - 2
    assert n_cols == 1 + 9 + 3
    for ln in lines:
        assert len(re.split(r"(?<!\\)\|", ln)) - 2 in (n_cols, 9, 7, 6)  # summary, evidence, seed spread, regressions
    assert "SmolLM2 &lt;i&gt;dense&lt;/i&gt; $x$ \\| pipe" in md
    assert "&lt;script&gt;window.\\_\\_pwned=1&lt;/script&gt;" in md and "<script" not in md
    assert "| SparseGPT 50% | 67.5 (+0.0≈) r16%" in md and "42.5 (−20.0) r29% |" in md
    assert "| SparseGPT 50% | Fairness | −20.00 | [−" in md and "| 40 | 2 | r29% / r19% | – | outside noise |" in md
    assert "## Provenance" in md and "## Top regressions" in md and "## Seed spread" in md
    assert "- compression: method gptq, bits 4, group size requested 128, group size effective 64" in md
    assert "- backend: hf on cpu (float32)" in md and "detoxify-original 0.5.2" in md
    assert "- Privacy: understanding: q1 only \\| as DT &lt;does&gt;" in md


def test_worst_regressions_ranked_by_per_request_delta(report):
    files, _ = report
    cmp = ComparisonResults.model_validate_json(files.results.read_text())
    fair = cmp.regressions["fairness"]
    assert len(fair) == 5 and all(x.utility_delta == -100.0 for x in fair)
    assert fair[0].label == "SparseGPT 50%"  # ties go to the variant that lost most
    assert PAYLOAD in fair[0].variant_texts[0] and fair[0].baseline_texts == ["fine answer"]
    assert fair[0].baseline_values == {"correct": 1.0} and fair[0].variant_values == {"correct": 0.0}
    assert "privacy" in cmp.regressions and "toxicity" not in cmp.regressions


def test_slow_aggregate_path_gives_same_cis(tmp_path, report):
    files, runs = report
    fast = ComparisonResults.model_validate_json(files.results.read_text())
    slow = generate_report([runs["dense"], runs["sgpt"]], tmp_path / "o", options=OPTS,
                           aggregator=slow_aggregator).comparison
    a, b = row(fast, "SparseGPT 50%").cells["fairness"], row(slow, "SparseGPT 50%").cells["fairness"]
    assert (a.ci_low, a.ci_high) == pytest.approx((b.ci_low, b.ci_high))


def test_compare_two_dense_models(tmp_path):
    dv = dense_vectors(0)
    other = {d: flip(v, down=6) for d, v in dense_vectors(0).items()}
    a = write_run(tmp_path, "a", kind="dense", fingerprint="fp-a", vectors=dv)
    b = write_run(tmp_path, "b", kind="dense", fingerprint="fp-b", vectors=other, display_name="Other model")
    cmp = generate_report([a, b], tmp_path / "out", kind="compare", baseline=a, options=OPTS,
                          aggregator=fast_aggregator).comparison
    assert cmp.kind == "compare" and [r.role for r in cmp.rows] == ["baseline", "variant"]
    c = cmp.rows[1].cells["ood"]
    assert c.delta == pytest.approx(-15.0) and c.within_noise is False
    assert "Other model loses more than 5 points" in " ".join(cmp.recommendation.paragraphs)


def test_compare_cli(tmp_path, capsys, monkeypatch):
    from comptrust import cli

    dv = dense_vectors(0)
    # mmlu: the registry's own aggregate (100 * mean(correct)) is the fixture's, so the CLI's
    # re-aggregation must reproduce both recorded scores and find the one flipped answer
    a = write_run(tmp_path, "a", kind="dense", fingerprint="fp-a", vectors={"mmlu": dv["mmlu"]})
    b = write_run(tmp_path, "b", kind="dense", fingerprint="fp-b", vectors={"mmlu": flip(dv["mmlu"], down=1)})
    monkeypatch.setattr(sys, "argv", ["comptrust", "compare", str(a), str(b), "--out", str(tmp_path / "o"), "--n-boot", "50"])
    with pytest.raises(SystemExit) as done:
        cli.main()
    assert done.value.code == 0
    assert (tmp_path / "o" / "report.html").is_file()
    assert "wrote" in capsys.readouterr().out
    row = next(r for r in json.loads((tmp_path / "o" / "results.json").read_text())["rows"] if r["run_id"] == "b")
    cell = row["cells"]["mmlu"]
    assert cell["delta"] == pytest.approx(-2.5) and cell["ci_status"] == "ci" and cell["note"] is None
    monkeypatch.setattr(sys, "argv", ["comptrust", "report", str(tmp_path / "nope"), "--out", str(tmp_path / "o2")])
    with pytest.raises(SystemExit) as e:
        cli.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope" in err and "comptrust eval" in err
    assert not (tmp_path / "o2").exists()


def test_noise_floor_row(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path, "d", kind="dense", fingerprint="fp", vectors=dv)
    d2 = write_run(tmp_path, "d2", kind="dense", fingerprint="fp", sampling_seed=1,
                   vectors={k: flip(flip(v, down=1), up=1) for k, v in dv.items()})
    cmp = generate_report([d], tmp_path / "o", noise_floor=[d2], options=OPTS, aggregator=fast_aggregator).comparison
    nf = cmp.rows[1]
    assert nf.role == "noise_floor" and nf.label == "d2 (seed 1)" and nf.cells["ood"].within_noise is True
    assert "noise floor" in (tmp_path / "o" / "report.md").read_text()


def test_missing_samples_and_unknown_dimension_give_notes(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path, "d", kind="dense", fingerprint="fp", vectors={"ood": dv["ood"], "mmlu": dv["mmlu"]})
    v = write_run(tmp_path, "v", kind="variant", fingerprint="fv", base_fingerprint="fp",
                  vectors={"ood": dv["ood"], "mmlu": dv["mmlu"]}, compression=CompressionInfo(method="rtn", bits=8))
    (v / "samples" / "mmlu.jsonl").unlink()
    cmp = generate_report([d, v], tmp_path / "o", options=OPTS,
                          aggregator=lambda dim, run: None if dim == "ood" else fast_aggregator(dim, run)).comparison
    cells = cmp.rows[1].cells
    assert "no aggregate for dimension 'ood'" in cells["ood"].note and cells["ood"].within_noise is None
    assert "samples/mmlu.jsonl absent" in cells["mmlu"].note
    assert cells["toxicity"].score is None
    assert cmp.rows[1].overall_score == pytest.approx(dv["ood"].mean() * 100)
    assert not cmp.rows[1].overall_complete
    html = (tmp_path / "o" / "report.html").read_text()
    assert "(1/8)" in html and "†" in html


def test_out_of_sync_scores_are_flagged(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path, "d", kind="dense", fingerprint="fp", vectors={"ood": dv["ood"]})
    v = write_run(tmp_path, "v", kind="variant", fingerprint="fv", base_fingerprint="fp", vectors={"ood": dv["ood"]},
                  compression=CompressionInfo(method="rtn", bits=8))
    raw = json.loads((v / "results.json").read_text())
    raw["dimensions"]["ood"]["score"] = 12.0
    (v / "results.json").write_text(json.dumps(raw))
    cmp = generate_report([d, v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator).comparison
    assert "out of sync" in cmp.rows[1].cells["ood"].note


# ----------------------------------------------------------------------------- baselines


def test_baseline_errors_and_override(tmp_path):
    dv = dense_vectors(0)
    kw = dict(vectors={"ood": dv["ood"]})
    v = write_run(tmp_path, "v", kind="variant", fingerprint="fv", base_fingerprint="fp",
                  compression=CompressionInfo(method="gptq", bits=4), **kw)
    other = write_run(tmp_path, "other", kind="dense", fingerprint="fp-other", **kw)
    with pytest.raises(BaselineError, match=r"no dense run with the base fingerprint for .*v \(base fp\).*--baseline DIR"):
        generate_report([other, v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator)
    with pytest.raises(BaselineError, match=r"no dense run among the inputs"):
        generate_report([v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator)
    d1 = write_run(tmp_path, "d1", kind="dense", fingerprint="fp", **kw)
    d2 = write_run(tmp_path, "d2", kind="dense", fingerprint="fp", **kw)
    with pytest.raises(BaselineError, match=r"ambiguous baseline: 2 dense runs .*d1.*d2.*--baseline DIR") as e:
        generate_report([d1, d2, v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator)
    assert "\n" not in str(e.value)
    cmp = generate_report([d2, v], tmp_path / "o", baseline=d1, options=OPTS, aggregator=fast_aggregator).comparison
    assert cmp.rows[0].run_id == "d1" and {r.baseline_run_id for r in cmp.rows[1:]} == {"d1"}
    assert not (tmp_path / "o" / ".report.html.tmp").exists()


def test_variant_labels():
    assert variant_label(CompressionInfo(method="gptq", bits=3, group_size_requested=128, group_size_effective=128)) == "GPTQ W3 g128"
    assert variant_label(CompressionInfo(method="wanda", sparsity=0.5, structure="2:4")) == "Wanda 2:4"
    assert variant_label(CompressionInfo(method="magnitude", sparsity=0.5)) == "Magnitude 50%"
    assert variant_label(CompressionInfo(method="awq", bits=4, group_size_requested=128, group_size_effective=64)) == "AWQ W4 g64*"


# ----------------------------------------------------------------------------- bad input


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_run_dirs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ComptrustError) as e:
        generate_report([empty], tmp_path / "o")
    msg = _one_line(e)
    assert str(empty / "results.json") in msg and "comptrust eval" in msg

    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "results.json").write_text('{"schema_version": "1.0",\n "run_id": }')
    with pytest.raises(ComptrustError) as e:
        generate_report([bad], tmp_path / "o")
    msg = _one_line(e)
    assert f"{bad / 'results.json'}:2:" in msg and "invalid JSON" in msg and "re-run" in msg

    future = tmp_path / "future"
    future.mkdir()
    (future / "results.json").write_text(json.dumps({"schema_version": "9.0", "run_id": "x"}))
    with pytest.raises(ComptrustError) as e:
        generate_report([future], tmp_path / "o")
    msg = _one_line(e)
    assert str(future / "results.json") in msg and "'9.0' is not supported" in msg and "1.0" in msg

    invalid = tmp_path / "invalid"
    invalid.mkdir()
    (invalid / "results.json").write_text(json.dumps({"schema_version": "1.0", "run_id": "x"}))
    with pytest.raises(ComptrustError) as e:
        generate_report([invalid], tmp_path / "o")
    assert "model: Field required" in _one_line(e)
    assert not (tmp_path / "o").exists()


def test_bad_samples_line_and_out_dir_guard(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path, "d", kind="dense", fingerprint="fp", vectors={"ood": dv["ood"]})
    v = write_run(tmp_path, "v", kind="variant", fingerprint="fv", base_fingerprint="fp", vectors={"ood": dv["ood"]},
                  compression=CompressionInfo(method="rtn", bits=8))
    with (v / "samples" / "ood.jsonl").open("a") as f:
        f.write('{"request_id": "zz"}\n')
    with pytest.raises(ComptrustError) as e:
        generate_report([d, v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator)
    assert f"{v / 'samples' / 'ood.jsonl'}:41:" in _one_line(e)
    (v / "samples" / "ood.jsonl").unlink()
    with pytest.raises(ComptrustError, match="is a run directory"):
        generate_report([d, v], d, options=OPTS, aggregator=fast_aggregator)


def test_dimension_score_from_result_and_schema_doc_up_to_date():
    from comptrust.types import DimensionResult

    ds = DimensionScore.from_result(DimensionResult("ood", 50.0, 0.1, notes=["n"]))
    assert ds.title == "OOD" and ds.notes == ["n"]
    doc = ROOT / "docs" / "results-schema.md"
    assert doc.read_text() == render_schema_markdown(), (
        "docs/results-schema.md is stale: run `python -m comptrust.results_schema > docs/results-schema.md`")


def test_runs_sharing_a_run_id_get_distinct_keys(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path / "a", "run", kind="dense", fingerprint="fp", vectors={"ood": dv["ood"]})
    v = write_run(tmp_path / "b", "run", kind="variant", fingerprint="fv", base_fingerprint="fp",
                  vectors={"ood": flip(dv["ood"], down=2)}, compression=CompressionInfo(method="rtn", bits=8))
    with (v / "samples" / "ood.jsonl").open("a") as f:  # the runner adds logprobs for multiple-choice requests
        f.write('{"request_id": "mc", "group": "g0", "values": {"correct": 1.0}, "logprobs": [-1.5, -0.2]}\n')
    cmp = generate_report([d, v], tmp_path / "o", options=OPTS, aggregator=fast_aggregator).comparison
    assert [r.run_id for r in cmp.rows] == ["run@a", "run@b"]
    assert cmp.rows[1].baseline_run_id == "run@a" and cmp.rows[1].cells["ood"].delta == pytest.approx(-5.0)
    assert cmp.rows[1].cells["ood"].n_unpaired_variant == 1


def test_noise_floor_beside_every_delta_and_in_the_recommendation(tmp_path):
    dv = dense_vectors(0)
    d = write_run(tmp_path, "d", kind="dense", fingerprint="fp", vectors=dv)
    nf = write_run(tmp_path, "nf", kind="dense", fingerprint="fp",
                   vectors={k: flip(flip(v, down=3), up=1) for k, v in dv.items()})
    v = write_run(tmp_path, "v", kind="variant", fingerprint="fp-v", base_fingerprint="fp",
                  vectors={k: flip(v, down=2) for k, v in dv.items()},
                  compression=CompressionInfo(method="rtn", bits=4, group_size_requested=64, group_size_effective=64))
    files = generate_report([d, v], tmp_path / "o", noise_floor=[nf], options=OPTS, aggregator=fast_aggregator)
    cmp = files.comparison
    var = next(r for r in cmp.rows if r.role == "variant")
    assert all(c.noise_floor_delta == pytest.approx(-5.0) for c in var.cells.values())
    text = "\n".join(cmp.recommendation.paragraphs)
    assert re.search(r"Noise floor \(nf \(seed 0\): the dense model with only the generation seed changed\): its "
                     r"largest change is \w+ \(Δ −5\.0, 95% CI \[", text)
    md = files.markdown.read_text()
    assert "| RTN W4 g64 | OOD | −5.00 | [" in md and "| −5.00 | within noise |" in md
