// attention() against attentionRef (on the keys and values the cache holds: fp16-rounded, or exact in a float32
// cache) for prefill (causal by position, many query tokens) and decode (one token, split-K with 1..64 splits), with
// the keys of the query's rounds scattered over the cache as spans of 1..maxSpan slots (so key tiles cross spans).
// Positions are either consecutive or gapped and shuffled (rounds at arbitrary absolute positions: a query sees an
// arbitrary subset of the keys). Shapes: TinyLlama (32 heads, 4 kv heads, head dim 64), MHA with head dim 128 (both
// on the tensor-core kernel), stories260K (8 heads, 4 kv heads, head dim 8) and head dim 40 (scalar kernel). A
// float32 cache runs the scalar kernel at every head dim (64 and 128 included): a selection of the same cases.
// Tolerances, absolute (outputs and lse are O(1)): scalar kernel 2e-4 (fast exp, float sums); tensor-core kernel
// 2e-3, because it rounds the scaled queries and the probabilities to fp16 (relative 2^-11 each): a float64
// simulation of that rounding on these input ranges peaks at 9e-4 (lse) over thousands of rows. kvStore() must
// write exact fp16 roundings, or the exact floats.
// Lag bands (AttentionArgs::minLag/maxLag; inter-layer KV sharing's window and distant keys): the same shapes on
// every kernel and both cache types, against attentionRef with the same band.
// Two speed reports (printed, not asserted): prefill of 2048 queries over 18432 keys and decode over 16384 keys at
// the TinyLlama shape, each checked against the reference on sampled queries.
#include "kernels/attention.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <utility>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

struct Case {
    int nQ, nHeads, nKvHeads, headDim, nPast, nSplits;
    bool gappedPositions = false;  // shuffled past positions with gaps, query tokens 3 positions apart
    int maxSpan = 97;              // longest run of consecutive cache slots
    kernels::KvType kvType = kernels::KvType::F16;
    int minLag = 0;  // lag band: key x visible to query p iff minLag <= p - x <= maxLag
    int maxLag = std::numeric_limits<int>::max();
};

float tolerance(const Case& c) {
    const bool tensorCores = c.kvType == kernels::KvType::F16 && (c.headDim == 64 || c.headDim == 128);
    return tensorCores ? 2e-3f : 2e-4f;
}

// x as the cache holds it: rounded to fp16, or exact.
float stored(float x, kernels::KvType t) {
    return t == kernels::KvType::F16 ? kernels::fp16ToFloat(kernels::floatToFp16(x)) : x;
}

// Element i of a downloaded cache of type t, as a float.
float cachedAt(const std::vector<uint8_t>& cache, size_t i, kernels::KvType t) {
    if (t == kernels::KvType::F32) {
        float f;
        std::memcpy(&f, cache.data() + i * sizeof f, sizeof f);
        return f;
    }
    uint16_t h;
    std::memcpy(&h, cache.data() + i * sizeof h, sizeof h);
    return kernels::fp16ToFloat(h);
}

// Host inputs in logical key order (keys and values as the cache holds them) and the device cache (bytes of
// c.kvType elements) with the keys scattered over spans.
struct Problem {
    Case c;
    int nKv = 0;
    std::vector<float> q, kRef, vRef;
    std::vector<int32_t> qPos, kvPos;  // kvPos: position of logical key j
    kernels::DeviceBuffer<uint8_t> kCache, vCache;
    kernels::DeviceBuffer<float> dq, dout, dlse, workspace;
    kernels::DeviceBuffer<int32_t> dqPos, dSlotPos, dnSpans;
    kernels::DeviceBuffer<kernels::KvSpan> dspans;

    float scale() const { return 1.0f / std::sqrt(static_cast<float>(c.headDim)); }

    kernels::AttentionArgs args() {
        kernels::AttentionArgs a;
        a.q = dq.data();
        a.qPos = dqPos.data();
        a.k = kCache.data();
        a.v = vCache.data();
        a.kvType = c.kvType;
        a.kvPos = dSlotPos.data();
        a.spans = dspans.data();
        a.nSpans = dnSpans.data();
        a.out = dout.data();
        a.lse = dlse.data();
        a.workspace = c.nSplits > 1 ? workspace.data() : nullptr;
        a.nQ = c.nQ;
        a.nHeads = c.nHeads;
        a.nKvHeads = c.nKvHeads;
        a.headDim = c.headDim;
        a.nSplits = c.nSplits;
        a.scale = scale();
        a.minLag = c.minLag;
        a.maxLag = c.maxLag;
        return a;
    }
};

// nPast cached keys followed by the nQ query tokens' own keys (at the query positions), cut into rounds of varying
// length placed at shuffled regions of the cache (through kvStore, also under test).
void makeProblem(const Case& c, uint32_t seed, Problem& p) {
    p.c = c;
    p.nKv = c.nPast + c.nQ;
    const int kvDim = c.nKvHeads * c.headDim;
    std::mt19937 rng(seed);
    std::vector<kernels::KvSpan> spans;
    const int capacity = 2 * p.nKv + 64;  // every span (>= 1 key) leaves at most one free slot below it
    std::vector<int32_t> slotOfKey(p.nKv);
    int key = 0, nextFree = capacity;  // fill the cache from the top down so spans are out of order
    while (key < p.nKv) {
        const int len = std::min(p.nKv - key, 1 + static_cast<int>(rng() % c.maxSpan));
        nextFree -= len + static_cast<int>(rng() % 2);  // leave a gap sometimes
        spans.push_back({nextFree, len});
        for (int i = 0; i < len; ++i)
            slotOfKey[key + i] = nextFree + i;
        key += len;
    }
    spans.push_back({0, 0});  // an empty span must be harmless
    ASSERT_GE(spans[spans.size() - 2].start, 0);

    p.qPos.resize(c.nQ);
    p.kvPos.resize(p.nKv);
    if (c.gappedPositions) {
        // Past keys: a shuffle of 0, 2, 4, ... (so they straddle the queries); queries at nPast, nPast + 3, ...
        for (int j = 0; j < c.nPast; ++j)
            p.kvPos[j] = 2 * j;
        std::shuffle(p.kvPos.begin(), p.kvPos.begin() + c.nPast, rng);
        for (int i = 0; i < c.nQ; ++i)
            p.qPos[i] = c.nPast + 3 * i;
    } else {
        std::iota(p.kvPos.begin(), p.kvPos.begin() + c.nPast, 0);
        std::iota(p.qPos.begin(), p.qPos.end(), c.nPast);
    }
    std::copy(p.qPos.begin(), p.qPos.end(), p.kvPos.begin() + c.nPast);

    p.q = gputest::randomFloats(static_cast<size_t>(c.nQ) * c.nHeads * c.headDim, seed + 1, -2.0f, 2.0f);
    const auto kvals = gputest::randomFloats(static_cast<size_t>(p.nKv) * kvDim, seed + 2, -2.0f, 2.0f);
    const auto vvals = gputest::randomFloats(static_cast<size_t>(p.nKv) * kvDim, seed + 3);
    for (const auto& [from, to] : {std::pair{&kvals, &p.kRef}, std::pair{&vvals, &p.vRef}}) {
        to->resize(from->size());
        std::transform(from->begin(), from->end(), to->begin(), [&](float x) { return stored(x, c.kvType); });
    }

    const size_t cacheBytes = static_cast<size_t>(capacity) * kvDim * kernels::kvTypeBytes(c.kvType);
    p.kCache = gputest::deviceZeros<uint8_t>(cacheBytes);
    p.vCache = gputest::deviceZeros<uint8_t>(cacheBytes);
    std::vector<int32_t> slotPos(capacity, 1 << 30);
    for (int j = 0; j < p.nKv; ++j)
        slotPos[slotOfKey[j]] = p.kvPos[j];
    auto dk = gputest::toDevice(kvals);
    auto dv = gputest::toDevice(vvals);
    auto dslots = gputest::toDevice(slotOfKey);
    ASSERT_TRUE(kernels::kvStore(nullptr, dk.data(), dv.data(), p.kCache.data(), p.vCache.data(), c.kvType,
                                 dslots.data(), p.nKv, kvDim)
                    .ok());
    const auto kHost = gputest::toHost(p.kCache);
    for (int j = 0; j < p.nKv; j += 7)
        ASSERT_EQ(cachedAt(kHost, static_cast<size_t>(slotOfKey[j]) * kvDim, c.kvType),
                  p.kRef[static_cast<size_t>(j) * kvDim]);

    p.dq = gputest::toDevice(p.q);
    p.dqPos = gputest::toDevice(p.qPos);
    p.dSlotPos = gputest::toDevice(slotPos);
    auto dspans = kernels::DeviceBuffer<kernels::KvSpan>::create(spans.size());
    ASSERT_TRUE(dspans.ok());
    p.dspans = std::move(*dspans);
    ASSERT_TRUE(p.dspans.upload(spans.data(), spans.size(), nullptr).ok());
    p.dnSpans = gputest::toDevice(std::vector<int32_t>{static_cast<int32_t>(spans.size())});
    p.dout = gputest::deviceZeros<float>(p.q.size());
    p.dlse = gputest::deviceZeros<float>(static_cast<size_t>(c.nQ) * c.nHeads);
    p.workspace =
        gputest::deviceZeros<float>(kernels::attentionWorkspaceFloats(c.nQ, c.nHeads, c.headDim, c.nSplits));
}

// Compares the device result of the queries in `queries` with attentionRef.
void expectMatchesReference(const Problem& p, const std::vector<int>& queries) {
    const Case& c = p.c;
    const size_t qStride = static_cast<size_t>(c.nHeads) * c.headDim;
    const auto gotOut = gputest::toHost(p.dout);
    const auto gotLse = gputest::toHost(p.dlse);
    std::vector<float> q, got, gotL;
    std::vector<int32_t> qPos;
    for (int i : queries) {
        q.insert(q.end(), p.q.begin() + i * qStride, p.q.begin() + (i + 1) * qStride);
        got.insert(got.end(), gotOut.begin() + i * qStride, gotOut.begin() + (i + 1) * qStride);
        gotL.insert(gotL.end(), gotLse.begin() + i * c.nHeads, gotLse.begin() + (i + 1) * c.nHeads);
        qPos.push_back(p.qPos[i]);
    }
    const int n = static_cast<int>(queries.size());
    std::vector<float> want(q.size()), wantLse(static_cast<size_t>(n) * c.nHeads);
    kernels::attentionRef(q.data(), p.kRef.data(), p.vRef.data(), want.data(), wantLse.data(), qPos.data(),
                          p.kvPos.data(), n, p.nKv, c.nHeads, c.nKvHeads, c.headDim, p.scale(), c.minLag, c.maxLag);
    gputest::expectClose(got, want, tolerance(c), 0.0f, "attention out");
    gputest::expectClose(gotL, wantLse, tolerance(c), 0.0f, "attention lse");
}

void runCase(const Case& c, uint32_t seed) {
    SCOPED_TRACE("nQ " + std::to_string(c.nQ) + " heads " + std::to_string(c.nHeads) + "/" +
                 std::to_string(c.nKvHeads) + " d " + std::to_string(c.headDim) + " past " + std::to_string(c.nPast) +
                 " splits " + std::to_string(c.nSplits) + (c.gappedPositions ? " gapped" : "") + " " +
                 kernels::kvTypeName(c.kvType) + " lags [" + std::to_string(c.minLag) + ", " +
                 std::to_string(c.maxLag) + "]");
    Problem p;
    makeProblem(c, seed, p);
    if (::testing::Test::HasFatalFailure())
        return;
    ASSERT_TRUE(kernels::attention(nullptr, p.args()).ok());
    std::vector<int> all(c.nQ);
    std::iota(all.begin(), all.end(), 0);
    expectMatchesReference(p, all);
}

TEST(AttentionGpu, PrefillMatchesReference) {
    runCase({37, 32, 4, 64, 100, 1}, 1);          // TinyLlama GQA, prefill after earlier rounds
    runCase({200, 32, 4, 64, 0, 1}, 2);           // first prompt: purely causal, later key tiles fully masked
    runCase({45, 8, 8, 128, 70, 1}, 3);           // MHA, head dim 128
    runCase({64, 8, 4, 8, 10, 1}, 4);             // stories260K shape (scalar kernel)
    runCase({19, 32, 4, 64, 300, 3}, 5);          // prefill split over keys too
    runCase({33, 6, 2, 40, 90, 1}, 6);            // head dim 40 (scalar kernel), GQA 3
    runCase({130, 32, 4, 64, 700, 1, true}, 7);   // gapped, shuffled positions: masks inside every tile
    runCase({50, 8, 2, 128, 300, 2, true}, 8);    // the same at head dim 128, split
    runCase({29, 6, 2, 40, 200, 1, true}, 9);     // the same on the scalar kernel
    runCase({70, 32, 4, 64, 500, 1, false, 3}, 10);  // short spans: every tile crosses several
}

TEST(AttentionGpu, DecodeSplitKMatchesReference) {
    for (int splits : {1, 2, 7, 32, 64})
        runCase({1, 32, 4, 64, 1500, splits}, 10 + splits);
    runCase({1, 8, 8, 128, 4000, 16}, 30);
    runCase({1, 8, 4, 8, 40, 8}, 31);   // more splits than key tiles: empty splits must not disturb the merge
    runCase({1, 32, 4, 64, 0, 4}, 32);  // only the token's own key
    runCase({1, 32, 4, 64, 3000, 24, true}, 33);
    runCase({1, 6, 2, 40, 900, 5, true}, 34);
}

// A float32 cache: the scalar kernel at every head dim (64 and 128 too), prefill and split-K decode.
TEST(AttentionGpu, F32CacheMatchesReference) {
    constexpr kernels::KvType kF32 = kernels::KvType::F32;
    runCase({37, 32, 4, 64, 100, 1, false, 97, kF32}, 41);
    runCase({45, 8, 8, 128, 70, 1, false, 97, kF32}, 42);
    runCase({64, 8, 4, 8, 10, 1, false, 97, kF32}, 43);  // stories260K shape
    runCase({29, 6, 2, 40, 200, 1, true, 97, kF32}, 44);
    runCase({50, 8, 2, 128, 300, 2, true, 97, kF32}, 45);
    runCase({1, 32, 4, 64, 1500, 7, false, 97, kF32}, 46);
    runCase({1, 8, 4, 8, 40, 8, false, 97, kF32}, 47);
    runCase({1, 32, 4, 64, 3000, 24, true, 97, kF32}, 48);
}

// Lag bands: a window [0, 36] (old key tiles skipped whole, the band's lower edge masked inside tiles), distant keys
// [50, inf) (recent tiles skipped), and a band [5, 90] with both edges; prefill and split-K decode, consecutive and
// gapped positions, on the tensor-core kernel (F16 at head dims 64 and 128) and the scalar one (head dims 8 and 40,
// and everything over F32).
TEST(AttentionGpu, LagBandsMatchReference) {
    constexpr int kInf = std::numeric_limits<int>::max();
    uint32_t seed = 60;
    for (kernels::KvType t : {kernels::KvType::F16, kernels::KvType::F32}) {
        for (const auto& [lo, hi] : {std::pair{0, 36}, std::pair{50, kInf}, std::pair{5, 90}}) {
            runCase({150, 32, 4, 64, 300, 1, false, 97, t, lo, hi}, seed++);
            runCase({45, 8, 8, 128, 200, 2, true, 97, t, lo, hi}, seed++);
            runCase({70, 32, 4, 64, 500, 1, false, 3, t, lo, hi}, seed++);  // short spans
            runCase({64, 8, 4, 8, 100, 1, false, 97, t, lo, hi}, seed++);   // stories260K shape
            runCase({29, 6, 2, 40, 200, 1, true, 97, t, lo, hi}, seed++);
            runCase({1, 32, 4, 64, 1500, 7, false, 97, t, lo, hi}, seed++);
            runCase({1, 8, 8, 128, 2000, 16, true, 97, t, lo, hi}, seed++);
            runCase({1, 8, 4, 8, 300, 8, false, 97, t, lo, hi}, seed++);
        }
        // A first prompt under the distant band: its first 50 queries see nothing (out 0, lse -inf).
        runCase({120, 32, 4, 64, 0, 1, false, 97, t, 50, kInf}, seed++);
        runCase({120, 6, 2, 40, 0, 1, false, 97, t, 50, kInf}, seed++);
    }
}

TEST(AttentionGpu, RejectsBadLagBand) {
    kernels::AttentionArgs a;
    a.nQ = 1;
    a.nHeads = 1;
    a.nKvHeads = 1;
    a.headDim = 64;
    a.minLag = 5;
    a.maxLag = 4;
    EXPECT_FALSE(kernels::attention(nullptr, a).ok());
    a.minLag = -1;
    a.maxLag = 4;
    EXPECT_FALSE(kernels::attention(nullptr, a).ok());
}

// Milliseconds per call of attention() on p, averaged over `reps` calls after a warm-up.
float timeAttention(Problem& p, int reps) {
    auto start = kernels::Event::create(true);
    auto end = kernels::Event::create(true);
    EXPECT_TRUE(start.ok() && end.ok());
    EXPECT_TRUE(kernels::attention(nullptr, p.args()).ok());
    EXPECT_TRUE(start->record(nullptr).ok());
    for (int i = 0; i < reps; ++i)
        EXPECT_TRUE(kernels::attention(nullptr, p.args()).ok());
    EXPECT_TRUE(end->record(nullptr).ok());
    EXPECT_TRUE(end->synchronize().ok());
    const auto ms = kernels::Event::elapsedMs(*start, *end);
    EXPECT_TRUE(ms.ok());
    return ms.ok() ? *ms / reps : 0.0f;
}

TEST(AttentionGpu, SpeedReportPrefillTinyLlama) {
    // pp2048 at depth 16384: 2048 queries over 16384 cached keys in rounds of up to 2000 tokens plus their own.
    const Case c{2048, 32, 4, 64, 16384, 1, false, 2000};
    Problem p;
    makeProblem(c, 40, p);
    ASSERT_FALSE(HasFatalFailure());
    const float ms = timeAttention(p, 5);
    double visible = 0.0;  // (query, key) pairs inside the causal mask
    for (int i = 0; i < c.nQ; ++i)
        visible += c.nPast + i + 1;
    const double flops = 4.0 * c.nHeads * c.headDim * visible;  // QK^T and PV, 2 flops per multiply-add
    std::printf("attention prefill %d queries x %d keys (heads %d/%d, d %d): %.3f ms, %.1f TFLOP/s\n", c.nQ, p.nKv,
                c.nHeads, c.nKvHeads, c.headDim, ms, flops / (ms * 1e-3) / 1e12);
    expectMatchesReference(p, {0, 1, 63, 64, 777, 1500, 2046, 2047});
}

TEST(AttentionGpu, SpeedReportDecodeTinyLlama) {
    // tg at depth 16384, with the split count the CUDA backend picks (two waves of blocks over the SMs).
    cudaDeviceProp prop{};
    ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
    const int nKv = 16384;
    const int splits = std::clamp(2 * prop.multiProcessorCount / 4, 1, nKv / 64);
    const Case c{1, 32, 4, 64, nKv - 1, splits, false, 2000};
    Problem p;
    makeProblem(c, 41, p);
    ASSERT_FALSE(HasFatalFailure());
    const float ms = timeAttention(p, 50);
    const double bytes = 2.0 * nKv * c.nKvHeads * c.headDim * sizeof(uint16_t);  // K and V, read once
    std::printf("attention decode 1 query x %d keys (heads %d/%d, d %d, %d splits): %.2f us, %.0f GB/s\n", nKv,
                c.nHeads, c.nKvHeads, c.headDim, splits, ms * 1e3, bytes / (ms * 1e-3) / 1e9);
    expectMatchesReference(p, {0});
}

TEST(AttentionGpu, QueryThatSeesNothingGivesZeroAndMinusInfinity) {
    // One key at position 5 and a query at position 2, on both kernels.
    for (int d : {64, 40}) {
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
