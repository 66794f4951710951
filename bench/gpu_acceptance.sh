#!/usr/bin/env bash
# The GPU acceptance run, for a machine with a CUDA GPU (the H200 lent through the device
# tool, or yours), from the repository root:
#
#     bash bench/gpu_acceptance.sh [PHASE...]        (default: quick)
#     DRY_RUN=1 bash bench/gpu_acceptance.sh quick   (no GPU: lists the steps, checks their files)
#
# Phases, each step under its own time limit (a hang leaves the other steps' results):
#   quick     at most 8 minutes, what a 15-minute device lease is for:
#             install gpuconv (editable, no dependencies: the machine's python3 already holds
#             CUDA PyTorch, CuPy, Numba-CUDA, pytest, click, matplotlib); the machine; the
#             goldens and GPU checks of both GPU backends (every conv precision, pooling,
#             depthwise, conv + ReLU fused, the CUDA-graph training step, the PyTorch adapter
#             on CUDA tensors), six pytest processes at once (Numba's per dtype): they are
#             bound by compiling (NVRTC for CuPy's module, about 30 s; Numba about 1.5 s a
#             kernel, no cache across processes), not by the GPU; beside them, the Numba
#             backend's host time per op with real (direct) launches (bench/host.py --device);
#             gpuconv bench for cupy (ieee, tf32, tf32x3 against cuDNN FP32 and TF32; with
#             --tiles, every tile of each conv pass timed: the plan model's pick against the
#             fastest) and numba; one training epoch of lenet: gpuconv graph and eager
#             against PyTorch eager and torch.compile(mode="reduce-overhead"); the CuPy
#             backend's host time per op with real launches (bench/host.py --device)
#   full      the whole test suite on the GPU, compute-sanitizer memcheck and racecheck
#   train     gpuconv train --device cuda: lenet (the default) and vgg (the strongest)
#   profile   one lenet training epoch under cProfile
#
# Environment: OUT (results; default /tmp/gpuconv-acceptance), DATA (Fashion-MNIST's IDX
# files; default gpuconv's own choice), PYTHON (default python3), REPEAT (bench repetitions,
# default 10), TRAIN_MODELS (default "lenet vgg"), TRAIN_ARGS (extra gpuconv train options),
# TRAIN_LIMIT (seconds a training run may take; default 420), BENCH_BACKENDS (default
# "cupy numba"), WHEELS (a directory of wheels installed first: numpy<2.5 where the machine's
# NumPy is 2.5, which numba-cuda 0.30 cannot compile under, NVIDIA/numba-cuda#907), DRY_RUN.
# $OUT receives two files, since the device tool brings back at most 8: acceptance.log
# (every step's output, each under a "=== step" header) and results.tar.gz (bench JSON/PNG
# files, pytest reports, the logs of steps run together, training runs without their
# checkpoints), written meanwhile to a fresh folder under $TMPDIR.
#
# From a checkout without a GPU, `make gpu-carry` fills the git-ignored .whl/ with the
# numpy<2.5 wheel and Fashion-MNIST; then the device tool's call is
#     run(command="WHEELS=.whl/wheels DATA=.whl/fashion-mnist bash bench/gpu_acceptance.sh",
#         carry=[".whl"], timeout_s=600)
set -u

OUT=${OUT:-/tmp/gpuconv-acceptance}
PY=${PYTHON:-python3}
LOG=$OUT/acceptance.log
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpuconv-acceptance.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results
REPEAT=${REPEAT:-10}
DRY_RUN=${DRY_RUN:-}
DATA_ARGS=(${DATA:+--data "$DATA"})
mkdir -p "$OUT" "$RESULTS"
: > "$LOG"
export PYTHONUNBUFFERED=1
# tests/conftest.py runs the numba backend on Numba's CUDA simulator unless told otherwise
export NUMBA_ENABLE_CUDASIM=0

failed=0

if [ -n "${WHEELS:-}" ] && [ -z "$DRY_RUN" ]; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade \
        --target /tmp/gpuconv-wheels "$WHEELS"/*.whl >> "$LOG" 2>&1 || exit 1
    export PYTHONPATH=/tmp/gpuconv-wheels${PYTHONPATH:+:$PYTHONPATH}
fi

# step NAME SECONDS COMMAND...: run COMMAND under a time limit, its output appended to $LOG.
# Dry run: print the step (and its group, "-" outside `together`) and check that every
# repository path it names exists.
GROUP=-
step() {
    local name=$1 limit=$2
    shift 2
    if [ -n "$DRY_RUN" ]; then
        local arg missing=0
        for arg in "$@"; do
            case $arg in
                tests/*|bench/*) [ -e "${arg%%::*}" ] || { echo "missing: $arg"; missing=1; } ;;
            esac
        done
        printf '%-16s %4s s  %-8s %s\n' "$name" "$limit" "$GROUP" "$*" | tee -a "$LOG"
        [ "$missing" -eq 0 ] || failed=1
        return
    fi
    local start=$SECONDS
    echo "=== $name: $*" >> "$LOG"
    timeout --kill-after=10 "$limit" "$@" >> "$LOG" 2>&1
    local rc=$?
    printf '%-16s exit %-3s %4s s (limit %s s)\n' "$name" "$rc" "$((SECONDS - start))" "$limit" \
        | tee -a "$LOG"
    [ "$rc" -eq 0 ] || failed=1
}

pytest_step() {  # pytest_step NAME SECONDS ARGS...: a pytest run with its own JUnit report
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" -m pytest -q -p no:cacheprovider -p no:randomly -rs \
        --junitxml="$RESULTS/$name.xml" -o junit_family=xunit2 "$@"
}

# together GROUP FUNCTION...: the functions (each a step or more) run at once in the
# background, each step's output in its own log, appended to $LOG in order when all are done.
together() {
    GROUP=$1
    shift
    local f pids=() logs=$WORK/logs
    mkdir -p "$logs"
    for f in "$@"; do
        if [ -n "$DRY_RUN" ]; then
            $f
        else
            (LOG=$logs/$f.log; : > "$LOG"; failed=0; $f > "$logs/$f.out"; exit $failed) &
            pids+=($!)
        fi
    done
    for f in "${pids[@]}"; do wait "$f" || failed=1; done
    if [ -z "$DRY_RUN" ]; then
        for f in "$@"; do
            cat "$logs/$f.log" >> "$LOG"
            cat "$logs/$f.out"
        done
    fi
    GROUP=-
}

# the goldens and GPU checks, per backend: -k picks a backend's parametrisations by their id.
# Numba compiles each kernel it launches in each process (no cache between processes), so
# its tests run per dtype, each process compiling only that dtype's kernels.
CHECK_FILES=(tests/test_gpu_graph.py tests/test_conv_relu.py tests/test_torch_adapter.py
             tests/test_any_array.py)
GOLDEN_FILES=(tests/test_golden.py tests/test_gpu.py)
F64="(f64 or float64)"
goldens_cupy() { pytest_step goldens-cupy 135 "${GOLDEN_FILES[@]}" -k "cupy or fused_gpu"; }
goldens_numba_f32() {
    pytest_step goldens-numba-f32 135 "${GOLDEN_FILES[@]}" -k "numba and not $F64"
}
goldens_numba_f64() { pytest_step goldens-numba-f64 135 "${GOLDEN_FILES[@]}" -k "numba and $F64"; }
checks_cupy() { pytest_step checks-cupy 135 "${CHECK_FILES[@]}" -k "not numba"; }
NUMBA_CHECKS=(tests/test_numba_random.py "${CHECK_FILES[@]}")
checks_numba_f32() {
    pytest_step checks-numba-f32 135 "${NUMBA_CHECKS[@]}" -k "numba and not $F64"
}
checks_numba_f64() { pytest_step checks-numba-f64 135 "${NUMBA_CHECKS[@]}" -k "numba and $F64"; }

quick() {
    step install 20 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .
    step machine 10 bash -c "nvidia-smi; $PY -m gpuconv.cli info"
    together checks goldens_cupy goldens_numba_f32 goldens_numba_f64 checks_cupy \
        checks_numba_f32 checks_numba_f64 host_numba
    for backend in ${BENCH_BACKENDS:-cupy numba}; do
        step "bench-$backend" "$([ "$backend" = cupy ] && echo 105 || echo 100)" \
            "$PY" -m gpuconv.cli bench --backend "$backend" \
            $([ "$backend" = cupy ] && echo --tiles) --repeat "$REPEAT" --json "$RESULTS/bench_${backend}_h200.json" \
            --plot "$RESULTS/bench_${backend}_h200.png"
    done
    # most of its time: torch.compile's first compile; its JSON is rewritten after each round
    step train-epoch 90 "$PY" bench/train_epoch.py --device cuda --model lenet --repeat 2 \
        "${DATA_ARGS[@]}" --json "$RESULTS/train_epoch_cuda_h200.json"
    host_step cupy 15
}

# the host time of every op with real launches (CPU µs per call; issues 13 and 14's 20 µs
# target); Numba's, its kernels compiled on first use, beside the checks
host_step() {  # host_step BACKEND SECONDS
    step "host-$1" "$2" "$PY" bench/host.py --device --backends "$1" --label "h200-$1" \
        --json "$RESULTS/host_overhead_h200_$1.json"
}
host_numba() { host_step numba 135; }

# pytest with CuPy's memory pool off, so that memcheck sees each array's own allocation
# (inside a pooled block an out-of-bounds access is invisible to it).
SANITIZED_PYTEST='import sys, cupy, pytest
cupy.cuda.set_allocator(None)
sys.exit(pytest.main(sys.argv[1:]))'
SUBSET=(tests/test_golden.py -q -p no:cacheprovider -k "slide and (cupy or numba)")

# API errors are not reported: CUDA's Python bindings probe the driver for entry points
# it may lack (cuGetProcAddress answers "invalid argument"), which memcheck would count.
full() {
    pytest_step tests 420 -n 8 --dist loadfile --durations=15 tests
    local tool
    for tool in memcheck racecheck; do
        step "$tool" 200 compute-sanitizer --tool "$tool" --report-api-errors no \
            --error-exitcode 1 "$PY" -c "$SANITIZED_PYTEST" "${SUBSET[@]}"
    done
}

# Where a training epoch's host time goes (read it with python -m pstats).
profile() {
    step profile 120 "$PY" -m cProfile -o "$RESULTS/train_epoch_cuda.prof" bench/train_epoch.py \
        --device cuda --model lenet --repeat 1 "${DATA_ARGS[@]}"
}

train() {
    for model in ${TRAIN_MODELS:-lenet vgg}; do
        step "train-$model" "${TRAIN_LIMIT:-420}" "$PY" -m gpuconv.cli train --device cuda \
            --model "$model" "${DATA_ARGS[@]}" ${TRAIN_ARGS:-} --out "$RESULTS/train_$model"
    done
}

phases=("$@")
[ $# -gt 0 ] || phases=(quick)
for phase in "${phases[@]}"; do
    case $phase in
        quick|full|train|profile) $phase ;;
        *) echo "unknown phase $phase (quick, full, train, profile)"; exit 2 ;;
    esac
done
# the device tool brings back few files: one archive of the results, checkpoints left out
tar -czf "$OUT/results.tar.gz" --exclude=checkpoint.npz -C "$WORK" .
echo "full log: $LOG"
exit "$failed"
