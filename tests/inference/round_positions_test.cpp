// Conversations longer than the trained context on stories260K through the CPU engine (backend.h "Positions",
// round_attention.cpp "Past the trained context"): a KvView that moves rounds by position deltas gives the logits of
// the same rounds computed at the moved positions, without changing the stored keys; the Round Attention pipeline
// windows and packs its views past the trained context and matches a conversation computed directly at the packed
// positions; full KV stops with ContextFull there; a chat session keeps answering past the trained context.
//
// The GGUF states a trained context of 2048 (llama.context_length); the pipeline tests give RoundAttention a copy of
// the config with 512 (what stories260K was trained on) to keep conversations short. Tolerance: float32 logits of
// the same maths in another rotation order, 1e-4 absolute (logits are O(10)).
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/inference/round_positions.h"

namespace inference {
namespace {

using namespace test;

constexpr float kTolerance = 1e-4f;

// Rounds at positions 3000 apart (wider than the trained context of 2048); a view of three of them with deltas that
// pack them before the batch's round equals the three rounds imported at those packed positions, for a prefill and
// for decode steps. Without the deltas the logits differ, and the stored keys never change.
TEST(RoundPositions, KvViewDeltasEqualRoundsComputedAtShiftedPositions) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu);
    ASSERT_TRUE(model);
    const ModelConfig& c = model->config();
    const TokenConversation conv = story(*model, 500, 7);
    MovedRounds m;
    ASSERT_NO_FATAL_FAILURE(moveRounds(*model, conv, m));
    BackendContext& far = *m.far;
    const int past = far.rounds().roundCount() - 1;
    const std::vector<int>& view = m.view;
    const std::vector<int>& deltas = m.deltas;
    EXPECT_NE(deltas[0], 0);

    const std::vector<std::vector<uint8_t>> before = snapshotBytesOf(far, past, c.nLayers);
    const std::vector<int32_t>& question = conv.back().question;
    // Stored positions: the same rounds 3000 positions apart give other logits. The batch is then dropped again.
    const std::vector<float> unmoved = forwardWithView(far, question, KvView{false, view}, c.nLayers);
    ASSERT_TRUE(far.dropTail(static_cast<int>(question.size())).ok());

    const std::vector<float> want = forwardWithView(*m.packed, question, KvView{}, c.nLayers);
    const std::vector<float> got = forwardWithView(far, question, KvView{false, view, deltas}, c.nLayers);
    ASSERT_EQ(got.size(), question.size() * static_cast<size_t>(c.nVocab));
    float worst = maxAbsDiff(got, want);
    EXPECT_GT(maxAbsDiff(unmoved, want), 1e-2f);
    for (int32_t t : conv.back().answer) {
        const int32_t one[1] = {t};
        const std::vector<float> w = forwardWithView(*m.packed, one, KvView{}, c.nLayers);
        worst = std::max(worst, maxAbsDiff(forwardWithView(far, one, KvView{false, view, deltas}, c.nLayers), w));
    }
    EXPECT_LE(worst, kTolerance);
    std::printf("[moved view] max |moved - imported at the packed positions| %.2e, unmoved %.3f\n", worst,
                maxAbsDiff(unmoved, want));
    EXPECT_EQ(snapshotBytesOf(far, past, c.nLayers), before);

    // Deltas that do not match the rounds, or move a round into the batch's own, are refused.
    const int32_t one[1] = {1};
    ASSERT_TRUE(far.begin(ForwardBatch{one}).ok());
    const std::vector<int> tooFar = {deltas[0], deltas[1], deltas[2] + 1};
    EXPECT_EQ(far.runLayers(0, c.nLayers, KvView{false, view, tooFar}).error().code, ErrorCode::InvalidArgument);
    EXPECT_EQ(far.runLayers(0, c.nLayers, KvView{false, view, std::span(deltas).first(2)}).error().code,
              ErrorCode::InvalidArgument);
}

// Round Attention recalling every round of its window, past a trained context of 512: the lower layers see round 0
// and the newest rounds, packed; the logits equal those rounds computed directly at contiguous positions; the stored
// keys are unchanged; decoding on slides the window and keeps answering.
TEST(RoundPositions, RoundAttentionPastTrainedContextEqualsPackedConversation) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu);
    ASSERT_TRUE(model);
    ModelConfig small = model->config();
    small.contextLength = kSmallContext;
    const TokenConversation conv = story(*model, 1400, 21);
    ASSERT_GE(conv.size(), 6u);
    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    o.keepLatestRounds = 1000;  // every round of the window pinned: the upper layers see the lower layers' window
    RoundAttention ra(small, o);
    std::unique_ptr<BackendContext> ctx = newContext(*model, 4096);
    ASSERT_NO_FATAL_FAILURE(runRounds(*ctx, ra, conv, conv.size() - 1));
    const int past = ctx->rounds().roundCount();
    ASSERT_GT(ctx->rounds().tokenCount(), 2 * kSmallContext);
    const std::vector<std::vector<uint8_t>> before = snapshotBytesOf(*ctx, past, small.nLayers);

    ASSERT_TRUE(ctx->beginRound().ok());
    ASSERT_TRUE(ra.prefill(*ctx, conv.back().question).ok());
    const std::vector<float> got = logitsOf(*ctx);
    const TurnDiagnostics& d = ra.diagnostics();
    EXPECT_TRUE(d.spanBeyondContext);
    const RoundView window = d.lowerView;
    ASSERT_GE(window.rounds.size(), 2u);
    EXPECT_EQ(window.rounds.front(), 0);
    EXPECT_EQ(window.rounds.back(), past - 1);
    EXPECT_LT(static_cast<int>(window.rounds.size()), past);  // older rounds left the window
    ASSERT_EQ(window.deltas.size(), window.rounds.size());
    EXPECT_NE(window.deltas.front(), 0);
    EXPECT_LE(packedSpan(*ctx, window), kSmallContext);
    EXPECT_EQ(d.upperView.rounds, window.rounds);
    EXPECT_EQ(d.upperView.deltas, window.deltas);
    EXPECT_EQ(snapshotBytesOf(*ctx, past, small.nLayers), before);

    // Directly: the window's rounds at contiguous positions from 0, then the question.
    std::unique_ptr<BackendContext> direct = newContext(*model, 4096);
    int at = 0;
    for (int r : window.rounds) {
        copyRound(*ctx, r, *direct, at, small);
        at += ctx->rounds().round(r).tokenCount;
    }
    ASSERT_TRUE(direct->beginRound().ok());
    ASSERT_TRUE(prefill(*direct, conv.back().question, small.nLayers, false).ok());
    const float diff = maxAbsDiff(got, logitsOf(*direct));
    EXPECT_LE(diff, kTolerance);
    std::printf("[window] %zu of %d past rounds, packed span %d, max |pipeline - direct| %.2e\n",
                window.rounds.size(), past, packedSpan(*ctx, window), diff);

    // Decoding on: equal while the window stays, then it slides (never past the trained context) and keeps going.
    bool slid = false;
    for (int i = 0; i < 120; ++i) {
        const int32_t one[1] = {static_cast<int32_t>(1 + i % 200)};
        ASSERT_TRUE(ra.forward(*ctx, ForwardBatch{one}).ok()) << "step " << i;
        EXPECT_LE(packedSpan(*ctx, ra.diagnostics().lowerView), kSmallContext);
        slid = slid || ra.diagnostics().lowerView.rounds != window.rounds;
        if (slid)
            continue;
        ASSERT_TRUE(forwardAll(*direct, ForwardBatch{one}, small.nLayers).ok());
        EXPECT_LE(maxAbsDiff(logitsOf(*ctx), logitsOf(*direct)), kTolerance) << "step " << i;
    }
    EXPECT_TRUE(slid);
    EXPECT_EQ(ra.diagnostics().lowerView.rounds.front(), 0);
    EXPECT_EQ(snapshotBytesOf(*ctx, past, small.nLayers), before);
}

// Inter-layer sharing does not handle packed views: while the conversation fits the trained context a sharing
// pipeline reports shared key bytes; past it, it attends exactly and reports none, instead of failing.
TEST(RoundPositions, SharingAttendsExactlyOncePacked) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu);
    ASSERT_TRUE(model);
    ModelConfig small = model->config();
    small.contextLength = kSmallContext;
    const TokenConversation conv = story(*model, 1400, 21);
    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    o.sharing.enabled = true;
    o.sharing.sinkTokens = 4;
    o.sharing.windowTokens = 64;
    o.sharing.groupStarts = {0, 1, 3};
    RoundAttention ra(small, o);
    std::unique_ptr<BackendContext> ctx = newContext(*model, 4096);
    bool sharedBeforeContext = false;
    for (size_t k = 0; k < conv.size(); ++k) {
        ASSERT_NO_FATAL_FAILURE(runRounds(*ctx, ra, TokenConversation(conv.begin() + k, conv.begin() + k + 1), 1));
        const RecallReport r = ra.report(*ctx);
        const uint64_t placed = ctx->placementStats().deviceBytes;
        if (ra.diagnostics().spanBeyondContext)
            EXPECT_EQ(r.kvBytesInVram, placed) << "round " << k;
        else
            sharedBeforeContext = sharedBeforeContext || r.kvBytesInVram < placed;
    }
    EXPECT_TRUE(ra.diagnostics().spanBeyondContext);
    EXPECT_TRUE(sharedBeforeContext);
}

// The default policy past the trained context: the upper layers see the selection inside the window, packed; the
// report recalls only rounds the lower layers could score.
TEST(RoundPositions, SelectionStaysInsideTheWindow) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu);
    ASSERT_TRUE(model);
    ModelConfig small = model->config();
    small.contextLength = kSmallContext;
    const TokenConversation conv = story(*model, 1400, 23);
    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    o.maxRecalledRounds = 2;
    RoundAttention ra(small, o);
    std::unique_ptr<BackendContext> ctx = newContext(*model, 4096);
    ASSERT_NO_FATAL_FAILURE(runRounds(*ctx, ra, conv, conv.size()));
    ASSERT_GT(ctx->rounds().tokenCount(), 2 * kSmallContext);
    const TurnDiagnostics& d = ra.diagnostics();
    EXPECT_TRUE(d.spanBeyondContext);
    EXPECT_TRUE(std::includes(d.lowerView.rounds.begin(), d.lowerView.rounds.end(), d.upperView.rounds.begin(),
                              d.upperView.rounds.end()));
    EXPECT_FALSE(d.upperView.deltas.empty());  // round 0 is pinned: the upper view spans past 512 unpacked
    EXPECT_LE(packedSpan(*ctx, d.upperView), kSmallContext);
    for (const RecalledRound& r : ra.report(*ctx).recalled)
        EXPECT_TRUE(std::binary_search(d.lowerView.rounds.begin(), d.lowerView.rounds.end(), r.round)) << r.round;
}

// Full KV cannot show the model more than it was trained on: the batch that would pass it fails with ContextFull
// and leaves the cache as it was. A round too long for the trained context fails in Round Attention mode too.
TEST(RoundPositions, FullKvPastTrainedContextIsContextFull) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu);
    ASSERT_TRUE(model);
    ModelConfig small = model->config();
    small.contextLength = kSmallContext;
    const TokenConversation conv = story(*model, 1400, 21);
    RoundAttention full(small, RoundAttentionOptions{});
    std::unique_ptr<BackendContext> ctx = newContext(*model, 4096);
    Status failed;
    for (size_t k = 0; k < conv.size() && failed.ok(); ++k) {
        ASSERT_TRUE(ctx->beginRound().ok());
        std::vector<int32_t> tokens = conv[k].question;
        tokens.insert(tokens.end(), conv[k].answer.begin(), conv[k].answer.end());
        for (size_t i = 0; i < tokens.size() && failed.ok(); ++i) {
            const int before = ctx->rounds().tokenCount();
            failed = full.forward(*ctx, ForwardBatch{std::span(tokens).subspan(i, 1)});
            if (!failed.ok()) {
                EXPECT_EQ(ctx->rounds().tokenCount(), before);
                EXPECT_EQ(before, kSmallContext);
            }
        }
    }
    ASSERT_FALSE(failed.ok());
    EXPECT_EQ(failed.error().code, ErrorCode::ContextFull);

    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    RoundAttention ra(small, o);
    std::unique_ptr<BackendContext> fresh = newContext(*model, 4096);
    ASSERT_TRUE(fresh->beginRound().ok());
    ASSERT_TRUE(ra.prefill(*fresh, conv[0].question).ok());
    ASSERT_TRUE(fresh->beginRound().ok());
    const std::vector<int32_t> longRound(static_cast<size_t>(kSmallContext), 5);
    const Status tooLong = ra.prefill(*fresh, longRound);
    ASSERT_FALSE(tooLong.ok());
    EXPECT_EQ(tooLong.error().code, ErrorCode::ContextFull);
}

// A chat session past the model's own trained context (2048, with a KV capacity of 4096): Round Attention keeps
// answering; full KV reports ContextFull without keeping the question that did not fit.
TEST(RoundPositions, SessionKeepsAnsweringPastTrainedContext) {
    std::unique_ptr<Model> model = loadStories(BackendKind::Cpu, 4096);
    ASSERT_TRUE(model);
    const int trained = model->config().contextLength;
    for (KvMode mode : {KvMode::RoundAttention, KvMode::FullKv}) {
        SessionOptions o;
        o.systemPrompt = "You tell short stories.";
        o.sampler.temperature = 0.0f;
        o.maxNewTokens = 48;
        o.rounds.mode = mode;
        Result<std::unique_ptr<Session>> s = Session::create(*model, o);
        ASSERT_TRUE(s.ok());
        Session& session = **s;
        Result<GenerationResult> last = makeError(ErrorCode::InvalidArgument, "nothing sent");
        for (int i = 0; i < 200 && session.contextUsage().usedTokens < trained + 256; ++i) {
            const size_t roundsBefore = session.rounds().size();
            last = session.send("Tell me what Lily did next with the red ball in the park.", {});
            if (!last.ok()) {
                EXPECT_EQ(session.rounds().size(), roundsBefore);
                break;
            }
        }
        if (mode == KvMode::RoundAttention) {
            ASSERT_TRUE(last.ok()) << last.error().toString();
            EXPECT_GT(session.contextUsage().usedTokens, trained + 256);
            EXPECT_EQ(last->recall.mode, KvMode::RoundAttention);
        } else {
            ASSERT_FALSE(last.ok());
            EXPECT_EQ(last.error().code, ErrorCode::ContextFull);
            EXPECT_LE(session.contextUsage().usedTokens, trained);
        }
    }
}

}  // namespace
}  // namespace inference
