// lora.cu: unmerged multi-adapter LoRA for mixed batches, y[row] += w·s·B(A·x[row]) for every
// (row, adapter slot, weight) entry of the batch. Each entry has its own rank-length
// intermediate in `tmp` (prefix sums of the ranks, no padding to a maximum rank); shrink
// computes them (x → A·x), expand adds B·tmp into y. Deterministic: fixed reduction orders, no
// atomics.
//
// Adapter weights live in one f16 pool. Slot s (for the current module) has A at element
// offset a_off[s], shape [rank[s], in_dim] row-major, B at b_off[s], shape [out_dim, rank[s]]
// row-major, and a float scale[s]. Launch geometry: kernels/README.md.
#include "common.cuh"

#define LORA_THREADS 256
#define LORA_ENTRIES 4  // entries of a group reduced together (one pass over the A row)

// Entries are sorted by slot; group g covers entries group_start[g] .. group_start[g+1]-1, all
// with slot group_slot[g]. Block (g, j) computes component j of every entry of group g:
// tmp[tmp_off[e] + j] = Σ_c A_s[j, c] · x[entry_row[e], c]. Grid (n_groups, max_rank, 1),
// block (256, 1, 1); blocks with j >= rank[slot] return.
extern "C" __global__ void __launch_bounds__(LORA_THREADS)
lora_shrink(const float* __restrict__ x, int in_dim, const half* __restrict__ pool, const long long* __restrict__ a_off,
            const int* __restrict__ rank, const int* __restrict__ group_start, const int* __restrict__ group_slot,
            const int* __restrict__ entry_row, const int* __restrict__ tmp_off, float* __restrict__ tmp) {
    __shared__ float scratch[32];
    const int g = blockIdx.x, j = blockIdx.y, slot = group_slot[g];
    if (j >= rank[slot]) return;  // uniform over the block
    const half* a = pool + a_off[slot] + (long long)j * in_dim;
    // half2 / float2 reads when the A row and every x row allow them.
    const bool vec = in_dim % 2 == 0 && is_aligned(a, 4) && is_aligned(x, 8);
    const int e_end = group_start[g + 1];
    for (int e0 = group_start[g]; e0 < e_end; e0 += LORA_ENTRIES) {
        const int ne = min(LORA_ENTRIES, e_end - e0);
        const float* xr[LORA_ENTRIES];
        float acc[LORA_ENTRIES];
#pragma unroll
        for (int u = 0; u < LORA_ENTRIES; ++u) {
            xr[u] = x + (long long)entry_row[e0 + min(u, ne - 1)] * in_dim;
            acc[u] = 0.0f;
        }
        if (vec) {
            const __half2* a2 = reinterpret_cast<const __half2*>(a);
            for (int c = threadIdx.x; c < in_dim / 2; c += blockDim.x) {
                const float2 av = __half22float2(a2[c]);
#pragma unroll
                for (int u = 0; u < LORA_ENTRIES; ++u) {
                    if (u < ne) {
                        const float2 xv = reinterpret_cast<const float2*>(xr[u])[c];
                        acc[u] = fmaf(av.y, xv.y, fmaf(av.x, xv.x, acc[u]));
                    }
                }
            }
        } else {
            for (int c = threadIdx.x; c < in_dim; c += blockDim.x) {
                const float av = __half2float(a[c]);
#pragma unroll
                for (int u = 0; u < LORA_ENTRIES; ++u)
                    if (u < ne) acc[u] = fmaf(av, xr[u][c], acc[u]);
            }
        }
#pragma unroll
        for (int u = 0; u < LORA_ENTRIES; ++u) {
            if (u < ne) {  // uniform over the block
                const float s = block_sum(acc[u], scratch);
                if (threadIdx.x == 0) tmp[tmp_off[e0 + u] + j] = s;
            }
        }
    }
}

// Row r's entries are row_entries[row_start[r] .. row_start[r+1]-1] (indices into the entry
// arrays). Thread o of row r: y[r*out_dim + o] += Σ_e entry_weight[e]·scale[s]·Σ_j B_s[o, j]·
// tmp[tmp_off[e] + j], each entry's term added in turn (as the CPU applies one adapter after
// another). Grid (ceil(out_dim/256), n_rows, 1), block (256, 1, 1). Adds to y.
extern "C" __global__ void __launch_bounds__(LORA_THREADS)
lora_expand(const float* __restrict__ tmp, const half* __restrict__ pool, const long long* __restrict__ b_off,
            const int* __restrict__ rank, const float* __restrict__ scale, const int* __restrict__ row_start,
            const int* __restrict__ row_entries, const int* __restrict__ entry_slot,
            const float* __restrict__ entry_weight, const int* __restrict__ tmp_off, float* __restrict__ y,
            int out_dim) {
    const int o = blockIdx.x * blockDim.x + threadIdx.x, r = blockIdx.y;
    if (o >= out_dim) return;
    const int k_begin = row_start[r], k_end = row_start[r + 1];
    if (k_begin >= k_end) return;
    float* yo = y + (long long)r * out_dim + o;
    float acc = *yo;
    for (int k = k_begin; k < k_end; ++k) {
        const int e = row_entries[k], s = entry_slot[e], rk = rank[s];
        const half* b = pool + b_off[s] + (long long)o * rk;
        const float* t = tmp + tmp_off[e];
        float dot = 0.0f;
        if (rk % 2 == 0 && is_aligned(b, 4)) {
            const __half2* b2 = reinterpret_cast<const __half2*>(b);
            for (int j = 0; j < rk / 2; ++j) {
                const float2 bv = __half22float2(b2[j]);
                dot = fmaf(bv.y, t[2 * j + 1], fmaf(bv.x, t[2 * j], dot));
            }
        } else {
            for (int j = 0; j < rk; ++j) dot = fmaf(__half2float(b[j]), t[j], dot);
        }
        acc += entry_weight[e] * scale[s] * dot;
    }
    *yo = acc;
}
