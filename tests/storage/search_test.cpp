// Full-text search: words with highlighted snippets, user input with FTS5 syntax in it, trash excluded, and
// correctness at 10,000 messages (the benchmark times it; this test does not).
#include "storage/chat_store.h"
#include "storage_test_util.h"

#include <string>

namespace storage {
namespace {

using test::openOrDie;
using test::TempDir;

class SearchTest : public ::testing::Test {
protected:
    TempDir m_dir;
    Database m_db = openOrDie(m_dir.file("chat.db"));
    ChatStore m_chats{m_db};

    int64_t append(int64_t conversation, const std::string& text) {
        Message m;
        m.conversationId = conversation;
        m.parentId = m_chats.conversation(conversation)->activeLeafId;
        m.text = text;
        return *m_chats.appendMessage(m);
    }
};

TEST_F(SearchTest, FindsWordsWithSnippetsAndConversation) {
    const int64_t c1 = *m_chats.createConversation(Conversation{.title = "Cooking"});
    const int64_t c2 = *m_chats.createConversation(Conversation{.title = "Travel"});
    const int64_t m1 = append(c1, "How long should I boil an egg for a soft yolk?");
    append(c1, "About six minutes in boiling water.");
    const int64_t m3 = append(c2, "The train to Zürich leaves at noon; bring an egg sandwich.");

    SearchOptions opts;
    opts.highlightOpen = "[";
    opts.highlightClose = "]";
    Result<std::vector<SearchHit>> hits = m_chats.search("egg", opts);
    ASSERT_TRUE(hits.ok()) << hits.error().toString();
    ASSERT_EQ(hits->size(), 2u);
    for (const SearchHit& h : *hits) {
        EXPECT_NE(h.snippet.find("[egg]"), std::string::npos) << h.snippet;
        EXPECT_LE(h.rank, 0.0);
        if (h.messageId == m1)
            EXPECT_EQ(h.conversationTitle, "Cooking");
        else
            EXPECT_EQ(h.messageId, m3);
    }
    EXPECT_EQ((*m_chats.search("egg zurich", opts)).size(), 1u);  // all words, diacritics folded
    EXPECT_EQ((*m_chats.search("egg zurich", opts))[0].conversationId, c2);
    EXPECT_EQ(m_chats.search("boi")->size(), 2u);  // the last word matches as a prefix (boil, boiling)
    EXPECT_TRUE(m_chats.search("nonexistentword")->empty());
    EXPECT_TRUE(m_chats.search("   ")->empty());

    // Default markers are STX/ETX.
    EXPECT_NE((*m_chats.search("yolk"))[0].snippet.find("\x02yolk\x03"), std::string::npos);
}

TEST_F(SearchTest, UserInputWithQueryOperatorsIsPlainText) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "ops"});
    append(c, "He said \"NOT\" AND left: see col:umn -minus NEAR(x) *star");
    for (const char* q : {"\"NOT\"", "AND", "left:", "col:umn", "-minus", "NEAR(x)", "*star", "\"", "(", "a\"b"}) {
        Result<std::vector<SearchHit>> hits = m_chats.search(q);
        EXPECT_TRUE(hits.ok()) << q << ": " << hits.error().toString();
    }
    EXPECT_EQ(m_chats.search("\"NOT\" AND")->size(), 1u);
    EXPECT_EQ(m_chats.search("-minus")->size(), 1u);
}

TEST_F(SearchTest, DeletedConversationsAndEditedBranchesStayConsistent) {
    const int64_t c = *m_chats.createConversation(Conversation{.title = "gone"});
    append(c, "platypus facts");
    ASSERT_EQ(m_chats.search("platypus")->size(), 1u);
    ASSERT_TRUE(m_chats.deleteConversation(c).ok());
    EXPECT_TRUE(m_chats.search("platypus")->empty());
    ASSERT_TRUE(m_chats.restoreConversation(c).ok());
    EXPECT_EQ(m_chats.search("platypus")->size(), 1u);
    ASSERT_TRUE(m_chats.deleteConversation(c).ok());
    ASSERT_EQ(*m_chats.purgeDeleted(Database::nowMs() + 1), 1);
    ASSERT_TRUE(m_chats.restoreConversation(c).ok() == false);
    EXPECT_TRUE(m_chats.search("platypus")->empty());
    // The index agrees with the messages table after deletes.
    EXPECT_TRUE(m_db.exec("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')").ok());
}

TEST_F(SearchTest, TenThousandMessagesGiveTheRightHits) {
    const char* words[] = {"alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"};
    constexpr int kMessages = 10000;
    {
        Result<Transaction> tx = Transaction::begin(m_db);
        ASSERT_TRUE(tx.ok());
        int64_t conversation = 0;
        for (int i = 0; i < kMessages; ++i) {
            if (i % 100 == 0)
                conversation = *m_chats.createConversation(Conversation{.title = "c" + std::to_string(i / 100)});
            std::string text = std::string("message ") + words[i % 9] + " " + words[(i / 9) % 9];
            if (i % 1000 == 7)
                text += " needle" + std::to_string(i);
            append(conversation, text);
        }
        ASSERT_TRUE(tx->commit().ok());
    }
    SearchOptions opts;
    opts.limit = 100;
    // Exactly the 10 messages with the needle (prefix match on "needle").
    Result<std::vector<SearchHit>> hits = m_chats.search("needle", opts);
    ASSERT_TRUE(hits.ok());
    EXPECT_EQ(hits->size(), 10u);
    for (const SearchHit& h : *hits) EXPECT_NE(h.snippet.find("\x02needle"), std::string::npos);
    // "needle1007" is one message.
    hits = m_chats.search("needle1007", opts);
    ASSERT_EQ(hits->size(), 1u);
    EXPECT_NE(hits->front().snippet.find("needle1007"), std::string::npos);
    // Both words, in either order ("alpha bravo" and "bravo alpha"): about 2 * 10000 / 81 messages.
    int expected = 0;
    for (int i = 0; i < kMessages; ++i) {
        const int a = i % 9;
        const int b = (i / 9) % 9;
        expected += ((a == 0 && b == 1) || (a == 1 && b == 0)) ? 1 : 0;
    }
    opts.limit = 1000;
    EXPECT_EQ(int(m_chats.search("alpha bravo", opts)->size()), expected);
    opts.limit = 5;
    EXPECT_EQ(m_chats.search("alpha bravo", opts)->size(), 5u);
}

}  // namespace
}  // namespace storage
