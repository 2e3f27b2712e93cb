"""Ray executor scenario, run by tests/test_ray_executor.py inside a loopback-only network
namespace (`unshare -n`): local vs Ray runs of the same config, with one Ray worker SIGKILLed
mid-job. Writes a JSON summary for the test to check.

    python tests/ray_scenario.py MODEL_DIR WORK_DIR SUMMARY_JSON
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

PERSPECTIVES = ["fairness", "machine_ethics"]
SWEEP_SPEC = """\
models:
  - ref: {model}
    name: tiny
variants:
  - {{name: rtn4, method: rtn, bits: 4}}
dimensions: [fairness]
profile: smoke
limit: 2
batch_size: 4
"""


def _count(db: Path, perspective: str | None = None) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            if perspective:
                return con.execute("SELECT COUNT(*) FROM responses WHERE perspective=?", (perspective,)).fetchone()[0]
            return con.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def _workers(perspective: str) -> list[int]:
    """PIDs of Ray workers whose process title names the generation task of `perspective`."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            title = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if title.startswith("ray::") and perspective in title:
            pids.append(int(d.name))
    return pids


def main() -> int:
    model, work, summary_path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    from comptrust.distributed import RayExecutor
    from comptrust.runner import EvalConfig, run_eval

    def cfg(out: Path) -> EvalConfig:
        return EvalConfig(model=str(model), perspectives=PERSPECTIVES, out_dir=out, profile="smoke", limit=8,
                          batch_size=1, device="cpu")

    summary: dict = {}
    t0 = time.time()
    run_eval(cfg(work / "local"))
    summary["local_s"] = round(time.time() - t0, 1)

    ray_dir = work / "ray"
    db = ray_dir / "store.sqlite"
    victim = PERSPECTIVES[0]
    killed: dict = {}

    def assassin() -> None:
        deadline = time.time() + 120
        while time.time() < deadline:
            rows = _count(db, victim)
            pids = _workers(victim)
            if rows >= 2 and pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.update(pid=pids[0], rows_before=rows, at=round(time.time() - t1, 1))
                return
            time.sleep(0.02)

    t1 = time.time()
    with RayExecutor(num_cpus=2, max_retries=2) as ex:
        summary["ray_init_s"] = round(time.time() - t1, 1)
        summary["listening"] = subprocess.run(["ss", "-Htlnp"], capture_output=True, text=True).stdout
        summary["connections"] = subprocess.run(["ss", "-Htnp"], capture_output=True, text=True).stdout
        th = threading.Thread(target=assassin, daemon=True)
        th.start()
        jobs = ex.generate([cfg(ray_dir)])
        th.join(timeout=1)
        from comptrust.distributed import merge_run

        res = merge_run(cfg(ray_dir), jobs[str(ray_dir)])
        summary["ray_s"] = round(time.time() - t1, 1)

        # a whole sweep through the executor: the variant built on a worker, evals generated there
        from comptrust.report import CompareOptions
        from comptrust.spec import parse_spec
        from comptrust.sweep import prepare, run_sweep

        t2 = time.time()
        text = SWEEP_SPEC.format(model=model)
        (work / "spec.yaml").write_text(text)
        loaded = parse_spec(text, str(work / "spec.yaml"), work)
        sw = run_sweep(prepare(loaded, work / "sweep"), report_options=CompareOptions(n_boot=20), executor=ex)
        summary["sweep"] = {"failed": sw.failed, "ran": sw.ran, "seconds": round(time.time() - t2, 1),
                            "report_md": (work / "sweep" / "report" / "report.md").read_text()}
    summary["killed"] = killed
    summary["jobs"] = jobs[str(ray_dir)]
    summary["backend"] = res["backend"]
    summary["tokens_per_s"] = res["efficiency"].get("tokens_per_s")
    summary["interfaces"] = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True).stdout
    summary_path.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
