// Sampler: statistical checks of temperature sampling and of the top-k / top-p / min-p cuts, llama-style
// repetition penalty, greedy decoding, and seed determinism.
#include <cmath>
#include <set>
#include <vector>

#include <gtest/gtest.h>

#include "inference/sampler.h"

namespace inference {
namespace {

SamplerParams plain(float temperature, uint64_t seed) {
    SamplerParams p;
    p.temperature = temperature;
    p.topK = 0;
    p.topP = 1.0f;
    p.minP = 0.0f;
    p.repeatPenalty = 1.0f;
    p.seed = seed;
    return p;
}

std::vector<int> histogram(Sampler& sampler, const std::vector<float>& logits, int draws) {
    std::vector<int> counts(logits.size(), 0);
    for (int i = 0; i < draws; ++i) {
        std::vector<float> l = logits;
        ++counts[static_cast<size_t>(sampler.sample(l, {}))];
    }
    return counts;
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
    std::vector<double> p(logits.size());
    double sum = 0.0;
    for (size_t i = 0; i < logits.size(); ++i) sum += p[i] = std::exp(logits[i] / temperature);
    for (double& x : p) x /= sum;
    return p;
}

const std::vector<float> kLogits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};

TEST(Sampler, TemperatureOneMatchesSoftmax) {
    Sampler sampler(plain(1.0f, 42));
    const int draws = 20000;
    const std::vector<int> counts = histogram(sampler, kLogits, draws);
    const std::vector<double> p = softmax(kLogits, 1.0);
    for (size_t i = 0; i < p.size(); ++i) {
        // 5 standard deviations of a binomial frequency.
        const double tol = 5.0 * std::sqrt(p[i] * (1.0 - p[i]) / draws) + 1e-3;
        EXPECT_NEAR(static_cast<double>(counts[i]) / draws, p[i], tol) << "token " << i;
    }
}

TEST(Sampler, LowTemperatureSharpens) {
    Sampler sampler(plain(0.5f, 7));
    const int draws = 20000;
    const std::vector<int> counts = histogram(sampler, kLogits, draws);
    const std::vector<double> p = softmax(kLogits, 0.5);
    EXPECT_NEAR(static_cast<double>(counts[4]) / draws, p[4], 0.02);
    EXPECT_GT(p[4], softmax(kLogits, 1.0)[4]);
}

TEST(Sampler, GreedyTakesArgmax) {
    Sampler sampler(plain(0.0f, 1));
    for (int i = 0; i < 10; ++i) {
        std::vector<float> l = kLogits;
        EXPECT_EQ(sampler.sample(l, {}), 4);
    }
}

TEST(Sampler, TopKNeverLeavesTopK) {
    SamplerParams p = plain(5.0f, 3);  // hot: without the cut every token would appear
    p.topK = 2;
    Sampler sampler(p);
    const std::vector<int> counts = histogram(sampler, kLogits, 5000);
    for (size_t i = 0; i < counts.size(); ++i) {
        if (i == 4 || i == 1)
            EXPECT_GT(counts[i], 0);
        else
            EXPECT_EQ(counts[i], 0) << "token " << i;
    }
}

TEST(Sampler, TopPKeepsSmallestSetReachingP) {
    // Probabilities 0.5, 0.3, 0.15, 0.05 (logits are their logs).
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    SamplerParams p = plain(1.0f, 5);
    p.topP = 0.75f;  // 0.5 + 0.3 reaches it: {0, 1}
    Sampler sampler(p);
    const std::vector<int> counts = histogram(sampler, logits, 10000);
    EXPECT_EQ(counts[2], 0);
    EXPECT_EQ(counts[3], 0);
    // Renormalised: token 0 has 0.5 / 0.8.
    EXPECT_NEAR(counts[0] / 10000.0, 0.625, 0.03);
}

TEST(Sampler, MinPDropsTokensBelowShareOfBest) {
    const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
    SamplerParams p = plain(1.0f, 9);
    p.minP = 0.25f;  // threshold 0.125: keeps {0, 1, 2}
    Sampler sampler(p);
    const std::vector<int> counts = histogram(sampler, logits, 10000);
    EXPECT_GT(counts[2], 0);
    EXPECT_EQ(counts[3], 0);
}

TEST(Sampler, RepeatPenaltyDividesPositiveMultipliesNegative) {
    std::vector<float> logits = {2.0f, -2.0f, 1.0f, 3.0f};
    const std::vector<int32_t> recent = {0, 1, 1, 3};
    applyRepeatPenalty(logits, recent, 3, 2.0f);  // last 3: {1, 1, 3}; token 0 is outside the window
    EXPECT_FLOAT_EQ(logits[0], 2.0f);
    EXPECT_FLOAT_EQ(logits[1], -4.0f);  // penalised once although repeated
    EXPECT_FLOAT_EQ(logits[2], 1.0f);
    EXPECT_FLOAT_EQ(logits[3], 1.5f);

    // Through the sampler: greedy switches away from the penalised favourite.
    SamplerParams p = plain(0.0f, 1);
    p.repeatPenalty = 2.0f;
    p.repeatLastN = 64;
    Sampler sampler(p);
    std::vector<float> l = kLogits;  // favourite 4 (3.0) becomes 1.5 < 2.0
    const std::vector<int32_t> history = {4};
    EXPECT_EQ(sampler.sample(l, history), 1);
}

TEST(Sampler, SameSeedSameSequence) {
    SamplerParams p;
    p.seed = 1234;
    Sampler a(p), b(p);
    SamplerParams q = p;
    q.seed = 1235;
    Sampler c(q);
    std::vector<int32_t> sa, sb, sc;
    for (int i = 0; i < 200; ++i) {
        std::vector<float> la = kLogits, lb = kLogits, lc = kLogits;
        sa.push_back(a.sample(la, {}));
        sb.push_back(b.sample(lb, {}));
        sc.push_back(c.sample(lc, {}));
    }
    EXPECT_EQ(sa, sb);
    EXPECT_NE(sa, sc);
    // The stream is fixed by the seed on every platform (xoshiro256** seeded by splitmix64, top 53 bits).
    Sampler d(plain(1.0f, 1));
    EXPECT_EQ(d.nextUniform(), 0x1.67e55eda1f8e2p-1);
    EXPECT_EQ(d.nextUniform(), 0x1.0a76ab2c8e6c9p-1);
}

}  // namespace
}  // namespace inference
