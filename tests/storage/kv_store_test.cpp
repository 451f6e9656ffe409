// Rounds and KV snapshots: exact chunked BLOB round trips, restore planning with fingerprint checks, the budget.
#include "storage/kv_store.h"

#include "storage/chat_store.h"
#include "storage_test_util.h"

namespace storage {
namespace {

using test::makeSnapshot;
using test::openOrDie;
using test::patternBytes;
using test::TempDir;

class KvStoreTest : public ::testing::Test {
protected:
    TempDir m_dir;
    Database m_db = openOrDie(m_dir.file("chat.db"));
    ChatStore m_chats{m_db};
    KvStore m_kv{m_db};

    // Appends a user+assistant round to the active branch of `conversation` and stores its snapshots.
    int64_t addRound(int64_t conversation, int roundIndex, std::vector<KvSnapshotRecord> snaps, int64_t parent = -1) {
        if (parent < 0)
            parent = m_chats.conversation(conversation)->activeLeafId;
        Message u;
        u.conversationId = conversation;
        u.parentId = parent;
        u.text = "question " + std::to_string(roundIndex);
        const int64_t uid = *m_chats.appendMessage(u);
        Message a = u;
        a.parentId = uid;
        a.role = Role::Assistant;
        a.text = "answer " + std::to_string(roundIndex);
        const int64_t aid = *m_chats.appendMessage(a);
        RoundRecord r{0, conversation, roundIndex, uid, aid, roundIndex * 10, 10, 0};
        Result<int64_t> id = m_kv.writeRound(r, snaps);
        EXPECT_TRUE(id.ok()) << id.error().toString();
        return id.ok() ? *id : 0;
    }
};

TEST_F(KvStoreTest, TwentyMegabyteSnapshotRoundTripsExactly) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "big"});
    const std::vector<uint8_t> bytes = patternBytes(42, 20 * 1024 * 1024 + 12345);  // not a multiple of the chunk
    const int64_t round = addRound(c, 0, {makeSnapshot(0, 0, 32, bytes)});

    std::vector<KvSnapshotInfo> infos = *m_kv.snapshots(round);
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].byteSize, int64_t(bytes.size()));
    EXPECT_EQ(infos[0].dtype, "f16");
    EXPECT_EQ(infos[0].modelFingerprint, "model-A");
    EXPECT_EQ(infos[0].templateHash, "tmpl-1");
    EXPECT_EQ(infos[0].layerCount, 32);

    Result<KvSnapshotRecord> loaded = m_kv.loadSnapshot(infos[0].id);
    ASSERT_TRUE(loaded.ok()) << loaded.error().toString();
    EXPECT_TRUE(loaded->bytes == bytes);
    EXPECT_EQ(loaded->round, 0);
    EXPECT_EQ(loaded->tokenCount, 7);

    // Streaming into a caller buffer, in odd-sized pieces.
    Result<SnapshotBlobReader> reader = m_kv.openSnapshot(infos[0].id);
    ASSERT_TRUE(reader.ok());
    ASSERT_EQ(reader->size(), int64_t(bytes.size()));
    std::vector<uint8_t> streamed(bytes.size());
    const size_t piece = 3 * 1024 * 1024 + 7;
    for (size_t off = 0; off < streamed.size(); off += piece) {
        const size_t n = std::min(piece, streamed.size() - off);
        ASSERT_TRUE(reader->read(int64_t(off), std::span<uint8_t>(streamed.data() + off, n)).ok());
    }
    EXPECT_TRUE(streamed == bytes);
    std::vector<uint8_t> tooFar(10);
    EXPECT_EQ(reader->read(reader->size() - 5, tooFar).error().code, ErrorCode::InvalidArgument);
}

TEST_F(KvStoreTest, StreamedSnapshotsComeInOrderAndStopAtTheFirstError) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "stream"});
    std::vector<int64_t> ids;
    for (int r = 0; r < 30; ++r) {  // more than the read-ahead of 2 threads, so readers wait for the consumer
        const int64_t round = addRound(c, r, {makeSnapshot(r, 0, 4, patternBytes(uint64_t(100 + r), 70000 + r))});
        ids.push_back(m_kv.snapshots(round)->front().id);
    }
    const std::string path = m_dir.file("chat.db");
    for (int threads : {1, 2, 5}) {
        std::vector<int> order;
        Status st = streamSnapshots(path, ids, threads, [&](size_t i, KvSnapshotRecord&& rec) -> Status {
            EXPECT_EQ(rec.round, int(i));
            EXPECT_TRUE(rec.bytes == patternBytes(uint64_t(100 + i), 70000 + i)) << i;
            order.push_back(rec.round);
            return {};
        });
        ASSERT_TRUE(st.ok()) << st.error().toString();
        ASSERT_EQ(order.size(), ids.size());
        EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
    }

    // A missing snapshot: the ones before it are consumed, then its error is returned.
    std::vector<int64_t> holed = ids;
    holed[7] = ids.back() + 1000;
    size_t seen = 0;
    Status missing = streamSnapshots(path, holed, 3, [&](size_t, KvSnapshotRecord&&) -> Status {
        ++seen;
        return {};
    });
    EXPECT_FALSE(missing.ok());
    EXPECT_EQ(seen, 7u);

    // The consumer's error stops the stream too.
    seen = 0;
    Status refused = streamSnapshots(path, ids, 3, [&](size_t i, KvSnapshotRecord&&) -> Status {
        ++seen;
        return i == 4 ? Status{Error{ErrorCode::Mismatch, "not this one"}} : Status{};
    });
    EXPECT_EQ(refused.error().code, ErrorCode::Mismatch);
    EXPECT_EQ(seen, 5u);
    EXPECT_EQ(streamSnapshots(m_dir.file("missing.db"), ids, 2, [](size_t, KvSnapshotRecord&&) { return Status{}; })
                  .ok(),
              false);
}

TEST_F(KvStoreTest, EmptyAndSeveralLayerRangesPerRound) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "ranges"});
    const int64_t round =
        addRound(c, 0, {makeSnapshot(0, 0, 2, patternBytes(1, 100)), makeSnapshot(0, 2, 2, patternBytes(2, 0))});
    std::vector<KvSnapshotInfo> infos = *m_kv.snapshots(round);
    ASSERT_EQ(infos.size(), 2u);
    EXPECT_EQ(m_kv.loadSnapshot(infos[0].id)->bytes, patternBytes(1, 100));
    EXPECT_TRUE(m_kv.loadSnapshot(infos[1].id)->bytes.empty());
    EXPECT_EQ(m_kv.rounds(c)->size(), 1u);
    EXPECT_EQ(m_kv.round(round)->firstPosition, 0);
}

TEST_F(KvStoreTest, RewritingARoundReplacesItsSnapshots) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "rewrite"});
    const int64_t first = addRound(c, 0, {makeSnapshot(0, 0, 4, patternBytes(1, 64))});
    RoundRecord r = *m_kv.round(first);
    Result<int64_t> rewritten = m_kv.writeRound(r, std::vector{makeSnapshot(0, 0, 4, patternBytes(2, 32), "model-B")});
    ASSERT_TRUE(rewritten.ok()) << rewritten.error().toString();
    const int64_t second = *rewritten;
    ASSERT_EQ(m_kv.rounds(c)->size(), 1u);
    std::vector<KvSnapshotInfo> infos = *m_kv.snapshots(second);
    ASSERT_EQ(infos.size(), 1u);
    EXPECT_EQ(infos[0].modelFingerprint, "model-B");
    EXPECT_EQ(*m_kv.totalKvBytes(), 32);
}

TEST_F(KvStoreTest, RestorePlanFollowsTheActiveBranchAndChecksFingerprints) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "restore"});
    const RestoreKey key{"model-A", "tmpl-1", 4};
    auto full = [](int round, uint64_t seed, const std::string& fp = "model-A") {
        return std::vector{makeSnapshot(round, 0, 2, patternBytes(seed, 50), fp),
                           makeSnapshot(round, 2, 2, patternBytes(seed + 1, 50), fp)};
    };
    addRound(c, 0, full(0, 10));
    const int64_t branchPoint = m_chats.conversation(c)->activeLeafId;
    addRound(c, 1, full(1, 20));
    addRound(c, 2, full(2, 30, "model-B"));  // written by another model
    addRound(c, 3, full(3, 40));

    Result<RestorePlan> plan = m_kv.planRestore(c, key);
    ASSERT_TRUE(plan.ok()) << plan.error().toString();
    ASSERT_EQ(plan->rounds.size(), 4u);
    EXPECT_TRUE(plan->rounds[0].usable);
    EXPECT_TRUE(plan->rounds[1].usable);
    EXPECT_FALSE(plan->rounds[2].usable);
    EXPECT_NE(plan->rounds[2].reason.find("fingerprint"), std::string::npos) << plan->rounds[2].reason;
    EXPECT_TRUE(plan->rounds[3].usable);
    EXPECT_EQ(plan->restorableRounds, 2);  // round 3 follows a round that must be prefilled
    EXPECT_EQ(plan->rounds[1].snapshots.size(), 2u);

    // Another template hash invalidates everything; a model with more layers finds missing layers.
    Result<RestorePlan> otherTemplate = m_kv.planRestore(c, RestoreKey{"model-A", "tmpl-2", 4});
    EXPECT_EQ(otherTemplate->restorableRounds, 0);
    EXPECT_NE(otherTemplate->rounds[0].reason.find("template"), std::string::npos);
    EXPECT_EQ(m_kv.planRestore(c, RestoreKey{"model-A", "tmpl-1", 6})->restorableRounds, 0);

    // A branch from round 0 sees only round 0 of the old branch plus its own rounds.
    addRound(c, 1, full(1, 50), branchPoint);
    plan = m_kv.planRestore(c, key);
    ASSERT_EQ(plan->rounds.size(), 2u);
    EXPECT_EQ(plan->restorableRounds, 2);
    EXPECT_EQ(m_kv.loadSnapshot(plan->rounds[1].snapshots[0].id)->bytes, patternBytes(50, 50));
}

TEST_F(KvStoreTest, BudgetEvictsOldestSnapshotsFirstAndNeverText) {
    const int64_t c1 = *m_chats.createConversation(Conversation{.title = "one"});
    const int64_t c2 = *m_chats.createConversation(Conversation{.title = "two"});
    addRound(c1, 0, {makeSnapshot(0, 0, 1, patternBytes(1, 1000))});  // oldest
    addRound(c2, 0, {makeSnapshot(0, 0, 1, patternBytes(2, 2000))});
    addRound(c1, 1, {makeSnapshot(1, 0, 1, patternBytes(3, 3000))});
    addRound(c2, 1, {makeSnapshot(1, 0, 1, patternBytes(4, 4000))});  // newest

    std::vector<ConversationKvUsage> usage = *m_kv.kvBytesPerConversation();
    ASSERT_EQ(usage.size(), 2u);
    EXPECT_EQ(usage[0].conversationId, c1);
    EXPECT_EQ(usage[0].bytes, 4000);
    EXPECT_EQ(usage[1].bytes, 6000);
    EXPECT_EQ(usage[1].snapshotCount, 2);
    EXPECT_EQ(*m_kv.totalKvBytes(), 10000);

    EXPECT_EQ(m_kv.enforceBudget()->snapshotsEvicted, 0);  // no budget set
    ASSERT_TRUE(m_kv.setKvBudget(7000).ok());
    EXPECT_EQ(*m_kv.kvBudget(), 7000);
    EvictionReport report = *m_kv.enforceBudget();
    EXPECT_EQ(report.snapshotsEvicted, 2);  // 1000 + 2000 freed, the two oldest
    EXPECT_EQ(report.bytesFreed, 3000);
    EXPECT_EQ(*m_kv.totalKvBytes(), 7000);
    usage = *m_kv.kvBytesPerConversation();
    EXPECT_EQ(usage[0].bytes, 3000);
    EXPECT_EQ(usage[1].bytes, 4000);

    // The evicted round is planned for prefill; the text is all there.
    Result<RestorePlan> plan = m_kv.planRestore(c1, RestoreKey{"model-A", "tmpl-1", 1});
    EXPECT_FALSE(plan->rounds[0].usable);
    EXPECT_NE(plan->rounds[0].reason.find("evicted"), std::string::npos);
    EXPECT_EQ(m_chats.activePath(c1)->size(), 4u);
    EXPECT_EQ(m_kv.rounds(c1)->size(), 2u);

    EvictionReport freed = *m_kv.freeKv(c2);
    EXPECT_EQ(freed.bytesFreed, 4000);
    EXPECT_EQ(*m_kv.totalKvBytes(), 3000);
    EXPECT_EQ(m_chats.activePath(c2)->size(), 4u);
    EXPECT_FALSE(m_kv.setKvBudget(-1).ok());
}

TEST_F(KvStoreTest, PurgingAConversationRemovesItsSnapshots) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "purge"});
    addRound(c, 0, {makeSnapshot(0, 0, 1, patternBytes(1, 500))});
    ASSERT_TRUE(m_chats.deleteConversation(c).ok());
    EXPECT_EQ(*m_kv.totalKvBytes(), 500);  // the trash keeps them until purged
    ASSERT_EQ(*m_chats.purgeDeleted(Database::nowMs() + 1), 1);
    EXPECT_EQ(*m_kv.totalKvBytes(), 0);
    EXPECT_EQ(*m_db.integrityCheck(), "ok");
}

}  // namespace
}  // namespace storage
