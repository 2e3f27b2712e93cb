"""Run EleutherAI's lm-evaluation-harness on a comptrust model and keep its results beside ours.

lm-eval is an optional extra (`pip install 'comptrust[lmeval]'`, or `pip install lm-eval`). It
runs as a library: `lm_eval.simple_evaluate` with its own HF model class on the local checkpoint
path the model reference resolves to (dense model or compressed variant alike), so the numbers are
lm-eval's own and comparable with any other lm-eval run. Results go to RUN_DIR/lm_eval.json.

Task names are checked against lm-eval's task index before anything loads, so a typo fails fast
with one line. Custom tasks (a YAML file, e.g. `dataset_path: json` with local data_files) are
found through `include_path`.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..errors import BackendError, ConfigError

_TASK_MANAGERS: dict[tuple[str | None, bool], Any] = {}  # the task index takes seconds to build; reuse it


def _import_lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks import TaskManager  # noqa: F401
    except ImportError:
        raise ConfigError(
            "lm-evaluation-harness is not installed; install it with `pip install 'comptrust[lmeval]'` (or `pip install lm-eval`)"
        ) from None
    return lm_eval


def task_manager(include_path: str | Path | None = None, include_defaults: bool = True):
    """lm-eval's task index (its ~15k built-in tasks unless include_defaults=False, plus the
    YAML files under include_path)."""
    _import_lm_eval()
    from lm_eval.tasks import TaskManager

    path = str(Path(include_path).resolve()) if include_path else None
    if path is not None and not Path(path).exists():
        raise ConfigError(f"lm-eval include path {include_path} does not exist; pass a folder of task YAML files")
    key = (path, include_defaults)
    if key not in _TASK_MANAGERS:
        _TASK_MANAGERS[key] = TaskManager(include_path=path, include_defaults=include_defaults)
    return _TASK_MANAGERS[key]


def parse_tasks(spec: str | Sequence[str]) -> list[str]:
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    out = [n.strip() for n in names if n.strip()]
    if not out:
        raise ConfigError("no lm-eval task given; pass e.g. --lm-eval-tasks mmlu,hellaswag")
    return out


def check_tasks(tasks: Sequence[str], tm) -> None:
    known = set(tm.all_tasks)
    for t in tasks:
        if t not in known:
            close = difflib.get_close_matches(t, known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ConfigError(
                f"unknown lm-eval task {t!r}; {hint}list tasks with `lm-eval ls tasks`, "
                "or pass --lm-eval-include DIR for a custom task YAML"
            )


@dataclass
class LmEvalRun:
    results: dict[str, dict[str, Any]]  # lm-eval's "results": task -> metric -> value
    payload: dict[str, Any]  # what lm_eval.json holds
    path: Path | None
    samples: dict[str, Any] | None = None  # per-document records when log_samples (not stored)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def run_lm_eval(
    model_path: str | Path,
    tasks: Sequence[str],
    *,
    out_dir: str | Path | None = None,
    include_path: str | Path | None = None,
    num_fewshot: int | None = None,
    limit: int | float | None = None,
    batch_size: int | str = 1,
    device: str = "cpu",
    dtype: str = "float32",
    model_info: dict[str, Any] | None = None,
    seed: int = 0,
    log_samples: bool = False,
    trust_remote_code: bool = False,
    include_defaults: bool = True,
) -> LmEvalRun:
    """lm_eval.simple_evaluate(model="hf", pretrained=model_path) on `tasks`; writes
    out_dir/lm_eval.json (atomically) when out_dir is given."""
    lm_eval = _import_lm_eval()
    tm = task_manager(include_path, include_defaults)
    check_tasks(tasks, tm)
    try:
        out = lm_eval.simple_evaluate(
            model="hf",
            model_args={"pretrained": str(model_path), "dtype": dtype, "device": device,
                        **({"trust_remote_code": True} if trust_remote_code else {})},
            tasks=list(tasks), num_fewshot=num_fewshot, limit=limit, batch_size=batch_size,
            task_manager=tm, log_samples=log_samples,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
        )
    except ConfigError:
        raise
    except Exception as e:  # dataset download, tokenizer or model errors inside lm-eval
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise BackendError(
            f"lm-eval failed on tasks {','.join(tasks)} ({type(e).__name__}: {msg}); hub-hosted tasks need "
            "network or a warm HF datasets cache, custom tasks need readable data_files"
        ) from None
    if out is None:  # simple_evaluate returns None on non-zero ranks only
        raise BackendError("lm-eval returned no results")
    payload = {
        "model": model_info or {"path": str(model_path)},
        "tasks": list(tasks),
        "num_fewshot": num_fewshot,
        "limit": limit,
        "lm_eval_version": out.get("lm_eval_version"),
        "transformers_version": out.get("transformers_version"),
        "results": _jsonable(out.get("results", {})),
        "groups": _jsonable(out.get("groups", {})),
        "group_subtasks": _jsonable(out.get("group_subtasks", {})),
        "versions": _jsonable(out.get("versions", {})),
        "n-shot": _jsonable(out.get("n-shot", {})),
        "n-samples": _jsonable(out.get("n-samples", {})),
        "higher_is_better": _jsonable(out.get("higher_is_better", {})),
        "config": _jsonable(out.get("config", {})),
    }
    path = None
    if out_dir is not None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "lm_eval.json"
        from ..atomic import atomic_write_text

        atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True), "lm_eval.rename")
    return LmEvalRun(results=payload["results"], payload=payload, path=path, samples=out.get("samples"))


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, float, float | None]]:
    """(task, metric, value, stderr) for every numeric metric, for printing."""
    rows = []
    for task, metrics in sorted(results.items()):
        for key, val in sorted(metrics.items()):
            if not isinstance(val, (int, float)) or isinstance(val, bool) or "_stderr" in key:
                continue
            if key in ("sample_len",):
                continue
            metric, _, filt = key.partition(",")
            se = metrics.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
            rows.append((task, key, float(val), float(se) if isinstance(se, (int, float)) else None))
    return rows
