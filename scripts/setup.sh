#!/usr/bin/env bash
# Everything a fresh machine needs: the virtualenv with the project and its test extras,
# the Fashion-MNIST data, and a Redis that answers. Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch==2.14.1/torchvision==0.29.1 come from the local mirror (pinned in pyproject.toml).
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

DATA=/usr/share/datasets/fashion-mnist
if [ ! -f "$DATA/train-images-idx3-ubyte.gz" ] && [ ! -f "$DATA/train-images-idx3-ubyte" ]; then
  echo "setup: installing dataset-fashion-mnist"
  (apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)) >/dev/null
fi

redis_ok() { .venv/bin/python -c "import redis,sys; redis.Redis(socket_connect_timeout=1).ping()" 2>/dev/null; }
if ! redis_ok; then
  if ! command -v redis-server >/dev/null; then
    echo "setup: installing redis-server"
    (apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)) >/dev/null
  fi
  echo "setup: starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/ganomaly-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /tmp/ganomaly-redis --logfile /tmp/ganomaly-redis/redis.log
  for _ in $(seq 50); do redis_ok && break; sleep 0.1; done
  redis_ok || { echo "setup: Redis did not answer on 127.0.0.1:6379" >&2; exit 1; }
fi
# The tests also start private redis-server instances (outage tests).
command -v redis-server >/dev/null || { (apt-get install -y redis-server || (apt-get update && apt-get install -y redis-server)) >/dev/null; }

# A real browser for the console's browser test: Debian's chromium and its matching chromedriver
# (Selenium drives them; nothing is downloaded at run time).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "setup: installing chromium and chromium-driver"
  (apt-get install -y chromium chromium-driver || (apt-get update && apt-get install -y chromium chromium-driver)) >/dev/null
fi

# Prometheus and promtool for the observability test (a real Prometheus scrapes a real worker and
# runs the dashboard's queries and the alert rules). Debian's package is only unpacked into
# .tools/ (both binaries need nothing but libc): no service is installed or started.
PROM=.tools/prometheus/usr/bin
if [ ! -x "$PROM/prometheus" ] || [ ! -x "$PROM/promtool" ]; then
  echo "setup: unpacking prometheus into .tools/"
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download prometheus || { apt-get update && apt-get download prometheus; }; }) >/dev/null 2>&1
  ls "$tmp"/prometheus_*.deb >/dev/null 2>&1 || { echo "setup: apt-get download prometheus failed (is a Debian mirror reachable?)" >&2; exit 1; }
  rm -rf .tools/prometheus && mkdir -p .tools/prometheus
  dpkg-deb -x "$tmp"/prometheus_*.deb .tools/prometheus
  rm -rf "$tmp"
  "$PROM/promtool" --version >/dev/null
fi
echo "setup: ok ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
