#!/usr/bin/env bash
# The whole product end to end on a fresh machine, on embedded defaults: an inspection line.
# Sneakers are the product (a one-class GANomaly trained on the spot on Fashion-MNIST sneakers);
# a camera stream carries mostly sneakers and a few percent of other items, which the worker
# should flag. A local Tansu broker and a private Redis (both gone after the demo, so the
# machine's own Redis is left as found), a worker, alerts as they arrive, a replay report, and
# a plain-language summary. About 3-5 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
RUN=${GANOMALY_DEMO_DIR:-runs/demo}
# Fashion-MNIST class 7, sneakers, is the product: one-class at 4,000 images x 3 epochs scores test AUROC 0.98
# (README table), and trains in about a minute on 2 CPU cores.
CLASS=7
COUNT=${GANOMALY_DEMO_COUNT:-1000}
SHARE=${GANOMALY_DEMO_ANOMALY_SHARE:-0.04}
METRICS_PORT=${GANOMALY_DEMO_METRICS_PORT:-9100}
mkdir -p "$RUN"
rm -f "$RUN"/*.json "$RUN"/*.csv "$RUN"/*.png "$RUN"/worker.log  # a rerun's summary lists only its own files
STATE="$RUN/stack"

echo "== 1. local stack (Tansu broker + a private Redis)"
ganomaly stack up --state-dir "$STATE" --broker-port "${GANOMALY_DEMO_BROKER_PORT:-9092}" > "$RUN/env.sh"
source "$RUN/env.sh"
cleanup() { [ -n "${WORKER_PID:-}" ] && kill "$WORKER_PID" 2>/dev/null || true; ganomaly stack down --state-dir "$STATE" >/dev/null || true; }
trap cleanup EXIT

echo "== 2. model: sneakers are normal (one-class, trained on the spot unless $RUN/model exists)"
if [ ! -f "$RUN/model/manifest.json" ]; then
  echo "   training 4,000 images x 3 epochs: one to two minutes on 2 idle cores, longer on a busy machine"
  ganomaly train --dataset fashion-mnist --protocol one-class --class "$CLASS" --epochs 3 --max-train-images 4000 \
    --max-val-images 600 --no-evaluate-test --seed 0 --out "$RUN/model" --log-level warning
fi
ganomaly evaluate --model "$RUN/model" --protocol one-class --class "$CLASS" --report "$RUN/evaluate.json" --scores "$RUN/scores.csv" >/dev/null
# into the store and current in one step, through the registry as every promotion goes (the version must load)
ganomaly models add --promote-now --artifact "$RUN/model" --model-store "$RUN/store" --redis-url "$GANOMALY_REDIS_URL" --redis-prefix demo

echo "== 3. worker (logs: $RUN/worker.log, metrics: http://127.0.0.1:$METRICS_PORT/metrics)"
GANOMALY_MODEL_STORE="$RUN/store" GANOMALY_REDIS_PREFIX=demo GANOMALY_GROUP_ID=demo-workers GANOMALY_METRICS_PORT="$METRICS_PORT" \
  GANOMALY_SESSION_TIMEOUT_MS=6000 GANOMALY_HEARTBEAT_INTERVAL_MS=1000 \
  ganomaly worker > "$RUN/worker.log" 2>&1 &
WORKER_PID=$!
# wait until it has its partitions (/readyz), so that the latencies below are the worker's, not the group join's
python - "$METRICS_PORT" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/readyz", timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("the worker did not become ready within 90 s: see the worker log")
        time.sleep(0.5)
PY

echo "== 4. the inspection line's camera: $COUNT test images at 200/s, mostly sneakers, a share of $SHARE other items"
ganomaly produce --from fashion-mnist --split t10k --protocol one-class --class "$CLASS" --count "$COUNT" --anomaly-share "$SHARE" \
  --rate 200 --source demo-cam --no-progress

echo "== 5. alerts as they arrive (first lines of the Redis alerts stream)"
ganomaly alerts --redis-prefix demo --follow --seconds 5 --count 10 | head -n 15 || true
for _ in $(seq 60); do
  n=$(python -c "import redis;print(len(list(redis.Redis.from_url('$GANOMALY_REDIS_URL').scan_iter('demo:result:images:*',count=1000))))")
  [ "$n" -ge "$COUNT" ] && break; sleep 1
done
kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=

echo "== 6. replay: audit what the worker decided, and rescore the same stretch"
ganomaly replay --mode audit --topic images --report "$RUN/replay-audit.json" >/dev/null
ganomaly replay --mode rescore --topic images --model "$RUN/model" --report "$RUN/replay-rescore.json" >/dev/null

ganomaly demo-summary --bootstrap-servers "$GANOMALY_BOOTSTRAP_SERVERS" --source demo-cam --expect "$COUNT" --wait-s 30 \
  --run-dir "$RUN" --out "$RUN/summary.json"
