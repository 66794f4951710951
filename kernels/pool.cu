// pool.cu: the cupy backend's pooling kernels, forward and backward, all gathers (no atomics).
// reference: gpuconv.backends.reference.max_pool2d, reference.avg_pool2d, reference.lp_pool2d,
//            reference.adaptive_avg_pool2d, reference.adaptive_max_pool2d and their backwards
//            (reference.max_pool2d_backward, reference.avg_pool2d_backward, ...):
//   max     y[n,c,i,j] = max_{r,s} x[n, c, i*sh + r*dh - ph, j*sw + s*dw - pw] (taps inside x)
//   avg     y[n,c,i,j] = sum_{r,s} x[n, c, i*sh + r - ph, j*sw + s - pw] / divisor[i,j]
//   Lp      y = (kh*kw * avg(x^p))^(1/p);  adaptive: rows [floor(i*H/Ho), ceil((i+1)*H/Ho))
// Checked against numpy_backend's max_pool2d, avg_pool2d, adaptive_avg_pool2d,
// adaptive_max_pool2d, lp_pool2d and their backwards (tests/test_cupy_host.py on the CPU,
// tests/test_golden.py on a GPU). Twin: kernels/pool_numba.py (same names, same parameters).
//
// Layout (every kernel): a block of (bx column chunks, by rows, bz planes); each thread POOL_V
// consecutive outputs (forward) or input elements (backward) of a row; grid x over column
// chunks, y over rows, z over planes (looping by the grid); no division in the tap loops;
// results stored as 16-byte vectors where the row chunk is whole and aligned.
// Kernels (each the only one for its op; none is chosen among alternatives):
//   1. max_pool2d<T>: the maximum over each window (sliding with dilation, or adaptive); the
//      first maximum wins, a NaN wins and the last NaN wins; int64 indices optional.
//   2. avg_pool2d<T>: the average, Lp pooling, or the Lp gradient's per-window scale (the
//      average's divisor rules of PyTorch).
//   Global (adaptive 1x1) max / average inside 1. and 2.: bx lanes per plane read it (16-byte
//      loads where aligned) and reduce in a fixed shared-memory tree.
//   3. pool2d_backward<T>: average / Lp gather over the closed-form ranges of windows that
//      hold each input element.
//   4. max_pool2d_backward<T>: the same closed-form ranges from the pooling spec (or adaptive
//      windows); an output adds its gradient where its index names the element; the thread of
//      a window's first tap checks that its index names one of its taps.
#include "common.cuh"

enum PoolOp { OP_AVG = 0, OP_LP = 1, OP_LP_GRAD_SCALE = 2 };
constexpr int POOL_V = 4;  // elements per thread along a row (gpu_plan.POOL_V)

// --------------------------------------------------------------------------- layout
// The calling thread's POOL_V columns col0.. of rows row, row + row_step, ... and planes
// plane0, plane0 + plane_step, ...
struct Place { int col0, row0, row_step; i64 plane0, plane_step; };

__device__ __forceinline__ Place place() {
    Place t;
    t.col0 = (int)(blockIdx.x * blockDim.x + threadIdx.x) * POOL_V;
    t.row0 = (int)(blockIdx.y * blockDim.y + threadIdx.y);
    t.row_step = (int)(gridDim.y * blockDim.y);
    t.plane0 = (i64)blockIdx.z * blockDim.z + threadIdx.z;
    t.plane_step = (i64)gridDim.z * blockDim.z;
    return t;
}

// plane = n * channels + c, in 32 bits (gpu_plan.pool32 keeps planes below 2^32: the 64-bit
// division routine is a call whose saved registers spill).
__device__ __forceinline__ void split_plane(i64 plane, i64 channels, i64& n, i64& c) {
    n = (unsigned)plane / (unsigned)channels;
    c = plane - n * channels;
}

// --------------------------------------------------------------------------- windows
// [start, end) of adaptive window o of out over n positions (shapes.adaptive_windows), in 32
// bits (gpu_plan.pool32 keeps n * (out + 1) below 2^32): the end's ceiling as
// ((o+1)*n - 1) / out + 1, whose operand stays below n * out (the textbook
// (o+1)*n + out - 1 reaches (n+1) * out - 1, past 2^32 where out > n: 65280 -> 65792).
__device__ __forceinline__ void adaptive_range(int o, int n, int out, int& start, int& end) {
    start = (int)((unsigned)o * (unsigned)n / (unsigned)out);
    end = (int)(((unsigned)(o + 1) * (unsigned)n - 1) / (unsigned)out) + 1;
}

// One axis of the pooling: rows or columns of p.
struct PoolAxis { int n, out, k, s, pad, d; };

__device__ __forceinline__ PoolAxis pool_axis(const PoolParams& p, bool rows) {
    return rows ? PoolAxis{(int)p.h, (int)p.out_h, (int)p.kh, (int)p.sh, (int)p.ph, (int)p.dh}
                : PoolAxis{(int)p.w, (int)p.out_w, (int)p.kw, (int)p.sw, (int)p.pw, (int)p.dw};
}

// Output o's taps along an axis, clipped to the input: first, first + step, ... < end.
__device__ __forceinline__ void max_taps(const PoolParams& p, const PoolAxis& a, int o, int& first, int& end,
                                         int& step) {
    if (p.adaptive) {
        adaptive_range(o, a.n, a.out, first, end);
        step = 1;
        return;
    }
    const int start = o * a.s - a.pad;
    step = a.d;
    first = start < 0 ? start + (-start + step - 1) / step * step : start;  // first tap inside
    end = imin(start + (a.k - 1) * a.d + 1, a.n);
}

// Output o's window along an axis for averages: [lo, hi) clipped to the input, and its factor
// of the divisor (numpy_backend._avg_divisor: clipped to the padded input, then, unless
// count_include_pad, to the input).
struct AvgAxis { int lo, hi, count; };

__device__ __forceinline__ AvgAxis avg_axis(const PoolParams& p, const PoolAxis& a, int o) {
    int start, end;
    if (p.adaptive) {
        adaptive_range(o, a.n, a.out, start, end);
    } else {
        start = o * a.s - a.pad;
        end = imin(start + a.k, a.n + a.pad);
    }
    AvgAxis r;
    r.lo = imax(start, 0);
    r.hi = imin(end, a.n);
    r.count = p.count_include_pad && !p.adaptive ? end - start : r.hi - r.lo;
    return r;
}

__device__ __forceinline__ i64 avg_divisor(const PoolParams& p, const AvgAxis& r, const AvgAxis& c) {
    return p.divisor_override ? p.divisor_override : (i64)r.count * c.count;
}

// Outputs [lo, hi] along an axis whose window may hold input position i, in closed form:
// sliding (o*s - pad <= i <= o*s - pad + (k-1)*d) or adaptive (start(o) <= i < end(o) <=>
// floor(i*out/n) <= o <= floor(((i+1)*out - 1)/n)). Empty when lo > hi.
__device__ __forceinline__ void members(const PoolParams& p, const PoolAxis& a, int i, int& lo, int& hi) {
    if (p.adaptive) {
        lo = (int)((unsigned)i * (unsigned)a.out / (unsigned)a.n);
        hi = (int)(((unsigned)(i + 1) * (unsigned)a.out - 1) / (unsigned)a.n);
        return;
    }
    const int first = i + a.pad - (a.k - 1) * a.d;
    lo = first <= 0 ? 0 : (first + a.s - 1) / a.s;
    hi = imin(a.out - 1, (i + a.pad) / a.s);
}

// Sum of x (or x^p, Lp) over output (rows rh, column ow)'s window / its divisor.
template <typename T>
__device__ __forceinline__ T window_mean(const PoolParams& p, const PoolAxis& aw, const AvgAxis& rh,
                                         const T* x, int ow) {
    const AvgAxis cw = avg_axis(p, aw, ow);
    T sum = T(0);
    for (int r = rh.lo; r < rh.hi; ++r)
        for (int col = cw.lo; col < cw.hi; ++col) {
            const T val = x[r * p.x_stride[2] + col * p.x_stride[3]];
            sum += p.op == OP_AVG ? val : power(val, (T)p.norm);
        }
    return sum / (T)avg_divisor(p, rh, cw);
}

// Sum over the windows holding input column w (output rows h_lo..h_hi) of gy / divisor.
template <typename T>
__device__ __forceinline__ T avg_gather(const PoolParams& p, const PoolAxis& ah, const PoolAxis& aw,
                                        const T* gy, int h_lo, int h_hi, int w) {
    int w_lo, w_hi;
    members(p, aw, w, w_lo, w_hi);
    T s = T(0);
    for (int oh = h_lo; oh <= h_hi; ++oh) {
        const AvgAxis rh = avg_axis(p, ah, oh);
        for (int ow = w_lo; ow <= w_hi; ++ow)
            s += gy[oh * p.g_stride[2] + ow * p.g_stride[3]] / (T)avg_divisor(p, rh, avg_axis(p, aw, ow));
    }
    return s;
}

// --------------------------------------------------------------------------- global pooling
// Max with the index rule of max_pool2d, as an order-free merge: a NaN beats a number, of two
// NaNs the later index wins; of two equal numbers the earlier index wins.
template <typename T>
struct MaxArg {
    T v;
    i64 arg;  // -1: nothing yet
    __device__ __forceinline__ void take(T x, i64 i) {  // i increases along a lane
        if (arg < 0 || x > v || isnan(x)) { v = x; arg = i; }
    }
    __device__ __forceinline__ void merge(const MaxArg& o) {
        if (o.arg < 0) return;
        const bool a_nan = isnan(v), o_nan = isnan(o.v);
        const bool wins = arg < 0 || (a_nan || o_nan ? o_nan && (!a_nan || o.arg > arg)
                                                     : o.v > v || (o.v == v && o.arg < arg));
        if (wins) *this = o;
    }
};

template <typename T>
struct SumOf {
    T v;
    __device__ __forceinline__ void take(T x, i64) { v += x; }
    __device__ __forceinline__ void merge(const SumOf& o) { v += o.v; }
};

// Each plane's reduction by blockDim.x lanes (blockDim.y == 1), then a fixed tree over the
// lanes in shared memory; lane 0 gets the plane's result. Every thread runs the same number
// of iterations (the tree synchronises the block).
template <typename T, class R, class Write>
__device__ __forceinline__ void global_pool(const PoolParams& p, R init, Write write) {
    __shared__ R part[256];  // blockDim.x * blockDim.z <= 256
    const int lanes = (int)blockDim.x, lane = (int)threadIdx.x;
    const int slot = (int)threadIdx.z * lanes + lane;
    const i64 planes = p.n * p.c, plane_len = p.h * p.w;
    const bool contiguous = p.x_stride[3] == 1 && p.x_stride[2] == p.w;
    for (i64 base = (i64)blockIdx.z * blockDim.z; base < planes; base += (i64)gridDim.z * blockDim.z) {
        const i64 plane = base + threadIdx.z;
        R acc = init;
        if (plane < planes) {
            i64 n, c;
            split_plane(plane, p.c, n, c);
            const T* x = (const T*)p.x + n * p.x_stride[0] + c * p.x_stride[1];
            constexpr int N = Vec16<T>::N;
            if (contiguous && aligned16(x) && plane_len % N == 0) {
                for (i64 k = lane; k < plane_len / N; k += lanes) {
                    const Vec16<T> q = ((const Vec16<T>*)x)[k];
#pragma unroll
                    for (int e = 0; e < N; ++e) acc.take(q.v[e], k * N + e);
                }
            } else if (contiguous) {
                for (i64 k = lane; k < plane_len; k += lanes) acc.take(x[k], k);
            } else {
                for (int r = 0; r < p.h; ++r)
                    for (int col = lane; col < p.w; col += lanes)
                        acc.take(x[r * p.x_stride[2] + col * p.x_stride[3]], (i64)r * p.w + col);
            }
        }
        part[slot] = acc;
        __syncthreads();
        for (int s = lanes / 2; s > 0; s >>= 1) {
            if (lane < s) part[slot].merge(part[slot + s]);
            __syncthreads();
        }
        // no barrier before the next planes: lane 0 reads only its own slot, which only it
        // writes, and the other slots were last read before the tree's final barrier
        if (lane == 0 && plane < planes) write(plane, part[slot]);
    }
}

__device__ __forceinline__ bool is_global(const PoolParams& p) {
    return p.adaptive && p.out_h == 1 && p.out_w == 1;
}

// --------------------------------------------------------------------------- 1. max
// y[n, c, oh, ow] = max over (r, col) in window(oh, ow) of x[n, c, r, col]; idx = r * W + col
// of that maximum (numpy_backend.max_pool2d / adaptive_max_pool2d).
template <typename T>
__global__ void __launch_bounds__(256) max_pool2d(const PoolParams p) {
    if (is_global(p)) {  // global pooling
        global_pool<T>(p, MaxArg<T>{T(0), -1}, [&](i64 plane, const MaxArg<T>& m) {
            ((T*)p.y)[plane] = m.v;
            if (p.idx) ((i64*)p.idx)[plane] = m.arg;
        });
        return;
    }
    // index decoding: POOL_V outputs (oh, col0 + v) per thread, planes by the grid
    const Place t = place();
    const PoolAxis ah = pool_axis(p, true), aw = pool_axis(p, false);
    // bounds
    if (t.col0 >= aw.out) return;
    const int count = imin(POOL_V, aw.out - t.col0);
    // body
    int c0[POOL_V], c1[POOL_V], cs;
#pragma unroll
    for (int v = 0; v < POOL_V; ++v) max_taps(p, aw, t.col0 + v, c0[v], c1[v], cs);
    for (int oh = t.row0; oh < ah.out; oh += t.row_step) {
        int r0, r1, rs;
        max_taps(p, ah, oh, r0, r1, rs);
        for (i64 plane = t.plane0; plane < p.n * p.c; plane += t.plane_step) {
            i64 n, c;
            split_plane(plane, p.c, n, c);
            const T* x = (const T*)p.x + n * p.x_stride[0] + c * p.x_stride[1];
            T best[POOL_V];
            i64 arg[POOL_V];
#pragma unroll
            for (int v = 0; v < POOL_V; ++v) {
                best[v] = T(0);
                arg[v] = -1;  // functional rejects windows of padding only, so some tap is valid
                if (v < count)
                    for (int r = r0; r < r1; r += rs)
                        for (int col = c0[v]; col < c1[v]; col += cs) {
                            const T val = x[r * p.x_stride[2] + col * p.x_stride[3]];
                            if (arg[v] < 0 || val > best[v] || isnan(val)) {  // first max, last NaN
                                best[v] = val;
                                arg[v] = (i64)r * p.w + col;
                            }
                        }
            }
            const i64 out = (plane * ah.out + oh) * aw.out + t.col0;
            store_vec((T*)p.y + out, best, count);
            if (p.idx) store_vec((i64*)p.idx + out, arg, count);
        }
    }
}

// --------------------------------------------------------------------------- 2. average, Lp
// op 0: y = sum over window(oh, ow) of x / divisor (numpy_backend.avg_pool2d,
// adaptive_avg_pool2d); op 1: y = (kh*kw * avg(x^p))^(1/p) (lp_pool2d); op 2: the Lp
// gradient's per-window scale gy * total^(1/p - 1) / p * kh*kw (lp_pool2d_backward).
// At least two blocks per SM: without the hint ptxas aims at 48 registers and spills the global path.
template <typename T>
__global__ void __launch_bounds__(256, 2) avg_pool2d(const PoolParams p) {
    if (is_global(p)) {  // global pooling (adaptive: plain averages)
        global_pool<T>(p, SumOf<T>{T(0)}, [&](i64 plane, const SumOf<T>& s) {
            ((T*)p.y)[plane] = s.v / (T)(p.h * p.w);
        });
        return;
    }
    // index decoding: POOL_V outputs (oh, col0 + v) per thread, planes by the grid
    const Place t = place();
    const PoolAxis ah = pool_axis(p, true), aw = pool_axis(p, false);
    // bounds
    if (t.col0 >= aw.out) return;
    const int count = imin(POOL_V, aw.out - t.col0);
    // body: averages unrolled over the row's outputs; Lp (power calls) one output at a time
    const T norm = (T)p.norm, window = (T)(p.kh * p.kw);
    for (int oh = t.row0; oh < ah.out; oh += t.row_step) {
        const AvgAxis rh = avg_axis(p, ah, oh);
        for (i64 plane = t.plane0; plane < p.n * p.c; plane += t.plane_step) {
            i64 n, c;
            split_plane(plane, p.c, n, c);
            const T* x = (const T*)p.x + n * p.x_stride[0] + c * p.x_stride[1];
            T* y = (T*)p.y + (plane * ah.out + oh) * aw.out + t.col0;
            if (p.op == OP_AVG) {
                T out[POOL_V];
#pragma unroll
                for (int v = 0; v < POOL_V; ++v) out[v] = window_mean(p, aw, rh, x, imin(t.col0 + v, aw.out - 1));
                store_vec(y, out, count);
                continue;
            }
#pragma unroll 1
            for (int v = 0; v < count; ++v) {  // numpy_backend.lp_pool2d: total = avg of x^p * window
                const T total = window_mean(p, aw, rh, x, t.col0 + v) * window;
                if (p.op == OP_LP) {
                    y[v] = power(total, (T)(1.0 / p.norm));
                } else {  // d total^(1/p) / d total, 0 for an all-zero or NaN window
                    const T gy = ((const T*)p.gy)[n * p.g_stride[0] + c * p.g_stride[1] +
                                                  oh * p.g_stride[2] + (t.col0 + v) * p.g_stride[3]];
                    const T safe = total + (T)(total == T(0));
                    y[v] = gy * (T)(total > T(0) || total < T(0)) * (power(safe, (T)(1.0 / p.norm - 1.0)) / norm) * window;
                }
            }
        }
    }
}

// --------------------------------------------------------------------------- 3. average / Lp backward
// dx[n, c, h, w] = sum over the windows (oh, ow) holding (h, w), in increasing output order,
// of gy[n, c, oh, ow] / divisor(oh, ow); times p * x^(p-1) when lp_post (Lp, whose gy is the
// per-window scale). numpy_backend.avg_pool2d_backward, adaptive_avg_pool2d_backward,
// lp_pool2d_backward.
template <typename T>
__global__ void __launch_bounds__(256) pool2d_backward(const PoolParams p) {
    // index decoding: POOL_V input elements (h, col0 + v) per thread, planes by the grid
    const Place t = place();
    const PoolAxis ah = pool_axis(p, true), aw = pool_axis(p, false);
    // bounds
    if (t.col0 >= aw.n) return;
    const int count = imin(POOL_V, aw.n - t.col0);
    // body: unrolled over the row's elements; Lp (power calls) one element at a time
    for (int h = t.row0; h < ah.n; h += t.row_step) {
        int h_lo, h_hi;
        members(p, ah, h, h_lo, h_hi);
        for (i64 plane = t.plane0; plane < p.n * p.c; plane += t.plane_step) {
            i64 n, c;
            split_plane(plane, p.c, n, c);
            const T* gy = (const T*)p.gy + n * p.g_stride[0] + c * p.g_stride[1];
            T* y = (T*)p.y + (plane * ah.n + h) * aw.n + t.col0;
            if (!p.lp_post) {
                T s[POOL_V];
#pragma unroll
                for (int v = 0; v < POOL_V; ++v) s[v] = avg_gather(p, ah, aw, gy, h_lo, h_hi, imin(t.col0 + v, aw.n - 1));
                store_vec(y, s, count);
                continue;
            }
            const T* x = (const T*)p.x + n * p.x_stride[0] + c * p.x_stride[1] + h * p.x_stride[2];
#pragma unroll 1
            for (int v = 0; v < count; ++v)  // Lp: times d(x^p)/dx
                y[v] = avg_gather(p, ah, aw, gy, h_lo, h_hi, t.col0 + v) * ((T)p.norm * power(x[(t.col0 + v) * p.x_stride[3]], (T)(p.norm - 1.0)));
        }
    }
}

// --------------------------------------------------------------------------- 4. max backward
// For the thread whose columns col0 .. col0 + POOL_V - 1 hold the first tap of output ow's
// window (on the row where the window's taps r0, r0 + rs, ... < r1 start): unless flat index
// at (inside the plane) names one of the window's taps, set the error word to -H * W. Row by
// row of taps: no division of a flat index (a plane may pass 2^32 elements).
__device__ __forceinline__ void check_window_index(const PoolParams& p, const PoolAxis& aw, int ow,
                                                   int col0, i64 at, int r0, int r1, int rs) {
    int c0, c1, cs;
    max_taps(p, aw, ow, c0, c1, cs);
    if ((unsigned)(c0 - col0) >= POOL_V) return;  // another thread's column (c0 < W: a tap)
    for (int r = r0; r < r1; r += rs) {
        const i64 c = at - (i64)r * p.w;
        if (c >= c0 && c < c1 && (int)(c - c0) % cs == 0) return;
    }
    *(i64*)p.err = -p.h * p.w;
}

// dx[n, c, h, w] = sum, in increasing output order, of gy[n, c, oh, ow] over the outputs whose
// window may hold (h, w) (closed form from the spec, or adaptive) and whose index
// idx[n, c, oh, ow] == h * W + w (numpy_backend.max_pool2d_backward). idx: contiguous. An index
// outside the plane sets the error word err (when given) to H * W; one inside it that names no
// tap of its output's window (shapes.max_window_taps; found by the thread holding the window's
// first tap, which reads every index of it) to -H * W.
template <typename T>
__global__ void __launch_bounds__(256) max_pool2d_backward(const PoolParams p) {
    // index decoding: POOL_V input elements (h, col0 + v) per thread, planes by the grid
    const Place t = place();
    const PoolAxis ah = pool_axis(p, true), aw = pool_axis(p, false);
    // bounds
    if (t.col0 >= aw.n) return;
    const int count = imin(POOL_V, aw.n - t.col0);
    // body: the column candidates of the POOL_V elements together
    int w_lo, w_hi, unused;
    members(p, aw, t.col0, w_lo, unused);
    members(p, aw, t.col0 + count - 1, unused, w_hi);
    for (int h = t.row0; h < ah.n; h += t.row_step) {
        int h_lo, h_hi;
        members(p, ah, h, h_lo, h_hi);
        const i64 self = (i64)h * aw.n + t.col0;
        for (i64 plane = t.plane0; plane < p.n * p.c; plane += t.plane_step) {
            i64 n, c;
            split_plane(plane, p.c, n, c);
            const T* gy = (const T*)p.gy + n * p.g_stride[0] + c * p.g_stride[1];
            const i64* idx = (const i64*)p.idx + plane * ah.out * aw.out;
            T s[POOL_V];
#pragma unroll
            for (int v = 0; v < POOL_V; ++v) s[v] = T(0);
            for (int oh = h_lo; oh <= h_hi; ++oh) {
                int r0, r1, rs;
                max_taps(p, ah, oh, r0, r1, rs);
                const bool first_row = p.err && h == r0;  // the window's taps start on row h
                for (int ow = w_lo; ow <= w_hi; ++ow) {
                    const i64 at = idx[(i64)oh * aw.out + ow];
                    if (p.err && (unsigned long long)at >= (unsigned long long)(p.h * p.w))
                        *(i64*)p.err = p.h * p.w;  // every output's index is read by some element
                    else if (first_row)
                        check_window_index(p, aw, ow, t.col0, at, r0, r1, rs);
                    const unsigned long long d = (unsigned long long)(at - self);
                    if (d >= POOL_V) continue;  // names another element (d >= count: not stored)
                    const T g = gy[oh * p.g_stride[2] + ow * p.g_stride[3]];
#pragma unroll
                    for (int v = 0; v < POOL_V; ++v)
                        if (d == (unsigned long long)v) s[v] += g;
                }
            }
            store_vec((T*)p.y + (plane * ah.n + h) * aw.n + t.col0, s, count);
        }
    }
}
