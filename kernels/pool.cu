// pool.cu: the cupy backend's pooling kernels, forward and backward, all gathers.
// reference: gpuconv.backends.reference.max_pool2d, reference.avg_pool2d, reference.lp_pool2d,
//            reference.adaptive_avg_pool2d, reference.adaptive_max_pool2d and their backwards
//            (reference.max_pool2d_backward, reference.avg_pool2d_backward, ...):
//   max     y[n,c,i,j] = max_{r,s} x[n, c, i*sh + r*dh - ph, j*sw + s*dw - pw] (taps inside x)
//   avg     y[n,c,i,j] = sum_{r,s} x[n, c, i*sh + r - ph, j*sw + s - pw] / divisor[i,j]
//   Lp      y = (kh*kw * avg(x^p))^(1/p);  adaptive: rows [floor(i*H/Ho), ceil((i+1)*H/Ho))
// Checked against
// numpy_backend's max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d, lp_pool2d
// and their backwards (tests/test_cupy_host.py on the CPU, tests/test_golden.py on a GPU).
//
// Kernels (each the only one for its op; none is chosen among alternatives):
//   1. max_pool2d<T>: one output per thread over its window (sliding with dilation, or
//      adaptive); the first maximum wins, a NaN wins and the last NaN wins; indices optional.
//   2. avg_pool2d<T>: one output per thread: the average, Lp pooling, or the Lp gradient's
//      per-window scale (the average's divisor rules of PyTorch).
//   3. pool2d_backward<T>: one input element per thread, gathering from the windows that hold
//      it (average / Lp: closed-form ranges; max: ranges from the tables of 4.).
//   4. max_index_bounds, max_index_members: max backward gets only the indices, so the rows and
//      columns of windows that can point at an input row / column are read off the indices.
#include "common.cuh"

enum PoolOp { OP_AVG = 0, OP_LP = 1, OP_LP_GRAD_SCALE = 2 };
enum PoolBackwardOp { BWD_AVG = 0, BWD_MAX = 1 };

// [start, end) of adaptive window o of out over n positions (shapes.adaptive_windows).
__device__ __forceinline__ void adaptive_range(int o, int n, int out, int& start, int& end) {
    start = (int)((i64)o * n / out);
    end = (int)(((i64)(o + 1) * n + out - 1) / out);
}

// Taps start, start + step, ... < end of output o's window along one axis (not yet clipped).
__device__ __forceinline__ void window_taps(const PoolParams& p, int o, int n, int out, int k, int s,
                                           int pad, int d, int& start, int& end, int& step) {
    if (p.adaptive) {
        adaptive_range(o, n, out, start, end);
        step = 1;
    } else {
        start = o * s - pad;
        end = start + (k - 1) * d + 1;
        step = d;
    }
}

// Clipped window [h0, h1) x [w0, w1) of an average-type output and its divisor
// (numpy_backend._avg_divisor: clipped to the padded input, then, unless count_include_pad,
// to the input).
struct AvgWindow { int h0, h1, w0, w1; i64 divisor; };

__device__ __forceinline__ AvgWindow avg_window(const PoolParams& p, int oh, int ow) {
    const int H = (int)p.h, W = (int)p.w;
    int hs, he, ws, we;
    if (p.adaptive) {
        adaptive_range(oh, H, (int)p.out_h, hs, he);
        adaptive_range(ow, W, (int)p.out_w, ws, we);
    } else {
        hs = oh * (int)p.sh - (int)p.ph;
        he = imin(hs + (int)p.kh, H + (int)p.ph);
        ws = ow * (int)p.sw - (int)p.pw;
        we = imin(ws + (int)p.kw, W + (int)p.pw);
    }
    AvgWindow r;
    r.h0 = imax(hs, 0); r.h1 = imin(he, H);
    r.w0 = imax(ws, 0); r.w1 = imin(we, W);
    if (p.divisor_override) r.divisor = p.divisor_override;
    else if (p.count_include_pad) r.divisor = (i64)(he - hs) * (we - ws);
    else r.divisor = (i64)(r.h1 - r.h0) * (r.w1 - r.w0);
    return r;
}

// Flat element i of a contiguous (N, C, rows, cols) tensor.
struct Nchw { i64 n, c; int r, col; };

__device__ __forceinline__ Nchw nchw(i64 i, i64 channels, int rows, int cols) {
    Nchw e;
    e.col = (int)(i % cols);
    e.r = (int)(i / cols % rows);
    const i64 plane = i / ((i64)rows * cols);
    e.n = plane / channels;
    e.c = plane - e.n * channels;
    return e;
}

// The calling thread's output element i = (n, c, oh, ow), its input plane x, and whether it exists.
template <typename T>
struct OutputThread { i64 i; Nchw o; const T* x; bool ok; };

template <typename T>
__device__ __forceinline__ OutputThread<T> output_thread(const PoolParams& p) {
    OutputThread<T> t;
    t.i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    t.o = nchw(t.i, p.c, (int)p.out_h, (int)p.out_w);
    t.x = (const T*)p.x + t.o.n * p.x_stride[0] + t.o.c * p.x_stride[1];
    t.ok = t.i < p.n * p.c * p.out_h * p.out_w;
    return t;
}

// --------------------------------------------------------------------------- 1. max
template <typename T>
__global__ void __launch_bounds__(256) max_pool2d(const PoolParams p) {
    // index decoding: one output (n, c, oh, ow) per thread, x its input plane
    const OutputThread<T> t = output_thread<T>(p);
    // bounds
    if (!t.ok) return;
    // body
    const i64 i = t.i;
    const Nchw o = t.o;
    const T* x = t.x;
    int hs, he, hstep, ws, we, wstep;
    window_taps(p, o.r, (int)p.h, (int)p.out_h, (int)p.kh, (int)p.sh, (int)p.ph, (int)p.dh, hs, he, hstep);
    window_taps(p, o.col, (int)p.w, (int)p.out_w, (int)p.kw, (int)p.sw, (int)p.pw, (int)p.dw, ws, we, wstep);
    T best = T(0);
    i64 arg = -1;  // functional rejects windows of padding only, so some tap is valid
    for (int r = hs; r < he; r += hstep) {
        if (r < 0 || r >= p.h) continue;
        for (int c = ws; c < we; c += wstep) {
            if (c < 0 || c >= p.w) continue;
            const T v = x[r * p.x_stride[2] + c * p.x_stride[3]];
            if (arg < 0 || v > best || isnan(v)) {  // PyTorch: first max, NaN wins, last NaN
                best = v;
                arg = (i64)r * p.w + c;
            }
        }
    }
    ((T*)p.y)[i] = best;
    if (p.idx) ((i64*)p.idx)[i] = arg;
}

// --------------------------------------------------------------------------- 2. average, Lp
template <typename T>
__global__ void __launch_bounds__(256) avg_pool2d(const PoolParams p) {
    // index decoding: one output (n, c, oh, ow) per thread, its clipped window and divisor
    const OutputThread<T> t = output_thread<T>(p);
    const AvgWindow win = avg_window(p, t.o.r, t.o.col);
    // bounds
    if (!t.ok) return;
    // body
    const T norm = (T)p.norm;
    T sum = T(0);
    for (int r = win.h0; r < win.h1; ++r)
        for (int c = win.w0; c < win.w1; ++c) {
            const T v = t.x[r * p.x_stride[2] + c * p.x_stride[3]];
            sum += p.op == OP_AVG ? v : power(v, norm);
        }
    T out = sum / (T)win.divisor;
    if (p.op != OP_AVG) {  // reference.lp_pool2d: total = window * average of x^p
        const T total = out * (T)(p.kh * p.kw);
        if (p.op == OP_LP) {
            out = power(total, (T)(1.0 / p.norm));
        } else {  // d total^(1/p) / d total, 0 for an all-zero window (lp_pool_backward_from_avg)
            const T gy = ((const T*)p.gy)[t.o.n * p.g_stride[0] + t.o.c * p.g_stride[1] +
                                          t.o.r * p.g_stride[2] + t.o.col * p.g_stride[3]];
            const T safe = total + (T)(total == T(0));
            out = gy * (T)(total != T(0)) * (power(safe, (T)(1.0 / p.norm - 1.0)) / norm) *
                  (T)(p.kh * p.kw);
        }
    }
    ((T*)p.y)[t.i] = out;
}

// --------------------------------------------------------------------------- 3. backward gather
// Outputs [lo, hi] along one axis whose sliding window (no dilation) holds input position i.
__device__ __forceinline__ void sliding_members(int i, int out, int k, int s, int pad, int& lo, int& hi) {
    const int first = i + pad - k + 1;  // window start o*s - pad >= i - k + 1
    lo = first <= 0 ? 0 : (first + s - 1) / s;
    hi = imin(out - 1, (i + pad) / s);
}

// Adaptive windows holding i: start(o) <= i < end(o) <=> floor(i*out/n) <= o <= floor(((i+1)*out - 1)/n).
__device__ __forceinline__ void adaptive_members(int i, int n, int out, int& lo, int& hi) {
    lo = (int)((i64)i * out / n);
    hi = (int)(((i64)(i + 1) * out - 1) / n);
}

__device__ __forceinline__ void members(const PoolParams& p, bool rows, int i, int& lo, int& hi) {
    const int n = (int)(rows ? p.h : p.w), out = (int)(rows ? p.out_h : p.out_w);
    if (p.op == BWD_MAX) {  // max_index_bounds / max_index_members tables
        const i64* t = (const i64*)p.aux + 2 * (p.out_h + p.out_w + (rows ? 0 : p.h) + i);
        lo = (int)t[0];
        hi = (int)t[1];
    } else if (p.adaptive) {
        adaptive_members(i, n, out, lo, hi);
    } else {
        sliding_members(i, out, (int)(rows ? p.kh : p.kw), (int)(rows ? p.sh : p.sw),
                        (int)(rows ? p.ph : p.pw), lo, hi);
    }
}

template <typename T>
__global__ void __launch_bounds__(256) pool2d_backward(const PoolParams p) {
    // index decoding: one input element (n, c, h, w) per thread
    const i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x;
    const Nchw e = nchw(i, p.c, (int)p.h, (int)p.w);
    // bounds
    if (i >= p.n * p.c * p.h * p.w) return;
    // body: the windows holding (h, w), in increasing output order (as np.add.at adds them)
    int h_lo, h_hi, w_lo, w_hi;
    members(p, true, e.r, h_lo, h_hi);
    members(p, false, e.col, w_lo, w_hi);
    const T* gy = (const T*)p.gy + e.n * p.g_stride[0] + e.c * p.g_stride[1];
    const i64* idx = (const i64*)p.idx + (e.n * p.c + e.c) * p.out_h * p.out_w;  // max: indices
    const i64 self = (i64)e.r * p.w + e.col;
    T s = T(0);
    for (int oh = h_lo; oh <= h_hi; ++oh)
        for (int ow = w_lo; ow <= w_hi; ++ow) {
            const T g = gy[oh * p.g_stride[2] + ow * p.g_stride[3]];
            if (p.op == BWD_MAX) {
                if (idx[(i64)oh * p.out_w + ow] == self) s += g;
            } else {
                s += g / (T)avg_window(p, oh, ow).divisor;
            }
        }
    if (p.lp_post) {  // Lp: d(x^p)/dx
        const T x = ((const T*)p.x)[e.n * p.x_stride[0] + e.c * p.x_stride[1] +
                                    e.r * p.x_stride[2] + e.col * p.x_stride[3]];
        s *= (T)p.norm * power(x, (T)(p.norm - 1.0));
    }
    ((T*)p.y)[i] = s;
}

// --------------------------------------------------------------------------- 4. max backward tables
// Block b < out_h: the [min, max] input row that output row b's indices name, over every plane
// and column; block out_h + b: the same for the columns of output column b. Written to
// aux[2b], aux[2b + 1]. Integer min / max: exact and order-free.
__global__ void __launch_bounds__(256) max_index_bounds(const PoolParams p) {
    // index decoding: one output row or column per block
    const int line = (int)blockIdx.x;
    const bool rows = line < p.out_h;
    const int o = rows ? line : line - (int)p.out_h;
    const i64 across = rows ? p.out_w : p.out_h, count = p.n * p.c * across;
    // bounds: none (grid = out_h + out_w)
    // body
    const i64* idx = (const i64*)p.idx;
    i64 lo = rows ? p.h : p.w, hi = -1;
    for (i64 k = threadIdx.x; k < count; k += 256) {
        const i64 plane = k / across, a = k - plane * across;
        const i64 v = idx[(plane * p.out_h + (rows ? o : a)) * p.out_w + (rows ? a : o)];
        if (v < 0 || v >= p.h * p.w) continue;  // names no input element
        const i64 coord = rows ? v / p.w : v % p.w;
        lo = lmin(lo, coord);
        hi = lmax(hi, coord);
    }
    lo = block_reduce<256>(lo, [](i64 x, i64 y) { return lmin(x, y); });
    hi = block_reduce<256>(hi, [](i64 x, i64 y) { return lmax(x, y); });
    if (threadIdx.x == 0) {
        ((i64*)p.aux)[2 * line] = lo;
        ((i64*)p.aux)[2 * line + 1] = hi;
    }
}

// Thread j < h: the first and last output row whose bounds hold input row j (empty: lo > hi);
// thread h + j: the same for input column j. Written after the bounds, at aux[2(out_h + out_w + j)].
__global__ void __launch_bounds__(256) max_index_members(const PoolParams p) {
    // index decoding: one input row or column per thread
    const int j = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    const bool rows = j < p.h;
    // bounds
    if (j >= p.h + p.w) return;
    // body
    const int pos = rows ? j : j - (int)p.h, out = (int)(rows ? p.out_h : p.out_w);
    i64* t = (i64*)p.aux;
    const i64* bounds = t + (rows ? 0 : 2 * p.out_h);
    i64 lo = out, hi = -1;
    for (int o = 0; o < out; ++o)
        if (bounds[2 * o] <= pos && pos <= bounds[2 * o + 1]) {
            lo = lmin(lo, o);
            hi = o;
        }
    t[2 * (p.out_h + p.out_w + j)] = lo;
    t[2 * (p.out_h + p.out_w + j) + 1] = hi;
}
