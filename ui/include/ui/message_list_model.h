// The messages of the branch shown in the chat view. GUI thread only: workers send value types through queued
// signals and app/gui calls these functions from its slots (STYLE.md rule 15).
#pragma once

#include <QAbstractListModel>
#include <QSet>
#include <QTimer>

#include "ui/types.h"

namespace ui {

class MessageListModel : public QAbstractListModel {
    Q_OBJECT
public:
    enum Role {
        MessageRole = Qt::UserRole + 1,  // ui::MessageRole as int
        IdRole,
        RoundRole,
        BranchIndexRole,
        BranchCountRole,
        RecallRole,                      // ui::RecallBadge
        BadgeTextRole,
        StreamingRole,
        HighlightedRole,                 // the round is among those recalled for the selected badge
    };

    // Streamed pieces are applied at most once per interval, as one dataChanged (STYLE.md rule 17).
    static constexpr int kCoalesceMs = 30;

    explicit MessageListModel(QObject* parent = nullptr);

    int rowCount(const QModelIndex& parent = {}) const override;
    QVariant data(const QModelIndex& index, int role = Qt::DisplayRole) const override;
    QHash<int, QByteArray> roleNames() const override;

    void setMessages(const QList<MessageData>& messages);
    void appendMessage(const MessageData& message);
    const MessageData& messageAt(int row) const { return m_messages.at(row); }
    // Replaces a finished row (e.g. to give it the id the database assigned).
    void updateMessage(int row, const MessageData& message);
    int rowOfId(qint64 id) const;
    // Drops rows [row, end), e.g. the old answer before regenerating or the tail before edit-and-resend.
    void truncateFrom(int row);

    // Starts an empty assistant row that receives the pieces of request `requestId`.
    void beginStreaming(quint64 requestId, int round);
    void appendToStreaming(quint64 requestId, const QString& piece);
    // Applies pending pieces and turns the streaming row into a finished message (text replaces what streamed).
    void finishStreaming(quint64 requestId, const MessageData& finalMessage);
    // Keeps what streamed so far (the user stopped, or an error ended the answer).
    void abortStreaming(quint64 requestId);
    bool isStreaming() const { return m_streamingRow >= 0; }
    quint64 streamingRequestId() const { return m_streamingRequest; }

    void setHighlightedRounds(const QList<int>& rounds);
    QList<int> highlightedRounds() const { return m_highlighted.values(); }

private:
    void flushPending();

    QList<MessageData> m_messages;
    QSet<int> m_highlighted;
    int m_streamingRow = -1;
    quint64 m_streamingRequest = 0;
    QString m_pending;
    QTimer m_coalesce;
};

}  // namespace ui
