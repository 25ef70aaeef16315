#!/usr/bin/env bash
# S2MAE against VideoMAE on one CUDA GPU: bf16 weights, SDPA restricted to the flash kernel, eager and
# torch.compile, ViT-B and ViT-L, pretraining (forward + backward) and encoder inference. Prints per run the samples/s,
# the ratio S2MAE / VideoMAE, GFLOP/s, the share of the GPU's measured bf16 matmul peak, the model FLOPs utilisation
# against the GPU's datasheet dense bf16 peak (known GPUs, or PEAK_TFLOPS=...), km²/s of 10 m imagery, peak memory.
#
# First the correctness checks on the GPU (gpu_checks.py: SDPA kernels vs eager, bf16 autocast, fullgraph compile,
# torch.export); last the attention kernels alone at the models' shapes (bench_attention.py).
#
# Budget: under 8 minutes. The checks have CHECKS_LIMIT_S (75 s: inductor compiles a model there); each of the four benchmark runs (size x task) has
# its own limit (RUN_LIMIT_S, 90 s by default; compile time is spent in the untimed warm-up and counts against it), so
# a slow run loses only its own row; the attention run has ATTENTION_LIMIT_S (35 s).
#
# Usage (from anywhere; run on the GPU machine):
#   bash benchmarks/gpu.sh                      # results in benchmarks/results/gpu-<date>/
#   OUT_DIR=/tmp/gpu BATCH_SIZE=128 bash benchmarks/gpu.sh
#   bash benchmarks/gpu.sh --dry-run            # print the commands only (works without a GPU)
#   PYTHON=/path/to/python bash benchmarks/gpu.sh   # another interpreter than python3
# On this workplace's lent GPU machine use benchmarks/device_gpu_run.sh (it carries the Transformers wheel).
set -euo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="${PWD}${PYTHONPATH:+:${PYTHONPATH}}"
PYTHON="${PYTHON:-python3}"

OUT_DIR="${OUT_DIR:-benchmarks/results/gpu-$(date +%Y%m%d-%H%M%S)}"
BATCH_SIZE="${BATCH_SIZE:-64}"
STEPS="${STEPS:-10}"
WARMUP="${WARMUP:-3}"
ROUNDS="${ROUNDS:-3}"
CHECKS_LIMIT_S="${CHECKS_LIMIT_S:-75}"
RUN_LIMIT_S="${RUN_LIMIT_S:-90}"
ATTENTION_LIMIT_S="${ATTENTION_LIMIT_S:-35}"
SIZES="${SIZES:-vit-b vit-l}"
MODES="${MODES:-eager compiled}"
PEAK_ARGS=()
if [[ -n "${PEAK_TFLOPS:-}" ]]; then
    PEAK_ARGS=(--peak-tflops "${PEAK_TFLOPS}")
fi

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
fi

if [[ "${DRY_RUN}" == 0 ]]; then
    if ! "${PYTHON}" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu.sh: no CUDA device visible to torch (torch $("${PYTHON}" -c 'import torch; print(torch.__version__)')):" \
            "run it on a GPU machine with a CUDA build of torch, or see benchmarks/README.md for the CPU benchmark." >&2
        exit 2
    fi
    mkdir -p "${OUT_DIR}"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "${OUT_DIR}/nvidia-smi.csv" || true
fi

start=$(date +%s)
status=0

# run_limited NAME LIMIT_S COMMAND...: print it (dry run), or run it under a time limit, logging to NAME.log; a
# failure or a timeout marks the whole run failed but lets the next runs go on
run_limited() {
    local name="$1" limit="$2"
    shift 2
    if [[ "${DRY_RUN}" == 1 ]]; then
        echo "timeout ${limit} $*"
        return
    fi
    echo "=== ${name} ($(($(date +%s) - start)) s elapsed)"
    if ! timeout "${limit}" "$@" 2>&1 | tee "${OUT_DIR}/${name}.log"; then
        echo "gpu.sh: ${name} failed or ran past ${limit} s (see ${OUT_DIR}/${name}.log)" >&2
        status=1
    fi
}

run_limited checks "${CHECKS_LIMIT_S}" "${PYTHON}" benchmarks/gpu_checks.py --device cuda
for size in ${SIZES}; do
    for task in pretraining inference; do
        name="${size}-${task}"
        run_limited "${name}" "${RUN_LIMIT_S}" "${PYTHON}" -m benchmarks.bench_model \
            --device cuda --dtype bfloat16 --attn-implementation sdpa --sdpa-backend flash \
            --sizes "${size}" --tasks "${task}" --modes ${MODES} \
            --batch-size "${BATCH_SIZE}" --steps "${STEPS}" --warmup "${WARMUP}" --rounds "${ROUNDS}" \
            --json "${OUT_DIR}/${name}.json" "${PEAK_ARGS[@]}"
    done
done
run_limited attention "${ATTENTION_LIMIT_S}" "${PYTHON}" benchmarks/bench_attention.py --device cuda --dtype bfloat16 \
    --sizes ${SIZES} --batch-size "${BATCH_SIZE}"

if [[ "${DRY_RUN}" == 0 ]]; then
    echo "=== done in $(($(date +%s) - start)) s; tables:"
    grep -h -A3 "^| size" "${OUT_DIR}"/*.log | grep -v "^--$" || true
    echo "results: ${OUT_DIR}"
fi
exit "${status}"
