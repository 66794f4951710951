// common.cuh: what conv.cu and pool.cu share. Compiled by NVRTC (through cupy.RawModule) and,
// for the CPU emulation in tests/cuda_host, by g++ against cuda_shim.h.
//
// Versions:
//   1. launch-parameter structs (one struct by value per kernel, every field 8 bytes so the
//      NumPy structured dtype in gpuconv/backends/gpu_plan.py matches it without padding)
//   2. padding as a source-index map (zeros, reflect, replicate, circular)
//   3. cp.async copy helpers (sm_80+; one element or 16 bytes), with a plain-copy path for older
//      GPUs and the CPU
//   4. tensor-core helpers: TF32 operands and 3xTF32 splitting, mma.sync m16n8k8 (emulated on the CPU
//      by tests/cuda_host/cuda_shim.h with the PTX ISA's fragment layout)
//   5. a fixed-order block reduction, 16-byte vector stores, power() for float and double
#pragma once

typedef long long i64;

// --------------------------------------------------------------------------- 1. parameters
// Field order and names must match CONV_FIELDS in gpu_plan.py (tests/test_gpu_plan.py checks).
struct ConvParams {
    const void* a;      // A operand: weight (O, C/G, kH, kW), or grad_out for grad-weight
    const void* b;      // gathered operand (N, C_b, H_b, W_b): input, or grad_out for grad-input
    const void* bias;   // (out_c,) or null
    void* out;          // contiguous (N, out_c, out_h, out_w), or grad-weight partials
    i64 a_stride[4];    // element strides of a
    i64 b_stride[4];    // element strides of b
    i64 batch, b_h, b_w;         // N and b's spatial size
    i64 out_c, out_h, out_w;     // output channels (all groups) and spatial size
    i64 groups, m, kc;           // GEMM rows per group, channels reduced per group
    i64 kh, kw, sh, sw, dh, dw, pt, pl;  // forward conv: kernel, stride, dilation, leading pads
    i64 q_h, q_w;                // forward output size (H_out, W_out)
    i64 lo_h, lo_w, len_h, len_w;  // grad-input: written region of the padded input
    i64 mode;                    // b's boundary: 0 zeros, 1 reflect, 2 replicate, 3 circular
    i64 transposed;              // 1: grad-input, one launch slice per live stride phase
    i64 phases;                  // grad-input: stride phases some tap reaches (else 1)
    i64 splits, tiles_per_split; // split-K: slices of the reduction, reduction steps per slice
    i64 relu;                    // 1: out = max(out, 0) after the bias
    i64 total, plane;            // elementwise kernels: elements (per split), elements per channel
};

// Field order and names must match POOL_FIELDS in gpu_plan.py.
struct PoolParams {
    const void* x;      // input (N, C, H, W)
    const void* gy;     // grad_out (N, C, H_out, W_out), or the Lp gradient scale
    void* y;            // contiguous output
    void* idx;          // int64 indices: written by max_pool2d (or null), read by max backward
    void* err;          // int64 error word (or null: no check); max_pool2d_backward stores h*w
                        // there when an index it reads lies outside [0, h*w)
    i64 x_stride[4];
    i64 g_stride[4];
    i64 n, c, h, w, out_h, out_w;
    i64 kh, kw, sh, sw, ph, pw, dh, dw;
    i64 adaptive;       // 1: PyTorch's adaptive windows
    i64 op;             // avg_pool2d: 0 average, 1 Lp, 2 Lp gradient scale
    i64 count_include_pad, divisor_override;  // divisor_override 0: none
    i64 lp_post;        // backward: multiply by p * x^(p-1) (Lp)
    double norm;        // Lp's p
};

// --------------------------------------------------------------------------- 2. padding
enum PadMode { PAD_ZEROS = 0, PAD_REFLECT = 1, PAD_REPLICATE = 2, PAD_CIRCULAR = 3 };

// The input position that padded coordinate i copies, or -1 for a zero. i lies in the padded
// range and functional checks the padding (reflect: < n, circular: <= n), so one reflection
// or wrap suffices (numpy_backend._source_index, without its divisions: ptxas turns them
// into calls that spill in the direct kernel's loop).
__device__ __forceinline__ int source_index(int i, int n, int mode) {
    if (i >= 0 && i < n) return i;
    if (mode == PAD_ZEROS) return -1;
    if (mode == PAD_REPLICATE) return i < 0 ? 0 : n - 1;
    if (mode == PAD_CIRCULAR) return i < 0 ? i + n : i - n;
    return i < 0 ? -i : 2 * (n - 1) - i;  // reflect (n == 1 has no reflect padding)
}

// source_index for a staged tile, whose columns span the block whether or not outputs exist
// there: past the padded input the one reflection or wrap leaves [0, n), and that reads
// nothing (-1). Only tiles pay for the check; the GEMM loaders stay inside the padded range.
__device__ __forceinline__ int tile_source_index(int i, int n, int mode) {
    const int j = source_index(i, n, mode);
    return (unsigned)j < (unsigned)n ? j : -1;
}

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ i64 lmin(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 lmax(i64 a, i64 b) { return a > b ? a : b; }

// --------------------------------------------------------------------------- 3. async copies
// Where a copy reads: base[offset]. When !ok the offset may point anywhere (a padding tap's
// position outside the tensor): the copy then ignores its source (cp.async's ignore-src
// predicate: "ignored completely", zeros written), as CUTLASS's zero-filling copies, whose
// masked-off pointers lie outside their tensors too. A valid 32-bit offset is never
// negative: unsigned, it widens in one multiply-add instead of a sign-extended 64-bit add.
template <typename T, typename Index>
__device__ __forceinline__ const T* copy_source(const T* base, Index offset) {
    return sizeof(Index) == 4 ? base + (unsigned)offset : base + offset;
}

// One element base[offset] global -> shared, or a zero when !ok.
template <typename T, typename Index>
__device__ __forceinline__ void copy_async(T* dst, const T* base, Index offset, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("{\n .reg .pred ignore;\n setp.eq.u32 ignore, %3, 0;\n"
                 " cp.async.ca.shared.global [%0], [%1], %2, ignore;\n}\n"
                 :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(copy_source(base, offset)),
                    "n"(sizeof(T)), "r"((unsigned)ok));
#else
    *dst = ok ? base[offset] : T(0);
#endif
}

// 16 bytes of T, for vector loads and stores.
template <typename T>
struct alignas(16) Vec16 {
    static constexpr int N = 16 / (int)sizeof(T);
    T v[N];
};

// 16 bytes, base[offset .. offset + 16 / sizeof(T)) global -> shared, or zeros when !ok: both
// addresses 16-byte aligned (gpu_plan.a_runs decides where the source is; a masked-off run's
// offset comes from the same arithmetic as the others', so it keeps their alignment).
template <typename T, typename Index>
__device__ __forceinline__ void copy_async16(T* dst, const T* base, Index offset, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("{\n .reg .pred ignore;\n setp.eq.u32 ignore, %2, 0;\n"
                 " cp.async.cg.shared.global [%0], [%1], 16, ignore;\n}\n"
                 :: "r"((unsigned)__cvta_generic_to_shared(dst)), "l"(copy_source(base, offset)),
                    "r"((unsigned)ok));
#else
    *(Vec16<T>*)dst = ok ? *(const Vec16<T>*)(base + offset) : Vec16<T>{};
#endif
}

// Close the group of copies issued since the last commit.
__device__ __forceinline__ void copy_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

// Wait until at most N committed groups are still in flight (plain copies are already done).
template <int N>
__device__ __forceinline__ void copy_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" :: "n"(N));
#endif
}

// The launch's dynamic shared memory as `count` elements of T (16-byte aligned): the launch
// passes at least count * sizeof(T) bytes (the host emulation checks it).
#ifndef DYNAMIC_SHARED
#define DYNAMIC_SHARED(T, name, count) \
    extern __shared__ __align__(16) unsigned char name##_bytes[]; \
    T* const name = (T*)name##_bytes
#endif

// --------------------------------------------------------------------------- 4. tensor cores
// The TF32 operands of x. mma.sync reads an operand's sign, exponent and top 10 mantissa bits
// and drops the rest (rounds toward zero), so "tf32" passes x as it is (no instruction). 3xTF32
// (CUTLASS's "fast FP32"): big = x rounded to TF32 (to nearest, ties away from zero, as
// cvt.rna: half an ulp added, the low bits cleared), small = x - big exactly, passed as it is:
// truncated, an error below 2^-10 of |small| <= 2^-11 |x|. A NaN x may leave big garbage, but
// small is NaN, so the product stays NaN.
__device__ __forceinline__ void split_tf32(float x, unsigned& big, unsigned& small, bool want_small) {
    if (!want_small) {
        big = __float_as_uint(x);
        return;
    }
    big = (__float_as_uint(x) + 0x1000u) & 0xffffe000u;
    small = __float_as_uint(x - __uint_as_float(big));
}

// d (16 x 8) += a (16 x 8) * b (8 x 8) over one warp, TF32 inputs, float32 accumulation. Lane
// 4*g + t holds a rows g, g+8 x columns t, t+4 (a0 a1 a2 a3), b rows t, t+4 of column g, and d
// rows g, g+8 x columns 2t, 2t+1 (PTX ISA, "Matrix Fragments for mma.m16n8k8", .tf32).
__device__ __forceinline__ void mma_tf32(float* d, const unsigned* a, const unsigned* b) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#elif defined(__CUDA_ARCH__)
    __trap();
#else
    host_mma_tf32(d, a, b);
#endif
}

// --------------------------------------------------------------------------- 5. small helpers
// threadIdx.x, blockIdx.x or blockIdx.y read again where used: the GEMMs' epilogues recompute
// their positions from these instead of holding them in registers through the main loop (a
// plain threadIdx / blockIdx read is one value to the compiler, kept from its first read on).
enum Special { TID_X, CTAID_X, CTAID_Y };
template <Special S>
__device__ __forceinline__ int reread() {
#ifdef __CUDA_ARCH__
    unsigned v;
    if (S == TID_X) asm volatile("mov.u32 %0, %%tid.x;" : "=r"(v));
    else if (S == CTAID_X) asm volatile("mov.u32 %0, %%ctaid.x;" : "=r"(v));
    else asm volatile("mov.u32 %0, %%ctaid.y;" : "=r"(v));
    return (int)v;
#else
    return (int)(S == TID_X ? threadIdx.x : S == CTAID_X ? blockIdx.x : blockIdx.y);
#endif
}

// Fixed-shape tree reduction over a block of THREADS (a power of two): the same order every run.
template <int THREADS, typename V, class Op>
__device__ __forceinline__ V block_reduce(V v, Op op) {
    __shared__ V buf[THREADS];
    buf[threadIdx.x] = v;
    __syncthreads();
    for (int s = THREADS / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) buf[threadIdx.x] = op(buf[threadIdx.x], buf[threadIdx.x + s]);
        __syncthreads();
    }
    const V total = buf[0];
    __syncthreads();  // buf is reused by the next call
    return total;
}

__device__ __forceinline__ bool aligned16(const void* p) { return ((unsigned long long)p & 15) == 0; }

// Store the first count (1..V) values of v at dst: 16-byte stores when all V go and dst is
// aligned (V a multiple of 16 / sizeof(T)), else one by one.
template <typename T, int V>
__device__ __forceinline__ void store_vec(T* dst, const T (&v)[V], int count) {
    constexpr int N = Vec16<T>::N;
    if (V % N == 0 && count == V && aligned16(dst)) {
#pragma unroll
        for (int k = 0; k < V / N; ++k) {
            Vec16<T> q;
#pragma unroll
            for (int e = 0; e < N; ++e) q.v[e] = v[k * N + e];
            ((Vec16<T>*)dst)[k] = q;
        }
    } else {
#pragma unroll
        for (int k = 0; k < V; ++k)  // constant indices keep v in registers
            if (k < count) dst[k] = v[k];
    }
}

__device__ __forceinline__ float power(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double power(double a, double b) { return pow(a, b); }
