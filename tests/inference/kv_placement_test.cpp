// KvPlacement bookkeeping: which rounds' upper layers a device holds, what a recall copies and evicts under a VRAM
// budget, and the device byte count.
#include "inference/kv_placement.h"

#include <vector>

#include <gtest/gtest.h>

namespace inference {
namespace {

// Rounds of the given sizes, the last one the batch's own.
KvRoundTable table(const std::vector<int>& tokens) {
    KvRoundTable t(1 << 16);
    for (int n : tokens) {
        EXPECT_TRUE(t.beginRound().ok());
        EXPECT_TRUE(t.checkAppend(n).ok());
        t.commitAppend(n);
    }
    return t;
}

TEST(KvPlacement, DefaultKeepsEverythingOnTheDevice) {
    KvPlacement p(8, 10);
    const KvRoundTable t = table({5, 7});
    EXPECT_FALSE(p.split());
    EXPECT_EQ(p.deviceBytes(t), 12u * 8u * 10u);
    EXPECT_EQ(p.upperBytes(100), 0u);
}

TEST(KvPlacement, RecallCopiesMissingRoundsAndEvictsBeyondBudget) {
    KvPlacement p(8, 10);  // 6 upper layers: 60 bytes per token
    p.configure(2, 0);
    ASSERT_TRUE(p.split());
    const KvRoundTable t = table({4, 5, 6, 7, 3});
    const uint64_t lower = 25u * 2u * 10u;
    EXPECT_EQ(p.deviceBytes(t), lower);  // nothing of the upper layers resident

    const std::vector<int> first = {0, 2};
    KvPlacement::Plan plan = p.recall(t, first);
    EXPECT_EQ(plan.copy, (std::vector<int>{0, 2, 4}));  // the own round (last) always comes along
    EXPECT_EQ(plan.copyBytes, (4u + 6u + 3u) * 60u);
    EXPECT_TRUE(plan.evict.empty());
    EXPECT_EQ(p.deviceBytes(t), lower + (4u + 6u + 3u) * 60u);

    // Round 2 is resident: only round 1 is copied; round 0 leaves (budget 0).
    const std::vector<int> second = {1, 2};
    plan = p.recall(t, second);
    EXPECT_EQ(plan.copy, (std::vector<int>{1}));
    EXPECT_EQ(plan.evict, (std::vector<uint64_t>{t.round(0).id}));
    EXPECT_FALSE(p.isResident(t.round(0).id));
    EXPECT_EQ(p.bytesCopied(), (4u + 6u + 3u + 5u) * 60u);

    // A budget of one 6-token round keeps the most recently used cached round that fits.
    p.configure(2, 6u * 60u);
    const std::vector<int> third = {3};
    plan = p.recall(t, third);
    EXPECT_EQ(plan.copy, (std::vector<int>{3}));
    EXPECT_EQ(plan.evict, (std::vector<uint64_t>{t.round(1).id}));  // 1 (5 tokens) is older than 2 (6 tokens)
    EXPECT_TRUE(p.isResident(t.round(2).id));
}

TEST(KvPlacement, NewWatershedAndPruneForgetResidency) {
    KvPlacement p(4, 1);
    p.configure(2, 1000);
    KvRoundTable t = table({3, 3, 3});
    (void)p.recall(t, std::vector<int>{0, 1});
    EXPECT_TRUE(p.isResident(t.round(1).id));
    const uint64_t id1 = t.round(1).id;
    ASSERT_TRUE(t.removeRounds(1, 2).ok());
    p.prune(t);
    EXPECT_FALSE(p.isResident(id1));
    EXPECT_EQ(p.evictAll().size(), 2u);
    p.configure(3, 1000);
    EXPECT_EQ(p.deviceBytes(t), 6u * 3u);
    (void)p.recall(t, std::vector<int>{0});
    p.configure(2, 1000);  // a new watershed: the caller moved the upper layers to the host
    EXPECT_EQ(p.deviceBytes(t), 6u * 2u);
}

}  // namespace
}  // namespace inference
