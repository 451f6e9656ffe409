// Inter-layer KV sharing (inference/kv_sharing.h) on the CUDA backend against the CPU backend, its reference:
// stories260K (F32 weights, so a float32 KV cache on the GPU) fed a story conversation through the same
// BackendContext calls on both, with 4 sink tokens and a 24-token window so that most keys are distant, including
// tokens of the same prefill batch (64 tokens) for its later queries. Batches: prefill (cuBLAS), two tokens (GEMV)
// and one token (split-K decode). Setups: both variants, in full KV (groups {0}, {1, 2}, {3, 4}) and under a Round
// Attention placement with the watershed at layer 3 (upper layers recalled per batch, round 0 and the previous round
// only, so upper views hide rounds), once with both layers of a group above the watershed (keys read in the device
// pool) and once with a group {1, 2, 3} that crosses it (the leader's keys gathered from the lower cache). Asserted:
// logits after every question within 1e-3 of the CPU logits' range, and the round scores of a layer that does not
// lead its group within 1e-3 of their total. A sharing-free CPU run shows the comparison can fail: sharing moves the
// logits by far more than the tolerance.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "inference/backend.h"
#include "inference/kv_sharing.h"
#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/round_bench.h"
#include "tests/inference/fixtures.h"

namespace inference {
namespace {

using test::loadModel;

constexpr int kSinkTokens = 4;
constexpr int kWindowTokens = 24;
constexpr int kPrefillBatch = 64;
constexpr float kTolerance = 1e-3f;

struct SharingSetup {
    const char* name;
    std::vector<int> groupStarts;
    KvSharingVariant variant;
    int watershed;  // 0: full KV
};

struct Trace {
    std::vector<std::vector<float>> logits;  // after each round's question
    std::vector<std::vector<float>> scores;  // round scores of the question's last batch at the scored layer
};

// One batch: layers below the watershed over every round, the upper layers over round 0 and the previous round
// (and the batch's own). With watershed == nLayers, every layer over every round.
Status runBatch(BackendContext& ctx, std::span<const int32_t> tokens, const KvSharingPlan& plan, int watershed,
                bool record) {
    ForwardBatch batch;
    batch.tokens = tokens;
    batch.recordRoundScores = record;
    batch.sharing = &plan;
    RC_TRY(ctx.begin(batch));
    RC_TRY(ctx.runLayers(0, watershed, KvView{}));
    if (watershed == plan.nLayers())
        return {};
    const int last = ctx.rounds().roundCount() - 1;
    std::vector<int> upper;
    if (last >= 1)
        upper.push_back(0);
    if (last >= 2)
        upper.push_back(last - 1);
    return ctx.runLayers(watershed, plan.nLayers(), KvView{false, upper, {}});
}

// Feeds `tokens` as batches of the given sizes (the last repeated until the end); records scores on the last one.
Status feed(BackendContext& ctx, const std::vector<int32_t>& tokens, std::vector<int> sizes, const KvSharingPlan& plan,
            int watershed, bool record) {
    size_t at = 0;
    for (size_t i = 0; at < tokens.size(); ++i) {
        const size_t n = std::min(tokens.size() - at, static_cast<size_t>(sizes[std::min(i, sizes.size() - 1)]));
        RC_TRY(runBatch(ctx, std::span<const int32_t>(tokens).subspan(at, n), plan, watershed,
                        record && at + n == tokens.size()));
        at += n;
    }
    return {};
}

Trace run(const Model& model, const TokenConversation& conv, const SharingSetup& s) {
    const int nLayers = model.config().nLayers;
    const int watershed = s.watershed > 0 ? s.watershed : nLayers;
    KvSharingOptions options;
    options.enabled = true;
    options.sinkTokens = kSinkTokens;
    options.windowTokens = kWindowTokens;
    options.variant = s.variant;
    options.groupStarts = s.groupStarts;
    Result<KvSharingPlan> plan = makeKvSharingPlan(options, nLayers);
    EXPECT_TRUE(plan.ok());
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(512);
    EXPECT_TRUE(ctx.ok()) << (ctx.ok() ? "" : ctx.error().toString());
    Trace trace;
    if (!plan.ok() || !ctx.ok())
        return trace;
    BackendContext& c = **ctx;
    if (watershed < nLayers) {
        EXPECT_TRUE(c.setPlacement(watershed, 0).ok());
    }
    // Full KV: the last layer (not a leader in these setups); split: the layer the CUDA backend scores there.
    const int scored = watershed < nLayers ? watershed - 1 : nLayers - 1;
    for (const TokenRound& r : conv) {
        EXPECT_TRUE(c.beginRound().ok());
        const Status q = feed(c, r.question, {kPrefillBatch}, *plan, watershed, true);
        EXPECT_TRUE(q.ok()) << (q.ok() ? "" : q.error().toString());
        if (!q.ok())
            return trace;
        Result<std::span<const float>> l = c.logits();
        Result<std::vector<float>> sc = c.roundScores(scored);
        EXPECT_TRUE(l.ok() && sc.ok());
        if (!l.ok() || !sc.ok())
            return trace;
        trace.logits.emplace_back(l->begin(), l->end());
        trace.scores.push_back(*sc);
        const Status a = feed(c, r.answer, {1, 1, 2, kPrefillBatch}, *plan, watershed, false);
        EXPECT_TRUE(a.ok()) << (a.ok() ? "" : a.error().toString());
        if (!a.ok())
            return trace;
    }
    return trace;
}

// Largest |got - want| over the range of want.
float relativeToRange(const std::vector<float>& got, const std::vector<float>& want) {
    EXPECT_EQ(got.size(), want.size());
    const auto [lo, hi] = std::minmax_element(want.begin(), want.end());
    float worst = 0.0f;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) worst = std::max(worst, std::abs(got[i] - want[i]));
    return worst / std::max(*hi - *lo, 1e-6f);
}

TEST(KvSharingGpu, CudaLogitsAndRoundScoresMatchTheCpu) {
    std::unique_ptr<Model> cpu = loadModel(test::kStoriesModelPath, BackendKind::Cpu);
    std::unique_ptr<Model> gpu = loadModel(test::kStoriesModelPath, BackendKind::Cuda);
    ASSERT_TRUE(cpu && gpu);
    ASSERT_EQ(cpu->config().nLayers, 5);
    StoryGenOptions gen;
    gen.conversations = 1;
    Result<std::vector<BenchConversation>> convs = makeStoryConversations(cpu->tokenizer(), gen);
    ASSERT_TRUE(convs.ok());
    const TokenConversation& conv = convs->front().rounds;
    ASSERT_GE(conv.size(), 3u);

    const std::vector<SharingSetup> setups = {
        {"full KV, shared scores", {0, 1, 3}, KvSharingVariant::SharedScores, 0},
        {"full KV, shared keys", {0, 1, 3}, KvSharingVariant::SharedKeys, 0},
        {"Round Attention, shared scores", {0, 1, 3}, KvSharingVariant::SharedScores, 3},
        {"Round Attention, group across the watershed, shared scores", {0, 1, 4}, KvSharingVariant::SharedScores, 3},
        {"Round Attention, group across the watershed, shared keys", {0, 1, 4}, KvSharingVariant::SharedKeys, 3},
    };
    for (const SharingSetup& s : setups) {
        SCOPED_TRACE(s.name);
        const Trace want = run(*cpu, conv, s);
        const Trace got = run(*gpu, conv, s);
        ASSERT_EQ(want.logits.size(), conv.size());
        ASSERT_EQ(got.logits.size(), conv.size());
        for (size_t k = 0; k < conv.size(); ++k) {
            EXPECT_LE(relativeToRange(got.logits[k], want.logits[k]), kTolerance) << "round " << k;
            ASSERT_EQ(got.scores[k].size(), want.scores[k].size());
            const float total = std::accumulate(want.scores[k].begin(), want.scores[k].end(), 0.0f);
            for (size_t r = 0; r < want.scores[k].size(); ++r)
                EXPECT_NEAR(got.scores[k][r], want.scores[k][r], kTolerance * total) << "round " << k << " of " << r;
        }
        // Every layer its own group: full attention. Sharing must move the logits far beyond the tolerance, or the
        // comparison above would not notice a backend that ignores it.
        SharingSetup unshared = s;
        unshared.groupStarts = {0, 1, 2, 3, 4};
        const Trace full = run(*cpu, conv, unshared);
        ASSERT_EQ(full.logits.size(), conv.size());
        float moved = 0.0f;
        for (size_t k = 0; k < conv.size(); ++k)
            moved = std::max(moved, relativeToRange(want.logits[k], full.logits[k]));
        EXPECT_GT(moved, 10 * kTolerance);
    }
}

}  // namespace
}  // namespace inference
