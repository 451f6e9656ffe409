#include "ui/conversation_list_model.h"

#include <algorithm>

namespace ui {

namespace {
constexpr int kUndoWindowMs = 8000;
}

ConversationListModel::ConversationListModel(QObject* parent) : QAbstractListModel(parent) {
    m_undoTimer.setSingleShot(true);
    m_undoTimer.setInterval(kUndoWindowMs);
    connect(&m_undoTimer, &QTimer::timeout, this, &ConversationListModel::commitPendingDelete);
}

int ConversationListModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : int(m_items.size());
}

QVariant ConversationListModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() < 0 || index.row() >= m_items.size())
        return {};
    const ConversationInfo& c = m_items.at(index.row());
    switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole: return c.title.isEmpty() ? tr("New conversation") : c.title;
    case Qt::ToolTipRole:
        return tr("%1\nUpdated %2 · %n message(s)", nullptr, c.messageCount)
            .arg(c.title, QLocale().toString(c.updated.toLocalTime(), QLocale::ShortFormat));
    case IdRole: return c.id;
    case PinnedRole: return c.pinned;
    case UpdatedRole: return c.updated;
    case KvBytesRole: return c.kvBytes;
    default: return {};
    }
}

bool ConversationListModel::before(const ConversationInfo& a, const ConversationInfo& b) {
    if (a.pinned != b.pinned)
        return a.pinned;
    if (a.updated != b.updated)
        return a.updated > b.updated;
    return a.id > b.id;
}

void ConversationListModel::setConversations(QList<ConversationInfo> conversations) {
    std::sort(conversations.begin(), conversations.end(), before);
    beginResetModel();
    m_items = std::move(conversations);
    endResetModel();
}

void ConversationListModel::insertSorted(const ConversationInfo& conversation) {
    const auto it = std::lower_bound(m_items.begin(), m_items.end(), conversation, before);
    const int row = int(it - m_items.begin());
    beginInsertRows({}, row, row);
    m_items.insert(row, conversation);
    endInsertRows();
}

void ConversationListModel::upsert(const ConversationInfo& conversation) {
    const int row = rowOfId(conversation.id);
    if (row < 0) {
        insertSorted(conversation);
        return;
    }
    m_items[row] = conversation;
    Q_EMIT dataChanged(index(row), index(row));
    // A move (not remove + insert) keeps the view's current index on this conversation.
    QList<ConversationInfo> others = m_items;
    others.removeAt(row);
    const int target = int(std::lower_bound(others.begin(), others.end(), conversation, before) - others.begin());
    if (target == row)
        return;
    const int destination = target < row ? target : target + 1;
    beginMoveRows({}, row, row, {}, destination);
    m_items.move(row, target);
    endMoveRows();
}

int ConversationListModel::rowOfId(qint64 id) const {
    for (int i = 0; i < m_items.size(); ++i)
        if (m_items[i].id == id)
            return i;
    return -1;
}

void ConversationListModel::setKvBytes(const QHash<qint64, quint64>& bytesById) {
    for (int row = 0; row < m_items.size(); ++row) {
        const quint64 bytes = bytesById.value(m_items[row].id, 0);
        if (m_items[row].kvBytes != bytes) {
            m_items[row].kvBytes = bytes;
            Q_EMIT dataChanged(index(row), index(row), {KvBytesRole});
        }
    }
    m_pendingDelete.kvBytes = bytesById.value(m_pendingDelete.id, 0);
}

void ConversationListModel::removeWithUndo(qint64 id) {
    const int row = rowOfId(id);
    if (row < 0)
        return;
    commitPendingDelete();  // only one delete can be undone at a time
    m_pendingDelete = m_items.at(row);
    beginRemoveRows({}, row, row);
    m_items.removeAt(row);
    endRemoveRows();
    m_undoTimer.start();
    Q_EMIT removed(id);
    Q_EMIT undoAvailableChanged(true, m_pendingDelete.title);
}

void ConversationListModel::undoRemove() {
    if (!canUndo())
        return;
    m_undoTimer.stop();
    const ConversationInfo back = std::exchange(m_pendingDelete, ConversationInfo{});
    insertSorted(back);
    Q_EMIT undoAvailableChanged(false, {});
    Q_EMIT restored(back.id);
}

void ConversationListModel::commitPendingDelete() {
    if (!canUndo())
        return;
    m_undoTimer.stop();
    m_pendingDelete = {};
    Q_EMIT undoAvailableChanged(false, {});
}

}  // namespace ui
