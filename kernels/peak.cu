// peak.cu: the chip's arithmetic ceilings, which `gpuconv bench` judges the conv GEMMs by
// (gpuconv.benchmark.peaks): loops of independent multiply-adds in registers, no memory in the
// loop. Not part of the backends' module.
//
// reference: gpuconv.benchmark.peaks.expected (the sum every thread must write)
// Kernels (one thread per output element; each sums to a value known beforehand, so the bench
// and the host emulation check that every multiply-add ran):
//   ffma_peak   PEAK_CHAINS independent FFMA chains a thread, acc = acc * x + y, started at
//               acc_c = c: out[thread] = sum_c (c + steps * y) where x = 1 (steps = iterations
//               x PEAK_UNROLL multiply-adds a chain)
//   mma_peak    PEAK_CHAINS independent mma.sync m16n8k8 TF32 accumulators a warp, every
//               operand x: out[thread] = PEAK_CHAINS x 4 x steps x 8 x^2 (each MMA adds 8 x^2
//               to each of a lane's 4 accumulators)
// The flops are what the bench counts: 2 a multiply-add, an MMA 2 x 16 x 8 x 8.
#include "common.cuh"

struct PeakParams {
    float* out;
    float x, y;
    int iterations;
};

constexpr int PEAK_CHAINS = 8;   // independent accumulators: enough to cover each unit's latency
constexpr int PEAK_UNROLL = 8;   // multiply-adds a chain per loop iteration (the loop's own
                                 // few instructions then cost under 5% of the FFMA loop)
constexpr int PEAK_THREADS = 256;

__global__ void __launch_bounds__(PEAK_THREADS) ffma_peak(const PeakParams p) {
    float acc[PEAK_CHAINS];
#pragma unroll
    for (int c = 0; c < PEAK_CHAINS; ++c) acc[c] = (float)c;
    for (int i = 0; i < p.iterations; ++i)
#pragma unroll
        for (int u = 0; u < PEAK_UNROLL; ++u)
#pragma unroll
            for (int c = 0; c < PEAK_CHAINS; ++c) acc[c] = fmaf(acc[c], p.x, p.y);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < PEAK_CHAINS; ++c) sum += acc[c];
    p.out[blockIdx.x * PEAK_THREADS + threadIdx.x] = sum;
}

__global__ void __launch_bounds__(PEAK_THREADS) mma_peak(const PeakParams p) {
    const unsigned x = __float_as_uint(p.x);
    const unsigned a[4] = {x, x, x, x}, b[2] = {x, x};
    float acc[PEAK_CHAINS][4];
#pragma unroll
    for (int c = 0; c < PEAK_CHAINS; ++c)
#pragma unroll
        for (int v = 0; v < 4; ++v) acc[c][v] = 0.0f;
    for (int i = 0; i < p.iterations; ++i)
#pragma unroll
        for (int u = 0; u < PEAK_UNROLL; ++u)
#pragma unroll
            for (int c = 0; c < PEAK_CHAINS; ++c) mma_tf32(acc[c], a, b);
    float sum = 0.0f;
#pragma unroll
    for (int c = 0; c < PEAK_CHAINS; ++c) sum += (acc[c][0] + acc[c][1]) + (acc[c][2] + acc[c][3]);
    p.out[blockIdx.x * PEAK_THREADS + threadIdx.x] = sum;
}
