// Flash attention over the span-organised fp16 KV cache, for prefill and (split-K) decode.
//
// A block owns kRows query rows that share one kv head (rows enumerate (token, head-in-group) pairs, so in decode
// the whole GQA group of one token shares every K/V load) and one contiguous range of logical key indices (its
// split). It walks that range in tiles of kKeys keys: stage K and V as float in shared memory, compute scores with
// one key per lane and four rows per warp, update the running max / denominator per row (online softmax; each warp
// owns its rows, so no block-wide step is needed), then accumulate P V into registers. Tiles that no row of the
// block can see (causal prefill) are skipped after loading only the key positions.
// With nSplits > 1 each split writes a normalised partial output and its log-sum-exp, and attentionMergeKernel
// combines them: out = sum_s exp(lse_s - m) out_s / sum_s exp(lse_s - m).
#include "kernels/attention.h"

#include <algorithm>
#include <climits>
#include <string>

#include "cuda_common.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kRows = 16;          // query rows per block
constexpr int kKeys = kWarpSize;   // keys per tile: one per lane in the softmax step
constexpr int kMaxD = kAttentionMaxHeadDim;
constexpr int kMaxAcc = kRows * kMaxD / kThreads;  // output values per thread
constexpr float kNegInf = -__builtin_huge_valf();

struct SharedTile {
    float q[kRows][kMaxD];       // pre-scaled queries
    float k[kKeys][kMaxD + 1];   // +1: lanes read different keys at the same d without bank conflicts
    float v[kKeys][kMaxD];
    float p[kRows][kKeys];       // probabilities of the current tile (relative to rowMax)
    float rowMax[kRows];
    float rowSum[kRows];
    float rowScale[kRows];       // rescale of the accumulator for the current tile
    int rowPos[kRows];           // INT_MIN for padding rows
    int slot[kKeys];             // -1 past the end of the range
    int keyPos[kKeys];
};

// Moves (spanIdx, spanBase) forward to the span holding logical key `key` (or past the end).
__device__ inline void seekSpan(const KvSpan* spans, int nSpans, int key, int& spanIdx, int& spanBase) {
    while (spanIdx < nSpans && key >= spanBase + spans[spanIdx].count) {
        spanBase += spans[spanIdx].count;
        ++spanIdx;
    }
}

// grid = (ceil(nQ * group / kRows), nKvHeads, nSplits).
__global__ void __launch_bounds__(kThreads) attentionKernel(AttentionArgs a) {
    __shared__ SharedTile sh;
    const int D = a.headDim;
    const int group = a.nHeads / a.nKvHeads;
    const int kvh = blockIdx.y;
    const int split = blockIdx.z;
    const int rowBase = blockIdx.x * kRows;
    const int nRows = a.nQ * group;
    const int tid = threadIdx.x;
    const int lane = tid % kWarpSize;
    const int warp = tid / kWarpSize;
    // Row r of this block is token (rowBase + r) / group, head kvh * group + (rowBase + r) % group.
    auto headRow = [&](int r) {
        const int gr = rowBase + r;
        return (gr / group) * a.nHeads + kvh * group + gr % group;  // index into (nQ, nHeads)
    };

    if (tid < kRows) {
        sh.rowPos[tid] = rowBase + tid < nRows ? a.qPos[(rowBase + tid) / group] : INT_MIN;
        sh.rowMax[tid] = kNegInf;
        sh.rowSum[tid] = 0.0f;
    }
    for (int i = tid; i < kRows * D; i += kThreads) {
        const int r = i / D;
        const int d = i % D;
        sh.q[r][d] = rowBase + r < nRows ? a.q[static_cast<int64_t>(headRow(r)) * D + d] * a.scale : 0.0f;
    }
    const int nSpans = *a.nSpans;
    int total = 0;
    for (int s = 0; s < nSpans; ++s)
        total += a.spans[s].count;
    const int perSplit = (total + a.nSplits * kKeys - 1) / (a.nSplits * kKeys) * kKeys;
    const int begin = min(total, split * perSplit);
    const int end = min(total, begin + perSplit);
    int spanIdx = 0;
    int spanBase = 0;
    seekSpan(a.spans, nSpans, begin, spanIdx, spanBase);
    __syncthreads();
    int maxPos = INT_MIN;
    for (int r = 0; r < kRows; ++r)
        maxPos = max(maxPos, sh.rowPos[r]);

    float acc[kMaxAcc];
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i)
        acc[i] = 0.0f;

    for (int tile = begin; tile < end; tile += kKeys) {
        bool visible = false;
        if (tid < kKeys) {
            const int key = tile + tid;
            int slot = -1;
            int pos = INT_MAX;
            if (key < end) {
                int s = spanIdx;
                int base = spanBase;
                seekSpan(a.spans, nSpans, key, s, base);
                slot = a.spans[s].start + key - base;
                pos = a.kvPos[slot];
            }
            sh.slot[tid] = slot;
            sh.keyPos[tid] = pos;
            visible = slot >= 0 && pos <= maxPos;
        }
        seekSpan(a.spans, nSpans, tile + kKeys, spanIdx, spanBase);
        if (!__syncthreads_or(visible))
            continue;

        // Stage the tile: 8 fp16 values (16 bytes) per load; keys past the range become zeros, not garbage.
        const int chunks = D / 8;
        for (int i = tid; i < kKeys * chunks; i += kThreads) {
            const int kk = i / chunks;
            const int c = (i % chunks) * 8;
            const int slot = sh.slot[kk];
            Half8 kr{}, vr{};
            if (slot >= 0) {
                const int64_t off = (static_cast<int64_t>(slot) * a.nKvHeads + kvh) * D + c;
                kr = *reinterpret_cast<const Half8*>(a.k + off);
                vr = *reinterpret_cast<const Half8*>(a.v + off);
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const float2 kf = __half22float2(kr.h[j]);
                const float2 vf = __half22float2(vr.h[j]);
                sh.k[kk][c + 2 * j] = kf.x;
                sh.k[kk][c + 2 * j + 1] = kf.y;
                sh.v[kk][c + 2 * j] = vf.x;
                sh.v[kk][c + 2 * j + 1] = vf.y;
            }
        }
        __syncthreads();

        // Scores and online softmax: lane = key, warp owns rows warp, warp + kWarps, ...
        for (int r = warp; r < kRows; r += kWarps) {
            float s = 0.0f;
            for (int d = 0; d < D; ++d)
                s = fmaf(sh.q[r][d], sh.k[lane][d], s);
            const bool ok = sh.slot[lane] >= 0 && sh.keyPos[lane] <= sh.rowPos[r];
            s = ok ? s : kNegInf;
            const float oldMax = sh.rowMax[r];
            const float newMax = fmaxf(oldMax, warpReduceMax(s));
            const float p = ok ? __expf(s - newMax) : 0.0f;
            const float sum = warpReduceSum(p);
            sh.p[r][lane] = p;
            __syncwarp();
            if (lane == 0) {
                const float corr = oldMax == kNegInf ? 0.0f : __expf(oldMax - newMax);
                sh.rowScale[r] = corr;
                sh.rowSum[r] = sh.rowSum[r] * corr + sum;
                sh.rowMax[r] = newMax;
            }
        }
        __syncthreads();

        // acc[i] holds output o = tid + i * kThreads: row o / D, dim o % D.
#pragma unroll
        for (int i = 0; i < kMaxAcc; ++i) {
            const int o = tid + i * kThreads;
            if (o < kRows * D) {
                const int r = o / D;
                const int d = o % D;
                float x = acc[i] * sh.rowScale[r];
#pragma unroll 8
                for (int kk = 0; kk < kKeys; ++kk)
                    x = fmaf(sh.p[r][kk], sh.v[kk][d], x);
                acc[i] = x;
            }
        }
        __syncthreads();
    }

    const int64_t rowsTotal = static_cast<int64_t>(a.nQ) * a.nHeads;
    float* outs = a.nSplits > 1 ? a.workspace + split * rowsTotal * D : a.out;
    float* lses = a.nSplits > 1 ? a.workspace + a.nSplits * rowsTotal * D + split * rowsTotal : a.lse;
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i) {
        const int o = tid + i * kThreads;
        if (o < kRows * D && rowBase + o / D < nRows) {
            const float sum = sh.rowSum[o / D];
            outs[static_cast<int64_t>(headRow(o / D)) * D + o % D] = sum > 0.0f ? acc[i] / sum : 0.0f;
        }
    }
    if (tid < kRows && rowBase + tid < nRows && lses) {
        const float sum = sh.rowSum[tid];
        lses[headRow(tid)] = sum > 0.0f ? sh.rowMax[tid] + logf(sum) : kNegInf;
    }
}

// workspace: (nSplits, rows, D) outputs then (nSplits, rows) lse; out: (rows, D). grid = rows, block >= D.
__global__ void attentionMergeKernel(const float* workspace, float* out, float* lse, int rows, int D, int nSplits) {
    const int row = blockIdx.x;
    const int d = threadIdx.x;
    const float* outs = workspace;
    const float* lses = workspace + static_cast<int64_t>(nSplits) * rows * D;
    float m = kNegInf;
    for (int s = 0; s < nSplits; ++s)
        m = fmaxf(m, lses[static_cast<int64_t>(s) * rows + row]);
    if (m == kNegInf) {
        if (d < D)
            out[static_cast<int64_t>(row) * D + d] = 0.0f;
        if (lse && d == 0)
            lse[row] = kNegInf;
        return;
    }
    float weightSum = 0.0f;
    float acc = 0.0f;
    for (int s = 0; s < nSplits; ++s) {
        const float l = lses[static_cast<int64_t>(s) * rows + row];
        const float w = l == kNegInf ? 0.0f : __expf(l - m);
        weightSum += w;
        if (d < D && w > 0.0f)
            acc += w * outs[(static_cast<int64_t>(s) * rows + row) * D + d];
    }
    if (d < D)
        out[static_cast<int64_t>(row) * D + d] = acc / weightSum;
    if (lse && d == 0)
        lse[row] = m + logf(weightSum);
}

// k, v: (nTokens, kvDim) float; caches: (capacity, kvDim) fp16.
__global__ void kvStoreKernel(const float* k, const float* v, __half* kCache, __half* vCache, const int32_t* slots,
                              int nTokens, int kvDim) {
    const int64_t n = static_cast<int64_t>(nTokens) * kvDim;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
         i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
        const int t = static_cast<int>(i / kvDim);
        const int64_t dst = static_cast<int64_t>(slots[t]) * kvDim + i % kvDim;
        kCache[dst] = __float2half_rn(k[i]);
        vCache[dst] = __float2half_rn(v[i]);
    }
}

}  // namespace

size_t attentionWorkspaceFloats(int nQ, int nHeads, int headDim, int nSplits) {
    return static_cast<size_t>(nSplits) * nQ * nHeads * (headDim + 1);
}

Status attention(cudaStream_t stream, const AttentionArgs& a) {
    if (a.nQ < 0 || a.nHeads <= 0 || a.nKvHeads <= 0 || a.nHeads % a.nKvHeads != 0)
        return invalidArgument("attention: nHeads must be a positive multiple of nKvHeads");
    if (a.headDim <= 0 || a.headDim % 8 != 0 || a.headDim > kAttentionMaxHeadDim)
        return invalidArgument("attention: headDim " + std::to_string(a.headDim) +
                               " unsupported (multiples of 8 up to " + std::to_string(kAttentionMaxHeadDim) + ")");
    if (a.nSplits < 1 || a.nSplits > 65535 || (a.nSplits > 1 && !a.workspace))
        return invalidArgument("attention: nSplits must be in [1, 65535], with a workspace when above 1");
    if (a.nQ == 0)
        return Status::success();
    const int group = a.nHeads / a.nKvHeads;
    const dim3 grid(ceilDiv(static_cast<int64_t>(a.nQ) * group, kRows), a.nKvHeads, a.nSplits);
    attentionKernel<<<grid, kThreads, 0, stream>>>(a);
    RC_TRY(checkLaunch("attentionKernel"));
    if (a.nSplits == 1)
        return Status::success();
    attentionMergeKernel<<<a.nQ * a.nHeads, kAttentionMaxHeadDim, 0, stream>>>(a.workspace, a.out, a.lse,
                                                                            a.nQ * a.nHeads, a.headDim, a.nSplits);
    return checkLaunch("attentionMergeKernel");
}

Status kvStore(cudaStream_t stream, const float* k, const float* v, uint16_t* kCache, uint16_t* vCache,
               const int32_t* slots, int nTokens, int kvDim) {
    if (nTokens < 0 || kvDim <= 0)
        return invalidArgument("kvStore: bad shape");
    if (nTokens == 0)
        return Status::success();
    constexpr int kStoreThreads = 256;
    const unsigned grid = std::min(ceilDiv(static_cast<int64_t>(nTokens) * kvDim, kStoreThreads), 65535u);
    kvStoreKernel<<<grid, kStoreThreads, 0, stream>>>(k, v, reinterpret_cast<__half*>(kCache),
                                                      reinterpret_cast<__half*>(vCache), slots, nTokens, kvDim);
    return checkLaunch("kvStoreKernel");
}

}  // namespace kernels
