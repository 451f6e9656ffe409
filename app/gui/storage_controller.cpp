#include "storage_controller.h"

#include "storage_worker.h"

namespace app {

StorageController::StorageController(QObject* parent) : QObject(parent), m_worker(new StorageWorker) {
    m_thread.setObjectName(QStringLiteral("storage"));
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    constexpr auto q = Qt::QueuedConnection;
    connect(m_worker, &StorageWorker::opened, this, &StorageController::opened, q);
    connect(m_worker, &StorageWorker::conversationsListed, this, &StorageController::conversationsListed, q);
    connect(m_worker, &StorageWorker::conversationChanged, this, &StorageController::conversationChanged, q);
    connect(m_worker, &StorageWorker::messagesLoaded, this, &StorageController::messagesLoaded, q);
    connect(m_worker, &StorageWorker::messageSaved, this, &StorageController::messageSaved, q);
    connect(m_worker, &StorageWorker::searchResults, this, &StorageController::searchResults, q);
    connect(m_worker, &StorageWorker::exported, this, &StorageController::exported, q);
    connect(m_worker, &StorageWorker::restoreLoaded, this, &StorageController::restoreLoaded, q);
    connect(m_worker, &StorageWorker::kvUsage, this, &StorageController::kvUsage, q);
    connect(m_worker, &StorageWorker::failed, this, &StorageController::failed, q);
    m_thread.start();
}

StorageController::~StorageController() {
    m_thread.quit();  // the queued writes before quit() still run: the event loop drains them first
    m_thread.wait();
}

template <typename F>
quint64 StorageController::post(F work) {
    const quint64 id = m_nextId++;
    // The functor runs in m_worker's thread; it captures values only.
    QMetaObject::invokeMethod(
        m_worker, [w = m_worker, id, work] { work(*w, id); }, Qt::QueuedConnection);
    return id;
}

quint64 StorageController::open(const QString& path) {
    return post([path](StorageWorker& w, quint64 id) { w.open(id, path); });
}
quint64 StorageController::listConversations() {
    return post([](StorageWorker& w, quint64 id) { w.listConversations(id); });
}
quint64 StorageController::createConversation(const QString& title, const QString& systemPrompt,
                                              const QString& settingsJson) {
    return post([=](StorageWorker& w, quint64 id) { w.createConversation(id, title, systemPrompt, settingsJson); });
}
quint64 StorageController::setConversationSettings(qint64 conversationId, const QString& systemPrompt,
                                                   const QString& settingsJson) {
    return post([=](StorageWorker& w, quint64 id) {
        w.setConversationSettings(id, conversationId, systemPrompt, settingsJson);
    });
}
quint64 StorageController::renameConversation(qint64 conversationId, const QString& title) {
    return post([=](StorageWorker& w, quint64 id) { w.renameConversation(id, conversationId, title); });
}
quint64 StorageController::setPinned(qint64 conversationId, bool pinned) {
    return post([=](StorageWorker& w, quint64 id) { w.setPinned(id, conversationId, pinned); });
}
quint64 StorageController::deleteConversation(qint64 conversationId) {
    return post([=](StorageWorker& w, quint64 id) { w.deleteConversation(id, conversationId); });
}
quint64 StorageController::restoreConversation(qint64 conversationId) {
    return post([=](StorageWorker& w, quint64 id) { w.restoreConversation(id, conversationId); });
}
quint64 StorageController::loadMessages(qint64 conversationId) {
    return post([=](StorageWorker& w, quint64 id) { w.loadMessages(id, conversationId); });
}
quint64 StorageController::appendMessage(qint64 conversationId, const ui::MessageData& message,
                                         quint64 parentRequestId, const RecallDetails& recall) {
    return post([=](StorageWorker& w, quint64 id) {
        w.appendMessage(id, conversationId, message, parentRequestId, recall);
    });
}
quint64 StorageController::switchBranch(qint64 messageId, int delta) {
    return post([=](StorageWorker& w, quint64 id) { w.switchBranch(id, messageId, delta); });
}
quint64 StorageController::search(const QString& query) {
    return post([=](StorageWorker& w, quint64 id) { w.search(id, query); });
}
quint64 StorageController::exportConversation(qint64 conversationId, bool json, const QString& path) {
    return post([=](StorageWorker& w, quint64 id) { w.exportConversation(id, conversationId, json, path); });
}
quint64 StorageController::importConversation(const QString& path) {
    return post([=](StorageWorker& w, quint64 id) { w.importConversation(id, path); });
}
quint64 StorageController::freeKv(qint64 conversationId) {
    return post([=](StorageWorker& w, quint64 id) { w.freeKv(id, conversationId); });
}
quint64 StorageController::setKvCap(quint64 capBytes) {
    return post([=](StorageWorker& w, quint64 id) { w.setKvCap(id, capBytes); });
}
quint64 StorageController::writeRoundKv(qint64 conversationId, const RoundKv& kv) {
    return post([=](StorageWorker& w, quint64 id) { w.writeRoundKv(id, conversationId, kv); });
}
quint64 StorageController::loadRestore(qint64 conversationId, const QString& fingerprint,
                                       const QString& templateHash, int layerCount) {
    return post([=](StorageWorker& w, quint64 id) {
        w.loadRestore(id, conversationId, fingerprint, templateHash, layerCount);
    });
}

}  // namespace app
