// Backend: the weights of one model on one device (owned by Model); BackendContext: one conversation's activations
// and KV cache on that device (owned by a Session). The forward pass runs in layer ranges so that Round Attention
// can run layers [0, L_w) over every round, score the rounds at L_w (roundScores), then run [L_w, L) over the
// selected rounds only:
//
//     ctx.begin({tokens, ...});                     // embed; reserves KV room in the last round
//     ctx.runLayers(0, Lw, KvView{});               // all rounds visible
//     scores = ctx.roundScores(Lw - 1);              // needs ForwardBatch::recordRoundScores
//     ctx.runLayers(Lw, L, KvView{false, chosen});  // only the chosen rounds (+ the batch's own round)
//     ctx.logits();                                 // final norm + output projection
//
// Every layer appends the batch's K/V (after RoPE) to the last round as it runs; the tokens are committed to the
// round table when the last layer has run. Positions are implicit: the batch continues the last round at
// rounds().nextPosition(). A batch that was begun but not run to the end leaves the cache as it was.
//
// Positions past the trained context: keys are stored after RoPE at their round's absolute positions and never
// move. RoPE makes a query-key score depend only on the position difference, and rotating a key stored at p by
// delta gives exactly the key at p + delta, so a view may move past rounds for one runLayers() call without
// touching the cache: KvView::deltas re-rotates each such round's keys by its delta into scratch (CPU: a float copy
// per round and layer; CUDA: kernels::ropeShift of the visible slots into a scratch key buffer) and attention reads
// them there. The batch keeps its own positions (its queries and new keys are rotated and stored at them as
// always); deltas are relative to it. A moved round must still end before the batch's round begins, so every
// query sees all of its keys and causal masking by the stored positions is unchanged. RoundAttention
// (round_attention.h) uses this to keep every layer range inside the model's trained context.
// Ownership/threading: one thread (the inference worker) uses a Backend and its contexts; a context borrows its
// Backend, which must outlive it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "inference/gguf.h"
#include "inference/kv_cache.h"
#include "inference/model_config.h"
#include "inference/session.h"
#include "roundchat/result.h"

namespace inference {

struct KvSharingPlan;  // inference/kv_sharing.h

struct BackendOptions {
    int threads = 0;  // CPU worker threads; 0: hardware concurrency
};

struct ForwardBatch {
    std::span<const int32_t> tokens;  // appended to the last round, at consecutive positions
    bool allLogits = false;           // logits() returns every token's row, else only the last token's
    bool recordRoundScores = false;   // record per-round attention mass at every layer this batch runs
    // Inter-layer key sharing for distant tokens (kv_sharing.h); null: full attention. Non-owning: must outlive the
    // batch's runLayers calls. Backends that do not implement it fail begin() with Unsupported.
    const KvSharingPlan* sharing = nullptr;
};

// Which cached rounds the layers of one runLayers() call attend to. The batch's own round (the last) is always
// visible, causally masked by position.
struct KvView {
    bool allRounds = true;
    std::span<const int> rounds;  // when !allRounds: indices of the other visible rounds, ascending
    // Empty: every round at its stored positions. Else parallel to `rounds` (to the past rounds 0.. when
    // allRounds): that round is attended as if at its stored positions + delta (see Positions above). Each moved
    // round must end before the batch's round: firstPosition + delta + tokenCount <= the last round's
    // firstPosition; an entry for the batch's own round, if listed, must be 0.
    std::span<const int> deltas;
};

// A KvView checked against the round table: the visible past rounds ascending, then the batch's own round, with
// the position delta of each (0 for the own round). What every runLayers() checks first (InvalidArgument).
struct ResolvedView {
    std::vector<int> rounds;
    std::vector<int> deltas;  // parallel to rounds
    bool shifted = false;     // some delta is not 0
};
Result<ResolvedView> resolveView(const KvView& view, const KvRoundTable& table);

// Where the KV is now and the host->device traffic so far (kv_placement.h).
struct KvPlacementStats {
    uint64_t deviceBytes = 0;          // committed KV on the device: lower layers of every round + resident upper
    uint64_t bytesCopiedFromHost = 0;  // upper-layer KV copied in for recalled rounds, over the context's life
    double copyMs = 0.0;               // device time of those copies, over the context's life (0 on the CPU)
    uint64_t upperPoolBytes = 0;       // device memory of the upper layers' slot pool, free slots included (CUDA)
};

class BackendContext {
public:
    virtual ~BackendContext() = default;

    // ---- KV cache: see KvCache for the semantics ----
    virtual const KvRoundTable& rounds() const = 0;
    virtual Status beginRound() = 0;
    virtual Status keepRounds(int n) = 0;
    virtual Status removeRounds(int first, int last) = 0;
    virtual Status dropTail(int nTokens) = 0;
    // Bytes of committed K/V for layers [firstLayer, lastLayer), as stored on the device.
    virtual uint64_t kvBytes(int firstLayer, int lastLayer) const = 0;
    // Snapshot layout: kv_cache.h; exports come in the cache's own dtype. importRound appends a new round at
    // firstPosition; it takes the snapshot by value so that a backend can keep its buffer (the CUDA one keeps the
    // upper layers' host copy in it).
    virtual Result<RoundKvSnapshot> exportRound(int round, int firstLayer, int layerCount) const = 0;
    virtual Status importRound(RoundKvSnapshot snapshot, int firstPosition) = 0;
    // Round Attention placement (kv_placement.h): layers [watershed, nLayers) of committed rounds live in host
    // memory and come to the device for the rounds a runLayers call attends to, plus a cache of at most
    // vramBudgetBytes of recently used rounds. watershed == nLayers (the default) keeps every layer on the device.
    // A new watershed moves the KV between device and host (OutOfMemory / OutOfGpuMemory); no batch may be begun.
    // The CPU backend holds everything in RAM and only keeps the accounting. Under a split placement the CUDA
    // backend records round scores (ForwardBatch::recordRoundScores) at layer watershed - 1 only.
    virtual Status setPlacement(int watershed, uint64_t vramBudgetBytes) = 0;
    virtual KvPlacementStats placementStats() const = 0;

    // ---- forward ----
    // Embeds the batch's tokens and reserves their KV slots (ContextFull if they do not fit; nothing changes then).
    virtual Status begin(const ForwardBatch& batch) = 0;
    // Runs layers [first, last) of the begun batch; ranges must be run in order and cover [0, nLayers) once.
    virtual Status runLayers(int first, int last, const KvView& view) = 0;
    // After the last layer: (n, nVocab) with n = the batch size when allLogits, else 1. Valid until the next begin.
    virtual Result<std::span<const float>> logits() = 0;
    // Attention mass the batch's queries gave each round at `layer`: per round index, summed over the batch's
    // tokens and the query heads (so the entries add up to nTokens * nHeads); rounds not visible get 0.
    virtual Result<std::vector<float>> roundScores(int layer) const = 0;
    // Calibration of layer groups (KvSharingPlan::recordQueries > 0): per recorded query and query head
    // (query-major), the attention distribution over that query's distant keys at `layer`, keys in visible-round
    // order. Unsupported unless the backend records it (the CPU backend does).
    virtual Result<std::vector<std::vector<float>>> distantAttention(int layer) const {
        (void)layer;
        return makeError(ErrorCode::Unsupported, "distant attention is recorded by the CPU backend only");
    }
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual BackendInfo info() const = 0;
    virtual const ModelConfig& config() const = 0;
    // A context whose KV cache holds at most contextLength tokens (OutOfMemory/OutOfGpuMemory if it cannot).
    virtual Result<std::unique_ptr<BackendContext>> createContext(int contextLength) const = 0;
};

// Runs a whole batch over every round: begin + runLayers(0, nLayers, all rounds).
Status forwardAll(BackendContext& ctx, const ForwardBatch& batch, int nLayers);

// What every BackendContext::begin checks first: a non-empty batch of ids inside the vocabulary.
Status validateBatch(const ForwardBatch& batch, int nVocab);

// `weights` borrow from the GgufFile; the file (and `config`) must outlive the backend.
Result<std::unique_ptr<Backend>> createCpuBackend(const ModelConfig& config, const ModelWeights& weights,
                                                  const BackendOptions& options);
#ifdef ROUNDCHAT_HAVE_CUDA
// Implemented in inference/cuda/: uploads the weights; NoGpu / OutOfGpuMemory / Unsupported on failure.
Result<std::unique_ptr<Backend>> createCudaBackend(const ModelConfig& config, const ModelWeights& weights,
                                                   const BackendOptions& options);
#endif

}  // namespace inference
