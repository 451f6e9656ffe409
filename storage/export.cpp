#include "storage/export.h"

#include "statement.h"

#include <nlohmann/json.hpp>

namespace storage {
namespace {

using nlohmann::json;

constexpr int kExportFormat = 1;  // the "roundchat.format" this code writes

// Invalid UTF-8 cannot be written as JSON; replace it (U+FFFD) rather than fail the export.
std::string dumpJson(const json& j) {
    return j.dump(2, ' ', false, json::error_handler_t::replace);
}

Result<std::string> contentText(const json& content, const std::string& where) {
    if (content.is_string())
        return content.get<std::string>();
    if (!content.is_array())
        return makeError(ErrorCode::InvalidArgument, where + ".content must be a string or an array of parts");
    std::string text;
    for (const json& part : content) {
        if (!part.is_object() || !part.contains("text") || !part["text"].is_string())
            return makeError(ErrorCode::InvalidArgument, where + ".content parts must be {\"type\": \"text\", ...}");
        text += part["text"].get<std::string>();
    }
    return text;
}

}  // namespace

Result<std::string> exportMarkdown(ChatStore& store, int64_t conversationId) {
    Result<Conversation> c = store.conversation(conversationId);
    STORAGE_CHECK(c);
    Result<std::vector<Message>> path = store.activePath(conversationId);
    STORAGE_CHECK(path);
    std::string md = "# " + c->title + "\n\n";
    if (!c->modelFingerprint.empty())
        md += "*Model: " + c->modelFingerprint + "*\n\n";
    auto section = [&md](const char* heading, const std::string& text) {
        md += std::string("## ") + heading + "\n\n" + text + "\n\n";
    };
    if (!c->systemPrompt.empty())
        section("System", c->systemPrompt);
    for (const Message& m : *path)
        section(m.role == Role::User ? "User" : m.role == Role::Assistant ? "Assistant" : "System", m.text);
    return md;
}

Result<std::string> exportJson(ChatStore& store, int64_t conversationId) {
    Result<Conversation> c = store.conversation(conversationId);
    STORAGE_CHECK(c);
    Result<std::vector<Message>> path = store.activePath(conversationId);
    STORAGE_CHECK(path);
    json messages = json::array();
    if (!c->systemPrompt.empty())
        messages.push_back({{"role", "system"}, {"content", c->systemPrompt}});
    for (const Message& m : *path) messages.push_back({{"role", roleName(m.role)}, {"content", m.text}});
    json settings = json::parse(c->settingsJson, nullptr, false);
    if (settings.is_discarded())
        settings = c->settingsJson;  // not JSON: keep the text as it is
    const json doc = {{"title", c->title},
                      {"messages", std::move(messages)},
                      {"roundchat",
                       {{"format", kExportFormat},
                        {"model_fingerprint", c->modelFingerprint},
                        {"settings", std::move(settings)},
                        {"created_at_ms", c->createdAtMs},
                        {"updated_at_ms", c->updatedAtMs}}}};
    return dumpJson(doc);
}

Result<int64_t> importJson(ChatStore& store, std::string_view text) {
    const json doc = json::parse(text.begin(), text.end(), nullptr, false);
    if (doc.is_discarded())
        return makeError(ErrorCode::InvalidArgument, "not valid JSON");
    if (!doc.is_object() || !doc.contains("messages") || !doc["messages"].is_array())
        return makeError(ErrorCode::InvalidArgument, "expected an object with a \"messages\" array");

    Conversation c;
    c.title = "Imported conversation";
    if (doc.contains("title")) {
        if (!doc["title"].is_string())
            return makeError(ErrorCode::InvalidArgument, "\"title\" must be a string");
        c.title = doc["title"].get<std::string>();
    }
    if (doc.contains("roundchat") && doc["roundchat"].is_object()) {
        const json& meta = doc["roundchat"];
        if (meta.contains("model_fingerprint") && meta["model_fingerprint"].is_string())
            c.modelFingerprint = meta["model_fingerprint"].get<std::string>();
        if (meta.contains("settings"))
            c.settingsJson = meta["settings"].is_string()
                                 ? meta["settings"].get<std::string>()
                                 : meta["settings"].dump(-1, ' ', false, json::error_handler_t::replace);
    }

    // Validate everything before writing anything.
    std::vector<Message> messages;
    const json& list = doc["messages"];
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string where = "messages[" + std::to_string(i) + "]";
        const json& item = list[i];
        if (!item.is_object() || !item.contains("role") || !item["role"].is_string() || !item.contains("content"))
            return makeError(ErrorCode::InvalidArgument, where + " must be an object with \"role\" and \"content\"");
        const std::optional<Role> role = roleFromName(item["role"].get<std::string>());
        if (!role)
            return makeError(ErrorCode::InvalidArgument, where + ".role must be system, user or assistant");
        Result<std::string> content = contentText(item["content"], where);
        STORAGE_CHECK(content);
        if (i == 0 && *role == Role::System) {
            c.systemPrompt = std::move(*content);
            continue;
        }
        Message m;
        m.role = *role;
        m.text = std::move(*content);
        messages.push_back(std::move(m));
    }

    Result<Transaction> tx = Transaction::begin(store.database());
    STORAGE_CHECK(tx);
    Result<int64_t> id = store.createConversation(c);
    STORAGE_CHECK(id);
    int64_t parent = 0;
    for (Message& m : messages) {
        m.conversationId = *id;
        m.parentId = parent;
        Result<int64_t> messageId = store.appendMessage(m);
        STORAGE_CHECK(messageId);
        parent = *messageId;
    }
    RC_TRY(tx->commit());
    return *id;
}

}  // namespace storage
