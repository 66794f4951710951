// layers.cu: the trainer's fused layer kernels (gpuconv.nn on the GPU). Each one equals the NumPy
// path of its layer (reference: gpuconv.nn.layers BatchNorm2D and Dropout, gpuconv.nn.losses
// SoftmaxCrossEntropy); tests/test_cupy_layers_host.py checks them through the g++ host
// emulation, tests/test_cupy_compile.py compiles them for sm_90 without spills.
//
// Kernels:
//   batch_norm2d_forward<T>   nn.BatchNorm2D.forward: one block per channel. Training: the batch
//       mean and biased variance by fixed-order block sums (mean first, then the centred squares,
//       as the NumPy path), y = (x - mean) * (gamma / sqrt(var + eps)) + beta, the running
//       statistics updated in place (running = m * running + (1 - m) * batch, the variance
//       unbiased by count / (count - 1)) and (mean, 1 / std) saved for the backward.
//       Inference: the same y from the running statistics. With a ReLU fused after it
//       (relu): max(y, 0), NaN kept.
//   batch_norm2d_backward<T>  nn.BatchNorm2D.backward: one block per channel; sum(g) and
//       sum(g * (x - mean)) in one fixed-order pass, then
//       dgamma = sum(g (x - mean)) / std, dbeta = sum(g),
//       dx = gamma / std * (g - sum(g) / M - (x - mean) / std^2 * sum(g (x - mean)) / M);
//       with a fused ReLU (relu_y: the forward's output), g * (relu_y > 0) in place of g.
//   softmax_cross_entropy<T>  nn.SoftmaxCrossEntropy and nn.losses.correct_count in one block:
//       per row log p = x - max - log(sum exp(x - max)), loss = -log p[label],
//       d loss / d x = (p - onehot(label)) / N, the first maximum compared with the label; the
//       batch's loss sum and correct count are added (fixed tree) to a float64 device total.
//   relu_backward<T>          the backward of a ReLU fused into the layer before it (nn.Conv2D's
//       epilogue ReLU): dx = g * (y > 0), y the fused layer's output (y > 0 exactly where its
//       input was: NumPy's g * (y > 0), one pass instead of a comparison and a product).
//   dropout<T>                nn.Dropout forward and backward: y = x * (keep ? 1 / (1 - rate) : 0)
//       with keep = (philox4x32_10(element / 4, step, stream; key) word (element % 4) >> 8)
//       >= threshold, the same mask in both directions (nn.counter_rng is its NumPy twin).
#include "common.cuh"

// Field order and names must match LAYER_FIELDS in gpu_plan.py.
struct LayerParams {
    const void* x;          // input (contiguous); dropout: what is masked (x or grad_out)
    const void* gy;         // batch norm backward: grad_out; loss: int64 labels; relu: y
    const void* gamma;      // batch norm scale (C,)
    const void* beta;       // batch norm shift (C,)
    void* y;                // output: y, grad_x (null: not needed) or the loss gradient
    void* saved;            // batch norm: (2, C) batch mean and 1 / std for the backward
    void* running_mean;     // batch norm running statistics (C,), updated in place
    void* running_var;
    void* grad_gamma;       // batch norm backward (C,)
    void* grad_beta;
    void* totals;           // loss: float64 [loss sum, correct count], added to
    const void* seed;       // dropout: int64 [key, step], read on the device (graph replays)
    const void* relu_y;     // batch norm backward with a fused ReLU: the forward's output
    i64 n, c, hw;           // batch norm (N, C, H*W); loss N rows of C classes; relu, dropout:
                            // element count n
    i64 training;           // batch norm forward: 1 batch statistics, 0 running statistics
    i64 stream;             // dropout: the call's stream within a step
    i64 threshold;          // dropout: keep when the 24-bit draw >= threshold
    i64 relu;               // batch norm forward: a ReLU fused after it
    double momentum, epsilon, scale;  // batch norm; dropout's 1 / (1 - rate)
};

constexpr int LAYER_BLOCK = 256;

template <typename T>
__device__ __forceinline__ T add(T a, T b) { return a + b; }

// Visit every element of channel ch, f(flat offset): element j = n * HW + i of the channel
// goes to thread j % LAYER_BLOCK, so small planes (7x7) still keep every thread busy.
template <class F>
__device__ __forceinline__ void for_channel(const LayerParams& p, int ch, F f) {
    i64 n = threadIdx.x / p.hw, i = threadIdx.x % p.hw;
    while (n < p.n) {
        f((n * p.c + ch) * p.hw + i);
        i += LAYER_BLOCK;
        if (i >= p.hw) {
            if (i < 2 * p.hw) { i -= p.hw; ++n; }
            else { n += i / p.hw; i %= p.hw; }
        }
    }
}

// Sum of f(flat offset) over channel ch: each thread its fixed subset, then a fixed tree, so
// the same order every run.
template <class F>
__device__ __forceinline__ double channel_sum(const LayerParams& p, int ch, F f) {
    double s = 0.0;
    for_channel(p, ch, [&](i64 k) { s += f(k); });
    return block_reduce<LAYER_BLOCK>(s, add<double>);
}

// --------------------------------------------------------------------------- batch norm
template <typename T>
__global__ void __launch_bounds__(LAYER_BLOCK) batch_norm2d_forward(const LayerParams p) {
    const int ch = (int)blockIdx.x;
    const T* x = (const T*)p.x;
    T* running_mean = (T*)p.running_mean;
    T* running_var = (T*)p.running_var;
    T mean, inv_std;
    if (p.training) {
        const i64 count = p.n * p.hw;
        mean = (T)(channel_sum(p, ch, [&](i64 i) { return (double)x[i]; }) / (double)count);
        const T var = (T)(channel_sum(p, ch, [&](i64 i) {
            const double d = (double)(x[i] - mean);
            return d * d;
        }) / (double)count);
        inv_std = T(1) / sqrt(var + (T)p.epsilon);
        if (threadIdx.x == 0) {
            const T m = (T)p.momentum, unbias = (T)((double)count / (double)(count > 1 ? count - 1 : 1));
            running_mean[ch] = m * running_mean[ch] + (T(1) - m) * mean;
            running_var[ch] = m * running_var[ch] + (T(1) - m) * var * unbias;
            ((T*)p.saved)[ch] = mean;
            ((T*)p.saved)[p.c + ch] = inv_std;
        }
    } else {
        mean = running_mean[ch];
        inv_std = T(1) / sqrt(running_var[ch] + (T)p.epsilon);
    }
    const T scale = ((const T*)p.gamma)[ch] * inv_std, shift = ((const T*)p.beta)[ch];
    T* y = (T*)p.y;
    const bool relu = p.relu != 0;
    for_channel(p, ch, [&](i64 k) {
        const T v = (x[k] - mean) * scale + shift;
        y[k] = relu && v < T(0) ? T(0) : v;  // NaN stays NaN, as np.maximum(y, 0)
    });
}

template <typename T>
__global__ void __launch_bounds__(LAYER_BLOCK) batch_norm2d_backward(const LayerParams p) {
    const int ch = (int)blockIdx.x;
    const T* x = (const T*)p.x;
    const T* gy = (const T*)p.gy;
    const T* relu_y = (const T*)p.relu_y;
    // the upstream gradient, through the fused ReLU's slope where there is one (g * (y > 0))
    const auto g = [&](i64 i) { return relu_y ? gy[i] * (relu_y[i] > T(0) ? T(1) : T(0)) : gy[i]; };
    const T mean = ((const T*)p.saved)[ch], inv_std = ((const T*)p.saved)[p.c + ch];
    const T sum_g = (T)channel_sum(p, ch, [&](i64 i) { return (double)g(i); });
    const T sum_gc = (T)channel_sum(p, ch, [&](i64 i) { return (double)g(i) * (double)(x[i] - mean); });
    if (threadIdx.x == 0) {
        ((T*)p.grad_gamma)[ch] = sum_gc * inv_std;
        ((T*)p.grad_beta)[ch] = sum_g;
    }
    if (!p.y) return;
    const T count = (T)(p.n * p.hw);
    const T scale = ((const T*)p.gamma)[ch] * inv_std;
    const T slope = -scale * inv_std * inv_std * sum_gc / count, shift = -scale * sum_g / count;
    T* gx = (T*)p.y;
    for_channel(p, ch, [&](i64 k) { gx[k] = g(k) * scale + (x[k] - mean) * slope + shift; });
}

// --------------------------------------------------------------------------- loss
template <typename T>
__global__ void __launch_bounds__(LAYER_BLOCK) softmax_cross_entropy(const LayerParams p) {
    const T* logits = (const T*)p.x;
    const i64* labels = (const i64*)p.gy;
    T* grad = (T*)p.y;
    double loss = 0.0, correct = 0.0;
    for (i64 r = threadIdx.x; r < p.n; r += LAYER_BLOCK) {
        const T* row = logits + r * p.c;
        T* grow = grad + r * p.c;
        i64 arg = 0;
        for (i64 j = 1; j < p.c; ++j)
            if (row[j] > row[arg]) arg = j;  // the first maximum, as argmax
        const T top = row[arg];
        T total = T(0);
        for (i64 j = 0; j < p.c; ++j) total += exp(row[j] - top);
        const T log_total = log(total);
        const i64 label = labels[r];
        for (i64 j = 0; j < p.c; ++j) {
            T d = exp(row[j] - top - log_total);
            if (j == label) d -= T(1);
            grow[j] = d / (T)p.n;
        }
        loss -= (double)(row[label] - top - log_total);
        correct += arg == label ? 1.0 : 0.0;
    }
    loss = block_reduce<LAYER_BLOCK>(loss, add<double>);
    correct = block_reduce<LAYER_BLOCK>(correct, add<double>);
    if (threadIdx.x == 0) {
        ((double*)p.totals)[0] += loss;
        ((double*)p.totals)[1] += correct;
    }
}

// --------------------------------------------------------------------------- dropout
// Philox4x32-10 (Salmon et al., SC'11): four 32-bit draws from a 128-bit counter and a 64-bit key.
struct Draws { unsigned v[4]; };

__device__ __forceinline__ void mulhilo(unsigned a, unsigned b, unsigned& hi, unsigned& lo) {
    const unsigned long long prod = (unsigned long long)a * b;
    hi = (unsigned)(prod >> 32);
    lo = (unsigned)prod;
}

__device__ __forceinline__ Draws philox4x32_10(unsigned c0, unsigned c1, unsigned c2, unsigned c3,
                                               unsigned k0, unsigned k1) {
    for (int round = 0; round < 10; ++round) {
        unsigned hi0, lo0, hi1, lo1;
        mulhilo(0xD2511F53u, c0, hi0, lo0);
        mulhilo(0xCD9E8D57u, c2, hi1, lo1);
        const unsigned n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    Draws d;
    d.v[0] = c0; d.v[1] = c1; d.v[2] = c2; d.v[3] = c3;
    return d;
}

template <typename T>
__global__ void __launch_bounds__(LAYER_BLOCK) relu_backward(const LayerParams p) {
    const i64 i = (i64)blockIdx.x * LAYER_BLOCK + threadIdx.x;
    if (i >= p.n) return;
    const T* g = (const T*)p.x;
    const T* y = (const T*)p.gy;
    ((T*)p.y)[i] = g[i] * (y[i] > T(0) ? T(1) : T(0));  // g * 0: -0, or NaN for g = inf, as NumPy
}

template <typename T>
__global__ void __launch_bounds__(LAYER_BLOCK) dropout(const LayerParams p) {
    // four consecutive elements per thread: one Philox call
    const i64 group = (i64)blockIdx.x * LAYER_BLOCK + threadIdx.x;
    if (group * 4 >= p.n) return;
    const i64 key = ((const i64*)p.seed)[0], step = ((const i64*)p.seed)[1];
    const Draws d = philox4x32_10((unsigned)group, (unsigned)(group >> 32), (unsigned)step, (unsigned)p.stream,
                                  (unsigned)key, (unsigned)(key >> 32));
    const T* x = (const T*)p.x;
    T* y = (T*)p.y;
    const T scale = (T)p.scale;
    for (int k = 0; k < 4; ++k) {
        const i64 i = group * 4 + k;
        if (i < p.n) y[i] = x[i] * ((i64)(d.v[k] >> 8) >= p.threshold ? scale : T(0));
    }
}
