// Crash safety: a child process writes rounds (two messages, a round row and KV snapshots, one transaction each) and
// is killed with SIGKILL at a random moment, 50 times. After each kill the database must pass integrity_check and
// every round the child reported as committed must be intact, bytes and text.
#include "storage/chat_store.h"
#include "storage/kv_store.h"
#include "storage_test_util.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <random>
#include <thread>

namespace storage {
namespace {

using test::makeSnapshot;
using test::patternBytes;
using test::TempDir;

// Sent over the pipe after COMMIT returned. 24 bytes: below PIPE_BUF, so a kill never leaves half a record.
struct Committed {
    int64_t roundId;
    uint64_t seed;
    uint32_t size;
    uint32_t messageIdLow;  // the assistant message id (small in this test)
};

size_t snapshotSize(uint64_t seed) {
    return 512 + seed * 7919 % 16384;
}

std::string answerText(uint64_t seed) {
    return "answer for seed " + std::to_string(seed) + " \xF0\x9F\x94\x91";
}

[[noreturn]] void childWriteRounds(const std::string& path, int64_t conversation, uint64_t firstSeed, int fd) {
    Result<Database> db = Database::open(path, OpenOptions{.verifyOnOpen = false, .recoverCorrupt = false});
    if (!db)
        _exit(2);
    ChatStore chats(*db);
    KvStore kv(*db);
    for (uint64_t seed = firstSeed;; ++seed) {
        Result<Transaction> tx = Transaction::begin(*db);
        if (!tx)
            _exit(3);
        Message user;
        user.conversationId = conversation;
        user.parentId = chats.conversation(conversation)->activeLeafId;
        user.text = "question " + std::to_string(seed);
        const Result<int64_t> userId = chats.appendMessage(user);
        Message answer = user;
        answer.parentId = userId.ok() ? *userId : 0;
        answer.role = Role::Assistant;
        answer.text = answerText(seed);
        const Result<int64_t> answerId = chats.appendMessage(answer);
        if (!userId || !answerId)
            _exit(4);
        const size_t size = snapshotSize(seed);
        const std::vector<KvSnapshotRecord> snaps = {makeSnapshot(0, 0, 1, patternBytes(seed, size)),
                                                     makeSnapshot(0, 1, 1, patternBytes(seed + (1ull << 40), size))};
        const Result<int64_t> roundId =
            kv.writeRound(RoundRecord{0, conversation, 0, *userId, *answerId, 0, 1, 0}, snaps);
        if (!roundId || !tx->commit().ok())
            _exit(5);
        const Committed rec{*roundId, seed, uint32_t(size), uint32_t(*answerId)};
        if (write(fd, &rec, sizeof(rec)) != ssize_t(sizeof(rec)))
            _exit(6);
    }
}

TEST(CrashSafety, FiftySigkillsLoseNoCommittedRound) {
    TempDir dir;
    const std::string path = dir.file("crash.db");
    int64_t conversation = 0;
    {
        Result<Database> db = Database::open(path);
        ASSERT_TRUE(db.ok());
        conversation = *ChatStore(*db).createConversation(Conversation{.title = "crash"});
    }
    std::mt19937 rng(20261123);
    std::vector<Committed> committed;
    uint64_t nextSeed = 1;
    int killsWhileWriting = 0;
    for (int kill = 0; kill < 50; ++kill) {
        SCOPED_TRACE("kill " + std::to_string(kill));
        int fds[2];
        ASSERT_EQ(pipe(fds), 0);
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            close(fds[0]);
            childWriteRounds(path, conversation, nextSeed, fds[1]);
        }
        close(fds[1]);
        // Every fifth kill lands at a random moment of the child's start (opening, WAL recovery); the others at a
        // random moment after its first commit, i.e. mostly in the middle of a transaction or a BLOB write.
        std::vector<Committed> reported;
        Committed rec{};
        const bool duringStart = kill % 5 == 0;
        if (!duringStart && read(fds[0], &rec, sizeof(rec)) == ssize_t(sizeof(rec)))
            reported.push_back(rec);
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(0, duringStart ? 30000 : 15000)(rng)));
        ASSERT_EQ(::kill(pid, SIGKILL), 0);
        int status = 0;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        // Killed, not exited with an error of its own.
        ASSERT_TRUE(WIFSIGNALED(status)) << "child exit code " << WEXITSTATUS(status);
        while (read(fds[0], &rec, sizeof(rec)) == ssize_t(sizeof(rec))) reported.push_back(rec);
        close(fds[0]);
        killsWhileWriting += !duringStart && !reported.empty() ? 1 : 0;
        for (const Committed& c : reported) {
            committed.push_back(c);
            nextSeed = c.seed + 1;
        }
        nextSeed += 1000;  // a seed the child may have committed without reporting is never reused

        // The database opens cleanly (no quarantine) and checks out.
        Result<Database> db = Database::open(path, OpenOptions{.recoverCorrupt = false});
        ASSERT_TRUE(db.ok()) << db.error().toString();
        ASSERT_EQ(*db->integrityCheck(), "ok");
        ChatStore chats(*db);
        KvStore kv(*db);
        for (const Committed& c : committed) {
            Result<RoundRecord> round = kv.round(c.roundId);
            ASSERT_TRUE(round.ok()) << "round " << c.roundId << " lost: " << round.error().toString();
            ASSERT_EQ(round->assistantMessageId, int64_t(c.messageIdLow));
            ASSERT_EQ(chats.message(round->assistantMessageId)->text, answerText(c.seed));
            std::vector<KvSnapshotInfo> snaps = *kv.snapshots(c.roundId);
            ASSERT_EQ(snaps.size(), 2u);
            ASSERT_EQ(kv.loadSnapshot(snaps[0].id)->bytes, patternBytes(c.seed, c.size));
            ASSERT_EQ(kv.loadSnapshot(snaps[1].id)->bytes, patternBytes(c.seed + (1ull << 40), c.size));
        }
    }
    EXPECT_GT(committed.size(), 50u);  // the children really wrote
    EXPECT_EQ(killsWhileWriting, 40);  // and 40 kills landed while they were writing
}

}  // namespace
}  // namespace storage
