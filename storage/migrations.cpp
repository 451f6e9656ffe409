#include "migrations.h"

namespace storage {
namespace {

// v1: the core tables. Times are ms since the Unix epoch (UTC). Foreign keys cascade so that purging a conversation
// removes its messages, rounds and snapshots. The snapshot BLOB is the last column, so reading a row's metadata never
// touches its overflow pages.
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    model_fingerprint TEXT NOT NULL DEFAULT '',
    system_prompt TEXT NOT NULL DEFAULT '',
    settings_json TEXT NOT NULL DEFAULT '{}',
    active_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL
);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    role INTEGER NOT NULL,
    text TEXT NOT NULL,
    token_ids BLOB,
    token_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id);
CREATE INDEX messages_parent_fk ON messages(parent_id);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    round_index INTEGER NOT NULL,
    user_message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    assistant_message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
    first_position INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX rounds_by_conversation ON rounds(conversation_id, round_index);
CREATE INDEX rounds_by_user_message ON rounds(user_message_id);
CREATE INDEX rounds_by_assistant_message ON rounds(assistant_message_id);
CREATE TABLE kv_snapshots (
    id INTEGER PRIMARY KEY,
    round_id INTEGER NOT NULL REFERENCES rounds(id) ON DELETE CASCADE,
    first_layer INTEGER NOT NULL,
    layer_count INTEGER NOT NULL,
    token_count INTEGER NOT NULL,
    dtype TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    template_hash TEXT NOT NULL,
    byte_size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (round_id, first_layer, layer_count)
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
)sql";

// v2: pinning and the trash, full-text search (an external-content FTS5 index kept in sync by triggers and built
// from the existing messages), the recall log, and an index for evicting the oldest snapshots first.
constexpr char kSchemaV2[] = R"sql(
ALTER TABLE conversations ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN deleted_at INTEGER;
CREATE INDEX conversations_by_order ON conversations(deleted_at, pinned, updated_at);
CREATE VIRTUAL TABLE messages_fts USING fts5(text, content='messages', content_rowid='id');
CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER messages_fts_update AFTER UPDATE OF text ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, text) VALUES ('delete', old.id, old.text);
    INSERT INTO messages_fts(rowid, text) VALUES (new.id, new.text);
END;
INSERT INTO messages_fts(messages_fts) VALUES ('rebuild');
CREATE TABLE recall_log (
    id INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    vram_kv_bytes INTEGER NOT NULL,
    full_kv_bytes INTEGER NOT NULL,
    copied_bytes INTEGER NOT NULL,
    select_ms REAL NOT NULL,
    copy_ms REAL NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX recall_log_by_message ON recall_log(message_id);
CREATE TABLE recall_rounds (
    recall_id INTEGER NOT NULL REFERENCES recall_log(id) ON DELETE CASCADE,
    round_index INTEGER NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (recall_id, round_index)
);
CREATE INDEX kv_snapshots_by_age ON kv_snapshots(created_at, id);
)sql";

// v3: which KV mode produced each answer (RecallKvMode values), so a reopened answer shows the badge it had. NULL for
// answers logged before: the app then infers the mode from the byte counts.
constexpr char kSchemaV3[] = R"sql(
ALTER TABLE recall_log ADD COLUMN kv_mode INTEGER;
)sql";

constexpr Migration kMigrations[] = {
    {1, kSchemaV1},
    {2, kSchemaV2},
    {3, kSchemaV3},
};

}  // namespace

std::span<const Migration> migrations() {
    return kMigrations;
}

}  // namespace storage
