#include "ui/message_delegate.h"

#include "ui/message_list_model.h"

#include <QAbstractTextDocumentLayout>
#include <QFontDatabase>
#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QRegularExpression>
#include <QTextBlock>
#include <QTextCursor>

namespace ui {

namespace {
constexpr int kMargin = 12;        // px around each bubble
constexpr int kPadding = 12;       // px inside the bubble
constexpr int kMaxBubbleWidth = 820;
constexpr int kUserWidthPercent = 78;
constexpr int kRadius = 10;
constexpr int kLinkGap = 14;       // px between action links
constexpr int kDocumentCacheSize = 256;

QColor mix(const QColor& a, const QColor& b, double t) {
    return QColor::fromRgbF(float(a.redF() * (1 - t) + b.redF() * t), float(a.greenF() * (1 - t) + b.greenF() * t),
                            float(a.blueF() * (1 - t) + b.blueF() * t));
}
}  // namespace

QString extractCodeBlocks(const QString& markdown) {
    static const QRegularExpression fence(QStringLiteral("```[^\\n]*\\n(.*?)```"),
                                          QRegularExpression::DotMatchesEverythingOption);
    QStringList blocks;
    for (auto it = fence.globalMatch(markdown); it.hasNext();)
        blocks << it.next().captured(1).trimmed();
    return blocks.join(QStringLiteral("\n\n"));
}

MessageDelegate::MessageDelegate(QObject* parent) : QStyledItemDelegate(parent), m_documents(kDocumentCacheSize) {}

QTextDocument* MessageDelegate::document(const QString& text, const QFont& font, int width,
                                         const QPalette& palette) const {
    const QString key = QString::number(qHash(text)) + QLatin1Char('/') + QString::number(width) + QLatin1Char('/') +
                        QString::number(text.size()) + palette.color(QPalette::Base).name();
    if (QTextDocument* cached = m_documents.object(key))
        return cached;
    auto* doc = new QTextDocument;
    doc->setDefaultFont(font);
    doc->setDocumentMargin(0);
    doc->setMarkdown(text);
    // Code blocks: monospace on a tinted background, so they stand apart from prose.
    const QFont mono = QFontDatabase::systemFont(QFontDatabase::FixedFont);
    const QColor codeBg = mix(palette.color(QPalette::Base), palette.color(QPalette::Text), 0.08);
    for (QTextBlock b = doc->begin(); b.isValid(); b = b.next()) {
        const QTextBlockFormat bf = b.blockFormat();
        if (!bf.hasProperty(QTextFormat::BlockCodeFence) && !bf.hasProperty(QTextFormat::BlockCodeLanguage))
            continue;
        QTextCursor c(b);
        QTextBlockFormat nbf = bf;
        nbf.setBackground(codeBg);
        c.setBlockFormat(nbf);
        c.select(QTextCursor::BlockUnderCursor);
        QTextCharFormat cf;
        cf.setFontFamilies({mono.family()});
        cf.setFontFixedPitch(true);
        c.mergeCharFormat(cf);
    }
    doc->setTextWidth(width);
    m_documents.insert(key, doc);
    return doc;
}

MessageDelegate::Layout MessageDelegate::layout(const QStyleOptionViewItem& option, const QModelIndex& index) const {
    Layout l;
    const auto role = MessageRole(index.data(MessageListModel::MessageRole).toInt());
    const bool user = role == MessageRole::User;
    const bool streaming = index.data(MessageListModel::StreamingRole).toBool();
    const QString text = index.data(Qt::DisplayRole).toString();
    const QFontMetrics fm(option.font);

    const int full = std::min(option.rect.width() - 2 * kMargin, kMaxBubbleWidth);
    int bubbleWidth = user ? full * kUserWidthPercent / 100 : full;
    QTextDocument* doc = document(text.isEmpty() ? QStringLiteral("…") : text, option.font,
                                  std::max(bubbleWidth - 2 * kPadding, 40), option.palette);
    if (user) {
        // Short user messages get a bubble that fits their text.
        const int ideal = int(std::ceil(doc->idealWidth())) + 2 * kPadding;
        const int minWidth = fm.horizontalAdvance(tr("You")) + 2 * kPadding + 120;
        bubbleWidth = std::clamp(ideal, std::min(minWidth, bubbleWidth), bubbleWidth);
        doc = document(text, option.font, bubbleWidth - 2 * kPadding, option.palette);
    }
    l.document = doc;

    const int left = user ? option.rect.left() + option.rect.width() - kMargin - bubbleWidth
                          : option.rect.left() + kMargin + std::max(0, (option.rect.width() - 2 * kMargin - full) / 2);
    int y = option.rect.top() + kMargin / 2 + kPadding;
    const int innerLeft = left + kPadding;
    const int innerWidth = bubbleWidth - 2 * kPadding;
    l.header = QRect(innerLeft, y, innerWidth, fm.height());
    y += fm.height() + 4;
    l.body = QRect(innerLeft, y, innerWidth, int(std::ceil(doc->size().height())));
    y += l.body.height() + 6;

    const QString badge = index.data(MessageListModel::BadgeTextRole).toString();
    if (!user && !streaming && !badge.isEmpty()) {
        l.badge = QRect(innerLeft, y, std::min(fm.horizontalAdvance(badge) + 20, innerWidth), fm.height() + 6);
        y += l.badge.height() + 6;
    }
    if (!streaming) {
        QList<std::pair<MessageAction, QString>> links{{MessageAction::Copy, tr("Copy")}};
        if (text.contains(QStringLiteral("```")))
            links.append({MessageAction::CopyCode, tr("Copy code")});
        links.append(user ? std::pair{MessageAction::Edit, tr("Edit")}
                          : std::pair{MessageAction::Regenerate, tr("Regenerate")});
        const int branches = index.data(MessageListModel::BranchCountRole).toInt();
        if (branches > 1) {
            const int current = index.data(MessageListModel::BranchIndexRole).toInt();
            links.append({MessageAction::PrevBranch, QStringLiteral("‹")});
            links.append({MessageAction::NextBranch, QStringLiteral("%1/%2 ›").arg(current + 1).arg(branches)});
        }
        int x = innerLeft;
        for (const auto& [action, label] : links) {
            const int w = fm.horizontalAdvance(label);
            l.links.append({action, label, QRect(x, y, w, fm.height())});
            x += w + kLinkGap;
        }
        y += fm.height();
    }
    y += kPadding;
    l.bubble = QRect(left, option.rect.top() + kMargin / 2, bubbleWidth, y - option.rect.top() - kMargin / 2);
    l.height = y - option.rect.top() + kMargin / 2;
    return l;
}

void MessageDelegate::paint(QPainter* painter, const QStyleOptionViewItem& option, const QModelIndex& index) const {
    QStyleOptionViewItem opt(option);
    initStyleOption(&opt, index);
    const Layout l = layout(opt, index);
    const QPalette& pal = opt.palette;
    const bool user = MessageRole(index.data(MessageListModel::MessageRole).toInt()) == MessageRole::User;
    const bool highlighted = index.data(MessageListModel::HighlightedRole).toBool();
    const bool streaming = index.data(MessageListModel::StreamingRole).toBool();

    painter->save();
    painter->setRenderHint(QPainter::Antialiasing);
    const QColor base = pal.color(QPalette::Base);
    const QColor accent = pal.color(QPalette::Highlight);
    const QColor fill = user ? mix(base, accent, 0.16) : mix(base, pal.color(QPalette::Text), 0.04);
    QPainterPath path;
    path.addRoundedRect(QRectF(l.bubble).adjusted(0.5, 0.5, -0.5, -0.5), kRadius, kRadius);
    painter->fillPath(path, fill);
    if (highlighted) {
        painter->setPen(QPen(accent, 2));
        painter->drawPath(path);
    } else if (opt.state & QStyle::State_HasFocus || opt.state & QStyle::State_Selected) {
        painter->setPen(QPen(mix(base, accent, 0.6), 1, Qt::DashLine));
        painter->drawPath(path);
    }

    QFont bold = opt.font;
    bold.setBold(true);
    painter->setFont(bold);
    painter->setPen(mix(pal.color(QPalette::Text), base, 0.25));
    const int round = index.data(MessageListModel::RoundRole).toInt();
    QString header = user ? tr("You") : tr("Assistant");
    if (round > 0)
        header += tr("  · round %1").arg(round);
    if (streaming)
        header += tr("  · writing…");
    painter->drawText(l.header, Qt::AlignLeft | Qt::AlignVCenter, header);

    painter->translate(l.body.topLeft());
    QAbstractTextDocumentLayout::PaintContext ctx;
    ctx.palette = pal;
    ctx.palette.setColor(QPalette::Text, pal.color(QPalette::Text));
    l.document->documentLayout()->draw(painter, ctx);
    painter->translate(-l.body.topLeft());

    painter->setFont(opt.font);
    if (!l.badge.isNull()) {
        QPainterPath chip;
        chip.addRoundedRect(QRectF(l.badge), l.badge.height() / 2.0, l.badge.height() / 2.0);
        painter->fillPath(chip, mix(base, accent, highlighted ? 0.35 : 0.14));
        painter->setPen(pal.color(QPalette::Text));
        painter->drawText(l.badge.adjusted(8, 0, -4, 0), Qt::AlignVCenter | Qt::AlignLeft,
                          opt.fontMetrics.elidedText(index.data(MessageListModel::BadgeTextRole).toString(),
                                                     Qt::ElideRight, l.badge.width() - 12));
    }
    painter->setPen(pal.color(QPalette::Link));
    for (const Link& link : l.links)
        painter->drawText(link.rect, Qt::AlignLeft | Qt::AlignVCenter, link.text);
    painter->restore();
}

QSize MessageDelegate::sizeHint(const QStyleOptionViewItem& option, const QModelIndex& index) const {
    QStyleOptionViewItem opt(option);
    initStyleOption(&opt, index);
    opt.rect.moveTop(0);
    return {opt.rect.width(), layout(opt, index).height};
}

bool MessageDelegate::editorEvent(QEvent* event, QAbstractItemModel* model, const QStyleOptionViewItem& option,
                                  const QModelIndex& index) {
    if (event->type() != QEvent::MouseButtonRelease)
        return QStyledItemDelegate::editorEvent(event, model, option, index);
    const auto* me = static_cast<QMouseEvent*>(event);
    if (me->button() != Qt::LeftButton)
        return false;
    QStyleOptionViewItem opt(option);
    initStyleOption(&opt, index);
    const Layout l = layout(opt, index);
    const QPoint pos = me->position().toPoint();
    if (l.badge.contains(pos)) {
        Q_EMIT actionTriggered(index, MessageAction::ShowRecall);
        return true;
    }
    for (const Link& link : l.links) {
        if (link.rect.adjusted(-4, -4, 4, 4).contains(pos)) {
            Q_EMIT actionTriggered(index, link.action);
            return true;
        }
    }
    return false;
}

}  // namespace ui
