// Round Attention policy maths: selection, alternative policies, byte accounting, watershed calibration.
#include "inference/round_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace inference {

std::vector<float> normaliseRoundScores(std::span<const float> raw) {
    if (raw.empty())
        return {};
    std::vector<float> shares(raw.begin(), raw.end() - 1);
    double total = 0.0;
    for (float s : shares)
        total += std::max(0.0f, s);
    for (float& s : shares)
        s = total > 0.0 ? static_cast<float>(std::max(0.0f, s) / total) : 0.0f;
    return shares;
}

std::vector<float> roundMassFromLse(const RoundLse& lse) {
    // Share of query (i, h)'s attention on round r: exp(lse_r[i, h] - lse[i, h]), summed over (i, h). Per-query
    // renormalisation, per-head normalisation, the max over queries, the last queries only and sums over layers were
    // measured against this on the recall model and stories260K: none ranks the fact round reliably below the top
    // layer (docs/PERFORMANCE.md, recall accuracy section).
    std::vector<float> scores(static_cast<size_t>(lse.roundCount), 0.0f);
    const size_t stride = static_cast<size_t>(lse.nQueries) * static_cast<size_t>(lse.nHeads);
    for (size_t v = 0; v < lse.visibleRounds.size(); ++v) {
        double mass = 0.0;
        for (size_t i = 0; i < stride; ++i) {
            const float l = lse.perRound[v * stride + i];
            if (l != -std::numeric_limits<float>::infinity())
                mass += std::exp(static_cast<double>(l) - lse.total[i]);
        }
        scores[static_cast<size_t>(lse.visibleRounds[v])] = static_cast<float>(mass);
    }
    return scores;
}

bool isPinnedRound(int r, int pastRounds, const RoundAttentionOptions& options) {
    return r == 0 || r >= pastRounds - std::max(0, options.keepLatestRounds);
}

namespace {

// Normalised entropy of the given shares (renormalised over themselves), in [0, 1]; 0 for fewer than 2 values.
float normalisedEntropy(const std::vector<float>& shares) {
    if (shares.size() < 2)
        return 0.0f;
    double total = 0.0;
    for (float s : shares)
        total += s;
    if (total <= 0.0)
        return 1.0f;  // no signal at all counts as flat
    double h = 0.0;
    for (float s : shares)
        if (s > 0.0f)
            h -= (s / total) * std::log(s / total);
    return static_cast<float>(h / std::log(static_cast<double>(shares.size())));
}

}  // namespace

RoundSelection selectRounds(std::span<const float> shares, const RoundAttentionOptions& options, float flatEntropy) {
    RoundSelection sel;
    sel.shares.assign(shares.begin(), shares.end());
    const int past = static_cast<int>(shares.size());
    std::vector<int> unpinned;
    std::vector<float> unpinnedShares;
    for (int r = 0; r < past; ++r) {
        if (isPinnedRound(r, past, options)) {
            sel.rounds.push_back(r);
        } else {
            unpinned.push_back(r);
            unpinnedShares.push_back(shares[static_cast<size_t>(r)]);
            sel.unpinnedMass += shares[static_cast<size_t>(r)];
        }
    }
    sel.entropy = normalisedEntropy(unpinnedShares);
    if (unpinned.size() >= 2 && sel.entropy >= flatEntropy) {
        sel.flatFallback = true;
        sel.capturedMass = 1.0f;
        sel.rounds.resize(static_cast<size_t>(past));
        std::iota(sel.rounds.begin(), sel.rounds.end(), 0);
        return sel;
    }
    // Highest share first; ties go to the more recent round.
    std::stable_sort(unpinned.begin(), unpinned.end(), [&](int a, int b) {
        const float sa = shares[static_cast<size_t>(a)], sb = shares[static_cast<size_t>(b)];
        return sa != sb ? sa > sb : a > b;
    });
    const double target = static_cast<double>(options.recallMass) * sel.unpinnedMass;
    double captured = 0.0;
    int chosen = 0;
    for (int r : unpinned) {
        if (captured >= target || sel.unpinnedMass <= 0.0f)
            break;
        if (chosen >= options.maxRecalledRounds) {
            sel.capped = true;
            break;
        }
        sel.rounds.push_back(r);
        captured += shares[static_cast<size_t>(r)];
        ++chosen;
    }
    sel.capturedMass = sel.unpinnedMass > 0.0f ? static_cast<float>(captured / sel.unpinnedMass) : 1.0f;
    std::sort(sel.rounds.begin(), sel.rounds.end());
    return sel;
}

AlternativeSelections alternativeSelections(std::span<const float> shares) {
    AlternativeSelections alt;
    const int n = static_cast<int>(shares.size());
    if (n == 0)
        return alt;
    double mean = 0.0, var = 0.0;
    for (float s : shares)
        mean += s;
    mean /= n;
    for (float s : shares)
        var += (s - mean) * (s - mean);
    const double cut = mean + std::sqrt(var / n);
    for (int r = 0; r < n; ++r) {
        if (shares[static_cast<size_t>(r)] > 0.1f)
            alt.threshold.push_back(r);
        if (shares[static_cast<size_t>(r)] > cut)
            alt.adaptive.push_back(r);
    }
    std::vector<int> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return shares[static_cast<size_t>(a)] > shares[static_cast<size_t>(b)]; });
    const int k = std::max(1, static_cast<int>(std::ceil(0.1 * n)));
    alt.topFraction.assign(order.begin(), order.begin() + k);
    std::sort(alt.topFraction.begin(), alt.topFraction.end());
    return alt;
}

// ---- watershed ----

int defaultWatershedLayer(int nLayers) { return std::clamp(nLayers / 2, 1, std::max(1, nLayers - 1)); }

int resolveWatershedLayer(const RoundAttentionOptions& options, int calibrated, int nLayers) {
    const int w = options.watershedLayer >= 0 ? options.watershedLayer
                  : calibrated >= 0           ? calibrated
                                              : defaultWatershedLayer(nLayers);
    return std::clamp(w, 1, std::max(1, nLayers - 1));
}

// ---- calibration ----

float jensenShannon(std::span<const float> p, std::span<const float> q) {
    double js = 0.0;
    for (size_t i = 0; i < std::min(p.size(), q.size()); ++i) {
        const double m = 0.5 * (p[i] + q[i]);
        if (p[i] > 0.0f)
            js += 0.5 * p[i] * std::log(p[i] / m);
        if (q[i] > 0.0f)
            js += 0.5 * q[i] * std::log(q[i] / m);
    }
    return static_cast<float>(std::max(0.0, js));
}

CalibrationResult chooseWatershed(std::span<const CalibrationSample> samples, int nLayers,
                                  const RoundAttentionOptions& options, float minCoverage) {
    CalibrationResult result;
    result.nLayers = nLayers;
    result.minCoverage = minCoverage;
    result.referenceFirstLayer = nLayers - std::max(1, (nLayers + 3) / 4);
    result.layers.resize(static_cast<size_t>(std::max(0, nLayers)));
    for (int l = 0; l < nLayers; ++l) {
        result.layers[static_cast<size_t>(l)].layer = l;
        result.layers[static_cast<size_t>(l)].minCoverage = 1.0f;
    }
    for (const CalibrationSample& s : samples) {
        if (static_cast<int>(s.layerShares.size()) != nLayers || s.layerShares.front().empty())
            continue;
        ++result.samples;
        const size_t past = s.layerShares.front().size();
        std::vector<float> ref(past, 0.0f);
        for (int l = result.referenceFirstLayer; l < nLayers; ++l)
            for (size_t r = 0; r < past; ++r)
                ref[r] += s.layerShares[static_cast<size_t>(l)][r] / static_cast<float>(nLayers - result.referenceFirstLayer);
        double refUnpinned = 0.0;
        for (size_t r = 0; r < past; ++r)
            if (!isPinnedRound(static_cast<int>(r), static_cast<int>(past), options))
                refUnpinned += ref[r];
        for (int l = 0; l < nLayers; ++l) {
            const std::vector<float>& pl = s.layerShares[static_cast<size_t>(l)];
            // Without the flat fallback: recalling every round would cover everything and save nothing, so a layer
            // only qualifies when the rounds its scores single out carry the later layers' mass.
            const RoundSelection sel = selectRounds(pl, options, std::numeric_limits<float>::infinity());
            double inside = 0.0;
            for (int r : sel.rounds)
                if (!isPinnedRound(r, static_cast<int>(past), options))
                    inside += ref[static_cast<size_t>(r)];
            const float coverage = refUnpinned > 0.0 ? static_cast<float>(inside / refUnpinned) : 1.0f;
            LayerCalibration& lc = result.layers[static_cast<size_t>(l)];
            lc.meanCoverage += coverage;
            lc.minCoverage = std::min(lc.minCoverage, coverage);
            lc.meanJs += jensenShannon(pl, ref);
        }
    }
    for (LayerCalibration& lc : result.layers) {
        if (result.samples > 0) {
            lc.meanCoverage /= static_cast<float>(result.samples);
            lc.meanJs /= static_cast<float>(result.samples);
        } else {
            lc.minCoverage = 0.0f;
        }
    }
    // Walk down from the top while every layer so far meets the criterion; the last good scoring layer s gives
    // L_w = s + 1. The top layer cannot score for anything above it, so s < nLayers - 1.
    result.watershedLayer = std::max(1, nLayers - 1);
    for (int s = nLayers - 2; s >= 0 && result.samples > 0; --s) {
        bool ok = true;
        for (int m = s; m < nLayers && ok; ++m)
            ok = result.layers[static_cast<size_t>(m)].meanCoverage >= minCoverage;
        if (!ok)
            break;
        result.watershedLayer = s + 1;
        result.criterionMet = true;
    }
    return result;
}

}  // namespace inference
