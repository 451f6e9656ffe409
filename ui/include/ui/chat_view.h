// The chat pane: the message list, the input box (Enter sends, Shift+Enter new line), Send/Stop, and a status row
// with the context meter, tokens/s and the backend. It only emits what the user asked for; app/gui does the work and
// feeds results back through the MessageListModel and the setters. GUI thread only.
#pragma once

#include <QPlainTextEdit>
#include <QWidget>

#include "ui/message_delegate.h"

class QLabel;
class QListView;
class QProgressBar;
class QPushButton;

namespace ui {

class MessageListModel;
class MessageBar;

// Plain-text input: Enter submits, Shift+Enter inserts a new line, Escape cancels an edit. Grows up to 8 lines.
class ChatInput : public QPlainTextEdit {
    Q_OBJECT
public:
    explicit ChatInput(QWidget* parent = nullptr);
    QSize sizeHint() const override;

Q_SIGNALS:
    void submitted();
    void escapePressed();

protected:
    void keyPressEvent(QKeyEvent* event) override;
};

class ChatView : public QWidget {
    Q_OBJECT
public:
    explicit ChatView(MessageListModel& model, QWidget* parent = nullptr);

    ChatInput* input() const { return m_input; }
    QListView* list() const { return m_list; }
    MessageBar* banner() const { return m_banner; }
    MessageBar* errorBar() const { return m_errorBar; }
    bool isEditing() const { return m_editingId != 0; }
    bool isGenerating() const { return m_generating; }

    void setGenerating(bool generating);
    void setInputEnabled(bool enabled, const QString& placeholder);
    void setContextUsage(int usedTokens, int contextLength);
    void setTokensPerSecond(double tokensPerSecond);
    void setBackendText(const QString& text, const QString& toolTip);
    // Shows `message`; when actionText is non-empty the bar has a button that emits errorActionClicked(actionId).
    void showError(const QString& message, const QString& actionText = {}, const QString& actionId = {});
    void scrollToMessage(qint64 messageId);

    // Keyboard actions (also bound to shortcuts by the main window); they act on the current message.
    void focusInput();
    void beginEditLast();
    void cancelEdit();
    void copyCurrent();
    void regenerateLast();
    void switchBranch(int delta);

Q_SIGNALS:
    void sendRequested(const QString& text);
    void editResendRequested(qint64 userMessageId, const QString& text);
    void regenerateRequested(qint64 assistantMessageId);
    void branchSwitchRequested(qint64 messageId, int delta);
    void stopRequested();
    // The user wants to edit the settings of the conversation shown.
    void conversationSettingsRequested();
    void errorActionClicked(const QString& actionId);

private:
    void submit();
    void onAction(const QModelIndex& index, ui::MessageAction action);
    void showContextMenu(const QPoint& pos);
    void beginEdit(const QModelIndex& index);
    void followTail();

    MessageListModel& m_model;
    MessageDelegate* m_delegate;
    QListView* m_list;
    MessageBar* m_banner;
    MessageBar* m_errorBar;
    QLabel* m_editHint;
    ChatInput* m_input;
    QPushButton* m_send;
    QPushButton* m_stop;
    QProgressBar* m_context;
    QLabel* m_contextLabel;
    QLabel* m_speed;
    QLabel* m_backend;
    QPushButton* m_chatSettings;
    qint64 m_editingId = 0;
    bool m_generating = false;  // an answer is on its way (Stop shown); also one of a conversation just left
    bool m_atBottom = true;
};

}  // namespace ui
