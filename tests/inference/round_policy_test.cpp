// Round Attention policy maths: score normalisation, selection with pinning and caps, the flat fallback, the
// paper's alternative policies, KV byte accounting, the VRAM cache model, watershed defaults, calibration choice
// on synthetic distributions, and the calibration file.
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "inference/calibration.h"
#include "inference/round_policy.h"

namespace inference {
namespace {

RoundAttentionOptions roundOptions(float mass = 0.9f, int maxRecalled = 8, int keepLatest = 1) {
    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    o.recallMass = mass;
    o.maxRecalledRounds = maxRecalled;
    o.keepLatestRounds = keepLatest;
    return o;
}

TEST(RoundPolicy, NormaliseExcludesOwnRound) {
    const std::vector<float> raw = {4.0f, 2.0f, 2.0f, 100.0f};  // the last entry is the batch's own round
    const std::vector<float> s = normaliseRoundScores(raw);
    ASSERT_EQ(s.size(), 3u);
    EXPECT_FLOAT_EQ(s[0], 0.5f);
    EXPECT_FLOAT_EQ(s[1], 0.25f);
    EXPECT_FLOAT_EQ(s[2], 0.25f);
    const std::vector<float> zero = normaliseRoundScores(std::vector<float>{0.0f, 0.0f, 3.0f});
    EXPECT_EQ(zero, (std::vector<float>{0.0f, 0.0f}));
    EXPECT_TRUE(normaliseRoundScores(std::vector<float>{7.0f}).empty());
}

// Round scores from per-round log-sum-exps: each query-head's share of attention per round, summed.
TEST(RoundPolicy, RoundMassSumsSharesFromLse) {
    const float inf = std::numeric_limits<float>::infinity();
    // 4 rounds in the cache, round 2 not visible; 3 queries, 2 heads; the batch's own round (3) takes the rest.
    const std::vector<int> visible = {0, 1, 3};
    const float share[3][3][2] = {
        {{0.0f, 0.0f}, {0.6f, 0.0f}, {0.0f, 0.5f}},  // round 0
        {{0.3f, 0.0f}, {0.3f, 0.0f}, {0.3f, 0.0f}},  // round 1
        {{0.7f, 1.0f}, {0.1f, 1.0f}, {0.7f, 0.5f}},  // round 3
    };
    std::vector<float> total(6), perRound(18);
    for (int i = 0; i < 6; ++i) total[static_cast<size_t>(i)] = 1.5f + 0.25f * static_cast<float>(i);  // any values
    for (int v = 0; v < 3; ++v)
        for (int i = 0; i < 3; ++i)
            for (int h = 0; h < 2; ++h) {
                const float p = share[v][i][h];
                perRound[static_cast<size_t>(v * 6 + i * 2 + h)] =
                    p > 0.0f ? std::log(p) + total[static_cast<size_t>(i * 2 + h)] : -inf;  // -inf: no key seen
            }
    const std::vector<float> scores = roundMassFromLse(RoundLse{perRound, total, visible, 3, 2, 4});
    ASSERT_EQ(scores.size(), 4u);
    EXPECT_NEAR(scores[0], 0.6f + 0.5f, 1e-5f);
    EXPECT_NEAR(scores[1], 0.9f, 1e-5f);
    EXPECT_EQ(scores[2], 0.0f);  // not visible
    EXPECT_NEAR(scores[3], 0.7f + 1.0f + 0.1f + 1.0f + 0.7f + 0.5f, 1e-5f);
    EXPECT_NEAR(scores[0] + scores[1] + scores[3], 6.0f, 1e-4f);  // nQueries * nHeads
    // Only the shares matter: shifting one query-head's log-sum-exps together changes nothing.
    for (int v = 0; v < 3; ++v) perRound[static_cast<size_t>(v * 6 + 2)] += 3.0f;
    total[2] += 3.0f;
    EXPECT_NEAR(roundMassFromLse(RoundLse{perRound, total, visible, 3, 2, 4})[1], 0.9f, 1e-5f);
}

TEST(RoundPolicy, PinsRoundZeroAndLatest) {
    const RoundAttentionOptions o = roundOptions(0.9f, 8, 2);
    EXPECT_TRUE(isPinnedRound(0, 10, o));
    EXPECT_FALSE(isPinnedRound(1, 10, o));
    EXPECT_FALSE(isPinnedRound(7, 10, o));
    EXPECT_TRUE(isPinnedRound(8, 10, o));
    EXPECT_TRUE(isPinnedRound(9, 10, o));
}

TEST(RoundPolicy, SelectsByCumulativeMassOfUnpinnedRounds) {
    // Past rounds 0..6; 0 and 6 pinned. Unpinned mass 0.8: 3 (0.4) + 1 (0.2) + 5 (0.1) = 0.7 < 0.72, + 2 (0.06).
    const std::vector<float> shares = {0.15f, 0.2f, 0.06f, 0.4f, 0.04f, 0.1f, 0.05f};
    const RoundSelection sel = selectRounds(shares, roundOptions(0.9f));
    EXPECT_EQ(sel.rounds, (std::vector<int>{0, 1, 2, 3, 5, 6}));
    EXPECT_NEAR(sel.unpinnedMass, 0.8f, 1e-6);
    EXPECT_NEAR(sel.capturedMass, 0.76f / 0.8f, 1e-5);
    EXPECT_FALSE(sel.flatFallback);
    EXPECT_FALSE(sel.capped);
    EXPECT_EQ(sel.shares, shares);

    // A lower target stops earlier.
    EXPECT_EQ(selectRounds(shares, roundOptions(0.45f)).rounds, (std::vector<int>{0, 3, 6}));
}

TEST(RoundPolicy, CapLimitsScoredRoundsButNotPinned) {
    const std::vector<float> shares = {0.1f, 0.2f, 0.2f, 0.2f, 0.2f, 0.1f};
    const RoundSelection sel = selectRounds(shares, roundOptions(0.99f, 2, 1), 1.1f);  // no flat fallback
    // Pinned 0 and 5, plus two of the equal rounds (ties favour the more recent).
    EXPECT_EQ(sel.rounds, (std::vector<int>{0, 3, 4, 5}));
    EXPECT_TRUE(sel.capped);
    EXPECT_NEAR(sel.capturedMass, 0.5f, 1e-6);
    const RoundSelection none = selectRounds(shares, roundOptions(0.9f, 0, 1), 1.1f);
    EXPECT_EQ(none.rounds, (std::vector<int>{0, 5}));
    // keepLatestRounds = 3 pins rounds 3..5.
    EXPECT_EQ(selectRounds(shares, roundOptions(0.9f, 0, 3), 1.1f).rounds, (std::vector<int>{0, 3, 4, 5}));
}

TEST(RoundPolicy, FlatScoresRecallEverythingFlagged) {
    const std::vector<float> flat = {0.3f, 0.14f, 0.14f, 0.14f, 0.14f, 0.14f};
    const RoundSelection sel = selectRounds(flat, roundOptions(0.5f, 1, 1));
    EXPECT_TRUE(sel.flatFallback);
    EXPECT_NEAR(sel.entropy, 1.0f, 1e-5);
    EXPECT_EQ(sel.rounds, (std::vector<int>{0, 1, 2, 3, 4, 5}));
    // Peaked scores are not flat.
    const std::vector<float> peaked = {0.3f, 0.6f, 0.01f, 0.01f, 0.01f, 0.07f};
    const RoundSelection p = selectRounds(peaked, roundOptions(0.5f, 1, 1));
    EXPECT_FALSE(p.flatFallback);
    EXPECT_LT(p.entropy, 0.5f);
    EXPECT_EQ(p.rounds, (std::vector<int>{0, 1, 5}));
    // Few past rounds: everything is pinned, no fallback needed.
    const RoundSelection two = selectRounds(std::vector<float>{0.5f, 0.5f}, roundOptions());
    EXPECT_EQ(two.rounds, (std::vector<int>{0, 1}));
    EXPECT_FALSE(two.flatFallback);
    EXPECT_FLOAT_EQ(two.capturedMass, 1.0f);
}

TEST(RoundPolicy, AlternativePolicies) {
    // 20 rounds: mean 0.05; two stand out.
    std::vector<float> shares(20, 0.02f);
    shares[4] = 0.35f;
    shares[11] = 0.29f;
    const AlternativeSelections alt = alternativeSelections(shares);
    EXPECT_EQ(alt.threshold, (std::vector<int>{4, 11}));
    EXPECT_EQ(alt.topFraction, (std::vector<int>{4, 11}));  // ceil(10% of 20) = 2
    EXPECT_EQ(alt.adaptive, (std::vector<int>{4, 11}));
    const AlternativeSelections few = alternativeSelections(std::vector<float>{0.6f, 0.3f, 0.1f});
    EXPECT_EQ(few.topFraction, (std::vector<int>{0}));
    EXPECT_EQ(few.threshold, (std::vector<int>{0, 1}));
}

TEST(RoundPolicy, WatershedDefaults) {
    EXPECT_EQ(defaultWatershedLayer(22), 11);
    EXPECT_EQ(defaultWatershedLayer(5), 2);
    EXPECT_EQ(defaultWatershedLayer(2), 1);
    EXPECT_EQ(defaultWatershedLayer(1), 1);
    RoundAttentionOptions o;
    EXPECT_EQ(resolveWatershedLayer(o, -1, 22), 11);
    EXPECT_EQ(resolveWatershedLayer(o, 6, 22), 6);
    o.watershedLayer = 4;
    EXPECT_EQ(resolveWatershedLayer(o, 6, 22), 4);
    o.watershedLayer = 40;
    EXPECT_EQ(resolveWatershedLayer(o, 6, 22), 21);
    o.watershedLayer = 0;
    EXPECT_EQ(resolveWatershedLayer(o, 6, 22), 1);
}

TEST(RoundPolicy, JensenShannon) {
    const std::vector<float> p = {1.0f, 0.0f}, q = {0.0f, 1.0f};
    EXPECT_NEAR(jensenShannon(p, q), std::log(2.0f), 1e-6);
    EXPECT_NEAR(jensenShannon(p, p), 0.0f, 1e-7);
}

// A synthetic model of 8 layers over 8 past rounds: layers < `agreeFrom` attend to round 2, layers >= agreeFrom to
// round 5 (the reference), every layer with a little spread.
std::vector<CalibrationSample> syntheticSamples(int agreeFrom, int count) {
    std::vector<CalibrationSample> samples;
    for (int s = 0; s < count; ++s) {
        CalibrationSample sample;
        for (int l = 0; l < 8; ++l) {
            std::vector<float> p(8, 0.002f);
            p[0] = 0.3f;  // a sink on the pinned system prompt
            p[l < agreeFrom ? 2 : 5] += 0.5f;
            double total = 0;
            for (float v : p)
                total += v;
            for (float& v : p)
                v = static_cast<float>(v / total);
            sample.layerShares.push_back(p);
        }
        samples.push_back(sample);
    }
    return samples;
}

TEST(RoundPolicy, CalibrationChoosesSmallestCoveringLayer) {
    const RoundAttentionOptions o = roundOptions(0.9f, 1, 1);  // one scored round: coverage is sharp
    const std::vector<CalibrationSample> samples = syntheticSamples(3, 4);
    const CalibrationResult r = chooseWatershed(samples, 8, o);
    EXPECT_EQ(r.samples, 4);
    EXPECT_EQ(r.referenceFirstLayer, 6);  // last 25% of 8 layers
    ASSERT_EQ(r.layers.size(), 8u);
    EXPECT_LT(r.layers[2].meanCoverage, 0.5f);
    EXPECT_GT(r.layers[3].meanCoverage, 0.95f);
    EXPECT_GT(r.layers[2].meanJs, r.layers[3].meanJs);
    EXPECT_TRUE(r.criterionMet);
    EXPECT_EQ(r.watershedLayer, 4);  // layer 3 scores, layers [4, 8) use its selection

    // A layer above that disagrees again breaks the run: only layers above it qualify.
    std::vector<CalibrationSample> broken = samples;
    for (CalibrationSample& s : broken)
        s.layerShares[5] = s.layerShares[0];
    EXPECT_EQ(chooseWatershed(broken, 8, o).watershedLayer, 7);

    // Nothing usable: the criterion is not met and L_w is the last layer.
    const CalibrationResult empty = chooseWatershed({}, 8, o);
    EXPECT_FALSE(empty.criterionMet);
    EXPECT_EQ(empty.watershedLayer, 7);
}

TEST(RoundPolicy, CalibrationFileRoundTrip) {
    const CalibrationResult r = chooseWatershed(syntheticSamples(3, 2), 8, roundOptions(0.9f, 1, 1));
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("rc_calib_" + std::to_string(std::random_device{}()))).string();
    std::filesystem::remove_all(dir);
    EXPECT_EQ(loadCalibration(dir, "abc123").error().code, ErrorCode::FileNotFound);
    ASSERT_TRUE(saveCalibration(dir, "abc123", r).ok());
    Result<CalibrationResult> back = loadCalibration(dir, "abc123");
    ASSERT_TRUE(back.ok()) << back.error().toString();
    EXPECT_EQ(back->watershedLayer, r.watershedLayer);
    EXPECT_EQ(back->nLayers, 8);
    EXPECT_EQ(back->samples, 2);
    EXPECT_TRUE(back->criterionMet);
    ASSERT_EQ(back->layers.size(), 8u);
    EXPECT_NEAR(back->layers[2].meanCoverage, r.layers[2].meanCoverage, 1e-5);
    EXPECT_EQ(calibrationFromJson(calibrationToJson(r, "abc123"), "other").error().code, ErrorCode::Mismatch);
    EXPECT_EQ(calibrationFromJson("{\"fingerprint\": \"abc123\"", "abc123").error().code, ErrorCode::CorruptFile);
    EXPECT_EQ(saveCalibration(dir, "../evil", r).error().code, ErrorCode::InvalidArgument);
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace inference
