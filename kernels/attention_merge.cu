// LSE merge of two partial attentions: one block per row (query, head), one thread per output dimension (strided).
#include "kernels/attention_merge.h"

#include <cmath>

#include "cuda_common.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;

// outA, outB: (n, headDim); lseA, lseB: (n). grid = n.
__global__ void attentionMergeKernel(float* outA, float* lseA, const float* outB, const float* lseB, int headDim) {
    const int64_t row = blockIdx.x;
    const float a = lseA[row];
    const float b = lseB[row];
    // Every thread has read lseA before thread 0 overwrites it.
    __syncthreads();
    if (b == -INFINITY)  // B saw no key: A is already the merged result
        return;
    float* oa = outA + row * headDim;
    const float* ob = outB + row * headDim;
    if (a == -INFINITY) {
        for (int d = threadIdx.x; d < headDim; d += blockDim.x) oa[d] = ob[d];
        if (threadIdx.x == 0)
            lseA[row] = b;
        return;
    }
    const float m = fmaxf(a, b);
    const float wa = expf(a - m);
    const float wb = expf(b - m);
    const float inv = 1.0f / (wa + wb);
    for (int d = threadIdx.x; d < headDim; d += blockDim.x) oa[d] = (oa[d] * wa + ob[d] * wb) * inv;
    if (threadIdx.x == 0)
        lseA[row] = m + logf(wa + wb);
}

}  // namespace

Status attentionMerge(cudaStream_t stream, float* outA, float* lseA, const float* outB, const float* lseB, int n,
                      int headDim) {
    if (n < 0 || headDim <= 0)
        return invalidArgument("attentionMerge: bad shape");
    if (n == 0)
        return Status::success();
    attentionMergeKernel<<<n, kThreads, 0, stream>>>(outA, lseA, outB, lseB, headDim);
    return checkLaunch("attentionMergeKernel");
}

}  // namespace kernels
