"""`comptrust eval`: one model, some perspectives, one run directory."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..backends.base import DEFAULT_BATCH_SIZE
from ..errors import ConfigError
from ..models.resolve import DEFAULT_MODEL


def parse_options(pairs: list[str]) -> dict:
    """--option key=value (repeatable); values parsed as JSON when they parse, else strings."""
    import json

    out = {}
    for p in pairs or []:
        if "=" not in p:
            raise ConfigError(f"--option {p!r} must look like key=value (e.g. --option fairness_unknown_policy=exclude)")
        k, v = p.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def split_perspectives(values: list[str]) -> list[str]:
    """-p a,b and -p a -p b mean the same: every perspective named, in order, once."""
    names = [p.strip() for v in values or [] for p in v.split(",") if p.strip()]
    return list(dict.fromkeys(names))


def run_and_report(cfg, quiet: bool = False) -> dict:
    from ..pipeline.uptodate import INPUTS_FILE, finished_results
    from ..results_doc import check_out_dir
    from ..runner import build_plan, run_eval
    from .progress import console, escape, generation_progress, print_plan

    check_out_dir(cfg.out_dir)  # before the tokenizer/model load, not after it
    results = finished_results(cfg)
    if results is not None:
        if not quiet:
            console.print(f"up to date: {escape(str(Path(cfg.out_dir) / 'results.json'))} was written by an eval with "
                          f"exactly these inputs (config, model, data, comptrust); nothing to do. Delete "
                          f"{escape(str(Path(cfg.out_dir) / INPUTS_FILE))} to force a full re-run.")
    else:
        plan = build_plan(cfg)
        with generation_progress(enabled=not quiet) as on_start:
            results = run_eval(cfg, plan=plan, on_plan=None if quiet else print_plan, on_start=on_start)
    if not quiet:
        for name, d in results["dimensions"].items():
            score = "n/a" if d["score"] is None else f"{d['score']:.1f}"
            ref = "n/a" if d.get("refusal_rate") is None else f"{100 * d['refusal_rate']:.1f}%"
            console.print(f"[bold]{escape(d.get('title', name))}[/bold]: score {score} / 100, refusal {ref}")
        console.print(f"results: {escape(str(Path(cfg.out_dir) / 'results.json'))}")
    return results


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_cmd(
        model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="embedded:NAME, HF id, checkpoint/variant dir, or .gguf file"),
        perspectives: list[str] = typer.Option(["stereotype"], "--perspectives", "-p", help="comma-separated and/or repeated: -p a,b or -p a -p b (see `comptrust ls`)"),
        data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="DecodingTrust checkout (holds data/), or `hub[@REV]` for the HF dataset AI-Secure/DecodingTrust; default: the bundled mini set"),
        toxicity_scorer: Optional[str] = typer.Option(None, "--toxicity-scorer", help="default (offline) | hf:PATH (local classifier) | perspective (needs PERSPECTIVE_API_KEY)"),
        profile: str = typer.Option("smoke", "--profile", help="smoke | quick | full"),
        limit: Optional[int] = typer.Option(None, "--limit", min=1, help="cap on prompts per perspective"),
        out: Path = typer.Option(..., "--out", "-o", help="run directory (created; re-running resumes)"),
        seed: int = typer.Option(0, "--seed", help="prompt-sampling seed: which rows the profile draws"),
        gen_seed: int = typer.Option(0, "--gen-seed", help="generation seed for sampling at t>0 (the same for every model: a dense re-run with another --gen-seed is the noise floor)"),
        option: list[str] = typer.Option([], "--option", help="perspective switch key=value (repeatable)"),
        on_bad_row: str = typer.Option("fail", "--on-bad-row", help="fail | skip (skipped rows are counted in results.json)"),
        batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, "--batch-size", min=1, help="HF engine: rows decoding at once (lower it if memory is short); generate path and endpoints: requests per batch"),
        device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: cuda when available)"),
        chat_template: Optional[str] = typer.Option(None, "--chat-template", help="tokenizer | llama-2 | vicuna_v1.1 | plain | dt-fastchat[:llama-2|vicuna_v1.1|redpajama-incite-instruct] (default: the protocol's rendering)"),
        protocol: str = typer.Option("paper", "--protocol", help="paper (the authors' runs) | dt-main (DecodingTrust main) | comptrust (this project's fixes); --option overrides single switches (docs/protocols.md)"),
        trust_remote_code: bool = typer.Option(False, "--trust-remote-code", help="allow code shipped with the checkpoint"),
        allow_pickle: bool = typer.Option(False, "--allow-pickle", help="allow pickle checkpoints (.bin/.pt), which can run code when loaded"),
        backend: str = typer.Option("hf", "--backend", help="hf | vllm (pip install 'comptrust[vllm]') | openai (an OpenAI-compatible endpoint)"),
        base_url: Optional[str] = typer.Option(None, "--base-url", help="openai backend: endpoint base URL, e.g. http://127.0.0.1:8000/v1"),
        api_model: Optional[str] = typer.Option(None, "--api-model", help="openai backend: the endpoint's model name"),
        api_key_env: str = typer.Option("OPENAI_API_KEY", "--api-key-env", help="openai backend: environment variable holding the API key"),
        concurrency: int = typer.Option(8, "--concurrency", min=1, help="openai backend: requests in flight"),
        request_timeout: float = typer.Option(120.0, "--request-timeout", min=0.1, help="openai backend: seconds per request"),
        max_retries: int = typer.Option(4, "--max-retries", min=0, help="openai backend: retries on 429/5xx/timeouts/connection errors (exponential backoff)"),
        tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", min=1, help="vllm backend: GPUs per model"),
        allow_partial: bool = typer.Option(False, "--allow-partial", help="accept a perspective that ends with 0 prompts (its data files absent): an empty result, recorded as partial, instead of an error"),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Evaluate a model (dense or a compressed variant) on trust perspectives."""
        from ..runner import EvalConfig

        # EvalConfig checks every value (profile, protocol, chat template, backend, ...): a bad one
        # is a ConfigError here, before anything is loaded or written
        cfg = EvalConfig(
            model=model, perspectives=split_perspectives(perspectives), out_dir=out, allow_partial=allow_partial,
            data_dir=data_dir, profile=profile, seed=seed, gen_seed=gen_seed, limit=limit, options={**({"toxicity_scorer": toxicity_scorer} if toxicity_scorer else {}), **parse_options(option)},
            on_bad_row=on_bad_row, device=device, batch_size=batch_size, chat_template=chat_template,
            trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, backend=backend, base_url=base_url, api_model=api_model,
            api_key_env=api_key_env, concurrency=concurrency, request_timeout=request_timeout, max_retries=max_retries,
            tensor_parallel_size=tensor_parallel_size, protocol=protocol,
        )
        run_and_report(cfg, quiet=quiet)
