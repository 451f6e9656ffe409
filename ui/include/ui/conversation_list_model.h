// The sidebar's conversations: pinned first, then most recently updated. removeWithUndo() removes the row and emits
// removed() at once (the database moves it to its trash, so a crash loses nothing); for a few seconds undoRemove()
// puts it back and emits restored(). GUI thread only.
#pragma once

#include <QAbstractListModel>
#include <QHash>
#include <QTimer>

#include "ui/types.h"

namespace ui {

class ConversationListModel : public QAbstractListModel {
    Q_OBJECT
public:
    enum Role { IdRole = Qt::UserRole + 1, PinnedRole, UpdatedRole, KvBytesRole };

    explicit ConversationListModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;

    void setConversations(QList<ConversationInfo> conversations);
    // Inserts or replaces (by id), keeping the order.
    void upsert(const ConversationInfo& conversation);
    int rowOfId(qint64 id) const;
    // Sets each conversation's stored KV bytes (those not in `bytesById` have none).
    void setKvBytes(const QHash<qint64, quint64>& bytesById);
    const ConversationInfo& at(int row) const { return m_items.at(row); }
    QList<ConversationInfo> conversations() const { return m_items; }

    void removeWithUndo(qint64 id);
    bool canUndo() const { return m_pendingDelete.id != 0; }
    void undoRemove();
    // Ends the undo window now.
    void commitPendingDelete();
    void setUndoWindowMs(int ms) { m_undoTimer.setInterval(ms); }

Q_SIGNALS:
    void removed(qint64 id);
    void restored(qint64 id);
    void undoAvailableChanged(bool available, const QString& title);

private:
    static bool before(const ConversationInfo& a, const ConversationInfo& b);
    void insertSorted(const ConversationInfo& conversation);

    QList<ConversationInfo> m_items;
    ConversationInfo m_pendingDelete;
    QTimer m_undoTimer;
};

}  // namespace ui
