// The session API the app calls: load a model, chat in rounds, stream answers, cancel, and read per-answer reports.
// Ownership: Model owns weights, tokenizer and template; a Session borrows `const Model&`, which must outlive it.
// Threading: one thread (the app's inference worker) owns a Model and its Sessions and calls everything here,
// except Session::cancel(), which any thread may call.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "inference/sampler.h"
#include "roundchat/result.h"

namespace inference {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;

class Model;

// Stored in settings: values are fixed, never change or reuse one.
enum class BackendKind : int { Auto = 0, Cpu = 1, Cuda = 2 };

struct LoadOptions {
    BackendKind backend = BackendKind::Auto;
    int threads = 0;        // CPU threads; 0 picks the hardware concurrency
    int contextLength = 0;  // tokens; 0 uses the model's trained context
    // Called with progress in [0, 1] while loading; returning false cancels the load (ErrorCode::Cancelled).
    std::function<bool(float)> progress;
};

// Which backend a model ended up on, and why.
struct BackendInfo {
    BackendKind kind = BackendKind::Cpu;
    std::string deviceName;       // GPU name, or the CPU description
    std::string fallbackReason;   // non-empty when Auto/Cuda was asked for and the CPU was used instead
    uint64_t weightBytes = 0;     // bytes of weights held by the backend
    uint64_t deviceTotalBytes = 0;  // GPU memory (0 on CPU)
    uint64_t deviceFreeBytes = 0;
};

// Stored in settings: values are fixed, never change or reuse one.
enum class KvMode : int { FullKv = 0, RoundAttention = 1 };

// Stored in settings: values are fixed, never change or reuse one.
// How the non-first layers of a group attend to distant tokens (docs/PAPERS.md B2.3; inference/kv_sharing.h):
// SharedScores (the paper's v1): the group's first layer's query and key give the distant attention weights, the
// layer's own values are averaged with them. SharedKeys (v2, PoD): the layer's own query against the first layer's
// keys, own values. Both store the same bytes. SharedKeys pairs a query and a key projection that were never trained
// together (the paper post-trains for it); SharedScores reuses exactly the distributions the calibration measured as
// similar, and it is far better untrained (stories260K: 92% vs 64% top-1 agreement, docs/PERFORMANCE.md): the
// default.
enum class KvSharingVariant : int { SharedScores = 0, SharedKeys = 1 };

// Inter-layer key sharing for distant tokens (arXiv 2412.02252, training-free). A key at position x is proximal to
// a query at position p when x < sinkTokens or p - x < windowTokens, distant otherwise. Proximal keys are kept in
// every layer; a distant key only in the first layer of its layer group. Values are kept in every layer.
struct KvSharingOptions {
    bool enabled = false;
    int sinkTokens = 16;
    int windowTokens = 4080;
    KvSharingVariant variant = KvSharingVariant::SharedScores;
    // First layer of each group, ascending, starting at 0 (calibration.h: KvSharingCalibration::groupStarts).
    // Empty: every layer is its own group, i.e. nothing is shared.
    std::vector<int> groupStarts;
};

// Round Attention policy; settable per conversation.
struct RoundAttentionOptions {
    KvMode mode = KvMode::FullKv;
    int watershedLayer = -1;        // first layer whose KV is recalled per turn; -1: calibrated value or n_layer/2
    float recallMass = 0.9f;        // select rounds until their cumulative score reaches this share
    int maxRecalledRounds = 8;      // cap on rounds selected by score (kept rounds come on top)
    int keepLatestRounds = 1;       // the most recent rounds always recalled (round 0, the system prompt, always is)
    uint64_t vramBudgetBytes = 0;   // cache of recently recalled upper-layer KV; 0: no cache beyond this turn
    KvSharingOptions sharing;       // off by default; combines with either mode (recalled rounds stored shared)
};

struct SessionOptions {
    std::string systemPrompt;
    SamplerParams sampler;
    RoundAttentionOptions rounds;
    int maxNewTokens = 512;
    std::vector<std::string> stopStrings;  // in addition to EOS and the template's end-of-turn markers
    bool recordFirstLogits = false;        // fill GenerationResult::firstTokenLogits (tests, quality tools)
};

struct RecalledRound {
    int round = 0;
    float score = 0.0f;  // share of the question's attention mass at the watershed layer, in [0, 1]
};

// What the session reports after every answer. A plain value: the app copies it across threads.
struct RecallReport {
    KvMode mode = KvMode::FullKv;
    int roundsTotal = 0;                   // rounds before this answer (round 0 is the system prompt)
    int watershedLayer = 0;
    std::vector<RecalledRound> recalled;   // every past round in full-KV mode
    uint64_t kvBytesInVram = 0;            // KV held on the device for this answer
    uint64_t kvBytesFull = 0;              // what full KV would hold
    uint64_t bytesCopiedFromHost = 0;
    double selectMs = 0.0;
    double copyMs = 0.0;
};

// Stored in the database: values are fixed, never change or reuse one.
enum class StopReason : int { Eos = 0, StopString = 1, MaxTokens = 2, ContextFull = 3, Cancelled = 4, CallbackStop = 5 };

struct GenerationResult {
    std::string text;                 // the answer, without stop strings
    std::vector<int32_t> tokens;      // the answer's token ids
    int promptTokens = 0;             // tokens prefilled for this turn
    StopReason stopReason = StopReason::Eos;
    double prefillMs = 0.0;
    double decodeMs = 0.0;
    double tokensPerSecond = 0.0;     // decode speed
    RecallReport recall;
    std::vector<float> firstTokenLogits;  // (n_vocab) logits the first answer token was sampled from, when asked
};

struct ContextUsage {
    int usedTokens = 0;
    int contextLength = 0;
};

// One conversation round: round 0 is the system prompt, later rounds a user message and the answer.
struct RoundInfo {
    int index = 0;
    int firstPosition = 0;            // absolute position of its first token
    std::vector<int32_t> tokens;      // every token of the round as fed to the model
    std::string userText;
    std::string answerText;
};

// One round's KV for a layer range, as the storage layer persists it. Keys are stored after RoPE.
struct RoundKvSnapshot {
    int round = 0;
    int firstLayer = 0;
    int layerCount = 0;
    int tokenCount = 0;
    std::string modelFingerprint;
    std::string dtype;                // "f32" or "f16"
    std::vector<uint8_t> bytes;       // layout documented in kv_cache.h
};

// Receives each piece of the answer as it is decoded, always whole UTF-8 characters. Return false to stop.
using TokenCallback = std::function<bool(std::string_view piece)>;

class Session {
public:
    static Result<std::unique_ptr<Session>> create(const Model& model, SessionOptions options);
    virtual ~Session() = default;

    // Adds a user round and streams the answer.
    virtual Result<GenerationResult> send(std::string_view userText, const TokenCallback& onPiece) = 0;
    // Adds a past round (a user message and its answer) without generating: prefills it, so that an old
    // conversation without KV snapshots can be continued. Rounds are appended in order after the restored ones.
    virtual Status appendRound(std::string_view userText, std::string_view answerText) = 0;
    // Drops the last answer and answers the same user message again.
    virtual Result<GenerationResult> regenerate(const TokenCallback& onPiece) = 0;
    // Keeps rounds [0, keep) and drops the rest from the KV cache (edit-and-resend trims, then sends).
    virtual Status truncate(int keepRounds) = 0;
    // Thread-safe: stops the running send/regenerate between tokens.
    virtual void cancel() = 0;

    virtual const std::vector<RoundInfo>& rounds() const = 0;
    virtual ContextUsage contextUsage() const = 0;
    virtual const SessionOptions& options() const = 0;
    virtual Status setOptions(SessionOptions options) = 0;

    // Persistence: a round's KV for all layers, and restoring it (in round order) without prefilling again.
    // Storage keeps user rounds only, so a restore starts with prefillSystemPrompt() (round 0 of an empty session),
    // then importRound() for rounds 1.. with stored KV, then appendRound() for the rest.
    virtual Status prefillSystemPrompt() = 0;
    virtual Result<RoundKvSnapshot> exportRound(int round) const = 0;
    // info.tokens may be left empty for rounds >= 1: the session renders them from the texts (every answered round
    // is closed with its end-of-turn text, so a snapshot exported after the answer matches that rendering).
    // Mismatch when the snapshot's model or token count differs.
    virtual Status importRound(const RoundInfo& info, RoundKvSnapshot snapshot) = 0;
};

}  // namespace inference
