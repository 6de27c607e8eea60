#!/usr/bin/env bash
# The whole product end to end on a fresh machine, on embedded defaults: an inspection line.
# Sneakers are the product (a one-class GANomaly trained on the spot on Fashion-MNIST sneakers);
# a camera stream carries mostly sneakers and a few percent of other items, which the worker
# should flag. A local Tansu broker and a private Redis (both gone after the demo, so the
# machine's own Redis is left as found), a worker, alerts as they arrive, a replay report, and
# a plain-language summary. About 3-5 minutes on 2 CPU cores. Then the operator's console opens on
# the same stack, with a worker, until Ctrl-C (or, with --stop-at-end, the demo stops there).
set -euo pipefail
USAGE="usage: bash scripts/demo.sh [--stop-at-end]  (or GANOMALY_DEMO_STOP_AT_END=1)"
STOP_AT_END=${GANOMALY_DEMO_STOP_AT_END:-0}
for arg in "$@"; do
  case "$arg" in
    --stop-at-end) STOP_AT_END=1 ;;
    -h|--help) echo "$USAGE"; exit 0 ;;
    *) echo "error: unknown argument $arg; $USAGE" >&2; exit 2 ;;
  esac
done
case "$STOP_AT_END" in
  0|1) ;;
  *) echo "error: GANOMALY_DEMO_STOP_AT_END=$STOP_AT_END: use 1 (stop at the end) or 0" >&2; exit 2 ;;
esac
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
CONSOLE_PORT=${GANOMALY_DEMO_CONSOLE_PORT:-8080}
mkdir -p "$RUN"
rm -f "$RUN"/*.json "$RUN"/*.csv "$RUN"/*.png "$RUN"/*.log  # a rerun's summary lists only its own files
rm -rf "$RUN/confirmed"  # the trainer's confirmed set belongs to this run's topic
STATE="$RUN/stack"

# SIGTERM, then up to 20 s to finish (the worker drains and commits), then SIGKILL
stop() {
  local pid=$1
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
# the processes first, so that none of them meets a broker or Redis going away under it; a second
# Ctrl-C while this runs is ignored, or it would leave the stack running
cleanup() {
  trap '' INT TERM
  [ -z "${STOPPING:-}" ] || echo "== stopping the demo's processes and stack (a few seconds)" >&2
  stop "${PRODUCE_PID:-}"; stop "${CONSOLE_PID:-}"; stop "${TRAINER_PID:-}"; stop "${WORKER_PID:-}"
  ganomaly stack down --state-dir "$STATE" >/dev/null || true
}
trap cleanup EXIT
trap 'STOPPING=1; exit 130' INT
trap 'STOPPING=1; exit 143' TERM

# until URL answers 200 (and PID, when given, still runs): `wait_http URL SECONDS MESSAGE [PID]`
wait_http() {
  python - "$@" <<'PY'
import sys, time, urllib.request
from pathlib import Path
url, limit, message = sys.argv[1], float(sys.argv[2]), sys.argv[3]
stat = Path(f"/proc/{sys.argv[4]}/stat") if len(sys.argv) > 4 else None
deadline = time.monotonic() + limit
while True:
    try:
        urllib.request.urlopen(url, timeout=2)
        break
    except OSError:
        gone = stat is not None and (not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")
        if gone or time.monotonic() > deadline:
            raise SystemExit(message)
        time.sleep(0.5)
PY
}

echo "== 1. local stack (Tansu broker + a private Redis)"
ganomaly stack down --state-dir "$STATE" >/dev/null  # a stack an interrupted run left: its topics would mix into this run's
ganomaly stack up --state-dir "$STATE" --broker-port "${GANOMALY_DEMO_BROKER_PORT:-9092}" > "$RUN/env.sh"
source "$RUN/env.sh"
read -r BROKER_PID REDIS_PID < <(python -c "import json, sys; s = json.load(open(sys.argv[1])); print(s['broker_pid'], s['redis_pid'])" "$STATE/state.json")

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
start_worker() {  # the store and the Redis prefix the model was added under (the console reads the same)
  GANOMALY_MODEL_STORE="$RUN/store" GANOMALY_REDIS_PREFIX=demo GANOMALY_GROUP_ID=demo-workers GANOMALY_METRICS_PORT="$METRICS_PORT" \
    GANOMALY_SESSION_TIMEOUT_MS=6000 GANOMALY_HEARTBEAT_INTERVAL_MS=1000 \
    ganomaly worker >> "$RUN/worker.log" 2>&1 &
  WORKER_PID=$!
  # until it has its partitions (/readyz), so that the latencies below are the worker's, not the group join's
  wait_http "http://127.0.0.1:$METRICS_PORT/readyz" 90 "the worker did not become ready within 90 s: see the worker log" "$WORKER_PID"
}
start_worker

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

# The console on the same stack, with a worker again (the fleet page shows it, and images sent now
# are scored); the console makes a one-time token (--demo-token) and prints the URL that logs in.
GANOMALY_MODEL_STORE="$RUN/store" GANOMALY_REDIS_PREFIX=demo GANOMALY_GROUP_ID=demo-workers \
  ganomaly console --demo-token --host 127.0.0.1 --port "$CONSOLE_PORT" > "$RUN/console.log" 2>&1 &
CONSOLE_PID=$!
# The trainer as a deployment runs it, every hour; the console's "Retrain now" makes it run at once on what
# the operator confirmed (20 new confirmed normals at least), so the loop closes in the browser.
GANOMALY_MODEL_STORE="$RUN/store" GANOMALY_REDIS_PREFIX=demo \
  ganomaly trainer --every 3600 --data-dir "$RUN/confirmed" --min-new-normals 20 --epochs 2 --log-level warning > "$RUN/trainer.log" 2>&1 &
TRAINER_PID=$!
start_worker
wait_http "http://127.0.0.1:$CONSOLE_PORT/healthz" 120 "the console did not answer within 120 s: see $RUN/console.log" "$CONSOLE_PID"
URL=$(grep -m1 '^console: http' "$RUN/console.log" || true)
[ -n "$URL" ] || { echo "error: the console printed no URL: see $RUN/console.log" >&2; exit 1; }
if [ "$STOP_AT_END" = 1 ]; then
  echo "== 7. the operator's console answered (--stop-at-end: stopping it, the worker and the stack)"
  echo "$URL"
  exit 0
fi
echo "== 7. the operator's console: open this URL; Ctrl-C stops the demo"
echo "$URL"
# The loop needs something to learn: a product the model has never seen, which it flags and operators
# confirm as normal (the sneakers alone leave one or two false alarms, too few to refit on).
echo "== 8. a second product starts on the line: 300 bags at 20/s from camera demo-cam-2; the model knows only sneakers and flags them"
echo "   In the console: Source demo-cam-2, Filter, pick all shown, Normal (false alarm); then Models > Retrain now."
echo "   The trainer refits on your verdicts (a minute or two), the gate compares it with the serving model, and if it is not"
echo "   worse the workers switch to it: the Models page shows it serving, and bags that arrive later are no longer flagged."
echo "   (logs: $RUN/console.log, $RUN/worker.log, $RUN/trainer.log; the stack, worker, trainer and console run until Ctrl-C)"
ganomaly produce --from fashion-mnist --split t10k --protocol one-class --class 8 --count 300 --anomaly-share 0 --rate 20 \
  --source demo-cam-2 --no-progress > "$RUN/produce-bags.log" 2>&1 &
PRODUCE_PID=$!
# Ctrl-C only sets a flag: a terminal's Ctrl-C also reaches the worker and console, which then stop on
# their own, and that must not read as a failure
STOPPING=
trap 'STOPPING=1' INT TERM
stopped() {  # `stopped PID`: the process is gone and no Ctrl-C explains it (one second's grace for the signal to land)
  kill -0 "$1" 2>/dev/null && return 1
  sleep 1 || true
  [ -z "$STOPPING" ]
}
while [ -z "$STOPPING" ]; do
  sleep 1 || true
  [ -z "$STOPPING" ] || break
  ! stopped "$CONSOLE_PID" || { echo "error: the console stopped: see $RUN/console.log" >&2; exit 1; }
  ! stopped "$WORKER_PID" || { echo "error: the worker stopped: see $RUN/worker.log" >&2; exit 1; }
  ! stopped "$BROKER_PID" || { echo "error: the broker stopped: see $STATE/tansu.log" >&2; exit 1; }
  ! stopped "$REDIS_PID" || { echo "error: the demo's Redis stopped" >&2; exit 1; }
done
exit 0
