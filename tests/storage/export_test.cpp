// Markdown and JSON (OpenAI chat format) export of the active branch, JSON import, and bad input.
#include "storage/export.h"

#include "storage_test_util.h"

#include <nlohmann/json.hpp>

namespace storage {
namespace {

using nlohmann::json;

using ExportTest = test::ChatStoreFixture;

const std::string kTricky =
    std::string("quote \" backslash \\ nul ") + std::string(1, '\0') + " emoji \xF0\x9F\x8E\x89";

TEST_F(ExportTest, JsonIsOpenAiFormatOfTheActiveBranchAndImportsBack) {
    Conversation c;
    c.title = "Export \"me\" \xF0\x9F\x9A\x80";
    c.systemPrompt = "Be kind.";
    c.modelFingerprint = "fp-1";
    c.settingsJson = R"({"temperature":0.5})";
    const int64_t id = *m_chats.createConversation(c);
    const int64_t u = append(id, 0, Role::User, "Hi");
    append(id, u, Role::Assistant, "old answer");
    const int64_t a = append(id, u, Role::Assistant, kTricky);  // regenerated: the active branch
    append(id, a, Role::User, "Thanks");

    Result<std::string> text = exportJson(m_chats, id);
    ASSERT_TRUE(text.ok()) << text.error().toString();
    const json doc = json::parse(*text);
    EXPECT_EQ(doc["title"], c.title);
    ASSERT_EQ(doc["messages"].size(), 4u);
    EXPECT_EQ(doc["messages"][0], (json{{"role", "system"}, {"content", "Be kind."}}));
    EXPECT_EQ(doc["messages"][1]["role"], "user");
    EXPECT_EQ(doc["messages"][2]["content"], kTricky);
    EXPECT_EQ(doc["messages"][3]["content"], "Thanks");
    EXPECT_EQ(doc["roundchat"]["model_fingerprint"], "fp-1");
    EXPECT_EQ(doc["roundchat"]["settings"]["temperature"], 0.5);

    Result<int64_t> imported = importJson(m_chats, *text);
    ASSERT_TRUE(imported.ok()) << imported.error().toString();
    ASSERT_NE(*imported, id);
    const Conversation back = *m_chats.conversation(*imported);
    EXPECT_EQ(back.title, c.title);
    EXPECT_EQ(back.systemPrompt, "Be kind.");
    EXPECT_EQ(back.modelFingerprint, "fp-1");
    EXPECT_EQ(json::parse(back.settingsJson), json::parse(c.settingsJson));
    std::vector<Message> path = *m_chats.activePath(*imported);
    ASSERT_EQ(path.size(), 3u);
    EXPECT_EQ(path[0].role, Role::User);
    EXPECT_EQ(path[1].text, kTricky);
    EXPECT_EQ(path[1].role, Role::Assistant);
    EXPECT_EQ(path[2].parentId, path[1].id);
    // Exporting the import gives the same document (apart from the times).
    json again = json::parse(*exportJson(m_chats, *imported));
    json original = doc;
    for (json* d : {&again, &original}) {
        (*d)["roundchat"].erase("created_at_ms");
        (*d)["roundchat"].erase("updated_at_ms");
    }
    EXPECT_EQ(again, original);
}

TEST_F(ExportTest, MarkdownHasTitleRolesAndText) {
    Conversation c;
    c.title = "Notes";
    c.systemPrompt = "sys";
    const int64_t id = *m_chats.createConversation(c);
    append(id, append(id, 0, Role::User, "What is 2+2?"), Role::Assistant, "**4**");
    Result<std::string> md = exportMarkdown(m_chats, id);
    ASSERT_TRUE(md.ok());
    EXPECT_EQ(*md, "# Notes\n\n## System\n\nsys\n\n## User\n\nWhat is 2+2?\n\n## Assistant\n\n**4**\n\n");
    EXPECT_FALSE(exportMarkdown(m_chats, id + 100).ok());
}

TEST_F(ExportTest, ImportAcceptsPlainOpenAiFilesAndContentParts) {
    const char* text = R"({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "part one, "}, {"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "ok", "name": "ignored"}]})";
    Result<int64_t> id = importJson(m_chats, text);
    ASSERT_TRUE(id.ok()) << id.error().toString();
    EXPECT_EQ(m_chats.conversation(*id)->title, "Imported conversation");
    std::vector<Message> path = *m_chats.activePath(*id);
    ASSERT_EQ(path.size(), 2u);
    EXPECT_EQ(path[0].text, "part one, two");
}

TEST_F(ExportTest, BadJsonGivesClearErrorsAndWritesNothing) {
    const std::pair<const char*, const char*> cases[] = {
        {"{not json", "not valid JSON"},
        {"[]", "\"messages\""},
        {R"({"messages": {}})", "\"messages\""},
        {R"({"messages": [{"role": "user"}]})", "messages[0]"},
        {R"({"messages": [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]})", "messages[1].role"},
        {R"({"messages": [{"role": "user", "content": 5}]})", "messages[0].content"},
        {R"({"title": 7, "messages": []})", "title"},
    };
    for (const auto& [input, expected] : cases) {
        Result<int64_t> id = importJson(m_chats, input);
        ASSERT_FALSE(id.ok()) << input;
        EXPECT_EQ(id.error().code, ErrorCode::InvalidArgument);
        EXPECT_NE(id.error().detail.find(expected), std::string::npos) << id.error().detail;
    }
    EXPECT_TRUE(m_chats.listConversations()->empty());
}

}  // namespace
}  // namespace storage
