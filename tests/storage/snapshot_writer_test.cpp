// SnapshotWriter: enqueue never blocks on the disk, every round lands (one transaction each), errors come back,
// and back-pressure drops instead of blocking.
#include "storage/snapshot_writer.h"

#include "storage/chat_store.h"
#include "storage/kv_store.h"
#include "storage_test_util.h"

#include <atomic>
#include <chrono>

namespace storage {
namespace {

using test::makeSnapshot;
using test::openOrDie;
using test::patternBytes;
using test::TempDir;

RoundWrite makeWrite(int64_t conversation, int round, size_t bytesPerLayerRange) {
    RoundWrite w;
    w.round = RoundRecord{0, conversation, round, 0, 0, round * 16, 16, 0};
    for (int layer = 0; layer < 4; ++layer)
        w.snapshots.push_back(
            makeSnapshot(round, layer, 1, patternBytes(uint64_t(round * 4 + layer), bytesPerLayerRange)));
    return w;
}

TEST(SnapshotWriter, EnqueueIsFastAndEveryRoundIsWritten) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    Database db = openOrDie(path);  // the app's main connection
    const int64_t conversation = *ChatStore(db).createConversation(Conversation{.title = "bg"});

    std::atomic<int> committed{0};
    SnapshotWriterOptions options;
    options.databasePath = path;
    options.onOutcome = [&](const WriteOutcome& o) { committed += o.status.ok() && o.roundId != 0 ? 1 : 0; };
    Result<std::unique_ptr<SnapshotWriter>> writer = SnapshotWriter::create(options);
    ASSERT_TRUE(writer.ok()) << writer.error().toString();

    constexpr int kRounds = 60;
    std::vector<RoundWrite> writes;
    for (int r = 0; r < kRounds; ++r) writes.push_back(makeWrite(conversation, r, 64 * 1024));
    double worstMs = 0;
    for (RoundWrite& w : writes) {
        const auto t0 = std::chrono::steady_clock::now();
        ASSERT_TRUE((*writer)->enqueue(std::move(w)));
        worstMs =
            std::max(worstMs, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        // Meanwhile the main connection keeps reading and writing (WAL: no waiting on the writer).
        ASSERT_TRUE(ChatStore(db).listConversations().ok());
    }
    EXPECT_LT(worstMs, 20.0);  // generous for sanitizer builds; it is a lock and a move
    ASSERT_TRUE((*writer)->flush().ok());
    EXPECT_EQ(committed.load(), kRounds);
    EXPECT_EQ((*writer)->droppedRounds(), 0u);

    KvStore kv(db);
    std::vector<RoundRecord> rounds = *kv.rounds(conversation);
    ASSERT_EQ(rounds.size(), size_t(kRounds));
    for (const RoundRecord& r : rounds) {
        std::vector<KvSnapshotInfo> snaps = *kv.snapshots(r.id);
        ASSERT_EQ(snaps.size(), 4u);
        EXPECT_EQ(kv.loadSnapshot(snaps[3].id)->bytes, patternBytes(uint64_t(r.roundIndex * 4 + 3), 64 * 1024));
    }
}

TEST(SnapshotWriter, ErrorsAreReportedNotThrown) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    Database db = openOrDie(path);
    SnapshotWriterOptions options;
    options.databasePath = path;
    std::unique_ptr<SnapshotWriter> writer = std::move(*SnapshotWriter::create(options));
    ASSERT_TRUE(writer->enqueue(makeWrite(777, 0, 16)));  // no conversation 777: the foreign key refuses it
    const Status st = writer->flush();
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::DatabaseError);
    EXPECT_TRUE(writer->takeErrors().empty());  // flush() returned it already
    EXPECT_TRUE(KvStore(db).totalKvBytes().ok());
    EXPECT_EQ(*KvStore(db).totalKvBytes(), 0);
}

TEST(SnapshotWriter, BackPressureDropsInsteadOfBlockingAndBudgetApplies) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    Database db = openOrDie(path);
    const int64_t conversation = *ChatStore(db).createConversation(Conversation{.title = "bp"});
    ASSERT_TRUE(KvStore(db).setKvBudget(3 * 4 * 256 * 1024).ok());  // three rounds

    SnapshotWriterOptions options;
    options.databasePath = path;
    options.maxQueuedBytes = 2 * 4 * 256 * 1024;  // two rounds in memory
    std::unique_ptr<SnapshotWriter> writer = std::move(*SnapshotWriter::create(options));
    int accepted = 0;
    for (int r = 0; r < 40; ++r) accepted += writer->enqueue(makeWrite(conversation, r, 256 * 1024)) ? 1 : 0;
    ASSERT_TRUE(writer->flush().ok());
    EXPECT_EQ(uint64_t(accepted) + writer->droppedRounds(), 40u);
    EXPECT_GE(accepted, 2);
    KvStore kv(db);
    EXPECT_LE(*kv.totalKvBytes(), 3 * 4 * 256 * 1024);             // the budget was enforced after the writes
    EXPECT_EQ(kv.rounds(conversation)->size(), size_t(accepted));  // round rows stay, snapshots were evicted
}

TEST(SnapshotWriter, DestructorWritesWhatIsQueued) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    Database db = openOrDie(path);
    const int64_t conversation = *ChatStore(db).createConversation(Conversation{.title = "drain"});
    {
        SnapshotWriterOptions options;
        options.databasePath = path;
        std::unique_ptr<SnapshotWriter> writer = std::move(*SnapshotWriter::create(options));
        for (int r = 0; r < 10; ++r) ASSERT_TRUE(writer->enqueue(makeWrite(conversation, r, 1024)));
    }
    EXPECT_EQ(KvStore(db).rounds(conversation)->size(), 10u);
}

}  // namespace
}  // namespace storage
