// Owns the database connection and the stores; lives on the storage thread (parentless, moved there by
// StorageController). Slots take a requestId that the reply echoes; replies and errors are queued signals with value
// types. Every write is one storage call, committed before the reply: a crash loses nothing that was acknowledged.
// KV snapshots are the exception: they go to a storage::SnapshotWriter (its own thread and connection), so a big
// snapshot never holds up the chat; one lost in a crash only means that round is prefilled again.
#pragma once

#include "worker_types.h"

#include <QObject>

#include <memory>
#include <unordered_map>

namespace storage {
class ChatStore;
class Database;
class KvStore;
class SnapshotWriter;
}  // namespace storage

namespace app {

class StorageWorker : public QObject {
    Q_OBJECT
public:
    StorageWorker();
    ~StorageWorker() override;

public Q_SLOTS:
    void open(quint64 requestId, const QString& path);
    void listConversations(quint64 requestId);
    // settingsJson: the conversation's own settings (app_settings.h conversationSettingsJson).
    void createConversation(quint64 requestId, const QString& title, const QString& systemPrompt,
                            const QString& settingsJson);
    void setConversationSettings(quint64 requestId, qint64 conversationId, const QString& systemPrompt,
                                 const QString& settingsJson);
    void renameConversation(quint64 requestId, qint64 conversationId, const QString& title);
    void setPinned(quint64 requestId, qint64 conversationId, bool pinned);
    void deleteConversation(quint64 requestId, qint64 conversationId);
    void restoreConversation(quint64 requestId, qint64 conversationId);
    void loadMessages(quint64 requestId, qint64 conversationId);
    // parentRequestId: when message.parentId is 0, the parent is the message saved by that earlier request (the user
    // message of an answer whose save reply has not reached the GUI yet). With a valid recall badge, the answer and
    // `recall` (scores parallel to message.recall.recalledRounds, copy costs) are written to the recall log.
    void appendMessage(quint64 requestId, qint64 conversationId, const ui::MessageData& message,
                       quint64 parentRequestId, const RecallDetails& recall);
    void switchBranch(quint64 requestId, qint64 messageId, int delta);
    void search(quint64 requestId, const QString& query);
    void exportConversation(quint64 requestId, qint64 conversationId, bool json, const QString& path);
    void importConversation(quint64 requestId, const QString& path);
    void freeKv(quint64 requestId, qint64 conversationId);
    // Sets the cap on stored KV (0: none) and evicts the oldest snapshots until the total fits; replies kvUsage().
    void setKvCap(quint64 requestId, quint64 capBytes);
    // Queues the KV of round kv.round of the conversation's active branch (its messages are saved by then) for the
    // snapshot writer. Never waits for the disk.
    void writeRoundKv(quint64 requestId, qint64 conversationId, const app::RoundKv& kv);
    // Reads the conversation's rounds and the KV of those that a model with this fingerprint, template hash and
    // layer count can restore; replies with restoreLoaded().
    void loadRestore(quint64 requestId, qint64 conversationId, const QString& fingerprint, const QString& templateHash,
                     int layerCount);

Q_SIGNALS:
    // recovered: the file was damaged and moved to quarantinedPath; a fresh database was started.
    void opened(quint64 requestId, bool recovered, const QString& quarantinedPath);
    void conversationsListed(quint64 requestId, const QList<ui::ConversationInfo>& conversations);
    void conversationChanged(quint64 requestId, const ui::ConversationInfo& conversation);
    void messagesLoaded(const app::ConversationMessages& messages);
    void messageSaved(const app::MessageSaved& saved);
    void searchResults(const app::SearchResults& results);
    void exported(const app::ExportResult& result);
    void restoreLoaded(const app::RestoreData& data);
    void kvUsage(const app::KvUsage& usage);
    void failed(const app::ErrorInfo& error);

private:
    bool ready(quint64 requestId);
    void fail(quint64 requestId, int code, const std::string& detail);
    void emitConversation(quint64 requestId, qint64 conversationId);
    void emitKvUsage(quint64 requestId, int evictedSnapshots, quint64 evictedBytes);

    std::unique_ptr<storage::Database> m_db;
    std::unique_ptr<storage::ChatStore> m_chats;  // borrow m_db; declared after it
    std::unique_ptr<storage::KvStore> m_kv;
    std::unordered_map<quint64, qint64> m_savedIds;  // requestId -> message id, for parentRequestId
    // Declared last: destroyed first, writing what is still queued; it reports failures through failed() from its
    // own thread (the connections to this worker's signals are queued).
    std::unique_ptr<storage::SnapshotWriter> m_writer;
};

}  // namespace app
