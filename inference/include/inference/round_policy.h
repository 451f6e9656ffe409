// Round Attention policy maths, free of any backend: turning per-round attention mass into a selection of rounds,
// the paper's alternative policies (for logging), the default watershed layer and the calibration of the watershed
// from per-layer round distributions (docs/PAPERS.md A2, C2, C4). KV residency and its bytes: kv_placement.h.
//
// Conventions: a turn's batch belongs to the last round of the cache; the rounds before it are the "past rounds"
// [0, P). Round 0 (the system prompt) and the keepLatestRounds most recent past rounds are pinned: always recalled.
// Scores are taken at layer watershed - 1 (the last layer that runs over every round); the selection applies to
// layers [watershed, nLayers).
// Thread safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "inference/session.h"

namespace inference {

// Normalised entropy (in [0, 1]) of the unpinned shares at or above which scores count as flat: nothing stands out,
// so every round is recalled (and the selection is flagged).
inline constexpr float kFlatEntropy = 0.98f;

// One layer's attention split by round, as both backends compute it for round scores.
struct RoundLse {
    std::span<const float> perRound;     // (visibleRounds.size(), nQueries, nHeads): log-sum-exp of the scaled scores
                                         // of each visible round's keys; -inf where a query sees none of them
    std::span<const float> total;        // (nQueries, nHeads): log-sum-exp over every visible key
    std::span<const int> visibleRounds;  // the round id of each perRound block; the batch's own round is the last id
    int nQueries = 0;
    int nHeads = 0;
    int roundCount = 0;                  // rounds in the cache (the batch's own round included)
};

// Per round of the cache (roundCount values, 0 for rounds not visible): the attention mass the batch's queries give
// the round, sum over queries i and heads h of exp(perRound[r, i, h] - total[i, h]) (BackendContext::roundScores;
// the values add up to nQueries * nHeads over the visible rounds). The raw input of normaliseRoundScores.
std::vector<float> roundMassFromLse(const RoundLse& lse);

// raw: per round of the cache (the batch's own round last), attention mass as BackendContext::roundScores gives it.
// Returns the shares of the past rounds [0, raw.size() - 1), summing to 1 (all 0 when they got no mass).
std::vector<float> normaliseRoundScores(std::span<const float> raw);

// Whether past round r (of pastRounds) is pinned by the options.
bool isPinnedRound(int r, int pastRounds, const RoundAttentionOptions& options);

struct RoundSelection {
    std::vector<int> rounds;     // selected past rounds, ascending (pinned ones included)
    std::vector<float> shares;   // per past round: its share of the question's attention, in [0, 1]
    float unpinnedMass = 0.0f;   // share of all past attention that went to unpinned rounds
    float capturedMass = 0.0f;   // share of the unpinned mass inside the selection (1 when nothing is unpinned)
    float entropy = 0.0f;        // normalised entropy of the unpinned shares, in [0, 1]
    bool flatFallback = false;   // scores were flat: every past round was recalled
    bool capped = false;         // maxRecalledRounds stopped the selection before recallMass was reached
};

// The pinned rounds, plus unpinned rounds by decreasing share until they hold recallMass of the unpinned mass (the
// pinned rounds, round 0 especially, attract attention sinks, so the mass target is over the rest) or
// maxRecalledRounds of them are chosen. Flat scores (entropy >= flatEntropy over >= 2 unpinned rounds) recall all.
RoundSelection selectRounds(std::span<const float> shares, const RoundAttentionOptions& options,
                            float flatEntropy = kFlatEntropy);

// What the paper's three policies would select from the same shares (past rounds, ascending; for logging only).
struct AlternativeSelections {
    std::vector<int> threshold;   // share > 0.1
    std::vector<int> topFraction; // the top 10% of rounds (at least one)
    std::vector<int> adaptive;    // share > mean + 1 * std
};
AlternativeSelections alternativeSelections(std::span<const float> shares);

// ---- watershed ----

// The paper's default without calibration: the lower half of the layers, clamped to [1, nLayers - 1].
int defaultWatershedLayer(int nLayers);
// The watershed to use: options.watershedLayer if set, else the calibrated one (< 0: none), else the default;
// clamped to [1, nLayers - 1] (with one layer: 1, i.e. no upper layers).
int resolveWatershedLayer(const RoundAttentionOptions& options, int calibrated, int nLayers);

// ---- calibration ----

// One question's round distributions: layerShares[l] = normaliseRoundScores of layer l (all the same length).
struct CalibrationSample {
    std::vector<std::vector<float>> layerShares;
};

struct LayerCalibration {
    int layer = 0;
    float meanCoverage = 0.0f;  // share of P^ref's unpinned mass inside the selection made from this layer
    float minCoverage = 0.0f;
    float meanJs = 0.0f;        // Jensen-Shannon divergence to P^ref, natural log (in [0, ln 2])
};

struct CalibrationResult {
    int nLayers = 0;
    int watershedLayer = 0;       // chosen L_w: selection from layer L_w - 1 serves layers [L_w, nLayers)
    int referenceFirstLayer = 0;  // P^ref = mean distribution over layers [referenceFirstLayer, nLayers)
    float minCoverage = 0.95f;    // the criterion used
    bool criterionMet = false;    // false: no layer met it; watershedLayer is then nLayers - 1
    int samples = 0;
    std::vector<LayerCalibration> layers;  // per layer
};

float jensenShannon(std::span<const float> p, std::span<const float> q);

// P^ref is the mean over the last 25% of the layers (at least one). Coverage of layer l: select from P^l with
// `options` (pinning included) and measure the share of P^ref's unpinned mass inside the selection. L_w is the
// smallest l + 1 (l < nLayers - 1) such that every layer m >= l has mean coverage >= minCoverage.
CalibrationResult chooseWatershed(std::span<const CalibrationSample> samples, int nLayers,
                                  const RoundAttentionOptions& options, float minCoverage = 0.95f);

}  // namespace inference
