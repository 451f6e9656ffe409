// Plain value types shown by the widgets. They carry no engine or storage types, so roundchat_ui builds and is tested
// without either; app/gui converts the engine's and the database's structs into these on the GUI thread.
#pragma once

#include <QDateTime>
#include <QKeySequence>
#include <QList>
#include <QMap>
#include <QMetaType>
#include <QString>

namespace ui {

// Stored in settings: values are fixed, never change or reuse one.
enum class MessageRole : int { System = 0, User = 1, Assistant = 2 };

// What the engine reported about one answer: the text of the recall badge under it.
struct RecallBadge {
    bool valid = false;
    bool roundAttention = false;   // false: full KV, every past round attended
    QList<int> recalledRounds;     // round indices, ascending
    int roundsTotal = 0;           // rounds before this answer
    quint64 kvBytesInVram = 0;
    quint64 kvBytesFull = 0;       // what full KV would hold
    double tokensPerSecond = 0.0;
};

// "recalled rounds 2, 5, 9 of 14 · KV in VRAM 310 MB · saved 58%"; empty when !valid.
QString badgeText(const RecallBadge& badge);
// "310 MB", "1.2 GB": decimal units, as the badge and dashboards show them.
QString formatBytes(quint64 bytes);

struct MessageData {
    qint64 id = 0;                 // database id; 0 while the answer streams and is not committed yet
    qint64 parentId = 0;           // previous message on this branch; 0 for the first
    MessageRole role = MessageRole::User;
    QString text;
    int round = 0;                 // conversation round (1 = first user message and its answer)
    int branchIndex = 0;           // 0-based position among messages with the same parent
    int branchCount = 1;
    RecallBadge recall;            // assistant messages only
    bool streaming = false;
};

struct ConversationInfo {
    qint64 id = 0;
    QString title;
    bool pinned = false;
    QDateTime updated;
    int messageCount = 0;
    quint64 kvBytes = 0;           // KV snapshots stored for this conversation
    // The conversation's own settings (app/gui's conversationSettings() reads them): its system prompt, and its
    // sampling and Round Attention settings as JSON ("{}": the app-wide defaults).
    QString systemPrompt;
    QString settingsJson;
};

struct SearchHit {
    qint64 conversationId = 0;
    qint64 messageId = 0;
    QString conversationTitle;
    QString snippet;               // plain text; matched terms between kSnippetOpen and kSnippetClose
};
inline constexpr QChar kSnippetOpen = QChar(0x2);   // what storage puts around a match (STX/ETX never occur in text)
inline constexpr QChar kSnippetClose = QChar(0x3);

// One sample for the memory dashboard. On a GPU the parts add up to total; without one, only total/free are set
// (host memory) and gpu is false.
struct MemorySample {
    bool gpu = false;
    QString deviceName;
    quint64 totalBytes = 0;
    quint64 freeBytes = 0;
    quint64 weightBytes = 0;
    quint64 residentKvBytes = 0;   // KV of the layers below the watershed, kept for every round
    quint64 recalledKvBytes = 0;   // upper-layer KV recalled for the current answer
    quint64 scratchBytes = 0;      // activations and workspaces
};

// One row of the model list (resources/models/known_models.json).
struct KnownModel {
    QString id;
    QString name;
    QString description;
    QString fileName;
    QString url;
    QString sha256;                // lowercase hex; empty when no published checksum is known
    quint64 sizeBytes = 0;         // approximate, for display
    bool chat = true;
    bool bundled = false;          // installed with the app (no url): offered, never downloaded
};

// Stored in settings: values are fixed, never change or reuse one.
enum class Theme : int { System = 0, Light = 1, Dark = 2 };
// Mirrors inference::BackendKind values.
enum class BackendChoice : int { Auto = 0, Cpu = 1, Gpu = 2 };

// Everything the settings dialog edits. app/gui persists it with QSettings (kvStorageCapMb: in the database), and
// keeps the system prompt, sampling and Round Attention fields per conversation too; the app-wide ones are the
// defaults of new conversations.
struct SettingsValues {
    BackendChoice backend = BackendChoice::Auto;
    int contextLength = 0;                 // tokens; 0: the model's own
    QString systemPrompt;
    double temperature = 0.7;
    double topP = 0.9;
    int topK = 40;
    double repeatPenalty = 1.1;
    int maxNewTokens = 512;
    bool roundAttention = true;
    bool watershedAuto = true;
    int watershedLayer = 8;                // used when !watershedAuto
    double recallMass = 0.9;               // share of attention mass the recalled rounds must cover
    int keepLatestRounds = 1;
    int maxRecalledRounds = 8;
    int vramBudgetMb = 0;                  // cache for recalled KV; 0: none beyond the current answer
    // Inter-layer sharing of distant keys (experimental, off: it costs quality). Needs the model's calibrated layer
    // groups; a token is distant when it is neither among the first kvSharingSinkTokens nor among the last
    // kvSharingWindowTokens before the query.
    bool kvSharing = false;
    int kvSharingSinkTokens = 16;
    int kvSharingWindowTokens = 4080;
    int kvStorageCapMb = 0;                // cap on the KV snapshots kept on disk; 0: no cap (the database keeps it)
    Theme theme = Theme::System;
    QMap<QString, QKeySequence> shortcuts; // action id -> sequence; see shortcutActions()
};

struct ShortcutAction {
    QString id;
    QString label;
    QKeySequence defaultSequence;
};
// Every action the user may rebind, with its default.
QList<ShortcutAction> shortcutActions();
QKeySequence shortcutFor(const SettingsValues& settings, const QString& id);

}  // namespace ui

Q_DECLARE_METATYPE(ui::RecallBadge)
Q_DECLARE_METATYPE(ui::MessageData)
Q_DECLARE_METATYPE(ui::ConversationInfo)
Q_DECLARE_METATYPE(ui::SearchHit)
Q_DECLARE_METATYPE(ui::MemorySample)
Q_DECLARE_METATYPE(ui::SettingsValues)
