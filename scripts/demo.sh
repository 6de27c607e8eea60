#!/usr/bin/env bash
# The whole product end to end on a fresh machine, on embedded defaults:
# local Tansu broker + Redis, a small GANomaly trained on Fashion-MNIST on the spot
# (leave-one-out: T-shirts are the anomaly), a worker, a labelled stream, alerts as they
# arrive, and a replay report. About 3-5 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
RUN=${GANOMALY_DEMO_DIR:-runs/demo}
mkdir -p "$RUN"
STATE="$RUN/stack"

echo "== 1. local stack (Tansu broker + Redis)"
ganomaly stack up --state-dir "$STATE" --broker-port "${GANOMALY_DEMO_BROKER_PORT:-9092}" > "$RUN/env.sh"
source "$RUN/env.sh"
cleanup() { [ -n "${WORKER_PID:-}" ] && kill "$WORKER_PID" 2>/dev/null || true; ganomaly stack down --state-dir "$STATE" >/dev/null || true; }
trap cleanup EXIT

echo "== 2. model (trained on the spot unless $RUN/model exists)"
if [ ! -f "$RUN/model/manifest.json" ]; then
  ganomaly train --dataset fashion-mnist --protocol leave-one-out --class 0 --epochs 2 --max-train-images 3000 \
    --max-val-images 2000 --seed 0 --out "$RUN/model" --log-level warning
fi
ganomaly evaluate --model "$RUN/model" --protocol leave-one-out --class 0 --report "$RUN/evaluate.json" --scores "$RUN/scores.csv"
ganomaly models add --artifact "$RUN/model" --model-store "$RUN/store" --redis-url "$GANOMALY_REDIS_URL" --redis-prefix demo >/dev/null
VERSION=$(python -c "import json;print(json.load(open('$RUN/model/manifest.json'))['version'])")
ganomaly models promote "$VERSION" --model-store "$RUN/store" --redis-url "$GANOMALY_REDIS_URL" --redis-prefix demo

echo "== 3. worker (logs: $RUN/worker.log, metrics: http://127.0.0.1:9100/metrics)"
GANOMALY_MODEL_STORE="$RUN/store" GANOMALY_REDIS_PREFIX=demo GANOMALY_GROUP_ID=demo-workers \
  GANOMALY_SESSION_TIMEOUT_MS=6000 GANOMALY_HEARTBEAT_INTERVAL_MS=1000 \
  ganomaly worker > "$RUN/worker.log" 2>&1 &
WORKER_PID=$!
# wait until it has its partitions (/readyz), so that the latencies below are the worker's, not the group join's
python - <<'PY'
import time, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        urllib.request.urlopen("http://127.0.0.1:9100/readyz", timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not become ready within 90 s: see the worker log")
        time.sleep(0.5)
PY

echo "== 4. a labelled camera stream: 2000 test images at 300/s"
ganomaly produce --from fashion-mnist --split t10k --protocol leave-one-out --class 0 --count 2000 --rate 300 \
  --source demo-cam --no-progress

echo "== 5. alerts as they arrive (first lines of the Redis alerts stream)"
ganomaly alerts --redis-prefix demo --follow --seconds 5 --count 10 | head -n 15 || true
for _ in $(seq 60); do
  n=$(python -c "import redis;print(len(list(redis.Redis.from_url('$GANOMALY_REDIS_URL').scan_iter('demo:result:images:*',count=1000))))")
  [ "$n" -ge 2000 ] && break; sleep 1
done
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=

echo "== 6. replay: audit what the worker decided, and rescore the same stretch"
ganomaly replay --mode audit --topic images --report "$RUN/replay-audit.json"
ganomaly replay --mode rescore --topic images --model "$RUN/model" --report "$RUN/replay-rescore.json"
echo "reports and plots in $RUN/"
