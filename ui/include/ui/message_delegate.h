// Paints one chat message as a bubble: Markdown body (code blocks in monospace on a tinted background), the recall
// badge under answers, and action links (copy, copy code, edit, regenerate, branch ‹ i/n ›). Clicks on those links
// come out as actionTriggered(). GUI thread only.
#pragma once

#include <QCache>
#include <QStyledItemDelegate>
#include <QTextDocument>

namespace ui {

enum class MessageAction { Copy, CopyCode, Regenerate, Edit, PrevBranch, NextBranch, ShowRecall };

// The fenced code blocks of a Markdown text, joined by blank lines (what "Copy code" puts on the clipboard).
QString extractCodeBlocks(const QString& markdown);

class MessageDelegate : public QStyledItemDelegate {
    Q_OBJECT
public:
    explicit MessageDelegate(QObject* parent = nullptr);

    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override;
    bool editorEvent(QEvent* event, QAbstractItemModel* model, const QStyleOptionViewItem& option,
                     const QModelIndex& index) override;

Q_SIGNALS:
    void actionTriggered(const QModelIndex& index, ui::MessageAction action);

private:
    struct Link {
        MessageAction action;
        QString text;
        QRect rect;
    };
    struct Layout {
        QRect bubble;
        QRect header;
        QRect body;
        QRect badge;
        QList<Link> links;
        QTextDocument* document = nullptr;  // owned by m_documents
        int height = 0;
    };
    Layout layout(const QStyleOptionViewItem& option, const QModelIndex& index) const;
    QTextDocument* document(const QString& text, const QFont& font, int width, const QPalette& palette) const;

    mutable QCache<QString, QTextDocument> m_documents;
};

}  // namespace ui
