// conv.cu: the cupy backend's convolution kernels, as implicit GEMMs (no im2col buffer).
//
// reference: gpuconv.backends.reference.conv2d, reference.conv2d_grad_input,
//            reference.conv2d_grad_weight, reference.conv2d_grad_bias (plain NumPy, the maths)
// What they compute (the slides' formulas), and the NumPy function each result must equal:
//   forward      y[n,o,i,j]  = bias[o] + sum_{c,r,s} w[o,c,r,s] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl]
//                (numpy_backend.conv2d; c runs over the group of o)
//   grad-input   dx[n,c,h,w] = sum of w[o,c,r,s] * dy[n,o,i,j] over h = i*sh + r*dh - pt, w = j*sw + s*dw - pl
//                (numpy_backend.conv2d_grad_input; also conv_transpose2d's forward)
//   grad-weight  dw[o,c,r,s] = sum_{n,i,j} dy[n,o,i,j] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl]
//                (numpy_backend.conv2d_grad_weight)
//   grad-bias    db[o] = sum_{n,i,j} dy[n,o,i,j]            (numpy_backend.conv2d_grad_bias)
//
// Kernels (the planner, gpuconv/backends/gpu_plan.py, picks one per call):
//   conv_gemm<T, BM, BN, BK, TM, TN, WGRAD, ZERO_PAD, Index>   GEMM on CUDA cores (FFMA)
//   conv_gemm_mma<TERMS, BM, BN, WGRAD, VEC_A, ZERO_PAD, Index>  the same GEMM on tensor cores:
//        mma.sync m16n8k8 TF32, float32 accumulation; TERMS 1: "tf32", TERMS 3: "tf32x3" (a*b as
//        big*big + big*small + small*big, big = tf32(a), small = a - big: FP32 accuracy); VEC_A:
//        A copied 16 bytes at a time where its rows run on along the reduction
//   conv_gemm_wgmma<TERMS, BM, BN, WGRAD, VEC_A, ZERO_PAD, Index>  the same GEMM on Hopper's
//        warpgroup MMA (wgmma, sm_90a: its own module), B (and A, TF32) read from shared memory
//        by descriptors
//   conv_direct<T, ROWS>    forward / grad-input writing at most 4 channels per slice (the stem's
//        and DeepSpeech's grad-input; depthwise convs run depthwise.cu): four pixels a thread,
//        consecutive ones sliding a window of input columns along each kernel row where the
//        slice allows, weights in shared memory
//   conv_splitk_reduce<T>   split-K partials summed in split order, then bias and ReLU
//   conv_grad_bias<T>       one block per channel, fixed tree
//   conv_pad_adjoint<T>     grad-input under reflect / replicate / circular padding
//   conv_fill_bias<T>       grad-input positions that no kernel tap reaches: the bias, or zero
//
// The GEMM of one launch slice (blockIdx.z: a group, a stride phase of grad-input, a split of
// the reduction): out[row, col] = sum_k A[row, k] * B[k, col], where
//   forward, grad-input: rows = channels written, cols = pixels (n, i, j), k = taps (c, r, s);
//                        A = weight, B = the input (grad_out for grad-input) at pixel + tap;
//   grad-weight:         rows = O/G, cols = taps (c, r, s), k = pixels (n, i, j);
//                        A = grad_out, B = the input at pixel + tap.
// Grad-input is a gather: output rows of one stride phase are reached by every s/g-th tap (g =
// gcd(s, d)), a stride-1 correlation of grad_out (numpy_backend._phase_taps).
//
// Pixels and taps are both "lattices": an index split into three digits (outer, middle, inner),
// each digit moving the A offset, the B row / column and the output offset by a fixed step. A
// thread decodes its fixed columns once (with division) and walks its reduction lattice by a
// constant BK-step with carries (CUTLASS's "optimized" iterator idea): no division, no modulo and
// 32-bit offsets (Index = int) in the main loop; a 64-bit instantiation serves tensors past 2^31
// elements. Zero padding is a predicated (zero-filling) cp.async whose test is one AND of
// kernel-tap bit masks (Bounds); other padding modes read through source_index in their own
// instantiation. Both GEMMs stage their output tile through shared memory, so that warps
// store runs of one output row (16-byte stores where rows are aligned).
#include "common.cuh"

enum Pass { GATHER = 0, WGRAD = 1 };

// --------------------------------------------------------------------------- lattices
// Index i = (d0 * n1 + d1) * n2 + d2 maps to A offset a0*d0 + a1*d1 + a2*d2, B offset b0*d0 (the
// outer axis) plus row h0 + hs*d1 and column w0 + ws*d2, output offset o0*d0 + o1*d1 + o2*d2.
template <typename Index>
struct Lattice {
    int n1, n2;
    Index a0, a1, a2, b0, o0, o1, o2;
    int h0, hs, w0, ws;
};

// A lattice position: the digits and what they address.
template <typename Index>
struct Position {
    int d0, d1, d2;
    Index a, b, o;  // b: the outer-axis offset only
    int h, w;
};

template <typename Index>
__device__ __forceinline__ Position<Index> place(const Lattice<Index>& L, int d0, int d1, int d2) {
    Position<Index> p;
    p.d0 = d0; p.d1 = d1; p.d2 = d2;
    p.a = L.a0 * d0 + L.a1 * d1 + L.a2 * d2;
    p.b = L.b0 * d0;
    p.o = L.o0 * d0 + L.o1 * d1 + L.o2 * d2;
    p.h = L.h0 + L.hs * d1;
    p.w = L.w0 + L.ws * d2;
    return p;
}

// Decode index i (setup code only: it divides).
template <typename Index>
__device__ __forceinline__ Position<Index> decode(const Lattice<Index>& L, Index i) {
    const Index inner = i / L.n2;
    return place(L, (int)(inner / L.n1), (int)(inner % L.n1), (int)(i % L.n2));
}

// A constant step through a lattice, as digits (s0, s1, s2): advancing is two carries.
struct Step { int s0, s1, s2; };

template <typename Index>
__device__ __forceinline__ Step step_of(const Lattice<Index>& L, int by) {
    Step s;
    s.s2 = by % L.n2;
    s.s1 = by / L.n2 % L.n1;
    s.s0 = by / (L.n2 * L.n1);
    return s;
}

template <typename Index>
__device__ __forceinline__ void advance(const Lattice<Index>& L, int& d0, int& d1, int& d2, const Step& s) {
    d2 += s.s2; d1 += s.s1; d0 += s.s0;
    if (d2 >= L.n2) { d2 -= L.n2; ++d1; }
    if (d1 >= L.n1) { d1 -= L.n1; ++d0; }
}

// --------------------------------------------------------------------------- one slice's geometry
// One spatial axis of a slice: pixel q (0 <= q < count) and tap t (0 <= t < taps) read B row
// q*sq + t*st + off; weight row first + t*step; the output row q*so + ro.
struct Axis { int count, taps, first, step, sq, st, off, so, ro; };

__device__ __forceinline__ Axis forward_axis(int count, int k, int s, int d, int pad) {
    Axis a;
    a.count = count; a.taps = k; a.first = 0; a.step = 1;
    a.sq = s; a.st = d; a.off = -pad; a.so = 1; a.ro = 0;
    return a;
}

__device__ __forceinline__ int gcd_int(int a, int b) {
    while (b) { const int t = a % b; a = b; b = t; }
    return a;
}

// Grad-input, stride phase r: the padded rows r + s*u in [lo, lo + len). Tap i reaches them iff
// i*d = r (mod s): taps first, first + s/g, ... (g = gcd(s, d)); the grad_out row they read,
// (r + s*u - i*d) / s, steps by -d/g per tap (numpy_backend._phase_taps).
__device__ __forceinline__ Axis phase_axis(int r, int k, int s, int d, int lo, int len) {
    Axis a;
    const int g = gcd_int(s, d);
    a.step = s / g;
    a.first = -1;
    for (int i = 0; i < imin(k, s); ++i)
        if ((i * d) % s == r) { a.first = i; break; }
    a.taps = a.first < 0 ? 0 : (k - a.first + a.step - 1) / a.step;
    a.first = imax(a.first, 0);
    const int u0 = (lo - r + s - 1) / s;  // first u with r + s*u >= lo
    a.count = imax(0, (lo + len - r + s - 1) / s - u0);
    a.sq = 1;
    a.st = -(d / g);
    a.off = (r - a.first * d) / s + u0;   // exact: first*d = r (mod s)
    a.so = s;
    a.ro = r + s * u0 - lo;
    return a;
}

// Everything a GEMM block of slice z needs: the row map, the two lattices, B's bounds.
template <typename Index>
struct Slice {
    const void* a;
    const void* b;
    Step step;                   // the reduction lattice's BK step
    int M, split;
    Index cols, K;               // GEMM columns and reduction length of the slice
    Index a_base, a_row;         // A(row m, k) = a[a_base + m*a_row + k's offset]
    Index b_base, b_sh, b_sw;    // B's group offset and row / column strides
    int b_h, b_w;
    Index o_base, o_row;         // out(row m, col) = out[o_base + m*o_row + col's offset]
    Lattice<Index> col, red;     // the columns' lattice and the reduction's
};

// Stride phase j (counting only phases that some tap reaches) of grad-input, as its two axes.
__device__ __forceinline__ bool nth_live_phase(const ConvParams& p, int j, Axis& ah, Axis& aw) {
    for (int rh = 0; rh < (int)p.sh; ++rh) {
        ah = phase_axis(rh, (int)p.kh, (int)p.sh, (int)p.dh, (int)p.lo_h, (int)p.len_h);
        if (ah.taps == 0 || ah.count == 0) continue;
        for (int rw = 0; rw < (int)p.sw; ++rw) {
            aw = phase_axis(rw, (int)p.kw, (int)p.sw, (int)p.dw, (int)p.lo_w, (int)p.len_w);
            if (aw.taps == 0 || aw.count == 0) continue;
            if (j-- == 0) return true;
        }
    }
    return false;
}

template <typename Index, bool WG>
__device__ __forceinline__ bool make_slice(const ConvParams& p, int z, int bk, Slice<Index>& s) {
    const i64* as = p.a_stride;
    const i64* bs = p.b_stride;
    const int per_group = (int)(p.phases * p.splits);
    const int g = z / per_group, phase = z % per_group / (int)p.splits;
    s.split = z % (int)p.splits;
    s.M = (int)p.m;
    s.a = p.a;
    s.b = p.b;
    Axis ah, aw;
    if (p.transposed) {
        if (!nth_live_phase(p, phase, ah, aw)) return false;
    } else {
        ah = forward_axis((int)p.q_h, (int)p.kh, (int)p.sh, (int)p.dh, (int)p.pt);
        aw = forward_axis((int)p.q_w, (int)p.kw, (int)p.sw, (int)p.dw, (int)p.pl);
    }
    s.b_sh = (Index)bs[2]; s.b_sw = (Index)bs[3];
    s.b_h = (int)p.b_h; s.b_w = (int)p.b_w;
    s.b_base = (Index)(g * p.kc * bs[1]);
    // pixels (n, qh, qw) and taps (c, th, tw)
    Lattice<Index> pix, tap;
    pix.n1 = ah.count; pix.n2 = aw.count;
    pix.b0 = (Index)bs[0];
    pix.h0 = ah.off; pix.hs = ah.sq; pix.w0 = aw.off; pix.ws = aw.sq;
    pix.o0 = (Index)(p.out_c * p.out_h * p.out_w);
    pix.o1 = (Index)(ah.so * p.out_w); pix.o2 = (Index)aw.so;
    tap.n1 = ah.taps; tap.n2 = aw.taps;
    tap.b0 = (Index)bs[1];
    tap.h0 = 0; tap.hs = ah.st; tap.w0 = 0; tap.ws = aw.st;
    tap.o0 = (Index)(p.kh * p.kw); tap.o1 = (Index)p.kw; tap.o2 = 1;
    const Index taps = (Index)p.kc * ah.taps * aw.taps;
    const Index pixels = (Index)p.batch * ah.count * aw.count;
    if (WG) {  // A = grad_out (N, O, q_h, q_w): rows O/G, reduction over pixels
        s.a_base = (Index)(g * p.m * as[1]); s.a_row = (Index)as[1];
        pix.a0 = (Index)as[0]; pix.a1 = (Index)as[2]; pix.a2 = (Index)as[3];
        tap.a0 = tap.a1 = tap.a2 = 0;
        s.o_row = (Index)taps;
        s.o_base = (Index)((s.split * p.out_c + g * p.m) * taps);
        s.cols = taps; s.K = pixels;
        s.col = tap; s.red = pix;
    } else {   // A = weight: forward (O, C/G, kH, kW) rows o; grad-input rows c, taps (o, th, tw)
        const int row_axis = p.transposed ? 1 : 0, red_axis = p.transposed ? 0 : 1;
        s.a_base = (Index)(g * (p.transposed ? p.kc : p.m) * as[0] + ah.first * as[2] + aw.first * as[3]);
        s.a_row = (Index)as[row_axis];
        tap.a0 = (Index)as[red_axis]; tap.a1 = (Index)(ah.step * as[2]); tap.a2 = (Index)(aw.step * as[3]);
        pix.a0 = pix.a1 = pix.a2 = 0;
        s.o_row = (Index)(p.out_h * p.out_w);
        s.o_base = (Index)(s.split * p.batch * p.out_c * p.out_h * p.out_w
                           + (g * p.m * p.out_h + ah.ro) * p.out_w + aw.ro);
        s.cols = pixels; s.K = taps;
        s.col = pix; s.red = tap;
    }
    s.step = step_of(s.red, bk);
    return true;
}

// The slice of this block, computed once into shared memory (so it holds no registers through
// the main loop); false when the block has nothing to compute.
template <typename Index, bool WG>
__device__ __forceinline__ bool block_slice(const ConvParams& p, int bk, int bm, int bn,
                                            Slice<Index>& s) {
    __shared__ bool live;
    if (threadIdx.x == 0)
        live = make_slice<Index, WG>(p, (int)blockIdx.z, bk, s) && (Index)blockIdx.x * bn < s.cols
               && (int)blockIdx.y * bm < s.M;
    __syncthreads();
    return live;
}

// --------------------------------------------------------------------------- tile loader
// How the loader finds B's elements that lie in the padding (zeros, never read). Under zero
// padding a pixel reads B inside at some kernel taps, a set of bits: row tap t bit t, column
// tap t bit n1 + t (n1 + n2 <= MASK_TAPS), and a copy's test is one AND:
//   TAP_MASKS    the reduction over taps (forward, grad-input): each column (a pixel) holds
//                its in-bounds taps, each reduction step its tap's two bits;
//   PIXEL_MASKS  the reduction over pixels (the tensor-core grad-weight): each column (a tap)
//                holds its two bits, each step its pixel's in-bounds taps, from a per-block
//                table of the taps in bounds at each pixel row and column (at most MASK_PIXELS
//                of each: 8 KiB of shared memory);
//   PIXEL_BOUNDS the reduction over pixels where the table does not pay: the CUDA-core
//                grad-weight (its copies are a few percent of its loop, and the table would
//                cost its 64-thread tiles a resident block) and 3xTF32's 128-register tiles
//                (their split fragments leave no registers for it: ptxas spills): the row and
//                column a copy reads, against B's bounds;
//   SOURCE_INDEX reflect / replicate / circular, and zero padding past the masks' limits:
//                source_index maps the row and column.
enum Bounds { TAP_MASKS, PIXEL_MASKS, PIXEL_BOUNDS, SOURCE_INDEX };
constexpr int MASK_TAPS = 31;                 // gpu_plan.MASK_TAPS; bit 31 is never a tap's
constexpr int MASK_PIXELS = 1024;             // gpu_plan.MASK_PIXELS
constexpr unsigned NO_TAP = 1u << MASK_TAPS;  // a test no column passes: past the reduction

__host__ __device__ constexpr Bounds bounds_of(bool zero_pad, bool wgrad, bool pixel_masks) {
    return !zero_pad ? SOURCE_INDEX : !wgrad ? TAP_MASKS : pixel_masks ? PIXEL_MASKS : PIXEL_BOUNDS;
}

// The taps t < taps.n1 at which a pixel at row h reads inside [0, b_h) (setup code); columns
// alike with the lattice's second digit.
template <typename Index>
__device__ unsigned row_taps(int h, const Lattice<Index>& taps, int b_h) {
    unsigned m = 0;
    for (int t = 0; t < taps.n1; ++t)
        if ((unsigned)(h + taps.h0 + taps.hs * t) < (unsigned)b_h) m |= 1u << t;
    return m;
}
template <typename Index>
__device__ unsigned column_taps(int w, const Lattice<Index>& taps, int b_w) {
    unsigned m = 0;
    for (int t = 0; t < taps.n2; ++t)
        if ((unsigned)(w + taps.w0 + taps.ws * t) < (unsigned)b_w) m |= 1u << (taps.n1 + t);
    return m;
}

// PIXEL_MASKS: the block's table of the taps in bounds at each reduction row, then (from
// MASK_PIXELS on) at each reduction column; static shared memory, so its address costs the
// loader no register.
__device__ __forceinline__ unsigned* pixel_tap_table() {
    __shared__ unsigned table[2 * MASK_PIXELS];
    return table;
}

// A block column of B as the loader reads it: its whole offset (zero padding; else its outer
// axis only), the row and column it starts from (row NO_ROW: past the slice, a zero), and
// under the tap masks its taps (as Bounds: none past the slice) in place of the column, which
// they do not read: 16 bytes whatever the Index, the taps next to the offset.
template <typename Index>
struct alignas(16) Column {
    Index b;
    union {
        int w;
        unsigned taps;  // TAP_MASKS, PIXEL_MASKS
    };
    int h;
};
static_assert(sizeof(Column<int>) == 16 && sizeof(Column<long long>) == 16, "one 16-byte entry");
constexpr int NO_ROW = -(1 << 30);  // out of every row range, even after a tap's shift

// Where element (k, r) of a BK-deep tile of R rows or columns lives in one shared stage.
// KMajor: k-major rows of R + 4 (the CUDA-core GEMM reads a row of outputs' operands per k).
// KInner: r-major rows of 16 k (the tensor-core GEMM's A, its MMA's B operand: a fragment is 2
// adjacent k of one row, and 4 adjacent k stay 16 adjacent bytes for 16-byte copies);
// KPairs: rows r and r + 8 of each 16 interleaved along k (the tensor-core GEMM's B, its MMA's
// A operand: rows grp and grp + 8 at 2 adjacent k are one 16-byte fragment). The 8-wide k
// halves are swapped on alternate row groups so that fragment reads hit 32 distinct banks.
// The loader's lane l of L (a lane: the threads of one reduction step's row or column) copies
// rows first(l) + step(j, L) for j < R / L: l + j*L, except in KPairs (below), for the L
// that fits(L). shift(d): at(k, r + d) - at(k, r) for those rows and steps, a compile-time
// constant, so a thread's copies address shared memory by immediates. K_LANES: the adjacent k
// a warp's copies take (of 32 / K_LANES lanes), so that they hit 32 banks (KMajor: each k's
// row starts 4 banks after the last, 8 k x 4 rows; KInner: 16 k x 2 rows are 32 adjacent words).
template <int R, int BK>
struct KMajor {
    static constexpr int SIZE = BK * (R + 4), K_LANES = 8;
    static_assert((R + 4) % 32 == 4, "rows 4 words apart, modulo 32 banks");
    static __host__ __device__ constexpr bool fits(int lanes) { return lanes >= 1; }
    static __device__ __forceinline__ int at(int k, int r) { return k * (R + 4) + r; }
    static __host__ __device__ constexpr int shift(int d) { return d; }
    static __device__ __forceinline__ int first(int l) { return l; }
    static __host__ __device__ constexpr int step(int j, int lanes) { return j * lanes; }
};
template <int R, int BK>
struct KInner {
    static_assert(BK == 16, "two 8-wide halves per row");
    static constexpr int SIZE = R * BK, K_LANES = 16;
    static __host__ __device__ constexpr bool fits(int lanes) { return lanes % 4 == 0; }
    static __device__ __forceinline__ int at(int k, int r) { return r * BK + (k ^ ((r & 2) << 2)); }
    static __host__ __device__ constexpr int shift(int d) { return d * BK; }
    static __device__ __forceinline__ int first(int l) { return l; }
    static __host__ __device__ constexpr int step(int j, int lanes) { return j * lanes; }
};
// KPairs: row r's elements all lie in banks of one parity, bit 3 of r, so a warp's two lanes
// copy rows 8 apart (their 32 one-element copies then hit 32 banks): lane l starts at
// l/2 + 8*(l%2), and its copies run L/2 rows on within each 8, then 16 on (the low 3 bits of
// r + d never carry: shift(d) holds for those steps too).
template <int R, int BK>
struct KPairs {
    static_assert(BK == 16 && R % 16 == 0, "two 8-wide halves per row, 16-row groups");
    static constexpr int SIZE = R * BK, K_LANES = 16;
    static __host__ __device__ constexpr bool fits(int lanes) { return lanes % 2 == 0 && 16 % lanes == 0; }
    static __device__ __forceinline__ int at(int k, int r) {
        return (r >> 4) * 16 * BK + (r & 7) * 2 * BK + ((k ^ ((r & 1) << 3)) << 1) + ((r >> 3) & 1);
    }
    static __host__ __device__ constexpr int shift(int d) {
        return (d >> 4) * 16 * BK + (d & 7) * 2 * BK + ((d >> 3) & 1);
    }
    static __device__ __forceinline__ int first(int l) { return l / 2 + 8 * (l % 2); }
    static __host__ __device__ constexpr int step(int j, int lanes) {
        return lanes / 2 * (j % (16 / lanes)) + 16 * (j / (16 / lanes));
    }
};

// CoreK: the wgmma GEMM's A and B, both reduction-major in core matrices of 8 rows x 4 k (128
// contiguous bytes, rows 16 bytes apart): the 4 core matrices of a 16-deep step's 8 rows next
// to each other (LBO 128 bytes), the next 8 rows after them (SBO 512 bytes). A warp's copies
// take 4 adjacent k of 8 adjacent rows (32 banks); a 16-byte copy is one core-matrix row.
template <int R, int BK>
struct CoreK {
    static_assert(BK == 16 && R % 8 == 0, "4 core matrices along a step, 8-row groups");
    static constexpr int SIZE = R * BK, K_LANES = 4;
    static constexpr unsigned LBO = 8 * 16, SBO = BK / 4 * LBO;  // bytes
    static __host__ __device__ constexpr bool fits(int lanes) { return lanes % 8 == 0; }
    static __device__ __forceinline__ int at(int k, int r) {
        return (r >> 3) * (8 * BK) + (k >> 2) * 32 + (r & 7) * 4 + (k & 3);
    }
    static __host__ __device__ constexpr int shift(int d) { return (d >> 3) * (8 * BK); }
    static __device__ __forceinline__ int first(int l) { return l; }
    static __host__ __device__ constexpr int step(int j, int lanes) { return j * lanes; }
};

// Fills the A (BM x BK) and B (BK x BN) tiles of one reduction step into shared memory, at
// LA::at(k, m) and LB::at(k, n). Thread t always loads one reduction lane kk of the rows and
// columns of its lane l (of THREADS / BK; a warp takes K_LANES adjacent kk of 32 / K_LANES
// lanes): its A rows l + i*(THREADS / BK) are one offset and a count; its B columns are the
// block's column table in shared memory (registers stay for the accumulators), but for HOLD
// (the 64 x 64-warp tiles, one block an SM: their 255 registers have room for 32-bit
// entries), which reads its PB entries once into registers; only its reduction position
// moves, by BK per step.
// VEC_A: A's rows run on along the reduction in 16-byte aligned runs of V elements
// (gpu_plan.a_runs: a forward's weight, a grad-weight's grad_out planes), so thread t copies the
// run of its lane kk, 16 bytes, from rows l*V + kk % V + i*(THREADS*V / BK): the run's
// offset is its lane's less kk % V, and the run exists where its lane does.
template <typename T, typename Index, int BM, int BN, int BK, int THREADS, class LA, class LB,
          Bounds BOUNDS, bool VEC_A = false, bool HOLD = false>
struct Loader {
    static constexpr bool ZERO_PAD = BOUNDS != SOURCE_INDEX;
    static constexpr int K = BK, M = BM, N = BN;
    typedef T Type;
    typedef LA LayoutA;
    typedef LB LayoutB;
    static constexpr int V = VEC_A ? 16 / (int)sizeof(T) : 1;  // A elements a copy
    static constexpr int STRIDE = THREADS / BK, A_STRIDE = STRIDE * V;
    static constexpr int PA = BM * BK / (THREADS * V), PB = BN * BK / THREADS;
    static_assert(PA >= 1 && PB >= 1 && THREADS % BK == 0 && BK % V == 0, "tile shape");
    static_assert((STRIDE & (STRIDE - 1)) == 0 && LA::fits(A_STRIDE) && LB::fits(STRIDE),
                  "row strides the layouts shift by constants");
    static constexpr int KL = LA::K_LANES < BK ? LA::K_LANES : BK;  // adjacent kk a warp takes
    static_assert(LA::K_LANES == LB::K_LANES && BK % KL == 0 && THREADS % (32 * BK / KL) == 0,
                  "warps of whole lanes");

    const Slice<Index>& s;      // shared: read where needed, so it holds no registers
    const Column<Index>* cols;  // shared: BN entries, B's group offset included
    Index a_row;                // A offset of its first row (less kk % V), the group's included
    int a_rows;                 // how many of its PA rows exist
    int a_dst, b_dst;           // where its first row's and column's element goes in a stage
    int d0, d1, d2;             // this thread's reduction position, as digits
    Index k_left;               // reduction indices left from this thread's position
    int mode, lane;             // this thread's first B column: LB::first(its lane)
    Column<Index> held[HOLD ? PB : 1];  // HOLD: its PB columns' entries, read once

    // Thread tid's reduction lane kk and its lane l (as tid % BK and tid / BK where a warp
    // takes all BK, KL == BK).
    static __device__ __forceinline__ void lanes(int tid, int& kk, int& l) {
        kk = KL == BK ? tid % BK : tid % KL + tid / 32 % (BK / KL) * KL;
        l = KL == BK ? tid / BK : tid % 32 / KL + tid / (32 * BK / KL) * (32 / KL);
    }
    // Its first A row (its V-run's, which starts at k = kk - kk % V).
    static __device__ __forceinline__ int first_a_row(int kk, int l) { return l * V + kk % V; }
    // Where its copy i of A and copy j of B go in a stage (tests/test_loader_banks.py checks
    // that every element is copied once to its place and a warp's copies hit 32 banks).
    static __device__ __forceinline__ int a_dst_of(int kk, int l) {
        return LA::at(kk - kk % V, first_a_row(kk, l));
    }
    static __device__ __forceinline__ int b_dst_of(int kk, int l) { return LB::at(kk, LB::first(l)); }
    static __host__ __device__ constexpr int a_shift(int i) { return LA::shift(i * A_STRIDE); }
    static __host__ __device__ constexpr int b_shift(int j) { return LB::shift(LB::step(j, STRIDE)); }

    __device__ Loader(const ConvParams& p, const Slice<Index>& sl, Column<Index>* table, int m0,
                      Index col0, Index k0)
        : s(sl), cols(table), mode((int)p.mode) {
        const int tid = (int)threadIdx.x;
        int kk, l;
        lanes(tid, kk, l);
        lane = LB::first(l);
        const int first_row = first_a_row(kk, l);
        a_row = sl.a_base + (Index)(m0 + first_row) * sl.a_row - kk % V;
        a_rows = imax(0, imin(PA, (sl.M - m0 - first_row + A_STRIDE - 1) / A_STRIDE));
        a_dst = a_dst_of(kk, l);
        b_dst = b_dst_of(kk, l);
        for (int j = tid; j < BN; j += THREADS) {
            const Index col = col0 + j;
            const Position<Index> c = decode(sl.col, col < sl.cols ? col : Index(0));
            table[j].b = sl.b_base + (ZERO_PAD ? c.b + (Index)c.h * sl.b_sh + (Index)c.w * sl.b_sw : c.b);
            table[j].h = col < sl.cols ? c.h : NO_ROW;
            table[j].w = c.w;  // the masks' taps take its place
            if (BOUNDS == TAP_MASKS)
                table[j].taps = col < sl.cols ? row_taps(c.h, sl.red, sl.b_h)
                                                    | column_taps(c.w, sl.red, sl.b_w) : 0u;
            if (BOUNDS == PIXEL_MASKS)
                table[j].taps = col < sl.cols ? 1u << c.d1 | 1u << (sl.col.n1 + c.d2) : NO_TAP;
        }
        if constexpr (BOUNDS == PIXEL_MASKS) {
            const Lattice<Index>& q = sl.red;
            unsigned* const taps_at = pixel_tap_table();
            for (int i = tid; i < q.n1 + q.n2; i += THREADS) {
                const int j = i - q.n1;  // a reduction column, from MASK_PIXELS on
                if (j < 0) taps_at[i] = row_taps(q.h0 + q.hs * i, sl.col, sl.b_h);
                else taps_at[MASK_PIXELS + j] = column_taps(q.w0 + q.ws * j, sl.col, sl.b_w);
            }
        }
        __syncthreads();
        if constexpr (HOLD)
#pragma unroll
            for (int j = 0; j < PB; ++j) held[j] = table[lane + LB::step(j, STRIDE)];
        k_left = sl.K - k0 - kk;
        const Position<Index> k = decode(sl.red, k_left > 0 ? k0 + kk : Index(0));
        d0 = k.d0; d1 = k.d1; d2 = k.d2;
    }

    // Its B column j's entry.
    __device__ __forceinline__ Column<Index> column(int j) const {
        if constexpr (HOLD) return held[j];
        else return cols[lane + LB::step(j, STRIDE)];
    }

    // Copy the current reduction step into stage (as, bs), then move to the next step.
    __device__ __forceinline__ void load(T* as, T* bs) {
        const bool k_ok = k_left > 0;
        const Position<Index> k = place(s.red, d0, d1, d2);
        const T* a = (const T*)s.a;
        const T* b = (const T*)s.b;
        const Index b_sh = s.b_sh, b_sw = s.b_sw, a_step = (Index)A_STRIDE * s.a_row;
#pragma unroll
        for (int i = 0; i < PA; ++i) {
            T* const dst = as + a_dst + a_shift(i);
            if (VEC_A) copy_async16(dst, a, a_row + i * a_step + k.a, i < a_rows && k_ok);
            else copy_async(dst, a, a_row + i * a_step + k.a, i < a_rows && k_ok);
        }
        const Index kb = ZERO_PAD ? k.b + (Index)k.h * b_sh + (Index)k.w * b_sw : k.b;
        // this step's tap (TAP_MASKS) or its pixel's taps in bounds (PIXEL_MASKS)
        const unsigned tap = BOUNDS != TAP_MASKS ? 0u
                             : k_ok ? 1u << d1 | 1u << (s.red.n1 + d2) : NO_TAP;
        unsigned outside = ~0u;  // this step's pixel's taps out of bounds (PIXEL_MASKS)
        if constexpr (BOUNDS == PIXEL_MASKS)
            if (k_ok) outside = ~(pixel_tap_table()[d1] | pixel_tap_table()[MASK_PIXELS + d2]);
        const int b_h = s.b_h, b_w = s.b_w;  // PIXEL_BOUNDS, SOURCE_INDEX
        // Zero padding: the column table read GROUP entries at a time, then their copies (ptxas
        // pads every table read that a copy follows with never-issued reads: once per group).
        constexpr int GROUP = PB < 4 ? PB : 4;
#pragma unroll
        for (int j0 = 0; j0 < PB && ZERO_PAD; j0 += GROUP) {
            Index off[GROUP];
            bool ok[GROUP];
#pragma unroll
            for (int j = 0; j < GROUP; ++j) {
                const Column<Index> c = column(j0 + j);
                off[j] = c.b + kb;
                if (BOUNDS == PIXEL_BOUNDS) {
                    const int h = c.h + k.h, w = c.w + k.w;
                    ok[j] = k_ok && (unsigned)h < (unsigned)b_h && (unsigned)w < (unsigned)b_w;
                } else {
                    ok[j] = BOUNDS == TAP_MASKS ? !(tap & ~c.taps) : !(c.taps & outside);
                }
            }
#pragma unroll
            for (int j = 0; j < GROUP; ++j)
                copy_async(bs + b_dst + b_shift(j0 + j), b, off[j], ok[j]);
        }
#pragma unroll
        for (int j = 0; j < PB && !ZERO_PAD; ++j) {
            const Column<Index> c = column(j);
            const int h = c.h + k.h, w = c.w + k.w;
            T* dst = bs + b_dst + b_shift(j);
            {
                const int sh = source_index(h, b_h, mode), sw = source_index(w, b_w, mode);
                copy_async(dst, b, c.b + kb + (Index)sh * b_sh + (Index)sw * b_sw,
                           k_ok && c.h != NO_ROW && sh >= 0 && sw >= 0);
            }
        }
        advance(s.red, d0, d1, d2, s.step);
        k_left -= BK;
    }
};

// Pipeline depth of the GEMM tiles: STAGES, and WGMMA_STAGES for the TF32 wgmma tiles, whose
// MMAs still read a stage one step after it was handed to them (gemm_mainloop's LAG). The
// stages are the launch's dynamic shared memory (gpu_plan.TileConfig.smem_bytes; past 48 KiB
// for the 128x128 tiles, with the kernel's opt-in).
constexpr int STAGES = 3;
constexpr int WGMMA_STAGES = 4;

// A gemm_mainloop hook that does nothing with a landed stage.
struct NoHook {
    __device__ __forceinline__ void operator()(int) const {}
};

// DEPTH-stage cp.async pipeline over `tiles` reduction steps: step t + AHEAD is copied while
// step t is multiplied; one barrier per step. LAG: the steps after its compute returns that a
// stage is still read (wgmma's in flight, waited for one step later), so AHEAD = DEPTH - 1 -
// LAG and step t's copies go to the stage of step t - 1 - LAG, whose reads everyone has
// completed before the barrier. landed(stage): this thread's own work on its copies of a step
// once they have landed, before the barrier. ASYNC_PROXY: the steps are read by wgmma,
// through the async proxy, which each thread's writes are fenced to before it.
template <int DEPTH, int A_STAGE, int B_STAGE, bool ASYNC_PROXY = false, int LAG = 0, typename T,
          class L, class Compute, class Landed = NoHook>
__device__ __forceinline__ void gemm_mainloop(L& ld, T* As, T* Bs, int tiles, Compute&& compute,
                                              Landed landed = Landed()) {
    constexpr int AHEAD = DEPTH - 1 - LAG;
    static_assert(AHEAD >= 1, "a step copied ahead at least");
#pragma unroll
    for (int s = 0; s < AHEAD; ++s) {
        if (s < tiles) ld.load(As + s * A_STAGE, Bs + s * B_STAGE);
        copy_commit();
    }
    int read = 0, write = AHEAD;  // the stages of step t and of step t + AHEAD
    for (int t = 0; t < tiles; ++t) {
        copy_wait<AHEAD - 1>();  // step t has landed (this thread's copies)
        landed(read);
        if constexpr (ASYNC_PROXY) fence_proxy_async();
        __syncthreads();         // everyone's copies; and the write stage is free
        if (t + AHEAD < tiles) ld.load(As + write * A_STAGE, Bs + write * B_STAGE);
        copy_commit();
        compute(As + read * A_STAGE, Bs + read * B_STAGE);
        read = read == DEPTH - 1 ? 0 : read + 1;
        write = write == DEPTH - 1 ? 0 : write + 1;
    }
}

// This block's reduction steps: all of them, or its split's share.
template <typename Index>
__device__ __forceinline__ void split_range(const ConvParams& p, const Slice<Index>& s, int bk,
                                            Index& k0, int& tiles) {
    const Index all = (s.K + bk - 1) / bk;
    const Index first = (Index)s.split * (Index)p.tiles_per_split;
    const Index n = all - first < (Index)p.tiles_per_split ? all - first : (Index)p.tiles_per_split;
    k0 = first * bk;
    tiles = n > 0 ? (int)n : 0;
}

// One block's share of a GEMM (rows from blockIdx.y * M, columns from blockIdx.x * N): its
// reduction steps (split_range) copied by loader L through DEPTH dynamic shared stages (A's,
// then B's) and handed to compute(as, bs) one at a time (gemm_mainloop, with its LAG and
// landed hook). Returns the stages, in which the epilogue then stages the outputs.
template <class L, bool ASYNC_PROXY = false, int DEPTH = STAGES, int LAG = 0, typename Index,
          class Compute, class Landed = NoHook>
__device__ __forceinline__ typename L::Type* gemm_block(const ConvParams& p, const Slice<Index>& s,
                                                        Compute&& compute, Landed landed = Landed()) {
    typedef typename L::Type T;
    typedef typename L::LayoutA LA;
    typedef typename L::LayoutB LB;
    DYNAMIC_SHARED(T, stages, DEPTH * (LA::SIZE + LB::SIZE));  // then the staged outputs
    __shared__ Column<Index> columns[L::N];
    Index k0;
    int tiles;
    split_range(p, s, L::K, k0, tiles);
    L ld(p, s, columns, (int)blockIdx.y * L::M, (Index)blockIdx.x * L::N, k0);
    gemm_mainloop<DEPTH, LA::SIZE, LB::SIZE, ASYNC_PROXY, LAG>(ld, stages, stages + DEPTH * LA::SIZE,
                                                                tiles, compute, landed);
    return stages;
}

// --------------------------------------------------------------------------- epilogue
// out(row m, col) = v, plus bias and ReLU when this launch is not split (the reduce adds them).
template <typename T, typename Index, bool WG>
struct Epilogue {
    T* out;
    const T* bias;
    bool relu;
    Index o_base, o_row;
    int M, bias_row0;

    __device__ Epilogue(const ConvParams& p, const Slice<Index>& s, int z_group)
        : out((T*)p.out), bias(!WG && p.splits == 1 ? (const T*)p.bias : nullptr),
          relu(!WG && p.splits == 1 && p.relu), o_base(s.o_base), o_row(s.o_row), M(s.M),
          bias_row0(z_group * s.M) {}

    __device__ __forceinline__ T finish(T v, T b) const {
        if (bias) v += b;
        if (relu) v = v < T(0) ? T(0) : v;  // NaN stays NaN, as torch.relu
        return v;
    }

    // Row m, the column at output offset off (-1: past the slice).
    __device__ __forceinline__ void store(int m, Index off, T v) const {
        if (m < M && off >= 0) out[o_base + (Index)m * o_row + off] = finish(v, bias ? bias[bias_row0 + m] : T(0));
    }
};

template <typename Index>
__device__ __forceinline__ Index col_offset(const Slice<Index>& s, Index col) {
    return col < s.cols ? decode(s.col, col).o : Index(-1);
}

// The GEMMs' outputs go through shared memory (the operand stages, consumed by then) in bands
// of staged rows: each warp then stores whole runs of one output row. Staged row r of the band
// of pass `pass` is block row r / 16 * WR + 16 * pass + r % 16 (a warp's WR rows give 16 rows
// to each pass). Columns are XOR-swizzled by (r / 2 % 4) * 8: the accumulators' writes (8 lanes
// on one row, or the tensor-core layout's rows 2 apart, 4 of them x 8 columns a warp) and the
// row reads below hit 32 distinct banks; groups of 8 columns stay together.
template <int BN>
__device__ __forceinline__ int staged_at(int r, int c) { return r * BN + (c ^ (((r >> 1) & 3) << 3)); }

// Stores staged bands. Where the output rows are 16-byte aligned and a row's columns run on
// contiguously (forward and grad-weight outputs), a thread owns W = 16 / sizeof(T) adjacent
// columns and writes them with one 16-byte store when they are contiguous and aligned (one
// scalar store each otherwise: a plane's end, a 7x7 map); otherwise (odd row lengths, strided
// views, grad-input stride phases) it owns one column, and a warp stores 32 adjacent columns.
// Both ways a warp's stores are consecutive columns of one row.
template <typename T, typename Index, bool WG, int BN, int THREADS>
struct TileStore {
    static constexpr int W = 16 / (int)sizeof(T);
    static_assert(THREADS % BN == 0 && BN % 32 == 0, "a thread's columns are fixed; swizzle");
    Epilogue<T, Index, WG> ep;
    int t;         // threadIdx.x
    bool wide;     // block-uniform: W columns a thread, or one
    bool vec;      // this thread's W columns: contiguous, aligned
    Index off[W];  // their output offsets (wide), or off[0] alone

    __device__ TileStore(const ConvParams& p, const Slice<Index>& s, int z_group)
        : ep(p, s, z_group), t(reread<TID_X>()) {
        const Index col0 = (Index)reread<CTAID_X>() * BN;
        wide = aligned16(ep.out + ep.o_base) && ep.o_row % W == 0 && s.col.o2 == 1;
        const Index col = col0 + (wide ? t % (BN / W) * W : t % BN);
        vec = wide;
#pragma unroll
        for (int v = 0; v < W; ++v) {
            off[v] = wide || v == 0 ? col_offset(s, col + v) : Index(-1);
            vec = vec && off[v] == off[0] + v;
        }
        vec = vec && off[0] >= 0 && off[0] % W == 0;
    }

    // A band of R staged rows; m0: block row of staged row 0 (pass included).
    template <int R, int WR>
    __device__ __forceinline__ void band(const T* staged, int m0) const {
        if (wide) rows<W, R, WR>(staged, m0);
        else rows<1, R, WR>(staged, m0);
    }

    // V columns a thread (W or 1; the other branch's indices are taken modulo, never run)
    template <int V, int R, int WR>
    __device__ __forceinline__ void rows(const T* staged, int m0) const {
        constexpr int G = BN / V;  // threads per row
        const int g = t % G;
        for (int r = t / G; r < R; r += THREADS / G) {
            const int m = m0 + r / 16 * WR + r % 16;
            if (m >= ep.M) continue;
            T v[V];
            if (V == W) {
                const Vec16<T> q = *(const Vec16<T>*)(staged + staged_at<BN>(r, g * V));
#pragma unroll
                for (int e = 0; e < V; ++e) v[e] = q.v[e % W];
            } else {
                v[0] = staged[staged_at<BN>(r, g)];
            }
            const T b = ep.bias ? ep.bias[ep.bias_row0 + m] : T(0);
            T* row = ep.out + ep.o_base + (Index)m * ep.o_row;
            if (V == W && vec) {
                Vec16<T> q;
#pragma unroll
                for (int e = 0; e < W; ++e) q.v[e] = ep.finish(v[e % V], b);
                *(Vec16<T>*)(row + off[0]) = q;
            } else {
#pragma unroll
                for (int e = 0; e < V; ++e)
                    if (off[e] >= 0) row[off[e]] = ep.finish(v[e], b);
            }
        }
    }
};

// --------------------------------------------------------------------------- CUDA-core GEMM
// Warps of 4 x 8 lanes; a thread owns TM x TN outputs: TM/4 groups of 4 rows 16 apart and TN/4
// groups of 4 columns 32 apart, so its fragments are 16-byte shared-memory reads that a
// quarter-warp either shares (A) or reads as 128 contiguous bytes (B): no bank conflicts.
template <typename T>
__device__ __forceinline__ void lds4(T* dst, const T* src) {
    if (sizeof(T) == 4) {
        const float4 v = *(const float4*)src;
        dst[0] = v.x; dst[1] = v.y; dst[2] = v.z; dst[3] = v.w;
    } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) dst[i] = src[i];
    }
}

// The CUDA-core GEMM's loader: k-major A and B (tests/test_loader_banks.py checks its copies).
template <typename T, int BM, int BN, int BK, int THREADS, Bounds BOUNDS, typename Index>
using CoreLoader = Loader<T, Index, BM, BN, BK, THREADS, KMajor<BM, BK>, KMajor<BN, BK>, BOUNDS>;

template <typename T, int BM, int BN, int BK, int TM, int TN, bool WG, bool ZERO_PAD, typename Index>
__global__ void __launch_bounds__((BM / (4 * TM)) * (BN / (8 * TN)) * 32, 512 / ((BM / (4 * TM)) * (BN / (8 * TN)) * 32)) conv_gemm(const ConvParams p) {
    constexpr int WARPS_N = BN / (8 * TN), THREADS = (BM / (4 * TM)) * WARPS_N * 32;
    typedef CoreLoader<T, BM, BN, BK, THREADS, bounds_of(ZERO_PAD, WG, false), Index> L;
    typedef typename L::LayoutA LA;
    typedef typename L::LayoutB LB;
    // index decoding: block (x: BN columns, y: BM rows, z: slice); warp (wm, wn); lane (ly, lx)
    __shared__ Slice<Index> s;
    const bool live = block_slice<Index, WG>(p, BK, BM, BN, s);
    // thread t's first row and column: warp t / 32 = (wm, wn), lane t % 32 = (ly, lx)
    const auto first_row = [](int t) { return t / 32 / WARPS_N * 4 * TM + t % 32 / 8 * 4; };
    const auto first_col = [](int t) { return t / 32 % WARPS_N * 8 * TN + t % 32 % 8 * 4; };
    const int row0 = first_row((int)threadIdx.x), c0 = first_col((int)threadIdx.x);
    // bounds: block-uniform (the grid covers the largest slice)
    if (!live) return;
    // body
    T acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = T(0);
    T* const stages = gemm_block<L>(p, s, [&](const T* as, const T* bs) {
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            T a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i += 4) lds4(a + i, as + LA::at(kk, row0 + i * 4));
#pragma unroll
            for (int j = 0; j < TN; j += 4) lds4(b + j, bs + LB::at(kk, c0 + j * 8));
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
        }
    });
    // the outputs through shared memory, a band of 16 of each warp's 4 * TM rows per pass: thread
    // rows row0 + i (i < 4) of the pass, columns c0 + 32 * (j / 4) + [0, 4)
    constexpr int WR = 4 * TM, PASSES = WR / 16, R = BM / PASSES;
    static_assert(R * BN <= STAGES * (LA::SIZE + LB::SIZE) && TN % 4 == 0, "bands fit the stages");
    copy_wait<0>();
    __syncthreads();  // every warp's last step is consumed
    const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);
    const int t = reread<TID_X>(), col = first_col(t);
    const int r0 = first_row(t) / WR * 16 + first_row(t) % 16;  // the staged row of row0
#pragma unroll
    for (int pass = 0; pass < PASSES; ++pass) {
        if (pass) __syncthreads();  // the previous band is stored
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < TN; j += 4) {
                Vec16<T> q[4 * sizeof(T) / 16];
#pragma unroll
                for (int v = 0; v < 4; ++v) q[v / Vec16<T>::N].v[v % Vec16<T>::N] = acc[4 * pass + i][j + v];
#pragma unroll
                for (int h = 0; h < 4 / Vec16<T>::N; ++h)
                    *(Vec16<T>*)(stages + staged_at<BN>(r0 + i, col + j * 8 + h * Vec16<T>::N)) = q[h];
            }
        __syncthreads();
        // the column offsets: decoded here, where half the accumulators are already staged
        const TileStore<T, Index, WG, BN, THREADS> st(p, s, z_group);
        st.template band<R, WR>(stages, reread<CTAID_Y>() * BM + 16 * pass);
    }
}

// --------------------------------------------------------------------------- tensor-core GEMM
// Warps of WM x WN outputs, BK = 16: 32 x 64 where that still gives 4 warps, else 32 x 32 (a
// thread's copies and accumulators then fit in 128 registers, two blocks an SM); tiles past 8
// warps of 32 x 64 (128 x 256) take 8 warps of 64 x 64 and one block an SM (255 registers): their
// fragment reads take one shared-memory wavefront an MMA instead of 1.5, and their copies are
// fewer an MMA. The MMA (mma.sync m16n8k8) computes the transposed tile, out^T = B^T A^T: its A
// operand is B (WN/16 tiles of 16 columns), its B operand is A (WM/8 tiles of 8 rows), so that A,
// whose rows run on along the reduction where VEC_A copies them 16 bytes at a time, is the operand
// whose fragments are adjacent k of one row. In the PTX ISA's TF32 layout lane 4*grp + t holds
// MMA-A rows grp, grp+8 x reduction columns t, t+4 and MMA-B column grp x rows t, t+4. The MMA
// sums over its 8 columns in any order, so both operands hand lane t the adjacent k 2t and 2t+1 of
// each 8-wide half: an MMA-A fragment is one 16-byte read (KPairs), an MMA-B fragment one 8-byte
// read (KInner), both conflict-free: 8 reads for 16 MMAs (32 x 64), 12 for 32 (64 x 64).
__host__ __device__ constexpr int mma_warp_m(int bm, int bn) { return (bm / 32) * (bn / 64) > 8 ? 64 : 32; }
__host__ __device__ constexpr int mma_warp_n(int bm, int bn) { return (bm / 32) * (bn / 64) >= 4 ? 64 : 32; }
__host__ __device__ constexpr int mma_threads(int bm, int bn) {
    return (bm / mma_warp_m(bm, bn)) * (bn / mma_warp_n(bm, bn)) * 32;
}
// __launch_bounds__'s resident blocks an SM: 512 threads (128 registers) but for 64 x 64 warps.
__host__ __device__ constexpr int mma_blocks_per_sm(int bm, int bn) {
    return mma_warp_m(bm, bn) == 64 ? 1 : 512 / mma_threads(bm, bn);
}

// The tensor-core GEMM's loader: A as the MMA's B operand (KInner), B as its A operand (KPairs).
template <int BM, int BN, bool VEC_A, Bounds BOUNDS, typename Index>
using MmaLoader = Loader<float, Index, BM, BN, 16, mma_threads(BM, BN), KInner<BM, 16>, KPairs<BN, 16>,
                         BOUNDS, VEC_A, mma_warp_m(BM, BN) == 64 && sizeof(Index) == 4>;

template <int TERMS, int BM, int BN, bool WG, bool VEC_A, bool ZERO_PAD, typename Index>
__global__ void __launch_bounds__(mma_threads(BM, BN), mma_blocks_per_sm(BM, BN)) conv_gemm_mma(const ConvParams p) {
    constexpr int BK = 16, WM = mma_warp_m(BM, BN), WN = mma_warp_n(BM, BN);
    constexpr int MI = WN / 16, MJ = WM / 8, WARPS_N = BN / WN;
    constexpr int THREADS = mma_threads(BM, BN);
    // grad-weight's pixel-tap table, but where 3xTF32's split fragments fill 128 registers
    typedef MmaLoader<BM, BN, VEC_A, bounds_of(ZERO_PAD, WG, TERMS == 1 || WM == 64), Index> L;
    typedef typename L::LayoutA LA;
    typedef typename L::LayoutB LB;
    // index decoding: block as conv_gemm; warp (wm, wn) owns rows wm.. wm+WM-1, columns wn.. wn+WN-1
    __shared__ Slice<Index> s;
    const bool live = block_slice<Index, WG>(p, BK, BM, BN, s);
    const auto warp_row = [](int t) { return t / 32 / WARPS_N * WM; };
    const auto warp_col = [](int t) { return t / 32 % WARPS_N * WN; };
    const int wm = warp_row((int)threadIdx.x), wn = warp_col((int)threadIdx.x);
    const int grp = (int)threadIdx.x % 32 / 4, t4 = (int)threadIdx.x % 4;
    // bounds: block-uniform (the grid covers the largest slice)
    if (!live) return;
    // body
    float acc[MI][MJ][4];  // [column tile][row tile][MMA accumulator]
#pragma unroll
    for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < MJ; ++j)
#pragma unroll
            for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.0f;
    // this lane's fragments in the first 8-wide half (16 columns or 8 rows on: the same place in
    // the row); in the second, the swapped place (KInner and KPairs swap the halves by XOR)
    const int a_lane = LA::at(2 * t4, wm + grp), b_lane = LB::at(2 * t4, wn + grp);
    float* const stages = gemm_block<L>(p, s, [&](const float* as, const float* bs) {
#pragma unroll
        for (int k8 = 0; k8 < BK; k8 += 8) {
            const float* ak = as + (a_lane ^ k8);
            const float* bk = bs + (b_lane ^ (k8 * 2));
            unsigned a_big[MJ][2], a_small[MJ][2];
#pragma unroll
            for (int j = 0; j < MJ; ++j) {  // MMA-B (b0, b1) = row wm + 8j + grp at k, k+1
                const float2 a = *(const float2*)(ak + LA::shift(8 * j));
                split_tf32(a.x, a_big[j][0], a_small[j][0], TERMS == 3);
                split_tf32(a.y, a_big[j][1], a_small[j][1], TERMS == 3);
            }
            // MMA-A (a0, a1, a2, a3) = columns grp, grp+8 of tile i at k, then at k+1
#pragma unroll
            for (int i = 0; i < MI; ++i) {
                const float4 b = *(const float4*)(bk + LB::shift(16 * i));
                unsigned b_big[4], b_small[4];
                split_tf32(b.x, b_big[0], b_small[0], TERMS == 3);
                split_tf32(b.y, b_big[1], b_small[1], TERMS == 3);
                split_tf32(b.z, b_big[2], b_small[2], TERMS == 3);
                split_tf32(b.w, b_big[3], b_small[3], TERMS == 3);
#pragma unroll
                for (int j = 0; j < MJ; ++j) {
                    if (TERMS == 3) {  // the small products first: they are the smallest terms
                        mma_tf32(acc[i][j], b_big, a_small[j]);
                        mma_tf32(acc[i][j], b_small, a_big[j]);
                    }
                    mma_tf32(acc[i][j], b_big, a_big[j]);
                }
            }
        }
    });
    // accumulator (i, j, v): column wn + 16i + grp + 8*(v/2), row wm + 8j + 2*t4 + v%2; through
    // shared memory, rows wm + 16h + [0, 16) (row tiles 2h, 2h+1) in pass h (as conv_gemm's
    // bands, warp rows of WM)
    constexpr int PASSES = WM / 16;
    static_assert(BM / PASSES * BN <= STAGES * (LA::SIZE + LB::SIZE), "bands fit the stages");
    copy_wait<0>();
    __syncthreads();  // every warp's last step is consumed
    const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);
    const int t = reread<TID_X>(), r0 = warp_row(t) / WM * 16 + t % 4 * 2, c = warp_col(t) + t % 32 / 4;
#pragma unroll
    for (int h = 0; h < PASSES; ++h) {
        if (h) __syncthreads();  // the previous band is stored
#pragma unroll
        for (int j = 0; j < 2; ++j)
#pragma unroll
            for (int i = 0; i < MI; ++i)
#pragma unroll
                for (int v = 0; v < 4; ++v)
                    stages[staged_at<BN>(r0 + 8 * j + v % 2, c + 16 * i + 8 * (v / 2))] = acc[i][2 * h + j][v];
        __syncthreads();
        const TileStore<float, Index, WG, BN, THREADS> st(p, s, z_group);
        st.template band<BM / PASSES, WM>(stages, reread<CTAID_Y>() * BM + 16 * h);
    }
}

// --------------------------------------------------------------------------- tensor cores: wgmma
// conv_gemm_mma's GEMM on Hopper's warpgroup MMA (sm_90a: its own module, built only where the
// device is one; gpu_plan.wgmma_kernel_names). BM / 64 warpgroups of 4 warps; warpgroup g owns
// rows 64g .. 64g+63 and all BN columns (128 or 256), one wgmma.m64n128k8 a k8 half-step and
// 128 columns (BN 256 takes 128 accumulators a thread, one block an SM). TERMS 1 ("tf32"):
// both operands read from the shared stages by descriptors (no fragment loads, no shuffles:
// the instruction stream is the loader's copies and the wgmmas). Both tiles are stored
// reduction-major in core matrices (CoreK), as TF32 wgmma requires. TERMS 1: a step's wgmmas
// run on through the next step's barrier and copies, waited for once the next step's are
// issued (WGMMA_STAGES stages, two steps copied ahead: a step's copies go to the stage read
// two steps earlier, whose wgmmas are done). TERMS 3 ("tf32x3", conv_gemm_mma's split): A
// from registers (wgmma's RS form: each warp's fragments read from the stage and split into
// big and small), B's big parts in place of its copies and its small parts in STAGES more
// stages after the others, each thread splitting the elements it copied once they have landed
// (the landed hook, before the barrier); a * b as big * small + small * big + big * big,
// smallest first; its wgmmas are waited for within their step (the fragments' registers are
// then free).

// The wgmma GEMM's loader: both tiles CoreK (tests/test_loader_banks.py checks its copies).
template <int BM, int BN, bool VEC_A, Bounds BOUNDS, typename Index>
using WgmmaLoader = Loader<float, Index, BM, BN, 16, BM / 64 * 128, CoreK<BM, 16>, CoreK<BN, 16>,
                           BOUNDS, VEC_A>;

template <int TERMS, int BM, int BN, bool WG, bool VEC_A, bool ZERO_PAD, typename Index>
__global__ void __launch_bounds__(BM / 64 * 128, BN > 128 ? 1 : 512 / (BM / 64 * 128)) conv_gemm_wgmma(const ConvParams p) {
    static_assert(BN % 128 == 0 && ZERO_PAD, "wgmma_m64n128k8_tf32 parts; the zero-padding loader");
    constexpr int BK = 16, THREADS = BM / 64 * 128;
    // TF32: a step's wgmmas waited for one step later (LAG 1, WGMMA_STAGES stages); 3xTF32's
    // register-form fragments would then need twice the registers: waited for in their step
    constexpr int DEPTH = TERMS == 1 ? WGMMA_STAGES : STAGES, LAG = TERMS == 1 ? 1 : 0;
    typedef WgmmaLoader<BM, BN, VEC_A, bounds_of(ZERO_PAD, WG, true), Index> L;
    typedef typename L::LayoutA LA;
    typedef typename L::LayoutB LB;
    // index decoding: block as conv_gemm; warpgroup g: rows 64g ..
    __shared__ Slice<Index> s;
    const bool live = block_slice<Index, WG>(p, BK, BM, BN, s);
    const int g = (int)threadIdx.x / 128;
    // bounds: block-uniform (the grid covers the largest slice)
    if (!live) return;
    // body
    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
    // 3xTF32: B's small parts (DEPTH more stages), where this thread's copies go, and its A
    // fragment rows (warp w of warpgroup g: rows 64g + 16w + lane/4, + 8)
    DYNAMIC_SHARED(float, smem, DEPTH * (LA::SIZE + (TERMS == 3 ? 2 : 1) * LB::SIZE));
    float* const b_small = smem + DEPTH * (LA::SIZE + LB::SIZE);
    int kk, l;
    L::lanes((int)threadIdx.x, kk, l);
    const int b_dst = L::b_dst_of(kk, l);
    const int a_row = 64 * g + (int)threadIdx.x % 128 / 32 * 16 + (int)threadIdx.x % 32 / 4;
    const int a_k = (int)threadIdx.x % 4;
    const auto split_b = [&](int stage) {  // the landed hook: this thread's copies of B, split
        if constexpr (TERMS == 3) {
            float* const big = smem + DEPTH * LA::SIZE + stage * LB::SIZE;
#pragma unroll
            for (int j = 0; j < L::PB; ++j) {
                const int at = b_dst + L::b_shift(j);
                unsigned hi, lo;
                split_tf32(big[at], hi, lo, true);
                big[at] = __uint_as_float(hi);
                b_small[stage * LB::SIZE + at] = __uint_as_float(lo);
            }
        }
    };
    float* const stages = gemm_block<L, true, DEPTH, LAG>(p, s, [&](const float* as, const float* bs) {
        if constexpr (TERMS == 1) {
            wgmma_fence();
#pragma unroll
            for (int k8 = 0; k8 < BK; k8 += 8)
#pragma unroll
                for (int n = 0; n < BN / 128; ++n)  // columns 128n ..: accumulators 64n ..
                    wgmma_m64n128k8_tf32(acc + 64 * n, wgmma_desc(as + LA::at(k8, 64 * g), LA::LBO, LA::SBO),
                                         wgmma_desc(bs + LB::at(k8, 128 * n), LB::LBO, LB::SBO));
            wgmma_commit();
            wgmma_wait<LAG>();  // the previous step's wgmmas: done; this step's may run on
        } else {
            const float* const bs_small = b_small + (bs - (smem + DEPTH * LA::SIZE));
            unsigned a_big[BK / 8][4], a_small[BK / 8][4];  // this lane's A fragments, split
#pragma unroll
            for (int h = 0; h < BK / 8; ++h)
#pragma unroll
                for (int v = 0; v < 4; ++v)
                    split_tf32(as[LA::at(8 * h + a_k + 4 * (v / 2), a_row + 8 * (v % 2))],
                               a_big[h][v], a_small[h][v], true);
            wgmma_fence();
#pragma unroll
            for (int h = 0; h < BK / 8; ++h)
#pragma unroll
                for (int n = 0; n < BN / 128; ++n) {
                    const unsigned long long big = wgmma_desc(bs + LB::at(8 * h, 128 * n), LB::LBO, LB::SBO);
                    wgmma_m64n128k8_tf32_rs(acc + 64 * n, a_big[h],
                                            wgmma_desc(bs_small + LB::at(8 * h, 128 * n), LB::LBO, LB::SBO));
                    wgmma_m64n128k8_tf32_rs(acc + 64 * n, a_small[h], big);
                    wgmma_m64n128k8_tf32_rs(acc + 64 * n, a_big[h], big);
                }
            wgmma_commit();
            wgmma_wait<0>();
            wgmma_pin<BK / 2>(&a_big[0][0]);
            wgmma_pin<BK / 2>(&a_small[0][0]);
        }
        wgmma_pin<BN / 2>(acc);
    }, split_b);
    // accumulator 4j + v: row 16w + lane/4 + 8(v/2) of the block, w its warp, column
    // 8j + 2(lane%4) + v%2 (the 128-column parts' accumulators in turn: 64 a part, 16 groups of
    // 8 columns); through shared memory in two passes, pass h taking the 16 rows of
    // each warp w with w % 2 == h (conv_gemm's bands, warp rows of 32)
    static_assert(BM / 2 * BN <= DEPTH * (LA::SIZE + LB::SIZE), "bands fit the stages");
    wgmma_wait<0>();  // the last step's wgmmas
    wgmma_pin<BN / 2>(acc);
    copy_wait<0>();
    __syncthreads();  // every warp's last step is consumed
    const int z_group = (int)blockIdx.z / (int)(p.phases * p.splits);
    const int t = reread<TID_X>(), w = t / 32, lane = t % 32;
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        if (h) __syncthreads();  // the previous band is stored
        if (w % 2 == h)
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                for (int v = 0; v < 4; ++v)
                    stages[staged_at<BN>(w / 2 * 16 + lane / 4 + 8 * (v / 2), 8 * j + 2 * (lane % 4) + v % 2)] = acc[4 * j + v];
        __syncthreads();
        const TileStore<float, Index, WG, BN, THREADS> st(p, s, z_group);
        st.template band<BM / 2, 32>(stages, reread<CTAID_Y>() * BM + 16 * h);
    }
}

// --------------------------------------------------------------------------- direct (few rows)
// Forward or grad-input writing at most 4 rows (channels) per slice: the stem's and DeepSpeech's
// grad-input (3 and 1 input channels), grouped convs of few channels per group. A GEMM tile
// would be mostly empty: here a thread owns DIRECT_PIXELS columns (pixels) and all ROWS rows,
// walking the reduction one index at a time, the rows' weights staged in shared memory CHUNK
// indices at a time (broadcast reads). Its pixels lie one of two ways:
//   segment: where neighbouring pixels of an output row read neighbouring input columns and so
//     do neighbouring taps of a kernel row (pixel column step 1, tap column step +-1: a forward
//     of stride and dilation 1 along the width; grad-input phases where the dilation divides
//     the stride, the stem's and DeepSpeech's), DIRECT_PIXELS consecutive pixels of one output
//     row: over a kernel row they read one run of DIRECT_PIXELS + taps - 1 input columns, held
//     in a window of registers that slides one column a tap (one load a tap for all pixels);
//   spread: otherwise pixels THREADS apart (a warp's loads stay coalesced), sharing one walk
//     over the taps (tap shift, carries, row bounds); each adds a column bound, one load and
//     ROWS multiply-adds a tap.
constexpr int DIRECT_PIXELS = 4;  // gpu_plan's direct tiles: 256 * 4 columns a block

// What both layouts read of the slice, in registers (the slice is shared memory, which the
// weight staging writes: read there, it would be reloaded every step).
struct DirectGeometry {
    int b_h, b_w, b_sh, b_sw;   // B (the input; grad_out for grad-input): bounds and strides
    int n1, n2, hs, ws, b0;     // the reduction lattice: taps (channel, row, column)
};

// Segment layout: window slot u holds input column cbase + sgn * (u + tap column); the pixel
// it accumulates for is u (sgn = 1) or DIRECT_PIXELS - 1 - u (sgn = -1) of the thread's run.
template <typename T, int ROWS>
__device__ __forceinline__ void direct_segment_chunk(
        const T* b, const T* wts, int n, Position<int> t, const DirectGeometry& g, int row_b,
        int row_h, int cbase, int sgn, T (&acc)[DIRECT_PIXELS][ROWS]) {
    constexpr int PX = DIRECT_PIXELS;
    int d0 = t.d0, d1 = t.d1, d2 = t.d2;
    for (int kk = 0; kk < n;) {  // the chunk's taps, a run along one kernel row at a time
        const int len = imin(g.n2 - d2, n - kk), th = d1 * g.hs;
        const int col_end = (unsigned)(row_h + th) < (unsigned)g.b_h ? g.b_w : 0;
        int col = cbase + sgn * d2;
        int off = row_b + d0 * g.b0 + th * g.b_sh + col * g.b_sw;
        const int step = sgn * g.b_sw;
        T win[PX];
#pragma unroll
        for (int u = 0; u < PX; ++u, col += sgn, off += step)
            win[u] = (unsigned)col < (unsigned)col_end ? __ldg(b + off) : T(0);
        const T* wk = wts + kk * ROWS;
        for (int j = 0;;) {
#pragma unroll
            for (int r = 0; r < ROWS; ++r) {
                const T w = wk[r];
#pragma unroll
                for (int u = 0; u < PX; ++u) acc[u][r] = fma(w, win[u], acc[u][r]);
            }
            if (++j == len) break;
            wk += ROWS;
#pragma unroll
            for (int u = 0; u + 1 < PX; ++u) win[u] = win[u + 1];
            win[PX - 1] = (unsigned)col < (unsigned)col_end ? __ldg(b + off) : T(0);
            col += sgn;
            off += step;
        }
        kk += len;
        d2 += len;
        if (d2 == g.n2) {
            d2 = 0;
            if (++d1 == g.n1) { d1 = 0; ++d0; }
        }
    }
}

// Spread layout: tap by tap, the inner digit moves the column, its carry the row, the row's
// carry the outer axis; the tap's offset follows by constant deltas.
template <typename T, int ROWS>
__device__ __forceinline__ void direct_spread_chunk(
        const T* b, const T* wts, int n, Position<int> t, const DirectGeometry& g,
        const int (&pix_b)[DIRECT_PIXELS], const int (&pix_h)[DIRECT_PIXELS],
        const int (&pix_w)[DIRECT_PIXELS], T (&acc)[DIRECT_PIXELS][ROWS]) {
    constexpr int PX = DIRECT_PIXELS;
    const int col_step = g.ws * g.b_sw, row_step = g.hs * g.b_sh - g.n2 * col_step,
              outer_step = g.b0 - g.n1 * g.hs * g.b_sh;
    int d1 = t.d1, d2 = t.d2, th = t.h, tw = t.w;
    int tap = t.b + th * g.b_sh + tw * g.b_sw;
    // a pixel's column bound, 0 while the tap's row is outside: one compare a load
    unsigned w_end[PX];
#pragma unroll
    for (int q = 0; q < PX; ++q) w_end[q] = (unsigned)(pix_h[q] + th) < (unsigned)g.b_h ? g.b_w : 0;
    const T* wk = wts;
    for (int kk = 0; kk < n; ++kk, wk += ROWS) {
        T wr[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) wr[r] = wk[r];
#pragma unroll
        for (int q = 0; q < PX; ++q) {
            if ((unsigned)(pix_w[q] + tw) < w_end[q]) {
                const T v = __ldg(b + (pix_b[q] + tap));  // one 32-bit add, then widened
#pragma unroll
                for (int r = 0; r < ROWS; ++r) acc[q][r] = fma(wr[r], v, acc[q][r]);
            }
        }
        tw += g.ws; tap += col_step;
        if (++d2 == g.n2) {
            d2 = 0; tw = 0; th += g.hs; tap += row_step;
            if (++d1 == g.n1) { d1 = 0; th = 0; tap += outer_step; }
#pragma unroll
            for (int q = 0; q < PX; ++q)
                w_end[q] = (unsigned)(pix_h[q] + th) < (unsigned)g.b_h ? g.b_w : 0;
        }
    }
}

// Three blocks an SM for float, two for double: without the hint ptxas aims at 64 registers and
// spills the window of some instances (float 2 rows, double 1 row).
template <typename T, int ROWS>
__global__ void __launch_bounds__(256, sizeof(T) == 4 ? 3 : 2) conv_direct(const ConvParams p) {
    constexpr int THREADS = 256, CHUNK = 512, PX = DIRECT_PIXELS;
    // index decoding: x: THREADS * PX columns (spread) or THREADS runs of PX (segment), y: ROWS
    // rows, z: slice
    __shared__ Slice<int> s;
    const bool live = block_slice<int, false>(p, 1, ROWS, THREADS, s);
    const int m0 = (int)blockIdx.y * ROWS;
    // bounds: the block's (uniform); a thread past the columns still stages weights
    if (!live) return;
    const bool segment = s.col.ws == 1 && (s.red.ws == 1 || s.red.ws == -1);
    const int row_len = s.col.n2, runs = (row_len + PX - 1) / PX, rows_out = s.cols / row_len;
    const int block0 = (int)blockIdx.x * THREADS;
    if (segment ? block0 >= rows_out * runs : block0 * PX >= s.cols) return;
    // body
    __shared__ T wts[CHUNK * ROWS];
    const T* a = (const T*)p.a + s.a_base;  // p.a, not the shared slice's copy: known global
    const T* b = (const T*)s.b;  // read with __ldg: global; the group's offset is the pixels'
    const DirectGeometry g{s.b_h, s.b_w, s.b_sh, s.b_sw,
                           s.red.n1, s.red.n2, s.red.hs, s.red.ws, s.red.b0};
    // segment: the thread's run (output row `run_row`, first pixel run_w0 of PX); spread: each
    // pixel's B offset, row and column (a pixel past the columns: a row no tap reaches)
    const int t = block0 + (int)threadIdx.x;
    const int run_row = t / runs, run_w0 = (t - run_row * runs) * PX;
    const int sgn = s.red.ws;
    int row_b = 0, row_h = NO_ROW, cbase = 0;
    int pix_b[PX], pix_h[PX], pix_w[PX];
    if (segment) {
        const Position<int> c = decode(s.col, run_row < rows_out ? run_row * row_len + run_w0 : 0);
        row_b = s.b_base + c.b + c.h * s.b_sh;
        row_h = run_row < rows_out ? c.h : NO_ROW;
        cbase = c.w + (sgn > 0 ? 0 : PX - 1);
    } else {
#pragma unroll
        for (int q = 0; q < PX; ++q) {
            const int col = block0 * PX + (int)threadIdx.x + q * THREADS;
            const Position<int> c = decode(s.col, col < s.cols ? col : 0);
            pix_b[q] = s.b_base + c.b + c.h * s.b_sh + c.w * s.b_sw;
            pix_h[q] = col < s.cols ? c.h : NO_ROW;
            pix_w[q] = c.w;
        }
    }
    T acc[PX][ROWS];
#pragma unroll
    for (int q = 0; q < PX; ++q)
#pragma unroll
        for (int r = 0; r < ROWS; ++r) acc[q][r] = T(0);
    for (int k0 = 0; k0 < s.K; k0 += CHUNK) {
        const int n = imin(CHUNK, s.K - k0);
        __syncthreads();  // the previous chunk's weights are consumed
        for (int i = (int)threadIdx.x; i < n * ROWS; i += THREADS) {
            const int r = i % ROWS;
            const Position<int> tp = decode(s.red, k0 + i / ROWS);
            wts[i] = m0 + r < s.M ? a[(m0 + r) * s.a_row + tp.a] : T(0);
        }
        __syncthreads();
        const Position<int> first = decode(s.red, k0);
        if (segment)
            direct_segment_chunk<T, ROWS>(b, wts, n, first, g, row_b, row_h, cbase, sgn, acc);
        else
            direct_spread_chunk<T, ROWS>(b, wts, n, first, g, pix_b, pix_h, pix_w, acc);
    }
    const Epilogue<T, int, false> ep(p, s, (int)blockIdx.z / (int)p.phases);
#pragma unroll
    for (int q = 0; q < PX; ++q) {
        // the column of accumulator q, decoded again (no register held through the loop)
        const int w = run_w0 + (sgn > 0 ? q : PX - 1 - q);
        const int col = !segment ? block0 * PX + (int)threadIdx.x + q * THREADS
                        : run_row < rows_out && w < row_len ? run_row * row_len + w : s.cols;
        const int out = col_offset(s, col);
#pragma unroll
        for (int r = 0; r < ROWS; ++r) ep.store(m0 + r, out, acc[q][r]);
    }
}

// --------------------------------------------------------------------------- split-K reduction
template <typename T>
__global__ void __launch_bounds__(256) conv_splitk_reduce(const ConvParams p) {
    // index decoding: one output element per thread; p.b: (splits, total) partials
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    // bounds
    if (i >= p.total) return;
    // body: fixed split order, so the sum is the same every run; then bias and ReLU
    const T* part = (const T*)p.b;
    T s = part[i];
    for (i64 k = 1; k < p.splits; ++k) s += part[k * p.total + i];
    if (p.bias) s += ((const T*)p.bias)[i / p.plane % p.out_c];
    if (p.relu) s = s < T(0) ? T(0) : s;
    ((T*)p.out)[i] = s;
}

// --------------------------------------------------------------------------- grad-bias
template <typename T>
__global__ void __launch_bounds__(256) conv_grad_bias(const ConvParams p) {
    // index decoding: one block per channel o; p.a: grad_out (batch, out_c, q_h, q_w), strided
    const int o = (int)blockIdx.x;
    const int plane = (int)(p.q_h * p.q_w);
    // bounds: none (grid = out_c)
    // body: each thread sums a fixed strided subset, then a fixed tree
    const T* gy = (const T*)p.a + o * p.a_stride[1];
    T s = T(0);
    for (i64 n = 0; n < p.batch; ++n)
        for (int pix = (int)threadIdx.x; pix < plane; pix += 256) {
            const int h = pix / (int)p.q_w, w = pix - h * (int)p.q_w;
            s += gy[n * p.a_stride[0] + h * p.a_stride[2] + w * p.a_stride[3]];
        }
    s = block_reduce<256>(s, [](T x, T y) { return x + y; });
    if (threadIdx.x == 0) ((T*)p.out)[o] = s;
}

// --------------------------------------------------------------------------- padding adjoint
// The padded positions, ascending, that may copy input position i: the leading pad, i itself,
// the trailing pad (candidate t of before + 1 + after).
__device__ __forceinline__ int pad_candidate(int t, int i, int before, int n) {
    return t < before ? t : t == before ? before + i : n + t - 1;
}

template <typename T>
__global__ void __launch_bounds__(256) conv_pad_adjoint(const ConvParams p) {
    // index decoding: one input element (n, c, h, w) of (batch, out_c, out_h, out_w) per thread;
    // p.b: the padded gradient (batch, out_c, len_h, len_w), contiguous
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const int H = (int)p.out_h, W = (int)p.out_w;
    const int w = (int)(i % W), h = (int)(i / W % H);
    // bounds
    if (i >= p.batch * p.out_c * H * W) return;
    // body: numpy_backend._pad_backward, as a gather
    const int before_h = (int)p.pt, before_w = (int)p.pl;
    const int cand_h = (int)p.len_h - H + 1, cand_w = (int)p.len_w - W + 1;
    const T* g = (const T*)p.b + i / ((i64)H * W) * p.len_h * p.len_w;
    T s = T(0);
    for (int th = 0; th < cand_h; ++th) {
        const int r = pad_candidate(th, h, before_h, H);
        if (source_index(r - before_h, H, (int)p.mode) != h) continue;
        for (int tw = 0; tw < cand_w; ++tw) {
            const int c = pad_candidate(tw, w, before_w, W);
            if (source_index(c - before_w, W, (int)p.mode) == w) s += g[(i64)r * p.len_w + c];
        }
    }
    if (p.bias) s += ((const T*)p.bias)[i / ((i64)H * W) % p.out_c];
    ((T*)p.out)[i] = s;
}

// --------------------------------------------------------------------------- bias fill
template <typename T>
__global__ void __launch_bounds__(256) conv_fill_bias(const ConvParams p) {
    // index decoding: grid-stride over p.total elements of p.out, (N, out_c, plane) when biased
    // bounds: the loop's
    // body
    const T* bias = (const T*)p.bias;
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < p.total; i += (i64)gridDim.x * blockDim.x)
        ((T*)p.out)[i] = bias ? bias[i / p.plane % p.out_c] : T(0);
}
