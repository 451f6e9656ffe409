// Argmax in one block: each thread scans a strided slice, then a shared-memory tree keeps (value, index) pairs.
#include "kernels/sampling.h"

#include "cuda_common.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 1024;

// True if (va, ia) should win over (vb, ib): larger value, lower index on ties; NaN never wins.
__device__ inline bool better(float va, int ia, float vb, int ib) {
    if (ia < 0)
        return false;
    if (ib < 0)
        return true;
    return va > vb || (va == vb && ia < ib);
}

__global__ void __launch_bounds__(kThreads) argmaxKernel(const float* logits, int n, int32_t* out) {
    __shared__ float vals[kThreads];
    __shared__ int idxs[kThreads];
    float best = 0.0f;
    int bestIdx = -1;
    for (int i = threadIdx.x; i < n; i += kThreads) {
        const float v = logits[i];
        if (v == v && better(v, i, best, bestIdx)) {
            best = v;
            bestIdx = i;
        }
    }
    vals[threadIdx.x] = best;
    idxs[threadIdx.x] = bestIdx;
    __syncthreads();
    for (int stride = kThreads / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            const int o = threadIdx.x + stride;
            if (better(vals[o], idxs[o], vals[threadIdx.x], idxs[threadIdx.x])) {
                vals[threadIdx.x] = vals[o];
                idxs[threadIdx.x] = idxs[o];
            }
        }
        __syncthreads();
    }
    if (threadIdx.x == 0)
        *out = idxs[0] < 0 ? 0 : idxs[0];
}

}  // namespace

Status argmax(cudaStream_t stream, const float* logits, int n, int32_t* out) {
    if (n <= 0)
        return invalidArgument("argmax: empty input");
    argmaxKernel<<<1, kThreads, 0, stream>>>(logits, n, out);
    return checkLaunch("argmaxKernel");
}

}  // namespace kernels
