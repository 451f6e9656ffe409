// CUDA llama forward, step for step the same as cpu_backend.cpp but with the kernels of kernels/ on one stream:
// embedding -> per layer RMSNorm, Q/K/V projections (GEMV for one or two tokens, cuBLAS GEMM above), RoPE, KV
// store, flash attention over the visible rounds' cache spans (split-K for decode), output projection, residual,
// RMSNorm, SwiGLU FFN, residual; final RMSNorm and output projection on demand.
//
// Weights are uploaded once, in their GGUF encoding, into one device arena owned by the backend (norm vectors as
// float32). Each context owns a KV cache of `capacity` slots per layer (fp16, or float32 for F32 models: see
// CudaBackend::kvType()): a round's tokens live in slots taken from a free list (lowest first, so a round is usually
// one contiguous span), and the attention kernel reads the visible rounds as a list of spans. KvRoundTable keeps
// the round bookkeeping, exactly as on the CPU. Under a Round Attention placement (setPlacement) the cache holds
// layers [0, L_w) only; layers [L_w, L) live in host memory and a device pool with its own slots (cuda/upper_kv.h).
// Inter-layer KV sharing (kv_sharing.h): a layer that does not lead its group attends in three passes merged by
// log-sum-exp (sharedAttention), as the CPU reference does; the cache still holds every key of every layer.
// Ownership/threading: see backend.h. The backend owns the stream, the cuBLAS handle and the weights; contexts
// borrow the backend. All CUDA calls happen on the one inference thread.
#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "cuda/upper_kv.h"
#include "inference/kv_sharing.h"
#include "inference/round_policy.h"
#include "kernels/attention.h"
#include "kernels/attention_merge.h"
#include "kernels/cuda_raii.h"
#include "kernels/embedding.h"
#include "kernels/gemm.h"
#include "kernels/gemv.h"
#include "kernels/kv_type.h"
#include "kernels/quant_ref.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/rope_kv_store.h"
#include "kernels/swiglu.h"

namespace inference {

namespace {

using kernels::DeviceBuffer;

constexpr size_t kAlign = 256;                     // device arena alignment of every tensor (bytes)
constexpr uint64_t kHeadroomBytes = 512ull << 20;  // kept free for the KV cache, activations and cuBLAS
constexpr int kMaxGemvTokens = 2;                  // up to this many tokens, GEMV per token beats dequant + GEMM
constexpr int kKeysPerSplit = 64;                  // decode: at least this many keys per split-K block

size_t alignUp(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

std::string mib(uint64_t bytes) { return std::to_string((bytes + (1u << 20) - 1) >> 20) + " MiB"; }

// A weight matrix on the device in its GGUF encoding.
struct DeviceWeight {
    GgmlType type = GgmlType::F32;
    const uint8_t* data = nullptr;
    int rows = 0;
    int cols = 0;
};

// wq|wk|wv and wGate|wUp are placed back to back when they share type and row length, so decode runs one GEMV per
// group (wqkv, wGateUp); the single matrices stay usable as row slices (prefill GEMMs, the unfused fallback).
struct DeviceLayer {
    const float* attnNorm = nullptr;  // (dim)
    DeviceWeight wq, wk, wv, wo;
    DeviceWeight wqkv;                // (qDim + 2 kvDim, dim) rows [wq | wk | wv]; data null when not concatenated
    const float* ffnNorm = nullptr;   // (dim)
    DeviceWeight wGate, wUp, wDown;
    DeviceWeight wGateUp;             // (2 ffn, dim) rows [wGate | wUp]; data null when not concatenated
};

// The row concatenation of matrices that lie back to back with one type and row length; empty (data null) if they
// do not.
DeviceWeight concatenated(std::initializer_list<const DeviceWeight*> parts) {
    const DeviceWeight& first = **parts.begin();
    DeviceWeight all{first.type, first.data, 0, first.cols};
    for (const DeviceWeight* p : parts) {
        if (p->type != all.type || p->cols != all.cols ||
            p->data != all.data + static_cast<int64_t>(all.rows) * kernels::rowBytes(all.type, all.cols))
            return {};
        all.rows += p->rows;
    }
    return all;
}

// Grows `buf` to at least n elements; contents are not kept. The old buffer is freed first to keep the peak low.
// `generation` (may be null) counts reallocations, so captured graphs know when a pointer they baked in changed.
template <typename T>
Status ensure(DeviceBuffer<T>& buf, size_t n, const char* what, uint64_t* generation = nullptr) {
    if (buf.size() >= n)
        return {};
    if (generation)
        ++*generation;
    buf = DeviceBuffer<T>();
    auto b = DeviceBuffer<T>::create(n);
    if (!b)
        return Error{b.error().code, std::string(what) + ": " + b.error().detail};
    buf = std::move(*b);
    return {};
}

class CudaBackend final : public Backend {
public:
    CudaBackend(const ModelConfig& config, kernels::DeviceInfo device, kernels::Stream stream,
                kernels::CublasHandle cublas)
        : m_config(config), m_device(std::move(device)), m_stream(std::move(stream)), m_cublas(std::move(cublas)) {}

    Status upload(const ModelWeights& weights);

    BackendInfo info() const override {
        BackendInfo info;
        info.kind = BackendKind::Cuda;
        info.deviceName = m_device.name;
        info.weightBytes = m_weightBytes;
        info.deviceTotalBytes = m_device.totalBytes;
        size_t freeBytes = 0, totalBytes = 0;
        info.deviceFreeBytes = cudaMemGetInfo(&freeBytes, &totalBytes) == cudaSuccess ? freeBytes : 0;
        return info;
    }
    const ModelConfig& config() const override { return m_config; }
    Result<std::unique_ptr<BackendContext>> createContext(int contextLength) const override;

    cudaStream_t stream() const { return m_stream.get(); }
    cublasHandle_t cublas() const { return m_cublas.get(); }
    int multiProcessors() const { return m_device.multiProcessors; }
    const DeviceLayer& layer(int l) const { return m_layers[static_cast<size_t>(l)]; }
    const DeviceWeight& tokenEmbedding() const { return m_embedding; }
    const DeviceWeight& output() const { return m_output; }
    const float* outputNorm() const { return m_outputNorm; }
    size_t maxDequantElems() const { return m_maxDequantElems; }
    // KV-cache element type of the contexts: F32 when every weight matrix is F32 (small reference models, whose
    // logits fp16 K/V would move by ~1e-2 while the cache is tiny anyway), else F16.
    kernels::KvType kvType() const { return m_kvType; }

private:
    const ModelConfig& m_config;  // borrowed from Model
    kernels::DeviceInfo m_device;
    kernels::Stream m_stream;
    kernels::CublasHandle m_cublas;
    DeviceBuffer<uint8_t> m_arena;  // every weight, kAlign-aligned
    uint64_t m_weightBytes = 0;
    std::vector<DeviceLayer> m_layers;
    DeviceWeight m_embedding;
    DeviceWeight m_output;
    const float* m_outputNorm = nullptr;
    size_t m_maxDequantElems = 0;  // largest quantised matrix: the fp16 scratch a prefill GEMM needs
    kernels::KvType m_kvType = kernels::KvType::F16;
};

Status CudaBackend::upload(const ModelWeights& w) {
    // Pass 1 sizes the arena (tied output shares the embedding), pass 2 copies.
    std::map<const uint8_t*, size_t> offsets;
    size_t total = 0;
    auto plan = [&](const WeightView& v, bool asFloat) {
        if (offsets.count(v.data))
            return;
        offsets[v.data] = total;
        const size_t bytes =
            asFloat ? static_cast<size_t>(v.rows * v.cols) * sizeof(float) : static_cast<size_t>(v.bytes());
        total += alignUp(bytes);
    };
    plan(w.tokenEmbedding, false);
    plan(w.output, false);
    plan(w.outputNorm, true);
    // A group shares one aligned region, each matrix right after the previous (see DeviceLayer), unless the
    // matrices differ in type or row length or one is already placed (then each is planned alone).
    auto planGroup = [&](std::initializer_list<const WeightView*> group) {
        const WeightView& first = **group.begin();
        bool joint = true;
        for (const WeightView* v : group)
            joint = joint && v->type == first.type && v->cols == first.cols && !offsets.count(v->data);
        for (const WeightView* v : group) {
            if (!joint) {
                plan(*v, false);
                continue;
            }
            offsets[v->data] = total;
            total += static_cast<size_t>(v->bytes());
        }
        total = alignUp(total);
    };
    for (const LayerWeights& l : w.layers) {
        planGroup({&l.wq, &l.wk, &l.wv});
        planGroup({&l.wGate, &l.wUp});
        for (const WeightView* v : {&l.wo, &l.wDown})
            plan(*v, false);
        plan(l.attnNorm, true);
        plan(l.ffnNorm, true);
    }
    if (total + kHeadroomBytes > m_device.freeBytes)
        return Error{ErrorCode::OutOfGpuMemory, "the model needs " + mib(total + kHeadroomBytes) +
                                                    " of GPU memory (weights " + mib(total) + " + working memory), " +
                                                    m_device.name + " has " + mib(m_device.freeBytes) + " free"};
    auto arena = DeviceBuffer<uint8_t>::create(total);
    if (!arena)
        return arena.error();
    m_arena = std::move(*arena);
    m_weightBytes = total;

    std::vector<float> floats;
    auto place = [&](const WeightView& v, bool asFloat) -> Result<const uint8_t*> {
        uint8_t* dst = m_arena.data() + offsets[v.data];
        if (asFloat) {  // norm vectors: decoded to float32 whatever their file type
            floats.resize(static_cast<size_t>(v.rows * v.cols));
            for (int64_t r = 0; r < v.rows; ++r)
                kernels::dequantizeRowRef(v.type, v.data + r * v.rowBytes(), floats.data() + r * v.cols, v.cols);
            RC_TRY(kernels::cudaStatus(cudaMemcpy(dst, floats.data(), floats.size() * sizeof(float),
                                                  cudaMemcpyHostToDevice), "weight upload"));
        } else {
            RC_TRY(kernels::cudaStatus(cudaMemcpy(dst, v.data, static_cast<size_t>(v.bytes()), cudaMemcpyHostToDevice),
                                       "weight upload"));
        }
        return static_cast<const uint8_t*>(dst);
    };
    auto matrix = [&](const WeightView& v, DeviceWeight& out) -> Status {
        // A zero-row launch only validates type and row length (Unsupported names the supported types).
        RC_TRY(kernels::matvec(nullptr, v.type, nullptr, nullptr, nullptr, 0, static_cast<int>(v.cols)));
        Result<const uint8_t*> p = place(v, false);
        if (!p)
            return p.error();
        out = DeviceWeight{v.type, *p, static_cast<int>(v.rows), static_cast<int>(v.cols)};
        if (v.type != GgmlType::F16 && v.type != GgmlType::F32)
            m_maxDequantElems = std::max(m_maxDequantElems, static_cast<size_t>(v.rows * v.cols));
        if (v.type != GgmlType::F32)
            m_kvType = kernels::KvType::F16;
        return {};
    };
    auto vec = [&](const WeightView& v, const float*& out) -> Status {
        Result<const uint8_t*> p = place(v, true);
        if (!p)
            return p.error();
        out = reinterpret_cast<const float*>(*p);
        return {};
    };
    m_kvType = kernels::KvType::F32;  // until matrix() meets a weight that is not F32
    RC_TRY(matrix(w.tokenEmbedding, m_embedding));
    RC_TRY(matrix(w.output, m_output));
    RC_TRY(vec(w.outputNorm, m_outputNorm));
    m_layers.resize(w.layers.size());
    for (size_t i = 0; i < w.layers.size(); ++i) {
        const LayerWeights& l = w.layers[i];
        DeviceLayer& d = m_layers[i];
        RC_TRY(vec(l.attnNorm, d.attnNorm));
        RC_TRY(vec(l.ffnNorm, d.ffnNorm));
        RC_TRY(matrix(l.wq, d.wq));
        RC_TRY(matrix(l.wk, d.wk));
        RC_TRY(matrix(l.wv, d.wv));
        RC_TRY(matrix(l.wo, d.wo));
        RC_TRY(matrix(l.wGate, d.wGate));
        RC_TRY(matrix(l.wUp, d.wUp));
        RC_TRY(matrix(l.wDown, d.wDown));
        d.wqkv = concatenated({&d.wq, &d.wk, &d.wv});
        d.wGateUp = concatenated({&d.wGate, &d.wUp});
    }
    return {};
}

class CudaContext final : public BackendContext {
public:
    CudaContext(const CudaBackend& backend, int capacity)
        : m_b(backend),
          m_c(backend.config()),
          m_table(capacity),
          m_capacity(capacity),
          m_kvType(backend.kvType()),
          m_upper(backend.config().nLayers, backend.config().kvDim(), kernels::kvTypeBytes(m_kvType), capacity,
                  backend.stream()) {}

    Status allocate();

    const KvRoundTable& rounds() const override { return m_table; }
    Status beginRound() override {
        // The round that stops being the last one keeps its upper layers on the host from now on.
        if (m_upper.split() && m_table.roundCount() > 0)
            RC_TRY(m_upper.flush(m_table, m_table.roundCount() - 1));
        RC_TRY(m_table.beginRound());
        m_slots[m_table.round(m_table.roundCount() - 1).id].clear();
        return {};
    }
    Status keepRounds(int n) override {
        RC_TRY(m_table.keepRounds(n));
        releaseDeadSlots();
        return {};
    }
    Status removeRounds(int first, int last) override {
        RC_TRY(m_table.removeRounds(first, last));
        releaseDeadSlots();
        return {};
    }
    Status dropTail(int nTokens) override {
        RC_TRY(m_table.dropTail(nTokens));
        releaseDeadSlots();
        return {};
    }
    uint64_t kvBytes(int firstLayer, int lastLayer) const override {
        return static_cast<uint64_t>(m_table.tokenCount()) * m_c.kvDim() * 2 * kvElementBytes() *
               static_cast<uint64_t>(std::max(0, lastLayer - firstLayer));
    }
    Result<RoundKvSnapshot> exportRound(int round, int firstLayer, int layerCount) const override;
    Status importRound(RoundKvSnapshot snapshot, int firstPosition) override;
    Status setPlacement(int watershed, uint64_t vramBudgetBytes) override;
    KvPlacementStats placementStats() const override {
        return KvPlacementStats{m_upper.placement().deviceBytes(m_table), m_upper.bytesCopied(), m_upper.copyMs(),
                                m_upper.poolBytes()};
    }

    Status begin(const ForwardBatch& batch) override;
    Status runLayers(int first, int last, const KvView& view) override;
    Result<std::span<const float>> logits() override;
    Result<std::vector<float>> roundScores(int layer) const override;

private:
    // Runs of consecutive slots: the spans the attention kernel reads.
    static void appendSpans(std::span<const int32_t> slots, std::vector<kernels::KvSpan>& out);
    // Frees the slots of rounds that left the table and of tokens dropped from a round's tail.
    void releaseDeadSlots();
    // Lowest n free slots, ascending (m_free is kept sorted descending).
    std::vector<int32_t> lowestFree(int n) const { return {m_free.rbegin(), m_free.rbegin() + n}; }
    // Layers below the watershed live in the context's cache (slots of m_slots), the others in m_upper's pool.
    // Bytes of one cached K (or V) element, kernels::kvTypeBytes(m_kvType): the unit of every KV copy and size.
    size_t kvElementBytes() const { return kernels::kvTypeBytes(m_kvType); }
    size_t kvRowBytes() const { return static_cast<size_t>(m_c.kvDim()) * kvElementBytes(); }  // one token, layer
    uint8_t* layerKeys(int layer) const {
        return layer >= m_upper.watershed() ? m_upper.keys(layer)
                                            : m_k.data() + static_cast<size_t>(layer) * m_capacity * kvRowBytes();
    }
    uint8_t* layerValues(int layer) const {
        return layer >= m_upper.watershed() ? m_upper.values(layer)
                                            : m_v.data() + static_cast<size_t>(layer) * m_capacity * kvRowBytes();
    }
    const int32_t* layerPositions(int layer) const {
        return layer >= m_upper.watershed() ? m_upper.positions() : m_kvPos.data();
    }
    // K/V of a round for layers [first, first + count) as bytes of m_kvType elements: (layer, K then V, tokenCount,
    // kvDim), the snapshot layout; synchronises.
    Status readRound(int round, int first, int count, std::vector<uint8_t>& out) const;
    // Writes every layer of `image` (readRound's layout, tokens = slots.size()) for round id: the lower layers to
    // the cache slots; the upper layers stay in `image`, which becomes the round's host copy (no copy of them).
    Status writeRound(uint64_t id, const std::vector<int32_t>& slots, std::vector<uint8_t> image);
    // Copies the lower-cache layers [first, last) of the tokens in `slots` between the cache and `host` (snapshot
    // layout: layer, K then V, slot order) on the compute stream and waits. kind: to or from the host.
    Status copyLowerLayers(const std::vector<int32_t>& slots, int first, int last, uint8_t* host,
                           cudaMemcpyKind kind) const;
    Status uploadPositions(const std::vector<int32_t>& slots, int firstPosition);
    Status project(const DeviceWeight& w, const float* in, float* out, int n);
    int decodeSplits() const;
    // Runs layers [first, last) of the begun batch (as a CUDA graph for decode).
    Status runRange(int first, int last);
    Status runLayer(int layer);
    Status attention(int layer);
    // Inter-layer KV sharing (kv_sharing.h). prepareSharing: after the visible rounds' slots (roundSlots, parallel
    // to m_visible, the batch's pending slots included) are known, uploads their sink / other span lists and, for an
    // upper-layer call, notes the lower-cache slots of the same tokens (m_leaderRuns).
    Status prepareSharing(bool upper, const std::vector<std::vector<int32_t>>& roundSlots);
    // The group leader's keys at `layer`'s cache slots: the leader's own cache when both lie on the same side of the
    // watershed, else gathered from the lower cache into m_kLeader at the pool slots (m_leaderRuns).
    Result<const void*> distantKeys(int layer);
    // A layer that does not lead its group: the sinks and the window with the layer's own keys, the distant keys with
    // leaderKeys; three kernels::attention calls over lag bands, merged into a.out/a.lse (a.lse must be set) by their
    // log-sum-exp. `a` holds the layer's usual arguments; sinks and rest select the keys (prepareSharing's lists).
    struct SpanList {
        const kernels::KvSpan* spans = nullptr;  // device
        const int32_t* count = nullptr;          // device
    };
    Status sharedAttention(kernels::AttentionArgs a, const void* leaderKeys, SpanList sinks, SpanList rest);

    const CudaBackend& m_b;
    const ModelConfig& m_c;
    KvRoundTable m_table;
    int m_capacity = 0;
    std::map<uint64_t, std::vector<int32_t>> m_slots;  // round id -> cache slot of each committed token
    std::vector<int32_t> m_free;                       // free slots, descending
    const kernels::KvType m_kvType;                    // element type of m_k, m_v, m_kShift and m_upper
    mutable DeviceBuffer<uint8_t> m_k;                 // (nLayers, capacity, kvDim) elements of m_kvType
    mutable DeviceBuffer<uint8_t> m_v;
    DeviceBuffer<int32_t> m_kvPos;                     // (capacity) absolute position of each slot
    // Layers [watershed, nLayers) under a Round Attention placement; m_k/m_v then hold (watershed, capacity, kvDim).
    UpperKv m_upper;

    // The begun batch.
    int m_n = 0;
    bool m_allLogits = false;
    bool m_recordScores = false;
    const KvSharingPlan* m_sharing = nullptr;  // ForwardBatch::sharing, borrowed; null: full attention
    int m_nextLayer = -1;
    bool m_logitsReady = false;
    std::vector<int32_t> m_pending;    // slots reserved for the batch's tokens
    std::vector<int32_t> m_positions;  // (n)
    std::vector<int> m_visible;        // rounds the current runLayers call attends to
    std::vector<int> m_spanOffset;     // per visible round: index of its first span
    int m_totalKeys = 0;
    std::vector<float> m_logits;
    std::vector<std::vector<float>> m_scores;

    // Device activations, grown to the largest batch seen.
    DeviceBuffer<int32_t> m_dTokens, m_dPositions, m_dPending;
    DeviceBuffer<kernels::KvSpan> m_dSpans;
    DeviceBuffer<int32_t> m_dSpanCounts;  // [0]: all visible spans; [1 + v]: visible round v's spans
    // A view with position deltas (backend.h, Positions): m_dShift holds (slots, from, to) of the m_shiftCount
    // visible keys, m_kShift (capacity, kvDim) of m_kvType receives them re-rotated for each layer's attention.
    int m_shiftCount = 0;
    DeviceBuffer<int32_t> m_dShift;
    DeviceBuffer<uint8_t> m_kShift;
    DeviceBuffer<float> m_x, m_xb, m_xb2, m_q, m_kNew, m_vNew, m_att, m_lse, m_hb, m_hb2, m_dLogits, m_workspace;
    DeviceBuffer<float> m_roundOut, m_roundLse;
    // Sharing, for the current runLayers call: the visible keys as sink spans (positions < sinkTokens) of every
    // visible round, then the other spans (window and distant keys) of every visible round. m_dShareCounts: [0] all
    // sink spans, [1] all other spans, [2 + 2v] and [3 + 2v] visible round v's; m_sinkOffset / m_restOffset: per
    // visible round, the index of its first sink / other span.
    DeviceBuffer<kernels::KvSpan> m_dShareSpans;
    DeviceBuffer<int32_t> m_dShareCounts;
    std::vector<int> m_sinkOffset, m_restOffset;
    // Upper-layer call under a split placement: runs {lower slot, pool slot, count} of the visible tokens.
    std::vector<std::array<int32_t, 3>> m_leaderRuns;
    DeviceBuffer<uint8_t> m_kLeader;             // (capacity, kvDim) of m_kvType: leader keys at pool slots
    DeviceBuffer<float> m_leaderQ;               // (n, nHeads, headDim) the group leader's queries after RoPE
    DeviceBuffer<float> m_shareOut, m_shareLse;  // one partial attention: (n, nHeads, headDim), (n, nHeads)
    DeviceBuffer<uint16_t> m_wScratch, m_aScratch;
    int m_maxSplits = 1;

    // Decode graphs per layer range, valid while no buffer they use was reallocated.
    struct CachedGraph {
        kernels::GraphExec exec;
        int splits = 0;
    };
    std::map<std::pair<int, int>, CachedGraph> m_graphs;
    uint64_t m_generation = 0;
    uint64_t m_graphGeneration = 0;
};

Result<std::unique_ptr<BackendContext>> CudaBackend::createContext(int contextLength) const {
    if (contextLength <= 0)
        return makeError(ErrorCode::InvalidArgument, "context length must be positive");
    auto ctx = std::make_unique<CudaContext>(*this, contextLength);
    RC_TRY(ctx->allocate());
    return std::unique_ptr<BackendContext>(std::move(ctx));
}

Status CudaContext::allocate() {
    const size_t cacheBytes = static_cast<size_t>(m_c.nLayers) * m_capacity * kvRowBytes();
    RC_TRY(ensure(m_k, cacheBytes, "KV cache"));
    RC_TRY(ensure(m_v, cacheBytes, "KV cache"));
    RC_TRY(ensure(m_kvPos, static_cast<size_t>(m_capacity), "KV cache"));
    RC_TRY(m_upper.init());
    m_upper.configure(m_c.nLayers, 0);
    // Decode split-K: enough blocks for two waves over the SMs, never fewer than kKeysPerSplit keys each.
    m_maxSplits = std::max(1, 2 * m_b.multiProcessors() / m_c.nKvHeads);
    RC_TRY(ensure(m_workspace, kernels::attentionWorkspaceFloats(1, m_c.nHeads, m_c.headDim, m_maxSplits),
                  "attention workspace"));
    m_free.resize(static_cast<size_t>(m_capacity));
    for (int i = 0; i < m_capacity; ++i)
        m_free[static_cast<size_t>(i)] = m_capacity - 1 - i;
    return {};
}

void CudaContext::appendSpans(std::span<const int32_t> slots, std::vector<kernels::KvSpan>& out) {
    for (size_t i = 0; i < slots.size();) {
        size_t j = i + 1;
        while (j < slots.size() && slots[j] == slots[j - 1] + 1)
            ++j;
        out.push_back({slots[i], static_cast<int32_t>(j - i)});
        i = j;
    }
}

void CudaContext::releaseDeadSlots() {
    std::map<uint64_t, int> live;
    for (const KvRound& r : m_table.rounds())
        live[r.id] = r.tokenCount;
    for (auto it = m_slots.begin(); it != m_slots.end();) {
        auto l = live.find(it->first);
        const size_t keep = l == live.end() ? 0 : static_cast<size_t>(l->second);
        m_free.insert(m_free.end(), it->second.begin() + static_cast<std::ptrdiff_t>(std::min(keep, it->second.size())),
                      it->second.end());
        if (l == live.end()) {
            it = m_slots.erase(it);
        } else {
            it->second.resize(std::min(keep, it->second.size()));
            ++it;
        }
    }
    std::sort(m_free.begin(), m_free.end(), std::greater<>());
    m_upper.release(m_table);
}

Status CudaContext::uploadPositions(const std::vector<int32_t>& slots, int firstPosition) {
    // One copy per run of consecutive slots (usually one).
    std::vector<kernels::KvSpan> runs;
    appendSpans(slots, runs);
    std::vector<int32_t> pos;
    int j = 0;
    for (const kernels::KvSpan& s : runs) {
        pos.resize(static_cast<size_t>(s.count));
        for (int i = 0; i < s.count; ++i)
            pos[static_cast<size_t>(i)] = firstPosition + j++;
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(m_kvPos.data() + s.start, pos.data(), pos.size() * sizeof(int32_t),
                                                   cudaMemcpyHostToDevice, m_b.stream()),
                                   "KV positions upload"));
    }
    return {};
}

Status CudaContext::begin(const ForwardBatch& batch) {
    m_nextLayer = -1;
    m_logitsReady = false;
    const int n = static_cast<int>(batch.tokens.size());
    RC_TRY(validateBatch(batch, m_c.nVocab));
    if (batch.sharing && batch.sharing->nLayers() != m_c.nLayers)
        return makeError(ErrorCode::InvalidArgument, "KV sharing plan made for another layer count");
    if (batch.sharing && batch.sharing->recordQueries > 0)  // calibration (calibration.h) runs on the CPU backend
        return makeError(ErrorCode::Unsupported, "distant attention for KV sharing calibration is recorded by the "
                                                 "CPU backend only");
    RC_TRY(m_table.checkAppend(n));
    if (static_cast<int>(m_free.size()) < n)
        return makeError(ErrorCode::ContextFull, "no free KV slots for " + std::to_string(n) + " tokens");
    const size_t nn = static_cast<size_t>(n);
    const size_t widest = static_cast<size_t>(std::max({m_c.dim, m_c.ffn, m_c.qDim()}));
    RC_TRY(ensure(m_dTokens, nn, "activations", &m_generation));
    RC_TRY(ensure(m_dPositions, nn, "activations", &m_generation));
    RC_TRY(ensure(m_dPending, nn, "activations", &m_generation));
    RC_TRY(ensure(m_x, nn * m_c.dim, "activations", &m_generation));
    RC_TRY(ensure(m_xb, nn * m_c.dim, "activations", &m_generation));
    RC_TRY(ensure(m_xb2, nn * m_c.dim, "activations", &m_generation));
    RC_TRY(ensure(m_q, nn * m_c.qDim(), "activations", &m_generation));
    RC_TRY(ensure(m_att, nn * m_c.qDim(), "activations", &m_generation));
    RC_TRY(ensure(m_kNew, nn * m_c.kvDim(), "activations", &m_generation));
    RC_TRY(ensure(m_vNew, nn * m_c.kvDim(), "activations", &m_generation));
    RC_TRY(ensure(m_lse, nn * m_c.nHeads, "activations", &m_generation));
    RC_TRY(ensure(m_hb, nn * m_c.ffn, "activations", &m_generation));
    // m_hb2 also takes the fused decode QKV output (qDim + 2 kvDim; more than ffn for MHA models).
    RC_TRY(ensure(m_hb2, nn * std::max(m_c.ffn, m_c.qDim() + 2 * m_c.kvDim()), "activations", &m_generation));
    RC_TRY(ensure(m_dLogits, (batch.allLogits ? nn : 1) * m_c.nVocab, "logits", &m_generation));
    if (n > kMaxGemvTokens) {
        RC_TRY(ensure(m_wScratch, m_b.maxDequantElems(), "GEMM scratch"));
        RC_TRY(ensure(m_aScratch, nn * widest, "GEMM scratch"));
    }
    if (batch.recordRoundScores) {
        RC_TRY(ensure(m_roundOut, nn * m_c.qDim(), "round scores"));
        RC_TRY(ensure(m_roundLse, static_cast<size_t>(m_table.roundCount()) * nn * m_c.nHeads, "round scores"));
    }
    if (batch.sharing) {
        RC_TRY(ensure(m_leaderQ, nn * m_c.qDim(), "KV sharing", &m_generation));
        RC_TRY(ensure(m_shareOut, nn * m_c.qDim(), "KV sharing", &m_generation));
        RC_TRY(ensure(m_shareLse, nn * m_c.nHeads, "KV sharing", &m_generation));
    }

    if (m_upper.split())
        RC_TRY(m_upper.reserve(n, m_table.nextPosition(), &m_generation));
    m_pending = lowestFree(n);
    m_positions.resize(nn);
    for (int i = 0; i < n; ++i)
        m_positions[static_cast<size_t>(i)] = m_table.nextPosition() + i;
    const cudaStream_t s = m_b.stream();
    RC_TRY(m_dTokens.upload(batch.tokens.data(), nn, s));
    RC_TRY(m_dPositions.upload(m_positions.data(), nn, s));
    RC_TRY(m_dPending.upload(m_pending.data(), nn, s));
    RC_TRY(uploadPositions(m_pending, m_table.nextPosition()));
    const DeviceWeight& e = m_b.tokenEmbedding();
    RC_TRY(kernels::embedding(s, e.type, e.data, m_c.dim, m_dTokens.data(), n, m_x.data()));
    m_n = n;
    m_allLogits = batch.allLogits;
    m_recordScores = batch.recordRoundScores;
    m_sharing = batch.sharing;
    m_scores.assign(static_cast<size_t>(m_c.nLayers), {});
    m_logits.clear();
    m_nextLayer = 0;
    return {};
}

Status CudaContext::runLayers(int first, int last, const KvView& view) {
    if (m_nextLayer < 0)
        return makeError(ErrorCode::InvalidArgument, "runLayers without begin()");
    if (first != m_nextLayer || last <= first || last > m_c.nLayers)
        return makeError(ErrorCode::InvalidArgument, "layer range [" + std::to_string(first) + ", " +
                                                         std::to_string(last) + ") does not continue at layer " +
                                                         std::to_string(m_nextLayer));
    // A range across the watershed runs as two: lower and upper layers keep the same tokens in different slots.
    const int watershed = m_upper.watershed();
    if (first < watershed && last > watershed) {
        RC_TRY(runLayers(first, watershed, view));
        return runLayers(watershed, last, view);
    }
    const bool upper = first >= watershed;
    const int lastRound = m_table.roundCount() - 1;
    Result<ResolvedView> resolved = resolveView(view, m_table);
    if (!resolved)
        return resolved.error();
    if (resolved->shifted && m_sharing)  // as on the CPU backend
        return makeError(ErrorCode::Unsupported, "KvView position deltas together with KV sharing");
    m_visible = std::move(resolved->rounds);
    if (upper) {
        // The visible rounds' upper layers come to the pool (copies in flight); the batch writes its upper slots.
        RC_TRY(m_upper.recall(m_table, m_visible, &m_generation));
        RC_TRY(m_dPending.upload(m_upper.pending().data(), m_upper.pending().size(), m_b.stream()));
    }

    // Spans of every visible round in order; the batch's own round ends with its pending slots.
    std::vector<kernels::KvSpan> spans;
    std::vector<int32_t> counts(1 + m_visible.size());
    std::vector<int32_t> shiftSlots, shiftFrom, shiftTo;  // moved views: every visible slot, see attention()
    std::vector<std::vector<int32_t>> roundSlots;         // sharing: every visible round's slots
    m_spanOffset.clear();
    m_totalKeys = 0;
    for (size_t v = 0; v < m_visible.size(); ++v) {
        const int r = m_visible[v];
        std::vector<int32_t> slots = upper ? m_upper.slots(m_table.round(r).id) : m_slots[m_table.round(r).id];
        const std::vector<int32_t>& pending = upper ? m_upper.pending() : m_pending;
        if (r == lastRound)
            slots.insert(slots.end(), pending.begin(), pending.end());
        m_spanOffset.push_back(static_cast<int>(spans.size()));
        appendSpans(slots, spans);
        counts[1 + v] = static_cast<int32_t>(spans.size()) - m_spanOffset.back();
        m_totalKeys += static_cast<int>(slots.size());
        if (m_sharing)
            roundSlots.push_back(slots);
        for (size_t j = 0; j < slots.size() && resolved->shifted; ++j) {
            shiftSlots.push_back(slots[j]);
            shiftFrom.push_back(m_table.round(r).firstPosition + static_cast<int32_t>(j));
            shiftTo.push_back(shiftFrom.back() + resolved->deltas[v]);
        }
    }
    counts[0] = static_cast<int32_t>(spans.size());
    RC_TRY(ensure(m_dSpans, spans.size(), "KV spans", &m_generation));
    RC_TRY(ensure(m_dSpanCounts, counts.size(), "KV spans", &m_generation));
    RC_TRY(m_dSpans.upload(spans.data(), spans.size(), m_b.stream()));
    RC_TRY(m_dSpanCounts.upload(counts.data(), counts.size(), m_b.stream()));
    m_shiftCount = static_cast<int>(shiftSlots.size());
    if (m_shiftCount > 0) {
        RC_TRY(ensure(m_kShift, static_cast<size_t>(m_capacity) * kvRowBytes(), "shifted keys"));
        RC_TRY(ensure(m_dShift, 3 * shiftSlots.size(), "shifted keys"));
        shiftSlots.insert(shiftSlots.end(), shiftFrom.begin(), shiftFrom.end());
        shiftSlots.insert(shiftSlots.end(), shiftTo.begin(), shiftTo.end());
        RC_TRY(m_dShift.upload(shiftSlots.data(), shiftSlots.size(), m_b.stream()));
    }
    if (m_sharing)
        RC_TRY(prepareSharing(upper, roundSlots));

    // Under a split placement only layer watershed - 1 records round scores (the one Round Attention reads): the
    // per-round attention passes and their synchronisation stay off every other layer.
    const bool record = m_recordScores;
    const int scored = m_upper.split() && record && first < watershed && watershed - 1 < last ? watershed - 1 : -1;
    m_recordScores = record && !m_upper.split();
    if (upper && m_upper.copying()) {
        // Recalled KV arrives layer by layer on the copy stream: each layer starts as soon as its own KV is in.
        for (int layer = first; layer < last; ++layer) {
            RC_TRY(m_upper.waitLayer(layer));
            RC_TRY(runRange(layer, layer + 1));
        }
    } else if (scored >= 0) {
        if (first < scored)
            RC_TRY(runRange(first, scored));
        m_recordScores = true;
        RC_TRY(runRange(scored, last));
    } else {
        RC_TRY(runRange(first, last));
    }
    m_recordScores = record;
    m_nextLayer = last;
    if (last == m_c.nLayers) {
        // No synchronisation here: an asynchronous kernel failure is sticky and surfaces in logits().
        const uint64_t id = m_table.round(lastRound).id;
        m_table.commitAppend(m_n);
        m_slots[id].insert(m_slots[id].end(), m_pending.begin(), m_pending.end());
        m_free.resize(m_free.size() - m_pending.size());
        m_pending.clear();
        if (m_upper.split())
            m_upper.commit(id);
        m_nextLayer = -1;
        m_logitsReady = true;
    }
    return {};
}

int CudaContext::decodeSplits() const { return std::clamp(m_totalKeys / kKeysPerSplit, 1, m_maxSplits); }

Status CudaContext::runRange(int first, int last) {
    const cudaStream_t s = m_b.stream();
    // A moved view's shift list changes with every step: no graph for it. Nor for KV sharing (distantKeys copies
    // between slots chosen on the host).
    if (m_n != 1 || m_recordScores || m_shiftCount > 0 || m_sharing) {
        for (int layer = first; layer < last; ++layer)
            RC_TRY(runLayer(layer));
        return {};
    }
    // Decode: replay the layers as one CUDA graph. Every per-step input (token, position, KV slot, spans) lives in
    // device buffers the graph reads, so a graph stays valid until a buffer is reallocated or the split count
    // changes (every kKeysPerSplit keys until m_maxSplits).
    if (m_graphGeneration != m_generation) {
        m_graphs.clear();
        m_graphGeneration = m_generation;
    }
    const int splits = decodeSplits();
    CachedGraph& g = m_graphs[{first, last}];
    if (!g.exec.valid() || g.splits != splits) {
        RC_TRY(kernels::cudaStatus(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin capture"));
        Status st;
        for (int layer = first; layer < last && st.ok(); ++layer)
            st = runLayer(layer);
        const Status captured = g.exec.endCapture(s);  // always ends the capture, also after a failure
        RC_TRY(st);
        RC_TRY(captured);
        g.splits = splits;
    }
    return g.exec.launch(s);
}

Status CudaContext::project(const DeviceWeight& w, const float* in, float* out, int n) {
    if (n <= kMaxGemvTokens) {
        for (int t = 0; t < n; ++t)
            RC_TRY(kernels::matvec(m_b.stream(), w.type, w.data, in + static_cast<size_t>(t) * w.cols,
                                   out + static_cast<size_t>(t) * w.rows, w.rows, w.cols));
        return {};
    }
    const kernels::GemmScratch scratch{m_wScratch.data(), m_wScratch.size(), m_aScratch.data(), m_aScratch.size()};
    return kernels::matmul(m_b.stream(), m_b.cublas(), w.type, w.data, w.rows, w.cols, in, n, out, scratch);
}

Status CudaContext::runLayer(int layer) {
    const ModelConfig& c = m_c;
    const DeviceLayer& w = m_b.layer(layer);
    const cudaStream_t s = m_b.stream();
    const int n = m_n;
    const int qkvDim = c.qDim() + 2 * c.kvDim();
    // Decode: 5 launches + attention. RMSNorm runs inside the QKV and gate|up GEMVs, SwiGLU and the residual adds in
    // their epilogues, RoPE and the KV store in one kernel. The QKV rows go to m_hb2 (unused by the fused FFN).
    if (n <= kMaxGemvTokens && w.wGateUp.data && m_hb2.size() >= static_cast<size_t>(n) * qkvDim) {
        float* qkv = m_hb2.data();
        auto perToken = [&](const DeviceWeight& wt, const float* in, float* out, int outStride, const float* norm,
                            kernels::GemvEpilogue epilogue) -> Status {
            for (int t = 0; t < n; ++t) {
                kernels::GemvArgs a;
                a.type = wt.type;
                a.w = wt.data;
                a.rows = wt.rows;
                a.cols = wt.cols;
                a.x = in + static_cast<size_t>(t) * wt.cols;
                a.normWeight = norm;
                a.normEps = c.rmsEps;
                a.epilogue = epilogue;
                a.y = out + static_cast<size_t>(t) * outStride;
                RC_TRY(kernels::gemv(s, a));
            }
            return {};
        };
        if (w.wqkv.data) {
            RC_TRY(perToken(w.wqkv, m_x.data(), qkv, qkvDim, w.attnNorm, kernels::GemvEpilogue::Store));
        } else {  // types differ (e.g. a Q6_K wv next to Q4_K wq, wk): one GEMV per matrix into the same rows
            float* dst = qkv;
            for (const DeviceWeight* part : {&w.wq, &w.wk, &w.wv}) {
                RC_TRY(perToken(*part, m_x.data(), dst, qkvDim, w.attnNorm, kernels::GemvEpilogue::Store));
                dst += part->rows;
            }
        }
        kernels::RopeKvStoreArgs r;
        r.qkv = qkv;
        r.q = m_q.data();
        r.kCache = layerKeys(layer);
        r.vCache = layerValues(layer);
        r.kvType = m_kvType;
        r.positions = m_dPositions.data();
        r.slots = m_dPending.data();
        r.nTokens = n;
        r.nHeads = c.nHeads;
        r.nKvHeads = c.nKvHeads;
        r.headDim = c.headDim;
        r.ropeDim = c.ropeDim;
        r.freqBase = c.ropeFreqBase;
        RC_TRY(kernels::ropeKvStore(s, r));
        RC_TRY(attention(layer));
        RC_TRY(perToken(w.wo, m_att.data(), m_x.data(), c.dim, nullptr, kernels::GemvEpilogue::Accumulate));
        RC_TRY(perToken(w.wGateUp, m_x.data(), m_hb.data(), c.ffn, w.ffnNorm, kernels::GemvEpilogue::SwiGlu));
        return perToken(w.wDown, m_hb.data(), m_x.data(), c.dim, nullptr, kernels::GemvEpilogue::Accumulate);
    }
    RC_TRY(kernels::rmsnorm(s, m_xb.data(), m_x.data(), w.attnNorm, n, c.dim, c.rmsEps));
    RC_TRY(project(w.wq, m_xb.data(), m_q.data(), n));
    RC_TRY(project(w.wk, m_xb.data(), m_kNew.data(), n));
    RC_TRY(project(w.wv, m_xb.data(), m_vNew.data(), n));
    RC_TRY(kernels::rope(s, m_q.data(), m_dPositions.data(), n, c.nHeads, c.headDim, c.ropeDim, c.ropeFreqBase));
    RC_TRY(kernels::rope(s, m_kNew.data(), m_dPositions.data(), n, c.nKvHeads, c.headDim, c.ropeDim, c.ropeFreqBase));
    RC_TRY(kernels::kvStore(s, m_kNew.data(), m_vNew.data(), layerKeys(layer), layerValues(layer), m_kvType,
                            m_dPending.data(), n, c.kvDim()));
    RC_TRY(attention(layer));
    RC_TRY(project(w.wo, m_att.data(), m_xb2.data(), n));
    RC_TRY(kernels::addInPlace(s, m_x.data(), m_xb2.data(), static_cast<int64_t>(n) * c.dim));

    RC_TRY(kernels::rmsnorm(s, m_xb.data(), m_x.data(), w.ffnNorm, n, c.dim, c.rmsEps));
    RC_TRY(project(w.wGate, m_xb.data(), m_hb.data(), n));
    RC_TRY(project(w.wUp, m_xb.data(), m_hb2.data(), n));
    RC_TRY(kernels::swiglu(s, m_hb.data(), m_hb.data(), m_hb2.data(), static_cast<int64_t>(n) * c.ffn));
    RC_TRY(project(w.wDown, m_hb.data(), m_xb2.data(), n));
    return kernels::addInPlace(s, m_x.data(), m_xb2.data(), static_cast<int64_t>(n) * c.dim);
}

Status CudaContext::attention(int layer) {
    const ModelConfig& c = m_c;
    kernels::AttentionArgs a;
    a.q = m_q.data();
    a.qPos = m_dPositions.data();
    a.k = layerKeys(layer);
    a.kvType = m_kvType;
    if (m_shiftCount > 0) {
        // Moved rounds (backend.h, Positions): every visible slot's key, re-rotated by its round's delta (0 for
        // unmoved rounds: a plain copy), into scratch rows of the same slots; the cache keeps its keys.
        const int32_t* list = m_dShift.data();
        RC_TRY(kernels::ropeShift(m_b.stream(), a.k, m_kShift.data(), m_kvType, list, list + m_shiftCount,
                                  list + 2 * m_shiftCount, m_shiftCount, c.nKvHeads, c.headDim, c.ropeDim,
                                  c.ropeFreqBase));
        a.k = m_kShift.data();
    }
    a.v = layerValues(layer);
    a.kvPos = layerPositions(layer);
    a.spans = m_dSpans.data();
    a.nSpans = m_dSpanCounts.data();
    a.out = m_att.data();
    a.lse = m_lse.data();
    a.nQ = m_n;
    a.nHeads = c.nHeads;
    a.nKvHeads = c.nKvHeads;
    a.headDim = c.headDim;
    a.scale = 1.0f / std::sqrt(static_cast<float>(c.headDim));
    if (m_n == 1) {
        a.nSplits = decodeSplits();
        a.workspace = m_workspace.data();
    }
    // KV sharing: a group's leader keeps its queries for the SharedScores variant of the layers after it; the other
    // layers attend through sharedAttention, over prepareSharing's span lists (all visible rounds, or one).
    const void* leaderKeys = nullptr;
    if (m_sharing && m_sharing->isLeader(layer) && m_sharing->variant == KvSharingVariant::SharedScores) {
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(m_leaderQ.data(), m_q.data(),
                                                   static_cast<size_t>(m_n) * c.qDim() * sizeof(float),
                                                   cudaMemcpyDeviceToDevice, m_b.stream()),
                                   "KV sharing leader queries"));
    } else if (m_sharing && !m_sharing->isLeader(layer)) {
        Result<const void*> k = distantKeys(layer);
        if (!k)
            return k.error();
        leaderKeys = *k;
    }
    const kernels::KvSpan* shareSpans = m_dShareSpans.data();
    const int32_t* shareCounts = m_dShareCounts.data();
    if (leaderKeys) {  // the rest of the list starts after every sink span: at visible round 0's first other span
        RC_TRY(sharedAttention(a, leaderKeys, {shareSpans, shareCounts},
                               {shareSpans + m_restOffset.front(), shareCounts + 1}));
    } else {
        RC_TRY(kernels::attention(m_b.stream(), a));
    }
    if (!m_recordScores)
        return {};

    // Round scores: each visible round alone gives its log-sum-exp; roundMassFromLse turns them into scores, as on
    // the CPU.
    const size_t lseStride = static_cast<size_t>(m_n) * c.nHeads;
    for (size_t v = 0; v < m_visible.size(); ++v) {
        a.spans = m_dSpans.data() + m_spanOffset[v];
        a.nSpans = m_dSpanCounts.data() + 1 + v;
        a.out = m_roundOut.data();
        a.lse = m_roundLse.data() + v * lseStride;
        a.nSplits = 1;
        a.workspace = nullptr;
        if (leaderKeys) {
            RC_TRY(sharedAttention(a, leaderKeys, {shareSpans + m_sinkOffset[v], shareCounts + 2 + 2 * v},
                                   {shareSpans + m_restOffset[v], shareCounts + 3 + 2 * v}));
        } else {
            RC_TRY(kernels::attention(m_b.stream(), a));
        }
    }
    std::vector<float> total(lseStride);
    std::vector<float> perRound(m_visible.size() * lseStride);
    RC_TRY(m_lse.download(total.data(), total.size(), m_b.stream()));
    RC_TRY(m_roundLse.download(perRound.data(), perRound.size(), m_b.stream()));
    RC_TRY(kernels::cudaStatus(cudaStreamSynchronize(m_b.stream()), "round scores"));
    m_scores[static_cast<size_t>(layer)] =
        roundMassFromLse(RoundLse{perRound, total, m_visible, m_n, c.nHeads, m_table.roundCount()});
    return {};
}

Status CudaContext::prepareSharing(bool upper, const std::vector<std::vector<int32_t>>& roundSlots) {
    std::vector<kernels::KvSpan> sinks, rest;
    std::vector<int32_t> counts(2 + 2 * roundSlots.size());
    m_sinkOffset.clear();
    m_restOffset.clear();
    m_leaderRuns.clear();
    const int lastRound = m_table.roundCount() - 1;
    for (size_t v = 0; v < roundSlots.size(); ++v) {
        const KvRound& round = m_table.round(m_visible[v]);
        const std::span<const int32_t> slots(roundSlots[v]);
        // Sinks: the round's tokens at positions < sinkTokens, a prefix (positions ascend by one within a round).
        const size_t sinkEnd = static_cast<size_t>(
            std::clamp(m_sharing->sinkTokens - round.firstPosition, 0, static_cast<int>(slots.size())));
        m_sinkOffset.push_back(static_cast<int>(sinks.size()));
        appendSpans(slots.first(sinkEnd), sinks);
        counts[2 + 2 * v] = static_cast<int32_t>(sinks.size()) - m_sinkOffset.back();
        m_restOffset.push_back(static_cast<int>(rest.size()));
        appendSpans(slots.subspan(sinkEnd), rest);
        counts[3 + 2 * v] = static_cast<int32_t>(rest.size()) - m_restOffset.back();
        if (!upper)
            continue;
        // The same tokens in the lower cache, where a group that crosses the watershed has its leader's keys.
        std::vector<int32_t> lower = m_slots[round.id];
        if (m_visible[v] == lastRound)
            lower.insert(lower.end(), m_pending.begin(), m_pending.end());
        if (lower.size() != slots.size())
            return makeError(ErrorCode::InvalidArgument, "KV sharing: a round's lower and upper slots differ");
        for (size_t j = 0; j < slots.size(); ++j) {
            std::array<int32_t, 3>* run = m_leaderRuns.empty() ? nullptr : &m_leaderRuns.back();
            if (run && lower[j] == (*run)[0] + (*run)[2] && slots[j] == (*run)[1] + (*run)[2])
                ++(*run)[2];
            else
                m_leaderRuns.push_back({lower[j], slots[j], 1});
        }
    }
    for (int& offset : m_restOffset)
        offset += static_cast<int>(sinks.size());
    counts[0] = static_cast<int32_t>(sinks.size());
    counts[1] = static_cast<int32_t>(rest.size());
    sinks.insert(sinks.end(), rest.begin(), rest.end());
    RC_TRY(ensure(m_dShareSpans, sinks.size(), "KV spans", &m_generation));
    RC_TRY(ensure(m_dShareCounts, counts.size(), "KV spans", &m_generation));
    RC_TRY(m_dShareSpans.upload(sinks.data(), sinks.size(), m_b.stream()));
    return m_dShareCounts.upload(counts.data(), counts.size(), m_b.stream());
}

Result<const void*> CudaContext::distantKeys(int layer) {
    const int leader = m_sharing->leader[static_cast<size_t>(layer)];
    const int watershed = m_upper.watershed();
    if ((leader < watershed) == (layer < watershed))
        return static_cast<const void*>(layerKeys(leader));
    RC_TRY(ensure(m_kLeader, static_cast<size_t>(m_capacity) * kvRowBytes(), "KV sharing", &m_generation));
    const size_t row = kvRowBytes();
    const uint8_t* src = layerKeys(leader);
    for (const auto& [from, to, count] : m_leaderRuns)
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(m_kLeader.data() + to * row, src + from * row, count * row,
                                                   cudaMemcpyDeviceToDevice, m_b.stream()),
                                   "KV sharing leader keys"));
    return static_cast<const void*>(m_kLeader.data());
}

Status CudaContext::sharedAttention(kernels::AttentionArgs a, const void* leaderKeys, SpanList sinks,
                                    SpanList rest) {
    const cudaStream_t s = m_b.stream();
    const int rows = m_n * m_c.nHeads;
    // Sinks (positions < sinkTokens): own keys, causal.
    a.spans = sinks.spans;
    a.nSpans = sinks.count;
    RC_TRY(kernels::attention(s, a));
    // The window (lags 0 .. windowTokens - 1): own keys.
    kernels::AttentionArgs part = a;
    part.spans = rest.spans;
    part.nSpans = rest.count;
    part.out = m_shareOut.data();
    part.lse = m_shareLse.data();
    part.maxLag = m_sharing->windowTokens - 1;
    RC_TRY(kernels::attention(s, part));
    RC_TRY(kernels::attentionMerge(s, a.out, a.lse, part.out, part.lse, rows, m_c.headDim));
    // Distant keys (lags >= windowTokens): the leader's keys and this layer's values, scored by the leader's queries
    // (SharedScores) or this layer's (SharedKeys).
    part.k = leaderKeys;
    if (m_sharing->variant == KvSharingVariant::SharedScores)
        part.q = m_leaderQ.data();
    part.minLag = m_sharing->windowTokens;
    part.maxLag = std::numeric_limits<int>::max();
    RC_TRY(kernels::attention(s, part));
    return kernels::attentionMerge(s, a.out, a.lse, part.out, part.lse, rows, m_c.headDim);
}

Result<std::span<const float>> CudaContext::logits() {
    if (!m_logitsReady)
        return makeError(ErrorCode::InvalidArgument, "logits() before the batch's last layer has run");
    if (m_logits.empty()) {
        const int rows = m_allLogits ? m_n : 1;
        const float* in = m_x.data() + static_cast<size_t>(m_n - rows) * m_c.dim;
        RC_TRY(kernels::rmsnorm(m_b.stream(), m_xb.data(), in, m_b.outputNorm(), rows, m_c.dim, m_c.rmsEps));
        RC_TRY(project(m_b.output(), m_xb.data(), m_dLogits.data(), rows));
        m_logits.resize(static_cast<size_t>(rows) * m_c.nVocab);
        RC_TRY(m_dLogits.download(m_logits.data(), m_logits.size(), m_b.stream()));
        RC_TRY(kernels::cudaStatus(cudaStreamSynchronize(m_b.stream()), "logits"));
    }
    return std::span<const float>(m_logits);
}

Result<std::vector<float>> CudaContext::roundScores(int layer) const {
    if (layer < 0 || layer >= m_c.nLayers || m_scores.empty() || m_scores[static_cast<size_t>(layer)].empty())
        return makeError(ErrorCode::InvalidArgument, "no round scores recorded at layer " + std::to_string(layer) +
                                                         " (set ForwardBatch::recordRoundScores)");
    return m_scores[static_cast<size_t>(layer)];
}

Status CudaContext::copyLowerLayers(const std::vector<int32_t>& slots, int first, int last, uint8_t* host,
                                    cudaMemcpyKind kind) const {
    const size_t rowBytes = kvRowBytes();
    std::vector<kernels::KvSpan> runs;
    appendSpans(slots, runs);
    for (int l = first; l < last; ++l) {
        for (uint8_t* cache : {layerKeys(l), layerValues(l)}) {
            for (const kernels::KvSpan& s : runs) {
                uint8_t* device = cache + s.start * rowBytes;
                const bool toHost = kind == cudaMemcpyDeviceToHost;
                RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(toHost ? host : device, toHost ? device : host,
                                                           s.count * rowBytes, kind, m_b.stream()),
                                           toHost ? "KV export" : "KV import"));
                host += s.count * rowBytes;
            }
        }
    }
    return kernels::cudaStatus(cudaStreamSynchronize(m_b.stream()), "KV copy");
}

Status CudaContext::readRound(int round, int first, int count, std::vector<uint8_t>& out) const {
    const KvRound& r = m_table.round(round);
    const auto found = m_slots.find(r.id);
    const std::vector<int32_t> slots = found == m_slots.end() ? std::vector<int32_t>{} : found->second;
    const size_t block = slots.size() * kvRowBytes();  // one layer's K (or V)
    out.resize(2 * block * static_cast<size_t>(count));
    const int lowerEnd = std::min(first + count, m_upper.watershed());
    RC_TRY(copyLowerLayers(slots, first, lowerEnd, out.data(), cudaMemcpyDeviceToHost));
    const int upperFirst = std::max(first, m_upper.watershed());
    if (upperFirst < first + count)
        RC_TRY(m_upper.read(r, upperFirst, first + count - upperFirst,
                            out.data() + 2 * block * static_cast<size_t>(std::max(0, lowerEnd - first))));
    return {};
}

Status CudaContext::writeRound(uint64_t id, const std::vector<int32_t>& slots, std::vector<uint8_t> image) {
    RC_TRY(copyLowerLayers(slots, 0, m_upper.watershed(), image.data(), cudaMemcpyHostToDevice));
    if (!m_upper.split())
        return {};
    const size_t upperOffset = 2 * slots.size() * kvRowBytes() * static_cast<size_t>(m_upper.watershed());
    m_upper.adopt(id, static_cast<int>(slots.size()), std::move(image), upperOffset);
    return {};
}

Result<RoundKvSnapshot> CudaContext::exportRound(int round, int firstLayer, int layerCount) const {
    if (round < 0 || round >= m_table.roundCount() || firstLayer < 0 || layerCount <= 0 ||
        firstLayer + layerCount > m_c.nLayers)
        return makeError(ErrorCode::InvalidArgument, "exportRound: round or layer range out of range");
    RoundKvSnapshot snap;
    snap.round = round;
    snap.firstLayer = firstLayer;
    snap.layerCount = layerCount;
    snap.tokenCount = m_table.round(round).tokenCount;
    snap.dtype = kernels::kvTypeName(m_kvType);
    RC_TRY(readRound(round, firstLayer, layerCount, snap.bytes));
    return snap;
}

Status CudaContext::importRound(RoundKvSnapshot snapshot, int firstPosition) {
    const KvLayout layout{m_c.nLayers, m_c.nKvHeads, m_c.headDim};
    const int tokens = snapshot.tokenCount;
    if (snapshot.firstLayer != 0 || snapshot.layerCount != m_c.nLayers || tokens < 0 ||
        (snapshot.dtype == "f32" && snapshot.bytes.size() != snapshotBytes(layout, m_c.nLayers, tokens)) ||
        (snapshot.dtype == "f16" && snapshot.bytes.size() != snapshotBytes(layout, m_c.nLayers, tokens) / 2))
        return makeError(ErrorCode::Mismatch, "KV snapshot does not match this model's layout (every layer)");
    if (static_cast<int>(m_free.size()) < tokens || m_table.tokenCount() + tokens > m_table.capacity())
        return makeError(ErrorCode::ContextFull, "the restored round does not fit the context");
    RC_TRY(convertSnapshot(snapshot, kernels::kvTypeName(m_kvType)));  // the cache's own type goes in as is
    // The round that stops being the last one keeps its upper layers on the host from now on.
    if (m_upper.split() && m_table.roundCount() > 0)
        RC_TRY(m_upper.flush(m_table, m_table.roundCount() - 1));
    RC_TRY(m_table.beginRoundAt(firstPosition));
    if (Status st = m_table.checkAppend(tokens); !st) {
        (void)m_table.keepRounds(m_table.roundCount() - 1);
        return st;
    }
    const uint64_t id = m_table.round(m_table.roundCount() - 1).id;
    const std::vector<int32_t> slots = lowestFree(tokens);
    if (Status st = writeRound(id, slots, std::move(snapshot.bytes)); !st) {
        (void)m_table.keepRounds(m_table.roundCount() - 1);
        releaseDeadSlots();
        return st;
    }
    RC_TRY(uploadPositions(slots, firstPosition));
    m_table.commitAppend(tokens);
    m_slots[id] = slots;
    m_free.resize(m_free.size() - slots.size());
    return {};
}

Status CudaContext::setPlacement(int watershed, uint64_t vramBudgetBytes) {
    const int w = std::clamp(watershed, 1, m_c.nLayers);
    if (w == m_upper.watershed()) {
        m_upper.setBudget(vramBudgetBytes);
        return {};
    }
    if (m_nextLayer >= 0)
        return makeError(ErrorCode::InvalidArgument, "setPlacement while a batch is begun");
    // Every round's KV goes through the host: read in the old placement, written back in the new one.
    std::vector<std::vector<uint8_t>> images(static_cast<size_t>(m_table.roundCount()));
    for (int r = 0; r < m_table.roundCount(); ++r)
        RC_TRY(readRound(r, 0, m_c.nLayers, images[static_cast<size_t>(r)]));
    const size_t lowerBytes = static_cast<size_t>(w) * m_capacity * kvRowBytes();
    auto k = DeviceBuffer<uint8_t>::create(lowerBytes);
    if (!k)
        return k.error();
    auto v = DeviceBuffer<uint8_t>::create(lowerBytes);
    if (!v)
        return v.error();
    m_k = std::move(*k);
    m_v = std::move(*v);
    m_upper.configure(w, vramBudgetBytes);
    ++m_generation;  // captured graphs hold the old cache pointers
    for (int r = 0; r < m_table.roundCount(); ++r) {
        const uint64_t id = m_table.round(r).id;
        RC_TRY(writeRound(id, m_slots[id], std::move(images[static_cast<size_t>(r)])));
    }
    return {};
}

}  // namespace

Result<std::unique_ptr<Backend>> createCudaBackend(const ModelConfig& config, const ModelWeights& weights,
                                                   const BackendOptions& options) {
    (void)options;  // CPU thread count: nothing to set on the GPU
    Result<kernels::DeviceInfo> device = kernels::probeCudaDevice(0);
    if (!device)
        return device.error();
    RC_TRY(kernels::cudaStatus(cudaSetDevice(device->device), "cudaSetDevice"));
    if (config.headDim % 8 != 0 || config.headDim > kernels::kAttentionMaxHeadDim)
        return makeError(ErrorCode::Unsupported, "head dimension " + std::to_string(config.headDim) +
                                                     " has no GPU attention kernel (multiples of 8 up to " +
                                                     std::to_string(kernels::kAttentionMaxHeadDim) + ")");
    Result<kernels::Stream> stream = kernels::Stream::create();
    if (!stream)
        return stream.error();
    Result<kernels::CublasHandle> cublas = kernels::CublasHandle::create();
    if (!cublas)
        return cublas.error();
    auto backend = std::make_unique<CudaBackend>(config, std::move(*device), std::move(*stream), std::move(*cublas));
    RC_TRY(backend->upload(weights));
    return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace inference
