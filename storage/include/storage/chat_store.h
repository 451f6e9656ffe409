// storage::ChatStore: conversations, the message tree and its branches, settings, the recall log and full-text
// search. It borrows a Database and is used on that Database's thread.
#pragma once

#include "storage/database.h"
#include "storage/records.h"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace storage {

class ChatStore {
public:
    explicit ChatStore(Database& db) : m_db(db) {}
    Database& database() { return m_db; }

    // --- Conversations. Lists are ordered pinned first, then most recently updated.
    // Uses title, modelFingerprint, systemPrompt, settingsJson and pinned of `c`; returns the new id.
    Result<int64_t> createConversation(const Conversation& c);
    Result<Conversation> conversation(int64_t id);
    Result<std::vector<Conversation>> listConversations();  // without the deleted ones
    Result<std::vector<Conversation>> listDeletedConversations();
    Status renameConversation(int64_t id, std::string_view title);
    Status setPinned(int64_t id, bool pinned);
    Status setSystemPrompt(int64_t id, std::string_view prompt);
    Status setModelFingerprint(int64_t id, std::string_view fingerprint);
    Status setConversationSettings(int64_t id, std::string_view settingsJson);
    // Soft delete: the conversation goes to the trash (undo with restoreConversation) until purged.
    Status deleteConversation(int64_t id);
    Status restoreConversation(int64_t id);
    // Removes for good the conversations deleted at or before `deletedBeforeMs`, with their messages, rounds and
    // snapshots. Returns how many were purged.
    Result<int> purgeDeleted(int64_t deletedBeforeMs);

    // --- Messages. appendMessage uses conversationId, parentId, role, text, tokenIds and tokenCount of `m` (a
    // tokenCount of 0 with token ids means tokenIds.size()), makes the new message the active leaf and returns its id.
    Result<int64_t> appendMessage(const Message& m);
    Result<Message> message(int64_t id);
    // Root-to-leaf messages of the active branch.
    Result<std::vector<Message>> activePath(int64_t conversationId);
    // The messages sharing `messageId`'s parent, itself included, oldest first (for "< 2/3 >" branch arrows).
    Result<std::vector<Message>> siblings(int64_t messageId);
    // Makes the branch through `messageId` active: the new leaf is reached from it by always taking the newest
    // child. Returns the new leaf id.
    Result<int64_t> switchBranch(int64_t messageId);

    // --- App-wide settings (key/value text).
    Status setSetting(std::string_view key, std::string_view value);
    Result<std::optional<std::string>> setting(std::string_view key);

    // --- Recall log.
    Result<int64_t> addRecallLog(const RecallLogEntry& entry);
    Result<std::vector<RecallLogEntry>> recallLog(int64_t messageId);

    // --- Full-text search over every message of the conversations not in the trash. `query` is what the user
    // typed: each word must occur (the last one as a prefix); FTS5 operators are treated as plain text.
    Result<std::vector<SearchHit>> search(std::string_view query, const SearchOptions& options = {});

private:
    Status updateConversationField(const char* sql, int64_t id, std::string_view value);
    Result<std::vector<Conversation>> listConversationsWith(const char* sql);
    Result<std::vector<Message>> listMessagesWith(const char* sql, int64_t id);

    Database& m_db;  // borrowed; must outlive the store
};

}  // namespace storage
