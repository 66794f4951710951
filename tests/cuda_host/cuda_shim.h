// cuda_shim.h: just enough CUDA to run kernels/*.cu on the CPU with g++ (-std=c++20 -pthread).
//
// A launch runs its blocks one after another; the threads of a block are OS threads, so
// __syncthreads() is a std::barrier and __shared__ is a function-static array (one block at a
// time uses it); dynamic shared memory is one buffer as large as an SM allows, and a launch
// that gives less than its kernel asks for fails (emulate_launch). No __CUDA_ARCH__: common.cuh's cp.async helpers take their plain-copy path.
// mma.sync m16n8k8 TF32: the lanes of a warp swap fragments through WarpScratch, and each lane
// computes its own accumulators with the PTX ISA's fragment layout (common.cuh, mma_tf32).
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <algorithm>
#include <memory>
#include <thread>
#include <type_traits>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
inline std::barrier<>* block_barrier = nullptr;

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};

inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}

// One warp's exchange for the emulated mma.sync: each lane posts its fragments, then reads the
// others' (a warp barrier before and after).
struct WarpScratch {
    unsigned a[32][4], b[32][2];
};
inline thread_local std::barrier<>* warp_barrier = nullptr;
inline thread_local WarpScratch* warp_scratch = nullptr;

inline void __syncthreads() { block_barrier->arrive_and_wait(); }

// common.cuh's DYNAMIC_SHARED: the launch's buffer, which must hold what the kernel uses. The
// buffer is allocated as large as an SM allows, so a kernel asking for more than its launch
// gave still runs without corrupting memory; the launch then reports what it asked for
// (emulate_launch's result), and the harness fails the call.
constexpr size_t MAX_DYNAMIC_SHARED = 227 * 1024;  // sm_90: per block, opted in
inline float4* dynamic_shared = nullptr;
inline size_t dynamic_shared_bytes = 0;
inline std::atomic<size_t> dynamic_shared_asked{0};
inline void* dynamic_shared_of(size_t bytes) {
    if (bytes > MAX_DYNAMIC_SHARED) {
        std::fprintf(stderr, "kernel uses %zu bytes of dynamic shared memory, above an SM's %zu\n",
                     bytes, MAX_DYNAMIC_SHARED);
        std::abort();
    }
    size_t asked = dynamic_shared_asked.load();
    while (bytes > asked && !dynamic_shared_asked.compare_exchange_weak(asked, bytes)) {}
    return dynamic_shared;
}
#define DYNAMIC_SHARED(T, name, count) T* const name = (T*)dynamic_shared_of((count) * sizeof(T))
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::fma;
using std::isnan;

// Run kernel(params) over grid x block with shared_bytes of dynamic shared memory: one OS
// thread per thread of the block, each walking every block in order; the barrier after each
// block keeps shared memory to one block. Returns 0, or the dynamic shared memory the kernel
// asked for where that is more than shared_bytes.
template <class P>
size_t emulate_launch(void (*kernel)(P), dim3 grid, dim3 block, size_t shared_bytes, const void* params) {
    P p;
    std::memcpy(&p, params, sizeof(P));
    std::vector<float4> shared(MAX_DYNAMIC_SHARED / sizeof(float4));
    dynamic_shared = shared.data();
    dynamic_shared_bytes = shared_bytes;
    dynamic_shared_asked = 0;
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> bar(threads);
    block_barrier = &bar;
    const unsigned warps = (threads + 31) / 32;
    std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
    for (unsigned w = 0; w < warps; ++w)
        warp_bars.emplace_back(new std::barrier<>(std::min(32u, threads - 32 * w)));
    std::vector<WarpScratch> scratch(warps);
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            threadIdx = dim3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
            warp_barrier = warp_bars[t / 32].get();
            warp_scratch = &scratch[t / 32];
            blockDim = block;
            gridDim = grid;
            for (unsigned z = 0; z < grid.z; ++z)
                for (unsigned y = 0; y < grid.y; ++y)
                    for (unsigned x = 0; x < grid.x; ++x) {
                        blockIdx = dim3{x, y, z};
                        kernel(p);
                        bar.arrive_and_wait();
                    }
        });
    for (auto& th : pool) th.join();
    block_barrier = nullptr;
    dynamic_shared = nullptr;
    dynamic_shared_bytes = 0;
    return dynamic_shared_asked > shared_bytes ? dynamic_shared_asked.load() : 0;
}


// The bits of a TF32 operand the tensor core reads: sign, exponent and 10 mantissa bits (it
// truncates the rest).
constexpr uint32_t TF32_READ = 0xffffe000u;

// d += a * b for this lane's accumulators (layout: common.cuh, mma_tf32). The products of TF32
// inputs are exact in double; the sum is rounded once, as an FP32 accumulator would at best.
inline void host_mma_tf32(float* d, const unsigned* a, const unsigned* b) {
    const unsigned lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    std::memcpy(warp_scratch->a[lane], a, sizeof(unsigned) * 4);
    std::memcpy(warp_scratch->b[lane], b, sizeof(unsigned) * 2);
    warp_barrier->arrive_and_wait();
    for (unsigned v = 0; v < 4; ++v) {
        const unsigned row = g + 8 * (v / 2), col = 2 * t + v % 2;
        double s = d[v];
        for (unsigned k = 0; k < 8; ++k) {
            const float av = __uint_as_float(TF32_READ & warp_scratch->a[4 * (row % 8) + k % 4][row / 8 + 2 * (k / 4)]);
            const float bv = __uint_as_float(TF32_READ & warp_scratch->b[4 * col + k % 4][k / 4]);
            s += (double)av * (double)bv;
        }
        d[v] = (float)s;
    }
    warp_barrier->arrive_and_wait();  // the scratch is reused by the next mma
}
