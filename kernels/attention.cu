// attention.cu: the paged KV cache (16 positions a page, f16 or int8 pages) and attention over
// it: appending a step's K/V, decode (one query per sequence) and causal prefill (one sequence,
// many queries). fp32 softmax with an online (running max and sum) merge, so any sequence
// length works in fixed shared memory.
//
// Pages: f16 k/v [n_pages, n_kv_heads, 16, head_dim]; int8 k_q/v_q the same shape plus scales
// k_s/v_s float [n_pages, n_kv_heads, 16]. Int8 rows are rotated by the orthonormal
// Walsh–Hadamard transform before the symmetric quantization, bit for bit as the CPU cache does
// (src/kv/quant.rs); attention over them rotates q the same way and rotates the output back.
// Position p of a sequence lives in page table[p / 16] at offset p % 16. Launch geometry:
// kernels/README.md.
#include "common.cuh"

#define KV_PAGE 16        // positions per page
#define ATT_THREADS 128   // threads per attention block: 4 warps
#define ATT_WARPS 4
#define ATT_MAX_HD 256    // largest head_dim (shared buffers are sized for it)

// ---- appending ----

// Flat row index (page, kv_head, offset) of a slot (page * 16 + offset).
__device__ __forceinline__ long long kv_row(int slot, int n_kv_heads, int kvh) {
    return ((long long)(slot / KV_PAGE) * n_kv_heads + kvh) * KV_PAGE + slot % KV_PAGE;
}

// k, v float [n_tokens, n_kv_heads, head_dim] → f16 pages at slots[t]; a negative slot is
// skipped. Grid (n_tokens, n_kv_heads, 1), block (head_dim, 1, 1).
extern "C" __global__ void kv_append_f16(const float* __restrict__ k, const float* __restrict__ v,
                                         half* __restrict__ k_pages, half* __restrict__ v_pages,
                                         const int* __restrict__ slots, int n_kv_heads, int head_dim) {
    const int t = blockIdx.x, kvh = blockIdx.y, slot = slots[t];
    if (slot < 0 || kvh >= n_kv_heads) return;
    const long long src = ((long long)t * n_kv_heads + kvh) * head_dim;
    const long long dst = kv_row(slot, n_kv_heads, kvh) * head_dim;
    for (int i = threadIdx.x; i < head_dim; i += blockDim.x) {
        k_pages[dst + i] = __float2half_rn(k[src + i]);
        v_pages[dst + i] = __float2half_rn(v[src + i]);
    }
}

// Quantize the rotated row buf[0..head_dim) (one element per thread, i = threadIdx.x) to
// symmetric int8 as kv::quant::quantize_q8 does; thread 0 stores the scale.
__device__ __forceinline__ void quantize_row_i8(const float* buf, int8_t* __restrict__ q, float* __restrict__ scale,
                                                float* scratch) {
    const int i = threadIdx.x;
    const float x = buf[i];
    // fmaxf drops NaN, and the 0 floor matches the CPU's fold from 0.
    const float amax = fmaxf(block_max(fabsf(x), scratch), 0.0f);
    const float d = amax / 127.0f;
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    const float r = roundf(x * id);  // half away from zero, as Rust's f32::round
    // Rust's `as i8` maps NaN to 0; (int)NaN would be undefined here.
    q[i] = (int8_t)(r == r ? (int)fminf(fmaxf(r, -127.0f), 127.0f) : 0);
    if (i == 0) *scale = d;
}

// As kv_append_f16, into int8 pages: each head row (k and v alike) rotated by the orthonormal
// FWHT, then quantized. head_dim must be a power of two in 32..256 (one thread per element);
// otherwise the slot's scales are set to NaN. Grid (n_tokens, n_kv_heads, 1), block (head_dim, 1, 1).
extern "C" __global__ void __launch_bounds__(ATT_MAX_HD)
kv_append_i8(const float* __restrict__ k, const float* __restrict__ v, int8_t* __restrict__ k_q,
             int8_t* __restrict__ v_q, float* __restrict__ k_s, float* __restrict__ v_s,
             const int* __restrict__ slots, int n_kv_heads, int head_dim) {
    __shared__ float buf[2][ATT_MAX_HD];
    __shared__ float scratch[32];
    const int t = blockIdx.x, kvh = blockIdx.y, slot = slots[t], i = threadIdx.x;
    if (slot < 0 || kvh >= n_kv_heads) return;  // uniform over the block
    const long long row = kv_row(slot, n_kv_heads, kvh);
    const bool pow2 = head_dim >= 32 && head_dim <= ATT_MAX_HD && (head_dim & (head_dim - 1)) == 0;
    if (!pow2 || (int)blockDim.x != head_dim) {
        if (i == 0) k_s[row] = v_s[row] = ld_nan();
        return;
    }
    const long long src = ((long long)t * n_kv_heads + kvh) * head_dim;
    buf[0][i] = k[src + i];
    buf[1][i] = v[src + i];
    block_fwht(buf[0], head_dim);
    block_fwht(buf[1], head_dim);
    quantize_row_i8(buf[0], k_q + row * head_dim, k_s + row, scratch);
    quantize_row_i8(buf[1], v_q + row * head_dim, v_s + row, scratch);
}

// ---- attention ----

// D consecutive f16 at p (2·D-byte aligned) as floats.
template <int D>
__device__ __forceinline__ void load_f16(const half* __restrict__ p, float (&o)[D]) {
    if constexpr (D == 8) {
        const uint4 r = *reinterpret_cast<const uint4*>(p);
        const float2 a = halves_to_float2(r.x), b = halves_to_float2(r.y);
        const float2 c = halves_to_float2(r.z), d = halves_to_float2(r.w);
        o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y, o[4] = c.x, o[5] = c.y, o[6] = d.x, o[7] = d.y;
    } else if constexpr (D == 4) {
        const uint2 r = *reinterpret_cast<const uint2*>(p);
        const float2 a = halves_to_float2(r.x), b = halves_to_float2(r.y);
        o[0] = a.x, o[1] = a.y, o[2] = b.x, o[3] = b.y;
    } else {
        static_assert(D == 2, "head_dim 64, 128 or 256");
        const float2 a = halves_to_float2(*reinterpret_cast<const uint32_t*>(p));
        o[0] = a.x, o[1] = a.y;
    }
}

// D consecutive int8 at p (D-byte aligned) as floats.
template <int D>
__device__ __forceinline__ void load_i8(const int8_t* __restrict__ p, float (&o)[D]) {
    if constexpr (D == 2) {
        const char2 r = *reinterpret_cast<const char2*>(p);
        o[0] = (float)r.x, o[1] = (float)r.y;
    } else {
        static_assert(D % 4 == 0, "head_dim 64, 128 or 256");
#pragma unroll
        for (int k = 0; k < D; k += 4) {
            const char4 r = reinterpret_cast<const char4*>(p)[k / 4];
            o[k] = (float)r.x, o[k + 1] = (float)r.y, o[k + 2] = (float)r.z, o[k + 3] = (float)r.w;
        }
    }
}

// f16 pages. `row` is the flat (page, kv_head, offset) index; a lane reads D elements.
struct CacheF16 {
    static constexpr bool ROTATED = false;
    const half* k;
    const half* v;
    int n_kv_heads;

    template <int D>
    __device__ __forceinline__ float key(long long row, int lane, float (&o)[D]) const {
        load_f16<D>(k + row * (32 * D) + lane * D, o);
        return 1.0f;
    }
    template <int D>
    __device__ __forceinline__ float value(long long row, int lane, float (&o)[D]) const {
        load_f16<D>(v + row * (32 * D) + lane * D, o);
        return 1.0f;
    }
    // The pools' alignment that every lane's vector load needs (16 bytes covers head_dim 256).
    __device__ __forceinline__ bool aligned() const { return is_aligned(k, 16) && is_aligned(v, 16); }
};

// int8 pages with one scale per row (rotated space); key/value return the row's scale.
struct CacheI8 {
    static constexpr bool ROTATED = true;
    const int8_t* kq;
    const float* ks;
    const int8_t* vq;
    const float* vs;
    int n_kv_heads;

    template <int D>
    __device__ __forceinline__ float key(long long row, int lane, float (&o)[D]) const {
        load_i8<D>(kq + row * (32 * D) + lane * D, o);
        return ks[row];
    }
    template <int D>
    __device__ __forceinline__ float value(long long row, int lane, float (&o)[D]) const {
        load_i8<D>(vq + row * (32 * D) + lane * D, o);
        return vs[row];
    }
    __device__ __forceinline__ bool aligned() const { return is_aligned(kq, 8) && is_aligned(vq, 8); }
};

// Shared memory of one attention block (the head_dim instantiations share it).
struct AttnSmem {
    float rot[ATT_MAX_HD];             // q, then the output, in the rotated space (int8 pages)
    float acc[ATT_WARPS][ATT_MAX_HD];  // each warp's weighted V sum
    float m[ATT_WARPS], l[ATT_WARPS];  // each warp's running max and sum
};

// One (query, head) block: out[0..32·D) = softmax(scale · q·K[0..n_pos)) · V over the pages in
// `table`. Each iteration covers one page: warp w takes offsets w, w+4, w+8, w+12, keeps a
// running max m, sum l and weighted V sum (lane owns elements lane·D .. lane·D + D); the four
// warps are merged at the end. n_pos == 0 gives zeros.
template <int D, class Cache>
__device__ __forceinline__ void attend(const Cache& c, const float* __restrict__ q, float* __restrict__ out,
                                       const int* __restrict__ table, int n_pos, int kvh, float scale,
                                       AttnSmem& sm) {
    constexpr int HD = 32 * D;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    float qr[D];
    if constexpr (Cache::ROTATED) {
        for (int i = threadIdx.x; i < HD; i += blockDim.x) sm.rot[i] = q[i];
        block_fwht(sm.rot, HD);
#pragma unroll
        for (int k = 0; k < D; ++k) qr[k] = sm.rot[lane * D + k];
    } else {
#pragma unroll
        for (int k = 0; k < D; ++k) qr[k] = q[lane * D + k];
    }

    float m = ld_neg_inf(), l = 0.0f, acc[D];
#pragma unroll
    for (int k = 0; k < D; ++k) acc[k] = 0.0f;
    const int n_pages = (n_pos + KV_PAGE - 1) / KV_PAGE;
    for (int pg = 0; pg < n_pages; ++pg) {
        const long long base = ((long long)table[pg] * c.n_kv_heads + kvh) * KV_PAGE;
        float kx[4][D], vx[4][D], s[4], vscale[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) {
            const int off = warp + 4 * u;
            if (pg * KV_PAGE + off < n_pos) {  // warp-uniform
                const float ks = c.template key<D>(base + off, lane, kx[u]);
                vscale[u] = c.template value<D>(base + off, lane, vx[u]);
                float part = 0.0f;
#pragma unroll
                for (int k = 0; k < D; ++k) part = fmaf(qr[k], kx[u][k], part);
                s[u] = ks * warp_sum(part) * scale;
            } else {
                s[u] = ld_neg_inf();
                vscale[u] = 0.0f;
#pragma unroll
                for (int k = 0; k < D; ++k) vx[u][k] = 0.0f;
            }
        }
        const float cm = fmaxf(fmaxf(s[0], s[1]), fmaxf(s[2], s[3]));
        if (cm == ld_neg_inf()) continue;  // this warp has no position left in the last page
        const float m_new = fmaxf(m, cm);
        const float corr = expf(m - m_new);  // 0 while m is still -inf
        float p[4];
#pragma unroll
        for (int u = 0; u < 4; ++u) p[u] = expf(s[u] - m_new);  // 0 for the empty offsets
        l = l * corr + ((p[0] + p[1]) + (p[2] + p[3]));
#pragma unroll
        for (int k = 0; k < D; ++k) {
            float a = acc[k] * corr;
#pragma unroll
            for (int u = 0; u < 4; ++u) a = fmaf(p[u] * vscale[u], vx[u][k], a);
            acc[k] = a;
        }
        m = m_new;
    }

    if (lane == 0) sm.m[warp] = m, sm.l[warp] = l;
#pragma unroll
    for (int k = 0; k < D; ++k) sm.acc[warp][lane * D + k] = acc[k];
    __syncthreads();
    float mx = ld_neg_inf();
#pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) mx = fmaxf(mx, sm.m[w]);
    float wt[ATT_WARPS], total = 0.0f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) {
        wt[w] = sm.m[w] == ld_neg_inf() ? 0.0f : expf(sm.m[w] - mx);
        total += sm.l[w] * wt[w];
    }
    const float inv = total > 0.0f ? 1.0f / total : 0.0f;
    for (int i = threadIdx.x; i < HD; i += blockDim.x) {
        float o = 0.0f;
#pragma unroll
        for (int w = 0; w < ATT_WARPS; ++w) o = fmaf(sm.acc[w][i], wt[w], o);
        if constexpr (Cache::ROTATED) {
            sm.rot[i] = o * inv;
        } else {
            out[i] = o * inv;
        }
    }
    if constexpr (Cache::ROTATED) {
        block_fwht(sm.rot, HD);  // its own inverse: back from the rotated space
        for (int i = threadIdx.x; i < HD; i += blockDim.x) out[i] = sm.rot[i];
    }
}

// Checks the configuration and picks the head_dim instantiation; a configuration the kernels
// cannot honour (head_dim not 64/128/256, n_heads not a multiple of n_kv_heads, another block
// size, a page pool not 16-byte (f16) / 8-byte (int8) aligned) gives NaN outputs.
// Not inlined: decode and prefill share one copy of it per cache type.
template <class Cache>
__device__ __noinline__ void attend_head(const Cache c, const float* __restrict__ q, float* __restrict__ out,
                                            const int* __restrict__ table, int n_pos, int head, int n_heads,
                                            int n_kv_heads, int head_dim, float scale) {
    const bool ok = n_kv_heads > 0 && n_heads % n_kv_heads == 0 && head < n_heads && blockDim.x == ATT_THREADS &&
                    blockDim.y == 1 && c.aligned() && (head_dim == 64 || head_dim == 128 || head_dim == 256);
    if (!ok) {
        for (int i = threadIdx.x; i < head_dim && head < n_heads; i += blockDim.x) out[i] = ld_nan();
        return;
    }
    __shared__ AttnSmem sm;
    const int kvh = head / (n_heads / n_kv_heads);
    switch (head_dim) {
        case 64: attend<2>(c, q, out, table, n_pos, kvh, scale, sm); break;
        case 128: attend<4>(c, q, out, table, n_pos, kvh, scale, sm); break;
        default: attend<8>(c, q, out, table, n_pos, kvh, scale, sm); break;
    }
}

// Positions a decode row attends to: seq_lens[s], clamped to what its block-table row can map.
__device__ __forceinline__ int decode_len(const int* __restrict__ seq_lens, int s, int max_blocks) {
    const long long cap = (long long)max(max_blocks, 0) * KV_PAGE;
    return (int)min((long long)max(seq_lens[s], 0), cap);
}

// q, out float [n_seqs, n_heads, head_dim]; sequence s attends over positions 0..seq_lens[s]-1.
// Grid (n_heads, n_seqs, 1), block (128, 1, 1).
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attn_decode_f16(const float* __restrict__ q, const half* __restrict__ k_pages, const half* __restrict__ v_pages,
                const int* __restrict__ block_table, int max_blocks, const int* __restrict__ seq_lens,
                float* __restrict__ out, int n_heads, int n_kv_heads, int head_dim, float scale) {
    const int h = blockIdx.x, s = blockIdx.y;
    const long long qo = ((long long)s * n_heads + h) * head_dim;
    const CacheF16 c = {k_pages, v_pages, n_kv_heads};
    attend_head(c, q + qo, out + qo, block_table + (long long)s * max_blocks, decode_len(seq_lens, s, max_blocks), h,
                n_heads, n_kv_heads, head_dim, scale);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attn_decode_i8(const float* __restrict__ q, const int8_t* __restrict__ k_q, const float* __restrict__ k_s,
               const int8_t* __restrict__ v_q, const float* __restrict__ v_s, const int* __restrict__ block_table,
               int max_blocks, const int* __restrict__ seq_lens, float* __restrict__ out, int n_heads,
               int n_kv_heads, int head_dim, float scale) {
    const int h = blockIdx.x, s = blockIdx.y;
    const long long qo = ((long long)s * n_heads + h) * head_dim;
    const CacheI8 c = {k_q, k_s, v_q, v_s, n_kv_heads};
    attend_head(c, q + qo, out + qo, block_table + (long long)s * max_blocks, decode_len(seq_lens, s, max_blocks), h,
                n_heads, n_kv_heads, head_dim, scale);
}

// One sequence (block_table is its row, covering positions 0..start_pos+n_tokens-1); q, out
// float [n_tokens, n_heads, head_dim]; token t sits at start_pos+t and attends causally to
// positions 0..=start_pos+t. Grid (n_heads, n_tokens, 1), block (128, 1, 1).
extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attn_prefill_f16(const float* __restrict__ q, const half* __restrict__ k_pages, const half* __restrict__ v_pages,
                 const int* __restrict__ block_table, int start_pos, int n_tokens, float* __restrict__ out,
                 int n_heads, int n_kv_heads, int head_dim, float scale) {
    const int h = blockIdx.x, t = blockIdx.y;
    if (t >= n_tokens) return;
    const long long qo = ((long long)t * n_heads + h) * head_dim;
    const CacheF16 c = {k_pages, v_pages, n_kv_heads};
    attend_head(c, q + qo, out + qo, block_table, start_pos + t + 1, h, n_heads, n_kv_heads, head_dim, scale);
}

extern "C" __global__ void __launch_bounds__(ATT_THREADS)
attn_prefill_i8(const float* __restrict__ q, const int8_t* __restrict__ k_q, const float* __restrict__ k_s,
                const int8_t* __restrict__ v_q, const float* __restrict__ v_s, const int* __restrict__ block_table,
                int start_pos, int n_tokens, float* __restrict__ out, int n_heads, int n_kv_heads, int head_dim,
                float scale) {
    const int h = blockIdx.x, t = blockIdx.y;
    if (t >= n_tokens) return;
    const long long qo = ((long long)t * n_heads + h) * head_dim;
    const CacheI8 c = {k_q, k_s, v_q, v_s, n_kv_heads};
    attend_head(c, q + qo, out + qo, block_table, start_pos + t + 1, h, n_heads, n_kv_heads, head_dim, scale);
}
