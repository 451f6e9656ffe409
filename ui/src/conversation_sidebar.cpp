#include "ui/conversation_sidebar.h"

#include "ui/conversation_list_model.h"
#include "ui/message_bar.h"

#include <QInputDialog>
#include <QKeyEvent>
#include <QLineEdit>
#include <QListView>
#include <QMenu>
#include <QPainter>
#include <QPushButton>
#include <QSortFilterProxyModel>
#include <QStyledItemDelegate>
#include <QVBoxLayout>

namespace ui {

namespace {

// One line per conversation: a pin mark, the title (elided) and the relative date, dimmed, on the right.
class ConversationDelegate : public QStyledItemDelegate {
public:
    using QStyledItemDelegate::QStyledItemDelegate;

    QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override {
        QSize s = QStyledItemDelegate::sizeHint(option, index);
        s.setHeight(option.fontMetrics.height() + 14);
        return s;
    }

    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override {
        QStyleOptionViewItem opt(option);
        initStyleOption(&opt, index);
        const QString title = opt.text;
        opt.text.clear();
        opt.widget->style()->drawControl(QStyle::CE_ItemViewItem, &opt, painter, opt.widget);
        const QDateTime updated = index.data(ConversationListModel::UpdatedRole).toDateTime();
        const QDate day = updated.toLocalTime().date();
        const QString when = day == QDate::currentDate()
                                 ? updated.toLocalTime().time().toString(QStringLiteral("HH:mm"))
                                 : QLocale().toString(day, QStringLiteral("d MMM"));
        const QRect r = opt.rect.adjusted(10, 0, -10, 0);
        const int whenWidth = opt.fontMetrics.horizontalAdvance(when);
        const bool pinned = index.data(ConversationListModel::PinnedRole).toBool();
        const QString shown = (pinned ? QStringLiteral("★ ") : QString()) + title;
        const QColor text = opt.palette.color(opt.state & QStyle::State_Selected ? QPalette::HighlightedText
                                                                                 : QPalette::Text);
        painter->save();
        painter->setPen(text);
        painter->drawText(r.adjusted(0, 0, -whenWidth - 8, 0), Qt::AlignVCenter | Qt::AlignLeft,
                          opt.fontMetrics.elidedText(shown, Qt::ElideRight, r.width() - whenWidth - 8));
        QColor dim = text;
        dim.setAlphaF(0.55f);
        painter->setPen(dim);
        painter->drawText(r, Qt::AlignVCenter | Qt::AlignRight, when);
        painter->restore();
    }
};

}  // namespace

ConversationSidebar::ConversationSidebar(ConversationListModel& model, QWidget* parent)
    : QWidget(parent), m_model(model) {
    m_new = new QPushButton(tr("+  New chat"), this);
    m_new->setObjectName(QStringLiteral("newChatButton"));
    m_search = new QLineEdit(this);
    m_search->setPlaceholderText(tr("Search conversations"));
    m_search->setClearButtonEnabled(true);
    m_search->setAccessibleName(tr("Search conversations"));

    m_proxy = new QSortFilterProxyModel(this);
    m_proxy->setSourceModel(&m_model);
    m_proxy->setFilterCaseSensitivity(Qt::CaseInsensitive);
    connect(m_search, &QLineEdit::textChanged, m_proxy, &QSortFilterProxyModel::setFilterFixedString);

    m_list = new QListView(this);
    m_list->setObjectName(QStringLiteral("conversationList"));
    m_list->setAccessibleName(tr("Conversations"));
    m_list->setModel(m_proxy);
    m_list->setItemDelegate(new ConversationDelegate(m_list));
    m_list->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_list->setContextMenuPolicy(Qt::CustomContextMenu);
    m_list->setFrameShape(QFrame::NoFrame);
    m_list->installEventFilter(this);
    m_search->installEventFilter(this);

    m_undoBar = new MessageBar(this);
    connect(&m_model, &ConversationListModel::undoAvailableChanged, this, [this](bool available, const QString& t) {
        if (available)
            m_undoBar->showMessage(MessageBar::Level::Info, tr("Deleted “%1”.").arg(t), tr("&Undo"),
                                   QStringLiteral("undo"));
        else
            m_undoBar->hide();
    });
    connect(m_undoBar, &MessageBar::actionClicked, &m_model, &ConversationListModel::undoRemove);
    connect(m_undoBar, &MessageBar::dismissed, &m_model, &ConversationListModel::commitPendingDelete);

    connect(m_new, &QPushButton::clicked, this, &ConversationSidebar::newRequested);
    connect(m_list->selectionModel(), &QItemSelectionModel::currentChanged, this, [this](const QModelIndex& cur) {
        if (cur.isValid())
            Q_EMIT conversationActivated(cur.data(ConversationListModel::IdRole).toLongLong());
    });
    connect(m_list, &QListView::doubleClicked, this, &ConversationSidebar::renameCurrent);
    connect(m_list, &QWidget::customContextMenuRequested, this, &ConversationSidebar::showContextMenu);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(8, 8, 8, 8);
    layout->addWidget(m_new);
    layout->addWidget(m_search);
    layout->addWidget(m_list, 1);
    layout->addWidget(m_undoBar);
}

qint64 ConversationSidebar::currentId() const {
    const QModelIndex cur = m_list->currentIndex();
    return cur.isValid() ? cur.data(ConversationListModel::IdRole).toLongLong() : 0;
}

void ConversationSidebar::selectConversation(qint64 id) {
    const int row = m_model.rowOfId(id);
    if (row < 0)
        return;
    const QModelIndex idx = m_proxy->mapFromSource(m_model.index(row));
    if (idx.isValid() && idx != m_list->currentIndex())
        m_list->setCurrentIndex(idx);
}

void ConversationSidebar::renameCurrent() {
    const qint64 id = currentId();
    if (id == 0)
        return;
    bool ok = false;
    const QString title = QInputDialog::getText(this, tr("Rename conversation"), tr("Title:"), QLineEdit::Normal,
                                                m_list->currentIndex().data().toString(), &ok)
                              .trimmed();
    if (ok && !title.isEmpty())
        Q_EMIT renameRequested(id, title);
}

void ConversationSidebar::deleteCurrent() {
    if (const qint64 id = currentId(); id != 0)
        m_model.removeWithUndo(id);
}

void ConversationSidebar::togglePinCurrent() {
    const QModelIndex cur = m_list->currentIndex();
    if (cur.isValid())
        Q_EMIT pinRequested(cur.data(ConversationListModel::IdRole).toLongLong(),
                            !cur.data(ConversationListModel::PinnedRole).toBool());
}

bool ConversationSidebar::eventFilter(QObject* watched, QEvent* event) {
    if (event->type() != QEvent::KeyPress)
        return QWidget::eventFilter(watched, event);
    const auto* key = static_cast<QKeyEvent*>(event);
    if (watched == m_search && key->key() == Qt::Key_Down) {
        m_list->setFocus();
        if (!m_list->currentIndex().isValid() && m_proxy->rowCount() > 0)
            m_list->setCurrentIndex(m_proxy->index(0, 0));
        return true;
    }
    if (watched == m_list) {
        if (key->key() == Qt::Key_Delete) {
            deleteCurrent();
            return true;
        }
        if (key->key() == Qt::Key_F2) {
            renameCurrent();
            return true;
        }
        if (key->matches(QKeySequence::Undo) && m_model.canUndo()) {
            m_model.undoRemove();
            return true;
        }
    }
    return QWidget::eventFilter(watched, event);
}

void ConversationSidebar::showContextMenu(const QPoint& pos) {
    if (const QModelIndex idx = m_list->indexAt(pos); idx.isValid())
        m_list->setCurrentIndex(idx);
    if (!m_list->currentIndex().isValid())
        return;
    const bool pinned = m_list->currentIndex().data(ConversationListModel::PinnedRole).toBool();
    QMenu menu(this);
    menu.addAction(tr("&Rename…"), QKeySequence(Qt::Key_F2), this, &ConversationSidebar::renameCurrent);
    menu.addAction(pinned ? tr("Un&pin") : tr("&Pin to top"), this, &ConversationSidebar::togglePinCurrent);
    menu.addSeparator();
    menu.addAction(tr("&Delete"), QKeySequence::Delete, this, &ConversationSidebar::deleteCurrent);
    menu.exec(m_list->viewport()->mapToGlobal(pos));
}

}  // namespace ui
