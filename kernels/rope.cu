// RoPE: one thread per (token, rotated pair); it computes the angle once (in double) and rotates that pair in every
// head, so the costly double-precision sincos runs nTokens * ropeDim / 2 times, not per head.
#include "kernels/rope.h"

#include "cuda_common.cuh"
#include "kv_element.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;

__device__ inline void pairAngle(double delta, int pair, int ropeDim, float freqBase, float& c, float& s) {
    const double theta = delta * pow(static_cast<double>(freqBase), -2.0 * pair / ropeDim);
    double sd, cd;
    sincos(theta, &sd, &cd);
    c = static_cast<float>(cd);
    s = static_cast<float>(sd);
}

// x: (nTokens, nHeads, headDim). grid covers nTokens * ropeDim / 2 threads.
__global__ void ropeKernel(float* x, const int32_t* positions, int nTokens, int nHeads, int headDim, int ropeDim,
                           float freqBase) {
    const int half = ropeDim / 2;
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= static_cast<int64_t>(nTokens) * half)
        return;
    const int t = static_cast<int>(idx / half);
    const int i = static_cast<int>(idx % half);
    float c, s;
    pairAngle(positions[t], i, ropeDim, freqBase, c, s);
    float* row = x + static_cast<int64_t>(t) * nHeads * headDim + 2 * i;
    for (int h = 0; h < nHeads; ++h) {
        float2* p = reinterpret_cast<float2*>(row + static_cast<int64_t>(h) * headDim);
        const float2 a = *p;
        *p = make_float2(a.x * c - a.y * s, a.x * s + a.y * c);
    }
}

// src, dst: (capacity, nHeads, headDim) of the cache element type KV (__half or float); row slots[t] of dst = row
// slots[t] of src rotated by toPositions[t] - fromPositions[t]. One thread per (token, pair of headDim): pairs past
// ropeDim are copied.
template <typename KV>
__global__ void ropeShiftKernel(const KV* src, KV* dst, const int32_t* slots, const int32_t* fromPositions,
                                const int32_t* toPositions, int nTokens, int nHeads, int headDim, int ropeDim,
                                float freqBase) {
    const int pairs = headDim / 2;
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= static_cast<int64_t>(nTokens) * pairs)
        return;
    const int t = static_cast<int>(idx / pairs);
    const int i = static_cast<int>(idx % pairs);
    float c = 1.0f, s = 0.0f;
    if (2 * i < ropeDim)
        pairAngle(static_cast<double>(toPositions[t]) - fromPositions[t], i, ropeDim, freqBase, c, s);
    const int64_t row = static_cast<int64_t>(slots[t]) * nHeads * headDim + 2 * i;
    for (int h = 0; h < nHeads; ++h) {
        const int64_t at = row + static_cast<int64_t>(h) * headDim;
        const float2 a = loadKvPair(src + at);
        storeKvPair(dst + at, make_float2(a.x * c - a.y * s, a.x * s + a.y * c));
    }
}

Status checkShape(int nTokens, int nHeads, int headDim, int ropeDim) {
    if (nTokens < 0 || nHeads <= 0 || headDim <= 0 || headDim % 2 != 0 || ropeDim <= 0 || ropeDim % 2 != 0 ||
        ropeDim > headDim)
        return invalidArgument("rope: bad shape (headDim and ropeDim must be even, ropeDim <= headDim)");
    return Status::success();
}

}  // namespace

Status rope(cudaStream_t stream, float* x, const int32_t* positions, int nTokens, int nHeads, int headDim,
            int ropeDim, float freqBase) {
    RC_TRY(checkShape(nTokens, nHeads, headDim, ropeDim));
    if (nTokens == 0)
        return Status::success();
    const int64_t threads = static_cast<int64_t>(nTokens) * (ropeDim / 2);
    ropeKernel<<<ceilDiv(threads, kThreads), kThreads, 0, stream>>>(x, positions, nTokens, nHeads, headDim, ropeDim,
                                                                   freqBase);
    return checkLaunch("ropeKernel");
}

Status ropeShift(cudaStream_t stream, const void* src, void* dst, KvType kvType, const int32_t* slots,
                 const int32_t* fromPositions, const int32_t* toPositions, int nTokens, int nHeads, int headDim,
                 int ropeDim, float freqBase) {
    RC_TRY(checkShape(nTokens, nHeads, headDim, ropeDim));
    if (nTokens == 0)
        return Status::success();
    const int64_t threads = static_cast<int64_t>(nTokens) * (headDim / 2);
    withKvElement(kvType, [&](auto kv) {
        using KV = typename decltype(kv)::type;
        ropeShiftKernel<<<ceilDiv(threads, kThreads), kThreads, 0, stream>>>(
            static_cast<const KV*>(src), static_cast<KV*>(dst), slots, fromPositions, toPositions, nTokens, nHeads,
            headDim, ropeDim, freqBase);
    });
    return checkLaunch("ropeShiftKernel");
}

}  // namespace kernels
