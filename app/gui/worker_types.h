// Value types that cross between the GUI thread and the workers in queued signals (STYLE.md rule 15). Each request
// carries a requestId that its replies echo, so late replies to a stopped or replaced request can be ignored.
// Registered once in main() with registerWorkerTypes().
#pragma once

#include "ui/types.h"

#include <QHash>
#include <QList>
#include <QMetaType>
#include <QString>

#include <cstdint>
#include <memory>
#include <vector>

namespace app {

// --- Inference worker

struct LoadRequest {
    quint64 requestId = 0;
    QString path;
    ui::BackendChoice backend = ui::BackendChoice::Auto;
    int contextLength = 0;  // 0: the model's trained context
    QString calibrationDir; // where `roundchat-cli calibrate --out` stored L_w per model; empty: none
};

struct LoadProgress {
    quint64 requestId = 0;
    double fraction = 0.0;  // [0, 1]
};

struct ModelInfo {
    quint64 requestId = 0;
    QString path;
    QString name;
    QString fingerprint;
    bool gpu = false;
    QString deviceName;
    QString fallbackReason;  // why the CPU was used although a GPU was asked for; empty otherwise
    quint64 weightBytes = 0;
    quint64 deviceTotalBytes = 0;
    quint64 deviceFreeBytes = 0;
    int contextLength = 0;
    int layerCount = 0;
    QString templateNotice;  // set when the model has no chat template and a built-in one is used
    QString templateHash;    // chat template + vocabulary: stored KV must have been made with the same one
};

// One finished round of the conversation, as the session must hold it before the new question.
struct RoundText {
    QString user;
    QString answer;
};

struct GenerateRequest {
    quint64 requestId = 0;
    qint64 conversationId = 0;
    QList<RoundText> history;  // the rounds before this one on the branch shown (round 1 first)
    QString userText;
    bool regenerate = false;   // the last round of the session is this question: answer it again
};

// One conversation round's KV (all layers), exported after its answer for the snapshot writer.
struct RoundKv {
    int round = 0;  // conversation round, from 1 (round 0, the system prompt, is never stored)
    int firstPosition = 0;
    int tokenCount = 0;
    int layerCount = 0;
    QString modelFingerprint;
    QString templateHash;
    QString dtype;
    // Null: nothing to store. Shared, not copied, through queued signals (a long chat's KV is hundreds of MB); its
    // one receiver moves the vector out.
    std::shared_ptr<std::vector<uint8_t>> bytes;
};

// For reopening a conversation: its rounds and the KV of the restorable prefix (StorageWorker::loadRestore).
struct RestoreData {
    quint64 requestId = 0;
    qint64 conversationId = 0;
    QList<RoundText> rounds;   // the active branch's rounds, round 1 first
    // The stored KV of rounds 1..snapshots.size(): the inference worker streams the snapshots from the database file
    // itself (storage::streamSnapshots), importing each while the next ones are read.
    struct StoredRound {
        qint64 snapshotId = 0;
        int firstPosition = 0;
    };
    QList<StoredRound> snapshots;
    QString databasePath;
    QString reason;  // why the round after them has no usable KV; empty when every round has
};

// What the inference worker did with a RestoreData.
struct RestoreDone {
    quint64 requestId = 0;
    qint64 conversationId = 0;
    int restoredRounds = 0;    // imported from their KV snapshots
    int recomputedRounds = 0;  // prefilled from their text
    int restoredTokens = 0;    // tokens whose KV was imported
    int prefilledTokens = 0;   // tokens computed while restoring (the system prompt and the recomputed rounds)
    QString reason;            // why the first recomputed round was not restored
};

struct TokenChunk {
    quint64 requestId = 0;
    QString text;
};

// Mirrors inference::StopReason values.
enum class StopReason : int { Eos = 0, StopString = 1, MaxTokens = 2, ContextFull = 3, Cancelled = 4, CallbackStop = 5 };

// What the recall log keeps of an answer beyond its badge (storage::RecallLogEntry).
struct RecallDetails {
    QList<double> scores;  // parallel to RecallBadge::recalledRounds
    quint64 bytesCopiedFromHost = 0;
    double selectMs = 0.0;
    double copyMs = 0.0;
};

struct GenerationDone {
    quint64 requestId = 0;
    QString text;
    StopReason stopReason = StopReason::Eos;
    int round = 0;               // the round this answer completes
    int promptTokens = 0;
    int usedTokens = 0;          // context in use after the answer
    int contextLength = 0;
    double tokensPerSecond = 0.0;
    ui::RecallBadge recall;
    RecallDetails recallDetails;
    RoundKv roundKv;             // the answered round's KV, for the snapshot writer
};

// An error for the user: `code` is a roundchat::ErrorCode value; `detail` is for the log only.
struct ErrorInfo {
    quint64 requestId = 0;
    int code = 0;
    QString detail;
};

// --- Storage worker

struct ConversationMessages {
    quint64 requestId = 0;
    qint64 conversationId = 0;
    QList<ui::MessageData> messages;  // the active branch, with round numbers and branch positions filled in
};

struct SearchResults {
    quint64 requestId = 0;
    QString query;
    QList<ui::SearchHit> hits;
};

struct MessageSaved {
    quint64 requestId = 0;
    qint64 conversationId = 0;
    ui::MessageData message;  // with its new id
};

struct ExportResult {
    quint64 requestId = 0;
    QString path;
};

// The KV snapshots on disk and the cap on them (storage::KvStore's budget): sent when the database opens, after each
// round's snapshot is written (the budget may have evicted older ones) and after the cap or a conversation's KV
// changed.
struct KvUsage {
    quint64 requestId = 0;
    QHash<qint64, quint64> bytesByConversation;  // conversation id -> bytes; conversations with stored KV only
    quint64 totalBytes = 0;
    quint64 capBytes = 0;           // 0: no cap
    int evictedSnapshots = 0;       // by this request (a lower cap)
    quint64 evictedBytes = 0;
};

void registerWorkerTypes();

}  // namespace app

Q_DECLARE_METATYPE(app::LoadRequest)
Q_DECLARE_METATYPE(app::LoadProgress)
Q_DECLARE_METATYPE(app::ModelInfo)
Q_DECLARE_METATYPE(app::GenerateRequest)
Q_DECLARE_METATYPE(app::TokenChunk)
Q_DECLARE_METATYPE(app::RoundKv)
Q_DECLARE_METATYPE(app::RestoreData)
Q_DECLARE_METATYPE(app::RestoreDone)
Q_DECLARE_METATYPE(app::GenerationDone)
Q_DECLARE_METATYPE(app::ErrorInfo)
Q_DECLARE_METATYPE(app::ConversationMessages)
Q_DECLARE_METATYPE(app::SearchResults)
Q_DECLARE_METATYPE(app::MessageSaved)
Q_DECLARE_METATYPE(app::ExportResult)
Q_DECLARE_METATYPE(app::KvUsage)
