// Token sampling: repetition penalty, temperature, top-k, top-p and min-p, with its own seeded PRNG so a seed gives
// the same tokens on every platform.
// Ownership/threading: a Sampler is a plain value owned by one session; not thread-safe.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace inference {

struct SamplerParams {
    float temperature = 0.8f;    // <= 0: greedy (argmax after the repetition penalty)
    int topK = 40;               // <= 0: no top-k cut
    float topP = 0.95f;          // >= 1: no nucleus cut
    float minP = 0.05f;          // <= 0: no min-p cut; else drop tokens with p < minP * p_max
    float repeatPenalty = 1.1f;  // 1: off; llama style: positive logits divided, negative multiplied
    int repeatLastN = 64;        // how many of the most recent tokens are penalised; 0: none
    uint64_t seed = 0;           // 0: a random seed
};

class Sampler {
public:
    explicit Sampler(SamplerParams params);

    // Picks a token from `logits` (n_vocab values; modified in place: penalties and scaling are applied to it).
    // recentTokens: the context so far, oldest first; only its last repeatLastN entries are penalised.
    int32_t sample(std::span<float> logits, std::span<const int32_t> recentTokens);

    const SamplerParams& params() const { return m_params; }
    // Uniform double in [0, 1) from the sampler's stream (exposed for tests).
    double nextUniform();

private:
    uint64_t nextU64();

    SamplerParams m_params;
    uint64_t m_state[4] = {};      // xoshiro256** state
    std::vector<int32_t> m_order;  // scratch: candidate ids sorted by logit
    std::vector<double> m_probs;   // scratch: candidate probabilities
};

// Applies the llama repetition penalty to `logits` for every distinct id among the last `lastN` of recentTokens.
void applyRepeatPenalty(std::span<float> logits, std::span<const int32_t> recentTokens, int lastN, float penalty);

}  // namespace inference
