// Sampler: penalties, then the cut chain top-k -> top-p -> min-p over temperature-scaled probabilities.
#include "inference/sampler.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

namespace inference {

namespace {

uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

}  // namespace

Sampler::Sampler(SamplerParams params) : m_params(params) {
    uint64_t seed = m_params.seed;
    if (seed == 0) {
        std::random_device rd;
        seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    }
    uint64_t x = seed;
    for (uint64_t& s : m_state) s = splitmix64(x);
}

uint64_t Sampler::nextU64() {
    const uint64_t result = rotl(m_state[1] * 5, 7) * 9;
    const uint64_t t = m_state[1] << 17;
    m_state[2] ^= m_state[0];
    m_state[3] ^= m_state[1];
    m_state[1] ^= m_state[2];
    m_state[0] ^= m_state[3];
    m_state[2] ^= t;
    m_state[3] = rotl(m_state[3], 45);
    return result;
}

double Sampler::nextUniform() {
    return static_cast<double>(nextU64() >> 11) * 0x1.0p-53;
}

void applyRepeatPenalty(std::span<float> logits, std::span<const int32_t> recentTokens, int lastN, float penalty) {
    if (penalty == 1.0f || lastN <= 0)
        return;
    const size_t n = std::min(recentTokens.size(), static_cast<size_t>(lastN));
    std::unordered_set<int32_t> seen;
    for (int32_t id : recentTokens.subspan(recentTokens.size() - n)) {
        if (id < 0 || static_cast<size_t>(id) >= logits.size() || !seen.insert(id).second)
            continue;
        float& l = logits[static_cast<size_t>(id)];
        l = l > 0.0f ? l / penalty : l * penalty;
    }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> recentTokens) {
    applyRepeatPenalty(logits, recentTokens, m_params.repeatLastN, m_params.repeatPenalty);
    if (m_params.temperature <= 0.0f)
        return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());

    // Candidates sorted by logit, descending (ties by id so the order is deterministic).
    const size_t vocab = logits.size();
    size_t keep = vocab;
    if (m_params.topK > 0)
        keep = std::min(keep, static_cast<size_t>(m_params.topK));
    m_order.resize(vocab);
    for (size_t i = 0; i < vocab; ++i) m_order[i] = static_cast<int32_t>(i);
    auto byLogit = [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(m_order.begin(), m_order.begin() + static_cast<std::ptrdiff_t>(keep), m_order.end(), byLogit);
    m_order.resize(keep);

    // Temperature-scaled softmax over the top-k candidates.
    m_probs.resize(keep);
    const double maxLogit = logits[m_order[0]];
    double sum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        m_probs[i] = std::exp((logits[m_order[i]] - maxLogit) / m_params.temperature);
        sum += m_probs[i];
    }
    for (double& p : m_probs) p /= sum;

    // Top-p: the smallest prefix whose mass reaches topP.
    if (m_params.topP < 1.0f) {
        double cum = 0.0;
        for (size_t i = 0; i < keep; ++i) {
            cum += m_probs[i];
            if (cum >= m_params.topP) {
                keep = i + 1;
                break;
            }
        }
    }
    // Min-p: drop candidates below minP times the most likely one (always keeps the first).
    if (m_params.minP > 0.0f) {
        const double threshold = m_params.minP * m_probs[0];
        size_t i = 1;
        while (i < keep && m_probs[i] >= threshold) ++i;
        keep = i;
    }

    double mass = 0.0;
    for (size_t i = 0; i < keep; ++i) mass += m_probs[i];
    const double r = nextUniform() * mass;
    double cum = 0.0;
    for (size_t i = 0; i < keep; ++i) {
        cum += m_probs[i];
        if (r < cum)
            return m_order[i];
    }
    return m_order[keep - 1];
}

}  // namespace inference
