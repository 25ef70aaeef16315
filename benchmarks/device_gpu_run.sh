#!/usr/bin/env bash
# gpu.sh on this workplace's lent GPU machine (the `device` tool): that machine has PyTorch with CUDA but an older
# Transformers and nothing can be fetched there, so the Transformers wheel travels in .whl/ (in .gitignore).
#
# Here, once (PyPI is reachable here, not there):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl transformers==5.24.0
# Then one device call:  command "bash benchmarks/device_gpu_run.sh", carry [".whl"], timeout_s 560.
# The results come back as $OUT/gpu-results.tgz (the device returns at most 8 files) and $OUT/summary.txt.
set -uo pipefail

cd "$(dirname "$0")/.."
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device_gpu_run.sh: installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:${PYTHONPATH}}"
fi
export PYTHONUNBUFFERED=1
results="${OUT:-/tmp}/gpu-results"
mkdir -p "${results}"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
OUT_DIR="${results}" bash benchmarks/gpu.sh 2>&1 | tee "${OUT:-/tmp}/summary.txt"
status=${PIPESTATUS[0]}
tar czf "${OUT:-/tmp}/gpu-results.tgz" -C "${results}" . && rm -rf "${results}"
exit "${status}"
