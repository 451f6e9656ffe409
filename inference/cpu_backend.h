// The float32 CPU backend: weights are read in place from the mapped GGUF (any supported type, decoded row by row
// by the kernels' CPU references), activations and the KV cache are float32 in host memory. Matrix products split
// output rows across the thread pool and stream each weight row once per batch of tokens.
// Ownership/threading: see backend.h. The backend owns its thread pool; its contexts borrow it.
#pragma once

#include <memory>
#include <vector>

#include "backend.h"
#include "kv_placement.h"
#include "thread_pool.h"

namespace inference {

class CpuBackend final : public Backend {
public:
    CpuBackend(const ModelConfig& config, const ModelWeights& weights, int threads);

    BackendInfo info() const override;
    const ModelConfig& config() const override { return m_config; }
    Result<std::unique_ptr<BackendContext>> createContext(int contextLength) const override;

private:
    const ModelConfig& m_config;    // borrowed from Model
    const ModelWeights& m_weights;  // borrowed from Model
    std::unique_ptr<ThreadPool> m_pool;
};

class CpuContext final : public BackendContext {
public:
    CpuContext(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool, int contextLength);

    const KvRoundTable& rounds() const override { return m_cache.table(); }
    Status beginRound() override { return m_cache.beginRound(); }
    Status keepRounds(int n) override {
        RC_TRY(m_cache.keepRounds(n));
        m_placement.prune(m_cache.table());
        return {};
    }
    Status removeRounds(int first, int last) override {
        RC_TRY(m_cache.removeRounds(first, last));
        m_placement.prune(m_cache.table());
        return {};
    }
    Status dropTail(int nTokens) override { return m_cache.dropTail(nTokens); }
    uint64_t kvBytes(int firstLayer, int lastLayer) const override { return m_cache.bytes(firstLayer, lastLayer); }
    Result<RoundKvSnapshot> exportRound(int round, int firstLayer, int layerCount) const override {
        return m_cache.exportRound(round, firstLayer, layerCount);
    }
    Status importRound(RoundKvSnapshot snapshot, int firstPosition) override {
        RC_TRY(convertSnapshot(snapshot, "f32"));
        return m_cache.importRound(snapshot, firstPosition);
    }
    // Everything stays in RAM; the placement only drives the accounting a device would report.
    Status setPlacement(int watershed, uint64_t vramBudgetBytes) override {
        m_placement.configure(watershed, vramBudgetBytes);
        return {};
    }
    KvPlacementStats placementStats() const override {
        return KvPlacementStats{m_placement.deviceBytes(m_cache.table()), m_placement.bytesCopied(), 0.0};
    }

    Status begin(const ForwardBatch& batch) override;
    Status runLayers(int first, int last, const KvView& view) override;
    Result<std::span<const float>> logits() override;
    Result<std::vector<float>> roundScores(int layer) const override;
    Result<std::vector<std::vector<float>>> distantAttention(int layer) const override;

private:
    // out (n, W.rows) = in (n, W.cols) * W^T, rows split across threads.
    void matmul(const WeightView& w, const float* in, float* out, int n);
    void runLayer(int layer, const std::vector<int>& visible);
    void attention(int layer, const std::vector<int>& visible);
    void recordDistant(int layer, const std::vector<int>& visible);

    const ModelConfig& m_config;
    const ModelWeights& m_weights;
    ThreadPool& m_pool;
    KvCache m_cache;
    KvPlacement m_placement;

    // The begun batch.
    int m_n = 0;
    bool m_allLogits = false;
    bool m_recordScores = false;
    int m_nextLayer = -1;  // next layer to run; -1: no batch begun
    bool m_logitsReady = false;
    std::vector<int32_t> m_tokens;
    std::vector<int32_t> m_positions;           // (n)
    std::vector<std::vector<int32_t>> m_kvPos;  // per round: absolute positions of its (committed + pending) keys
    ResolvedView m_view;                        // the current runLayers() call's rounds and position deltas
    std::vector<std::vector<float>> m_shiftedKeys;  // per visible round with a delta: (count, nKvHeads, headDim)

    // Activations, sized for the batch.
    std::vector<float> m_x;                    // (n, dim) residual stream
    std::vector<float> m_xb;                   // (n, dim) normed input
    std::vector<float> m_xb2;                  // (n, dim) block output
    std::vector<float> m_q;                    // (n, nHeads, headDim)
    std::vector<float> m_att;                  // (n, nHeads, headDim) merged attention output
    std::vector<float> m_lse;                  // (n, nHeads) merged log-sum-exp
    std::vector<float> m_part;                 // (n, nHeads, headDim) one round's partial output
    std::vector<float> m_roundLse;             // (visible rounds, n, nHeads) per-round log-sum-exp, for round scores
    std::vector<float> m_hb;                   // (n, ffn) gate
    std::vector<float> m_hb2;                  // (n, ffn) up
    std::vector<float> m_logits;               // (n or 1, nVocab)
    std::vector<std::vector<float>> m_scores;  // per layer: per round attention mass (empty: not recorded)

    // Inter-layer key sharing (kv_sharing.h) for the begun batch; null: full attention.
    const KvSharingPlan* m_sharing = nullptr;  // borrowed from the batch
    std::vector<float> m_leaderQ;              // (n, nHeads, headDim) queries of the current group's first layer
    std::vector<float> m_sharedPart;           // (n, nHeads, headDim) scratch of sharedRoundAttention
    std::vector<float> m_sharedLse;            // (n, nHeads)
    // Per layer: per recorded query and head, the distribution over its distant keys (empty: not recorded).
    std::vector<std::vector<std::vector<float>>> m_distant;
};

}  // namespace inference
