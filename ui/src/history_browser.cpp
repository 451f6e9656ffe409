#include "ui/history_browser.h"

#include <QAbstractTextDocumentLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QPainter>
#include <QPushButton>
#include <QSplitter>
#include <QStyledItemDelegate>
#include <QTableWidget>
#include <QTextDocument>
#include <QTimer>
#include <QVBoxLayout>

namespace ui {

namespace {

enum { ConversationIdRole = Qt::UserRole + 1, MessageIdRole, HtmlRole };

// Draws a hit as rich text: the conversation title on the first line, the snippet with matches in bold below.
class HitDelegate : public QStyledItemDelegate {
public:
    using QStyledItemDelegate::QStyledItemDelegate;

    void paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const override {
        QStyleOptionViewItem opt(option);
        initStyleOption(&opt, index);
        opt.text.clear();
        opt.widget->style()->drawControl(QStyle::CE_ItemViewItem, &opt, painter, opt.widget);
        QTextDocument doc;
        prepare(doc, opt, index);
        QAbstractTextDocumentLayout::PaintContext ctx;
        ctx.palette = opt.palette;
        if (opt.state & QStyle::State_Selected)
            ctx.palette.setColor(QPalette::Text, opt.palette.color(QPalette::HighlightedText));
        painter->save();
        painter->translate(opt.rect.topLeft() + QPoint(8, 4));
        doc.documentLayout()->draw(painter, ctx);
        painter->restore();
    }

    QSize sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const override {
        QStyleOptionViewItem opt(option);
        initStyleOption(&opt, index);
        QTextDocument doc;
        prepare(doc, opt, index);
        return {opt.rect.width(), int(doc.size().height()) + 8};
    }

private:
    static void prepare(QTextDocument& doc, const QStyleOptionViewItem& opt, const QModelIndex& index) {
        doc.setDefaultFont(opt.font);
        doc.setHtml(index.data(HtmlRole).toString());
        doc.setTextWidth(std::max(opt.rect.width() - 16, 100));
    }
};

}  // namespace

QString HistoryBrowser::snippetHtml(const QString& snippet) {
    QString html = snippet.toHtmlEscaped();
    html.replace(kSnippetOpen, QStringLiteral("<b>"));
    html.replace(kSnippetClose, QStringLiteral("</b>"));
    return html;
}

HistoryBrowser::HistoryBrowser(QWidget* parent) : QWidget(parent) {
    m_search = new QLineEdit(this);
    m_search->setObjectName(QStringLiteral("historySearch"));
    m_search->setPlaceholderText(tr("Search every conversation"));
    m_search->setClearButtonEnabled(true);
    m_search->setAccessibleName(tr("Search every conversation"));
    m_debounce = new QTimer(this);
    m_debounce->setSingleShot(true);
    m_debounce->setInterval(kSearchDelayMs);
    connect(m_search, &QLineEdit::textChanged, m_debounce, qOverload<>(&QTimer::start));
    connect(m_debounce, &QTimer::timeout, this, [this] { Q_EMIT searchRequested(m_search->text().trimmed()); });
    connect(m_search, &QLineEdit::returnPressed, this, [this] {
        if (m_results->count() > 0) {
            m_results->setFocus();
            m_results->setCurrentRow(0);
        }
    });

    m_resultInfo = new QLabel(this);
    m_results = new QListWidget(this);
    m_results->setObjectName(QStringLiteral("searchResults"));
    m_results->setAccessibleName(tr("Search results"));
    m_results->setItemDelegate(new HitDelegate(m_results));
    m_results->setWordWrap(true);
    m_results->setUniformItemSizes(false);
    connect(m_results, &QListWidget::itemActivated, this, [this](QListWidgetItem* item) {
        activateHit(m_results->row(item));
    });

    m_table = new QTableWidget(0, 5, this);
    m_table->setObjectName(QStringLiteral("conversationTable"));
    m_table->setHorizontalHeaderLabels({tr("Conversation"), tr("Messages"), tr("Updated"), tr("KV stored"), {}});
    m_table->horizontalHeader()->setSectionResizeMode(0, QHeaderView::Stretch);
    for (int c = 1; c < 5; ++c)
        m_table->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
    m_table->verticalHeader()->hide();
    m_table->setSelectionBehavior(QAbstractItemView::SelectRows);
    m_table->setSelectionMode(QAbstractItemView::SingleSelection);
    m_table->setEditTriggers(QAbstractItemView::NoEditTriggers);
    m_table->setAlternatingRowColors(true);
    m_totals = new QLabel(this);
    m_totals->setObjectName(QStringLiteral("kvTotals"));

    m_exportMd = new QPushButton(tr("Export &Markdown…"), this);
    m_exportJson = new QPushButton(tr("Export &JSON…"), this);
    m_import = new QPushButton(tr("&Import JSON…"), this);
    auto* freeSelected = new QPushButton(tr("&Free KV storage"), this);
    connect(m_exportMd, &QPushButton::clicked, this, [this] {
        if (const qint64 id = selectedConversation())
            Q_EMIT exportRequested(id, ExportFormat::Markdown);
    });
    connect(m_exportJson, &QPushButton::clicked, this, [this] {
        if (const qint64 id = selectedConversation())
            Q_EMIT exportRequested(id, ExportFormat::Json);
    });
    connect(freeSelected, &QPushButton::clicked, this, [this] {
        if (const qint64 id = selectedConversation())
            Q_EMIT freeKvRequested(id);
    });
    connect(m_import, &QPushButton::clicked, this, &HistoryBrowser::importRequested);

    auto* top = new QWidget(this);
    auto* topLayout = new QVBoxLayout(top);
    topLayout->setContentsMargins(0, 0, 0, 0);
    topLayout->addWidget(m_search);
    topLayout->addWidget(m_resultInfo);
    topLayout->addWidget(m_results, 1);

    auto* bottom = new QWidget(this);
    auto* bottomLayout = new QVBoxLayout(bottom);
    bottomLayout->setContentsMargins(0, 0, 0, 0);
    auto* tableTitle = new QLabel(tr("<b>Conversations and stored KV</b>"), this);
    bottomLayout->addWidget(tableTitle);
    bottomLayout->addWidget(m_table, 1);
    auto* buttons = new QHBoxLayout;
    buttons->addWidget(m_totals, 1);
    buttons->addWidget(freeSelected);
    buttons->addWidget(m_exportMd);
    buttons->addWidget(m_exportJson);
    buttons->addWidget(m_import);
    bottomLayout->addLayout(buttons);

    auto* split = new QSplitter(Qt::Vertical, this);
    split->addWidget(top);
    split->addWidget(bottom);
    split->setStretchFactor(0, 3);
    split->setStretchFactor(1, 2);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(16, 12, 16, 12);
    layout->addWidget(split);
    setFocusProxy(m_search);
    setResults({}, {});
}

void HistoryBrowser::setResults(const QString& query, const QList<SearchHit>& hits) {
    m_results->clear();
    for (const SearchHit& hit : hits) {
        auto* item = new QListWidgetItem(m_results);
        item->setData(ConversationIdRole, hit.conversationId);
        item->setData(MessageIdRole, hit.messageId);
        item->setData(HtmlRole, QStringLiteral("<div style='font-weight:600'>%1</div><div>%2</div>")
                                    .arg(hit.conversationTitle.toHtmlEscaped(), snippetHtml(hit.snippet)));
        // Plain text for accessibility and keyboard search.
        QString plain = hit.snippet;
        plain.remove(kSnippetOpen).remove(kSnippetClose);
        item->setText(hit.conversationTitle + QStringLiteral(": ") + plain);
    }
    m_resultInfo->setText(query.isEmpty() ? tr("Type to search the text of every message.")
                          : hits.isEmpty() ? tr("No message contains “%1”.").arg(query)
                                           : tr("%n message(s) match. Enter opens the selected one.", nullptr,
                                                int(hits.size())));
}

void HistoryBrowser::activateHit(int row) {
    if (QListWidgetItem* item = m_results->item(row))
        Q_EMIT hitActivated(item->data(ConversationIdRole).toLongLong(), item->data(MessageIdRole).toLongLong());
}

void HistoryBrowser::setConversations(const QList<ConversationInfo>& conversations) {
    const qint64 selected = selectedConversation();
    m_table->setRowCount(int(conversations.size()));
    quint64 totalKv = 0;
    for (int r = 0; r < conversations.size(); ++r) {
        const ConversationInfo& c = conversations[r];
        totalKv += c.kvBytes;
        auto* title = new QTableWidgetItem(c.title.isEmpty() ? tr("New conversation") : c.title);
        title->setData(Qt::UserRole, c.id);
        m_table->setItem(r, 0, title);
        m_table->setItem(r, 1, new QTableWidgetItem(QString::number(c.messageCount)));
        m_table->setItem(r, 2, new QTableWidgetItem(QLocale().toString(c.updated.toLocalTime(), QLocale::ShortFormat)));
        m_table->setItem(r, 3, new QTableWidgetItem(c.kvBytes ? formatBytes(c.kvBytes) : tr("none")));
        auto* free = new QPushButton(tr("Free"), m_table);
        free->setEnabled(c.kvBytes > 0);
        free->setToolTip(tr("Delete the stored KV of this conversation. Its text stays; the model re-reads it when "
                            "you continue."));
        connect(free, &QPushButton::clicked, this, [this, id = c.id] { Q_EMIT freeKvRequested(id); });
        m_table->setCellWidget(r, 4, free);
        if (c.id == selected)
            m_table->selectRow(r);
    }
    m_conversationCount = int(conversations.size());
    m_totalKv = totalKv;
    updateTotals();
}

void HistoryBrowser::setKvCap(quint64 capBytes) {
    m_kvCap = capBytes;
    updateTotals();
}

void HistoryBrowser::updateTotals() {
    const QString total = tr("%n conversation(s) · %1 of KV stored", nullptr, m_conversationCount)
                              .arg(formatBytes(m_totalKv));
    m_totals->setText(m_kvCap == 0 ? total + tr(" · no cap (set one in Settings)")
                                   : total + tr(" · cap %1, the oldest snapshots are freed first")
                                                 .arg(formatBytes(m_kvCap)));
}

qint64 HistoryBrowser::selectedConversation() const {
    const int row = m_table->currentRow();
    const QTableWidgetItem* item = row >= 0 ? m_table->item(row, 0) : nullptr;
    return item ? item->data(Qt::UserRole).toLongLong() : 0;
}

}  // namespace ui
