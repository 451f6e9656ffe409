// Fused RoPE + KV store for decode: one thread per (token, head of q, k or v, pair of adjacent dims). q and k pairs
// below ropeDim are rotated (angle in double, the formula of rope.cu, so results match ropeRef); q goes to its own
// buffer, k and v to their cache rows in the cache's element type KV (__half or float).
#include "kernels/rope_kv_store.h"

#include "cuda_common.cuh"
#include "kv_element.cuh"

namespace kernels {

namespace {

constexpr int kThreads = 128;

// grid covers nTokens * (nHeads + 2 nKvHeads) * headDim / 2 threads.
template <typename KV>
__global__ void ropeKvStoreKernel(RopeKvStoreArgs a) {
    const int pairsPerHead = a.headDim / 2;
    const int heads = a.nHeads + 2 * a.nKvHeads;
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= static_cast<int64_t>(a.nTokens) * heads * pairsPerHead)
        return;
    const int t = static_cast<int>(idx / (static_cast<int64_t>(heads) * pairsPerHead));
    const int rest = static_cast<int>(idx % (static_cast<int64_t>(heads) * pairsPerHead));
    const int h = rest / pairsPerHead;  // < nHeads: q head; then k heads; then v heads
    const int i = rest % pairsPerHead;
    const int64_t kvDim = static_cast<int64_t>(a.nKvHeads) * a.headDim;
    const float2 v = *reinterpret_cast<const float2*>(a.qkv + static_cast<int64_t>(t) * heads * a.headDim +
                                                      static_cast<int64_t>(h) * a.headDim + 2 * i);
    float2 r = v;
    if (h < a.nHeads + a.nKvHeads && 2 * i < a.ropeDim) {
        const double theta = static_cast<double>(a.positions[t]) *
                             pow(static_cast<double>(a.freqBase), -2.0 * i / a.ropeDim);
        double sd, cd;
        sincos(theta, &sd, &cd);
        const float c = static_cast<float>(cd);
        const float s = static_cast<float>(sd);
        r = make_float2(v.x * c - v.y * s, v.x * s + v.y * c);
    }
    if (h < a.nHeads) {
        *reinterpret_cast<float2*>(a.q + (static_cast<int64_t>(t) * a.nHeads + h) * a.headDim + 2 * i) = r;
        return;
    }
    const bool isKey = h < a.nHeads + a.nKvHeads;
    const int kvHead = isKey ? h - a.nHeads : h - a.nHeads - a.nKvHeads;
    KV* cache = static_cast<KV*>(isKey ? a.kCache : a.vCache);
    storeKvPair(cache + a.slots[t] * kvDim + static_cast<int64_t>(kvHead) * a.headDim + 2 * i, r);
}

}  // namespace

Status ropeKvStore(cudaStream_t stream, const RopeKvStoreArgs& a) {
    if (a.nTokens < 0 || a.nHeads <= 0 || a.nKvHeads <= 0 || a.headDim <= 0 || a.headDim % 2 != 0 ||
        a.ropeDim <= 0 || a.ropeDim % 2 != 0 || a.ropeDim > a.headDim)
        return invalidArgument("ropeKvStore: bad shape (headDim and ropeDim must be even, ropeDim <= headDim)");
    if (a.nTokens == 0)
        return Status::success();
    const int64_t threads = static_cast<int64_t>(a.nTokens) * (a.nHeads + 2 * a.nKvHeads) * (a.headDim / 2);
    withKvElement(a.kvType, [&](auto kv) {
        ropeKvStoreKernel<typename decltype(kv)::type><<<ceilDiv(threads, kThreads), kThreads, 0, stream>>>(a);
    });
    return checkLaunch("ropeKvStoreKernel");
}

}  // namespace kernels
