// cuda_shim.h: just enough CUDA to run kernels/*.cu on the CPU with g++ (-std=c++20 -pthread).
//
// A launch runs its blocks one after another; the threads of a block are OS threads, so
// __syncthreads() is a std::barrier and __shared__ is a function-static array (one block at a
// time uses it). No __CUDA_ARCH__: common.cuh's cp.async helpers take their plain-copy path.
// WMMA: each lane holds the whole fragment and computes the whole product; lane 0 stores.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <math.h>
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

inline void __syncthreads() { block_barrier->arrive_and_wait(); }
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::fma;
using std::isnan;

// Run kernel(params) over grid x block: one OS thread per thread of the block, each walking
// every block in order; the barrier after each block keeps shared memory to one block.
template <class P>
void emulate_launch(void (*kernel)(P), dim3 grid, dim3 block, const void* params) {
    P p;
    std::memcpy(&p, params, sizeof(P));
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> bar(threads);
    block_barrier = &bar;
    std::vector<std::thread> pool;
    for (unsigned t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            threadIdx = dim3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
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
}

namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}
enum layout_t { mem_row_major, mem_col_major };

// The whole ROWS x COLS fragment, row-major, in every lane.
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
    static constexpr int rows = std::is_same_v<Use, matrix_b> ? K : M;
    static constexpr int cols = std::is_same_v<Use, matrix_a> ? K : N;
    static constexpr int num_elements = rows * cols;
    float x[rows * cols];
};

inline float __float_to_tf32(float f) {  // round to nearest, ties away, 10 mantissa bits
    if (!std::isfinite(f)) return f;
    uint32_t u;
    std::memcpy(&u, &f, 4);
    u = (u + 0x1000u) & 0xffffe000u;
    std::memcpy(&f, &u, 4);
    return f;
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const float* p, unsigned ldm) {
    using F = fragment<Use, M, N, K, T, Layout>;
    for (int r = 0; r < F::rows; ++r)
        for (int c = 0; c < F::cols; ++c)
            f.x[r * F::cols + c] = std::is_same_v<Layout, col_major> ? p[r + c * ldm] : p[r * ldm + c];
}

template <int M, int N, int K>
void fill_fragment(fragment<accumulator, M, N, K, float>& f, float v) {
    for (float& e : f.x) e = v;
}

template <int M, int N, int K, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, precision::tf32, LA>& a,
              const fragment<matrix_b, M, N, K, precision::tf32, LB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) {
            float s = c.x[i * N + j];
            for (int k = 0; k < K; ++k) s = std::fma(a.x[i * K + k], b.x[k * N + j], s);
            d.x[i * N + j] = s;
        }
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t layout) {
    const unsigned lane = (threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)) % 32;
    if (lane != 0) return;  // every lane holds the same fragment
    for (int i = 0; i < M; ++i)
        for (int j = 0; j < N; ++j) p[layout == mem_row_major ? i * ldm + j : i + j * ldm] = f.x[i * N + j];
}
}  // namespace wmma
}  // namespace nvcuda
