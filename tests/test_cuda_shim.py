"""The CUDA emulation that runs the cupy backend's kernels in CI (tests/cuda_host/cuda_shim.h):
a block's threads, run as fibers one after another, see their own thread and block indices
over a 3-D grid of 3-D blocks; __syncthreads waits for the threads still running (not those
that have returned); and threads that wait at barriers the others never reach (a GPU hang),
or an mma.sync with lanes of its warp gone (undefined on a GPU), end the launch with a
message instead of hanging the tests or computing on stale fragments. The stand-in for
cupy.ElementwiseKernel (harness.ElementwiseKernel) binds, broadcasts and writes as CuPy does."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.cuda_host import harness

PROGRAM = r"""
#include "cuda_shim.h"
#include <string>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

struct Out {
    int* values;
};

// Each block's threads rotate their global indices by one through shared memory over three
// barriers; threads at or past EARLY return first (the barriers then wait for the rest).
constexpr unsigned EARLY = 48, BLOCK_THREADS = 64;
__global__ void rotate(Out out) {
    __shared__ int shared[BLOCK_THREADS];
    const unsigned t = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    if (t >= EARLY) return;
    const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    shared[t] = block * BLOCK_THREADS + t;
    __syncthreads();
    const int value = shared[(t + 1) % EARLY];
    __syncthreads();
    shared[t] = value;
    __syncthreads();
    out.values[block * BLOCK_THREADS + t] = shared[t];
}

// Lane 0 waits in mma.sync for its warp, the other lanes at __syncthreads for lane 0.
__global__ void divergent_mma(Out) {
    if (threadIdx.x == 0) {
        float d[4] = {};
        unsigned a[4] = {}, b[2] = {};
        host_mma_tf32(d, a, b);
    }
    __syncthreads();
}

// Half the warp has returned when the other half enters mma.sync.
__global__ void mma_after_returns(Out) {
    if (threadIdx.x >= 16) return;
    float d[4] = {};
    unsigned a[4] = {}, b[2] = {};
    host_mma_tf32(d, a, b);
}

int main(int argc, char** argv) {
    const std::string kernel = argv[1];
    std::vector<int> values(2 * 3 * 2 * BLOCK_THREADS, -1);
    Out out{values.data()};
    if (kernel == "regrow") {  // a block of 32 threads, then stacks for 64, as a launch takes
        emulate_launch(rotate, dim3{1, 1, 1}, dim3{32, 1, 1}, 0, &out);
        char* const old = fiber_pool.base;
        const size_t old_size = fiber_pool.count * (FIBER_STACK + fiber_pool.page);
        fiber_pool.reserve(64);  // the old stacks unmapped, new ones mapped (over them, often)
        const size_t size = fiber_pool.count * (FIBER_STACK + fiber_pool.page);
        for (auto [start, bytes] : {std::pair{old, old_size}, std::pair{fiber_pool.base, size}})
            for (size_t at = 0; at < bytes; at += 8)
#if defined(__SANITIZE_ADDRESS__)
                if (__asan_address_is_poisoned(start + at)) {
                    std::printf("poisoned: byte %zu of the %s stacks\n", at,
                                start == old ? "old" : "new");
                    return 1;
                }
#endif
        std::printf("clean\n");
        return 0;
    }
    if (kernel == "rotate")
        emulate_launch(rotate, dim3{2, 3, 2}, dim3{4, 4, 4}, 0, &out);
    else if (kernel == "divergent_mma")
        emulate_launch(divergent_mma, dim3{1, 1, 1}, dim3{32, 1, 1}, 0, &out);
    else
        emulate_launch(mma_after_returns, dim3{1, 1, 1}, dim3{32, 1, 1}, 0, &out);
    for (int v : values) std::printf("%d\n", v);
}
"""


def _build(tmp_path_factory, name: str, flags=()):
    """(g++'s result, the program's path): PROGRAM built with ``flags`` in a folder of its own."""
    if harness.compiler() is None:
        pytest.skip("needs a C++ compiler (g++)")
    folder = tmp_path_factory.mktemp(name)
    (folder / "program.cpp").write_text(PROGRAM)
    built = subprocess.run([harness.compiler(), "-std=c++20", "-O1", "-w", *flags,
                            f"-I{harness.SHIM.parent}", "program.cpp", "-o", "program"],
                           cwd=folder, capture_output=True, text=True, check=False)
    return built, folder / "program"


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    built, path = _build(tmp_path_factory, "cuda_shim")
    assert built.returncode == 0, built.stderr
    return path


@pytest.fixture(scope="module")
def asan_program(tmp_path_factory):
    """PROGRAM built with AddressSanitizer, as `make check-memory` builds the kernels."""
    built, path = _build(tmp_path_factory, "cuda_shim_asan", harness.SANITIZE)
    if built.returncode:
        pytest.skip(f"g++ cannot build with AddressSanitizer here: {built.stderr[-300:]}")
    return path


def test_fiber_stacks_given_back_leave_no_poisoned_shadow(asan_program):
    """Under ASan, a launch of more threads than any before maps new fiber stacks and unmaps
    the old ones, whose last frames (fiber_main's, never returned from) were still poisoned:
    memory mapped there next (the new stacks themselves, often) must not read as a stack's
    redzone (it did: a fuzzing run of the conv kernels under `GPUCONV_HOST_ASAN=1` then
    failed in Python's allocator, a stack-buffer-underflow far from any kernel)."""
    done = subprocess.run([asan_program, "regrow"], capture_output=True, text=True, timeout=60,
                          env={"ASAN_OPTIONS": "detect_leaks=0"})
    assert done.returncode == 0 and done.stdout.strip() == "clean", \
        done.stdout + done.stderr[-2000:]


def test_threads_see_their_indices_and_barriers_skip_returned_threads(program):
    done = subprocess.run([program, "rotate"], capture_output=True, text=True, check=True)
    got = np.array(done.stdout.split(), dtype=np.int64).reshape(12, 64)
    want = np.full((12, 64), -1)
    early = 48
    for block in range(12):
        want[block, :early] = block * 64 + (np.arange(early) + 1) % early
    bad = np.argwhere(got != want)
    assert not bad.size, f"first bad (block, thread) {tuple(bad[0])}: got {got[tuple(bad[0])]}"


@pytest.mark.parametrize("kernel, message", [
    ("divergent_mma", "waits at a barrier that the others never reach"),
    ("mma_after_returns", "without all 32 lanes of the warp"),
])
def test_what_would_hang_or_be_undefined_on_a_gpu_ends_the_launch(program, kernel, message):
    done = subprocess.run([program, kernel], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert message in done.stderr


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_elementwise_stand_in_binds_and_broadcasts_as_cupy(dtype):
    """A placeholder takes the arrays' dtype (the body's arithmetic in it: 1/3 rounds to
    float32 or float64), a Python scalar its parameter's type, a plain parameter broadcasts
    and is its element at ``i``, a raw one the whole array, and an output is written in
    place; a placeholder bound to two dtypes is a TypeError, as on CuPy."""
    if harness.compiler() is None:
        pytest.skip("needs a C++ compiler (g++)")
    kernel = harness.ElementwiseKernel("T x, T row, raw T table, int32 k", "T y",
                                       "y += x * row / T(3) + table[i % 2] + k;", "stand_in")
    x = np.arange(6, dtype=dtype).reshape(2, 3)
    row, table, y = np.array([1, 2, 4], dtype), np.array([10, 20], dtype), np.ones((2, 3), dtype)
    kernel(x, row, table, 1.75, y)  # k = int32(1.75) = 1
    want = 1 + (x * row / np.asarray(3, dtype) + np.resize(table, 6).reshape(2, 3) + 1)
    np.testing.assert_array_equal(y, want)
    with pytest.raises(TypeError, match="T is bound to"):
        kernel(x.astype(np.float16), row, table, 1, y)
