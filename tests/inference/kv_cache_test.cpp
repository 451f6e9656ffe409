// KV cache round bookkeeping and storage: rounds, positions, two-phase appends, trimming, snapshots.
#include <vector>

#include <gtest/gtest.h>

#include "inference/kv_cache.h"

namespace inference {
namespace {

const KvLayout kLayout{3, 2, 4};  // 3 layers, 2 kv heads, head dim 4: 8 floats per token per layer

// Appends n tokens to the last round; token t of layer l holds K = 1000 l + t + offset, V = -K.
Status appendTokens(KvCache& cache, int n, float offset) {
    RC_TRY(cache.reserve(n));
    for (int l = 0; l < kLayout.nLayers; ++l)
        for (int64_t i = 0; i < n * kLayout.tokenFloats(); ++i) {
            cache.pendingKeys(l)[i] = 1000.0f * l + static_cast<float>(i / kLayout.tokenFloats()) + offset;
            cache.pendingValues(l)[i] = -cache.pendingKeys(l)[i];
        }
    cache.commit(n);
    return {};
}

TEST(KvRoundTable, RoundsPositionsAndCapacity) {
    KvRoundTable t(10);
    EXPECT_EQ(t.maxPosition(), -1);
    EXPECT_EQ(t.checkAppend(1).error().code, ErrorCode::InvalidArgument);  // no round yet
    ASSERT_TRUE(t.beginRound().ok());
    ASSERT_TRUE(t.checkAppend(4).ok());
    t.commitAppend(4);
    ASSERT_TRUE(t.beginRound().ok());
    t.commitAppend(3);
    EXPECT_EQ(t.roundCount(), 2);
    EXPECT_EQ(t.round(1).firstPosition, 4);
    EXPECT_EQ(t.tokenCount(), 7);
    EXPECT_EQ(t.maxPosition(), 6);
    EXPECT_EQ(t.nextPosition(), 7);
    EXPECT_NE(t.round(0).id, t.round(1).id);
    EXPECT_EQ(t.checkAppend(4).error().code, ErrorCode::ContextFull);
    EXPECT_TRUE(t.checkAppend(3).ok());

    ASSERT_TRUE(t.dropTail(2).ok());
    EXPECT_EQ(t.round(1).tokenCount, 1);
    EXPECT_EQ(t.nextPosition(), 5);
    EXPECT_FALSE(t.dropTail(2).ok());
    ASSERT_TRUE(t.keepRounds(1).ok());
    EXPECT_EQ(t.tokenCount(), 4);
    EXPECT_FALSE(t.keepRounds(2).ok());

    // Removing a middle round keeps the later rounds' positions (a gap remains).
    ASSERT_TRUE(t.beginRound().ok());
    t.commitAppend(2);
    ASSERT_TRUE(t.beginRound().ok());
    t.commitAppend(2);
    const uint64_t lastId = t.round(2).id;
    ASSERT_TRUE(t.removeRounds(1, 2).ok());
    EXPECT_EQ(t.roundCount(), 2);
    EXPECT_EQ(t.round(1).firstPosition, 6);
    EXPECT_EQ(t.round(1).id, lastId);
    EXPECT_EQ(t.tokenCount(), 6);
    EXPECT_EQ(t.maxPosition(), 7);
    EXPECT_FALSE(t.beginRoundAt(5).ok());  // before the next free position
    EXPECT_TRUE(t.beginRoundAt(20).ok());
    EXPECT_EQ(t.maxPosition(), 7);  // the new round is empty
    EXPECT_EQ(t.nextPosition(), 20);
}

TEST(KvCache, AppendReadAndBytes) {
    KvCache cache(kLayout, 16);
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 3, 0.0f).ok());
    ASSERT_TRUE(appendTokens(cache, 2, 3.0f).ok());  // continues the same round
    EXPECT_EQ(cache.table().round(0).tokenCount, 5);
    for (int t = 0; t < 5; ++t) EXPECT_EQ(cache.keys(0, 2)[t * kLayout.tokenFloats()], 2000.0f + t);
    EXPECT_EQ(cache.values(0, 1)[4 * kLayout.tokenFloats() + 7], -1004.0f);
    EXPECT_EQ(cache.bytes(0, 3), 5u * 3 * 2 * 8 * sizeof(float));
    EXPECT_EQ(cache.bytes(1, 2), 5u * 2 * 8 * sizeof(float));
}

TEST(KvCache, FailedReserveLeavesStateUnchanged) {
    KvCache cache(kLayout, 4);
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 3, 0.0f).ok());
    Status st = cache.reserve(2);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::ContextFull);
    EXPECT_EQ(cache.table().tokenCount(), 3);
    EXPECT_EQ(cache.keys(0, 0)[2 * kLayout.tokenFloats()], 2.0f);
    // An uncommitted reservation is not visible and is overwritten by the next one.
    ASSERT_TRUE(cache.reserve(1).ok());
    cache.pendingKeys(0)[0] = 99.0f;
    EXPECT_EQ(cache.table().tokenCount(), 3);
    ASSERT_TRUE(appendTokens(cache, 1, 3.0f).ok());
    EXPECT_EQ(cache.keys(0, 0)[3 * kLayout.tokenFloats()], 3.0f);
}

TEST(KvCache, TruncateDropTailAndRegenerate) {
    KvCache cache(kLayout, 32);
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 4, 0.0f).ok());
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 6, 100.0f).ok());
    ASSERT_TRUE(cache.dropTail(3).ok());  // regenerate: the answer's tokens go
    ASSERT_TRUE(appendTokens(cache, 2, 500.0f).ok());
    EXPECT_EQ(cache.table().round(1).tokenCount, 5);
    EXPECT_EQ(cache.keys(1, 0)[2 * kLayout.tokenFloats()], 102.0f);
    EXPECT_EQ(cache.keys(1, 0)[3 * kLayout.tokenFloats()], 500.0f);
    EXPECT_EQ(cache.table().maxPosition(), 8);
    ASSERT_TRUE(cache.keepRounds(1).ok());
    EXPECT_EQ(cache.table().tokenCount(), 4);
    ASSERT_TRUE(cache.beginRound().ok());
    EXPECT_EQ(cache.table().round(1).firstPosition, 4);
    ASSERT_TRUE(cache.removeRounds(0, 1).ok());
    EXPECT_EQ(cache.table().roundCount(), 1);
    EXPECT_EQ(cache.table().round(0).firstPosition, 4);
}

TEST(KvCache, SnapshotRoundTripAndLayout) {
    KvCache cache(kLayout, 32);
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 2, 0.0f).ok());
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 3, 10.0f).ok());

    Result<RoundKvSnapshot> partial = cache.exportRound(1, 1, 2);
    ASSERT_TRUE(partial.ok());
    EXPECT_EQ(partial->tokenCount, 3);
    EXPECT_EQ(partial->dtype, "f32");
    ASSERT_EQ(partial->bytes.size(), snapshotBytes(kLayout, 2, 3));
    // Layout: layer 1 K, layer 1 V, layer 2 K, layer 2 V; each (3 tokens, 2 heads, 4 dims) float32.
    const float* f = reinterpret_cast<const float*>(partial->bytes.data());
    EXPECT_EQ(f[0], 1010.0f);
    EXPECT_EQ(f[24], -1010.0f);
    EXPECT_EQ(f[48 + 8], 2011.0f);
    EXPECT_EQ(f[72 + 16], -2012.0f);

    Result<RoundKvSnapshot> snap = cache.exportRound(1, 0, 3);
    ASSERT_TRUE(snap.ok());
    KvCache restored(kLayout, 32);
    ASSERT_TRUE(restored.beginRound().ok());
    ASSERT_TRUE(appendTokens(restored, 2, 0.0f).ok());
    EXPECT_EQ(restored.importRound(*partial, 2).error().code, ErrorCode::Mismatch);  // not every layer
    RoundKvSnapshot truncated = *snap;
    truncated.bytes.pop_back();
    EXPECT_EQ(restored.importRound(truncated, 2).error().code, ErrorCode::CorruptFile);
    EXPECT_EQ(restored.table().roundCount(), 1);
    ASSERT_TRUE(restored.importRound(*snap, 40).ok());  // positions are the caller's: a gap is fine
    EXPECT_EQ(restored.table().round(1).firstPosition, 40);
    EXPECT_EQ(restored.table().round(1).tokenCount, 3);
    for (int l = 0; l < 3; ++l)
        for (int64_t i = 0; i < 3 * kLayout.tokenFloats(); ++i) {
            EXPECT_EQ(restored.keys(1, l)[i], cache.keys(1, l)[i]);
            EXPECT_EQ(restored.values(1, l)[i], cache.values(1, l)[i]);
        }
    KvCache small(kLayout, 4);
    ASSERT_TRUE(small.beginRound().ok());
    ASSERT_TRUE(appendTokens(small, 2, 0.0f).ok());
    EXPECT_EQ(small.importRound(*snap, 2).error().code, ErrorCode::ContextFull);
    EXPECT_EQ(small.table().roundCount(), 1);
}

TEST(KvCache, SnapshotConvertsBetweenF32AndF16) {
    KvCache cache(kLayout, 32);
    ASSERT_TRUE(cache.beginRound().ok());
    ASSERT_TRUE(appendTokens(cache, 3, 10.0f).ok());
    Result<RoundKvSnapshot> f32 = cache.exportRound(0, 0, 3);
    ASSERT_TRUE(f32.ok());
    RoundKvSnapshot half = *f32;
    ASSERT_TRUE(convertSnapshot(half, "f16").ok());
    EXPECT_EQ(half.dtype, "f16");
    ASSERT_EQ(half.bytes.size(), f32->bytes.size() / 2);
    RoundKvSnapshot back = half;
    ASSERT_TRUE(convertSnapshot(back, "f32").ok());
    // The test values are integers of magnitude at most 2012, which fp16 holds exactly.
    EXPECT_EQ(back.bytes, f32->bytes);
    EXPECT_EQ(reinterpret_cast<const uint16_t*>(half.bytes.data())[48], 0x63E4);  // layer 1, K, token 0: 1010.0

    RoundKvSnapshot odd = half;
    odd.dtype = "q8_0";
    EXPECT_EQ(convertSnapshot(odd, "f32").error().code, ErrorCode::Unsupported);
    EXPECT_EQ(convertSnapshot(half, "bf16").error().code, ErrorCode::Unsupported);
}

}  // namespace
}  // namespace inference
