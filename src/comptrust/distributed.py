"""Ray executor: spread evaluation (and variant builds) over a Ray cluster.

Unit of work: one dimension of one model (a *generation job*). Each job runs `build_plan` for
that one perspective and generates what the run directory's store lacks, committing batch by
batch into the same SQLite store the local executor uses (WAL + busy timeout: the jobs of one
model write one store concurrently). A job is idempotent — keys are content hashes and inserts
are INSERT OR IGNORE — so a worker killed mid-job is simply run again by Ray (max_retries) and
generates only what is still missing: nothing lost, nothing duplicated.

Once every generation job of a model is done, the merge runs the runner's own scoring and
aggregation locally (`run_eval`, which finds every answer in the store and loads no weights), so
results.json, samples/ and the statistics are exactly those of a local run. The merge then
records which backend generated the answers and its throughput, measured in the jobs.

Resources: a job asks for GPUs when the cluster has them (tensor_parallel_size for vLLM, else
one) and one CPU otherwise. comptrust (and the backend's extras) must be installed on every node,
and the run directories must be on storage all nodes share.

Networking: a local cluster is started with its node address pinned to 127.0.0.1. Ray 2.60 still
listens on every interface and may talk over the machine's external address; tests therefore
run Ray inside a network namespace that has only a loopback interface (tests/test_ray_executor.py).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from .errors import BackendError, ComptrustError, ConfigError


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'comptrust[ray]'") from None
    return ray


# -- jobs (run inside Ray workers; plain functions so they can be tested without Ray) -------------


def generation_job(cfg_doc: dict[str, Any]) -> dict[str, Any]:
    """Generate everything one (model, perspectives) EvalConfig lacks in its run dir's store."""
    from .runner import build_plan, generate_missing
    from .store import Store

    cfg = config_from_doc(cfg_doc)
    t0 = time.perf_counter()
    plan = build_plan(cfg)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with Store(out / "store.sqlite") as store:
        before = store.count(plan.resolved.fingerprint)
        eff = generate_missing(cfg, plan, store)
        after = store.count(plan.resolved.fingerprint)
    return {"pid": os.getpid(), "host": socket.gethostname(), "perspectives": list(cfg.perspectives),
            "generated": after - before, "seconds": round(time.perf_counter() - t0, 2), "efficiency": eff}


def build_job(build: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a variant build (e.g. comptrust.compress.build_variant) on a worker."""
    return build(*args, **kwargs)


def config_to_doc(cfg) -> dict[str, Any]:
    """An EvalConfig as plain JSON data for a Ray task (paths as strings)."""
    return cfg.model_dump(mode="json")


def config_from_doc(d: dict[str, Any]):
    """The EvalConfig again, validated as any new one; its path fields become Paths again
    (data_dir "hub" too: make_data_source recognises the hub by the path's text)."""
    from .runner import EvalConfig

    return EvalConfig(**d)


def split_by_dimension(cfg) -> list:
    """One EvalConfig per perspective, all writing the same run directory."""
    return [cfg.replace(perspectives=[p]) for p in cfg.perspectives]


def merge_efficiency(job_results: list[dict[str, Any]]) -> dict[str, Any]:
    """Backend + throughput over the jobs that generated something (tokens / generation seconds)."""
    effs = [r["efficiency"] for r in job_results if r.get("efficiency")]
    if not effs:
        return {}
    out: dict[str, Any] = {"backend": effs[0]["backend"]}
    loads = [e["peak_load_mem_bytes"] for e in effs if e.get("peak_load_mem_bytes")]
    if loads:
        out["peak_load_mem_bytes"] = max(loads)
    tps = [e["tokens_per_s"] for e in effs if e.get("tokens_per_s")]
    if tps:
        out["tokens_per_s"] = round(sum(tps) / len(tps), 2)  # per-worker throughput
    return out


def merge_run(cfg, job_results: list[dict[str, Any]], plan=None) -> dict[str, Any]:
    """Score + aggregate locally once every generation job of cfg is done; record which backend
    produced the answers and its measured throughput in results.json."""
    from .results_doc import update_results
    from .runner import run_eval

    res = run_eval(cfg, plan=plan)  # every answer is in the store: no model is loaded here
    eff = merge_efficiency(job_results)
    if eff:
        def add_throughput(doc: dict) -> dict:
            doc["backend"] = eff["backend"]
            doc.setdefault("efficiency", {})
            for k in ("tokens_per_s", "peak_load_mem_bytes"):
                if eff.get(k) is not None:
                    doc["efficiency"][k] = eff[k]
            return doc

        # under the run directory's lock, like every results.json write (another eval may merge)
        res = update_results(Path(cfg.out_dir), add_throughput)
    return res


# -- the executor ---------------------------------------------------------------------------------


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast, in one line, when nothing answers at a Ray address (ray.init would hang)."""
    if address in ("auto", "local"):
        return
    text = address if "://" in address else f"ray://{address}"
    parts = urlsplit(text)
    host, port = parts.hostname, parts.port
    if not host or not port:
        raise ConfigError(f"Ray address {address!r} is not HOST:PORT; pass e.g. --address 10.0.0.5:6379 or omit it for a local cluster")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise ConfigError(
            f"no Ray cluster answers at {address} ({type(e).__name__}); start one with `ray start --head` "
            "there, fix --address, or omit it to run a local cluster") from None


@dataclass
class RayExecutor:
    """address: an existing cluster (HOST:PORT, ray://HOST:PORT or auto); None starts a local one
    with num_cpus CPUs on 127.0.0.1. max_retries: how often Ray re-runs a job whose worker died."""

    address: str | None = None
    num_cpus: int | None = None
    max_retries: int = 3
    _started: bool = False

    def __enter__(self) -> "RayExecutor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    def start(self) -> None:
        ray = _ray()
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if self.address:
            check_address(self.address)
            kwargs["address"] = self.address
        else:
            kwargs.update(num_cpus=self.num_cpus, _node_ip_address="127.0.0.1")
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            raise ConfigError(f"could not join the Ray cluster at {self.address or 'a new local cluster'} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}); check --address") from None
        self._started = True

    def shutdown(self) -> None:
        if self._started:
            _ray().shutdown()
            self._started = False

    def _resources(self, cfg) -> dict[str, Any]:
        ray = _ray()
        gpus = ray.cluster_resources().get("GPU", 0)
        if gpus and cfg.backend != "openai" and cfg.device != "cpu":
            return {"num_gpus": max(1, cfg.tensor_parallel_size if cfg.backend == "vllm" else 1), "num_cpus": 1}
        return {"num_cpus": 1}

    def _get(self, refs: list, labels: list[str]) -> list[Any]:
        ray = _ray()
        out = []
        for ref, label in zip(refs, labels):
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayTaskError as e:
                cause = getattr(e, "cause", None)
                if isinstance(cause, ComptrustError):
                    raise cause from None
                raise
            except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as e:
                raise BackendError(
                    f"job {label} lost its Ray worker {self.max_retries + 1} times ({type(e).__name__}); "
                    "check the nodes' memory and logs, then re-run (finished answers are kept)") from None
        return out

    def generate(self, cfgs: list) -> dict[str, list[dict[str, Any]]]:
        """Run one generation job per (model, dimension); returns job results per run dir."""
        ray = _ray()
        self.start()
        task = ray.remote(generation_job)
        refs, labels, dirs = [], [], []
        for cfg in cfgs:
            for part in split_by_dimension(cfg):
                opts = {**self._resources(part), "max_retries": self.max_retries, "retry_exceptions": False,
                        "name": f"generate:{Path(part.out_dir).name}:{part.perspectives[0]}"}
                refs.append(task.options(**opts).remote(config_to_doc(part)))
                labels.append(f"{part.out_dir}:{part.perspectives[0]}")
                dirs.append(str(part.out_dir))
        results: dict[str, list[dict[str, Any]]] = {str(c.out_dir): [] for c in cfgs}
        for d, r in zip(dirs, self._get(refs, labels)):
            results[d].append(r)
        return results

    def run_eval(self, cfg, plan=None) -> dict[str, Any]:
        """One model: its dimensions generated in parallel on the cluster, merged here (what
        `comptrust sweep --executor ray` does per eval job)."""
        jobs = self.generate([cfg])
        return merge_run(cfg, jobs[str(cfg.out_dir)], plan=plan)

    def build(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One variant build on a worker (a GPU one when the cluster has GPUs)."""
        return self.run_builds([(fn, args, kwargs)])[0]

    def run_evals(self, cfgs: list) -> list[dict[str, Any]]:
        """Generate on the cluster, then score + aggregate each run locally."""
        jobs = self.generate(cfgs)
        return [merge_run(cfg, jobs[str(cfg.out_dir)]) for cfg in cfgs]

    def run_builds(self, builds: list[tuple[Callable[..., Any], tuple, dict]], gpu: bool | None = None) -> list[Any]:
        """Run variant builds in parallel; each is (function, args, kwargs). Failures come back as
        the exception the build raised (a ComptrustError stays one)."""
        ray = _ray()
        self.start()
        if gpu is None:
            gpu = bool(ray.cluster_resources().get("GPU", 0))
        task = ray.remote(build_job)
        opts = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        refs = [task.options(**opts, max_retries=self.max_retries, retry_exceptions=False).remote(fn, *a, **kw)
                for fn, a, kw in builds]
        return self._get(refs, [getattr(fn, "__name__", "build") for fn, _, _ in builds])
