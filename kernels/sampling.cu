// sampling.cu: greedy selection on the device (argmax per row of logits, with the CPU's rules:
// lowest index on ties, NaN never wins, 0 when no logit is > -inf) and temperature scaling.
// Launch geometry: kernels/README.md.
#include "common.cuh"

#define ARGMAX_THREADS 1024

// (v, i) beats (bv, bi): larger value, or the same value at a smaller index. NaN never
// compares greater or equal, so it never wins; the initial (-inf, INT_MAX) loses to any
// real logit, -inf included.
__device__ __forceinline__ bool argmax_beats(float v, int i, float bv, int bi) {
    return v > bv || (v == bv && i < bi);
}

// Grid (n_rows, 1, 1), block (1024, 1, 1): out_ids[row] = the index of the largest of
// logits[row, 0..vocab), out_vals[row] = that value; a row with no logit > -inf (all -inf or
// NaN, or vocab == 0) gives id 0 and -inf, as sampling::argmax does.
extern "C" __global__ void __launch_bounds__(ARGMAX_THREADS)
argmax_rows(const float* __restrict__ logits, int vocab, int* __restrict__ out_ids, float* __restrict__ out_vals) {
    __shared__ float s_val[32];
    __shared__ int s_idx[32];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = (blockDim.x + 31) >> 5;
    const float* row = logits + (long long)blockIdx.x * vocab;
    float bv = ld_neg_inf();
    int bi = 0x7fffffff;
    for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
        const float v = row[i];
        if (argmax_beats(v, i, bv, bi)) bv = v, bi = i;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(LD_FULL_MASK, bv, o);
        const int oi = __shfl_xor_sync(LD_FULL_MASK, bi, o);
        if (argmax_beats(ov, oi, bv, bi)) bv = ov, bi = oi;
    }
    if (lane == 0) s_val[warp] = bv, s_idx[warp] = bi;
    __syncthreads();
    if (warp == 0) {
        bv = lane < n_warps ? s_val[lane] : ld_neg_inf();
        bi = lane < n_warps ? s_idx[lane] : 0x7fffffff;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(LD_FULL_MASK, bv, o);
            const int oi = __shfl_xor_sync(LD_FULL_MASK, bi, o);
            if (argmax_beats(ov, oi, bv, bi)) bv = ov, bi = oi;
        }
        if (lane == 0) {
            const bool none = bv == ld_neg_inf();
            out_ids[blockIdx.x] = none ? 0 : bi;
            out_vals[blockIdx.x] = bv;
        }
    }
}

// logits *= inv_temperature. Block (256, 1, 1), grid (ceil(n/256), 1, 1).
extern "C" __global__ void __launch_bounds__(256) scale_logits(float* logits, long long n, float inv_temperature) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        logits[i] *= inv_temperature;
}
