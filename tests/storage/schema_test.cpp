// Schema and migrations: a fresh database is at the latest version in WAL mode with foreign keys on, and a database
// built at every earlier version (with data) migrates and keeps its data.
#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/kv_store.h"
#include "storage_test_util.h"

#include <sqlite3.h>

#include <string>

namespace storage {
namespace {

using test::openOrDie;
using test::TempDir;

std::string queryOne(sqlite3* db, const std::string& sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK) << sql;
    std::string out;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != nullptr)
        out = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return out;
}

TEST(Schema, FreshDatabaseIsLatestWalWithForeignKeys) {
    TempDir dir;
    Database db = openOrDie(dir.file("chat.db"));
    EXPECT_GE(latestSchemaVersion(), 2);
    EXPECT_EQ(db.schemaVersion(), latestSchemaVersion());
    EXPECT_EQ(queryOne(db.handle(), "PRAGMA user_version"), std::to_string(latestSchemaVersion()));
    EXPECT_EQ(queryOne(db.handle(), "PRAGMA journal_mode"), "wal");
    EXPECT_EQ(queryOne(db.handle(), "PRAGMA foreign_keys"), "1");
    EXPECT_FALSE(db.openReport().recoveredFromCorruption);

    // Foreign keys are enforced: a message for a conversation that does not exist is refused.
    ChatStore chats(db);
    Message m;
    m.conversationId = 999;
    m.text = "orphan";
    EXPECT_FALSE(chats.appendMessage(m).ok());
}

// Data written with the v1 tables only (the subset every later version keeps).
void writeV1Data(sqlite3* db) {
    const char* sql = R"sql(
        INSERT INTO conversations (id, title, created_at, updated_at, model_fingerprint, system_prompt)
            VALUES (1, 'Old ''quoted'' chat', 1000, 2000, 'fp-old', 'Be brief.');
        INSERT INTO messages (id, conversation_id, parent_id, role, text, token_count, created_at)
            VALUES (1, 1, NULL, 1, 'hello ancient world', 3, 1000),
                   (2, 1, 1, 2, 'greetings from the past', 4, 1001);
        UPDATE conversations SET active_leaf_id = 2 WHERE id = 1;
        INSERT INTO rounds (id, conversation_id, round_index, user_message_id, assistant_message_id, first_position,
                            token_count, created_at) VALUES (1, 1, 0, 1, 2, 0, 7, 1002);
        INSERT INTO kv_snapshots (round_id, first_layer, layer_count, token_count, dtype, model_fingerprint,
                                  template_hash, byte_size, created_at, data)
            VALUES (1, 0, 2, 7, 'f16', 'fp-old', 'th', 4, 1003, x'01020304');
        INSERT INTO settings (key, value) VALUES ('theme', 'dark');
    )sql";
    ASSERT_EQ(sqlite3_exec(db, sql, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
}

TEST(Schema, MigratesFromEveryEarlierVersionKeepingData) {
    for (int version = 1; version < latestSchemaVersion(); ++version) {
        SCOPED_TRACE("from version " + std::to_string(version));
        TempDir dir;
        const std::string path = dir.file("old.db");
        {
            OpenOptions old;
            old.schemaVersion = version;
            Database db = openOrDie(path, old);
            ASSERT_EQ(db.schemaVersion(), version);
            ASSERT_EQ(queryOne(db.handle(), "PRAGMA user_version"), std::to_string(version));
            writeV1Data(db.handle());
        }
        Database db = openOrDie(path);
        EXPECT_EQ(db.schemaVersion(), latestSchemaVersion());
        EXPECT_EQ(*db.integrityCheck(), "ok");

        ChatStore chats(db);
        Result<std::vector<Conversation>> list = chats.listConversations();
        ASSERT_TRUE(list.ok()) << list.error().toString();
        ASSERT_EQ(list->size(), 1u);
        EXPECT_EQ((*list)[0].title, "Old 'quoted' chat");
        EXPECT_EQ((*list)[0].systemPrompt, "Be brief.");
        EXPECT_FALSE((*list)[0].pinned);
        Result<std::vector<Message>> path2 = chats.activePath(1);
        ASSERT_TRUE(path2.ok());
        ASSERT_EQ(path2->size(), 2u);
        EXPECT_EQ((*path2)[1].text, "greetings from the past");
        EXPECT_EQ(*chats.setting("theme"), std::optional<std::string>("dark"));

        // Messages written before the search index existed are found.
        Result<std::vector<SearchHit>> hits = chats.search("ancient");
        ASSERT_TRUE(hits.ok()) << hits.error().toString();
        ASSERT_EQ(hits->size(), 1u);
        EXPECT_EQ((*hits)[0].messageId, 1);

        KvStore kv(db);
        Result<KvSnapshotRecord> snap = kv.loadSnapshot(1);
        ASSERT_TRUE(snap.ok()) << snap.error().toString();
        EXPECT_EQ(snap->bytes, (std::vector<uint8_t>{1, 2, 3, 4}));
        EXPECT_EQ(snap->modelFingerprint, "fp-old");

        // Features of the newer versions work on the migrated data.
        EXPECT_TRUE(chats.setPinned(1, true).ok());
        EXPECT_TRUE(chats.addRecallLog(RecallLogEntry{0, 2, {{0, 0.5}}, 10, 20, 5, 0.1, 0.2, 0}).ok());
    }
}

TEST(Schema, NewerVersionIsRefusedAndLeftAlone) {
    TempDir dir;
    const std::string path = dir.file("future.db");
    {
        Database db = openOrDie(path);
        ASSERT_TRUE(db.exec("PRAGMA user_version = " + std::to_string(latestSchemaVersion() + 1)).ok());
    }
    Result<Database> db = Database::open(path);
    ASSERT_FALSE(db.ok());
    EXPECT_EQ(db.error().code, ErrorCode::Unsupported);
    EXPECT_TRUE(std::filesystem::exists(path));
}

TEST(Schema, ReopenKeepsVersionAndDoesNotMigrateAgain) {
    TempDir dir;
    const std::string path = dir.file("chat.db");
    int64_t id = 0;
    {
        Database db = openOrDie(path);
        ChatStore chats(db);
        id = *chats.createConversation(Conversation{.title = "kept"});
    }
    Database db = openOrDie(path);
    ChatStore chats(db);
    EXPECT_EQ(chats.conversation(id)->title, "kept");
    EXPECT_EQ(db.schemaVersion(), latestSchemaVersion());
}

TEST(Schema, UnopenablePathGivesAnError) {
    Result<Database> db = Database::open("/nonexistent-dir/sub/chat.db");
    ASSERT_FALSE(db.ok());
    EXPECT_NE(db.error().detail.find("/nonexistent-dir/sub/chat.db"), std::string::npos) << db.error().detail;
}

}  // namespace
}  // namespace storage
