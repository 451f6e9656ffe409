// ropeKvStore() against ropeKvStoreRef, for both KV-cache element types: q within 1e-5 absolute (values in [-1, 1],
// positions up to 100000, angles in double on both sides); k cache rows within one fp16 rounding (1e-3 relative) for
// an fp16 cache and within 1e-5 absolute (the rotation's float rounding, as q) for a float32 one; v rows exact; rows
// not written keep their previous contents. Shapes: TinyLlama decode (32/4 heads of 64), two tokens with MHA heads of
// 128, and a partial rotation (ropeDim < headDim).
#include "kernels/rope_kv_store.h"

#include <string>
#include <type_traits>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/fused_ref.h"

namespace {

struct Shape {
    int nTokens, nHeads, nKvHeads, headDim, ropeDim;
};

// KV: the host type of a cache element of kvType (uint16_t fp16 bits, or float).
template <typename KV>
KV toKv(float x) {
    if constexpr (std::is_same_v<KV, uint16_t>)
        return kernels::floatToFp16(x);
    else
        return x;
}

template <typename KV>
std::vector<float> toFloats(const std::vector<KV>& cache) {
    if constexpr (std::is_same_v<KV, uint16_t>)
        return gputest::fromHalf(cache);
    else
        return cache;
}

template <typename KV>
void expectMatchesReference(kernels::KvType kvType) {
    SCOPED_TRACE(kernels::kvTypeName(kvType));
    const Shape shapes[] = {{1, 32, 4, 64, 64}, {2, 8, 8, 128, 128}, {3, 6, 2, 96, 32}};
    const int capacity = 16;
    const float kAtol = kvType == kernels::KvType::F16 ? 1e-6f : 1e-5f;
    const float kRtol = kvType == kernels::KvType::F16 ? 1e-3f : 0.0f;
    for (const Shape& s : shapes) {
        SCOPED_TRACE(std::to_string(s.nTokens) + " tokens, " + std::to_string(s.nHeads) + "/" +
                     std::to_string(s.nKvHeads) + " heads of " + std::to_string(s.headDim));
        const int qDim = s.nHeads * s.headDim, kvDim = s.nKvHeads * s.headDim;
        const auto qkv = gputest::randomFloats(static_cast<size_t>(s.nTokens) * (qDim + 2 * kvDim), s.headDim);
        const std::vector<int32_t> positions = {99999, 7, 31337};
        const std::vector<int32_t> slots = {5, 11, 12};
        // Every cache row starts as 0.25: the rows not in `slots` must keep it.
        std::vector<KV> kCache(static_cast<size_t>(capacity) * kvDim, toKv<KV>(0.25f));
        std::vector<KV> vCache = kCache;
        auto dqkv = gputest::toDevice(qkv);
        auto dq = gputest::deviceZeros<float>(static_cast<size_t>(s.nTokens) * qDim);
        auto dk = gputest::toDevice(kCache);
        auto dv = gputest::toDevice(vCache);
        auto dpos = gputest::toDevice(positions);
        auto dslots = gputest::toDevice(slots);

        std::vector<float> q(static_cast<size_t>(s.nTokens) * qDim);
        kernels::ropeKvStoreRef(qkv.data(), q.data(), kCache.data(), vCache.data(), positions.data(), slots.data(),
                                s.nTokens, s.nHeads, s.nKvHeads, s.headDim, s.ropeDim, 10000.0f);
        kernels::RopeKvStoreArgs a;
        a.qkv = dqkv.data();
        a.q = dq.data();
        a.kCache = dk.data();
        a.vCache = dv.data();
        a.kvType = kvType;
        a.positions = dpos.data();
        a.slots = dslots.data();
        a.nTokens = s.nTokens;
        a.nHeads = s.nHeads;
        a.nKvHeads = s.nKvHeads;
        a.headDim = s.headDim;
        a.ropeDim = s.ropeDim;
        a.freqBase = 10000.0f;
        ASSERT_TRUE(kernels::ropeKvStore(nullptr, a).ok());
        gputest::expectClose(gputest::toHost(dq), q, 1e-5f, 0.0f, "q");
        gputest::expectClose(toFloats(gputest::toHost(dk)), toFloats(kCache), kAtol, kRtol, "k");
        gputest::expectClose(toFloats(gputest::toHost(dv)), toFloats(vCache), 0.0f, 0.0f, "v");
    }
}

TEST(RopeKvStoreGpu, MatchesReference) { expectMatchesReference<uint16_t>(kernels::KvType::F16); }

TEST(RopeKvStoreGpu, MatchesReferenceF32Cache) { expectMatchesReference<float>(kernels::KvType::F32); }

TEST(RopeKvStoreGpu, RejectsOddDims) {
    kernels::RopeKvStoreArgs a;
    a.nTokens = 1;
    a.nHeads = 2;
    a.nKvHeads = 1;
    a.headDim = 7;
    a.ropeDim = 6;
    EXPECT_FALSE(kernels::ropeKvStore(nullptr, a).ok());
}

}  // namespace
