"""`comptrust benign`: benign performance beside the trust scores.

  --perplexity bundled|wikitext2|PATH   sliding-window perplexity (stored in RUN_DIR/perplexity.json)
  --lm-eval-tasks mmlu,hellaswag,...    lm-evaluation-harness on the same checkpoint (RUN_DIR/lm_eval.json)
  --mmlu-data DIR                       check a local MMLU copy loads (before a long `eval -p mmlu`)

MMLU as a dimension of our own pipeline (paired with the trust scores) runs through
`comptrust eval --perspectives mmlu`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from ..errors import ConfigError
from ..models.resolve import DEFAULT_MODEL


def _write_json_merge(path: Path, key: str, value: Any, model_info: dict[str, Any]) -> None:
    """path holds {"model": ..., "results": {key: value}}; other keys are kept (same model only)."""
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            data = {}
        if data.get("model", {}).get("fingerprint") != model_info.get("fingerprint"):
            data = {}  # another model's numbers must not mix with this one's
    data["model"] = model_info
    data.setdefault("results", {})[key] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _model_info(resolved) -> dict[str, Any]:
    return {"ref": resolved.ref, "path": str(resolved.path), "fingerprint": resolved.fingerprint,
            "display_name": resolved.display_name}


def register(app: typer.Typer) -> None:
    @app.command("benign")
    def benign_cmd(
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="embedded:NAME, HF id, checkpoint/variant dir, or .gguf file"),
        perplexity_src: Optional[str] = typer.Option(None, "--perplexity", help="bundled | wikitext2 | PATH to a UTF-8 text file"),
        max_length: int = typer.Option(1024, "--max-length", min=2, help="perplexity window (tokens; capped at the model's context)"),
        stride: int = typer.Option(512, "--stride", min=1, help="perplexity window step (tokens); = max-length for disjoint windows"),
        lm_eval_tasks: Optional[str] = typer.Option(None, "--lm-eval-tasks", help="comma-separated lm-eval tasks, e.g. mmlu,hellaswag"),
        lm_eval_include: Optional[Path] = typer.Option(None, "--lm-eval-include", help="folder of custom lm-eval task YAMLs"),
        lm_eval_fewshot: Optional[int] = typer.Option(None, "--lm-eval-fewshot", min=0, help="shots (the paper's MMLU is 5-shot; lm-eval's default is the task's)"),
        lm_eval_limit: Optional[float] = typer.Option(None, "--lm-eval-limit", help="examples per task (int) or fraction (<1)"),
        lm_eval_batch_size: int = typer.Option(1, "--lm-eval-batch-size", min=1),
        mmlu_data: Optional[Path] = typer.Option(None, "--mmlu-data", help="check a local MMLU directory (Hendrycks CSV / jsonl / parquet layout)"),
        out: Optional[Path] = typer.Option(None, "--out", "-o", help="run directory to store perplexity.json / lm_eval.json"),
        device: str = typer.Option("cpu", "--device", help="cpu | cuda"),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="allow code shipped with the checkpoint"),
    ) -> None:
        """Benign performance: perplexity, lm-evaluation-harness tasks, MMLU data check."""
        if not (perplexity_src or lm_eval_tasks or mmlu_data):
            raise ConfigError("nothing to do; pass --perplexity bundled|wikitext2|PATH, --lm-eval-tasks TASKS or --mmlu-data DIR")
        if stride > max_length:
            raise ConfigError(f"--stride {stride} is larger than --max-length {max_length}; use a stride <= max-length")

        if mmlu_data is not None:
            from ..benign.mmlu_data import load_local

            data = load_local(mmlu_data)
            n_dev = sum(len(v) for v in data.dev.values())
            typer.echo(f"MMLU data {mmlu_data}: {len(data.subjects)} subjects, {len(data.test)} test and {n_dev} dev questions")

        # Check every input that can be checked before loading a model (fail fast, nothing partial).
        tasks = None
        if lm_eval_tasks:
            from ..benign.lm_eval_bridge import check_tasks, parse_tasks, task_manager

            tasks = parse_tasks(lm_eval_tasks)
            check_tasks(tasks, task_manager(lm_eval_include))
        text = label = None
        if perplexity_src:
            from ..benign.perplexity import load_text

            text, label = load_text(perplexity_src)
        if tasks is None and text is None:
            return

        from ..models.resolve import resolve_model

        resolved = resolve_model(model, trust_remote_code=trust_remote_code)
        info = _model_info(resolved)

        if text is not None:
            from ..benign.perplexity import perplexity
            from ..models.resolve import load_model_and_tokenizer

            m, tok = load_model_and_tokenizer(resolved, device=device, dtype="float32")
            res = perplexity(m, tok, text, max_length=max_length, stride=stride, source=label or "")
            typer.echo(f"perplexity {res.ppl:.3f} on {label} ({res.n_tokens} tokens scored, "
                       f"max_length {res.max_length}, stride {res.stride}) for {resolved.display_name}")
            if out is not None:
                _write_json_merge(out / "perplexity.json", f"{label}|{res.max_length}|{res.stride}", res.to_json(), info)
                typer.echo(f"stored: {out / 'perplexity.json'}")
            del m

        if tasks is not None:
            from ..benign.lm_eval_bridge import run_lm_eval, summary_rows

            limit = None if lm_eval_limit is None else (int(lm_eval_limit) if lm_eval_limit >= 1 else lm_eval_limit)
            run = run_lm_eval(resolved.path, tasks, out_dir=out, include_path=lm_eval_include,
                              num_fewshot=lm_eval_fewshot, limit=limit, batch_size=lm_eval_batch_size,
                              device=device, model_info=info,
                              trust_remote_code=trust_remote_code)
            for task, metric, val, se in summary_rows(run.results):
                typer.echo(f"lm-eval {task} {metric}: {val:.4f}" + (f" ± {se:.4f}" if se is not None else ""))
            if run.path is not None:
                typer.echo(f"stored: {run.path}")
