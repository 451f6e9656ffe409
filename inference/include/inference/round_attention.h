// The per-turn Round Attention pipeline over a BackendContext (docs/PAPERS.md A2.5, C2):
//
//     begin(batch, recordRoundScores)            the batch continues the last round
//     runLayers(0, Lw, every round)              lower layers see the whole conversation
//     shares = roundScores(Lw - 1), normalised   attention of the batch's queries per past round
//     select (round_policy.h)                    pinned rounds + cumulative mass, capped; flat: all
//     runLayers(Lw, L, selected rounds)          upper layers see only the recalled rounds (+ the batch's own)
//
// The selection is made by the first batch of a round (the question) and kept for every later batch of the same
// round (the decode steps, a regenerated answer), as in the paper; trimming the question away selects again.
// Full-KV mode runs the same path with every round visible, so the two modes differ only in the KvView of the upper
// layers. Past the model's trained context, every batch's views are windowed and packed to contiguous positions so
// that no layer attends further than the model was trained on; full KV then fails with ContextFull
// (round_attention.cpp explains).
//
// Callers hold a BackendContext (internal: inference/backend.h): the session, the calibration and the benchmark
// inside the library. Ownership: a RoundAttention belongs to one conversation and borrows the ModelConfig, which
// must outlive it. One thread uses it (the inference worker).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "inference/kv_sharing.h"
#include "inference/model_config.h"
#include "inference/round_policy.h"
#include "inference/session.h"

namespace inference {

class BackendContext;  // inference/backend.h
struct ForwardBatch;
class KvRoundTable;    // inference/kv_cache.h

// The past rounds one layer range attended and where (backend.h KvView).
struct RoundView {
    std::vector<int> rounds;  // ascending
    std::vector<int> deltas;  // parallel to rounds: position shift of each; empty: their stored positions
};

// What the last selection decided and why: for logging and the benchmark (RecallReport is the app-facing part).
struct TurnDiagnostics {
    bool selected = false;              // a selection was made for the current round
    RoundSelection selection;           // in full-KV mode: every past round, with the measured shares
    AlternativeSelections alternatives; // what the paper's other policies would have chosen
    // Views of the last batch: layers [0, L_w) and [L_w, L). Past the trained context the lower one is a window
    // (round 0 and the newest rounds) and both are packed to contiguous positions (round_attention.cpp explains).
    RoundView lowerView;
    RoundView upperView;
    // Some batch of this round had a view further than the trained context from its last token, so it was packed.
    bool spanBeyondContext = false;
};

class RoundAttention {
public:
    // calibratedWatershed: the calibrated L_w for this model, or -1 (options.watershedLayer wins when set).
    RoundAttention(const ModelConfig& config, RoundAttentionOptions options, int calibratedWatershed = -1);

    // The watershed applies from the next batch; mode and policy from the next round (a selection in progress
    // stays for the rest of its round).
    void setOptions(RoundAttentionOptions options, int calibratedWatershed = -1);
    const RoundAttentionOptions& options() const { return m_options; }
    int watershedLayer() const { return m_watershed; }

    // Runs one batch (appended to the last round) through every layer, selecting rounds first when the last round
    // has no selection yet. Logits are ready afterwards, as after forwardAll.
    Status forward(BackendContext& ctx, const ForwardBatch& batch);
    // forward() over tokens in batches of at most 256 (generation.h kPrefillBatch; the first batch selects).
    Status prefill(BackendContext& ctx, std::span<const int32_t> tokens);

    // The report for the round being answered, with byte counts as of now (call it after the answer).
    RecallReport report(const BackendContext& ctx) const;
    const TurnDiagnostics& diagnostics() const { return m_diag; }
    // Forget the selection (after the cache was rebuilt, e.g. truncated or compacted).
    void reset();

private:
    Status select(BackendContext& ctx, const std::vector<int>& lowerRounds);
    // Positions past the trained context (round_attention.cpp): the past rounds layers [0, L_w) see for a batch of
    // nBatch tokens (ContextFull when they cannot fit), and where a view's rounds are placed.
    Result<std::vector<int>> lowerRounds(const KvRoundTable& table, int nBatch, KvMode mode) const;
    RoundView place(const KvRoundTable& table, std::vector<int> rounds, int nBatch) const;

    const ModelConfig& m_config;
    RoundAttentionOptions m_options;
    int m_calibrated = -1;
    int m_watershed = 1;
    // The selection is valid for the round with this id (the last round when it was made) while that round still
    // holds the m_selectionEnd tokens it was made from.
    uint64_t m_roundId = 0;
    int m_selectionEnd = 0;
    bool m_haveSelection = false;
    std::vector<int> m_visible;  // past rounds the upper layers see, ascending
    KvMode m_mode = KvMode::FullKv;  // the mode the current selection was made in
    TurnDiagnostics m_diag;
    // The context's cumulative host->device traffic when the selection was made (the report gives this turn's).
    uint64_t m_copiedAtSelection = 0;
    double m_copyMsAtSelection = 0.0;
    double m_selectMs = 0.0;
    // options.sharing resolved for the model; used by every batch while options.sharing.enabled.
    KvSharingPlan m_sharingPlan;
    Status m_sharingStatus;  // InvalidArgument when options.sharing does not fit the model (forward() fails)
    bool m_sharingActive = false;  // the last batch ran with sharing (not when its views were packed)
};

// One round of a scripted conversation as token ids (calibration and benchmark input). Round 0 is the system
// prompt (BOS included, in `question`; `answer` empty); later rounds are a user message and an answer.
struct TokenRound {
    std::vector<int32_t> question;
    std::vector<int32_t> answer;
};
using TokenConversation = std::vector<TokenRound>;

// ---- positions ----

// Re-rotates the keys of a snapshot (f32 or f16, computed in float32) taken at firstPosition `from` as if its tokens
// sat at `to` onward.
Status shiftSnapshotPositions(RoundKvSnapshot& snapshot, const ModelConfig& config, int from, int to);

// Moves every round of the cache to contiguous positions from 0 (closing the gaps that removed rounds leave) by
// exporting, re-rotating and re-importing each round. Attention only depends on position differences, so this
// equals a conversation computed at the new positions directly. Precondition: no batch begun. A failed export
// leaves the cache unchanged; a failed import (out of memory) leaves only the rounds imported so far. Round ids
// change, so a RoundAttention working on the cache needs reset() afterwards.
Status compactRoundPositions(BackendContext& ctx, const ModelConfig& config);

}  // namespace inference
