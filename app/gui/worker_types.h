// Value types that cross between the GUI thread and the workers in queued signals (STYLE.md rule 15). Each request
// carries a requestId that its replies echo, so late replies to a stopped or replaced request can be ignored.
// Registered once in main() with registerWorkerTypes().
#pragma once

#include "ui/types.h"

#include <QList>
#include <QMetaType>
#include <QString>

namespace app {

// --- Inference worker

struct LoadRequest {
    quint64 requestId = 0;
    QString path;
    ui::BackendChoice backend = ui::BackendChoice::Auto;
    int contextLength = 0;  // 0: the model's trained context
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

struct TokenChunk {
    quint64 requestId = 0;
    QString text;
};

// Mirrors inference::StopReason values.
enum class StopReason : int { Eos = 0, StopString = 1, MaxTokens = 2, ContextFull = 3, Cancelled = 4, CallbackStop = 5 };

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
    QList<double> recallScores;  // parallel to recall.recalledRounds
    quint64 bytesCopiedFromHost = 0;
    double selectMs = 0.0;
    double copyMs = 0.0;
    bool missingHistory = false; // earlier rounds could not be given to the model (see InferenceWorker)
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

void registerWorkerTypes();

}  // namespace app

Q_DECLARE_METATYPE(app::LoadRequest)
Q_DECLARE_METATYPE(app::LoadProgress)
Q_DECLARE_METATYPE(app::ModelInfo)
Q_DECLARE_METATYPE(app::GenerateRequest)
Q_DECLARE_METATYPE(app::TokenChunk)
Q_DECLARE_METATYPE(app::GenerationDone)
Q_DECLARE_METATYPE(app::ErrorInfo)
Q_DECLARE_METATYPE(app::ConversationMessages)
Q_DECLARE_METATYPE(app::SearchResults)
Q_DECLARE_METATYPE(app::MessageSaved)
Q_DECLARE_METATYPE(app::ExportResult)
