#!/usr/bin/env bash
# The GPU checks issue 2 asks for, as one script for one device call (the device tool's `run`):
#   1. `ganomaly bench model` on CUDA (baseline / fast / bf16 / fp16, three image sizes)
#   2. the issue's class-0 commands (leave-one-out, 12,000 images x 5 epochs, seed 0) on CUDA
#   3. the Fashion-MNIST table at the original budget (all normal training images, 15 epochs),
#      leave-one-out first, one row per model written as it finishes, until the time budget ends
# Prepare HERE first with `bash benchmarks/gpu_prep.sh`, then call the device tool with
#   carry [".whl", ".data"], timeout_s 480, command `bash benchmarks/gpu_checks.sh`.
# A session has 15 minutes of device time, a machine takes 1-2 of them to start, and a rerun
# needs 4 left to start at all, so the whole script keeps to GPU_CHECKS_BUDGET_S (default 360 s).
# What comes back ($OUT, at most 8 files): gpu-checks.log, bench-model.jsonl,
# loo0-12k5-report.json, loo0-12k5-manifest.json, table-15ep.jsonl.
#
# Off the device (a smoke test of this script on the CPU):
#   OUT=/tmp/gpu-out GPU_CHECKS_DEVICE=cpu GPU_CHECKS_QUICK=1 bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder for the results (the device tool sets it)}"
mkdir -p "$OUT"
DEVICE="${GPU_CHECKS_DEVICE:-cuda}"
BUDGET_S="${GPU_CHECKS_BUDGET_S:-360}"
QUICK="${GPU_CHECKS_QUICK:-0}"
DATA=.data/fashion-mnist
[ -d "$DATA" ] || DATA=/usr/share/datasets/fashion-mnist
START=$(date +%s)
LOG="$OUT/gpu-checks.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
step() { echo "=== $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s: $*"; }

# The device image has torch but not our clients: the wheels from gpu_prep.sh, and the project
# from this checkout (not installed, so its torch pin does not pull another torch: the numbers
# come from the image's torch, which step "environment" and every bench row record). A checkout
# with its own venv (the CPU smoke test) uses that instead.
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site:$PWD"
fi

step "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

if [ "$QUICK" = 1 ]; then
    BENCH=(--shapes 32x1 --batch-sizes 1,16 --seconds 0.05 --train-images 128)
    TRAIN=(--epochs 1 --max-train-images 640 --max-val-images 256)
    TABLE=(--epochs 1 --max-train-images 640 --max-val-images 256 --classes 0,1)
else
    BENCH=(--shapes 32x1,64x3,128x3 --batch-sizes 1,16,64,256 --seconds 0.5 --train-images 2560)
    TRAIN=(--epochs 5 --max-train-images 12000)
    TABLE=(--epochs 15 --max-train-images 0)
fi
VARIANTS=baseline,fast,bf16
[ "${DEVICE%%:*}" = cuda ] && VARIANTS=baseline,fast,bf16,fp16

step "1. bench model on $DEVICE"
timeout 120 "$PY" -m ganomaly.cli.main bench model --device "$DEVICE" --variants "$VARIANTS" "${BENCH[@]}" \
    > "$OUT/bench-model.jsonl" || echo "bench model: exit $?"
cat "$OUT/bench-model.jsonl"

step "2. leave-one-out class 0 on $DEVICE (the issue's commands)"
MODEL=/tmp/loo0-12k5
rm -rf "$MODEL"
timeout 150 "$PY" -m ganomaly.cli.main train --dataset fashion-mnist --data-dir "$DATA" --protocol leave-one-out --class 0 \
    "${TRAIN[@]}" --seed 0 --device "$DEVICE" --no-evaluate-test --out "$MODEL" || echo "train: exit $?"
if [ -f "$MODEL/manifest.json" ]; then
    cp "$MODEL/manifest.json" "$OUT/loo0-12k5-manifest.json"
    timeout 60 "$PY" -m ganomaly.cli.main evaluate --model "$MODEL" --dataset fashion-mnist --data-dir "$DATA" --protocol leave-one-out \
        --class 0 --device "$DEVICE" --report "$OUT/loo0-12k5-report.json" --scores /tmp/loo0-scores.csv --plots /tmp/loo0-plots \
        || echo "evaluate: exit $?"
fi

T=$(( $(left) - 10 ))
step "3. the 15-epoch table on $DEVICE, ${T}s left"
if [ "$T" -gt 30 ]; then
    # the table script skips rows already in its output: to carry on from an earlier call, copy the
    # table-15ep.jsonl it returned to .data/ before the next call
    [ -f .data/table-15ep.jsonl ] && cp .data/table-15ep.jsonl "$OUT/table-15ep.jsonl"
    timeout "$T" "$PY" benchmarks/fashion_mnist_table.py --device "$DEVICE" --data-dir "$DATA" "${TABLE[@]}" \
        --out "$OUT/table-15ep.jsonl" || echo "table: stopped (exit $?) at the budget; rows so far are in table-15ep.jsonl"
fi
step "done"
