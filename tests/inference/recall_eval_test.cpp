// evaluateRecall on stories260K: grouping by depth, exact-match scoring through the real session path, and the
// Round Attention accounting it reports. (stories260K cannot retrieve facts; the trained recall model's accuracy is
// measured by roundchat-bench recall, see docs/PERFORMANCE.md.)
#include "inference/recall_eval.h"

#include <gtest/gtest.h>

#include "fixtures.h"

namespace inference {
namespace {

class RecallEvalTest : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        LoadOptions o;
        o.backend = BackendKind::Cpu;
        Result<std::unique_ptr<Model>> m = Model::load(test::kStoriesModelPath, o);
        ASSERT_TRUE(m) << m.error().detail;
        s_model = std::move(*m).release();
    }
    static void TearDownTestSuite() { delete s_model; }

    static RecallCase makeCase(int depth) {
        RecallCase c;
        c.depth = depth;
        c.system = "Lily had a red ball.";
        for (int r = 1; r < depth; ++r)
            c.rounds.push_back({"Tom went to the park.", "He saw a big dog."});
        c.question = "What did Lily have?";
        c.answer = "Lily had a red ball.";
        c.factRound = 1;
        return c;
    }

    // The greedy answer a full-KV session gives to the case's question.
    static std::string fullKvAnswer(const RecallCase& c) {
        SessionOptions so;
        so.systemPrompt = c.system;
        so.sampler.temperature = 0.0f;
        so.sampler.repeatPenalty = 1.0f;
        so.maxNewTokens = RecallEvalOptions{}.maxNewTokens;
        Result<std::unique_ptr<Session>> s = Session::create(*s_model, so);
        EXPECT_TRUE(s);
        for (const RecallCase::Turn& t : c.rounds)
            EXPECT_TRUE((*s)->appendRound(t.user, t.assistant));
        Result<GenerationResult> g = (*s)->send(c.question, [](std::string_view) { return true; });
        EXPECT_TRUE(g);
        return g ? g->text : std::string();
    }

    static Model* s_model;
};

Model* RecallEvalTest::s_model = nullptr;

TEST_F(RecallEvalTest, GroupsByDepthAndRunsBothModes) {
    const std::vector<RecallCase> cases = {makeCase(6), makeCase(3), makeCase(6)};
    Result<std::vector<RecallDepthReport>> r = evaluateRecall(*s_model, cases, RecallEvalOptions{});
    ASSERT_TRUE(r) << r.error().detail;
    ASSERT_EQ(r->size(), 2u);
    EXPECT_EQ((*r)[0].depth, 3);
    EXPECT_EQ((*r)[1].depth, 6);
    EXPECT_EQ((*r)[0].full.cases, 1);
    EXPECT_EQ((*r)[1].full.cases, 2);
    EXPECT_EQ((*r)[1].round.cases, 2);
    // Full KV attends to every round, so the fact round is always "recalled", and holds all KV.
    EXPECT_EQ((*r)[1].full.factRecalled, 2);
    EXPECT_DOUBLE_EQ((*r)[1].full.meanKvVramShare(), 1.0);
    EXPECT_DOUBLE_EQ((*r)[1].full.recalledRoundsSum, 2 * 6.0);  // rounds 0..5 before the question
    // Round Attention recalls a subset of the six past rounds.
    EXPECT_LE((*r)[1].round.recalledRoundsSum, 2 * 6.0);
    EXPECT_GT((*r)[1].round.recalledRoundsSum, 0.0);
    EXPECT_GT((*r)[1].round.firstTokenMsSum, 0.0);
}

TEST_F(RecallEvalTest, ExactMatchComparesTheGreedyAnswerTrimmed) {
    RecallCase c = makeCase(4);
    c.answer = "  " + fullKvAnswer(c) + "\n";
    Result<std::vector<RecallDepthReport>> r = evaluateRecall(*s_model, std::span(&c, 1), RecallEvalOptions{});
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_EQ(r->at(0).full.exact, 1);

    c.answer = "a sentence stories260K does not produce";
    r = evaluateRecall(*s_model, std::span(&c, 1), RecallEvalOptions{});
    ASSERT_TRUE(r) << r.error().detail;
    EXPECT_EQ(r->at(0).full.exact, 0);
    EXPECT_EQ(r->at(0).round.exact, 0);
}

TEST_F(RecallEvalTest, RejectsAFactRoundOutsideTheConversation) {
    RecallCase c = makeCase(3);
    c.factRound = 3;  // rounds are 1 and 2
    Result<std::vector<RecallDepthReport>> r = evaluateRecall(*s_model, std::span(&c, 1), RecallEvalOptions{});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ErrorCode::InvalidArgument);
}

}  // namespace
}  // namespace inference
