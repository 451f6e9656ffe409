#include "ui/chat_view.h"

#include "ui/message_bar.h"
#include "ui/message_list_model.h"

#include <QApplication>
#include <QClipboard>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QListView>
#include <QMenu>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollBar>
#include <QTextBlock>
#include <QVBoxLayout>

namespace ui {

namespace {
constexpr int kMaxInputLines = 8;
}

ChatInput::ChatInput(QWidget* parent) : QPlainTextEdit(parent) {
    setTabChangesFocus(true);  // keyboard users leave the box with Tab
    setAccessibleName(tr("Message"));
    connect(this, &QPlainTextEdit::textChanged, this, &QWidget::updateGeometry);
}

QSize ChatInput::sizeHint() const {
    const int lines = std::clamp(document()->lineCount(), 2, kMaxInputLines);
    const int h = fontMetrics().lineSpacing() * lines + int(document()->documentMargin() * 2) + frameWidth() * 2 + 4;
    return {QPlainTextEdit::sizeHint().width(), h};
}

void ChatInput::keyPressEvent(QKeyEvent* event) {
    const bool enter = event->key() == Qt::Key_Return || event->key() == Qt::Key_Enter;
    if (enter && !(event->modifiers() & Qt::ShiftModifier)) {
        Q_EMIT submitted();
        return;
    }
    if (event->key() == Qt::Key_Escape) {
        Q_EMIT escapePressed();
        event->ignore();  // lets the window's Stop shortcut see Escape too
        return;
    }
    QPlainTextEdit::keyPressEvent(event);
}

ChatView::ChatView(MessageListModel& model, QWidget* parent) : QWidget(parent), m_model(model) {
    m_banner = new MessageBar(this);
    m_errorBar = new MessageBar(this);
    connect(m_errorBar, &MessageBar::actionClicked, this, &ChatView::errorActionClicked);

    m_list = new QListView(this);
    m_list->setObjectName(QStringLiteral("messageList"));
    m_list->setAccessibleName(tr("Conversation"));
    m_list->setModel(&m_model);
    m_delegate = new MessageDelegate(m_list);
    m_list->setItemDelegate(m_delegate);
    m_list->setVerticalScrollMode(QAbstractItemView::ScrollPerPixel);
    m_list->setResizeMode(QListView::Adjust);
    m_list->setUniformItemSizes(false);
    m_list->setSelectionMode(QAbstractItemView::SingleSelection);
    m_list->setFrameShape(QFrame::NoFrame);
    m_list->setContextMenuPolicy(Qt::CustomContextMenu);
    m_list->verticalScrollBar()->setSingleStep(24);
    connect(m_delegate, &MessageDelegate::actionTriggered, this, &ChatView::onAction);
    connect(m_list, &QWidget::customContextMenuRequested, this, &ChatView::showContextMenu);

    // Streaming changes a row's height: re-lay it out, and keep following the tail if the user was at the bottom.
    connect(m_list->verticalScrollBar(), &QScrollBar::valueChanged, this, [this](int v) {
        m_atBottom = v >= m_list->verticalScrollBar()->maximum() - 8;
    });
    connect(&m_model, &QAbstractItemModel::dataChanged, this, [this](const QModelIndex& from, const QModelIndex& to) {
        for (int r = from.row(); r <= to.row(); ++r)
            Q_EMIT m_delegate->sizeHintChanged(m_model.index(r));
        followTail();
    });
    connect(&m_model, &QAbstractItemModel::rowsInserted, this, &ChatView::followTail);
    connect(&m_model, &QAbstractItemModel::modelReset, this, [this] {
        m_atBottom = true;
        followTail();
    });

    m_editHint = new QLabel(this);
    m_editHint->hide();
    m_input = new ChatInput(this);
    m_input->setPlaceholderText(tr("Message the model (Enter to send, Shift+Enter for a new line)"));
    connect(m_input, &ChatInput::submitted, this, &ChatView::submit);
    connect(m_input, &ChatInput::escapePressed, this, &ChatView::cancelEdit);

    m_send = new QPushButton(tr("Send"), this);
    m_send->setObjectName(QStringLiteral("sendButton"));
    m_send->setDefault(true);
    m_send->setToolTip(tr("Send (Enter)"));
    m_stop = new QPushButton(tr("Stop"), this);
    m_stop->setToolTip(tr("Stop generating (Esc)"));
    m_stop->hide();
    connect(m_send, &QPushButton::clicked, this, &ChatView::submit);
    connect(m_stop, &QPushButton::clicked, this, &ChatView::stopRequested);

    m_context = new QProgressBar(this);
    m_context->setObjectName(QStringLiteral("contextMeter"));
    m_context->setAccessibleName(tr("Context usage"));
    m_context->setMaximumWidth(220);
    m_context->setMaximumHeight(14);
    m_context->setTextVisible(false);
    m_contextLabel = new QLabel(this);
    m_speed = new QLabel(this);
    m_speed->setObjectName(QStringLiteral("speedLabel"));
    m_backend = new QLabel(this);
    m_backend->setObjectName(QStringLiteral("backendLabel"));
    m_chatSettings = new QPushButton(tr("C&hat settings…"), this);
    m_chatSettings->setObjectName(QStringLiteral("conversationSettingsButton"));
    m_chatSettings->setFlat(true);
    m_chatSettings->setToolTip(tr("System prompt, sampling and Round Attention of this conversation"));
    connect(m_chatSettings, &QPushButton::clicked, this, &ChatView::conversationSettingsRequested);
    setContextUsage(0, 0);

    auto* inputRow = new QHBoxLayout;
    inputRow->addWidget(m_input, 1);
    auto* buttons = new QVBoxLayout;
    buttons->addWidget(m_send);
    buttons->addWidget(m_stop);
    buttons->addStretch();
    inputRow->addLayout(buttons);

    auto* status = new QHBoxLayout;
    status->addWidget(m_context);
    status->addWidget(m_contextLabel);
    status->addSpacing(16);
    status->addWidget(m_speed);
    status->addStretch();
    status->addWidget(m_backend);
    status->addWidget(m_chatSettings);

    auto* bottom = new QVBoxLayout;
    bottom->setContentsMargins(16, 8, 16, 10);
    bottom->addWidget(m_editHint);
    bottom->addLayout(inputRow);
    bottom->addLayout(status);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->setSpacing(0);
    layout->addWidget(m_banner);
    layout->addWidget(m_errorBar);
    layout->addWidget(m_list, 1);
    layout->addLayout(bottom);
    setFocusProxy(m_input);
}

void ChatView::followTail() {
    if (m_atBottom)
        m_list->scrollToBottom();
}

void ChatView::submit() {
    const QString text = m_input->toPlainText().trimmed();
    // While an answer is being generated (Send is replaced by Stop) the text stays in the box.
    if (text.isEmpty() || !m_send->isEnabled() || m_generating || m_model.isStreaming())
        return;
    m_input->clear();
    m_atBottom = true;
    if (m_editingId != 0) {
        const qint64 id = std::exchange(m_editingId, 0);
        m_editHint->hide();
        Q_EMIT editResendRequested(id, text);
        return;
    }
    Q_EMIT sendRequested(text);
}

void ChatView::setGenerating(bool generating) {
    m_generating = generating;
    m_send->setVisible(!generating);
    m_stop->setVisible(generating);
    if (!generating)
        m_input->setFocus();
}

void ChatView::setInputEnabled(bool enabled, const QString& placeholder) {
    m_send->setEnabled(enabled);
    m_input->setPlaceholderText(placeholder);
}

void ChatView::setContextUsage(int usedTokens, int contextLength) {
    m_context->setRange(0, std::max(contextLength, 1));
    m_context->setValue(std::min(usedTokens, std::max(contextLength, 1)));
    const QString text = contextLength > 0 ? tr("Context %1 / %2 tokens (%3%)")
                                                 .arg(usedTokens)
                                                 .arg(contextLength)
                                                 .arg(100 * usedTokens / contextLength)
                                           : tr("Context: no model loaded");
    m_context->setToolTip(text);
    m_context->setAccessibleDescription(text);
    m_contextLabel->setText(contextLength > 0 ? tr("%1 / %2 tokens").arg(usedTokens).arg(contextLength) : QString());
}

void ChatView::setTokensPerSecond(double tokensPerSecond) {
    m_speed->setText(tokensPerSecond > 0 ? tr("%1 tokens/s").arg(tokensPerSecond, 0, 'f', 1) : QString());
}

void ChatView::setBackendText(const QString& text, const QString& toolTip) {
    m_backend->setText(text);
    m_backend->setToolTip(toolTip);
}

void ChatView::showError(const QString& message, const QString& actionText, const QString& actionId) {
    m_errorBar->showMessage(MessageBar::Level::Error, message, actionText, actionId);
}

void ChatView::scrollToMessage(qint64 messageId) {
    const int row = m_model.rowOfId(messageId);
    if (row < 0)
        return;
    const QModelIndex idx = m_model.index(row);
    m_atBottom = false;
    m_list->setCurrentIndex(idx);
    m_list->scrollTo(idx, QAbstractItemView::PositionAtCenter);
    m_model.setHighlightedRounds({m_model.messageAt(row).round});
}

void ChatView::focusInput() { m_input->setFocus(); }

void ChatView::beginEdit(const QModelIndex& index) {
    const MessageData& m = m_model.messageAt(index.row());
    m_editingId = m.id;
    m_input->setPlainText(m.text);
    m_input->moveCursor(QTextCursor::End);
    m_editHint->setText(tr("Editing message from round %1: sending makes a new branch. Esc cancels.").arg(m.round));
    m_editHint->show();
    m_input->setFocus();
}

void ChatView::beginEditLast() {
    for (int r = m_model.rowCount() - 1; r >= 0; --r) {
        if (m_model.messageAt(r).role == MessageRole::User && m_model.messageAt(r).id != 0) {
            beginEdit(m_model.index(r));
            return;
        }
    }
}

void ChatView::cancelEdit() {
    if (m_editingId == 0)
        return;
    m_editingId = 0;
    m_editHint->hide();
    m_input->clear();
}

void ChatView::copyCurrent() {
    QModelIndex idx = m_list->currentIndex();
    if (!idx.isValid() && m_model.rowCount() > 0)
        idx = m_model.index(m_model.rowCount() - 1);
    if (idx.isValid())
        onAction(idx, MessageAction::Copy);
}

void ChatView::regenerateLast() {
    for (int r = m_model.rowCount() - 1; r >= 0; --r) {
        if (m_model.messageAt(r).role == MessageRole::Assistant) {
            onAction(m_model.index(r), MessageAction::Regenerate);
            return;
        }
    }
}

void ChatView::switchBranch(int delta) {
    const QModelIndex idx = m_list->currentIndex();
    if (idx.isValid())
        onAction(idx, delta < 0 ? MessageAction::PrevBranch : MessageAction::NextBranch);
}

void ChatView::onAction(const QModelIndex& index, MessageAction action) {
    if (!index.isValid())
        return;
    const MessageData& m = m_model.messageAt(index.row());
    switch (action) {
    case MessageAction::Copy: QApplication::clipboard()->setText(m.text); break;
    case MessageAction::CopyCode: QApplication::clipboard()->setText(extractCodeBlocks(m.text)); break;
    case MessageAction::Edit:
        if (!m_model.isStreaming() && m.id != 0)
            beginEdit(index);
        break;
    case MessageAction::Regenerate:
        if (!m_model.isStreaming() && m.id != 0)
            Q_EMIT regenerateRequested(m.id);
        break;
    case MessageAction::PrevBranch:
    case MessageAction::NextBranch:
        if (!m_model.isStreaming() && m.branchCount > 1)
            Q_EMIT branchSwitchRequested(m.id, action == MessageAction::PrevBranch ? -1 : 1);
        break;
    case MessageAction::ShowRecall: {
        const QList<int> rounds = m.recall.recalledRounds;
        // A second click on the same badge clears the highlight.
        m_model.setHighlightedRounds(m_model.highlightedRounds() == rounds ? QList<int>{} : rounds);
        break;
    }
    }
}

void ChatView::showContextMenu(const QPoint& pos) {
    QModelIndex idx = m_list->indexAt(pos);
    if (!idx.isValid())
        idx = m_list->currentIndex();
    if (!idx.isValid())
        return;
    const MessageData& m = m_model.messageAt(idx.row());
    QMenu menu(this);
    auto add = [&](const QString& text, MessageAction action, bool enabled = true) {
        QAction* a = menu.addAction(text, this, [this, idx, action] { onAction(idx, action); });
        a->setEnabled(enabled);
    };
    add(tr("&Copy"), MessageAction::Copy);
    if (m.text.contains(QStringLiteral("```")))
        add(tr("Copy c&ode"), MessageAction::CopyCode);
    if (m.role == MessageRole::User)
        add(tr("&Edit and resend"), MessageAction::Edit, m.id != 0);
    else
        add(tr("&Regenerate"), MessageAction::Regenerate, m.id != 0);
    if (m.recall.valid)
        add(tr("&Highlight recalled rounds"), MessageAction::ShowRecall);
    if (m.branchCount > 1) {
        add(tr("&Previous branch"), MessageAction::PrevBranch);
        add(tr("&Next branch"), MessageAction::NextBranch);
    }
    menu.exec(m_list->viewport()->mapToGlobal(pos));
}

}  // namespace ui
