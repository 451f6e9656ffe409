// Export of a conversation's active branch as Markdown or as JSON in the OpenAI chat format, and import of that JSON
// as a new conversation.
//
// JSON shape: {"title": "...", "messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...],
//              "roundchat": {"format": 1, "model_fingerprint": "...", "settings": {...}, "created_at_ms": ...}}
// The system prompt is the leading system message. Import accepts any OpenAI-style file with "messages" (content as
// a string, or as an array of {"type": "text", "text": ...} parts); "title" and "roundchat" are optional.
#pragma once

#include "storage/chat_store.h"

#include <cstdint>
#include <string>
#include <string_view>

namespace storage {

Result<std::string> exportMarkdown(ChatStore& store, int64_t conversationId);
Result<std::string> exportJson(ChatStore& store, int64_t conversationId);
// Creates a new conversation (one transaction) and returns its id. Malformed input gives InvalidArgument with a
// detail that names the problem ("messages[3].role must be system, user or assistant").
Result<int64_t> importJson(ChatStore& store, std::string_view json);

}  // namespace storage
