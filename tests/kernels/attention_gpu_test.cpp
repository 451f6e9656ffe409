// attention() against attentionRef (on the fp16-rounded keys and values the cache holds) for prefill (causal by
// position, many query tokens) and decode (one token, split-K with 1..64 splits), with the keys of the query's
// rounds scattered over the cache as spans. Shapes: TinyLlama (32 heads, 4 kv heads, head dim 64), MHA with head
// dim 128, stories260K (8 heads, 4 kv heads, head dim 8). Outputs are O(1): tolerance 2e-4 absolute (the GPU uses
// the fast exp and float sums), lse 2e-4 absolute. kvStore() must write exact fp16 roundings.
#include "kernels/attention.h"

#include <algorithm>
#include <limits>
#include <numeric>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

struct Case {
    int nQ, nHeads, nKvHeads, headDim, nPast, nSplits;
};

// Runs one case: nPast cached keys at positions 0..nPast-1 followed by the nQ query tokens' own keys at positions
// nPast.., stored at scattered slots as several spans (rounds), and compares with the reference.
void runCase(const Case& c, uint32_t seed) {
    SCOPED_TRACE("nQ " + std::to_string(c.nQ) + " heads " + std::to_string(c.nHeads) + "/" +
                 std::to_string(c.nKvHeads) + " d " + std::to_string(c.headDim) + " past " + std::to_string(c.nPast) +
                 " splits " + std::to_string(c.nSplits));
    const int nKv = c.nPast + c.nQ;
    const int kvDim = c.nKvHeads * c.headDim;
    // Cut the logical keys into rounds of varying length and place round i at a shuffled region of the cache.
    std::vector<kernels::KvSpan> spans;
    const int capacity = nKv + 64;
    std::vector<int32_t> slotOfKey(nKv);
    {
        std::mt19937 rng(seed);
        int key = 0, nextFree = capacity;  // fill the cache from the top down so spans are out of order
        while (key < nKv) {
            const int len = std::min(nKv - key, 1 + static_cast<int>(rng() % 97));
            nextFree -= len + static_cast<int>(rng() % 2);  // leave a gap sometimes
            spans.push_back({nextFree, len});
            for (int i = 0; i < len; ++i)
                slotOfKey[key + i] = nextFree + i;
            key += len;
        }
        spans.push_back({0, 0});  // an empty span must be harmless
    }
    ASSERT_GE(spans.back().start, 0);
    const auto q = gputest::randomFloats(static_cast<size_t>(c.nQ) * c.nHeads * c.headDim, seed + 1, -2.0f, 2.0f);
    const auto kvals = gputest::randomFloats(static_cast<size_t>(nKv) * kvDim, seed + 2, -2.0f, 2.0f);
    const auto vvals = gputest::randomFloats(static_cast<size_t>(nKv) * kvDim, seed + 3);
    // Reference inputs: logical order, fp16-rounded.
    const auto kRef = gputest::fromHalf(gputest::toHalf(kvals));
    const auto vRef = gputest::fromHalf(gputest::toHalf(vvals));
    std::vector<int32_t> kvPosLogical(nKv), qPos(c.nQ);
    std::iota(kvPosLogical.begin(), kvPosLogical.end(), 0);
    std::iota(qPos.begin(), qPos.end(), c.nPast);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
    std::vector<float> want(q.size()), wantLse(static_cast<size_t>(c.nQ) * c.nHeads);
    kernels::attentionRef(q.data(), kRef.data(), vRef.data(), want.data(), wantLse.data(), qPos.data(),
                          kvPosLogical.data(), c.nQ, nKv, c.nHeads, c.nKvHeads, c.headDim, scale);

    // Device cache: scatter through kvStore (also under test), positions per slot.
    auto kCache = gputest::deviceZeros<uint16_t>(static_cast<size_t>(capacity) * kvDim);
    auto vCache = gputest::deviceZeros<uint16_t>(static_cast<size_t>(capacity) * kvDim);
    std::vector<int32_t> slotPos(capacity, 1 << 30);
    for (int j = 0; j < nKv; ++j)
        slotPos[slotOfKey[j]] = j;
    auto dk = gputest::toDevice(kvals);
    auto dv = gputest::toDevice(vvals);
    auto dslots = gputest::toDevice(slotOfKey);
    ASSERT_TRUE(kernels::kvStore(nullptr, dk.data(), dv.data(), kCache.data(), vCache.data(), dslots.data(), nKv,
                                 kvDim)
                    .ok());
    const auto kHost = gputest::toHost(kCache);
    for (int j = 0; j < nKv; j += 7)
        ASSERT_EQ(kHost[static_cast<size_t>(slotOfKey[j]) * kvDim],
                  kernels::floatToFp16(kvals[static_cast<size_t>(j) * kvDim]));

    auto dq = gputest::toDevice(q);
    auto dqPos = gputest::toDevice(qPos);
    auto dSlotPos = gputest::toDevice(slotPos);
    auto dspans = kernels::DeviceBuffer<kernels::KvSpan>::create(spans.size());
    ASSERT_TRUE(dspans.ok());
    ASSERT_TRUE(dspans->upload(spans.data(), spans.size(), nullptr).ok());
    auto dnSpans = gputest::toDevice(std::vector<int32_t>{static_cast<int32_t>(spans.size())});
    auto dout = gputest::deviceZeros<float>(q.size());
    auto dlse = gputest::deviceZeros<float>(wantLse.size());
    auto ws = gputest::deviceZeros<float>(kernels::attentionWorkspaceFloats(c.nQ, c.nHeads, c.headDim, c.nSplits));
    kernels::AttentionArgs a;
    a.q = dq.data();
    a.qPos = dqPos.data();
    a.k = kCache.data();
    a.v = vCache.data();
    a.kvPos = dSlotPos.data();
    a.spans = dspans->data();
    a.nSpans = dnSpans.data();
    a.out = dout.data();
    a.lse = dlse.data();
    a.workspace = c.nSplits > 1 ? ws.data() : nullptr;
    a.nQ = c.nQ;
    a.nHeads = c.nHeads;
    a.nKvHeads = c.nKvHeads;
    a.headDim = c.headDim;
    a.nSplits = c.nSplits;
    a.scale = scale;
    ASSERT_TRUE(kernels::attention(nullptr, a).ok());
    gputest::expectClose(gputest::toHost(dout), want, 2e-4f, 0.0f, "attention out");
    gputest::expectClose(gputest::toHost(dlse), wantLse, 2e-4f, 0.0f, "attention lse");
}

TEST(AttentionGpu, PrefillMatchesReference) {
    runCase({37, 32, 4, 64, 100, 1}, 1);     // TinyLlama GQA, prefill after earlier rounds
    runCase({200, 32, 4, 64, 0, 1}, 2);      // first prompt: purely causal
    runCase({45, 8, 8, 128, 70, 1}, 3);      // MHA, head dim 128
    runCase({64, 8, 4, 8, 10, 1}, 4);        // stories260K shape
    runCase({19, 32, 4, 64, 300, 3}, 5);     // prefill split over keys too
}

TEST(AttentionGpu, DecodeSplitKMatchesReference) {
    for (int splits : {1, 2, 7, 32, 64})
        runCase({1, 32, 4, 64, 1500, splits}, 10 + splits);
    runCase({1, 8, 8, 128, 4000, 16}, 30);
    runCase({1, 8, 4, 8, 40, 8}, 31);  // more splits than key tiles: empty splits must not disturb the merge
    runCase({1, 32, 4, 64, 0, 4}, 32);  // only the token's own key
}

TEST(AttentionGpu, QueryThatSeesNothingGivesZeroAndMinusInfinity) {
    // One key at position 5 and a query at position 2.
    const int d = 64;
    auto q = gputest::toDevice(gputest::randomFloats(d, 1));
    auto qPos = gputest::toDevice(std::vector<int32_t>{2});
    auto k = gputest::toDevice(gputest::toHalf(gputest::randomFloats(d, 2)));
    auto v = gputest::toDevice(gputest::toHalf(gputest::randomFloats(d, 3)));
    auto kvPos = gputest::toDevice(std::vector<int32_t>{5});
    auto spans = kernels::DeviceBuffer<kernels::KvSpan>::create(1);
    ASSERT_TRUE(spans.ok());
    const kernels::KvSpan span{0, 1};
    ASSERT_TRUE(spans->upload(&span, 1, nullptr).ok());
    auto nSpans = gputest::toDevice(std::vector<int32_t>{1});
    auto out = gputest::toDevice(std::vector<float>(d, 5.0f));
    auto lse = gputest::deviceZeros<float>(1);
    auto ws = gputest::deviceZeros<float>(kernels::attentionWorkspaceFloats(1, 1, d, 4));
    for (int splits : {1, 4}) {
        kernels::AttentionArgs a;
        a.q = q.data();
        a.qPos = qPos.data();
        a.k = k.data();
        a.v = v.data();
        a.kvPos = kvPos.data();
        a.spans = spans->data();
        a.nSpans = nSpans.data();
        a.out = out.data();
        a.lse = lse.data();
        a.workspace = ws.data();
        a.nQ = 1;
        a.nHeads = 1;
        a.nKvHeads = 1;
        a.headDim = d;
        a.nSplits = splits;
        ASSERT_TRUE(kernels::attention(nullptr, a).ok());
        for (float x : gputest::toHost(out))
            ASSERT_EQ(x, 0.0f);
        EXPECT_EQ(gputest::toHost(lse)[0], -std::numeric_limits<float>::infinity());
    }
}

TEST(AttentionGpu, RejectsUnsupportedHeadDim) {
    kernels::AttentionArgs a;
    a.nQ = 1;
    a.nHeads = 1;
    a.nKvHeads = 1;
    a.headDim = 256;
    EXPECT_FALSE(kernels::attention(nullptr, a).ok());
}

}  // namespace
