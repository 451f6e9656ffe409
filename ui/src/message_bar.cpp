#include "ui/message_bar.h"

#include <QHBoxLayout>
#include <QLabel>
#include <QPainter>
#include <QPushButton>

namespace ui {

MessageBar::MessageBar(QWidget* parent) : QFrame(parent) {
    setObjectName(QStringLiteral("messageBar"));
    setFrameShape(QFrame::StyledPanel);
    m_label = new QLabel(this);
    m_label->setWordWrap(true);
    m_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_action = new QPushButton(this);
    m_close = new QPushButton(QStringLiteral("✕"), this);
    m_close->setFlat(true);
    m_close->setToolTip(tr("Dismiss"));
    m_close->setAccessibleName(tr("Dismiss"));
    m_close->setFixedWidth(m_close->fontMetrics().horizontalAdvance(QStringLiteral("✕")) + 16);
    auto* row = new QHBoxLayout(this);
    row->setContentsMargins(10, 6, 6, 6);
    row->addWidget(m_label, 1);
    row->addWidget(m_action);
    row->addWidget(m_close);
    connect(m_action, &QPushButton::clicked, this, [this] {
        const QString id = m_actionId;
        hide();
        Q_EMIT actionClicked(id);
    });
    connect(m_close, &QPushButton::clicked, this, [this] {
        hide();
        Q_EMIT dismissed();
    });
    hide();
}

void MessageBar::showMessage(Level level, const QString& text, const QString& actionText, const QString& actionId) {
    m_level = level;
    update();
    m_label->setText(text);
    m_action->setText(actionText);
    m_action->setVisible(!actionText.isEmpty());
    m_actionId = actionId;
    setAccessibleDescription(text);
    show();
}

QString MessageBar::text() const { return m_label->text(); }

void MessageBar::paintEvent(QPaintEvent* event) {
    // The tint is mixed with the current palette at paint time, so a theme change needs no update here.
    const QColor base = palette().color(QPalette::Window);
    const QColor tint = m_level == Level::Error     ? QColor(220, 53, 69)
                        : m_level == Level::Warning ? QColor(230, 160, 20)
                                                    : QColor(40, 120, 220);
    constexpr float kTint = 0.18f;
    QPainter painter(this);
    painter.fillRect(rect(), QColor::fromRgbF(base.redF() * (1 - kTint) + tint.redF() * kTint,
                                              base.greenF() * (1 - kTint) + tint.greenF() * kTint,
                                              base.blueF() * (1 - kTint) + tint.blueF() * kTint));
    QFrame::paintEvent(event);
}

}  // namespace ui
