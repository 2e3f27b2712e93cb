"""lm-evaluation-harness bridge, offline: a custom task from a local JSONL file on a tiny random
model. Also cross-checks our choice_logprobs against lm-eval's own log-likelihoods."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from comptrust.benign import lm_eval_bridge  # noqa: E402
from comptrust.benign.lm_eval_bridge import check_tasks, parse_tasks, run_lm_eval, summary_rows, task_manager  # noqa: E402
from comptrust.benign.mmlu_data import build_prompt, load_bundled  # noqa: E402
from comptrust.errors import ConfigError  # noqa: E402

TASK = "comptrust_mmlu_tiny"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from comptrust.testing import make_tiny_model

    d = tmp_path_factory.mktemp("lmeval")
    tasks = d / "tasks"
    tasks.mkdir()
    data = load_bundled()
    qs = data.test[:6]
    with (tasks / "mmlu_tiny.jsonl").open("w") as f:
        for q in qs:
            f.write(json.dumps({"question": q.question, "subject": q.subject, "choices": list(q.choices),
                                "answer": q.answer}) + "\n")
    # lm-eval's MMLU template (description + question + lettered choices + "Answer:"), zero-shot.
    (tasks / "mmlu_tiny.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {tasks / 'mmlu_tiny.jsonl'}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        "description: \"The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\\n\\n\"\n"
        "doc_to_text: \"{{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:\"\n"
        "doc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\n"
        "doc_to_target: answer\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    model = make_tiny_model(d / "model")
    # The built-in index (~15k tasks) takes seconds to build; these tests use only the local task.
    tm = task_manager(tasks, include_defaults=False)
    return d, tasks, model, qs, tm


def test_parse_and_check_tasks(setup):
    _, _, _, _, tm = setup
    assert parse_tasks(" mmlu, hellaswag ,") == ["mmlu", "hellaswag"]
    with pytest.raises(ConfigError, match="no lm-eval task"):
        parse_tasks(" , ")
    check_tasks([TASK], tm)
    with pytest.raises(ConfigError, match=r"unknown lm-eval task 'comptrust_mmlu_tiyn'; did you mean comptrust_mmlu_tiny"):
        check_tasks(["comptrust_mmlu_tiyn"], tm)
    with pytest.raises(ConfigError, match="include path .* does not exist"):
        task_manager(setup[0] / "nope")


def test_run_on_local_task_stores_results_and_matches_our_loglik(setup):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from comptrust.benign.loglik import choice_logprobs

    d, tasks, model_dir, qs, _ = setup
    run = run_lm_eval(model_dir, [TASK], out_dir=d / "run", include_path=tasks, include_defaults=False,
                      log_samples=True, model_info={"path": str(model_dir), "fingerprint": "x"})
    acc = run.results[TASK]["acc,none"]
    assert 0.0 <= acc <= 1.0 and run.results[TASK]["sample_len"] == len(qs)
    stored = json.loads((d / "run" / "lm_eval.json").read_text())
    assert stored["results"][TASK]["acc,none"] == acc and stored["tasks"] == [TASK]
    assert stored["model"]["fingerprint"] == "x" and stored["lm_eval_version"]
    assert ("comptrust_mmlu_tiny", "acc,none", acc, run.results[TASK]["acc_stderr,none"]) in summary_rows(run.results)

    # Same prompt, same " A".." D" continuations: our cached-prefix computation must agree with
    # lm-eval's log-likelihoods, and so must the prediction.
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    samples = sorted(run.samples[TASK], key=lambda s: s["doc_id"])
    correct = 0
    for q, s in zip(qs, samples):
        prompt = build_prompt(q, [])
        assert s["arguments"][0][0] == prompt
        theirs = [r[0][0] for r in s["resps"]]
        ours = choice_logprobs(model, tok, prompt, (" A", " B", " C", " D"))
        assert ours == pytest.approx(theirs, abs=1e-3)
        correct += max(range(4), key=lambda i: ours[i]) == q.answer
    assert correct / len(qs) == pytest.approx(acc)


def test_cli_unknown_task_one_line_exit_2(setup, monkeypatch, capsys):
    from comptrust.cli import main

    d, tasks, model_dir, _, tm = setup
    # Serve the CLI's default index from the small local one (same check, no 10 s indexing).
    monkeypatch.setitem(lm_eval_bridge._TASK_MANAGERS, (str(Path(tasks).resolve()), True), tm)
    monkeypatch.setattr(sys, "argv", ["comptrust", "benign", "--model", str(model_dir), "--lm-eval-tasks",
                                      f"{TASK},hellaswagg", "--lm-eval-include", str(tasks), "--out", str(d / "cli")])
    with pytest.raises(SystemExit) as e:
        main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown lm-eval task 'hellaswagg'" in err
    assert not (d / "cli").exists()  # failed before anything was written


def test_cli_runs_local_task(setup, monkeypatch, capsys):
    from comptrust.cli import main

    d, tasks, model_dir, _, tm = setup
    monkeypatch.setitem(lm_eval_bridge._TASK_MANAGERS, (str(Path(tasks).resolve()), True), tm)
    monkeypatch.setattr(sys, "argv", ["comptrust", "benign", "--model", str(model_dir), "--lm-eval-tasks", TASK,
                                      "--lm-eval-include", str(tasks), "--lm-eval-limit", "3", "--out", str(d / "cli2")])
    try:
        main()
    except SystemExit as e:  # typer may exit 0 explicitly on success
        assert e.code in (0, None)
    out = capsys.readouterr().out
    assert f"lm-eval {TASK} acc,none:" in out
    stored = json.loads((d / "cli2" / "lm_eval.json").read_text())
    assert stored["results"][TASK]["sample_len"] == 3 and stored["model"]["path"] == str(model_dir)
