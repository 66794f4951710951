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
//      by tests/cuda_host/cuda_shim.h with the PTX ISA's fragment layout); Hopper's warpgroup
//      MMA (wgmma, sm_90a only) on shared-memory descriptors, with its fences (emulated alike)
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
                        // there when an index it reads lies outside [0, h*w), -h*w when it
                        // lies outside its window
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

// Hopper's warpgroup MMA (sm_90a; the module built for it, gpu_plan.wgmma_kernel_names). Both
// operands are read from shared memory through matrix descriptors (PTX ISA, "Matrix Descriptor
// Format"): the start address, the leading-dimension byte offset (LBO: from one core matrix to
// the next along the reduction) and the stride-dimension byte offset (SBO: to the next along
// the rows or columns), each in 16-byte units, no swizzle, base offset 0. A core matrix is 8
// rows of 16 bytes (4 TF32 along the reduction), 128 contiguous bytes; TF32 operands must be
// reduction-major ("K-major").
__device__ __forceinline__ unsigned shared_address(const void* p) {
#ifdef __CUDA_ARCH__
    return (unsigned)__cvta_generic_to_shared(p);
#else
    return host_shared_address(p);
#endif
}

__device__ __forceinline__ unsigned long long wgmma_desc(const float* p, unsigned lbo, unsigned sbo) {
    return (unsigned long long)((shared_address(p) & 0x3ffffu) >> 4)
           | (unsigned long long)(lbo >> 4) << 16 | (unsigned long long)(sbo >> 4) << 32;
}

// The wgmma kernels compile to a trap anywhere but sm_90a (their module is built for it alone).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define WGMMA_ASM(...) asm volatile(__VA_ARGS__)
#elif defined(__CUDA_ARCH__)
#define WGMMA_ASM(...) __trap()
#else
#define WGMMA_ASM(...) ((void)0)
#endif

// wgmma.fence before a warpgroup's first wgmma of a step (its accumulators were last written
// by other instructions), commit the wgmmas issued since, wait until at most N groups are in
// flight; fence.proxy.async: this thread's shared-memory writes (cp.async's included) made
// visible to the async proxy, through which wgmma reads its operands.
__device__ __forceinline__ void wgmma_fence() { WGMMA_ASM("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() {
    WGMMA_ASM("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#ifndef __CUDA_ARCH__
    host_wgmma_commit();
#endif
}
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    WGMMA_ASM("wgmma.wait_group.sync.aligned %0;\n" :: "n"(N) : "memory");
#ifndef __CUDA_ARCH__
    host_wgmma_wait(N);
#endif
}
__device__ __forceinline__ void fence_proxy_async() { WGMMA_ASM("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// d (64 x 128 of this warpgroup) += a (64 x 8) * b (8 x 128), TF32 inputs, float32
// accumulation: warp w of the warpgroup holds rows 16w .. 16w+15, lane 4*g + t of it, for each
// 8 columns j, d[4j .. 4j+3] = rows g, g, g+8, g+8 x columns 8j + 2t, 8j + 2t + 1 (the PTX ISA's
// wgmma .m64nNk8 accumulator layout: mma.m16n8's, repeated along the columns).
// The 64 accumulators as the asm's first operands (%0 .. %63), and as its register list.
#define WGMMA_D8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), \
                    "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define WGMMA_ACCUMULATORS WGMMA_D8(0), WGMMA_D8(8), WGMMA_D8(16), WGMMA_D8(24), WGMMA_D8(32), \
                           WGMMA_D8(40), WGMMA_D8(48), WGMMA_D8(56)
#define WGMMA_M64N128K8_TF32 \
    " wgmma.mma_async.sync.aligned.m64n128k8.f32.tf32.tf32 " \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
    "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
    "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
    "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
__device__ __forceinline__ void wgmma_m64n128k8_tf32(float* d, unsigned long long a, unsigned long long b) {
    WGMMA_ASM("{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n" WGMMA_M64N128K8_TF32
              "%64, %65, p, 1, 1;\n}\n"
              : WGMMA_ACCUMULATORS
              : "l"(a), "l"(b), "r"(1));  // scale-d 1: d += a * b
#ifndef __CUDA_ARCH__
    host_wgmma_issue(d, a, nullptr, b, 128);
#endif
}

// The same with a from registers (wgmma's "RS" form): each warp's 16 rows x 8 reduction
// columns as mma_tf32's A fragment (lane 4*g + t: a[0..3] = rows g, g+8 x columns t, t+4, in
// the order g/t, g+8/t, g/t+4, g+8/t+4). The registers are read while the wgmma runs: they
// must not change until a wgmma_wait has completed it (wgmma_pin).
__device__ __forceinline__ void wgmma_m64n128k8_tf32_rs(float* d, const unsigned* a, unsigned long long b) {
    WGMMA_ASM("{\n .reg .pred p;\n setp.ne.b32 p, %69, 0;\n" WGMMA_M64N128K8_TF32
              "{%64, %65, %66, %67}, %68, p, 1, 1;\n}\n"
              : WGMMA_ACCUMULATORS
              : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));  // scale-d 1
#ifndef __CUDA_ARCH__
    host_wgmma_issue(d, 0, a, b, 128);
#endif
}
#undef WGMMA_M64N128K8_TF32
#undef WGMMA_ACCUMULATORS
#undef WGMMA_D8

// Registers the wgmmas of a step use (their accumulators; the register form's A fragments)
// pinned up to here, after the wait that completes them: the compiler neither moves a read of
// an accumulator before the wait nor gives an A fragment's register to another value before it.
__device__ __forceinline__ void wgmma_pin(float& v) {
#ifdef __CUDA_ARCH__
    asm volatile("" : "+f"(v) :: "memory");
#endif
}
__device__ __forceinline__ void wgmma_pin(unsigned& v) {
#ifdef __CUDA_ARCH__
    asm volatile("" : "+r"(v) :: "memory");
#endif
}
template <int N, typename R>
__device__ __forceinline__ void wgmma_pin(R* v) {
#pragma unroll
    for (int i = 0; i < N; ++i) wgmma_pin(v[i]);
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
