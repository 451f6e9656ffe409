// GUI-thread front of the storage worker: owns the QThread and the worker (parentless, moved to the thread, deleted
// on finished). Each call queues the work on the storage thread and returns the request id its reply carries.
#pragma once

#include "worker_types.h"

#include <QObject>
#include <QThread>

namespace app {

class StorageWorker;

class StorageController : public QObject {
    Q_OBJECT
public:
    explicit StorageController(QObject* parent = nullptr);
    ~StorageController() override;

    quint64 open(const QString& path);
    quint64 listConversations();
    quint64 createConversation(const QString& title, const QString& systemPrompt, const QString& settingsJson);
    quint64 setConversationSettings(qint64 conversationId, const QString& systemPrompt, const QString& settingsJson);
    quint64 renameConversation(qint64 conversationId, const QString& title);
    quint64 setPinned(qint64 conversationId, bool pinned);
    quint64 deleteConversation(qint64 conversationId);
    quint64 restoreConversation(qint64 conversationId);
    quint64 loadMessages(qint64 conversationId);
    quint64 appendMessage(qint64 conversationId, const ui::MessageData& message, quint64 parentRequestId = 0,
                          const RecallDetails& recall = {});
    quint64 switchBranch(qint64 messageId, int delta);
    quint64 search(const QString& query);
    quint64 exportConversation(qint64 conversationId, bool json, const QString& path);
    quint64 importConversation(const QString& path);
    quint64 freeKv(qint64 conversationId);
    quint64 setKvCap(quint64 capBytes);
    quint64 writeRoundKv(qint64 conversationId, const RoundKv& kv);
    quint64 loadRestore(qint64 conversationId, const QString& fingerprint, const QString& templateHash,
                        int layerCount);

Q_SIGNALS:
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
    // Runs `work(worker)` on the storage thread; returns its request id.
    template <typename F>
    quint64 post(F work);

    QThread m_thread;
    StorageWorker* m_worker;  // owned by m_thread's finished -> deleteLater; touched only on the storage thread
    quint64 m_nextId = 1;
};

}  // namespace app
