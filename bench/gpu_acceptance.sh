#!/usr/bin/env bash
# The GPU acceptance run: the one script a session lent an H100 (or H200) runs, through the
# device tool, from the repository root:
#
#     run(command="bash bench/gpu_acceptance.sh", timeout_s=600)
#
# Steps, each under its own time limit (so that a hang leaves the other steps' results):
#   1. install gpuconv into the machine's python3 (editable, no dependencies: the image
#      already holds CUDA PyTorch, CuPy, Numba-CUDA, pytest and matplotlib, and nothing
#      can be downloaded there)
#   2. what the machine is: nvidia-smi, gpuconv info
#   3. the golden suite with backend="cupy", then with backend="numba"
#   4. compute-sanitizer memcheck and racecheck over a small subset (the slides' cases)
#   5. gpuconv bench --backend cupy, then --backend numba: table in the log, JSON and PNG
# The step limits add up to 555 s, inside the device tool's 600 s a command. The device tool brings back at most 8 files from
# $OUT, so everything is logged to one file, $OUT/acceptance.log (a step's own output under
# a "=== step" header), beside the 4 bench files; each step's exit status is also printed.
# Commit the bench JSON under bench/results/ and the table in the README afterwards.
set -u

OUT=${OUT:-/tmp/gpuconv-acceptance}
PY=${PYTHON:-python3}
LOG=$OUT/acceptance.log
mkdir -p "$OUT"
: > "$LOG"
export PYTHONUNBUFFERED=1
# tests/conftest.py runs the numba backend on Numba's CUDA simulator unless told otherwise
export NUMBA_ENABLE_CUDASIM=0

failed=0

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
SUBSET=(tests/test_golden.py -q -x -p no:cacheprovider -k "slide and (cupy or numba)")

step install   45 "$PY" -m pip install --no-deps --no-build-isolation --no-index -e .
step machine   15 bash -c "nvidia-smi; $PY -m gpuconv.cli info"
step golden-cupy  75 "$PY" -m pytest -q -p no:cacheprovider tests/test_golden.py -k cupy
step golden-numba 90 "$PY" -m pytest -q -p no:cacheprovider tests/test_golden.py -k numba
step memcheck  45 compute-sanitizer --tool memcheck --error-exitcode 1 \
    "$PY" -c "$SANITIZED_PYTEST" "${SUBSET[@]}"
step racecheck 45 compute-sanitizer --tool racecheck --error-exitcode 1 \
    "$PY" -c "$SANITIZED_PYTEST" "${SUBSET[@]}"
step bench-cupy  120 "$PY" -m gpuconv.cli bench --backend cupy \
    --json "$OUT/bench_cupy.json" --plot "$OUT/bench_cupy.png"
step bench-numba 120 "$PY" -m gpuconv.cli bench --backend numba \
    --json "$OUT/bench_numba.json" --plot "$OUT/bench_numba.png"

echo "full log: $LOG"
exit "$failed"
