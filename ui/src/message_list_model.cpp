#include "ui/message_list_model.h"

namespace ui {

MessageListModel::MessageListModel(QObject* parent) : QAbstractListModel(parent) {
    m_coalesce.setSingleShot(true);
    m_coalesce.setInterval(kCoalesceMs);
    connect(&m_coalesce, &QTimer::timeout, this, &MessageListModel::flushPending);
}

int MessageListModel::rowCount(const QModelIndex& parent) const {
    return parent.isValid() ? 0 : int(m_messages.size());
}

QVariant MessageListModel::data(const QModelIndex& index, int role) const {
    if (!index.isValid() || index.row() < 0 || index.row() >= m_messages.size())
        return {};
    const MessageData& m = m_messages.at(index.row());
    switch (role) {
    case Qt::DisplayRole:
    case Qt::EditRole: return m.text;
    case MessageRole: return int(m.role);
    case IdRole: return m.id;
    case RoundRole: return m.round;
    case BranchIndexRole: return m.branchIndex;
    case BranchCountRole: return m.branchCount;
    case RecallRole: return QVariant::fromValue(m.recall);
    case BadgeTextRole: return badgeText(m.recall);
    case StreamingRole: return m.streaming;
    case HighlightedRole: return m.round > 0 && m_highlighted.contains(m.round);
    case Qt::AccessibleTextRole:
        return (m.role == ui::MessageRole::User ? tr("You: %1") : tr("Assistant: %1")).arg(m.text);
    default: return {};
    }
}

QHash<int, QByteArray> MessageListModel::roleNames() const {
    QHash<int, QByteArray> names = QAbstractListModel::roleNames();
    names.insert({{MessageRole, "role"}, {IdRole, "messageId"}, {RoundRole, "round"}, {RecallRole, "recall"},
                  {BadgeTextRole, "badge"}, {StreamingRole, "streaming"}, {HighlightedRole, "highlighted"}});
    return names;
}

void MessageListModel::setMessages(const QList<MessageData>& messages) {
    m_coalesce.stop();
    beginResetModel();
    m_messages = messages;
    m_highlighted.clear();
    m_streamingRow = -1;
    m_streamingRequest = 0;
    m_pending.clear();
    endResetModel();
}

void MessageListModel::appendMessage(const MessageData& message) {
    const int row = int(m_messages.size());
    beginInsertRows({}, row, row);
    m_messages.append(message);
    endInsertRows();
}

void MessageListModel::updateMessage(int row, const MessageData& message) {
    if (row < 0 || row >= m_messages.size() || row == m_streamingRow)
        return;
    m_messages[row] = message;
    Q_EMIT dataChanged(index(row), index(row));
}

int MessageListModel::rowOfId(qint64 id) const {
    for (int i = 0; i < m_messages.size(); ++i)
        if (m_messages[i].id == id)
            return i;
    return -1;
}

void MessageListModel::truncateFrom(int row) {
    if (row < 0 || row >= m_messages.size())
        return;
    if (m_streamingRow >= row) {
        m_coalesce.stop();
        m_pending.clear();
        m_streamingRow = -1;
    }
    beginRemoveRows({}, row, int(m_messages.size()) - 1);
    m_messages.resize(row);
    endRemoveRows();
}

void MessageListModel::beginStreaming(quint64 requestId, int round) {
    MessageData m;
    m.role = ui::MessageRole::Assistant;
    m.round = round;
    m.streaming = true;
    appendMessage(m);
    m_streamingRow = int(m_messages.size()) - 1;
    m_streamingRequest = requestId;
    m_pending.clear();
}

void MessageListModel::appendToStreaming(quint64 requestId, const QString& piece) {
    if (m_streamingRow < 0 || requestId != m_streamingRequest)
        return;  // a late piece of a request that was stopped or replaced
    m_pending += piece;
    if (!m_coalesce.isActive())
        m_coalesce.start();
}

void MessageListModel::flushPending() {
    if (m_streamingRow < 0 || m_pending.isEmpty())
        return;
    m_messages[m_streamingRow].text += m_pending;
    m_pending.clear();
    const QModelIndex idx = index(m_streamingRow);
    Q_EMIT dataChanged(idx, idx, {Qt::DisplayRole});
}

void MessageListModel::finishStreaming(quint64 requestId, const MessageData& finalMessage) {
    if (m_streamingRow < 0 || requestId != m_streamingRequest)
        return;
    m_coalesce.stop();
    m_pending.clear();
    MessageData& m = m_messages[m_streamingRow];
    m = finalMessage;
    m.streaming = false;
    const QModelIndex idx = index(m_streamingRow);
    m_streamingRow = -1;
    m_streamingRequest = 0;
    Q_EMIT dataChanged(idx, idx);
}

void MessageListModel::abortStreaming(quint64 requestId) {
    if (m_streamingRow < 0 || requestId != m_streamingRequest)
        return;
    m_coalesce.stop();
    flushPending();
    const int row = m_streamingRow;
    m_streamingRow = -1;
    m_streamingRequest = 0;
    if (m_messages[row].text.isEmpty()) {
        beginRemoveRows({}, row, row);
        m_messages.removeAt(row);
        endRemoveRows();
        return;
    }
    m_messages[row].streaming = false;
    Q_EMIT dataChanged(index(row), index(row));
}

void MessageListModel::setHighlightedRounds(const QList<int>& rounds) {
    m_highlighted = QSet<int>(rounds.begin(), rounds.end());
    if (!m_messages.isEmpty())
        Q_EMIT dataChanged(index(0), index(int(m_messages.size()) - 1), {HighlightedRole});
}

}  // namespace ui
