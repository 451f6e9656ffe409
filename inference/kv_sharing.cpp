// Inter-layer key sharing: the plan, the byte accounting and the CPU reference of attention under sharing.
#include "inference/kv_sharing.h"

#include <algorithm>
#include <limits>
#include <string>

#include "kernels/reference.h"

namespace inference {

int KvSharingPlan::sharedLayers(int first, int last) const {
    int n = 0;
    for (int l = std::max(0, first); l < std::min(last, nLayers()); ++l)
        n += isLeader(l) ? 0 : 1;
    return n;
}

Result<KvSharingPlan> makeKvSharingPlan(const KvSharingOptions& options, int nLayers) {
    if (options.sinkTokens < 0 || options.windowTokens < 1)
        return makeError(ErrorCode::InvalidArgument, "KV sharing needs sink tokens >= 0 and a window >= 1 token");
    const std::vector<int>& starts = options.groupStarts;
    if (!starts.empty() && starts.front() != 0)
        return makeError(ErrorCode::InvalidArgument, "KV sharing layer groups must start at layer 0");
    for (size_t i = 1; i < starts.size(); ++i)
        if (starts[i] <= starts[i - 1] || starts[i] >= nLayers)
            return makeError(ErrorCode::InvalidArgument, "KV sharing layer groups must be ascending layers of the "
                                                         "model (" + std::to_string(nLayers) + " layers)");
    KvSharingPlan plan;
    plan.sinkTokens = options.sinkTokens;
    plan.windowTokens = options.windowTokens;
    plan.variant = options.variant;
    plan.leader.resize(static_cast<size_t>(nLayers));
    size_t g = 0;
    for (int l = 0; l < nLayers; ++l) {
        if (starts.empty()) {
            plan.leader[static_cast<size_t>(l)] = l;
            continue;
        }
        while (g + 1 < starts.size() && starts[g + 1] <= l) ++g;
        plan.leader[static_cast<size_t>(l)] = starts[g];
    }
    return plan;
}

namespace {

// Distant positions for a query at queryPosition: [sinkTokens, queryPosition - windowTokens]; as token indices of a
// round starting at firstPosition with count tokens: [begin, end).
struct IndexRange {
    int begin = 0;
    int end = 0;
};

IndexRange distantRange(int firstPosition, int count, const KvSharingPlan& plan, int queryPosition) {
    const int lo = std::max(plan.sinkTokens, firstPosition);
    const int hi = std::min(queryPosition - plan.windowTokens, firstPosition + count - 1);
    if (hi < lo)
        return {};
    return {lo - firstPosition, hi - firstPosition + 1};
}

}  // namespace

int distantTokenCount(const KvRound& round, const KvSharingPlan& plan, int queryPosition) {
    const IndexRange r = distantRange(round.firstPosition, round.tokenCount, plan, queryPosition);
    return r.end - r.begin;
}

uint64_t sharedKeyBytesSaved(std::span<const KvRound> rounds, std::span<const int> upperHeld, int watershed,
                             const KvSharingPlan& plan, int queryPosition, uint64_t keyBytesPerTokenLayer) {
    const uint64_t lower = static_cast<uint64_t>(plan.sharedLayers(0, watershed));
    const uint64_t upper = static_cast<uint64_t>(plan.sharedLayers(watershed, plan.nLayers()));
    uint64_t saved = 0;
    for (size_t r = 0; r < rounds.size(); ++r) {
        const bool held = std::find(upperHeld.begin(), upperHeld.end(), static_cast<int>(r)) != upperHeld.end();
        const uint64_t layers = lower + (held ? upper : 0);
        saved += static_cast<uint64_t>(distantTokenCount(rounds[r], plan, queryPosition)) * layers;
    }
    return saved * keyBytesPerTokenLayer;
}

void sharedRoundAttention(const float* q, const float* qDistant, const int32_t* qPos, int nQ, const SharedRoundKv& kv,
                          const KvSharingPlan& plan, const AttentionShape& s, float* out, float* lse,
                          float* scratchOut, float* scratchLse) {
    const int64_t qStride = static_cast<int64_t>(s.nHeads) * s.headDim;
    const int64_t kvStride = static_cast<int64_t>(s.nKvHeads) * s.headDim;
    const int first = kv.count > 0 ? kv.positions[0] : 0;
    const int rows = nQ * s.nHeads;

    // Sinks (positions < S), own keys, causal: one call for every query.
    const int sinkEnd = std::clamp(plan.sinkTokens - first, 0, kv.count);
    if (sinkEnd > 0) {
        kernels::attentionRef(q, kv.keys, kv.values, out, lse, qPos, kv.positions, nQ, sinkEnd, s.nHeads, s.nKvHeads,
                              s.headDim, s.scale);
    } else {
        std::fill(out, out + rows * static_cast<int64_t>(s.headDim), 0.0f);
        std::fill(lse, lse + rows, -std::numeric_limits<float>::infinity());
    }

    // Window (positions in [max(S, p - W + 1), p]), own keys: its lower end differs per query, so one call each.
    for (int i = 0; i < nQ; ++i) {
        const int lo = std::max(sinkEnd, std::max(plan.sinkTokens, qPos[i] - plan.windowTokens + 1) - first);
        if (lo >= kv.count)
            continue;
        kernels::attentionRef(q + i * qStride, kv.keys + lo * kvStride, kv.values + lo * kvStride,
                              scratchOut + i * qStride, scratchLse + i * s.nHeads, qPos + i, kv.positions + lo, 1,
                              kv.count - lo, s.nHeads, s.nKvHeads, s.headDim, s.scale);
        kernels::attentionMergeRef(out + i * qStride, lse + i * s.nHeads, scratchOut + i * qStride,
                                   scratchLse + i * s.nHeads, s.nHeads, s.headDim);
    }

    // Distant (positions in [S, p - W]), leader keys: the mask "key position <= p - W" is the causal mask of a
    // query moved back by W, so one call serves every query.
    const int distantBegin = sinkEnd;
    if (distantBegin >= kv.count)
        return;
    std::vector<int32_t> shifted(qPos, qPos + nQ);
    for (int32_t& p : shifted) p -= plan.windowTokens;
    kernels::attentionRef(qDistant, kv.leaderKeys + distantBegin * kvStride, kv.values + distantBegin * kvStride,
                          scratchOut, scratchLse, shifted.data(), kv.positions + distantBegin, nQ,
                          kv.count - distantBegin, s.nHeads, s.nKvHeads, s.headDim, s.scale);
    kernels::attentionMergeRef(out, lse, scratchOut, scratchLse, rows, s.headDim);
}

void appendDistantScores(const float* q, int queryPosition, const SharedRoundKv& kv, const KvSharingPlan& plan,
                         const AttentionShape& s, std::vector<std::vector<float>>& perHead) {
    const int first = kv.count > 0 ? kv.positions[0] : 0;
    const IndexRange range = distantRange(first, kv.count, plan, queryPosition);
    const int group = s.nHeads / s.nKvHeads;
    perHead.resize(static_cast<size_t>(s.nHeads));
    for (int h = 0; h < s.nHeads; ++h) {
        const float* qh = q + static_cast<int64_t>(h) * s.headDim;
        for (int j = range.begin; j < range.end; ++j) {
            const float* k = kv.keys + (static_cast<int64_t>(j) * s.nKvHeads + h / group) * s.headDim;
            float dot = 0.0f;
            for (int d = 0; d < s.headDim; ++d) dot += qh[d] * k[d];
            perHead[static_cast<size_t>(h)].push_back(dot * s.scale);
        }
    }
}

}  // namespace inference
