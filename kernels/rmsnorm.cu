// RMSNorm: one block per row; the sum of squares is reduced over the block, then each thread scales its columns.
#include "kernels/rmsnorm.h"

#include "cuda_common.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 256;

// x, out: (rows, dim); weight: (dim). grid = rows.
__global__ void rmsnormKernel(float* out, const float* x, const float* __restrict__ weight, int dim, float eps) {
    __shared__ float scratch[kWarpSize];
    const int64_t base = static_cast<int64_t>(blockIdx.x) * dim;
    float sum = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        sum += x[base + i] * x[base + i];
    sum = blockReduceSum(sum, scratch);
    const float inv = rsqrtf(sum / static_cast<float>(dim) + eps);
    for (int i = threadIdx.x; i < dim; i += blockDim.x)
        out[base + i] = x[base + i] * inv * weight[i];
}

}  // namespace

Status rmsnorm(cudaStream_t stream, float* out, const float* x, const float* weight, int rows, int dim, float eps) {
    if (rows < 0 || dim <= 0)
        return invalidArgument("rmsnorm: bad shape");
    if (rows == 0)
        return Status::success();
    rmsnormKernel<<<rows, kThreads, 0, stream>>>(out, x, weight, dim, eps);
    return checkLaunch("rmsnormKernel");
}

}  // namespace kernels
