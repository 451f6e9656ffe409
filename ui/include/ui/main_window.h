// The main window: a navigation rail (Chat, History, VRAM, Models, Settings), the pages, and a status bar with the
// model and its loading progress. It holds the widgets and their shortcuts; app/gui connects them to the workers.
// GUI thread only.
#pragma once

#include <QMainWindow>

#include <functional>

#include "ui/types.h"

class QButtonGroup;
class QLabel;
class QProgressBar;
class QPushButton;
class QStackedWidget;

namespace ui {

class ChatView;
class ConversationListModel;
class ConversationSidebar;
class HistoryBrowser;
class MessageListModel;
class ModelManager;
class VramDashboard;

class MainWindow : public QMainWindow {
    Q_OBJECT
public:
    enum class Page : int { Chat = 0, History = 1, Memory = 2, Models = 3 };

    MainWindow(MessageListModel& messages, ConversationListModel& conversations, QWidget* parent = nullptr);

    ChatView* chat() const { return m_chat; }
    ConversationSidebar* sidebar() const { return m_sidebar; }
    HistoryBrowser* history() const { return m_history; }
    VramDashboard* dashboard() const { return m_dashboard; }
    ModelManager* models() const { return m_models; }

    void showPage(Page page);
    Page currentPage() const;
    void applyShortcuts(const SettingsValues& settings);
    QAction* action(const QString& id) const { return m_actions.value(id); }

    // Progress in [0, 1]; a negative value shows a busy bar. The Cancel button emits loadCancelRequested.
    void setLoadProgress(const QString& what, double fraction);
    void clearLoadProgress();
    void setModelStatus(const QString& text);

Q_SIGNALS:
    void settingsRequested();
    void loadCancelRequested();

protected:
    void closeEvent(QCloseEvent* event) override;

private:
    void addShortcutAction(const QString& id, const std::function<void()>& handler);

    ConversationListModel& m_conversations;
    ChatView* m_chat;
    ConversationSidebar* m_sidebar;
    HistoryBrowser* m_history;
    VramDashboard* m_dashboard;
    ModelManager* m_models;
    QStackedWidget* m_pages;
    QButtonGroup* m_nav;
    QLabel* m_modelStatus;
    QLabel* m_loadLabel;
    QProgressBar* m_loadProgress;
    QPushButton* m_loadCancel;
    QMap<QString, QAction*> m_actions;
};

}  // namespace ui
