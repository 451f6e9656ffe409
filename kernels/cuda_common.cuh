// Small device building blocks shared by the kernel families (private to kernels/), and the launch check every
// launcher ends with.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "kernels/cuda_raii.h"

namespace kernels {

constexpr int kWarpSize = 32;

// Reports a launch-configuration error (or a sticky error from an earlier kernel) of the kernel just launched.
inline Status checkLaunch(const char* kernel) { return cudaStatus(cudaGetLastError(), kernel); }

inline Status invalidArgument(std::string detail) { return Error{ErrorCode::InvalidArgument, std::move(detail)}; }

inline unsigned ceilDiv(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }

__device__ inline float warpReduceSum(float v) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        v += __shfl_xor_sync(0xffffffffu, v, offset);
    return v;
}

__device__ inline float warpReduceMax(float v) {
#pragma unroll
    for (int offset = kWarpSize / 2; offset > 0; offset /= 2)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
    return v;
}

// Sum over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats of shared memory; the function synchronises, so it may be called in a loop.
__device__ inline float blockReduceSum(float v, float* scratch) {
    const int lane = threadIdx.x % kWarpSize;
    const int warp = threadIdx.x / kWarpSize;
    const int nWarps = blockDim.x / kWarpSize;
    v = warpReduceSum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    v = lane < nWarps ? scratch[lane] : 0.0f;
    return warpReduceSum(v);
}

// Eight fp16 values packed in 16 bytes, for 128-bit loads.
struct alignas(16) Half8 {
    __half2 h[4];
};

}  // namespace kernels
