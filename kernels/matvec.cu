// matvec.cu: y = W·x for 1..8 tokens at a time (decode and small batches) over f16, bf16,
// Q8_0, Q4_0 and Q4_1 weights, kept quantized and dequantized in registers; and the
// element-wise dequantize / convert kernels that feed cuBLAS on the prefill path.
//
// W [rows, cols] row-major; x float [n_tokens, cols]; y float [n_tokens, rows]; fp32
// accumulation, activations never quantized. Launch: block (32, 4, 1), grid (ceil(rows/4), 1, 1);
// warp threadIdx.y of block b owns row r = 4b + threadIdx.y and writes (=) y[t*rows + r] for
// every token. The converters take block (256, 1, 1), grid (ceil(n/256), 1, 1). Layouts of the
// quantized formats: kernels/README.md.
#include "common.cuh"

#define MV_TOKENS 8  // tokens handled per pass over a weight row

// acc[t] += Σ_k wf[k]·x[t, c + k] for the first nt tokens. XVEC: x is read as float4 (x
// 16-byte aligned, cols, N and c multiples of 4).
template <int N, bool XVEC>
__device__ __forceinline__ void mv_fma(float (&acc)[MV_TOKENS], int nt, const float* __restrict__ xt,
                                       long long cols, int c, const float (&wf)[N]) {
#pragma unroll
    for (int t = 0; t < MV_TOKENS; ++t) {
        if (t < nt) {
            const float* xp = xt + t * cols + c;
            if constexpr (XVEC) {
#pragma unroll
                for (int k = 0; k < N; k += 4) {
                    const float4 v = *reinterpret_cast<const float4*>(xp + k);
                    acc[t] = fmaf(wf[k], v.x, acc[t]);
                    acc[t] = fmaf(wf[k + 1], v.y, acc[t]);
                    acc[t] = fmaf(wf[k + 2], v.z, acc[t]);
                    acc[t] = fmaf(wf[k + 3], v.w, acc[t]);
                }
            } else {
#pragma unroll
                for (int k = 0; k < N; ++k) acc[t] = fmaf(wf[k], xp[k], acc[t]);
            }
        }
    }
}

// Runs one format's row reader over all tokens, MV_TOKENS at a time, and writes the
// warp-reduced sums to y[t*rows + r]. A Row has `vec` (its weights allow the vectorized reader,
// given cols % 32 == 0), `fast(acc, nt, xt, cols, lane)` (the vectorized per-lane partial sums,
// x read as float4) and `at(c)` (weight c of the row, for the scalar fallback taken when either
// side is misaligned).
template <class Row>
__device__ __forceinline__ void mv_run(const Row& row, const float* __restrict__ x, float* __restrict__ y,
                                       int rows, int cols, int n_tokens, int r) {
    const int lane = threadIdx.x;
    const bool vec = row.vec && cols % 32 == 0 && is_aligned(x, 16);
    for (int t0 = 0; t0 < n_tokens; t0 += MV_TOKENS) {
        const int nt = min(MV_TOKENS, n_tokens - t0);
        const float* xt = x + (long long)t0 * cols;
        float acc[MV_TOKENS];
#pragma unroll
        for (int t = 0; t < MV_TOKENS; ++t) acc[t] = 0.0f;
        if (vec) {
            row.fast(acc, nt, xt, cols, lane);
        } else {
            for (int c = lane; c < cols; c += 32) {
                const float wf[1] = {row.at(c)};
                mv_fma<1, false>(acc, nt, xt, cols, c, wf);
            }
        }
#pragma unroll
        for (int t = 0; t < MV_TOKENS; ++t) {
            if (t < nt) {
                const float s = warp_sum(acc[t]);
                if (lane == 0) y[(long long)(t0 + t) * rows + r] = s;
            }
        }
    }
}

// Row r's outputs set to NaN: the quantized formats need cols % 32 == 0.
__device__ __forceinline__ void mv_fill_nan(float* __restrict__ y, int rows, int n_tokens, int r) {
    for (int t = threadIdx.x; t < n_tokens; t += 32) y[(long long)t * rows + r] = ld_nan();
}

// f16 / bf16: a lane reads eight weights (16 bytes) per step.
struct RowF16 {
    const half* w;  // this row
    bool vec;       // w is 16-byte aligned

    __device__ __forceinline__ float at(int c) const { return __half2float(w[c]); }
    __device__ __forceinline__ void fast(float (&acc)[MV_TOKENS], int nt, const float* __restrict__ xt, int cols,
                                         int lane) const {
        const uint4* w8 = reinterpret_cast<const uint4*>(w);
        for (int g = lane; g < cols / 8; g += 32) {
            const uint4 raw = w8[g];
            const float2 a = halves_to_float2(raw.x), b = halves_to_float2(raw.y);
            const float2 c = halves_to_float2(raw.z), d = halves_to_float2(raw.w);
            const float wf[8] = {a.x, a.y, b.x, b.y, c.x, c.y, d.x, d.y};
            mv_fma<8, true>(acc, nt, xt, cols, g * 8, wf);
        }
    }
};

struct RowBF16 {
    const __nv_bfloat16* w;  // this row
    bool vec;                // w is 16-byte aligned

    __device__ __forceinline__ float at(int c) const { return __bfloat162float(w[c]); }
    __device__ __forceinline__ void fast(float (&acc)[MV_TOKENS], int nt, const float* __restrict__ xt, int cols,
                                         int lane) const {
        const uint4* w8 = reinterpret_cast<const uint4*>(w);
        for (int g = lane; g < cols / 8; g += 32) {
            const uint4 raw = w8[g];
            const float2 a = bf16s_to_float2(raw.x), b = bf16s_to_float2(raw.y);
            const float2 c = bf16s_to_float2(raw.z), d = bf16s_to_float2(raw.w);
            const float wf[8] = {a.x, a.y, b.x, b.y, c.x, c.y, d.x, d.y};
            mv_fma<8, true>(acc, nt, xt, cols, g * 8, wf);
        }
    }
};

// Q8_0: four lanes per 32-value block, eight values (one 8-byte load) each; a warp covers
// eight blocks per step. Weight = d · q, as the CPU dequantizes.
struct RowQ8_0 {
    const int8_t* qs;  // this row's quants
    const half* d;     // this row's block scales
    bool vec;          // qs is 4-byte aligned

    __device__ __forceinline__ float at(int c) const { return __half2float(d[c / 32]) * (float)qs[c]; }
    __device__ __forceinline__ void fast(float (&acc)[MV_TOKENS], int nt, const float* __restrict__ xt, int cols,
                                         int lane) const {
        const int n_blocks = cols / 32, part = lane & 3;
        for (int b = lane >> 2; b < n_blocks; b += 8) {
            const float dv = __half2float(d[b]);
            const char4* q = reinterpret_cast<const char4*>(qs + b * 32 + part * 8);
            const char4 lo = q[0], hi = q[1];
            const float wf[8] = {dv * (float)lo.x, dv * (float)lo.y, dv * (float)lo.z, dv * (float)lo.w,
                                 dv * (float)hi.x, dv * (float)hi.y, dv * (float)hi.z, dv * (float)hi.w};
            mv_fma<8, true>(acc, nt, xt, cols, b * 32 + part * 8, wf);
        }
    }
};

// Q4_0 / Q4_1: byte j of a block holds element j (low nibble) and element j + 16 (high
// nibble). Q4_0: d·(q − 8); Q4_1: d·q + m, the product rounded before the add (as the CPU
// dequantizes). The fast reader: four lanes per block, four bytes (one 4-byte load) each.
template <bool HAS_MIN>
struct RowQ4 {
    const uint8_t* qs;  // this row's packed nibbles
    const half* d;      // this row's block scales
    const half* m;      // this row's block minimums (Q4_1 only)
    bool vec;           // qs is 4-byte aligned

    __device__ __forceinline__ float value(float dv, float mv, unsigned q) const {
        return HAS_MIN ? __fmul_rn(dv, (float)q) + mv : dv * (float)((int)q - 8);
    }
    __device__ __forceinline__ float at(int c) const {
        const int b = c / 32, j = c % 32;
        const unsigned byte = qs[b * 16 + (j & 15)];
        return value(__half2float(d[b]), HAS_MIN ? __half2float(m[b]) : 0.0f, j < 16 ? byte & 15u : byte >> 4);
    }
    __device__ __forceinline__ void fast(float (&acc)[MV_TOKENS], int nt, const float* __restrict__ xt, int cols,
                                         int lane) const {
        const int n_blocks = cols / 32, part = lane & 3;
        for (int b = lane >> 2; b < n_blocks; b += 8) {
            const float dv = __half2float(d[b]);
            const float mv = HAS_MIN ? __half2float(m[b]) : 0.0f;
            const uint32_t word = *reinterpret_cast<const uint32_t*>(qs + b * 16 + part * 4);
            float lo[4], hi[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                lo[k] = value(dv, mv, (word >> (8 * k)) & 15u);
                hi[k] = value(dv, mv, (word >> (8 * k + 4)) & 15u);
            }
            mv_fma<4, true>(acc, nt, xt, cols, b * 32 + part * 4, lo);
            mv_fma<4, true>(acc, nt, xt, cols, b * 32 + 16 + part * 4, hi);
        }
    }
};

extern "C" __global__ void __launch_bounds__(128)
matvec_f16(const half* __restrict__ w, const float* __restrict__ x, float* __restrict__ y, int rows, int cols,
           int n_tokens) {
    const int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    const RowF16 row = {w + (long long)r * cols, is_aligned(w, 16)};
    mv_run(row, x, y, rows, cols, n_tokens, r);
}

extern "C" __global__ void __launch_bounds__(128)
matvec_bf16(const __nv_bfloat16* __restrict__ w, const float* __restrict__ x, float* __restrict__ y, int rows,
            int cols, int n_tokens) {
    const int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    const RowBF16 row = {w + (long long)r * cols, is_aligned(w, 16)};
    mv_run(row, x, y, rows, cols, n_tokens, r);
}

extern "C" __global__ void __launch_bounds__(128)
matvec_q8_0(const int8_t* __restrict__ qs, const half* __restrict__ d, const float* __restrict__ x,
            float* __restrict__ y, int rows, int cols, int n_tokens) {
    const int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    if (cols % 32 != 0) return mv_fill_nan(y, rows, n_tokens, r);
    const RowQ8_0 row = {qs + (long long)r * cols, d + (long long)r * (cols / 32), is_aligned(qs, 4)};
    mv_run(row, x, y, rows, cols, n_tokens, r);
}

extern "C" __global__ void __launch_bounds__(128)
matvec_q4_0(const uint8_t* __restrict__ qs, const half* __restrict__ d, const float* __restrict__ x,
            float* __restrict__ y, int rows, int cols, int n_tokens) {
    const int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    if (cols % 32 != 0) return mv_fill_nan(y, rows, n_tokens, r);
    const RowQ4<false> row = {qs + (long long)r * (cols / 2), d + (long long)r * (cols / 32), nullptr,
                              is_aligned(qs, 4)};
    mv_run(row, x, y, rows, cols, n_tokens, r);
}

extern "C" __global__ void __launch_bounds__(128)
matvec_q4_1(const uint8_t* __restrict__ qs, const half* __restrict__ d, const half* __restrict__ m,
            const float* __restrict__ x, float* __restrict__ y, int rows, int cols, int n_tokens) {
    const int r = blockIdx.x * blockDim.y + threadIdx.y;
    if (r >= rows) return;
    if (cols % 32 != 0) return mv_fill_nan(y, rows, n_tokens, r);
    const long long blk = (long long)r * (cols / 32);
    const RowQ4<true> row = {qs + (long long)r * (cols / 2), d + blk, m + blk, is_aligned(qs, 4)};
    mv_run(row, x, y, rows, cols, n_tokens, r);
}

// ---- element-wise converters (prefill path): one element per thread, grid-stride safe ----

#define EW_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)gridDim.x * blockDim.x)

// Flat element i of a Q8_0 / Q4 matrix lies in block i / 32 (rows are whole blocks), so the
// dequantizers need no row length; n is a multiple of 32.
extern "C" __global__ void __launch_bounds__(256)
dequant_q8_0_f16(const int8_t* __restrict__ qs, const half* __restrict__ d, half* __restrict__ out, long long n) {
    EW_LOOP(i, n) { out[i] = __float2half_rn(__half2float(d[i >> 5]) * (float)qs[i]); }
}

extern "C" __global__ void __launch_bounds__(256)
dequant_q4_0_f16(const uint8_t* __restrict__ qs, const half* __restrict__ d, half* __restrict__ out, long long n) {
    EW_LOOP(i, n) {
        const unsigned byte = qs[(i >> 5) * 16 + (i & 15)];
        const int q = (int)((i & 16) ? byte >> 4 : byte & 15u);
        out[i] = __float2half_rn(__half2float(d[i >> 5]) * (float)(q - 8));
    }
}

extern "C" __global__ void __launch_bounds__(256)
dequant_q4_1_f16(const uint8_t* __restrict__ qs, const half* __restrict__ d, const half* __restrict__ m,
                 half* __restrict__ out, long long n) {
    EW_LOOP(i, n) {
        const unsigned byte = qs[(i >> 5) * 16 + (i & 15)];
        const unsigned q = (i & 16) ? byte >> 4 : byte & 15u;
        out[i] = __float2half_rn(__fmul_rn(__half2float(d[i >> 5]), (float)q) + __half2float(m[i >> 5]));
    }
}

// bf16 values beyond the f16 range become ±inf, as any bf16 → f16 conversion does.
extern "C" __global__ void __launch_bounds__(256)
bf16_to_f16(const __nv_bfloat16* __restrict__ in, half* __restrict__ out, long long n) {
    EW_LOOP(i, n) { out[i] = __float2half_rn(__bfloat162float(in[i])); }
}

extern "C" __global__ void __launch_bounds__(256)
f32_to_f16(const float* __restrict__ in, half* __restrict__ out, long long n) {
    EW_LOOP(i, n) { out[i] = __float2half_rn(in[i]); }
}

extern "C" __global__ void __launch_bounds__(256)
f16_to_f32(const half* __restrict__ in, float* __restrict__ out, long long n) {
    EW_LOOP(i, n) { out[i] = __half2float(in[i]); }
}
