"""Execute a sweep plan: build missing variants, evaluate dense + variants, write the report.

Directory layout (DIR = --out):
  DIR/sweep.json                          state: resolved spec, job statuses (atomic writes)
  DIR/variants/<model>/<variant>/         checkpoints + manifest.json (built by build_variant)
  DIR/runs/<model>/<dense|variant>/       eval run dirs (store.sqlite, results.json, samples/)
  DIR/report/                             report.html, report.md, results.json

Resumable at every step, with nothing redone: a variant whose manifest already matches the
requested recipe and base fingerprint is skipped before any model is loaded (build_variant itself
builds in a temp dir and renames, so a killed build leaves no half variant); an eval whose
results.json already covers every dimension with this sweep's settings is skipped without
loading anything, and an unfinished one resumes from its SQLite store; the report is rewritten
only when a run changed. Everything that can be wrong with the input is checked before DIR is
created or touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ComptrustError, ConfigError
from .plan import BuildJob, EvalJob, Job, SweepPlan, expand
from .spec import LoadedSpec, check_models

STATE_NAME = "sweep.json"
STATE_VERSION = 1


class SweepError(ComptrustError):
    pass


class SweepEvents:
    """Callbacks for progress display; the default does nothing. Methods may raise (tests use
    that to interrupt a sweep at a chosen point)."""

    def log(self, text: str) -> None: ...

    def job_started(self, job: Job, index: int, total: int, note: str = "") -> None: ...

    def job_finished(self, job: Job, status: str, detail: str = "") -> None: ...

    def eval_progress(self, job: EvalJob) -> Callable[[int], Callable[[int, int], None]] | None:
        """on_start(total_units) -> advance(units, tokens) for runner.run_eval, or None."""
        return None

    def report_started(self) -> None: ...


@dataclass
class SweepResult:
    out_dir: Path
    state: dict[str, Any]
    report: Any | None  # report.ReportFiles when written this time
    comparison: Any | None  # results_schema.ComparisonResults (written now or read back)
    failed: list[str] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)  # job ids that did work this time


def eval_settings(loaded: LoadedSpec) -> dict[str, Any]:
    """What every run of the sweep must share (changing any of it means a different sweep)."""
    s = loaded.spec
    return {"dimensions": list(s.dimensions), "profile": s.profile, "seed": s.seed, "gen_seed": s.gen_seed, "limit": s.limit,
            "data_dir": str(loaded.data_dir) if loaded.data_dir else None, "options": s.options,
            "on_bad_row": s.on_bad_row}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atomic_write_json(path: Path, doc: dict) -> None:
    from .atomic import atomic_write_text

    atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n", "sweep.state.rename")


def read_state(out_dir: Path) -> dict | None:
    p = Path(out_dir) / STATE_NAME
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        raise SweepError(f"{p} is unreadable; delete it (runs and variants are kept) and re-run the sweep") from None


def check_out_dir(out_dir: Path, loaded: LoadedSpec) -> dict | None:
    """Refuse a DIR that is not ours or that holds a sweep with other eval settings. Writes nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SweepError(f"--out {out_dir} is a file; pass a new directory or an existing sweep directory")
    state = read_state(out_dir) if out_dir.is_dir() else None
    if state is None:
        if out_dir.is_dir() and any(out_dir.iterdir()):
            raise SweepError(f"--out {out_dir} is not empty and holds no {STATE_NAME}; pass a new directory or an existing sweep directory")
        return None
    old, new = state.get("eval_settings", {}), eval_settings(loaded)
    diff = [k for k in new if old.get(k) != new[k]]
    if diff:
        k = diff[0]
        raise SweepError(
            f"--out {out_dir} holds a sweep with other eval settings ({k}: {old.get(k)!r} there, {new[k]!r} in "
            f"{loaded.source}); runs with different prompts cannot be compared: pass a new --out or restore the spec"
        )
    return state


# -- variant and eval completeness (cheap checks, no model load) ----------------------------------


def _request_json(cs) -> dict:
    return json.loads(json.dumps(cs.to_dict()))


def variant_status(vdir: Path, job: BuildJob, base_fp: str | None) -> str:
    """'missing', 'built' (manifest matches recipe + base), or 'different'."""
    from .compress.manifest import MANIFEST_NAME, Manifest

    if not (vdir / MANIFEST_NAME).is_file():
        return "missing"
    try:
        m = Manifest.read(vdir)
    except ComptrustError:
        return "different"
    same_base = base_fp is None or m.base.fingerprint == base_fp
    return "built" if m.request == _request_json(job.spec) and same_base else "different"


def _job_settings(settings: dict[str, Any], job: EvalJob) -> dict[str, Any]:
    """The noise-floor re-run of a dense model differs from it only in the generation seed."""
    return {**settings, "gen_seed": settings["gen_seed"] + 1} if job.noise_floor else settings


def eval_is_done(run_dir: Path, fingerprint: str | None, settings: dict[str, Any]) -> bool:
    try:
        res = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    prof = res.get("profile", {})
    if fingerprint is not None and res.get("model", {}).get("fingerprint") != fingerprint:
        return False
    if (prof.get("name"), prof.get("seed"), prof.get("limit")) != (settings["profile"], settings["seed"], settings["limit"]):
        return False
    # absent: written before common per-sample seeds; re-evaluating regenerates only the t>0 answers
    if prof.get("gen_seed") != settings.get("gen_seed", 0):
        return False
    dims = res.get("dimensions", {})
    return all(d in dims and (run_dir / "samples" / f"{d}.jsonl").is_file() for d in settings["dimensions"])


def _variant_fingerprint(vdir: Path) -> str | None:
    try:
        return json.loads((vdir / "manifest.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _clean_stale_builds(parent: Path) -> None:
    """A SIGKILLed build_variant leaves `.<name>.building-<pid>`; remove those of dead processes."""
    if not parent.is_dir():
        return
    for p in parent.glob(".*.building-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(p, ignore_errors=True)
        except (ValueError, PermissionError):
            continue


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    lock = out_dir / ".sweep.lock"
    with lock.open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another `comptrust sweep` is running in {out_dir}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- the sweep ------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A validated sweep, ready to run; building it writes nothing."""

    loaded: LoadedSpec
    plan: SweepPlan
    out_dir: Path
    resolved: dict[str, Any]  # model name -> ResolvedModel (None only in dry runs for hub ids)
    state: dict | None  # existing sweep.json
    status: dict[str, str]  # job id -> done | pending (from the files on disk, not the state file)


def prepare(loaded: LoadedSpec, out_dir: str | Path, *, download: bool = True,
            log: Callable[[str], None] = lambda s: None) -> Prepared:
    out = Path(out_dir).expanduser().absolute()
    state = check_out_dir(out, loaded)
    plan = expand(loaded)
    resolved = check_models(loaded, download=download, log=log)
    settings = eval_settings(loaded)
    status: dict[str, str] = {}
    for job in plan.jobs:
        r = resolved.get(job.model)
        if isinstance(job, BuildJob):
            st = variant_status(out / job.out_dir, job, r.fingerprint if r else None)
            if st == "different":
                raise SweepError(
                    f"{out / job.out_dir} holds another variant than {loaded.source} now asks for under the name "
                    f"{job.variant!r} (recipe or base model changed); rename the variant in the spec or delete that directory"
                )
            status[job.id] = "done" if st == "built" else "pending"
        else:
            fp = r.fingerprint if (r and job.variant_dir is None) else (
                _variant_fingerprint(out / job.variant_dir) if job.variant_dir else None)
            done = fp is not None and eval_is_done(out / job.out_dir, fp, _job_settings(settings, job))
            status[job.id] = "done" if done else "pending"
    return Prepared(loaded, plan, out, resolved, state, status)


def _state_doc(p: Prepared, jobs: dict[str, dict]) -> dict:
    old = p.state or {}
    return {
        "state_version": STATE_VERSION,
        "created_at": old.get("created_at", _now()),
        "updated_at": _now(),
        "spec_source": p.loaded.source,
        "spec": p.loaded.spec.model_dump(mode="json"),
        "spec_yaml": p.loaded.text,
        "eval_settings": eval_settings(p.loaded),
        "models": {name: ({"ref": r.ref, "fingerprint": r.fingerprint, "path": str(r.path)} if r else None)
                   for name, r in p.resolved.items()},
        "jobs": jobs,
        "report": old.get("report"),
    }


def _job_record(job: Job, status: str, prev: dict | None = None) -> dict:
    rec = {"kind": job.kind, "model": job.model, "status": status,
           "dir": str(job.out_dir)}
    if isinstance(job, BuildJob):
        rec.update(variant=job.variant, request=job.spec.to_dict())
    else:
        rec.update(target=job.target)
    for k in ("seconds", "finished_at", "error", "fingerprint"):
        if prev and k in prev and status == "done":
            rec[k] = prev[k]
    return rec


def run_sweep(p: Prepared, events: SweepEvents | None = None, *, report_options=None, executor=None) -> SweepResult:
    """Run every pending job of a prepared sweep, then (re)write the report if anything changed.
    executor: None runs jobs here; a distributed.RayExecutor runs builds and each eval's
    dimensions on a Ray cluster (scoring and the report stay here)."""
    from .compress import build_variant
    from .runner import EvalConfig, build_plan, run_eval

    ev = events or SweepEvents()
    out, loaded, spec = p.out_dir, p.loaded, p.loaded.spec
    if any(r is None for r in p.resolved.values()):
        raise SweepError("internal: a sweep must be prepared with download=True before it runs")
    out.mkdir(parents=True, exist_ok=True)
    with _exclusive(out):
        prev_jobs = (p.state or {}).get("jobs", {})
        jobs = {j.id: _job_record(j, p.status[j.id], prev_jobs.get(j.id)) for j in p.plan.jobs}
        doc = _state_doc(p, jobs)

        def save() -> None:
            doc["updated_at"] = _now()
            _atomic_write_json(out / STATE_NAME, doc)

        save()
        failed: list[str] = []
        ran: list[str] = []
        blocked: set[str] = set()
        total = len(p.plan.jobs)
        for i, job in enumerate(p.plan.jobs):
            rec = jobs[job.id]
            if rec["status"] == "done":
                ev.job_started(job, i, total, note="done already")
                ev.job_finished(job, "done", "skipped: already done")
                continue
            if isinstance(job, EvalJob) and job.variant_dir is not None and str(job.variant_dir) in blocked:
                rec.update(status="blocked", error="its variant failed to build")
                save()
                ev.job_started(job, i, total)
                ev.job_finished(job, "blocked", "its variant failed to build")
                continue
            rec.update(status="running", started_at=_now())
            rec.pop("error", None)
            save()
            ev.job_started(job, i, total)
            model = p.resolved[job.model]
            t0 = time.time()
            try:
                if isinstance(job, BuildJob):
                    vdir = out / job.out_dir
                    vdir.parent.mkdir(parents=True, exist_ok=True)
                    _clean_stale_builds(vdir.parent)
                    if executor is not None:
                        m = executor.build(build_variant, job.spec, model.ref, vdir, trust_remote_code=model.trust_remote_code,
                                           allow_pickle=model.allow_pickle)
                    else:
                        with torch_threads(spec.compress_threads):
                            m = build_variant(job.spec, model.ref, vdir, trust_remote_code=model.trust_remote_code,
                                              allow_pickle=model.allow_pickle, log=ev.log)
                    rec["fingerprint"] = m.fingerprint
                    detail = build_detail(m)
                else:
                    entry = next(mm for mm in spec.models if mm.dir_name == job.model)
                    cfg = EvalConfig(
                        model=model.ref if job.variant_dir is None else str(out / job.variant_dir),
                        perspectives=list(spec.dimensions), out_dir=out / job.out_dir, data_dir=loaded.data_dir,
                        profile=spec.profile, seed=spec.seed, gen_seed=spec.gen_seed + (1 if job.noise_floor else 0),
                        limit=spec.limit, options=dict(spec.options),
                        protocol=spec.protocol,
                        on_bad_row=spec.on_bad_row, device=spec.device, batch_size=spec.batch_size,
                        backend=spec.backend, tensor_parallel_size=spec.tensor_parallel_size,
                        chat_template=entry.chat_template, trust_remote_code=model.trust_remote_code,
                    )
                    # the dense model was resolved (and fingerprinted) by prepare(); do not hash it again
                    plan = build_plan(cfg, resolved=model) if job.variant_dir is None else build_plan(cfg)
                    res = (executor.run_eval(cfg, plan=plan) if executor is not None
                           else run_eval(cfg, plan=plan, on_start=ev.eval_progress(job)))
                    rec["fingerprint"] = res["model"]["fingerprint"]
                    tps = res.get("efficiency", {}).get("tokens_per_s")
                    n = len(res["dimensions"])
                    detail = f"{n} dimension{'s' if n != 1 else ''}" + (f", {tps:g} tok/s" if tps else "")
            except ComptrustError as e:
                rec.update(status="failed", error=str(e), finished_at=_now(), seconds=round(time.time() - t0, 1))
                save()
                failed.append(job.id)
                if isinstance(job, BuildJob):
                    blocked.add(str(job.out_dir))
                ev.job_finished(job, "failed", str(e))
                continue
            except BaseException as e:  # a bug or Ctrl-C: record it, keep the traceback
                rec.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                           error=f"{type(e).__name__}: {str(e)[:300]}", finished_at=_now())
                save()
                raise
            rec.update(status="done", finished_at=_now(), seconds=round(time.time() - t0, 1))
            ran.append(job.id)
            save()
            ev.job_finished(job, "done", detail)

        report_files, comparison = _report(p, doc, ran, ev, report_options)
        save()
    return SweepResult(out, doc, report_files, comparison, failed, ran)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to n for the block (None: unchanged). llm-compressor's GPTQ and
    SparseGPT column loops are thousands of tiny tensor ops per layer; on a small or busy CPU their
    per-op thread hand-offs cost more than the second thread gives (docs/sweep.md, "Build speed")."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def build_detail(m) -> str:
    """A built variant in one line: what it is, its calibration and what was measured."""
    if m.kind == "quantization":
        g = (m.group_size.effective if m.group_size else None)
        what = f"{m.bits_per_weight:.2f} bits/weight" + (f", group {g}" if g else "")
    else:
        what = f"sparsity {m.measured.get('sparsity_overall', 0):.3f}" + (f" ({m.structure})" if m.structure and m.structure != "unstructured" else "")
    cal = m.calibration or {}
    if cal:
        what += f", calibration {cal.get('n_samples')} x {cal.get('seq_len')} tokens ({cal.get('source')})"
    return f"{m.name}: {what}, compressed in {m.wall_time_s:.0f} s"


def _report(p: Prepared, doc: dict, ran: list[str], ev: SweepEvents, options) -> tuple[Any, Any]:
    from .report import generate_report
    from .results_schema import ComparisonResults

    out = p.out_dir
    done = [j for j in p.plan.evals if doc["jobs"][j.id]["status"] == "done"]
    run_dirs = [str(out / j.out_dir) for j in done if not j.noise_floor]
    nf_dirs = [str(out / j.out_dir) for j in done if j.noise_floor
               and any(k.model == j.model and k.target == "dense" for k in done)]
    if not run_dirs:
        return None, None
    rep = out / "report"
    prev = doc.get("report") or {}
    if not ran and prev.get("runs") == run_dirs + nf_dirs and (rep / "report.html").is_file() and (rep / "results.json").is_file():
        try:
            return None, ComparisonResults.model_validate_json((rep / "results.json").read_text(encoding="utf-8"))
        except ValueError:
            pass  # unreadable: write it again
    ev.report_started()
    t0 = time.time()
    files = generate_report(run_dirs, rep, noise_floor=nf_dirs, options=options)
    doc["report"] = {"runs": run_dirs + nf_dirs, "written_at": _now(), "seconds": round(time.time() - t0, 1),
                     "html": str(files.html)}
    return files, files.comparison


def summary_table(cmp, dimensions: list[str]) -> tuple[list[str], list[list[str]]]:
    """Header + rows for a terminal table: score per dimension, with the delta vs the baseline, its
    evidence mark (the report's: ≈ within noise, ? too few samples to tell, † no CI, ⊘ refusal-
    driven, none = outside noise) and the refusal/unparseable rate."""
    from .report.compare import delta_mark, fmt_refusal

    header = ["model", *dimensions, "overall"]
    rows = []
    for r in cmp.rows:
        cells = [r.label]
        for d in [*dimensions, None]:
            c = r.cells.get(d) if d else r.overall_delta
            score = (r.overall_score if d is None else (c.score if c else None))
            if score is None:
                cells.append("n/a")
                continue
            txt = f"{score:.1f}"
            if r.role != "baseline" and c is not None and c.delta is not None:
                txt += f" ({c.delta:+.1f}{delta_mark(c)})"
            elif d is not None and c is not None and c.refusal_driven:
                txt += " ⊘"
            if d is not None and c is not None:
                txt += f" {fmt_refusal(c.refusal_rate)}"
            cells.append(txt)
        rows.append(cells)
    return header, rows
