// Chat sessions on stories260K (ChatML fallback template): streaming, cancel, stop strings, regenerate, truncate,
// context limits, prefix reuse and KV export/import.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/inference/fixtures.h"
#include "inference/generation.h"
#include "inference/model.h"
#include "inference/session.h"

namespace inference {
namespace {

const std::string& kModelPath = test::kStoriesModelPath;

std::unique_ptr<Model> loadModel(int contextLength = 0) {
    LoadOptions options;
    options.backend = BackendKind::Cpu;
    options.threads = 2;
    options.contextLength = contextLength;
    Result<std::unique_ptr<Model>> model = Model::load(kModelPath, options);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().toString());
    return model.ok() ? std::move(*model) : nullptr;
}

SessionOptions greedyOptions(int maxNewTokens) {
    SessionOptions o;
    o.systemPrompt = "You tell short stories.";
    o.sampler.temperature = 0.0f;
    o.maxNewTokens = maxNewTokens;
    return o;
}

std::unique_ptr<Session> createSession(const Model& model, SessionOptions options) {
    Result<std::unique_ptr<Session>> s = Session::create(model, std::move(options));
    EXPECT_TRUE(s.ok());
    return s.ok() ? std::move(*s) : nullptr;
}

TEST(StopStringFilter, HoldsBackPossibleStartsAndNeverEmitsTheStop) {
    StopStringFilter f({"<|im_end|>", "\nUser:"});
    EXPECT_EQ(f.push("Hello <|im"), "Hello ");
    EXPECT_EQ(f.push("pressive"), "<|impressive");  // not a stop after all: released
    EXPECT_EQ(f.push(" end.\nUs"), " end.");
    EXPECT_EQ(f.push("er: hi"), "");
    EXPECT_TRUE(f.stopped());
    EXPECT_EQ(f.push("more"), "");
    StopStringFilter g({"END"});
    EXPECT_EQ(g.push("the EN"), "the ");
    EXPECT_FALSE(g.stopped());
    EXPECT_EQ(g.flush(), "EN");  // the stream ended without the stop string
}

TEST(Session, StreamsPiecesThatConcatenateToTheAnswer) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    SessionOptions o = greedyOptions(40);
    o.sampler.temperature = 0.8f;
    o.sampler.seed = 11;
    std::unique_ptr<Session> s = createSession(*model, o);
    ASSERT_TRUE(s);
    std::string streamed;
    int pieces = 0;
    Result<GenerationResult> r = s->send("Tell me a story about a cat.", [&](std::string_view p) {
        streamed += p;
        ++pieces;
        return true;
    });
    ASSERT_TRUE(r.ok()) << r.error().toString();
    EXPECT_EQ(streamed, r->text);
    EXPECT_GT(pieces, 1);
    EXPECT_FALSE(r->tokens.empty());
    EXPECT_GT(r->promptTokens, 0);
    EXPECT_GT(r->tokensPerSecond, 0.0);
    ASSERT_EQ(s->rounds().size(), 2u);
    EXPECT_EQ(s->rounds()[1].userText, "Tell me a story about a cat.");
    EXPECT_EQ(s->rounds()[1].answerText, r->text);
    EXPECT_EQ(s->rounds()[1].firstPosition, static_cast<int>(s->rounds()[0].tokens.size()));
    EXPECT_EQ(s->contextUsage().usedTokens,
              static_cast<int>(s->rounds()[0].tokens.size() + s->rounds()[1].tokens.size()));
    EXPECT_EQ(s->contextUsage().contextLength, model->contextLength());
    // Full-KV report: every earlier round recalled, with attention shares that add up to 1.
    EXPECT_EQ(r->recall.mode, KvMode::FullKv);
    EXPECT_EQ(r->recall.roundsTotal, 1);
    ASSERT_EQ(r->recall.recalled.size(), 1u);
    EXPECT_NEAR(r->recall.recalled[0].score, 1.0f, 1e-5);
    EXPECT_GT(r->recall.kvBytesFull, 0u);
}

TEST(Session, SecondTurnReusesTheCachedPrefix) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    std::unique_ptr<Session> s = createSession(*model, greedyOptions(16));
    ASSERT_TRUE(s);
    Result<GenerationResult> first = s->send("Hello.", {});
    ASSERT_TRUE(first.ok());
    const int usedAfterFirst = s->contextUsage().usedTokens;
    Result<GenerationResult> second = s->send("What happened next?", {});
    ASSERT_TRUE(second.ok());
    // Only the end of the previous answer (the template's end-of-turn text) and the new message were prefilled.
    EXPECT_LT(second->promptTokens, usedAfterFirst);
    EXPECT_EQ(second->recall.roundsTotal, 2);
    EXPECT_EQ(second->recall.recalled.size(), 2u);
    ASSERT_EQ(s->rounds().size(), 3u);
    EXPECT_EQ(s->rounds()[2].firstPosition,
              static_cast<int>(s->rounds()[0].tokens.size() + s->rounds()[1].tokens.size()));
}

TEST(Session, CancelStopsBetweenTokens) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    SessionOptions o = greedyOptions(200);
    o.sampler.temperature = 1.0f;
    o.sampler.seed = 5;
    std::unique_ptr<Session> s = createSession(*model, o);
    ASSERT_TRUE(s);
    int pieces = 0;
    Result<GenerationResult> r = s->send("Go on.", [&](std::string_view) {
        if (++pieces == 3)
            s->cancel();
        return true;
    });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->stopReason, StopReason::Cancelled);
    EXPECT_EQ(pieces, 3);
    EXPECT_LT(r->tokens.size(), 10u);
    // The next turn runs normally (cancel is reset).
    Result<GenerationResult> next = s->send("Again.", {});
    ASSERT_TRUE(next.ok());
    EXPECT_NE(next->stopReason, StopReason::Cancelled);
    // A callback returning false stops too.
    Result<GenerationResult> cb = s->send("More.", [](std::string_view) { return false; });
    ASSERT_TRUE(cb.ok());
    EXPECT_EQ(cb->stopReason, StopReason::CallbackStop);
}

TEST(Session, StopStringsNeverLeak) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    // Find what greedy decoding says, then stop on a two-character string from the middle of it.
    std::unique_ptr<Session> probe = createSession(*model, greedyOptions(60));
    ASSERT_TRUE(probe);
    Result<GenerationResult> full = probe->send("Tell me about Lily.", {});
    ASSERT_TRUE(full.ok());
    ASSERT_GT(full->text.size(), 20u);
    const std::string stop = full->text.substr(full->text.size() / 2, 2);
    const std::string expected = full->text.substr(0, full->text.find(stop));

    SessionOptions o = greedyOptions(60);
    o.stopStrings = {stop};
    std::unique_ptr<Session> s = createSession(*model, o);
    ASSERT_TRUE(s);
    std::string streamed;
    Result<GenerationResult> r = s->send("Tell me about Lily.", [&](std::string_view p) {
        streamed += p;
        return true;
    });
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->stopReason, StopReason::StopString);
    EXPECT_EQ(r->text, expected);
    EXPECT_EQ(streamed, expected);
    EXPECT_EQ(streamed.find(stop), std::string::npos);
}

TEST(Session, RegenerateReplacesTheLastAnswer) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    std::unique_ptr<Session> s = createSession(*model, greedyOptions(24));
    ASSERT_TRUE(s);
    EXPECT_FALSE(s->regenerate({}).ok());  // nothing to regenerate yet
    Result<GenerationResult> first = s->send("Once there was a dog.", {});
    ASSERT_TRUE(first.ok());
    const ContextUsage usage = s->contextUsage();
    // Greedy: the same answer again, from the same cached prompt (only its last token is re-fed).
    Result<GenerationResult> again = s->regenerate({});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->tokens, first->tokens);
    EXPECT_EQ(again->text, first->text);
    EXPECT_EQ(again->promptTokens, 1);
    EXPECT_EQ(s->contextUsage().usedTokens, usage.usedTokens);
    EXPECT_EQ(s->rounds().size(), 2u);
    // Sampling with another seed gives another answer, which replaces the old one.
    SessionOptions o = s->options();
    o.sampler.temperature = 1.0f;
    o.sampler.seed = 99;
    ASSERT_TRUE(s->setOptions(o).ok());
    Result<GenerationResult> other = s->regenerate({});
    ASSERT_TRUE(other.ok());
    EXPECT_NE(other->tokens, first->tokens);
    EXPECT_EQ(s->rounds().back().answerText, other->text);
}

TEST(Session, TruncateDropsRoundsAndResendIsDeterministic) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    std::unique_ptr<Session> s = createSession(*model, greedyOptions(16));
    ASSERT_TRUE(s);
    ASSERT_TRUE(s->send("First.", {}).ok());
    const std::vector<int32_t> closedFirst = s->rounds()[1].tokens;
    Result<GenerationResult> second = s->send("Second.", {});
    ASSERT_TRUE(second.ok());
    EXPECT_EQ(s->rounds()[1].tokens, closedFirst);  // closed after its answer: the next send added nothing to it
    // Rounds 0 and 1 as cached now (round 1 was closed with the template's end-of-turn text after its answer).
    const int usedByFirst = static_cast<int>(s->rounds()[0].tokens.size() + s->rounds()[1].tokens.size());
    ASSERT_TRUE(s->send("Third.", {}).ok());
    EXPECT_EQ(s->rounds().size(), 4u);
    EXPECT_FALSE(s->truncate(5).ok());
    ASSERT_TRUE(s->truncate(2).ok());
    EXPECT_EQ(s->rounds().size(), 2u);
    EXPECT_EQ(s->contextUsage().usedTokens, usedByFirst);
    Result<GenerationResult> resent = s->send("Second.", {});
    ASSERT_TRUE(resent.ok());
    EXPECT_EQ(resent->tokens, second->tokens);
    // Both prefilled only the question: round 1 was closed after its answer and stayed cached.
    EXPECT_EQ(resent->promptTokens, second->promptTokens);
    ASSERT_TRUE(s->truncate(0).ok());
    EXPECT_EQ(s->contextUsage().usedTokens, 0);
    Result<GenerationResult> fresh = s->send("First.", {});
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ(s->rounds().size(), 2u);
}

TEST(Session, ContextLimits) {
    std::unique_ptr<Model> model = loadModel(96);
    ASSERT_TRUE(model);
    SessionOptions o = greedyOptions(200);
    o.systemPrompt.clear();
    std::unique_ptr<Session> s = createSession(*model, o);
    ASSERT_TRUE(s);
    // The prompt alone does not fit: an error before any prefill, nothing changes.
    Result<GenerationResult> tooLong = s->send(std::string(400, 'a'), {});
    ASSERT_FALSE(tooLong.ok());
    EXPECT_EQ(tooLong.error().code, ErrorCode::ContextFull);
    EXPECT_TRUE(s->rounds().empty());
    EXPECT_EQ(s->contextUsage().usedTokens, 0);
    // The answer fills the context: generation stops with ContextFull.
    Result<GenerationResult> r = s->send("Hi.", {});
    ASSERT_TRUE(r.ok()) << r.error().toString();
    EXPECT_EQ(r->stopReason, StopReason::ContextFull);
    EXPECT_EQ(s->contextUsage().usedTokens, 96);
}

// A chat of several rounds with short answers, in the given KV mode; returns the last answer's report.
RecallReport lastReportOfLongChat(const Model& model, KvMode mode) {
    SessionOptions o = greedyOptions(12);
    o.rounds.mode = mode;
    o.rounds.maxRecalledRounds = 1;
    o.rounds.recallMass = 0.5f;
    std::unique_ptr<Session> s = createSession(model, o);
    if (!s)
        return {};
    const char* questions[] = {"Tell me about a cat.", "Where did the dog go?", "The sun was hot.",
                               "Lily had a red ball and a big blue box.", "Tim ran to the park.",
                               "What did the cat say?"};
    RecallReport last;
    for (const char* q : questions) {
        Result<GenerationResult> r = s->send(q, {});
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().toString());
        if (!r.ok())
            return {};
        last = r->recall;
    }
    return last;
}

TEST(Session, RoundAttentionModeRecallsPinnedRoundsAndHoldsLessKv) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    const RecallReport ra = lastReportOfLongChat(*model, KvMode::RoundAttention);
    EXPECT_EQ(ra.mode, KvMode::RoundAttention);
    EXPECT_EQ(ra.roundsTotal, 6);
    std::vector<int> recalled;
    for (const RecalledRound& r : ra.recalled) recalled.push_back(r.round);
    EXPECT_NE(std::find(recalled.begin(), recalled.end(), 0), recalled.end());  // the system prompt
    EXPECT_NE(std::find(recalled.begin(), recalled.end(), 5), recalled.end());  // the latest round
    EXPECT_LT(recalled.size(), 6u);
    EXPECT_GT(ra.kvBytesFull, 0u);
    EXPECT_LT(ra.kvBytesInVram, ra.kvBytesFull);

    const RecallReport full = lastReportOfLongChat(*model, KvMode::FullKv);
    EXPECT_EQ(full.mode, KvMode::FullKv);
    ASSERT_EQ(full.recalled.size(), 6u);
    for (int r = 0; r < 6; ++r) EXPECT_EQ(full.recalled[static_cast<size_t>(r)].round, r);
    EXPECT_GT(full.kvBytesFull, 0u);
    EXPECT_EQ(full.kvBytesInVram, full.kvBytesFull);
}

TEST(Session, ExportImportGivesTheSameContinuation) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    std::unique_ptr<Session> a = createSession(*model, greedyOptions(20));
    ASSERT_TRUE(a);
    ASSERT_TRUE(a->send("Once upon a time.", {}).ok());
    ASSERT_TRUE(a->send("And then?", {}).ok());

    std::unique_ptr<Session> b = createSession(*model, greedyOptions(20));
    ASSERT_TRUE(b);
    for (const RoundInfo& info : a->rounds()) {
        Result<RoundKvSnapshot> snap = a->exportRound(info.index);
        ASSERT_TRUE(snap.ok());
        EXPECT_EQ(snap->modelFingerprint, model->fingerprint());
        EXPECT_EQ(snap->tokenCount, static_cast<int>(info.tokens.size()));
        RoundKvSnapshot wrong = *snap;
        wrong.modelFingerprint = "other";
        EXPECT_EQ(b->importRound(info, wrong).error().code, ErrorCode::Mismatch);
        ASSERT_TRUE(b->importRound(info, *snap).ok());
    }
    EXPECT_EQ(b->contextUsage().usedTokens, a->contextUsage().usedTokens);

    SessionOptions sampled = greedyOptions(30);
    sampled.sampler.temperature = 1.0f;
    sampled.sampler.seed = 77;
    ASSERT_TRUE(a->setOptions(sampled).ok());
    ASSERT_TRUE(b->setOptions(sampled).ok());
    Result<GenerationResult> ra = a->send("What did the bird say?", {});
    Result<GenerationResult> rb = b->send("What did the bird say?", {});
    ASSERT_TRUE(ra.ok() && rb.ok());
    EXPECT_EQ(ra->tokens, rb->tokens);
    EXPECT_EQ(ra->text, rb->text);
    EXPECT_EQ(ra->promptTokens, rb->promptTokens);  // the restored rounds were reused, not prefilled again
}

}  // namespace
}  // namespace inference
