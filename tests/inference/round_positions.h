// Helpers of the tests on conversations past the trained context (round_positions_test.cpp on the CPU,
// round_positions_gpu_test.cpp CUDA against the CPU): story conversations, copying rounds between contexts at new
// positions, and the scene of the KvView delta tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/inference/fixtures.h"
#include "inference/backend.h"
#include "inference/generation.h"
#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/round_bench.h"

namespace inference::test {

// What stories260K was trained on; its GGUF states 2048. Pipeline tests give RoundAttention a config copy with this.
inline constexpr int kSmallContext = 512;

inline std::unique_ptr<Model> loadStories(BackendKind kind, int contextLength = 0) {
    return loadModel(kStoriesModelPath, kind, contextLength);
}

inline std::unique_ptr<BackendContext> newContext(const Model& model, int capacity) {
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(capacity);
    EXPECT_TRUE(ctx.ok()) << (ctx.ok() ? "" : ctx.error().toString());
    return ctx.ok() ? std::move(*ctx) : nullptr;
}

inline std::vector<float> logitsOf(BackendContext& ctx) {
    Result<std::span<const float>> l = ctx.logits();
    EXPECT_TRUE(l.ok()) << (l.ok() ? "" : l.error().toString());
    return l.ok() ? std::vector<float>(l->begin(), l->end()) : std::vector<float>{};
}

inline float maxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0.0f;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

// One generated story conversation of about maxTokens tokens (round_bench.h).
inline TokenConversation story(const Model& model, int maxTokens, uint64_t seed) {
    StoryGenOptions o;
    o.conversations = 1;
    o.maxTokens = maxTokens;
    o.seed = seed;
    Result<std::vector<BenchConversation>> c = makeStoryConversations(model.tokenizer(), o);
    EXPECT_TRUE(c.ok() && !c->empty());
    return c.ok() && !c->empty() ? c->front().rounds : TokenConversation{};
}

// Every round's KV over all layers, to check that nothing rewrote the stored keys.
inline std::vector<std::vector<uint8_t>> snapshotBytesOf(const BackendContext& ctx, int rounds, int nLayers) {
    std::vector<std::vector<uint8_t>> out;
    for (int r = 0; r < rounds; ++r) {
        Result<RoundKvSnapshot> s = ctx.exportRound(r, 0, nLayers);
        EXPECT_TRUE(s.ok());
        out.push_back(s.ok() ? s->bytes : std::vector<uint8_t>{});
    }
    return out;
}

// Appends round r of `from` to `to` at firstPosition `at`, keys re-rotated there.
inline void copyRound(const BackendContext& from, int r, BackendContext& to, int at, const ModelConfig& c) {
    Result<RoundKvSnapshot> snap = from.exportRound(r, 0, c.nLayers);
    ASSERT_TRUE(snap.ok());
    ASSERT_TRUE(shiftSnapshotPositions(*snap, c, from.rounds().round(r).firstPosition, at).ok());
    ASSERT_TRUE(to.importRound(*snap, at).ok());
}

// Runs one batch through every layer with one view; returns every token's logits (empty on failure).
inline std::vector<float> forwardWithView(BackendContext& ctx, std::span<const int32_t> tokens, const KvView& view,
                                          int nLayers) {
    EXPECT_TRUE(ctx.begin(ForwardBatch{tokens, true}).ok());
    const Status st = ctx.runLayers(0, nLayers, view);
    EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().toString());
    return st.ok() ? logitsOf(ctx) : std::vector<float>{};
}

// Feeds rounds [0, upTo) of a conversation (the question, then the answer token by token) through the pipeline.
inline void runRounds(BackendContext& ctx, RoundAttention& ra, const TokenConversation& conv, size_t upTo) {
    for (size_t k = 0; k < upTo; ++k) {
        ASSERT_TRUE(ctx.beginRound().ok());
        const Status q = ra.prefill(ctx, conv[k].question);
        ASSERT_TRUE(q.ok()) << "round " << k << ": " << (q.ok() ? "" : q.error().toString());
        for (int32_t t : conv[k].answer) {
            const int32_t one[1] = {t};
            ASSERT_TRUE(ra.forward(ctx, ForwardBatch{one}).ok()) << "round " << k;
        }
    }
}

// Positions a view spans once packed: its rounds' tokens plus the batch's round.
inline int packedSpan(const BackendContext& ctx, const RoundView& view) {
    int n = ctx.rounds().rounds().back().tokenCount;
    for (int r : view.rounds) n += ctx.rounds().round(r).tokenCount;
    return n;
}

// The scene of the delta tests: the past rounds of `conv` (all but the last) 3000 positions apart in `far` (wider
// than the trained context of 2048), the last round begun there; `view` (rounds 0, 2 and the newest past round) with
// `deltas` packing them to end where that round begins; `packed` holds the same three rounds at the packed
// positions (counted from 0) with its last round begun right after them.
struct MovedRounds {
    std::unique_ptr<BackendContext> far;
    std::unique_ptr<BackendContext> packed;
    std::vector<int> view;
    std::vector<int> deltas;
};

inline void moveRounds(const Model& model, const TokenConversation& conv, MovedRounds& out) {
    const ModelConfig& c = model.config();
    const int past = static_cast<int>(conv.size()) - 1;
    ASSERT_GE(past, 4);
    std::unique_ptr<BackendContext> direct = newContext(model, 4096);
    ASSERT_TRUE(direct);
    for (int r = 0; r < past; ++r) {
        const TokenRound& round = conv[static_cast<size_t>(r)];
        std::vector<int32_t> tokens = round.question;
        tokens.insert(tokens.end(), round.answer.begin(), round.answer.end());
        ASSERT_TRUE(direct->beginRound().ok());
        ASSERT_TRUE(prefill(*direct, tokens, c.nLayers, false).ok());
    }
    out.far = newContext(model, 4096);
    ASSERT_TRUE(out.far);
    for (int r = 0; r < past; ++r) ASSERT_NO_FATAL_FAILURE(copyRound(*direct, r, *out.far, 3000 * r, c));
    ASSERT_TRUE(out.far->beginRound().ok());
    const KvRoundTable& far = out.far->rounds();
    const int ownFirst = far.round(past).firstPosition;
    ASSERT_GT(ownFirst, c.contextLength);

    out.view = {0, 2, past - 1};
    out.deltas.assign(out.view.size(), 0);
    int next = ownFirst;
    for (size_t i = out.view.size(); i-- > 0;) {
        next -= far.round(out.view[i]).tokenCount;
        out.deltas[i] = next - far.round(out.view[i]).firstPosition;
    }
    out.packed = newContext(model, 4096);
    ASSERT_TRUE(out.packed);
    for (size_t i = 0; i < out.view.size(); ++i)
        ASSERT_NO_FATAL_FAILURE(copyRound(*out.far, out.view[i], *out.packed,
                                          far.round(out.view[i]).firstPosition + out.deltas[i] - next, c));
    ASSERT_TRUE(out.packed->beginRound().ok());
    ASSERT_EQ(out.packed->rounds().nextPosition(), ownFirst - next);
}

}  // namespace inference::test
