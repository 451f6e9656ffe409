// Restoring a conversation after a restart through the storage layer: session A chats on stories260K and its rounds'
// KV snapshots go to a temporary database with storage::KvStore::writeRound; session B, on a freshly loaded Model,
// restores them (planRestore + loadSnapshot + importRound) and must answer the next message exactly as A does.
// Snapshots made for another model are refused by the plan, and those rounds are prefilled from their text instead.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/inference/fixtures.h"
#include "inference/model.h"
#include "inference/session.h"
#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/kv_store.h"

namespace {

using namespace inference;

const std::string& kModelPath = inference::test::kStoriesModelPath;
const char* const kQuestions[] = {"Tell me about a cat.", "Where did the dog go?", "Lily had a red ball."};
const char* const kNextQuestion = "What did the cat say?";

class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "rc-restore-XXXXXX").string();
        m_path = mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    std::string file(const std::string& name) const { return m_path + "/" + name; }

private:
    std::string m_path;
};

std::unique_ptr<Model> loadModel() {
    LoadOptions options;
    options.backend = BackendKind::Cpu;
    options.threads = 2;
    Result<std::unique_ptr<Model>> model = Model::load(kModelPath, options);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().toString());
    return model.ok() ? std::move(*model) : nullptr;
}

SessionOptions greedyOptions() {
    SessionOptions o;
    o.systemPrompt = "You tell short stories.";
    o.sampler.temperature = 0.0f;
    o.maxNewTokens = 16;
    o.recordFirstLogits = true;
    return o;
}

std::unique_ptr<Session> createSession(const Model& model) {
    Result<std::unique_ptr<Session>> s = Session::create(model, greedyOptions());
    EXPECT_TRUE(s.ok());
    return s.ok() ? std::move(*s) : nullptr;
}

storage::KvSnapshotRecord toRecord(RoundKvSnapshot snap, const std::string& templateHash) {
    storage::KvSnapshotRecord r;
    r.round = snap.round;
    r.firstLayer = snap.firstLayer;
    r.layerCount = snap.layerCount;
    r.tokenCount = snap.tokenCount;
    r.modelFingerprint = std::move(snap.modelFingerprint);
    r.dtype = std::move(snap.dtype);
    r.templateHash = templateHash;
    r.bytes = std::move(snap.bytes);
    return r;
}

RoundKvSnapshot fromRecord(storage::KvSnapshotRecord r, int sessionRound) {
    RoundKvSnapshot s;
    s.round = sessionRound;
    s.firstLayer = r.firstLayer;
    s.layerCount = r.layerCount;
    s.tokenCount = r.tokenCount;
    s.modelFingerprint = std::move(r.modelFingerprint);
    s.dtype = std::move(r.dtype);
    s.bytes = std::move(r.bytes);
    return s;
}

// The conversation as the app stores it: per answered round a user and an assistant message and a storage round
// (index = session round - 1, since the system prompt round 0 is not stored) with its KV snapshot. No tokens are
// stored: a restored round's tokens are rendered from its texts.
class StoredChat {
public:
    explicit StoredChat(storage::Database& db) : m_chats(db), m_kv(db) {
        storage::Conversation c;
        c.title = "restore";
        Result<int64_t> id = m_chats.createConversation(c);
        EXPECT_TRUE(id.ok());
        m_conversation = id.ok() ? *id : 0;
    }

    int64_t conversation() const { return m_conversation; }

    // After an answer: store its round (the session closed it, so its KV is final).
    void storeAfterAnswer(const Session& s, const Model& model, const std::string& fingerprint) {
        const int last = static_cast<int>(s.rounds().size()) - 1;
        m_ids.resize(static_cast<size_t>(last) + 1);
        const RoundInfo& info = s.rounds()[static_cast<size_t>(last)];
        storage::Message user;
        user.conversationId = m_conversation;
        user.parentId = last > 1 ? m_ids[static_cast<size_t>(last) - 1].second : 0;
        user.role = storage::Role::User;
        user.text = info.userText;
        Result<int64_t> userId = m_chats.appendMessage(user);
        ASSERT_TRUE(userId.ok());
        storage::Message answer;
        answer.conversationId = m_conversation;
        answer.parentId = *userId;
        answer.role = storage::Role::Assistant;
        answer.text = info.answerText;
        Result<int64_t> answerId = m_chats.appendMessage(answer);
        ASSERT_TRUE(answerId.ok());
        m_ids[static_cast<size_t>(last)] = {*userId, *answerId};
        write(s, model, last, fingerprint);
    }

    storage::KvStore& kv() { return m_kv; }

private:
    void write(const Session& s, const Model& model, int round, const std::string& fingerprint) {
        const RoundInfo& info = s.rounds()[static_cast<size_t>(round)];
        Result<RoundKvSnapshot> snap = s.exportRound(round);
        ASSERT_TRUE(snap.ok()) << snap.error().toString();
        EXPECT_EQ(snap->dtype, "f32");
        snap->modelFingerprint = fingerprint;
        storage::RoundRecord record;
        record.conversationId = m_conversation;
        record.roundIndex = round - 1;
        record.userMessageId = m_ids[static_cast<size_t>(round)].first;
        record.assistantMessageId = m_ids[static_cast<size_t>(round)].second;
        record.firstPosition = info.firstPosition;
        record.tokenCount = static_cast<int>(info.tokens.size());
        const storage::KvSnapshotRecord snapshots[] = {toRecord(std::move(*snap), model.templateHash())};
        Result<int64_t> id = m_kv.writeRound(record, snapshots);
        ASSERT_TRUE(id.ok()) << id.error().toString();
    }

    storage::ChatStore m_chats;
    storage::KvStore m_kv;
    int64_t m_conversation = 0;
    std::vector<std::pair<int64_t, int64_t>> m_ids;  // per session round: user and assistant message ids
};

// What the app does when a conversation is opened: import the restorable prefix, prefill the rest from its text.
struct RestoreOutcome {
    int restored = 0;
    int recomputed = 0;
    std::string reason;  // why the first recomputed round could not be restored
};

RestoreOutcome restore(Session& s, storage::ChatStore& chats, storage::KvStore& kv, int64_t conversation,
                       const Model& model) {
    RestoreOutcome out;
    Result<storage::RestorePlan> plan =
        kv.planRestore(conversation, storage::RestoreKey{model.fingerprint(), model.templateHash(),
                                                         model.config().nLayers});
    EXPECT_TRUE(plan.ok());
    if (!plan.ok())
        return out;
    EXPECT_TRUE(s.prefillSystemPrompt().ok());
    for (int k = 0; k < static_cast<int>(plan->rounds.size()); ++k) {
        const storage::RestoreRound& rr = plan->rounds[static_cast<size_t>(k)];
        Result<storage::Message> user = chats.message(rr.round.userMessageId);
        Result<storage::Message> answer = chats.message(rr.round.assistantMessageId);
        EXPECT_TRUE(user.ok() && answer.ok());
        if (!user.ok() || !answer.ok())
            return out;
        if (k < plan->restorableRounds) {
            RoundInfo info;
            info.index = k + 1;
            info.firstPosition = rr.round.firstPosition;
            info.userText = user->text;
            info.answerText = answer->text;
            Result<storage::KvSnapshotRecord> snap = kv.loadSnapshot(rr.snapshots.front().id);
            EXPECT_TRUE(snap.ok());
            Status st = s.importRound(info, fromRecord(std::move(*snap), k + 1));
            EXPECT_TRUE(st.ok()) << st.error().toString();
            ++out.restored;
        } else {
            if (out.reason.empty())
                out.reason = rr.reason;
            EXPECT_TRUE(s.appendRound(user->text, answer->text).ok());
            ++out.recomputed;
        }
    }
    return out;
}

class Restore : public ::testing::Test {
protected:
    void SetUp() override {
        Result<storage::Database> db = storage::Database::open(m_dir.file("chats.db"));
        ASSERT_TRUE(db.ok()) << db.error().toString();
        m_db = std::make_unique<storage::Database>(std::move(*db));
        m_modelA = loadModel();
        ASSERT_TRUE(m_modelA);
        m_a = createSession(*m_modelA);
        ASSERT_TRUE(m_a);
    }

    // Session A chats, storing each round with `fingerprint` (the model's own, or a foreign one from round
    // `foreignFrom` on), then answers the next question.
    void chatAndStore(StoredChat& stored, int foreignFrom) {
        for (int k = 0; k < 3; ++k) {
            ASSERT_TRUE(m_a->send(kQuestions[k], {}).ok());
            stored.storeAfterAnswer(*m_a, *m_modelA, k + 1 >= foreignFrom ? "another-model" : m_modelA->fingerprint());
        }
        Result<GenerationResult> next = m_a->send(kNextQuestion, {});
        ASSERT_TRUE(next.ok());
        m_expected = std::move(*next);
    }

    TempDir m_dir;
    std::unique_ptr<storage::Database> m_db;
    std::unique_ptr<Model> m_modelA;
    std::unique_ptr<Session> m_a;
    GenerationResult m_expected;
};

void expectSameAnswer(const GenerationResult& a, const GenerationResult& b) {
    ASSERT_EQ(a.firstTokenLogits.size(), b.firstTokenLogits.size());
    ASSERT_FALSE(a.firstTokenLogits.empty());
    for (size_t i = 0; i < a.firstTokenLogits.size(); ++i)
        ASSERT_NEAR(a.firstTokenLogits[i], b.firstTokenLogits[i], 1e-6f) << "token " << i;
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.text, b.text);
}

TEST_F(Restore, RestoredSessionAnswersLikeOneThatNeverClosed) {
    StoredChat stored(*m_db);
    chatAndStore(stored, 99);

    std::unique_ptr<Model> modelB = loadModel();
    ASSERT_TRUE(modelB);
    EXPECT_EQ(modelB->templateHash(), m_modelA->templateHash());
    EXPECT_EQ(modelB->templateHash().size(), 64u);
    EXPECT_EQ(modelB->templateHash().find_first_not_of("0123456789abcdef"), std::string::npos);
    EXPECT_NE(modelB->templateHash(), modelB->fingerprint());
    std::unique_ptr<Session> b = createSession(*modelB);
    ASSERT_TRUE(b);
    storage::ChatStore chats(*m_db);
    const RestoreOutcome out = restore(*b, chats, stored.kv(), stored.conversation(), *modelB);
    EXPECT_EQ(out.restored, 3);
    EXPECT_EQ(out.recomputed, 0);
    ASSERT_EQ(b->rounds().size(), 4u);

    Result<GenerationResult> next = b->send(kNextQuestion, {});
    ASSERT_TRUE(next.ok());
    expectSameAnswer(m_expected, *next);
    // Only the new question was prefilled: the restored rounds were reused as they are.
    EXPECT_EQ(next->promptTokens, m_expected.promptTokens);
}

TEST_F(Restore, SnapshotsOfAnotherModelAreRefusedAndPrefilled) {
    StoredChat stored(*m_db);
    chatAndStore(stored, 2);  // rounds 2 and 3 carry a foreign fingerprint

    std::unique_ptr<Model> modelB = loadModel();
    ASSERT_TRUE(modelB);
    std::unique_ptr<Session> b = createSession(*modelB);
    ASSERT_TRUE(b);
    storage::ChatStore chats(*m_db);
    Result<storage::RestorePlan> plan = stored.kv().planRestore(
        stored.conversation(),
        storage::RestoreKey{modelB->fingerprint(), modelB->templateHash(), modelB->config().nLayers});
    ASSERT_TRUE(plan.ok());
    ASSERT_EQ(plan->rounds.size(), 3u);
    EXPECT_TRUE(plan->rounds[0].usable);
    EXPECT_FALSE(plan->rounds[1].usable);
    EXPECT_EQ(plan->restorableRounds, 1);

    const RestoreOutcome out = restore(*b, chats, stored.kv(), stored.conversation(), *modelB);
    EXPECT_EQ(out.restored, 1);
    EXPECT_EQ(out.recomputed, 2);
    EXPECT_NE(out.reason.find("fingerprint"), std::string::npos) << out.reason;
    ASSERT_EQ(b->rounds().size(), 4u);
    EXPECT_EQ(b->rounds()[2].userText, kQuestions[1]);

    Result<GenerationResult> next = b->send(kNextQuestion, {});
    ASSERT_TRUE(next.ok());
    expectSameAnswer(m_expected, *next);
}

}  // namespace
