// Plain value types read from and written to the database. Times are milliseconds since the Unix epoch (UTC); ids are
// SQLite rowids (0 = none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace storage {

// Stored on disk (messages.role): values are fixed, never change or reuse one.
enum class Role : int {
    System = 0,
    User = 1,
    Assistant = 2,
};

const char* roleName(Role role);                          // "system", "user", "assistant" (OpenAI names)
std::optional<Role> roleFromName(std::string_view name);  // the inverse; nullopt for anything else

struct Conversation {
    int64_t id = 0;
    std::string title;
    int64_t createdAtMs = 0;
    int64_t updatedAtMs = 0;  // bumped by every new message, rename, pin and settings change
    bool pinned = false;
    int64_t deletedAtMs = 0;  // 0 = not deleted; otherwise in the trash until purged
    std::string modelFingerprint;
    std::string systemPrompt;
    std::string settingsJson = "{}";  // opaque to storage (sampler settings etc. as the app defines them)
    int64_t activeLeafId = 0;         // the last message of the branch the user sees
};

// Messages form a tree per conversation: regenerating an answer adds a sibling assistant message (same parent),
// editing a user message adds a sibling user message. The conversation's active leaf picks one path.
struct Message {
    int64_t id = 0;
    int64_t conversationId = 0;
    int64_t parentId = 0;  // 0 = first message of the conversation
    Role role = Role::User;
    std::string text;               // UTF-8, may contain NUL bytes
    std::vector<int32_t> tokenIds;  // stored as int32 little-endian; may be empty when not known
    int tokenCount = 0;
    int64_t createdAtMs = 0;
};

// One round (a user message and its answer) as the engine placed it in the KV cache.
struct RoundRecord {
    int64_t id = 0;
    int64_t conversationId = 0;
    int roundIndex = 0;  // position of the round on its branch, from 0
    int64_t userMessageId = 0;
    int64_t assistantMessageId = 0;
    int firstPosition = 0;  // KV position of the round's first token
    int tokenCount = 0;
    int64_t createdAtMs = 0;
};

// A round's KV for a layer range, with everything needed to decide whether it may be restored. Mirrors
// inference::RoundKvSnapshot (the app converts) plus templateHash; storage never interprets `bytes`.
struct KvSnapshotRecord {
    int round = 0;
    int firstLayer = 0;
    int layerCount = 0;
    int tokenCount = 0;
    std::string modelFingerprint;
    std::string dtype;           // "f32" or "f16"
    std::string templateHash;    // chat template + tokenizer hash: a different one means different tokens
    std::vector<uint8_t> bytes;  // layout owned by the engine (kv_cache.h)
};

// A stored snapshot without its bytes (listing never reads the BLOB).
struct KvSnapshotInfo {
    int64_t id = 0;
    int64_t roundId = 0;
    int firstLayer = 0;
    int layerCount = 0;
    int tokenCount = 0;
    std::string dtype;
    std::string modelFingerprint;
    std::string templateHash;
    int64_t byteSize = 0;
    int64_t createdAtMs = 0;
};

struct ConversationKvUsage {
    int64_t conversationId = 0;
    int64_t bytes = 0;
    int snapshotCount = 0;
};

struct EvictionReport {
    int snapshotsEvicted = 0;
    int64_t bytesFreed = 0;
};

struct RecalledRound {
    int roundIndex = 0;
    double score = 0.0;  // the relevance score Round Attention gave this round
};

// Stored on disk (recall_log.kv_mode): values are fixed, never change or reuse one.
enum class RecallKvMode : int {
    FullKv = 0,          // every past round attended
    RoundAttention = 1,  // only the recalled rounds above the watershed layer
};

// For one answer: which rounds were recalled into VRAM and what that cost and saved.
struct RecallLogEntry {
    int64_t id = 0;
    int64_t messageId = 0;  // the assistant message
    std::vector<RecalledRound> rounds;
    int64_t vramKvBytes = 0;  // KV bytes resident on the GPU while answering
    int64_t fullKvBytes = 0;  // what the whole conversation's KV would have taken
    int64_t copiedBytes = 0;  // bytes copied host -> device for the recalled rounds
    double selectMs = 0.0;    // time to score and pick rounds
    double copyMs = 0.0;      // time to copy them
    int64_t createdAtMs = 0;
    std::optional<RecallKvMode> mode;  // nullopt: logged by schema v2, which did not record it

    int64_t savedBytes() const { return fullKvBytes - vramKvBytes; }
};

struct SearchOptions {
    int limit = 50;
    // snippet() wraps each match in these. The defaults are control characters that never occur in chat text, so
    // the GUI can HTML-escape the snippet first and then turn them into <b></b>.
    std::string highlightOpen = "\x02";
    std::string highlightClose = "\x03";
    int snippetTokens = 16;  // words around the match, 1..64
};

struct SearchHit {
    int64_t conversationId = 0;
    int64_t messageId = 0;
    std::string conversationTitle;
    std::string snippet;
    double rank = 0.0;  // FTS5 bm25 rank: lower is better; hits come sorted best first
};

}  // namespace storage
