// Damaged files give a clear error or are moved aside (never overwritten) for a fresh database; a full disk gives
// DiskFull and leaves the database intact.
#include "storage/chat_store.h"
#include "storage/kv_store.h"
#include "storage_test_util.h"

#include <sqlite3.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace storage {
namespace {

namespace fs = std::filesystem;
using test::makeSnapshot;
using test::openOrDie;
using test::patternBytes;
using test::TempDir;

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

void writeFile(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), std::streamsize(bytes.size()));
}

int pageCount(sqlite3* db) {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &stmt, nullptr);
    const int pages = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    return pages;
}

// A real database with a few pages of messages and a snapshot, closed cleanly (WAL checkpointed).
void makeRealDatabase(const std::string& path) {
    Database db = openOrDie(path);
    ChatStore chats(db);
    KvStore kv(db);
    const int64_t c = *chats.createConversation(Conversation{.title = "real"});
    int64_t parent = 0;
    for (int i = 0; i < 50; ++i) {
        Message m;
        m.conversationId = c;
        m.parentId = parent;
        m.text = std::string(500, char('a' + i % 26));
        parent = *chats.appendMessage(m);
    }
    ASSERT_TRUE(kv.writeRound(RoundRecord{0, c, 0, 0, parent, 0, 10, 0},
                              std::vector{makeSnapshot(0, 0, 1, patternBytes(5, 200000))})
                    .ok());
}

// Opens a damaged file and checks the whole contract: a clear report, the bytes kept aside unchanged, and a fresh,
// working database in its place.
void expectQuarantined(const std::string& path, const std::string& damagedBytes) {
    Result<Database> strict = Database::open(path, OpenOptions{.recoverCorrupt = false});
    ASSERT_FALSE(strict.ok());
    EXPECT_EQ(strict.error().code, ErrorCode::CorruptFile) << strict.error().toString();
    EXPECT_EQ(readFile(path), damagedBytes);  // refusing leaves the file alone

    Result<Database> db = Database::open(path);
    ASSERT_TRUE(db.ok()) << db.error().toString();
    const OpenReport& report = db->openReport();
    EXPECT_TRUE(report.recoveredFromCorruption);
    EXPECT_NE(report.quarantinedPath.find(".corrupt-"), std::string::npos);
    EXPECT_NE(report.message.find(report.quarantinedPath), std::string::npos) << report.message;
    EXPECT_EQ(readFile(report.quarantinedPath), damagedBytes);
    ChatStore chats(*db);
    EXPECT_TRUE(chats.listConversations()->empty());
    EXPECT_TRUE(chats.createConversation(Conversation{.title = "fresh"}).ok());
    EXPECT_EQ(*db->integrityCheck(), "ok");
}

TEST(Corruption, RandomBytesAreNotADatabase) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    const std::vector<uint8_t> noise = patternBytes(99, 64 * 1024);
    const std::string bytes(noise.begin(), noise.end());
    writeFile(path, bytes);
    expectQuarantined(path, bytes);
}

TEST(Corruption, ShortGarbageFileIsNotSilentlyReplaced) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    writeFile(path, "hello");
    expectQuarantined(path, "hello");
}

TEST(Corruption, TruncatedDatabase) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    makeRealDatabase(path);
    const std::string full = readFile(path);
    ASSERT_GT(full.size(), 100000u);
    const std::string truncated = full.substr(0, full.size() / 2);
    writeFile(path, truncated);
    expectQuarantined(path, truncated);
}

TEST(Corruption, DamagedHeader) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    makeRealDatabase(path);
    std::string bytes = readFile(path);
    bytes[16] = 0x03;  // page size 0x03xx: not a power of two
    bytes[17] = 0x01;
    writeFile(path, bytes);
    expectQuarantined(path, bytes);
}

TEST(Corruption, DamagedPagesAreCaught) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    makeRealDatabase(path);
    std::string bytes = readFile(path);
    // Scribble over pages 2..4 (b-tree pages of the schema's tables) but keep the header intact.
    const std::vector<uint8_t> noise = patternBytes(7, 3 * 4096);
    std::copy(noise.begin(), noise.end(), bytes.begin() + 4096);
    writeFile(path, bytes);
    expectQuarantined(path, bytes);
}

TEST(Corruption, QuarantineNeverOverwritesAnEarlierOne) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    writeFile(path, std::string(200, 'x'));
    Result<Database> first = Database::open(path);
    ASSERT_TRUE(first.ok());
    const std::string firstAside = first->openReport().quarantinedPath;
    first = Database::open(dir.file("other.db"));  // close the fresh database before damaging it again
    writeFile(path, std::string(300, 'y'));        // damaged again within the same second
    Result<Database> second = Database::open(path);
    ASSERT_TRUE(second.ok());
    const std::string secondAside = second->openReport().quarantinedPath;
    EXPECT_NE(firstAside, secondAside);
    EXPECT_EQ(readFile(firstAside), std::string(200, 'x'));
    EXPECT_EQ(readFile(secondAside), std::string(300, 'y'));
}

TEST(Corruption, FullDiskGivesDiskFullAndNoDamage) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    Database db = openOrDie(path);
    ChatStore chats(db);
    KvStore kv(db);
    const int64_t c = *chats.createConversation(Conversation{.title = "full"});
    Message m;
    m.conversationId = c;
    m.text = "before the disk filled up";
    const int64_t before = *chats.appendMessage(m);
    ASSERT_TRUE(kv.writeRound(RoundRecord{0, c, 0, 0, before, 0, 5, 0},
                              std::vector{makeSnapshot(0, 0, 1, patternBytes(1, 10000))})
                    .ok());

    // Simulate a full disk: the file may not grow beyond its current size plus two pages.
    ASSERT_TRUE(db.exec("PRAGMA max_page_count = " + std::to_string(pageCount(db.handle()) + 2)).ok());
    Result<int64_t> big = kv.writeRound(RoundRecord{0, c, 1, 0, 0, 5, 5, 0},
                                        std::vector{makeSnapshot(1, 0, 1, patternBytes(2, 1 << 20))});
    ASSERT_FALSE(big.ok());
    EXPECT_EQ(big.error().code, ErrorCode::DiskFull) << big.error().toString();

    // Many small writes until one fails: each fails cleanly too.
    Status last;
    for (int i = 0; i < 200 && last.ok(); ++i) {
        m.text = std::string(2000, 'z');
        Result<int64_t> id = chats.appendMessage(m);
        if (!id)
            last = id.error();
    }
    ASSERT_FALSE(last.ok());
    EXPECT_EQ(last.error().code, ErrorCode::DiskFull);

    EXPECT_EQ(*db.integrityCheck(), "ok");
    EXPECT_EQ(chats.message(before)->text, "before the disk filled up");
    EXPECT_EQ(kv.rounds(c)->size(), 1u);  // the failed round left nothing behind
    EXPECT_EQ(*kv.totalKvBytes(), 10000);

    // Space again: writing works, and the data survives a reopen.
    ASSERT_TRUE(db.exec("PRAGMA max_page_count = 1073741823").ok());
    ASSERT_TRUE(
        kv.writeRound(RoundRecord{0, c, 1, 0, 0, 5, 5, 0}, std::vector{makeSnapshot(1, 0, 1, patternBytes(2, 1 << 20))})
            .ok());
    db = openOrDie(path);
    ChatStore reopened(db);
    EXPECT_EQ(reopened.message(before)->text, "before the disk filled up");
    EXPECT_EQ(*KvStore(db).totalKvBytes(), 10000 + (1 << 20));
    EXPECT_EQ(*db.integrityCheck(), "ok");
}

}  // namespace
}  // namespace storage
