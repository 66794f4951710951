// common.cuh: what conv.cu and pool.cu share. Compiled by NVRTC (through cupy.RawModule) and,
// for the CPU emulation in tests/cuda_host, by g++ against cuda_shim.h.
//
// Versions:
//   1. launch-parameter structs (one struct by value per kernel, every field 8 bytes so the
//      NumPy structured dtype in gpuconv/backends/gpu_plan.py matches it without padding)
//   2. padding as a source-index map (zeros, reflect, replicate, circular)
//   3. cp.async copy helpers (sm_80+), with a plain-copy path for older GPUs and the CPU
//   4. a fixed-order block reduction, power() for float and double
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
    i64 transposed;              // 1: grad-input, one launch slice per stride phase
    i64 splits, tiles_per_split; // grad-weight split-K
    i64 vec_b;                   // forward fast path: 1x1, stride 1, unpadded, 16-byte aligned
};

// Field order and names must match POOL_FIELDS in gpu_plan.py.
struct PoolParams {
    const void* x;      // input (N, C, H, W)
    const void* gy;     // grad_out (N, C, H_out, W_out), or the Lp gradient scale
    const void* aux;    // max backward: int64 candidate-window tables (pool.cu version 4)
    void* y;            // contiguous output
    void* idx;          // int64 indices: written by max_pool2d (or null), read by max backward
    i64 x_stride[4];
    i64 g_stride[4];
    i64 n, c, h, w, out_h, out_w;
    i64 kh, kw, sh, sw, ph, pw, dh, dw;
    i64 adaptive;       // 1: PyTorch's adaptive windows
    i64 op;             // avg kernel: 0 average, 1 Lp, 2 Lp gradient scale; backward: 0 average, 1 max
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

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }
__device__ __forceinline__ i64 lmin(i64 a, i64 b) { return a < b ? a : b; }
__device__ __forceinline__ i64 lmax(i64 a, i64 b) { return a > b ? a : b; }

// --------------------------------------------------------------------------- 3. async copies
// One element global -> shared, zero-filled when src is null (padding, ragged tile edges).
template <typename T>
__device__ __forceinline__ void copy_or_zero(T* dst, const T* src, const T* any_valid) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    const int bytes = src ? (int)sizeof(T) : 0;  // src-size 0: cp.async writes zeros
    asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n"
                 :: "r"(s), "l"(src ? src : any_valid), "n"(sizeof(T)), "r"(bytes));
#else
    (void)any_valid;
    *dst = src ? *src : T(0);
#endif
}

// 16 bytes global -> shared; both addresses 16-byte aligned.
template <typename T>
__device__ __forceinline__ void copy16(T* dst, const T* src) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    const unsigned s = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" :: "r"(s), "l"(src));
#else
    for (int i = 0; i < (int)(16 / sizeof(T)); ++i) dst[i] = src[i];
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

// --------------------------------------------------------------------------- small helpers
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

__device__ __forceinline__ float power(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double power(double a, double b) { return pow(a, b); }
