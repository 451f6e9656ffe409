#include "ui/main_window.h"

#include "ui/chat_view.h"
#include "ui/conversation_list_model.h"
#include "ui/conversation_sidebar.h"
#include "ui/history_browser.h"
#include "ui/model_manager.h"
#include "ui/vram_dashboard.h"

#include <QAction>
#include <QButtonGroup>
#include <QCloseEvent>
#include <QLabel>
#include <QLineEdit>
#include <QProgressBar>
#include <QPushButton>
#include <QSplitter>
#include <QStackedWidget>
#include <QStatusBar>
#include <QToolButton>
#include <QVBoxLayout>

namespace ui {

MainWindow::MainWindow(MessageListModel& messages, ConversationListModel& conversations, QWidget* parent)
    : QMainWindow(parent), m_conversations(conversations) {
    setWindowTitle(tr("RoundChat"));
    m_sidebar = new ConversationSidebar(conversations, this);
    m_chat = new ChatView(messages, this);
    m_history = new HistoryBrowser(this);
    m_dashboard = new VramDashboard(this);
    m_models = new ModelManager(this);

    auto* chatPage = new QSplitter(Qt::Horizontal, this);
    chatPage->addWidget(m_sidebar);
    chatPage->addWidget(m_chat);
    chatPage->setStretchFactor(1, 1);
    chatPage->setSizes({260, 900});
    chatPage->setChildrenCollapsible(false);

    m_pages = new QStackedWidget(this);
    m_pages->addWidget(chatPage);
    m_pages->addWidget(m_history);
    m_pages->addWidget(m_dashboard);
    m_pages->addWidget(m_models);

    // The navigation rail: one checkable button per page, Settings at the bottom.
    auto* rail = new QWidget(this);
    rail->setObjectName(QStringLiteral("navRail"));
    rail->setAutoFillBackground(true);
    rail->setBackgroundRole(QPalette::Button);  // a role, not a colour: follows theme changes
    auto* railLayout = new QVBoxLayout(rail);
    railLayout->setContentsMargins(6, 10, 6, 10);
    railLayout->setSpacing(4);
    m_nav = new QButtonGroup(this);
    const QStringList names{tr("Chat"), tr("History"), tr("VRAM"), tr("Models")};
    for (int i = 0; i < names.size(); ++i) {
        auto* b = new QToolButton(rail);
        b->setText(names[i]);
        b->setCheckable(true);
        b->setAutoRaise(true);
        b->setMinimumSize(72, 40);
        b->setFocusPolicy(Qt::TabFocus);
        railLayout->addWidget(b);
        m_nav->addButton(b, i);
    }
    m_nav->button(0)->setChecked(true);
    connect(m_nav, &QButtonGroup::idClicked, this, [this](int id) { showPage(Page(id)); });
    railLayout->addStretch();
    auto* settings = new QToolButton(rail);
    settings->setText(tr("Settings"));
    settings->setAutoRaise(true);
    settings->setMinimumSize(72, 40);
    connect(settings, &QToolButton::clicked, this, &MainWindow::settingsRequested);
    railLayout->addWidget(settings);

    auto* central = new QWidget(this);
    auto* centralLayout = new QHBoxLayout(central);
    centralLayout->setContentsMargins(0, 0, 0, 0);
    centralLayout->setSpacing(0);
    centralLayout->addWidget(rail);
    centralLayout->addWidget(m_pages, 1);
    setCentralWidget(central);

    m_modelStatus = new QLabel(tr("No model loaded"), this);
    m_loadLabel = new QLabel(this);
    m_loadProgress = new QProgressBar(this);
    m_loadProgress->setMaximumWidth(200);
    m_loadProgress->setMaximumHeight(14);
    m_loadCancel = new QPushButton(tr("Cancel"), this);
    connect(m_loadCancel, &QPushButton::clicked, this, &MainWindow::loadCancelRequested);
    statusBar()->addWidget(m_modelStatus, 1);
    statusBar()->addPermanentWidget(m_loadLabel);
    statusBar()->addPermanentWidget(m_loadProgress);
    statusBar()->addPermanentWidget(m_loadCancel);
    clearLoadProgress();

    addShortcutAction(QStringLiteral("newChat"), [this] { Q_EMIT m_sidebar->newRequested(); });
    addShortcutAction(QStringLiteral("stop"), [this] { Q_EMIT m_chat->stopRequested(); });
    addShortcutAction(QStringLiteral("regenerate"), [this] { m_chat->regenerateLast(); });
    addShortcutAction(QStringLiteral("editLast"), [this] {
        showPage(Page::Chat);
        m_chat->beginEditLast();
    });
    addShortcutAction(QStringLiteral("copyAnswer"), [this] { m_chat->copyCurrent(); });
    addShortcutAction(QStringLiteral("focusInput"), [this] {
        showPage(Page::Chat);
        m_chat->focusInput();
    });
    addShortcutAction(QStringLiteral("focusSearch"), [this] {
        showPage(Page::Chat);
        m_sidebar->searchBox()->setFocus();
        m_sidebar->searchBox()->selectAll();
    });
    addShortcutAction(QStringLiteral("historySearch"), [this] {
        showPage(Page::History);
        m_history->searchBox()->setFocus();
        m_history->searchBox()->selectAll();
    });
    addShortcutAction(QStringLiteral("showChat"), [this] { showPage(Page::Chat); });
    addShortcutAction(QStringLiteral("showHistory"), [this] { showPage(Page::History); });
    addShortcutAction(QStringLiteral("showMemory"), [this] { showPage(Page::Memory); });
    addShortcutAction(QStringLiteral("showModels"), [this] { showPage(Page::Models); });
    addShortcutAction(QStringLiteral("settings"), [this] { Q_EMIT settingsRequested(); });
    addShortcutAction(QStringLiteral("conversationSettings"), [this] {
        showPage(Page::Chat);
        Q_EMIT m_chat->conversationSettingsRequested();
    });
    addShortcutAction(QStringLiteral("prevBranch"), [this] { m_chat->switchBranch(-1); });
    addShortcutAction(QStringLiteral("nextBranch"), [this] { m_chat->switchBranch(1); });
    applyShortcuts({});
    resize(1200, 780);
}

void MainWindow::addShortcutAction(const QString& id, const std::function<void()>& handler) {
    auto* a = new QAction(this);
    a->setObjectName(id);
    a->setShortcutContext(Qt::WindowShortcut);
    connect(a, &QAction::triggered, this, handler);
    addAction(a);
    m_actions.insert(id, a);
}

void MainWindow::applyShortcuts(const SettingsValues& settings) {
    for (const ShortcutAction& sa : shortcutActions()) {
        if (QAction* a = m_actions.value(sa.id)) {
            a->setText(sa.label);
            a->setShortcut(shortcutFor(settings, sa.id));
        }
    }
    // Tool tips name the shortcut, so it can be discovered.
    const QStringList pages{QStringLiteral("showChat"), QStringLiteral("showHistory"), QStringLiteral("showMemory"),
                            QStringLiteral("showModels")};
    for (int i = 0; i < pages.size(); ++i)
        m_nav->button(i)->setToolTip(
            QStringLiteral("%1 (%2)").arg(m_nav->button(i)->text(),
                                          m_actions.value(pages[i])->shortcut().toString(QKeySequence::NativeText)));
}

void MainWindow::showPage(Page page) {
    m_pages->setCurrentIndex(int(page));
    m_nav->button(int(page))->setChecked(true);
    m_pages->currentWidget()->setFocus();
    if (page == Page::Chat)
        m_chat->focusInput();
}

MainWindow::Page MainWindow::currentPage() const { return Page(m_pages->currentIndex()); }

void MainWindow::setLoadProgress(const QString& what, double fraction) {
    m_loadLabel->setText(what);
    m_loadProgress->setRange(0, fraction < 0 ? 0 : 100);
    m_loadProgress->setValue(int(std::clamp(fraction, 0.0, 1.0) * 100));
    for (QWidget* w : std::initializer_list<QWidget*>{m_loadLabel, m_loadProgress, m_loadCancel})
        w->show();
}

void MainWindow::clearLoadProgress() {
    for (QWidget* w : std::initializer_list<QWidget*>{m_loadLabel, m_loadProgress, m_loadCancel})
        w->hide();
}

void MainWindow::setModelStatus(const QString& text) { m_modelStatus->setText(text); }

void MainWindow::closeEvent(QCloseEvent* event) {
    m_conversations.commitPendingDelete();
    QMainWindow::closeEvent(event);
}

}  // namespace ui
