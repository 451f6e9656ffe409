// Inter-layer key sharing for distant tokens (docs/PAPERS.md B2, training-free; options: KvSharingOptions).
//
// For a query at position p, a key at position x is proximal when x < S (sinks) or p - x < W (the window, the query
// itself included), and distant otherwise. Layers are split into groups of consecutive layers (calibrated offline:
// calibration.h calibrateKvSharing). Layer l of a group led by layer a attends to
//   proximal keys: its own K and V, as in full attention;
//   distant keys:  SharedScores: softmax(q_a . K_a) over the distant keys, applied to its own V_l;
//                  SharedKeys:   softmax(q_l . K_a), its own V_l;
// and the two partial results are merged exactly by their log-sum-exp (kernels::attentionMergeRef, on the GPU
// kernels::attentionMerge). So a distant token needs its key in layer a only, and a one-layer group is exactly full
// attention. Values are kept in every layer: the paper keeps them too, and V carries the layer's own information.
//
// The CPU cache keeps every key (it is the reference); the bytes a sharing cache stores are accounted by
// sharedKeyBytesSaved. The window only moves forward, so a token that became distant stays distant, except after a
// trim back (regenerate, edit): the CPU reference then uses the keys it still has, while a device that dropped them
// must keep treating those tokens as distant.
// Thread safety: pure functions and plain values.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "inference/kv_cache.h"
#include "inference/session.h"

namespace inference {

// KvSharingOptions resolved for one model.
struct KvSharingPlan {
    int sinkTokens = 16;
    int windowTokens = 4080;
    KvSharingVariant variant = KvSharingVariant::SharedScores;
    std::vector<int> leader;  // (nLayers): first layer of each layer's group
    // Calibration: the CPU backend records the distant attention of the batch's last recordQueries queries
    // (BackendContext::distantAttention). 0: nothing recorded.
    int recordQueries = 0;

    int nLayers() const { return static_cast<int>(leader.size()); }
    bool isLeader(int layer) const { return leader[static_cast<size_t>(layer)] == layer; }
    // Layers in [first, last) that are not the first of their group: their distant keys are not stored.
    int sharedLayers(int first, int last) const;
};

// InvalidArgument unless sinkTokens >= 0, windowTokens >= 1 and groupStarts is empty or ascending from 0 inside
// [0, nLayers).
Result<KvSharingPlan> makeKvSharingPlan(const KvSharingOptions& options, int nLayers);

// Tokens of `round` that are distant for a query at queryPosition.
int distantTokenCount(const KvRound& round, const KvSharingPlan& plan, int queryPosition);

// Key bytes a sharing cache does not hold when the next query sits at queryPosition: per round, its distant tokens
// times the shared layers among those held for it, layers [0, watershed) for every round and [watershed, nLayers)
// for the rounds in upperHeld (round indices). keyBytesPerTokenLayer: K of one token in one layer.
uint64_t sharedKeyBytesSaved(std::span<const KvRound> rounds, std::span<const int> upperHeld, int watershed,
                             const KvSharingPlan& plan, int queryPosition, uint64_t keyBytesPerTokenLayer);

struct AttentionShape {
    int nHeads = 0;
    int nKvHeads = 0;
    int headDim = 0;
    float scale = 1.0f;
};

// One round's K/V in one layer for attention under sharing. Token j sits at position firstPosition + j.
struct SharedRoundKv {
    const float* keys = nullptr;        // (count, nKvHeads, headDim): this layer's keys, read for proximal tokens
    const float* leaderKeys = nullptr;  // the same shape: the group's first layer's keys, read for distant tokens
    const float* values = nullptr;      // this layer's values
    const int32_t* positions = nullptr; // (count), ascending by one
    int count = 0;
};

// Attention of nQ queries over one round with sharing, CPU reference. q: (nQ, nHeads, headDim) this layer's
// queries; qDistant: the queries scoring the distant keys (the leader's for SharedScores, else q); out: (nQ,
// nHeads, headDim); lse: (nQ, nHeads), -inf where the query sees no key of the round. scratchOut/scratchLse: room
// for (nQ, nHeads, headDim) / (nQ, nHeads) floats.
void sharedRoundAttention(const float* q, const float* qDistant, const int32_t* qPos, int nQ, const SharedRoundKv& kv,
                          const KvSharingPlan& plan, const AttentionShape& shape, float* out, float* lse,
                          float* scratchOut, float* scratchLse);

// Calibration: appends to perHead[h] the scaled scores (q . k) of one query (nHeads, headDim) at queryPosition
// against the round's distant keys (kv.keys). softmaxRef over the concatenation gives the distant distribution.
void appendDistantScores(const float* q, int queryPosition, const SharedRoundKv& kv, const KvSharingPlan& plan,
                         const AttentionShape& shape, std::vector<std::vector<float>>& perHead);

}  // namespace inference
