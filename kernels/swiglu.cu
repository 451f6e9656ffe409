// Elementwise kernels: SwiGLU and the residual add (grid-stride loops, one value per thread per step).
#include "kernels/swiglu.h"

#include <algorithm>

#include "cuda_common.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;

__global__ void swigluKernel(float* out, const float* gate, const float* up, int64_t n) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const float g = gate[i];
        out[i] = g / (1.0f + __expf(-g)) * up[i];
    }
}

__global__ void addInPlaceKernel(float* x, const float* y, int64_t n) {
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x)
        x[i] += y[i];
}

unsigned gridFor(int64_t n) { return std::min(ceilDiv(n, kThreads), kMaxBlocks); }

}  // namespace

Status swiglu(cudaStream_t stream, float* out, const float* gate, const float* up, int64_t n) {
    if (n < 0)
        return invalidArgument("swiglu: negative size");
    if (n == 0)
        return Status::success();
    swigluKernel<<<gridFor(n), kThreads, 0, stream>>>(out, gate, up, n);
    return checkLaunch("swigluKernel");
}

Status addInPlace(cudaStream_t stream, float* x, const float* y, int64_t n) {
    if (n < 0)
        return invalidArgument("addInPlace: negative size");
    if (n == 0)
        return Status::success();
    addInPlaceKernel<<<gridFor(n), kThreads, 0, stream>>>(x, y, n);
    return checkLaunch("addInPlaceKernel");
}

}  // namespace kernels
