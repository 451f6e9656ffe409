// CPU llama forward: RMSNorm -> Q/K/V -> RoPE -> GQA attention over the visible rounds -> output projection ->
// residual -> RMSNorm -> SwiGLU FFN -> residual; final RMSNorm and output projection on demand.
#include "cpu_backend.h"

#include <cmath>
#include <limits>
#include <new>
#include <string>
#include <thread>

#include "kernels/quant_ref.h"
#include "kernels/reference.h"
#include "inference/kv_sharing.h"
#include "inference/round_policy.h"

namespace inference {

// ---- backend ----

CpuBackend::CpuBackend(const ModelConfig& config, const ModelWeights& weights, int threads)
    : m_config(config), m_weights(weights), m_pool(std::make_unique<ThreadPool>(threads)) {}

BackendInfo CpuBackend::info() const {
    BackendInfo info;
    info.kind = BackendKind::Cpu;
    info.deviceName = "CPU (" + std::to_string(m_pool->threadCount()) + " threads)";
    info.weightBytes = m_weights.totalBytes();
    return info;
}

Result<std::unique_ptr<BackendContext>> CpuBackend::createContext(int contextLength) const {
    if (contextLength <= 0)
        return makeError(ErrorCode::InvalidArgument, "context length must be positive");
    return std::unique_ptr<BackendContext>(std::make_unique<CpuContext>(m_config, m_weights, *m_pool, contextLength));
}

Result<std::unique_ptr<Backend>> createCpuBackend(const ModelConfig& config, const ModelWeights& weights,
                                                  const BackendOptions& options) {
    return std::unique_ptr<Backend>(std::make_unique<CpuBackend>(config, weights, options.threads));
}

Status validateBatch(const ForwardBatch& batch, int nVocab) {
    if (batch.tokens.empty())
        return makeError(ErrorCode::InvalidArgument, "empty batch");
    for (int32_t t : batch.tokens)
        if (t < 0 || t >= nVocab)
            return makeError(ErrorCode::InvalidArgument, "token id " + std::to_string(t) + " outside the vocabulary");
    return {};
}

Status forwardAll(BackendContext& ctx, const ForwardBatch& batch, int nLayers) {
    RC_TRY(ctx.begin(batch));
    return ctx.runLayers(0, nLayers, KvView{});
}

Result<ResolvedView> resolveView(const KvView& view, const KvRoundTable& table) {
    const int lastRound = table.roundCount() - 1;
    const size_t listed = view.allRounds ? static_cast<size_t>(lastRound) : view.rounds.size();
    if (!view.deltas.empty() && view.deltas.size() != listed)
        return makeError(ErrorCode::InvalidArgument, "KvView deltas must match its rounds one to one");
    ResolvedView out;
    for (size_t i = 0; i < listed; ++i) {
        const int r = view.allRounds ? static_cast<int>(i) : view.rounds[i];
        const int delta = view.deltas.empty() ? 0 : view.deltas[i];
        if (r < 0 || r > lastRound || (!out.rounds.empty() && r <= out.rounds.back()))
            return makeError(ErrorCode::InvalidArgument, "KvView rounds must be ascending indices of rounds");
        const KvRound& round = table.round(r);
        if (r == lastRound ? delta != 0
                           : round.firstPosition + delta + round.tokenCount > table.round(lastRound).firstPosition)
            return makeError(ErrorCode::InvalidArgument, "KvView delta " + std::to_string(delta) + " moves round " +
                                                             std::to_string(r) + " into or past the batch's round");
        if (r == lastRound)
            continue;
        out.rounds.push_back(r);
        out.deltas.push_back(delta);
        out.shifted = out.shifted || delta != 0;
    }
    out.rounds.push_back(lastRound);
    out.deltas.push_back(0);
    return out;
}

// ---- context ----

CpuContext::CpuContext(const ModelConfig& config, const ModelWeights& weights, ThreadPool& pool, int contextLength)
    : m_config(config),
      m_weights(weights),
      m_pool(pool),
      m_cache(KvLayout{config.nLayers, config.nKvHeads, config.headDim}, contextLength),
      m_placement(config.nLayers, 2ull * static_cast<uint64_t>(config.kvDim()) * sizeof(float)) {}

Status CpuContext::begin(const ForwardBatch& batch) {
    m_nextLayer = -1;
    m_logitsReady = false;
    const int n = static_cast<int>(batch.tokens.size());
    RC_TRY(validateBatch(batch, m_config.nVocab));
    if (batch.sharing && batch.sharing->nLayers() != m_config.nLayers)
        return makeError(ErrorCode::InvalidArgument, "KV sharing plan made for another layer count");
    RC_TRY(m_cache.reserve(n));
    const KvRoundTable& table = m_cache.table();
    const size_t dim = static_cast<size_t>(m_config.dim);
    try {
        m_tokens.assign(batch.tokens.begin(), batch.tokens.end());
        m_positions.resize(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i) m_positions[static_cast<size_t>(i)] = table.nextPosition() + i;
        m_kvPos.resize(static_cast<size_t>(table.roundCount()));
        for (int r = 0; r < table.roundCount(); ++r) {
            const KvRound& round = table.round(r);
            const int count = round.tokenCount + (r == table.roundCount() - 1 ? n : 0);
            std::vector<int32_t>& pos = m_kvPos[static_cast<size_t>(r)];
            pos.resize(static_cast<size_t>(count));
            for (int j = 0; j < count; ++j) pos[static_cast<size_t>(j)] = round.firstPosition + j;
        }
        const size_t nn = static_cast<size_t>(n);
        m_x.resize(nn * dim);
        m_xb.resize(nn * dim);
        m_xb2.resize(nn * dim);
        m_q.resize(nn * static_cast<size_t>(m_config.qDim()));
        m_att.resize(m_q.size());
        m_part.resize(m_q.size());
        m_lse.resize(nn * static_cast<size_t>(m_config.nHeads));
        m_hb.resize(nn * static_cast<size_t>(m_config.ffn));
        m_hb2.resize(m_hb.size());
        m_scores.assign(static_cast<size_t>(m_config.nLayers), {});
        m_distant.assign(static_cast<size_t>(m_config.nLayers), {});
        if (batch.sharing) {
            m_leaderQ.resize(m_q.size());
            m_sharedPart.resize(m_q.size());
            m_sharedLse.resize(m_lse.size());
        }
    } catch (const std::bad_alloc&) {
        return makeError(ErrorCode::OutOfMemory, "activations for a batch of " + std::to_string(n) + " tokens");
    }
    m_n = n;
    m_allLogits = batch.allLogits;
    m_recordScores = batch.recordRoundScores;
    m_sharing = batch.sharing;
    const WeightView& embd = m_weights.tokenEmbedding;
    m_pool.parallelFor(n, [&](int64_t b, int64_t e) {
        kernels::embeddingRef(embd.type, embd.data, m_config.dim, m_tokens.data() + b, static_cast<int>(e - b),
                              m_x.data() + b * m_config.dim);
    });
    m_nextLayer = 0;
    return {};
}

void CpuContext::matmul(const WeightView& w, const float* in, float* out, int n) {
    const int64_t cols = w.cols;
    const int64_t rows = w.rows;
    const int64_t rowBytes = w.rowBytes();
    m_pool.parallelFor(rows, [&](int64_t r0, int64_t r1) {
        // Row-outer: each weight row is decoded from memory once and stays in cache for all n tokens.
        for (int64_t r = r0; r < r1; ++r) {
            const uint8_t* row = w.data + r * rowBytes;
            for (int t = 0; t < n; ++t) out[t * rows + r] = kernels::dotRowRef(w.type, row, in + t * cols, cols);
        }
    });
}

Status CpuContext::runLayers(int first, int last, const KvView& view) {
    if (m_nextLayer < 0)
        return makeError(ErrorCode::InvalidArgument, "runLayers without begin()");
    if (first != m_nextLayer || last <= first || last > m_config.nLayers)
        return makeError(ErrorCode::InvalidArgument, "layer range [" + std::to_string(first) + ", " +
                                                         std::to_string(last) + ") does not continue at layer " +
                                                         std::to_string(m_nextLayer));
    Result<ResolvedView> resolved = resolveView(view, m_cache.table());
    if (!resolved)
        return resolved.error();
    if (resolved->shifted && m_sharing)
        return makeError(ErrorCode::Unsupported, "KvView position deltas together with KV sharing");
    m_view = std::move(*resolved);
    const std::vector<int>& visible = m_view.rounds;
    if (m_placement.split() && last > m_placement.watershed())
        (void)m_placement.recall(m_cache.table(), visible);
    for (int layer = first; layer < last; ++layer) runLayer(layer, visible);
    m_nextLayer = last;
    if (last == m_config.nLayers) {
        m_cache.commit(m_n);
        m_nextLayer = -1;
        m_logitsReady = true;
        m_logits.clear();
    }
    return {};
}

void CpuContext::runLayer(int layer, const std::vector<int>& visible) {
    const ModelConfig& c = m_config;
    const LayerWeights& w = m_weights.layers[static_cast<size_t>(layer)];
    const int n = m_n;
    float* kNew = m_cache.pendingKeys(layer);  // (n, nKvHeads, headDim)
    float* vNew = m_cache.pendingValues(layer);

    kernels::rmsnormRef(m_xb.data(), m_x.data(), reinterpret_cast<const float*>(w.attnNorm.data), n, c.dim, c.rmsEps);
    matmul(w.wq, m_xb.data(), m_q.data(), n);
    matmul(w.wk, m_xb.data(), kNew, n);
    matmul(w.wv, m_xb.data(), vNew, n);
    kernels::ropeRef(m_q.data(), m_positions.data(), n, c.nHeads, c.headDim, c.ropeDim, c.ropeFreqBase);
    kernels::ropeRef(kNew, m_positions.data(), n, c.nKvHeads, c.headDim, c.ropeDim, c.ropeFreqBase);

    attention(layer, visible);
    matmul(w.wo, m_att.data(), m_xb2.data(), n);
    for (size_t i = 0; i < m_x.size(); ++i) m_x[i] += m_xb2[i];

    kernels::rmsnormRef(m_xb.data(), m_x.data(), reinterpret_cast<const float*>(w.ffnNorm.data), n, c.dim, c.rmsEps);
    matmul(w.wGate, m_xb.data(), m_hb.data(), n);
    matmul(w.wUp, m_xb.data(), m_hb2.data(), n);
    kernels::swigluRef(m_hb.data(), m_hb.data(), m_hb2.data(), static_cast<int64_t>(m_hb.size()));
    matmul(w.wDown, m_hb.data(), m_xb2.data(), n);
    for (size_t i = 0; i < m_x.size(); ++i) m_x[i] += m_xb2[i];
}

void CpuContext::attention(int layer, const std::vector<int>& visible) {
    const ModelConfig& c = m_config;
    const int n = m_n;
    const int qDim = c.qDim();
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
    const int lastRound = m_cache.table().roundCount() - 1;
    const size_t lseStride = static_cast<size_t>(n) * c.nHeads;
    m_roundLse.resize(visible.size() * lseStride);
    std::fill(m_att.begin(), m_att.end(), 0.0f);
    std::fill(m_lse.begin(), m_lse.end(), -std::numeric_limits<float>::infinity());

    // Sharing: the group's first layer keeps its queries for the SharedScores variant of the layers after it.
    const int leader = m_sharing ? m_sharing->leader[static_cast<size_t>(layer)] : layer;
    if (m_sharing && leader == layer)
        std::copy(m_q.begin(), m_q.end(), m_leaderQ.begin());
    const float* qDistant =
        m_sharing && m_sharing->variant == KvSharingVariant::SharedScores ? m_leaderQ.data() : m_q.data();
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, scale};

    // Rounds the view moves (backend.h, Positions): keys re-rotated by their delta into scratch, the cache unchanged.
    m_shiftedKeys.resize(visible.size());
    for (size_t v = 0; v < visible.size() && m_view.shifted; ++v) {
        if (m_view.deltas[v] == 0)
            continue;
        const std::vector<int32_t>& from = m_kvPos[static_cast<size_t>(visible[v])];
        std::vector<int32_t> to(from.size());
        for (size_t j = 0; j < from.size(); ++j) to[j] = from[j] + m_view.deltas[v];
        const float* k = m_cache.keys(visible[v], layer);
        m_shiftedKeys[v].assign(k, k + from.size() * static_cast<size_t>(c.kvDim()));
        // Split by tokens: one round (round 0, the oldest) usually holds most of the shifted keys.
        m_pool.parallelFor(static_cast<int64_t>(from.size()), [&](int64_t j0, int64_t j1) {
            kernels::ropeShiftRef(m_shiftedKeys[v].data() + j0 * c.kvDim(), from.data() + j0, to.data() + j0,
                                  static_cast<int>(j1 - j0), c.nKvHeads, c.headDim, c.ropeDim, c.ropeFreqBase);
        });
    }

    // Tokens split across threads; each round's partial attention is merged into the running result by LSE.
    m_pool.parallelFor(n, [&](int64_t t0, int64_t t1) {
        const int nt = static_cast<int>(t1 - t0);
        for (size_t v = 0; v < visible.size(); ++v) {
            const int r = visible[v];
            const int count = m_cache.table().round(r).tokenCount + (r == lastRound ? n : 0);
            float* part = m_part.data() + t0 * qDim;
            float* lse = m_roundLse.data() + v * lseStride + t0 * c.nHeads;
            if (m_sharing) {
                const SharedRoundKv kv{m_cache.keys(r, layer), m_cache.keys(r, leader), m_cache.values(r, layer),
                                       m_kvPos[static_cast<size_t>(r)].data(), count};
                sharedRoundAttention(m_q.data() + t0 * qDim, qDistant + t0 * qDim, m_positions.data() + t0, nt, kv,
                                     *m_sharing, shape, part, lse, m_sharedPart.data() + t0 * qDim,
                                     m_sharedLse.data() + t0 * c.nHeads);
            } else {
                const float* k = m_view.deltas[v] == 0 ? m_cache.keys(r, layer) : m_shiftedKeys[v].data();
                kernels::attentionRef(m_q.data() + t0 * qDim, k, m_cache.values(r, layer), part, lse,
                                      m_positions.data() + t0, m_kvPos[static_cast<size_t>(r)].data(), nt, count,
                                      c.nHeads, c.nKvHeads, c.headDim, scale);
            }
            kernels::attentionMergeRef(m_att.data() + t0 * qDim, m_lse.data() + t0 * c.nHeads, part, lse, nt * c.nHeads,
                                       c.headDim);
        }
    });
    if (m_sharing && m_sharing->recordQueries > 0)
        recordDistant(layer, visible);

    if (!m_recordScores)
        return;
    m_scores[static_cast<size_t>(layer)] =
        roundMassFromLse(RoundLse{m_roundLse, std::span<const float>(m_lse).first(lseStride), visible, n, c.nHeads,
                                  m_cache.table().roundCount()});
}

void CpuContext::recordDistant(int layer, const std::vector<int>& visible) {
    const ModelConfig& c = m_config;
    const int leader = m_sharing->leader[static_cast<size_t>(layer)];
    const float* qDistant = m_sharing->variant == KvSharingVariant::SharedScores ? m_leaderQ.data() : m_q.data();
    const AttentionShape shape{c.nHeads, c.nKvHeads, c.headDim, 1.0f / std::sqrt(static_cast<float>(c.headDim))};
    const int lastRound = m_cache.table().roundCount() - 1;
    std::vector<std::vector<float>>& out = m_distant[static_cast<size_t>(layer)];
    out.clear();
    for (int i = std::max(0, m_n - m_sharing->recordQueries); i < m_n; ++i) {
        std::vector<std::vector<float>> perHead(static_cast<size_t>(c.nHeads));
        for (int r : visible) {
            const int count = m_cache.table().round(r).tokenCount + (r == lastRound ? m_n : 0);
            const SharedRoundKv kv{m_cache.keys(r, leader), m_cache.keys(r, leader), m_cache.values(r, layer),
                                   m_kvPos[static_cast<size_t>(r)].data(), count};
            appendDistantScores(qDistant + static_cast<int64_t>(i) * c.qDim(), m_positions[static_cast<size_t>(i)], kv,
                                *m_sharing, shape, perHead);
        }
        for (std::vector<float>& p : perHead) {
            if (!p.empty())
                kernels::softmaxRef(p.data(), static_cast<int>(p.size()));
            out.push_back(std::move(p));
        }
    }
}

Result<std::vector<std::vector<float>>> CpuContext::distantAttention(int layer) const {
    if (layer < 0 || layer >= m_config.nLayers || m_distant.empty() || m_distant[static_cast<size_t>(layer)].empty())
        return makeError(ErrorCode::InvalidArgument, "no distant attention recorded at layer " + std::to_string(layer) +
                                                         " (set KvSharingPlan::recordQueries)");
    return m_distant[static_cast<size_t>(layer)];
}

Result<std::span<const float>> CpuContext::logits() {
    if (!m_logitsReady)
        return makeError(ErrorCode::InvalidArgument, "logits() before the batch's last layer has run");
    const int rows = m_allLogits ? m_n : 1;
    const size_t vocab = static_cast<size_t>(m_config.nVocab);
    if (m_logits.empty()) {
        const float* in = m_x.data() + static_cast<size_t>(m_n - rows) * m_config.dim;
        kernels::rmsnormRef(m_xb.data(), in, reinterpret_cast<const float*>(m_weights.outputNorm.data), rows,
                            m_config.dim, m_config.rmsEps);
        try {
            m_logits.resize(static_cast<size_t>(rows) * vocab);
        } catch (const std::bad_alloc&) {
            return makeError(ErrorCode::OutOfMemory, "logits");
        }
        matmul(m_weights.output, m_xb.data(), m_logits.data(), rows);
    }
    return std::span<const float>(m_logits);
}

Result<std::vector<float>> CpuContext::roundScores(int layer) const {
    if (layer < 0 || layer >= m_config.nLayers || m_scores.empty() || m_scores[static_cast<size_t>(layer)].empty())
        return makeError(ErrorCode::InvalidArgument, "no round scores recorded at layer " + std::to_string(layer) +
                                                         " (set ForwardBatch::recordRoundScores)");
    return m_scores[static_cast<size_t>(layer)];
}

}  // namespace inference
