// Round Attention per-turn pipeline: lower layers over every round, score at the watershed, select, upper layers
// over the selection; byte/copy accounting for RecallReport; re-rotating keys to move rounds to new positions.
//
// Past the trained context (ModelConfig::contextLength, T). Rounds keep their absolute positions forever, so a long
// conversation's positions pass T, where the model was never trained. Only query-key distances matter to RoPE, so
// each batch places the rounds its layer ranges see (backend.h, Positions: KvView::deltas re-rotate a round's keys
// into scratch, the stored keys never change):
//   - A view whose distance from its oldest round's first position to the batch's last token is below T keeps the
//     stored positions (everything as before; also the usual case under T).
//   - Otherwise the view is packed: its rounds get contiguous virtual positions in order, round 0 first, the last
//     one ending where the batch's round begins; the batch's round keeps its own positions (deltas are relative).
//   - Lower layers [0, L_w) see every round while all of them packed, plus the batch's round with the batch, fit in
//     T. Beyond that, in Round Attention mode, they see a sliding window: round 0 (the system prompt, an attention
//     sink) and the newest rounds that fit whole; older rounds get no score and are not recalled. In full-KV mode
//     the conversation no longer fits the model at all: ContextFull ("turn on Round Attention"), before anything
//     runs.
//   - Upper layers [L_w, L) see the selection restricted to the lower window, packed when needed: it always fits.
//   - A round that does not fit T together with round 0 is ContextFull in either mode.
// The window and the packing are recomputed for every batch, so a long answer may slide the window while it is
// decoded; the selection stays the one made for the question.
#include "inference/round_attention.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
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
    Result<KvSharingPlan> plan = makeKvSharingPlan(m_options.sharing, m_config.nLayers);
    m_sharingStatus = plan ? Status{} : Status{plan.error()};
    if (plan)
        m_sharingPlan = std::move(*plan);
}

void RoundAttention::reset() {
    m_haveSelection = false;
    m_visible.clear();
    m_diag = TurnDiagnostics{};
    m_copiedAtSelection = 0;
    m_copyMsAtSelection = 0.0;
    m_selectMs = 0.0;
}

namespace {

KvView kvView(const RoundView& view) { return KvView{false, view.rounds, view.deltas}; }

// The rounds of `rounds` that are also in `within` (both ascending).
std::vector<int> intersect(const std::vector<int>& rounds, const std::vector<int>& within) {
    std::vector<int> out;
    std::set_intersection(rounds.begin(), rounds.end(), within.begin(), within.end(), std::back_inserter(out));
    return out;
}

}  // namespace

Result<std::vector<int>> RoundAttention::lowerRounds(const KvRoundTable& table, int nBatch, KvMode mode) const {
    const int past = table.roundCount() - 1;
    const int trained = m_config.contextLength;
    int budget = trained - (table.rounds().back().tokenCount + nBatch);  // room left by the batch's round
    int total = 0;
    for (int r = 0; r < past; ++r) total += table.round(r).tokenCount;
    std::vector<int> rounds;
    if (total <= budget) {
        for (int r = 0; r < past; ++r) rounds.push_back(r);
        return rounds;
    }
    if (mode == KvMode::FullKv)
        return makeError(ErrorCode::ContextFull, "the conversation needs " + std::to_string(total + trained - budget) +
                                                     " positions, the model was trained on " +
                                                     std::to_string(trained) +
                                                     ": turn on Round Attention or start a new chat");
    budget -= past > 0 ? table.round(0).tokenCount : 0;
    if (budget < 0)
        return makeError(ErrorCode::ContextFull, "this round and the system prompt need " +
                                                     std::to_string(trained - budget) + " positions, the model was "
                                                     "trained on " + std::to_string(trained));
    // Round 0, then the newest rounds that fit whole (the window has no holes).
    int first = past;
    while (first - 1 >= 1 && table.round(first - 1).tokenCount <= budget) budget -= table.round(--first).tokenCount;
    rounds.push_back(0);
    for (int r = first; r < past; ++r) rounds.push_back(r);
    return rounds;
}

RoundView RoundAttention::place(const KvRoundTable& table, std::vector<int> rounds, int nBatch) const {
    RoundView view{std::move(rounds), {}};
    const KvRound& own = table.rounds().back();
    const int lastQuery = table.nextPosition() + nBatch - 1;
    const int oldest = view.rounds.empty() ? own.firstPosition : table.round(view.rounds.front()).firstPosition;
    if (lastQuery - oldest < m_config.contextLength)
        return view;
    // Packed from the batch's round backwards: the newest visible round ends where the batch's round begins.
    view.deltas.resize(view.rounds.size());
    int next = own.firstPosition;
    for (size_t i = view.rounds.size(); i-- > 0;) {
        const KvRound& r = table.round(view.rounds[i]);
        next -= r.tokenCount;
        view.deltas[i] = next - r.firstPosition;
    }
    return view;
}

Status RoundAttention::forward(BackendContext& ctx, const ForwardBatch& batch) {
    const KvRoundTable& table = ctx.rounds();
    if (table.roundCount() == 0)
        return makeError(ErrorCode::InvalidArgument, "no round to append to: call beginRound() first");
    // A new round, or the tokens that made the selection were trimmed away (an edited question): select again.
    const KvRound& own = table.rounds().back();
    const bool needSelection = !m_haveSelection || m_roundId != own.id || own.tokenCount < m_selectionEnd;
    const int nBatch = static_cast<int>(batch.tokens.size());
    const int selectionEnd = own.tokenCount + nBatch;
    const KvMode mode = needSelection ? m_options.mode : m_mode;
    // Positions (top of this file); checked before anything changes.
    Result<std::vector<int>> window = lowerRounds(table, nBatch, mode);
    if (!window)
        return window.error();
    const RoundView lower = place(table, *window, nBatch);
    // Full KV keeps every layer on the device; Round Attention moves the upper layers to the host.
    RC_TRY(ctx.setPlacement(mode == KvMode::RoundAttention ? m_watershed : m_config.nLayers,
                            m_options.vramBudgetBytes));
    ForwardBatch b = batch;
    b.recordRoundScores = batch.recordRoundScores || needSelection;
    if (m_options.sharing.enabled)
        RC_TRY(m_sharingStatus);
    // Past the trained context the views are packed (moved keys), which the sharing split does not handle: such a
    // batch attends exactly, and its report counts nothing as shared.
    m_sharingActive = m_options.sharing.enabled && lower.deltas.empty();
    if (m_sharingActive)
        b.sharing = &m_sharingPlan;
    RC_TRY(ctx.begin(b));
    RC_TRY(ctx.runLayers(0, m_watershed, kvView(lower)));
    if (needSelection) {
        RC_TRY(select(ctx, lower.rounds));
        m_selectionEnd = selectionEnd;
    }
    m_diag.lowerView = lower;
    m_diag.upperView = m_mode == KvMode::FullKv ? lower : place(table, intersect(m_visible, lower.rounds), nBatch);
    m_diag.spanBeyondContext = m_diag.spanBeyondContext || !lower.deltas.empty() || !m_diag.upperView.deltas.empty();
    return ctx.runLayers(m_watershed, m_config.nLayers, kvView(m_diag.upperView));
}

Status RoundAttention::prefill(BackendContext& ctx, std::span<const int32_t> tokens) {
    for (size_t i = 0; i < tokens.size(); i += kPrefillBatch) {
        ForwardBatch batch;
        batch.tokens = tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(kPrefillBatch)));
        RC_TRY(forward(ctx, batch));
    }
    return {};
}

Status RoundAttention::select(BackendContext& ctx, const std::vector<int>& lowerRounds) {
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
    // Rounds outside the lower layers' window (positions, top of this file) cannot be recalled.
    m_diag.selection.rounds = intersect(m_diag.selection.rounds, lowerRounds);
    m_visible = m_diag.selection.rounds;
    // The recalled rounds' upper layers are copied by the next runLayers: count from here.
    const KvPlacementStats stats = ctx.placementStats();
    m_copiedAtSelection = stats.bytesCopiedFromHost;
    m_copyMsAtSelection = stats.copyMs;
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
    // Where the KV is as the context reports it: this turn's copies are the traffic since the selection.
    const KvPlacementStats stats = ctx.placementStats();
    r.kvBytesInVram = stats.deviceBytes;
    r.kvBytesFull = ctx.kvBytes(0, m_config.nLayers);
    if (m_haveSelection) {
        r.bytesCopiedFromHost = stats.bytesCopiedFromHost - m_copiedAtSelection;
        r.copyMs = stats.copyMs - m_copyMsAtSelection;
    }
    if (m_haveSelection && m_roundId == table.rounds().back().id) {
        for (int k : m_diag.selection.rounds)
            r.recalled.push_back(RecalledRound{k, m_diag.selection.shares[static_cast<size_t>(k)]});
    }
    if (m_sharingActive && table.tokenCount() > 0) {
        // Inter-layer sharing stores the distant keys of a group's later layers once: in the lower layers of every
        // round, in the upper layers of the rounds this answer attended (recalled ones stored shared too).
        std::vector<int> upper = r.mode == KvMode::FullKv ? std::vector<int>() : m_visible;
        upper.push_back(table.roundCount() - 1);
        const int watershed = r.mode == KvMode::FullKv ? m_config.nLayers : m_watershed;
        const uint64_t keyBytes = ctx.kvBytes(0, 1) / (2ull * static_cast<uint64_t>(table.tokenCount()));
        const uint64_t saved = sharedKeyBytesSaved(table.rounds(), upper, watershed, m_sharingPlan,
                                                   table.nextPosition(), keyBytes);
        r.kvBytesInVram -= std::min(saved, r.kvBytesInVram);
    }
    return r;
}

// ---- positions ----

Status shiftSnapshotPositions(RoundKvSnapshot& snapshot, const ModelConfig& config, int from, int to) {
    if (from == to || snapshot.tokenCount == 0)
        return {};
    const std::string dtype = snapshot.dtype;
    RC_TRY(convertSnapshot(snapshot, "f32"));  // rotated in float32, stored back in its own type
    const int64_t tokenFloats = static_cast<int64_t>(config.kvDim());
    const size_t block = static_cast<size_t>(snapshot.tokenCount * tokenFloats);
    if (snapshot.bytes.size() != 2 * block * sizeof(float) * static_cast<size_t>(snapshot.layerCount))
        return makeError(ErrorCode::CorruptFile, "KV snapshot size does not match its shape");
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
    return convertSnapshot(snapshot, dtype);
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
        RC_TRY(ctx.importRound(std::move(snaps[r]), to[r]));
    return {};
}

}  // namespace inference
