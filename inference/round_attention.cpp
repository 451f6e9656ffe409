// Round Attention per-turn pipeline: lower layers over every round, score at the watershed, select, upper layers
// over the selection; byte/copy accounting for RecallReport; re-rotating keys to move rounds to new positions.
#include "inference/round_attention.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "backend.h"
#include "generation.h"
#include "kernels/reference.h"

namespace inference {

RoundAttention::RoundAttention(const ModelConfig& config, RoundAttentionOptions options, int calibratedWatershed)
    : m_config(config) {
    setOptions(options, calibratedWatershed);
}

void RoundAttention::setOptions(RoundAttentionOptions options, int calibratedWatershed) {
    m_options = options;
    m_calibrated = calibratedWatershed;
    m_watershed = resolveWatershedLayer(m_options, m_calibrated, m_config.nLayers);
}

void RoundAttention::reset() {
    m_haveSelection = false;
    m_visible.clear();
    m_diag = TurnDiagnostics{};
    m_residency.clear();
    m_bytesCopied = 0;
    m_selectMs = 0.0;
}

uint64_t RoundAttention::bytesPerTokenLayer(const BackendContext& ctx) const {
    const int tokens = ctx.rounds().tokenCount();
    if (tokens > 0)
        return ctx.kvBytes(0, 1) / static_cast<uint64_t>(tokens);
    return 2ull * static_cast<uint64_t>(m_config.kvDim()) * sizeof(float);
}

Status RoundAttention::forward(BackendContext& ctx, const ForwardBatch& batch) {
    const KvRoundTable& table = ctx.rounds();
    if (table.roundCount() == 0)
        return makeError(ErrorCode::InvalidArgument, "no round to append to: call beginRound() first");
    // A new round, or the tokens that made the selection were trimmed away (an edited question): select again.
    const KvRound& own = table.rounds().back();
    const bool needSelection = !m_haveSelection || m_roundId != own.id || own.tokenCount < m_selectionEnd;
    const int selectionEnd = own.tokenCount + static_cast<int>(batch.tokens.size());
    ForwardBatch b = batch;
    b.recordRoundScores = batch.recordRoundScores || needSelection;
    RC_TRY(ctx.begin(b));
    RC_TRY(ctx.runLayers(0, m_watershed, KvView{}));
    if (needSelection) {
        RC_TRY(select(ctx));
        m_selectionEnd = selectionEnd;
    }
    // Position distance the upper layers span: from the oldest visible key to the batch's last query.
    const int lastQuery = table.nextPosition() + static_cast<int>(batch.tokens.size()) - 1;
    const int oldest = m_visible.empty() ? table.rounds().back().firstPosition : table.round(m_visible.front()).firstPosition;
    m_diag.spanBeyondContext = m_diag.spanBeyondContext || lastQuery - oldest >= m_config.contextLength;
    if (m_mode == KvMode::FullKv)
        return ctx.runLayers(m_watershed, m_config.nLayers, KvView{});
    return ctx.runLayers(m_watershed, m_config.nLayers, KvView{false, m_visible});
}

Status RoundAttention::prefill(BackendContext& ctx, std::span<const int32_t> tokens) {
    for (size_t i = 0; i < tokens.size(); i += kPrefillBatch) {
        ForwardBatch batch;
        batch.tokens = tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(kPrefillBatch)));
        RC_TRY(forward(ctx, batch));
    }
    return {};
}

Status RoundAttention::select(BackendContext& ctx) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const KvRoundTable& table = ctx.rounds();
    const int past = table.roundCount() - 1;
    Result<std::vector<float>> raw = ctx.roundScores(m_watershed - 1);
    if (!raw)
        return raw.error();
    m_diag = TurnDiagnostics{};
    m_diag.selected = true;
    const std::vector<float> shares = normaliseRoundScores(*raw);
    m_mode = m_options.mode;
    if (m_mode == KvMode::FullKv) {
        m_diag.selection.shares = shares;
        m_diag.selection.rounds.resize(static_cast<size_t>(past));
        for (int r = 0; r < past; ++r)
            m_diag.selection.rounds[static_cast<size_t>(r)] = r;
        m_diag.selection.capturedMass = 1.0f;
    } else {
        m_diag.selection = selectRounds(shares, m_options);
    }
    m_diag.alternatives = alternativeSelections(shares);
    m_visible = m_diag.selection.rounds;

    // Device copy model: the previous round (answered on the device) joins the VRAM cache, then the recalled
    // rounds' upper layers that are not resident are what a device copies from pinned host memory.
    const uint64_t upperBytesPerToken =
        bytesPerTokenLayer(ctx) * static_cast<uint64_t>(m_config.nLayers - m_watershed);
    m_bytesCopied = 0;
    if (m_mode == KvMode::RoundAttention) {
        if (past >= 1) {
            const KvRound& prev = table.round(past - 1);
            m_residency.endTurn({prev.id, upperBytesPerToken * static_cast<uint64_t>(prev.tokenCount)},
                                m_options.vramBudgetBytes);
        }
        std::vector<UpperKvResidency::Entry> wanted;
        for (int r : m_visible)
            wanted.push_back({table.round(r).id, upperBytesPerToken * static_cast<uint64_t>(table.round(r).tokenCount)});
        m_bytesCopied = m_residency.recall(wanted);
    }
    m_roundId = table.rounds().back().id;
    m_haveSelection = true;
    m_selectMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return {};
}

RecallReport RoundAttention::report(const BackendContext& ctx) const {
    RecallReport r;
    const KvRoundTable& table = ctx.rounds();
    r.mode = m_haveSelection ? m_mode : m_options.mode;
    r.roundsTotal = std::max(0, table.roundCount() - 1);
    r.watershedLayer = m_watershed;
    r.selectMs = m_selectMs;
    r.copyMs = 0.0;  // the CPU reference copies nothing; a device measures its H2D burst here
    r.bytesCopiedFromHost = m_bytesCopied;
    std::vector<int> tokens;
    for (const KvRound& round : table.rounds())
        tokens.push_back(round.tokenCount);
    if (m_haveSelection && m_roundId == table.rounds().back().id) {
        for (int k : m_diag.selection.rounds)
            r.recalled.push_back(RecalledRound{k, m_diag.selection.shares[static_cast<size_t>(k)]});
    }
    // Upper layers resident for this answer: the recalled rounds plus what the VRAM cache still holds.
    std::vector<int> upper;
    for (int k = 0; k + 1 < table.roundCount(); ++k) {
        const bool recalled = std::binary_search(m_visible.begin(), m_visible.end(), k);
        if (r.mode == KvMode::FullKv || recalled || m_residency.isResident(table.round(k).id))
            upper.push_back(k);
    }
    const KvBytesAccount bytes = accountKvBytes(tokens, upper, m_config.nLayers, m_watershed, bytesPerTokenLayer(ctx));
    r.kvBytesInVram = bytes.resident;
    r.kvBytesFull = bytes.full;
    return r;
}

// ---- positions ----

Status shiftSnapshotPositions(RoundKvSnapshot& snapshot, const ModelConfig& config, int from, int to) {
    if (snapshot.dtype != "f32")
        return makeError(ErrorCode::Unsupported, "re-rotating keys of a '" + snapshot.dtype + "' snapshot (f32 only)");
    const int64_t tokenFloats = static_cast<int64_t>(config.kvDim());
    const size_t block = static_cast<size_t>(snapshot.tokenCount * tokenFloats);
    if (snapshot.bytes.size() != 2 * block * sizeof(float) * static_cast<size_t>(snapshot.layerCount))
        return makeError(ErrorCode::CorruptFile, "KV snapshot size does not match its shape");
    if (from == to || snapshot.tokenCount == 0)
        return {};
    std::vector<int32_t> fromPos(static_cast<size_t>(snapshot.tokenCount)), toPos(fromPos.size());
    for (int t = 0; t < snapshot.tokenCount; ++t) {
        fromPos[static_cast<size_t>(t)] = from + t;
        toPos[static_cast<size_t>(t)] = to + t;
    }
    std::vector<float> keys(block);
    for (int l = 0; l < snapshot.layerCount; ++l) {
        // Per layer: K then V (kv_cache.h); only K carries positions. Copied out for alignment.
        uint8_t* k = snapshot.bytes.data() + 2 * block * sizeof(float) * static_cast<size_t>(l);
        std::memcpy(keys.data(), k, block * sizeof(float));
        kernels::ropeShiftRef(keys.data(), fromPos.data(), toPos.data(), snapshot.tokenCount, config.nKvHeads,
                              config.headDim, config.ropeDim, config.ropeFreqBase);
        std::memcpy(k, keys.data(), block * sizeof(float));
    }
    return {};
}

Status compactRoundPositions(BackendContext& ctx, const ModelConfig& config) {
    const KvRoundTable& table = ctx.rounds();
    std::vector<RoundKvSnapshot> snaps;
    std::vector<int> from;
    for (int r = 0; r < table.roundCount(); ++r) {
        Result<RoundKvSnapshot> s = ctx.exportRound(r, 0, config.nLayers);
        if (!s)
            return s.error();
        from.push_back(table.round(r).firstPosition);
        snaps.push_back(std::move(*s));
    }
    int next = 0;
    std::vector<int> to;
    for (size_t r = 0; r < snaps.size(); ++r) {
        to.push_back(next);
        RC_TRY(shiftSnapshotPositions(snaps[r], config, from[r], next));
        next += snaps[r].tokenCount;
    }
    RC_TRY(ctx.keepRounds(0));
    for (size_t r = 0; r < snaps.size(); ++r)
        RC_TRY(ctx.importRound(snaps[r], to[r]));
    return {};
}

}  // namespace inference
