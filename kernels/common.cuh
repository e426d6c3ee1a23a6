// common.cuh: helpers shared by the kernels in this directory (fixed-width integer types,
// warp and block reductions, alignment tests, the orthonormal Walsh–Hadamard transform).
// scripts/build_ptx.py hands every kernels/*.cuh to NVRTC in memory under its bare name.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#if defined(__CUDACC_RTC__)
// NVRTC ships no <cstdint>; these are the LP64 widths CUDA uses on the host side too.
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <cstdint>
#endif

#define LD_FULL_MASK 0xffffffffu

// -inf and a quiet NaN. A NaN is written where a kernel is launched with arguments it cannot
// honour, so a host bug shows up in parity tests instead of as stale memory.
__device__ __forceinline__ float ld_neg_inf() { return __uint_as_float(0xff800000u); }
__device__ __forceinline__ float ld_nan() { return __uint_as_float(0x7fc00000u); }

// Sum over the 32 lanes of a full warp; every lane gets the total (same order in every lane).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(LD_FULL_MASK, v, o);
    return v;
}

// Maximum over the 32 lanes of a full warp (fmaxf: a NaN loses to any number).
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(LD_FULL_MASK, v, o));
    return v;
}

// Sum over a block whose blockDim.x is a multiple of 32 (≤ 1024, blockDim.y == 1); every
// thread gets the same total. `scratch` is 32 floats of shared memory. Every thread of the
// block must call it (it synchronizes); it may be called again with the same scratch.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // a previous call's readers are done with scratch
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_sum(lane < n_warps ? scratch[lane] : 0.0f);
}

// Maximum over a block, with the same contract as block_sum.
__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    return warp_max(lane < n_warps ? scratch[lane] : ld_neg_inf());
}

// True when `p` is a multiple of `bytes` (a power of two).
__device__ __forceinline__ bool is_aligned(const void* p, unsigned long long bytes) {
    return (reinterpret_cast<unsigned long long>(p) & (bytes - 1)) == 0;
}

// Byte k (0..3) of a little-endian word as a signed value, without implementation-defined
// narrowing conversions.
__device__ __forceinline__ int byte_i8(uint32_t word, int k) {
    const int v = (int)((word >> (8 * k)) & 0xffu);
    return v - ((v & 0x80) << 1);
}

// The two halves of a little-endian word as floats (element 0 in the low 16 bits).
__device__ __forceinline__ float2 halves_to_float2(uint32_t word) {
    return make_float2(__half2float(__ushort_as_half((unsigned short)(word & 0xffffu))),
                       __half2float(__ushort_as_half((unsigned short)(word >> 16))));
}

// The two bf16 of a little-endian word as floats (exact: bf16 is the top half of an f32).
__device__ __forceinline__ float2 bf16s_to_float2(uint32_t word) {
    return make_float2(__uint_as_float(word << 16), __uint_as_float(word & 0xffff0000u));
}

// In-place orthonormal Walsh–Hadamard transform of s[0..n) in shared memory, by every thread
// of the block (any blockDim.x; n a power of two). Same butterflies in the same order as the
// CPU's kv::quant::fwht ((a, b) -> (a + b, a - b) for h = 1, 2, 4, ..., then a multiply by
// 1/sqrt(n)), so the results are bit-identical. Synchronizes before and after.
__device__ __forceinline__ void block_fwht(float* s, int n) {
    for (int h = 1, lg = 0; h < n; h <<= 1, ++lg) {
        __syncthreads();
        for (int k = threadIdx.x; k < n / 2; k += blockDim.x) {
            const int j = ((k >> lg) << (lg + 1)) | (k & (h - 1));  // the k-th pair (j, j + h) of this stage
            const float a = s[j], b = s[j + h];
            s[j] = a + b;
            s[j + h] = a - b;
        }
    }
    __syncthreads();
    const float norm = 1.0f / sqrtf((float)n);
    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] *= norm;
    __syncthreads();
}
