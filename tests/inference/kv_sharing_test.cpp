// Inter-layer key sharing for distant tokens (inference/kv_sharing.h): the proximal/distant split merged by LSE is
// exactly attention over the union; one-layer groups change nothing on stories260K while real groups do; the
// Jensen-Shannon layer matrix and the grouping; calibrated groups saved and reloaded; the bytes a sharing session
// reports as saved; the lag-band split the CUDA backend computes equals the per-round reference.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/inference/fixtures.h"
#include "inference/backend.h"
#include "inference/calibration.h"
#include "inference/kv_sharing.h"
#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/round_bench.h"
#include "kernels/reference.h"

namespace inference {
namespace {

std::vector<float> randomVector(size_t n, std::mt19937& rng) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

std::unique_ptr<Model> loadModel() {
    LoadOptions options;
    options.backend = BackendKind::Cpu;
    options.threads = 2;
    Result<std::unique_ptr<Model>> model = Model::load(test::kStoriesModelPath, options);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().toString());
    return model.ok() ? std::move(*model) : nullptr;
}

KvSharingPlan plan(int sink, int window, std::vector<int> starts, int nLayers) {
    KvSharingOptions o;
    o.sinkTokens = sink;
    o.windowTokens = window;
    o.groupStarts = std::move(starts);
    Result<KvSharingPlan> p = makeKvSharingPlan(o, nLayers);
    EXPECT_TRUE(p.ok());
    return p.ok() ? *p : KvSharingPlan{};
}

TEST(KvSharing, PlanValidatesGroupsAndCountsSharedLayers) {
    const KvSharingPlan p = plan(4, 16, {0, 2}, 5);
    EXPECT_EQ(p.leader, (std::vector<int>{0, 0, 2, 2, 2}));
    EXPECT_EQ(p.sharedLayers(0, 5), 3);
    EXPECT_EQ(p.sharedLayers(2, 5), 2);
    EXPECT_EQ(plan(4, 16, {}, 3).sharedLayers(0, 3), 0);
    KvSharingOptions bad;
    bad.groupStarts = {1, 3};
    EXPECT_EQ(makeKvSharingPlan(bad, 5).error().code, ErrorCode::InvalidArgument);  // must start at 0
    bad.groupStarts = {0, 3, 3};
    EXPECT_FALSE(makeKvSharingPlan(bad, 5).ok());
    bad.groupStarts = {0, 5};
    EXPECT_FALSE(makeKvSharingPlan(bad, 5).ok());
    bad.groupStarts = {};
    bad.windowTokens = 0;
    EXPECT_FALSE(makeKvSharingPlan(bad, 5).ok());
}

TEST(KvSharing, LseMergeOfDisjointPartsEqualsAttentionOverTheUnion) {
    std::mt19937 rng(7);
    const int nQ = 3, nKv = 40, nHeads = 4, nKvHeads = 2, headDim = 8, split = 17;
    const float scale = 0.35f;
    const std::vector<float> q = randomVector(static_cast<size_t>(nQ * nHeads * headDim), rng);
    const std::vector<float> k = randomVector(static_cast<size_t>(nKv * nKvHeads * headDim), rng);
    const std::vector<float> v = randomVector(k.size(), rng);
    std::vector<int32_t> kvPos(nKv), qPos = {50, 60, 70};
    for (int j = 0; j < nKv; ++j) kvPos[static_cast<size_t>(j)] = j;
    std::vector<float> full(q.size()), a(q.size()), b(q.size()), lseFull(nQ * nHeads), lseA(lseFull.size()),
        lseB(lseFull.size());
    kernels::attentionRef(q.data(), k.data(), v.data(), full.data(), lseFull.data(), qPos.data(), kvPos.data(), nQ, nKv,
                          nHeads, nKvHeads, headDim, scale);
    const int64_t stride = nKvHeads * headDim;
    kernels::attentionRef(q.data(), k.data(), v.data(), a.data(), lseA.data(), qPos.data(), kvPos.data(), nQ, split,
                          nHeads, nKvHeads, headDim, scale);
    kernels::attentionRef(q.data(), k.data() + split * stride, v.data() + split * stride, b.data(), lseB.data(),
                          qPos.data(), kvPos.data() + split, nQ, nKv - split, nHeads, nKvHeads, headDim, scale);
    kernels::attentionMergeRef(a.data(), lseA.data(), b.data(), lseB.data(), nQ * nHeads, headDim);
    for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(a[i], full[i], 1e-5f) << i;
    for (size_t i = 0; i < lseFull.size(); ++i) EXPECT_NEAR(lseA[i], lseFull[i], 1e-5f) << i;
}

TEST(KvSharing, SplitIntoSinkWindowAndDistantEqualsFullAttentionWhenKeysAreOwn) {
    std::mt19937 rng(11);
    const AttentionShape shape{4, 2, 8, 0.3f};
    const int first = 2, count = 60, nQ = 6;  // a round at positions [2, 62); queries at its end (causal)
    const std::vector<float> k = randomVector(static_cast<size_t>(count * shape.nKvHeads * shape.headDim), rng);
    const std::vector<float> v = randomVector(k.size(), rng);
    const std::vector<float> q = randomVector(static_cast<size_t>(nQ * shape.nHeads * shape.headDim), rng);
    std::vector<int32_t> pos(count), qPos(nQ);
    for (int j = 0; j < count; ++j) pos[static_cast<size_t>(j)] = first + j;
    for (int i = 0; i < nQ; ++i) qPos[static_cast<size_t>(i)] = first + count - nQ + i;
    std::vector<float> full(q.size()), lseFull(static_cast<size_t>(nQ * shape.nHeads));
    kernels::attentionRef(q.data(), k.data(), v.data(), full.data(), lseFull.data(), qPos.data(), pos.data(), nQ, count,
                          shape.nHeads, shape.nKvHeads, shape.headDim, shape.scale);
    // Windows from "everything proximal" to "almost everything distant", sinks inside and outside the round.
    for (const auto& [sink, window] : std::vector<std::pair<int, int>>{{4, 8}, {0, 1}, {1, 30}, {16, 200}, {70, 3}}) {
        const KvSharingPlan p = plan(sink, window, {}, 1);
        const SharedRoundKv kv{k.data(), k.data(), v.data(), pos.data(), count};
        std::vector<float> out(q.size()), lse(lseFull.size()), scratch(q.size()), scratchLse(lse.size());
        sharedRoundAttention(q.data(), q.data(), qPos.data(), nQ, kv, p, shape, out.data(), lse.data(), scratch.data(),
                             scratchLse.data());
        for (size_t i = 0; i < full.size(); ++i) EXPECT_NEAR(out[i], full[i], 1e-5f) << "S " << sink << " W " << window;
        for (size_t i = 0; i < lse.size(); ++i) EXPECT_NEAR(lse[i], lseFull[i], 1e-5f) << "S " << sink << " W " << window;
    }
}

TEST(KvSharing, DistantPartReadsTheLeaderKeys) {
    std::mt19937 rng(13);
    const AttentionShape shape{2, 2, 8, 0.3f};
    const int count = 30;
    const std::vector<float> k = randomVector(static_cast<size_t>(count * shape.nKvHeads * shape.headDim), rng);
    const std::vector<float> leader = randomVector(k.size(), rng);
    const std::vector<float> v = randomVector(k.size(), rng);
    const std::vector<float> q = randomVector(static_cast<size_t>(shape.nHeads * shape.headDim), rng);
    std::vector<int32_t> pos(count);
    for (int j = 0; j < count; ++j) pos[static_cast<size_t>(j)] = j;
    const int32_t qPos = count - 1;
    const KvSharingPlan p = plan(2, 5, {}, 1);  // proximal: positions 0, 1 and 25..29; distant: 2..24
    // Reference: the three key sets by hand, the distant one with the leader's keys.
    std::vector<float> keys = k;
    const size_t tokenFloats = static_cast<size_t>(shape.nKvHeads * shape.headDim);
    std::copy(leader.begin() + 2 * tokenFloats, leader.begin() + 25 * tokenFloats, keys.begin() + 2 * tokenFloats);
    std::vector<float> expect(q.size()), lseExpect(2);
    kernels::attentionRef(q.data(), keys.data(), v.data(), expect.data(), lseExpect.data(), &qPos, pos.data(), 1, count,
                          shape.nHeads, shape.nKvHeads, shape.headDim, shape.scale);
    const SharedRoundKv kv{k.data(), leader.data(), v.data(), pos.data(), count};
    std::vector<float> out(q.size()), lse(2), scratch(q.size()), scratchLse(2);
    sharedRoundAttention(q.data(), q.data(), &qPos, 1, kv, p, shape, out.data(), lse.data(), scratch.data(),
                         scratchLse.data());
    for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], expect[i], 1e-5f);
    EXPECT_EQ(distantTokenCount(KvRound{0, 0, count}, p, count), 24);  // the next query, at position 30: 2..25
}

// Runs a story conversation through RoundAttention in full-KV mode; returns the logits after each question.
std::vector<std::vector<float>> runStories(const Model& model, const TokenConversation& conv,
                                           const KvSharingOptions& sharing) {
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(512);
    EXPECT_TRUE(ctx.ok());
    RoundAttentionOptions options;
    options.sharing = sharing;
    RoundAttention ra(model.config(), options);
    std::vector<std::vector<float>> out;
    for (const TokenRound& r : conv) {
        EXPECT_TRUE((*ctx)->beginRound().ok());
        EXPECT_TRUE(ra.prefill(**ctx, r.question).ok());
        Result<std::span<const float>> l = (*ctx)->logits();
        EXPECT_TRUE(l.ok());
        out.emplace_back(l->begin(), l->end());
        EXPECT_TRUE(ra.prefill(**ctx, r.answer).ok());
    }
    return out;
}

TEST(KvSharing, OneLayerGroupsLeaveStoriesLogitsUnchangedRealGroupsDoNot) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    StoryGenOptions gen;
    gen.conversations = 1;
    Result<std::vector<BenchConversation>> convs = makeStoryConversations(model->tokenizer(), gen);
    ASSERT_TRUE(convs.ok());
    const TokenConversation& conv = convs->front().rounds;
    const auto full = runStories(*model, conv, KvSharingOptions{});
    KvSharingOptions sharing;
    sharing.enabled = true;
    sharing.sinkTokens = 4;
    sharing.windowTokens = 32;  // most of the ~500 tokens become distant
    const auto single = runStories(*model, conv, sharing);
    sharing.groupStarts = {0};  // one group: every layer reads layer 0's distant keys/weights
    const auto grouped = runStories(*model, conv, sharing);
    ASSERT_EQ(full.size(), single.size());
    float worstSingle = 0.0f, worstGrouped = 0.0f;
    for (size_t k = 0; k < full.size(); ++k) {
        for (size_t i = 0; i < full[k].size(); ++i) {
            worstSingle = std::max(worstSingle, std::abs(full[k][i] - single[k][i]));
            worstGrouped = std::max(worstGrouped, std::abs(full[k][i] - grouped[k][i]));
        }
    }
    EXPECT_LT(worstSingle, 1e-4f);
    EXPECT_GT(worstGrouped, 1e-2f);  // sharing really is applied
}

TEST(KvSharing, JensenShannonMatrixOnKnownDistributions) {
    // Three layers, two samples each: layer 1 equals layer 0; layer 2 is disjoint in sample 0 and differs by a known
    // amount in sample 1. An empty sample is skipped.
    const std::vector<std::vector<std::vector<float>>> d = {
        {{1.0f, 0.0f}, {0.5f, 0.5f}, {}},
        {{1.0f, 0.0f}, {0.5f, 0.5f}, {}},
        {{0.0f, 1.0f}, {1.0f, 0.0f}, {}},
    };
    const std::vector<float> js = layerJsMatrix(d);
    ASSERT_EQ(js.size(), 9u);
    // JS([.5,.5], [1,0]) = 0.5 KL([.5,.5] || [.75,.25]) + 0.5 KL([1,0] || [.75,.25]), in nats; normalised by ln 2.
    const double m0 = 0.75, m1 = 0.25;
    const double half = 0.5 * (0.5 * std::log(0.5 / m0) + 0.5 * std::log(0.5 / m1)) + 0.5 * std::log(1.0 / m0);
    const float expected = static_cast<float>((1.0 + half / std::log(2.0)) / 2.0);  // mean of disjoint (1) and half
    EXPECT_NEAR(js[0 * 3 + 1], 0.0f, 1e-6f);
    EXPECT_NEAR(js[0 * 3 + 2], expected, 1e-5f);
    EXPECT_NEAR(js[2 * 3 + 0], expected, 1e-5f);
    EXPECT_NEAR(js[1 * 3 + 2], expected, 1e-5f);
    EXPECT_NEAR(js[1 * 3 + 1], 0.0f, 1e-6f);
    // Grouping against the group's first layer.
    EXPECT_EQ(chooseLayerGroups(js, 3, 0.1f), (std::vector<int>{0, 2}));
    EXPECT_EQ(chooseLayerGroups(js, 3, 0.9f), (std::vector<int>{0}));
    EXPECT_EQ(chooseLayerGroups(js, 3, -1.0f), (std::vector<int>{0, 1, 2}));
    // A chain of small steps does not grow one group past the threshold measured from its first layer.
    const std::vector<float> chain = {0.0f, 0.05f, 0.2f, 0.05f, 0.0f, 0.05f, 0.2f, 0.05f, 0.0f};
    EXPECT_EQ(chooseLayerGroups(chain, 3, 0.1f), (std::vector<int>{0, 2}));
}

TEST(KvSharing, CalibratedGroupsAreStoredAndReloaded) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    StoryGenOptions gen;
    gen.conversations = 3;
    Result<std::vector<BenchConversation>> convs = makeStoryConversations(model->tokenizer(), gen);
    ASSERT_TRUE(convs.ok());
    std::vector<TokenConversation> conversations;
    for (const BenchConversation& c : *convs) conversations.push_back(c.rounds);
    KvSharingCalibrationOptions options;
    options.sinkTokens = 4;
    options.windowTokens = 64;
    options.queries = 4;
    Result<KvSharingCalibration> cal = calibrateKvSharing(*model, conversations, options);
    ASSERT_TRUE(cal.ok()) << cal.error().toString();
    const int nLayers = model->config().nLayers;
    EXPECT_EQ(cal->nLayers, nLayers);
    EXPECT_EQ(cal->samples, 3 * options.queries * model->config().nHeads);
    ASSERT_EQ(cal->js.size(), static_cast<size_t>(nLayers * nLayers));
    for (int a = 0; a < nLayers; ++a) {
        EXPECT_EQ(cal->js[static_cast<size_t>(a * nLayers + a)], 0.0f);
        for (int b = 0; b < nLayers; ++b) {
            EXPECT_GE(cal->js[static_cast<size_t>(a * nLayers + b)], 0.0f);
            EXPECT_LE(cal->js[static_cast<size_t>(a * nLayers + b)], 1.0f);
        }
    }
    EXPECT_GT(cal->js[1], 0.0f);  // different layers attend differently
    EXPECT_EQ(cal->groupStarts, chooseLayerGroups(cal->js, nLayers, options.maxJs));

    const std::filesystem::path dir = std::filesystem::temp_directory_path() / "roundchat_kv_sharing_test";
    std::filesystem::remove_all(dir);
    ASSERT_TRUE(saveKvSharingCalibration(dir.string(), model->fingerprint(), *cal).ok());
    Result<KvSharingCalibration> back = loadKvSharingCalibration(dir.string(), model->fingerprint());
    ASSERT_TRUE(back.ok()) << back.error().toString();
    EXPECT_EQ(back->groupStarts, cal->groupStarts);
    EXPECT_EQ(back->sinkTokens, 4);
    EXPECT_EQ(back->windowTokens, 64);
    EXPECT_EQ(back->samples, cal->samples);
    ASSERT_EQ(back->js.size(), cal->js.size());
    for (size_t i = 0; i < cal->js.size(); ++i) EXPECT_NEAR(back->js[i], cal->js[i], 1e-5f);
    // The watershed calibration's file is a different one.
    EXPECT_EQ(loadCalibration(dir.string(), model->fingerprint()).error().code, ErrorCode::FileNotFound);
    EXPECT_EQ(kvSharingFromJson(kvSharingToJson(*cal, "other"), model->fingerprint()).error().code,
              ErrorCode::Mismatch);
    EXPECT_EQ(kvSharingFromJson("{\"fingerprint\": \"x\"}", "x").error().code, ErrorCode::CorruptFile);
    KvSharingCalibration broken = *cal;
    broken.groupStarts = {1};
    EXPECT_EQ(kvSharingFromJson(kvSharingToJson(broken, "x"), "x").error().code, ErrorCode::CorruptFile);
    std::filesystem::remove_all(dir);

    options.windowTokens = 4080;  // the default window: no distant token in a 512-token model
    EXPECT_EQ(calibrateKvSharing(*model, conversations, options).error().code, ErrorCode::InvalidArgument);
}

TEST(KvSharing, SessionReportsTheSavedKeyBytes) {
    std::unique_ptr<Model> model = loadModel();
    ASSERT_TRUE(model);
    const ModelConfig& c = model->config();
    ASSERT_GE(c.nLayers, 3);
    SessionOptions options;
    options.systemPrompt = "You tell short stories.";
    options.sampler.temperature = 0.0f;
    options.maxNewTokens = 40;
    options.rounds.sharing.enabled = true;
    options.rounds.sharing.sinkTokens = 4;
    options.rounds.sharing.windowTokens = 16;
    options.rounds.sharing.groupStarts = {0, 2};
    Result<std::unique_ptr<Session>> s = Session::create(*model, options);
    ASSERT_TRUE(s.ok());
    Result<GenerationResult> r = (*s)->send("Tell me a story about a cat and a dog who play in the park.", {});
    ASSERT_TRUE(r.ok()) << r.error().toString();
    // The report is taken after the answer, before the round's end-of-turn text is fed: its token count is what
    // full KV holds then.
    const uint64_t tokenLayerBytes = 2ull * static_cast<uint64_t>(c.kvDim()) * sizeof(float);
    ASSERT_EQ(r->recall.kvBytesFull % (tokenLayerBytes * c.nLayers), 0u);
    const int tokens = static_cast<int>(r->recall.kvBytesFull / (tokenLayerBytes * c.nLayers));
    ASSERT_GT(tokens, 4 + 16);
    EXPECT_LE(tokens, (*s)->contextUsage().usedTokens);
    // Positions 0..tokens-1; the next query sits at `tokens`: distant keys are positions [4, tokens - 16].
    const uint64_t distant = static_cast<uint64_t>(tokens - 16 - 4 + 1);
    const uint64_t sharedLayers = static_cast<uint64_t>(c.nLayers - 2);  // every layer but 0 and 2
    const uint64_t expected = distant * sharedLayers * tokenLayerBytes / 2;  // keys only
    EXPECT_EQ(r->recall.kvBytesFull - r->recall.kvBytesInVram, expected);
}

// The split of attention under inter-layer KV sharing that the CUDA backend computes (cuda_backend.cpp,
// sharedAttention) equals the CPU reference (kv_sharing.h, sharedRoundAttention per round, rounds merged by LSE):
// over the keys of every visible round at once, the sinks (each round's tokens at positions < sinkTokens) causally
// with the layer's own keys, the other keys in the lag band [0, W - 1] with the own keys and in [W, inf) with the
// leader's keys and the distant queries, the three merged by log-sum-exp (kernels::attentionRef's lag band, the
// band kernels::attention has on the GPU). Rounds: a short first round inside the sinks, a round that starts inside
// them, and the batch's round, whose first queries see later batch tokens' keys masked and earlier ones distant.

// Rows [rows) of a (count, width) matrix, in order.
std::vector<float> gather(const std::vector<float>& m, const std::vector<int>& rows, size_t width) {
    std::vector<float> out;
    for (int r : rows)
        out.insert(out.end(), m.begin() + r * static_cast<std::ptrdiff_t>(width),
                   m.begin() + (r + 1) * static_cast<std::ptrdiff_t>(width));
    return out;
}

TEST(KvSharingBands, LagBandSplitOverAllRoundsEqualsPerRoundReference) {
    std::mt19937 rng(21);
    const AttentionShape shape{4, 2, 8, 0.3f};
    const size_t kvWidth = static_cast<size_t>(shape.nKvHeads * shape.headDim);
    const size_t qWidth = static_cast<size_t>(shape.nHeads * shape.headDim);
    const std::vector<std::pair<int, int>> rounds = {{0, 3}, {3, 30}, {33, 40}};  // {firstPosition, count}
    const int nQ = 12;                                                            // the last round's last tokens
    int nKv = 0;
    for (const auto& [first, count] : rounds) nKv += count;
    const std::vector<float> k = randomVector(static_cast<size_t>(nKv) * kvWidth, rng);
    const std::vector<float> leaderK = randomVector(k.size(), rng);
    const std::vector<float> v = randomVector(k.size(), rng);
    const std::vector<float> q = randomVector(static_cast<size_t>(nQ) * qWidth, rng);
    const std::vector<float> qLeader = randomVector(q.size(), rng);
    std::vector<int32_t> pos, qPos;
    for (const auto& [first, count] : rounds)
        for (int j = 0; j < count; ++j) pos.push_back(first + j);
    for (int i = 0; i < nQ; ++i) qPos.push_back(73 - nQ + i);
    const int rows = nQ * shape.nHeads;
    constexpr float kNegInf = -std::numeric_limits<float>::infinity();

    for (const auto& [sink, window] : std::vector<std::pair<int, int>>{{4, 8}, {0, 1}, {5, 70}, {40, 3}}) {
        KvSharingOptions o;
        o.sinkTokens = sink;
        o.windowTokens = window;
        Result<KvSharingPlan> plan = makeKvSharingPlan(o, 1);
        ASSERT_TRUE(plan.ok());
        for (const float* qDistant : {q.data(), qLeader.data()}) {
            // CPU reference: each round, then the rounds merged.
            std::vector<float> want(q.size(), 0.0f), wantLse(static_cast<size_t>(rows), kNegInf);
            std::vector<float> part(q.size()), partLse(wantLse.size()), scratch(q.size()), scratchLse(wantLse.size());
            int at = 0;
            for (const auto& [first, count] : rounds) {
                const SharedRoundKv kv{k.data() + at * kvWidth, leaderK.data() + at * kvWidth, v.data() + at * kvWidth,
                                       pos.data() + at, count};
                sharedRoundAttention(q.data(), qDistant, qPos.data(), nQ, kv, *plan, shape, part.data(), partLse.data(),
                                     scratch.data(), scratchLse.data());
                kernels::attentionMergeRef(want.data(), wantLse.data(), part.data(), partLse.data(), rows,
                                           shape.headDim);
                at += count;
            }
            // The backend's split: sink tokens (a prefix of each round) and the others, over all rounds at once.
            std::vector<int> sinks, others;
            at = 0;
            for (const auto& [first, count] : rounds) {
                const int sinkEnd = std::clamp(sink - first, 0, count);
                for (int j = 0; j < count; ++j) (j < sinkEnd ? sinks : others).push_back(at + j);
                at += count;
            }
            std::vector<int32_t> sinkPos, otherPos;
            for (int j : sinks) sinkPos.push_back(pos[static_cast<size_t>(j)]);
            for (int j : others) otherPos.push_back(pos[static_cast<size_t>(j)]);
            const std::vector<float> sinkK = gather(k, sinks, kvWidth), sinkV = gather(v, sinks, kvWidth);
            const std::vector<float> otherK = gather(k, others, kvWidth), otherV = gather(v, others, kvWidth);
            const std::vector<float> otherLeaderK = gather(leaderK, others, kvWidth);
            const int nSink = static_cast<int>(sinks.size()), nOther = static_cast<int>(others.size());
            std::vector<float> got(q.size()), gotLse(wantLse.size());
            kernels::attentionRef(q.data(), sinkK.data(), sinkV.data(), got.data(), gotLse.data(), qPos.data(),
                                  sinkPos.data(), nQ, nSink, shape.nHeads, shape.nKvHeads, shape.headDim, shape.scale);
            kernels::attentionRef(q.data(), otherK.data(), otherV.data(), part.data(), partLse.data(), qPos.data(),
                                  otherPos.data(), nQ, nOther, shape.nHeads, shape.nKvHeads, shape.headDim, shape.scale,
                                  0, window - 1);
            kernels::attentionMergeRef(got.data(), gotLse.data(), part.data(), partLse.data(), rows, shape.headDim);
            kernels::attentionRef(qDistant, otherLeaderK.data(), otherV.data(), part.data(), partLse.data(),
                                  qPos.data(), otherPos.data(), nQ, nOther, shape.nHeads, shape.nKvHeads, shape.headDim,
                                  shape.scale, window, std::numeric_limits<int>::max());
            kernels::attentionMergeRef(got.data(), gotLse.data(), part.data(), partLse.data(), rows, shape.headDim);
            for (size_t i = 0; i < want.size(); ++i)
                ASSERT_NEAR(got[i], want[i], 1e-5f) << "S " << sink << " W " << window << " element " << i;
            for (size_t i = 0; i < wantLse.size(); ++i)
                ASSERT_NEAR(gotLse[i], wantLse[i], 1e-5f) << "S " << sink << " W " << window << " row " << i;
        }
    }
}

// attentionRef's lag band: only keys with minLag <= qPos - kvPos <= maxLag count; an empty band gives out 0, lse -inf.
TEST(KvSharingBands, ReferenceLagBandMasksByPositionDifference) {
    std::mt19937 rng(5);
    const int nKv = 20, headDim = 8;
    const std::vector<float> k = randomVector(static_cast<size_t>(nKv * headDim), rng);
    const std::vector<float> v = randomVector(k.size(), rng);
    const std::vector<float> q = randomVector(headDim, rng);
    std::vector<int32_t> pos(nKv);
    for (int j = 0; j < nKv; ++j) pos[static_cast<size_t>(j)] = j;
    const int32_t qPos = 15;
    // Band [3, 6]: keys 9..12, the same as causal attention over exactly those keys.
    float out[headDim], lse = 0.0f, want[headDim], wantLse = 0.0f;
    kernels::attentionRef(q.data(), k.data(), v.data(), out, &lse, &qPos, pos.data(), 1, nKv, 1, 1, headDim, 0.5f, 3,
                          6);
    kernels::attentionRef(q.data(), k.data() + 9 * headDim, v.data() + 9 * headDim, want, &wantLse, &qPos,
                          pos.data() + 9, 1, 4, 1, 1, headDim, 0.5f);
    for (int d = 0; d < headDim; ++d) EXPECT_FLOAT_EQ(out[d], want[d]);
    EXPECT_FLOAT_EQ(lse, wantLse);
    // Band [16, 20]: every key is closer than 16 positions.
    kernels::attentionRef(q.data(), k.data(), v.data(), out, &lse, &qPos, pos.data(), 1, nKv, 1, 1, headDim, 0.5f, 16,
                          20);
    for (float x : out) EXPECT_EQ(x, 0.0f);
    EXPECT_EQ(lse, -std::numeric_limits<float>::infinity());
}

}  // namespace
}  // namespace inference
