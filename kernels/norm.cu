// norm.cu: the per-token element-wise layers of the decoder: RMSNorm, RoPE (HF rotate_half),
// SiLU·up, residual add, and embedding lookup from f16 or Q8_0 tables. fp32 throughout; the
// arithmetic follows the CPU reference (src/model) operation by operation where it can.
// Launch geometry per kernel: kernels/README.md.
#include "common.cuh"

// y[t, i] = w[i] · (x[t, i] · 1/sqrt(mean_i(x[t, i]²) + eps)). Grid (n_tokens, 1, 1), block
// (256, 1, 1). y may alias x (each element is read before its own thread writes it).
extern "C" __global__ void __launch_bounds__(256)
rmsnorm(const float* x, const float* __restrict__ w, float* y, int dim, float eps) {
    __shared__ float scratch[32];
    const float* xr = x + (long long)blockIdx.x * dim;
    float* yr = y + (long long)blockIdx.x * dim;
    float ss = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) ss = fmaf(xr[i], xr[i], ss);
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv);
}

// In place on x [n_tokens, n_heads, head_dim]: for i < head_dim/2, θ = pos[t]·inv_freq[i] (an f32
// product, as on the CPU), (a, b) = (x[i], x[i + half]) → (a·cosθ − b·sinθ, b·cosθ + a·sinθ);
// products rounded separately, as on the CPU. Grid (n_tokens, n_heads, 1), block (head_dim/2, 1, 1).
extern "C" __global__ void rope(float* __restrict__ x, const int* __restrict__ positions,
                                const float* __restrict__ inv_freq, int n_heads, int head_dim) {
    const int t = blockIdx.x, h = blockIdx.y, half_dim = head_dim / 2;
    if (h >= n_heads) return;
    float* v = x + ((long long)t * n_heads + h) * head_dim;
    const float pos = (float)positions[t];
    for (int i = threadIdx.x; i < half_dim; i += blockDim.x) {
        float s, c;
        sincosf(pos * inv_freq[i], &s, &c);
        const float a = v[i], b = v[i + half_dim];
        v[i] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
        v[i + half_dim] = __fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s));
    }
}

// out = gate / (1 + exp(−gate)) · up. Block (256, 1, 1), grid (ceil(n/256), 1, 1). out may alias
// gate or up.
extern "C" __global__ void __launch_bounds__(256)
silu_mul(const float* gate, const float* up, float* out, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

// y += x. Block (256, 1, 1), grid (ceil(n/256), 1, 1). x may alias y.
extern "C" __global__ void __launch_bounds__(256)
add_inplace(float* y, const float* x, long long n) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        y[i] += x[i];
}

// out[t, i] = table[ids[t], i]. Grid (n_tokens, 1, 1), block (256, 1, 1). The table's row count
// is not passed, so ids must be checked against the vocabulary by the host; a negative id
// gives a row of NaN.
extern "C" __global__ void __launch_bounds__(256)
embed_f16(const half* __restrict__ table, const int* __restrict__ ids, float* __restrict__ out, int dim) {
    const int id = ids[blockIdx.x];
    float* o = out + (long long)blockIdx.x * dim;
    if (id < 0) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ld_nan();
        return;
    }
    const half* row = table + (long long)id * dim;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = __half2float(row[i]);
}

// The same from a Q8_0 table (rows of dim values, dim % 32 == 0, else a row of NaN):
// out[t, i] = d[id, i/32] · qs[id, i].
extern "C" __global__ void __launch_bounds__(256)
embed_q8_0(const int8_t* __restrict__ qs, const half* __restrict__ d, const int* __restrict__ ids,
           float* __restrict__ out, int dim) {
    const int id = ids[blockIdx.x];
    float* o = out + (long long)blockIdx.x * dim;
    if (id < 0 || dim % 32 != 0) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = ld_nan();
        return;
    }
    const int8_t* q = qs + (long long)id * dim;
    const half* dr = d + (long long)id * (dim / 32);
    for (int i = threadIdx.x; i < dim; i += blockDim.x) o[i] = __half2float(dr[i / 32]) * (float)q[i];
}
