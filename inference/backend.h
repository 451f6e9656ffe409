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

struct BackendOptions {
    int threads = 0;  // CPU worker threads; 0: hardware concurrency
};

struct ForwardBatch {
    std::span<const int32_t> tokens;  // appended to the last round, at consecutive positions
    bool allLogits = false;           // logits() returns every token's row, else only the last token's
    bool recordRoundScores = false;   // record per-round attention mass at every layer this batch runs
};

// Which cached rounds the layers of one runLayers() call attend to. The batch's own round (the last) is always
// visible, causally masked by position.
struct KvView {
    bool allRounds = true;
    std::span<const int> rounds;  // when !allRounds: indices of the other visible rounds, ascending
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
    // Snapshot layout: kv_cache.h. importRound appends a new round at firstPosition.
    virtual Result<RoundKvSnapshot> exportRound(int round, int firstLayer, int layerCount) const = 0;
    virtual Status importRound(const RoundKvSnapshot& snapshot, int firstPosition) = 0;

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
