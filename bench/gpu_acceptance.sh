#!/usr/bin/env bash
# The GPU acceptance run, for a machine with a CUDA GPU (the H100 lent through the device
# tool, or yours), from the repository root:
#
#     bash bench/gpu_acceptance.sh [PHASE...]        (default: check bench train)
#
# Phases, each step under its own time limit (a hang leaves the other steps' results):
#   check     install gpuconv (editable, no dependencies: the machine's python3 already
#             holds CUDA PyTorch, CuPy, Numba-CUDA, pytest, hypothesis, click, matplotlib);
#             the machine; the whole test suite with the GPU backends on the real GPU
#             (goldens, PyTorch CUDA property tables, over-2^31 and rerun checks, Numba off
#             its simulator); compute-sanitizer memcheck and racecheck over the slides'
#             cases on both backends. The sanitizers run beside the suite.
#   bench     one training epoch of lenet against PyTorch + cuDNN (bench/train_epoch.py);
#             gpuconv bench for the cupy and numba backends against cuDNN
#   train     gpuconv train --device cuda: lenet (the default) and vgg (the strongest)
#             on the full Fashion-MNIST
#   profile   one lenet training epoch under cProfile (not in the default phases)
#
# Environment: OUT (results; default /tmp/gpuconv-acceptance), DATA (Fashion-MNIST's IDX
# files; default gpuconv's own choice), PYTHON (default python3), TRAIN_MODELS (default
# "lenet vgg"), TRAIN_ARGS (extra gpuconv train options, e.g. "--epochs 2"), TRAIN_LIMIT
# (seconds a training run may take; default 420), LOG_NAME
# (default acceptance.log: another name lets a second run go on beside the first),
# BENCH_BACKENDS (default "cupy numba"), WHEELS (a directory of wheels installed first, e.g. numpy<2.5 where the machine's NumPy
# is 2.5, which numba-cuda 0.30 cannot compile under: NVIDIA/numba-cuda#907).
# Everything is logged to $OUT/acceptance.log (each step under a "=== step" header) and
# $OUT/pytest.log; bench JSON/PNG files and training runs (without checkpoints) are packed
# into $OUT/results.tar.gz: the device tool brings back at most 8 files.
set -u

OUT=${OUT:-/tmp/gpuconv-acceptance}
PY=${PYTHON:-python3}
LOG=$OUT/${LOG_NAME:-acceptance.log}
RESULTS=$OUT/results
DATA_ARGS=(${DATA:+--data "$DATA"})
mkdir -p "$RESULTS"
touch "$LOG"
export PYTHONUNBUFFERED=1
# tests/conftest.py runs the numba backend on Numba's CUDA simulator unless told otherwise
export NUMBA_ENABLE_CUDASIM=0

failed=0

if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
        --target /tmp/gpuconv-wheels "$WHEELS"/*.whl >> "$LOG" 2>&1 || exit 1
    export PYTHONPATH=/tmp/gpuconv-wheels${PYTHONPATH:+:$PYTHONPATH}
fi

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, its output appended to $LOG.
step() {
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "=== $name: $*" >> "$LOG"
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    printf '%-16s exit %-3s %4s s (limit %s s)\n' "$name" "$rc" "$((SECONDS - start))" "$limit" \
        | tee -a "$LOG"
    [ "$rc" -eq 0 ] || failed=1
}

# pytest with CuPy's memory pool off, so that memcheck sees each array's own allocation
# (inside a pooled block an out-of-bounds access is invisible to it).
SANITIZED_PYTEST='import sys, cupy, pytest
cupy.cuda.set_allocator(None)
sys.exit(pytest.main(sys.argv[1:]))'
SUBSET=(tests/test_golden.py -q -p no:cacheprovider -k "slide and (cupy or numba)")

# API errors are not reported: CUDA's Python bindings probe the driver for entry points
# it may lack (cuGetProcAddress answers "invalid argument"), which memcheck would count.
sanitizers() {
    local tool
    for tool in memcheck racecheck; do
        step "$tool" 200 compute-sanitizer --tool "$tool" --report-api-errors no \
            --error-exitcode 1 "$PY" -c "$SANITIZED_PYTEST" "${SUBSET[@]}"
    done
}

check() {
    step install 60 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .
    step machine 30 bash -c "nvidia-smi; $PY -m gpuconv.cli info"
    sanitizers > "$OUT/sanitizers.out" 2>&1 &
    local sanitizers_pid=$!
    # --dist loadfile: one worker runs tests/test_gpu.py's large arrays one after another
    step tests 420 "$PY" -m pytest -q -p no:cacheprovider -n 8 --dist loadfile -rs \
        --durations=15 \
        --junitxml="$RESULTS/pytest.xml" -o junit_family=xunit2 tests
    wait "$sanitizers_pid" || failed=1
    cat "$OUT/sanitizers.out"
}

bench() {
    step train-epoch 150 "$PY" bench/train_epoch.py --device cuda --model lenet --repeat 3 \
        "${DATA_ARGS[@]}" --json "$RESULTS/train_epoch_cuda.json"
    for backend in ${BENCH_BACKENDS:-cupy numba}; do
        step "bench-$backend" 150 "$PY" -m gpuconv.cli bench --backend "$backend" \
            --json "$RESULTS/bench_$backend.json" --plot "$RESULTS/bench_$backend.png"
    done
}

# Where a training epoch's host time goes: one lenet epoch under cProfile (read it with
# python -m pstats).
profile() {
    step profile 120 "$PY" -m cProfile -o "$RESULTS/train_epoch_cuda.prof" bench/train_epoch.py \
        --device cuda --model lenet --repeat 1 "${DATA_ARGS[@]}"
}

train() {
    for model in ${TRAIN_MODELS:-lenet vgg}; do
        step "train-$model" "${TRAIN_LIMIT:-420}" "$PY" -m gpuconv.cli train --device cuda --model "$model" \
            "${DATA_ARGS[@]}" ${TRAIN_ARGS:-} --out "$RESULTS/train_$model"
    done
}

phases=("$@")
[ $# -gt 0 ] || phases=(check bench train)
for phase in "${phases[@]}"; do
    case $phase in
        check|bench|train|profile) $phase ;;
        *) echo "unknown phase $phase (check, bench, train, profile)"; exit 2 ;;
    esac
done
# the device tool brings back few files: one archive of the results, checkpoints left out
tar -czf "$OUT/results.tar.gz" --exclude=checkpoint.npz -C "$OUT" results
echo "full log: $LOG"
exit "$failed"
