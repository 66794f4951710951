// depthwise.cu: the cupy backend's depthwise / channel-multiplier convolutions (weight
// (O, 1, kH, kW), groups G > 1, M = O / G outputs per input channel), forward, grad-input and
// grad-weight.
// reference: gpuconv.backends.reference.conv2d, reference.conv2d_grad_input and
//            reference.conv2d_grad_weight (formulas below). Checked against numpy_backend.conv2d, conv2d_grad_input and conv2d_grad_weight
// (tests/test_cupy_host.py on the CPU, tests/test_golden.py on a GPU). Twin:
// kernels/depthwise_numba.py (same names, same parameters). Parameters: ConvParams, with
// m = M, kc = 1.
//
// Kernels (each the only one for its op on depthwise convs; 3. is a path inside 1. and 2.):
//   1. conv_depthwise<T, K> forward: y[n, o, oh, ow] = sum_{i,j} w[o, 0, i, j] *
//      xpad[n, o / M, oh*sh + i*dh - pt, ow*sw + j*dw - pl] + bias[o] (bias last; then ReLU
//      when relu). A block computes a (by rows) x (bx * DW_V columns) output tile of one
//      plane; the input tile plus halo is staged in shared memory (16-byte loads where the row
//      is inside and aligned, padding modes through tile_source_index elsewhere); each thread
//      DW_V consecutive outputs of a row, the kernel's K x K weights in registers (K = 3, 5,
//      7; K = 0: any kH x kW, weights read through the read-only cache).
//   2. conv_depthwise<T, K> grad-input (transposed = 1): t[n, c, th, tw] = sum_{m<M} sum_{i,j}
//      w[c*M + m, 0, i, j] * gy[n, c*M + m, oh, ow] over oh*sh + i*dh = th + lo_h,
//      ow*sw + j*dw = tw + lo_w; t is dx (zeros padding) or the padded gradient that
//      conv_pad_adjoint folds back. Stride 1: item 1's tile over gy with the flipped kernel;
//      larger strides: item 3.
//   3. direct fallback of 1 and 2 (strided grad-input, a tile larger than DW_TILE_BYTES):
//      the same outputs per thread, taps read from global memory.
//   4. conv_depthwise_grad_weight<T, K>: dw[o, 0, i, j] = sum_n sum_{oh,ow} gy[n, o, oh, ow] *
//      xpad[n, o / M, oh*sh + i*dh - pt, ow*sw + j*dw - pl]: one block per (o, batch chunk),
//      K x K sums in registers per thread, fixed-tree block reductions, the chunk's partial
//      written in place; conv_splitk_reduce adds the chunks in order (no atomics).
#include "common.cuh"

constexpr int DW_V = 4;                // outputs per thread along a row (gpu_plan.DW_V)
constexpr int DW_TILE_BYTES = 32768;   // shared source tile (gpu_plan.DW_TILE_BYTES)

// What one launch reads: the source plane (x forward, gy grad-input) and how output (r, c)
// of a tile maps onto it.
struct DwGeometry {
    bool transposed;
    int kh, kw, dh, dw;
    int step_h, step_w;    // source step between neighbouring outputs (tile path)
    int src_h, src_w;      // source plane size
    int mode;              // source boundary (grad-input: zeros)
    int terms;             // source channels per output plane: 1, or M (grad-input)
};

template <int K>
__device__ __forceinline__ DwGeometry dw_geometry(const ConvParams& p) {
    DwGeometry g;
    g.transposed = p.transposed != 0;
    g.kh = K ? K : (int)p.kh;
    g.kw = K ? K : (int)p.kw;
    g.dh = (int)p.dh;
    g.dw = (int)p.dw;
    g.step_h = g.transposed ? 1 : (int)p.sh;
    g.step_w = g.transposed ? 1 : (int)p.sw;
    g.src_h = (int)p.b_h;
    g.src_w = (int)p.b_w;
    g.mode = g.transposed ? PAD_ZEROS : (int)p.mode;
    g.terms = g.transposed ? (int)p.m : 1;
    return g;
}

// Weight tap (i, j) of output channel o as the tile path applies it (grad-input: flipped).
template <typename T>
__device__ __forceinline__ T dw_weight(const ConvParams& p, const DwGeometry& g, i64 o, int i, int j) {
    if (g.transposed) { i = g.kh - 1 - i; j = g.kw - 1 - j; }
    return __ldg((const T*)p.a + o * p.a_stride[0] + i * p.a_stride[2] + j * p.a_stride[3]);
}

// Source plane of term t for output plane (n, ch), and its weight channel.
template <typename T>
__device__ __forceinline__ const T* dw_source(const ConvParams& p, const DwGeometry& g, i64 n, i64 ch,
                                              int t, i64& wch) {
    const i64 src_c = g.transposed ? ch * p.m + t : ch / p.m;
    wch = g.transposed ? src_c : ch;
    return (const T*)p.b + n * p.b_stride[0] + src_c * p.b_stride[1];
}

// --------------------------------------------------------------------------- tile
// Source tile of a (by x bx*DW_V) output tile: rows_in x cols, starting at (org_h, org_w), in
// shared memory with row stride ld and its columns shifted by `shift` so 16-byte source
// vectors land on 16-byte shared addresses.
struct DwTile { int org_h, org_w, rows_in, cols, shift, ld; };

template <typename T>
__device__ __forceinline__ DwTile dw_tile(const ConvParams& p, const DwGeometry& g, int oh0, int ow0) {
    constexpr int N = Vec16<T>::N;
    DwTile t;
    if (g.transposed) {
        t.org_h = oh0 + (int)p.lo_h - (g.kh - 1) * g.dh;
        t.org_w = ow0 + (int)p.lo_w - (g.kw - 1) * g.dw;
    } else {
        t.org_h = oh0 * g.step_h - (int)p.pt;
        t.org_w = ow0 * g.step_w - (int)p.pl;
    }
    t.rows_in = ((int)blockDim.y - 1) * g.step_h + (g.kh - 1) * g.dh + 1;
    t.cols = ((int)blockDim.x * DW_V - 1) * g.step_w + (g.kw - 1) * g.dw + 1;
    t.shift = ((t.org_w % N) + N) % N;
    t.ld = (t.cols + t.shift + N - 1) / N * N;
    return t;
}

// Stage the source tile: whole 16-byte vectors where the row is inside and aligned, else
// element by element through tile_source_index (zeros outside under zero padding).
template <typename T>
__device__ __forceinline__ void dw_load_tile(const ConvParams& p, const DwGeometry& g, const DwTile& t,
                                             const T* src, T* tile) {
    constexpr int N = Vec16<T>::N;
    const bool vec_rows = p.b_stride[3] == 1 && p.b_stride[2] % N == 0 && aligned16(src);
    const int base = t.org_w - t.shift;  // source column of tile column 0
    for (int r = (int)threadIdx.y; r < t.rows_in; r += (int)blockDim.y) {
        const int sr = tile_source_index(t.org_h + r, g.src_h, g.mode);
        const T* row = src + (i64)sr * p.b_stride[2];
        for (int k = (int)threadIdx.x; k < t.ld / N; k += (int)blockDim.x) {
            T* dst = tile + r * t.ld + k * N;
            const int c0 = base + k * N;
            if (sr >= 0 && vec_rows && c0 >= 0 && c0 + N <= g.src_w) {
                *(Vec16<T>*)dst = *(const Vec16<T>*)(row + c0);
                continue;
            }
#pragma unroll
            for (int e = 0; e < N; ++e) {
                const int sc = sr < 0 ? -1 : tile_source_index(c0 + e, g.src_w, g.mode);
                dst[e] = sc < 0 ? T(0) : row[sc * p.b_stride[3]];
            }
        }
    }
}

// acc[v] += the taps of output column (threadIdx.x * DW_V + v) of tile row threadIdx.y.
// K > 0 with unit column dilation and column step S = 1 or 2: each tap row's segment in
// registers, the K x K weights w in registers. Otherwise tap rows one at a time, weights
// through the read-only cache.
template <typename T, int K, int S>
__device__ __forceinline__ void dw_segment_taps(const DwGeometry& g, const DwTile& t, const T* base,
                                                const T (&w)[K][K], T (&acc)[DW_V]) {
    constexpr int L = (DW_V - 1) * S + K;
#pragma unroll
    for (int i = 0; i < K; ++i) {
        const T* row = base + i * g.dh * t.ld;
        T seg[L];
#pragma unroll
        for (int e = 0; e < L; ++e) seg[e] = row[e];
#pragma unroll
        for (int j = 0; j < K; ++j)
#pragma unroll
            for (int v = 0; v < DW_V; ++v) acc[v] = fma(w[i][j], seg[v * S + j], acc[v]);
    }
}

template <typename T>
__device__ __forceinline__ void dw_strided_taps(const ConvParams& p, const DwGeometry& g, const DwTile& t,
                                                const T* base, i64 wch, T (&acc)[DW_V]) {
#pragma unroll 1
    for (int i = 0; i < g.kh; ++i) {
        const T* row = base + i * g.dh * t.ld;
#pragma unroll 1
        for (int j = 0; j < g.kw; ++j) {
            const T wij = dw_weight<T>(p, g, wch, i, j);
            const T* tap = row + j * g.dw;
#pragma unroll
            for (int v = 0; v < DW_V; ++v) acc[v] = fma(wij, tap[v * g.step_w], acc[v]);
        }
    }
}

// --------------------------------------------------------------------------- 3. direct taps
// acc[v] += every tap of output (oh, ow0 + v) read from global memory (items 1 and 2's
// formulas; grad-input keeps the taps whose output position divides by the stride).
template <typename T>
__device__ __forceinline__ void dw_direct_taps(const ConvParams& p, const DwGeometry& g, const T* src,
                                               i64 wch, int oh, int ow0, T (&acc)[DW_V]) {
    const int sh = (int)p.sh, sw = (int)p.sw;
#pragma unroll 1
    for (int i = 0; i < g.kh; ++i) {
        int sr;
        if (g.transposed) {
            const int num = oh + (int)p.lo_h - i * g.dh;
            sr = num >= 0 && num % sh == 0 && num / sh < g.src_h ? num / sh : -1;
        } else {
            sr = source_index(oh * sh + i * g.dh - (int)p.pt, g.src_h, g.mode);
        }
        if (sr < 0) continue;
        const T* row = src + (i64)sr * p.b_stride[2];
#pragma unroll 1
        for (int j = 0; j < g.kw; ++j) {
            const T wij = __ldg((const T*)p.a + wch * p.a_stride[0] + i * p.a_stride[2] + j * p.a_stride[3]);
#pragma unroll
            for (int v = 0; v < DW_V; ++v) {
                int sc;
                if (g.transposed) {
                    const int num = ow0 + v + (int)p.lo_w - j * g.dw;
                    sc = num >= 0 && num % sw == 0 && num / sw < g.src_w ? num / sw : -1;
                } else {
                    sc = source_index((ow0 + v) * sw + j * g.dw - (int)p.pl, g.src_w, g.mode);
                }
                if (sc >= 0) acc[v] = fma(wij, row[sc * p.b_stride[3]], acc[v]);
            }
        }
    }
}

// --------------------------------------------------------------------------- 1-3. forward, grad-input
// Blocks per SM that ptxas must fit: without a hint it aims at 48 registers and spills the
// small kernels; the large ones (K x K weights of 8 bytes, or 7 x 7) keep their registers.
template <typename T, int K>
__host__ __device__ constexpr int dw_min_blocks() { return K > 0 && K * K * sizeof(T) <= 100 ? 3 : 1; }

template <typename T, int K>
__global__ void __launch_bounds__(256, (dw_min_blocks<T, K>())) conv_depthwise(const ConvParams p) {
    // index decoding: block (bx, by): tile of by rows x bx*DW_V columns; grid (x tiles, y tiles,
    // planes), rows and planes looped by the grid so every thread meets every barrier
    const DwGeometry g = dw_geometry<K>(p);
    const int OH = (int)p.out_h, OW = (int)p.out_w;
    const i64 planes = p.batch * p.out_c;
    __shared__ Vec16<T> smem[DW_TILE_BYTES / 16];
    T* tile = smem[0].v;
    const int ow0 = (int)blockIdx.x * (int)blockDim.x * DW_V;
    const int ow = ow0 + (int)threadIdx.x * DW_V;
    const DwTile shape = dw_tile<T>(p, g, 0, ow0);
    const bool use_tile = (!g.transposed || (p.sh == 1 && p.sw == 1)) &&
                          shape.rows_in * shape.ld * (int)sizeof(T) <= DW_TILE_BYTES;
    // bounds: threads past the row still load the tile; they store nothing
    const int count = imin(DW_V, OW - ow);
    // body
    for (int oh0 = (int)(blockIdx.y * blockDim.y); oh0 < OH; oh0 += (int)(gridDim.y * blockDim.y)) {
        const int oh = oh0 + (int)threadIdx.y;
        const DwTile t = dw_tile<T>(p, g, oh0, ow0);
        for (i64 plane = blockIdx.z; plane < planes; plane += gridDim.z) {
            const i64 n = (unsigned)plane / (unsigned)p.out_c, ch = plane - n * p.out_c;  // gpu_plan._depthwise_launch
            T acc[DW_V];
#pragma unroll
            for (int v = 0; v < DW_V; ++v) acc[v] = T(0);
            for (int term = 0; term < g.terms; ++term) {
                i64 wch;
                const T* src = dw_source<T>(p, g, n, ch, term, wch);
                if (!use_tile) {
                    if (oh < OH && count > 0) dw_direct_taps<T>(p, g, src, wch, oh, ow, acc);
                    continue;
                }
                __syncthreads();  // the previous tile is consumed
                dw_load_tile<T>(p, g, t, src, tile);
                __syncthreads();
                if (oh >= OH || count <= 0) continue;
                const T* base = tile + (int)threadIdx.y * g.step_h * t.ld + t.shift +
                                (int)threadIdx.x * DW_V * g.step_w;
                if constexpr (K > 0) {
                    if (g.dw == 1 && g.step_w <= 2) {
                        T w[K][K];
#pragma unroll
                        for (int i = 0; i < K; ++i)
#pragma unroll
                            for (int j = 0; j < K; ++j) w[i][j] = dw_weight<T>(p, g, wch, i, j);
                        if (g.step_w == 1) dw_segment_taps<T, K, 1>(g, t, base, w, acc);
                        else dw_segment_taps<T, K, 2>(g, t, base, w, acc);
                        continue;
                    }
                }
                dw_strided_taps<T>(p, g, t, base, wch, acc);
            }
            if (oh >= OH || count <= 0) continue;
            if (p.bias) {
                const T b = ((const T*)p.bias)[ch];
#pragma unroll
                for (int v = 0; v < DW_V; ++v) acc[v] += b;
            }
            if (p.relu) {
#pragma unroll
                for (int v = 0; v < DW_V; ++v) acc[v] = acc[v] < T(0) ? T(0) : acc[v];
            }
            store_vec((T*)p.out + (plane * OH + oh) * OW + ow, acc, count);
        }
    }
}

// --------------------------------------------------------------------------- 4. grad-weight
template <typename T, int K>
__global__ void __launch_bounds__(256) conv_depthwise_grad_weight(const ConvParams p) {
    // index decoding: block (o, chunk of tiles_per_split images); 256 threads as 8 rows x 32 columns
    const i64 o = blockIdx.x;
    const i64 n0 = (i64)blockIdx.y * p.tiles_per_split, n1 = lmin(p.batch, n0 + p.tiles_per_split);
    const int tx = (int)threadIdx.x % 32, ty = (int)threadIdx.x / 32;
    const int kh = K ? K : (int)p.kh, kw = K ? K : (int)p.kw;
    const int H = (int)p.b_h, W = (int)p.b_w, mode = (int)p.mode;
    const int sh = (int)p.sh, sw = (int)p.sw, dh = (int)p.dh, dw = (int)p.dw;
    const int pt = (int)p.pt, pl = (int)p.pl;
    const i64 ch = o / p.m;
    T* out = (T*)p.out + ((i64)blockIdx.y * p.out_c + o) * kh * kw;
    // bounds: none (grid = out_c x splits)
    // body: gy[n, o, oh, ow] * x[n, o / M, source rows and columns], summed per tap, pixels in
    // the same order on every path. Zero padding with planes addressable in 32 bits (the usual
    // case) bounds each tap by an unsigned compare and offsets it in 32 bits; other padding
    // modes map each tap through source_index.
    auto span = [](i64 count, i64 stride) { return (count - 1) * (stride < 0 ? -stride : stride); };
    const bool small_planes = span(H, p.b_stride[2]) + span(W, p.b_stride[3]) <= 0x7fffffff
                              && span(p.q_h, p.a_stride[2]) + span(p.q_w, p.a_stride[3]) <= 0x7fffffff;
    auto pixels = [&](auto index, auto&& add) {  // add(g, x, oh, ow) for each output pixel
        typedef decltype(index) Index;
        const Index gs_h = (Index)p.a_stride[2], gs_w = (Index)p.a_stride[3];
        for (i64 n = n0; n < n1; ++n) {
            const T* gy = (const T*)p.a + n * p.a_stride[0] + o * p.a_stride[1];
            const T* x = (const T*)p.b + n * p.b_stride[0] + ch * p.b_stride[1];
            for (int oh = ty; oh < p.q_h; oh += 8)
                for (int ow = tx; ow < p.q_w; ow += 32) {
                    const T g = gy[(Index)oh * gs_h + (Index)ow * gs_w];
                    add(g, x, oh, ow);
                }
        }
    };
    if constexpr (K > 0) {
        T acc[K][K];
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
            for (int j = 0; j < K; ++j) acc[i][j] = T(0);
        if (mode == PAD_ZEROS && small_planes) {
            const int xs_h = (int)p.b_stride[2], xs_w = (int)p.b_stride[3];
            pixels(int(0), [&](T g, const T* x, int oh, int ow) {
                const int r0 = oh * sh - pt, c0 = ow * sw - pl;
#pragma unroll
                for (int i = 0; i < K; ++i) {
                    const int r = r0 + i * dh;
                    if ((unsigned)r >= (unsigned)H) continue;
                    const T* row = x + r * xs_h;
#pragma unroll
                    for (int j = 0; j < K; ++j) {
                        const int c = c0 + j * dw;
                        if ((unsigned)c < (unsigned)W) acc[i][j] = fma(g, row[c * xs_w], acc[i][j]);
                    }
                }
            });
        } else {
            pixels(i64(0), [&](T g, const T* x, int oh, int ow) {
#pragma unroll
                for (int i = 0; i < K; ++i) {
                    const int sr = source_index(oh * sh + i * dh - pt, H, mode);
                    if (sr < 0) continue;
#pragma unroll
                    for (int j = 0; j < K; ++j) {
                        const int sc = source_index(ow * sw + j * dw - pl, W, mode);
                        if (sc >= 0) acc[i][j] = fma(g, x[sr * p.b_stride[2] + sc * p.b_stride[3]], acc[i][j]);
                    }
                }
            });
        }
#pragma unroll
        for (int i = 0; i < K; ++i)
#pragma unroll
            for (int j = 0; j < K; ++j) {
                const T s = block_reduce<256>(acc[i][j], [](T a, T b) { return a + b; });
                if (threadIdx.x == 0) out[i * K + j] = s;
            }
    } else {
        for (int i = 0; i < kh; ++i)
            for (int j = 0; j < kw; ++j) {
                T acc = T(0);
                pixels(i64(0), [&](T g, const T* x, int oh, int ow) {
                    const int sr = source_index(oh * sh + i * dh - pt, H, mode);
                    const int sc = source_index(ow * sw + j * dw - pl, W, mode);
                    if (sr >= 0 && sc >= 0) acc = fma(g, x[sr * p.b_stride[2] + sc * p.b_stride[3]], acc);
                });
                const T s = block_reduce<256>(acc, [](T a, T b) { return a + b; });
                if (threadIdx.x == 0) out[i * kw + j] = s;
            }
    }
}
