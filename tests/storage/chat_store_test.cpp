// Conversations, messages and branches, settings, the recall log, and exact round trips of awkward text.
#include "storage/chat_store.h"

#include "storage_test_util.h"

#include <string>
#include <thread>

namespace storage {
namespace {


class ChatStoreTest : public test::ChatStoreFixture {
protected:
    std::vector<std::string> pathTexts(int64_t conversation) {
        std::vector<std::string> out;
        const std::vector<Message> path = *m_chats.activePath(conversation);
        for (const Message& m : path) out.push_back(m.text);
        return out;
    }
};

TEST_F(ChatStoreTest, ConversationCrudAndOrdering) {
    Conversation c;
    c.title = "first";
    c.modelFingerprint = "fp";
    c.systemPrompt = "You are terse.";
    c.settingsJson = R"({"temperature":0.7})";
    const int64_t a = *m_chats.createConversation(c);
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    const int64_t b = *m_chats.createConversation(Conversation{.title = "second"});

    Result<Conversation> got = m_chats.conversation(a);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->title, "first");
    EXPECT_EQ(got->modelFingerprint, "fp");
    EXPECT_EQ(got->systemPrompt, "You are terse.");
    EXPECT_EQ(got->settingsJson, R"({"temperature":0.7})");
    EXPECT_GT(got->createdAtMs, 0);

    // Newest first, pinned before everything.
    EXPECT_EQ((*m_chats.listConversations())[0].id, b);
    ASSERT_TRUE(m_chats.setPinned(a, true).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    ASSERT_TRUE(m_chats.renameConversation(b, "second, renamed").ok());
    std::vector<Conversation> list = *m_chats.listConversations();
    ASSERT_EQ(list.size(), 2u);
    EXPECT_EQ(list[0].id, a);
    EXPECT_TRUE(list[0].pinned);
    EXPECT_EQ(list[1].title, "second, renamed");

    ASSERT_TRUE(m_chats.setSystemPrompt(b, "new prompt").ok());
    ASSERT_TRUE(m_chats.setModelFingerprint(b, "fp2").ok());
    ASSERT_TRUE(m_chats.setConversationSettings(b, "{}").ok());
    EXPECT_EQ(m_chats.conversation(b)->systemPrompt, "new prompt");
    EXPECT_EQ(m_chats.conversation(b)->modelFingerprint, "fp2");

    EXPECT_FALSE(m_chats.renameConversation(12345, "x").ok());
    EXPECT_FALSE(m_chats.conversation(12345).ok());
}

TEST_F(ChatStoreTest, SoftDeleteUndoAndPurge) {
    const int64_t a = *m_chats.createConversation(Conversation{.title = "doomed"});
    append(a, 0, Role::User, "bye");
    ASSERT_TRUE(m_chats.deleteConversation(a).ok());
    EXPECT_TRUE(m_chats.listConversations()->empty());
    ASSERT_EQ(m_chats.listDeletedConversations()->size(), 1u);

    ASSERT_TRUE(m_chats.restoreConversation(a).ok());  // undo
    EXPECT_EQ(m_chats.listConversations()->size(), 1u);
    EXPECT_EQ(pathTexts(a), std::vector<std::string>{"bye"});

    ASSERT_TRUE(m_chats.deleteConversation(a).ok());
    EXPECT_EQ(*m_chats.purgeDeleted(0), 0);  // deleted after time 0: kept
    EXPECT_EQ(*m_chats.purgeDeleted(Database::nowMs() + 1), 1);
    EXPECT_FALSE(m_chats.conversation(a).ok());
    EXPECT_TRUE(m_chats.listDeletedConversations()->empty());
}

TEST_F(ChatStoreTest, MessagesKeepTokensAndCounts) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "t"});
    Message m;
    m.conversationId = c;
    m.role = Role::User;
    m.text = "tokens";
    m.tokenIds = {1, -2, 32000, 0x7fffffff, int32_t(0x80000000)};
    const int64_t id = *m_chats.appendMessage(m);
    Result<Message> got = m_chats.message(id);
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(got->tokenIds, m.tokenIds);
    EXPECT_EQ(got->tokenCount, 5);
    EXPECT_EQ(got->role, Role::User);
    EXPECT_EQ(got->parentId, 0);
    EXPECT_EQ(m_chats.conversation(c)->activeLeafId, id);
}

// Regenerate = a sibling assistant message; edit = a sibling user message. Switching picks a branch.
TEST_F(ChatStoreTest, BranchesFromRegenerateAndEdit) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "branches"});
    const int64_t u1 = append(c, 0, Role::User, "Q1");
    const int64_t a1 = append(c, u1, Role::Assistant, "A1");
    const int64_t u2 = append(c, a1, Role::User, "Q2");
    const int64_t a2 = append(c, u2, Role::Assistant, "A2");
    EXPECT_EQ(pathTexts(c), (std::vector<std::string>{"Q1", "A1", "Q2", "A2"}));

    const int64_t a2b = append(c, u2, Role::Assistant, "A2 regenerated");
    EXPECT_EQ(pathTexts(c), (std::vector<std::string>{"Q1", "A1", "Q2", "A2 regenerated"}));
    std::vector<Message> sib = *m_chats.siblings(a2b);
    ASSERT_EQ(sib.size(), 2u);
    EXPECT_EQ(sib[0].id, a2);
    EXPECT_EQ(sib[1].id, a2b);

    const int64_t u2e = append(c, a1, Role::User, "Q2 edited");
    const int64_t a2e = append(c, u2e, Role::Assistant, "A2 for edit");
    EXPECT_EQ(pathTexts(c), (std::vector<std::string>{"Q1", "A1", "Q2 edited", "A2 for edit"}));
    EXPECT_EQ(m_chats.siblings(u2)->size(), 2u);
    EXPECT_EQ(m_chats.siblings(u1)->size(), 1u);  // roots are siblings among themselves only

    // Back to the original user message: its newest answer (the regenerated one) becomes the leaf.
    EXPECT_EQ(*m_chats.switchBranch(u2), a2b);
    EXPECT_EQ(pathTexts(c), (std::vector<std::string>{"Q1", "A1", "Q2", "A2 regenerated"}));
    EXPECT_EQ(*m_chats.switchBranch(a2), a2);
    EXPECT_EQ(pathTexts(c), (std::vector<std::string>{"Q1", "A1", "Q2", "A2"}));
    EXPECT_EQ(*m_chats.switchBranch(u2e), a2e);

    // A parent from another conversation is refused.
    const int64_t other = *m_chats.createConversation(Conversation{.title = "other"});
    Message bad;
    bad.conversationId = other;
    bad.parentId = a1;
    bad.text = "x";
    EXPECT_FALSE(m_chats.appendMessage(bad).ok());
}

TEST_F(ChatStoreTest, QuotesNulsAndEmojiRoundTripExactly) {
    const std::string nasty = std::string("It's \"quoted\"; DROP TABLE messages; --\n\t") + std::string("a\0b\0", 4) +
                              "\xF0\x9F\x98\x80 \xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x92\xBB \xE2\x9D\xA4\xEF\xB8\x8F" +
                              std::string(1, '\0');
    ASSERT_NE(nasty.find('\0'), std::string::npos);
    Conversation conv;
    conv.title = nasty;
    conv.systemPrompt = nasty;
    const int64_t c = *m_chats.createConversation(conv);
    const int64_t m = append(c, 0, Role::User, nasty);

    EXPECT_EQ(m_chats.conversation(c)->title, nasty);
    EXPECT_EQ(m_chats.conversation(c)->systemPrompt, nasty);
    EXPECT_EQ(m_chats.message(m)->text, nasty);
    ASSERT_TRUE(m_chats.renameConversation(c, nasty + "2").ok());
    EXPECT_EQ(m_chats.conversation(c)->title, nasty + "2");
    ASSERT_TRUE(m_chats.setSetting(nasty, nasty).ok());
    EXPECT_EQ(*m_chats.setting(nasty), std::optional<std::string>(nasty));
    EXPECT_EQ(m_chats.listConversations()->size(), 1u);  // the DROP TABLE stayed text
}

TEST_F(ChatStoreTest, SettingsUpsert) {
    EXPECT_FALSE(m_chats.setting("missing")->has_value());
    ASSERT_TRUE(m_chats.setSetting("k", "v1").ok());
    ASSERT_TRUE(m_chats.setSetting("k", "v2").ok());
    EXPECT_EQ(**m_chats.setting("k"), "v2");
}

TEST_F(ChatStoreTest, RecallLogStoresRoundsScoresAndBytes) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "recall"});
    const int64_t a = append(c, append(c, 0, Role::User, "q"), Role::Assistant, "a");
    RecallLogEntry e;
    e.messageId = a;
    e.rounds = {{0, 0.91}, {3, 0.42}, {7, 0.05}};
    e.vramKvBytes = 1000;
    e.fullKvBytes = 5000;
    e.copiedBytes = 300;
    e.selectMs = 0.25;
    e.copyMs = 1.5;
    ASSERT_TRUE(m_chats.addRecallLog(e).ok());
    std::vector<RecallLogEntry> log = *m_chats.recallLog(a);
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].rounds.size(), 3u);
    EXPECT_EQ(log[0].rounds[1].roundIndex, 3);
    EXPECT_DOUBLE_EQ(log[0].rounds[1].score, 0.42);
    EXPECT_EQ(log[0].savedBytes(), 4000);
    EXPECT_EQ(log[0].copiedBytes, 300);
    EXPECT_DOUBLE_EQ(log[0].copyMs, 1.5);
    EXPECT_TRUE(m_chats.recallLog(a + 100)->empty());
}

}  // namespace
}  // namespace storage
