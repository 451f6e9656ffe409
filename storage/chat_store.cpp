#include "storage/chat_store.h"

#include "statement.h"

#include <algorithm>
#include <cctype>

namespace storage {
namespace {

#define RC_CONVERSATION_COLUMNS                                                                                       \
    "SELECT id, title, created_at, updated_at, pinned, deleted_at, model_fingerprint, system_prompt, settings_json, " \
    "active_leaf_id FROM conversations "
#define RC_MESSAGE_COLUMNS \
    "SELECT id, conversation_id, parent_id, role, text, token_ids, token_count, created_at FROM messages "

constexpr char kInsertConversation[] =
    "INSERT INTO conversations (title, created_at, updated_at, pinned, model_fingerprint, system_prompt, "
    "settings_json) VALUES (?1, ?2, ?2, ?3, ?4, ?5, ?6)";
constexpr char kSelectConversation[] = RC_CONVERSATION_COLUMNS "WHERE id = ?1";
constexpr char kListConversations[] =
    RC_CONVERSATION_COLUMNS "WHERE deleted_at IS NULL ORDER BY pinned DESC, updated_at DESC, id DESC";
constexpr char kListDeletedConversations[] =
    RC_CONVERSATION_COLUMNS "WHERE deleted_at IS NOT NULL ORDER BY deleted_at DESC, id DESC";
constexpr char kRenameConversation[] = "UPDATE conversations SET title = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSetSystemPrompt[] = "UPDATE conversations SET system_prompt = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSetModelFingerprint[] =
    "UPDATE conversations SET model_fingerprint = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSetSettings[] = "UPDATE conversations SET settings_json = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSetPinned[] = "UPDATE conversations SET pinned = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSoftDelete[] = "UPDATE conversations SET deleted_at = ?2 WHERE id = ?1";
constexpr char kRestore[] = "UPDATE conversations SET deleted_at = NULL WHERE id = ?1";
constexpr char kPurge[] = "DELETE FROM conversations WHERE deleted_at IS NOT NULL AND deleted_at <= ?1";
constexpr char kTouchConversation[] = "UPDATE conversations SET active_leaf_id = ?2, updated_at = ?3 WHERE id = ?1";
constexpr char kSetActiveLeaf[] = "UPDATE conversations SET active_leaf_id = ?2 WHERE id = ?1";

constexpr char kInsertMessage[] =
    "INSERT INTO messages (conversation_id, parent_id, role, text, token_ids, token_count, created_at) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
constexpr char kSelectMessage[] = RC_MESSAGE_COLUMNS "WHERE id = ?1";
// Walks from the active leaf up to the root; depth orders the path root first.
constexpr char kActivePath[] =
    "WITH RECURSIVE path(id, depth) AS ("
    "  SELECT active_leaf_id, 0 FROM conversations WHERE id = ?1 AND active_leaf_id IS NOT NULL"
    "  UNION ALL SELECT m.parent_id, p.depth + 1 FROM messages m JOIN path p ON m.id = p.id"
    "  WHERE m.parent_id IS NOT NULL) "
    "SELECT m.id, m.conversation_id, m.parent_id, m.role, m.text, m.token_ids, m.token_count, m.created_at "
    "FROM path p JOIN messages m ON m.id = p.id ORDER BY p.depth DESC";
constexpr char kSiblings[] = RC_MESSAGE_COLUMNS
    "WHERE conversation_id = (SELECT conversation_id FROM messages WHERE id = ?1) "
    "AND parent_id IS (SELECT parent_id FROM messages WHERE id = ?1) ORDER BY id";
constexpr char kNewestChild[] = "SELECT id FROM messages WHERE parent_id = ?1 ORDER BY id DESC LIMIT 1";

constexpr char kUpsertSetting[] =
    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value";
constexpr char kSelectSetting[] = "SELECT value FROM settings WHERE key = ?1";

constexpr char kInsertRecall[] =
    "INSERT INTO recall_log (message_id, vram_kv_bytes, full_kv_bytes, copied_bytes, select_ms, copy_ms, created_at, "
    "kv_mode) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
constexpr char kInsertRecallRound[] = "INSERT INTO recall_rounds (recall_id, round_index, score) VALUES (?1, ?2, ?3)";
constexpr char kSelectRecall[] =
    "SELECT id, message_id, vram_kv_bytes, full_kv_bytes, copied_bytes, select_ms, copy_ms, created_at, kv_mode "
    "FROM recall_log WHERE message_id = ?1 ORDER BY id";
constexpr char kSelectRecallRounds[] =
    "SELECT round_index, score FROM recall_rounds WHERE recall_id = ?1 ORDER BY round_index";

constexpr char kSearch[] =
    "SELECT m.conversation_id, m.id, c.title, snippet(messages_fts, 0, ?2, ?3, '\xE2\x80\xA6', ?4), f.rank "
    "FROM messages_fts f JOIN messages m ON m.id = f.rowid JOIN conversations c ON c.id = m.conversation_id "
    "WHERE messages_fts MATCH ?1 AND c.deleted_at IS NULL ORDER BY f.rank LIMIT ?5";

Conversation readConversation(const Statement& s) {
    Conversation c;
    c.id = s.getInt(0);
    c.title = s.getText(1);
    c.createdAtMs = s.getInt(2);
    c.updatedAtMs = s.getInt(3);
    c.pinned = s.getInt(4) != 0;
    c.deletedAtMs = s.getInt(5);
    c.modelFingerprint = s.getText(6);
    c.systemPrompt = s.getText(7);
    c.settingsJson = s.getText(8);
    c.activeLeafId = s.getInt(9);
    return c;
}

// Token ids on disk: int32 little-endian, independent of the host's byte order.
std::vector<uint8_t> encodeTokens(const std::vector<int32_t>& ids) {
    std::vector<uint8_t> out(ids.size() * 4);
    for (size_t i = 0; i < ids.size(); ++i) {
        const auto v = static_cast<uint32_t>(ids[i]);
        for (int b = 0; b < 4; ++b) out[i * 4 + b] = uint8_t(v >> (8 * b));
    }
    return out;
}

std::vector<int32_t> decodeTokens(const std::vector<uint8_t>& bytes) {
    std::vector<int32_t> ids(bytes.size() / 4);
    for (size_t i = 0; i < ids.size(); ++i) {
        uint32_t v = 0;
        for (int b = 0; b < 4; ++b) v |= uint32_t(bytes[i * 4 + b]) << (8 * b);
        ids[i] = static_cast<int32_t>(v);
    }
    return ids;
}

Message readMessage(const Statement& s) {
    Message m;
    m.id = s.getInt(0);
    m.conversationId = s.getInt(1);
    m.parentId = s.getInt(2);
    m.role = static_cast<Role>(s.getInt(3));
    m.text = s.getText(4);
    m.tokenIds = decodeTokens(s.getBlob(5));
    m.tokenCount = int(s.getInt(6));
    m.createdAtMs = s.getInt(7);
    return m;
}

Status expectChanged(Database& db, const char* what, int64_t id) {
    if (sqlite3_changes(db.handle()) == 0)
        return makeError(ErrorCode::InvalidArgument, std::string("no ") + what + " with id " + std::to_string(id));
    return {};
}

// The user's words as an FTS5 query: each one a quoted string (so `"`, `-`, `:`, AND, NEAR are plain text), all
// required, the last one also matching as a prefix so that results appear while typing.
std::string ftsQuery(std::string_view text) {
    std::string out;
    size_t i = 0;
    while (i < text.size()) {
        while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        const size_t start = i;
        while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
        if (start == i)
            break;
        if (!out.empty())
            out += ' ';
        out += '"';
        for (char ch : text.substr(start, i - start)) {
            if (ch == '"')
                out += '"';
            if (ch != '\0')
                out += ch;
        }
        out += '"';
    }
    if (!out.empty())
        out += '*';
    return out;
}

}  // namespace

const char* roleName(Role role) {
    switch (role) {
        case Role::System:
            return "system";
        case Role::User:
            return "user";
        case Role::Assistant:
            return "assistant";
    }
    return "user";
}

std::optional<Role> roleFromName(std::string_view name) {
    for (Role r : {Role::System, Role::User, Role::Assistant}) {
        if (name == roleName(r))
            return r;
    }
    return std::nullopt;
}

// ---- Conversations

Result<int64_t> ChatStore::createConversation(const Conversation& c) {
    Result<Statement> s = m_db.prepare(kInsertConversation);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(c.title, Database::nowMs(), c.pinned, c.modelFingerprint, c.systemPrompt, c.settingsJson).run());
    return int64_t(sqlite3_last_insert_rowid(m_db.handle()));
}

Result<Conversation> ChatStore::conversation(int64_t id) {
    Result<Statement> s = m_db.prepare(kSelectConversation);
    STORAGE_CHECK(s);
    Result<bool> row = s->bind(id).step();
    STORAGE_CHECK(row);
    if (!*row)
        return makeError(ErrorCode::InvalidArgument, "no conversation with id " + std::to_string(id));
    return readConversation(*s);
}

Result<std::vector<Conversation>> ChatStore::listConversationsWith(const char* sql) {
    Result<Statement> s = m_db.prepare(sql);
    STORAGE_CHECK(s);
    std::vector<Conversation> out;
    for (;;) {
        Result<bool> row = s->step();
        STORAGE_CHECK(row);
        if (!*row)
            return out;
        out.push_back(readConversation(*s));
    }
}

Result<std::vector<Conversation>> ChatStore::listConversations() {
    return listConversationsWith(kListConversations);
}

Result<std::vector<Conversation>> ChatStore::listDeletedConversations() {
    return listConversationsWith(kListDeletedConversations);
}

Status ChatStore::updateConversationField(const char* sql, int64_t id, std::string_view value) {
    Result<Statement> s = m_db.prepare(sql);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(id, value, Database::nowMs()).run());
    return expectChanged(m_db, "conversation", id);
}

Status ChatStore::renameConversation(int64_t id, std::string_view title) {
    return updateConversationField(kRenameConversation, id, title);
}
Status ChatStore::setSystemPrompt(int64_t id, std::string_view prompt) {
    return updateConversationField(kSetSystemPrompt, id, prompt);
}
Status ChatStore::setModelFingerprint(int64_t id, std::string_view fingerprint) {
    return updateConversationField(kSetModelFingerprint, id, fingerprint);
}
Status ChatStore::setConversationSettings(int64_t id, std::string_view settingsJson) {
    return updateConversationField(kSetSettings, id, settingsJson);
}

Status ChatStore::setPinned(int64_t id, bool pinned) {
    Result<Statement> s = m_db.prepare(kSetPinned);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(id, pinned, Database::nowMs()).run());
    return expectChanged(m_db, "conversation", id);
}

Status ChatStore::deleteConversation(int64_t id) {
    Result<Statement> s = m_db.prepare(kSoftDelete);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(id, Database::nowMs()).run());
    return expectChanged(m_db, "conversation", id);
}

Status ChatStore::restoreConversation(int64_t id) {
    Result<Statement> s = m_db.prepare(kRestore);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(id).run());
    return expectChanged(m_db, "conversation", id);
}

Result<int> ChatStore::purgeDeleted(int64_t deletedBeforeMs) {
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    Result<Statement> s = m_db.prepare(kPurge);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(deletedBeforeMs).run());
    const int purged = sqlite3_changes(m_db.handle());
    RC_TRY(tx->commit());
    return purged;
}

// ---- Messages

Result<int64_t> ChatStore::appendMessage(const Message& m) {
    if (m.parentId != 0) {
        Result<Message> parent = message(m.parentId);
        STORAGE_CHECK(parent);
        if (parent->conversationId != m.conversationId)
            return makeError(ErrorCode::InvalidArgument,
                             "parent message " + std::to_string(m.parentId) + " belongs to another conversation");
    }
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    const int64_t now = Database::nowMs();
    const int tokenCount = m.tokenCount != 0 ? m.tokenCount : int(m.tokenIds.size());
    const std::vector<uint8_t> tokens = encodeTokens(m.tokenIds);
    {
        Result<Statement> s = m_db.prepare(kInsertMessage);
        STORAGE_CHECK(s);
        RC_TRY(
            s->bind(m.conversationId, idOrNull(m.parentId), m.role, m.text, BlobView{tokens}, tokenCount, now).run());
    }
    const int64_t id = sqlite3_last_insert_rowid(m_db.handle());
    Result<Statement> touch = m_db.prepare(kTouchConversation);
    STORAGE_CHECK(touch);
    RC_TRY(touch->bind(m.conversationId, id, now).run());
    RC_TRY(expectChanged(m_db, "conversation", m.conversationId));
    RC_TRY(tx->commit());
    return id;
}

Result<Message> ChatStore::message(int64_t id) {
    Result<Statement> s = m_db.prepare(kSelectMessage);
    STORAGE_CHECK(s);
    Result<bool> row = s->bind(id).step();
    STORAGE_CHECK(row);
    if (!*row)
        return makeError(ErrorCode::InvalidArgument, "no message with id " + std::to_string(id));
    return readMessage(*s);
}

Result<std::vector<Message>> ChatStore::listMessagesWith(const char* sql, int64_t id) {
    Result<Statement> s = m_db.prepare(sql);
    STORAGE_CHECK(s);
    s->bind(id);
    std::vector<Message> out;
    for (;;) {
        Result<bool> row = s->step();
        STORAGE_CHECK(row);
        if (!*row)
            return out;
        out.push_back(readMessage(*s));
    }
}

Result<std::vector<Message>> ChatStore::activePath(int64_t conversationId) {
    return listMessagesWith(kActivePath, conversationId);
}

Result<std::vector<Message>> ChatStore::siblings(int64_t messageId) {
    return listMessagesWith(kSiblings, messageId);
}

Result<int64_t> ChatStore::switchBranch(int64_t messageId) {
    Result<Message> start = message(messageId);
    STORAGE_CHECK(start);
    int64_t leaf = messageId;
    for (;;) {
        Result<Statement> s = m_db.prepare(kNewestChild);
        STORAGE_CHECK(s);
        Result<bool> row = s->bind(leaf).step();
        STORAGE_CHECK(row);
        if (!*row)
            break;
        leaf = s->getInt(0);
    }
    Result<Statement> s = m_db.prepare(kSetActiveLeaf);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(start->conversationId, leaf).run());
    return leaf;
}

// ---- Settings

Status ChatStore::setSetting(std::string_view key, std::string_view value) {
    Result<Statement> s = m_db.prepare(kUpsertSetting);
    STORAGE_CHECK(s);
    return s->bind(key, value).run();
}

Result<std::optional<std::string>> ChatStore::setting(std::string_view key) {
    Result<Statement> s = m_db.prepare(kSelectSetting);
    STORAGE_CHECK(s);
    Result<bool> row = s->bind(key).step();
    STORAGE_CHECK(row);
    if (!*row)
        return std::optional<std::string>();
    return std::optional<std::string>(s->getText(0));
}

// ---- Recall log

Result<int64_t> ChatStore::addRecallLog(const RecallLogEntry& e) {
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    {
        Result<Statement> s = m_db.prepare(kInsertRecall);
        STORAGE_CHECK(s);
        RC_TRY(
            s->bind(e.messageId, e.vramKvBytes, e.fullKvBytes, e.copiedBytes, e.selectMs, e.copyMs, Database::nowMs(),
                    e.mode ? std::optional<int64_t>(int64_t(*e.mode)) : std::nullopt)
                .run());
    }
    const int64_t id = sqlite3_last_insert_rowid(m_db.handle());
    for (const RecalledRound& r : e.rounds) {
        Result<Statement> s = m_db.prepare(kInsertRecallRound);
        STORAGE_CHECK(s);
        RC_TRY(s->bind(id, r.roundIndex, r.score).run());
    }
    RC_TRY(tx->commit());
    return id;
}

Result<std::vector<RecallLogEntry>> ChatStore::recallLog(int64_t messageId) {
    std::vector<RecallLogEntry> out;
    {
        Result<Statement> s = m_db.prepare(kSelectRecall);
        STORAGE_CHECK(s);
        s->bind(messageId);
        for (;;) {
            Result<bool> row = s->step();
            STORAGE_CHECK(row);
            if (!*row)
                break;
            RecallLogEntry e;
            e.id = s->getInt(0);
            e.messageId = s->getInt(1);
            e.vramKvBytes = s->getInt(2);
            e.fullKvBytes = s->getInt(3);
            e.copiedBytes = s->getInt(4);
            e.selectMs = s->getDouble(5);
            e.copyMs = s->getDouble(6);
            e.createdAtMs = s->getInt(7);
            if (!s->isNull(8))
                e.mode = RecallKvMode(s->getInt(8));
            out.push_back(std::move(e));
        }
    }
    for (RecallLogEntry& e : out) {
        Result<Statement> s = m_db.prepare(kSelectRecallRounds);
        STORAGE_CHECK(s);
        s->bind(e.id);
        for (;;) {
            Result<bool> row = s->step();
            STORAGE_CHECK(row);
            if (!*row)
                break;
            e.rounds.push_back(RecalledRound{int(s->getInt(0)), s->getDouble(1)});
        }
    }
    return out;
}

// ---- Search

Result<std::vector<SearchHit>> ChatStore::search(std::string_view query, const SearchOptions& options) {
    const std::string match = ftsQuery(query);
    std::vector<SearchHit> out;
    if (match.empty() || options.limit <= 0)
        return out;
    Result<Statement> s = m_db.prepare(kSearch);
    STORAGE_CHECK(s);
    s->bind(match, options.highlightOpen, options.highlightClose, std::clamp(options.snippetTokens, 1, 64),
            options.limit);
    for (;;) {
        Result<bool> row = s->step();
        STORAGE_CHECK(row);
        if (!*row)
            return out;
        out.push_back(SearchHit{s->getInt(0), s->getInt(1), s->getText(2), s->getText(3), s->getDouble(4)});
    }
}

}  // namespace storage
