// The widgets on the offscreen platform: keyboard flows (Enter/Shift+Enter, edit and resend, delete and undo,
// page shortcuts), recall badge highlighting, settings round trip, dashboards and the model cards. Also writes
// screenshots of the main window to the temp folder (roundchat_main.png, roundchat_dark.png) for a visual check.
#include "known_models.h"
#include "ui/chat_view.h"
#include "ui/conversation_list_model.h"
#include "ui/conversation_sidebar.h"
#include "ui/history_browser.h"
#include "ui/main_window.h"
#include "ui/message_bar.h"
#include "ui/message_list_model.h"
#include "ui/model_manager.h"
#include "ui/settings_dialog.h"
#include "ui/vram_dashboard.h"
#include "widget_test_util.h"

#include <algorithm>

#include <QApplication>
#include <QChartView>
#include <QCheckBox>
#include <QClipboard>
#include <QDir>
#include <QLabel>
#include <QLineEdit>
#include <QListView>
#include <QListWidget>
#include <QPushButton>
#include <QSignalSpy>
#include <QStackedWidget>
#include <QSpinBox>
#include <QTabWidget>
#include <QTableWidget>
#include <QTest>
#include <QValueAxis>

using namespace ui;

namespace {

using ui::test::message;

RecallBadge badge(QList<int> rounds, int total) {
    RecallBadge b;
    b.valid = true;
    b.roundAttention = true;
    b.recalledRounds = std::move(rounds);
    b.roundsTotal = total;
    b.kvBytesInVram = 310 * 1000 * 1000;
    b.kvBytesFull = 738 * 1000 * 1000;
    return b;
}

QList<MessageData> sampleChat() {
    QList<MessageData> msgs{
        message(1, MessageRole::User, QStringLiteral("How do I reverse a list in Python?"), 1),
        message(2, MessageRole::Assistant,
                QStringLiteral("Use **slicing** or the `reverse()` method:\n\n```python\nitems = [1, 2, 3]\n"
                               "print(items[::-1])\nitems.reverse()\n```\n\nSlicing returns a *new* list."),
                1),
        message(3, MessageRole::User, QStringLiteral("And in C++?"), 2),
        message(4, MessageRole::Assistant,
                QStringLiteral("Use `std::reverse` from `<algorithm>`:\n\n```cpp\nstd::reverse(v.begin(), v.end());\n"
                               "```"),
                2),
    };
    msgs[1].recall = badge({1}, 1);
    msgs[3].recall = badge({1, 2}, 2);
    msgs[3].branchCount = 2;
    msgs[3].branchIndex = 1;
    return msgs;
}

QList<ConversationInfo> sampleConversations() {
    QList<ConversationInfo> list;
    const QStringList titles{QStringLiteral("Reversing lists"), QStringLiteral("Trip to Lisbon"),
                             QStringLiteral("Bash one-liners"), QStringLiteral("Cover letter draft")};
    for (int i = 0; i < titles.size(); ++i) {
        ConversationInfo c;
        c.id = i + 1;
        c.title = titles[i];
        c.pinned = i == 1;
        c.updated = QDateTime::currentDateTimeUtc().addSecs(-3600 * 20 * i);
        c.messageCount = 4 + i;
        c.kvBytes = quint64(i) * 12 * 1000 * 1000;
        list << c;
    }
    return list;
}

// The labels a value axis draws: its ticks, evenly spaced from min to max, printed with its printf-style format.
QStringList axisLabels(const QValueAxis& axis) {
    QStringList labels;
    const int ticks = axis.tickCount();
    for (int i = 0; i < ticks; ++i) {
        const double v = axis.min() + (axis.max() - axis.min()) * i / (ticks - 1);
        labels << QString::asprintf(axis.labelFormat().toLatin1().constData(), v);
    }
    return labels;
}

// Every vertical value axis of the dashboard's charts.
QList<QValueAxis*> valueAxes(VramDashboard& dash) {
    QList<QValueAxis*> axes;
    for (QChartView* view : dash.findChildren<QChartView*>())
        for (QAbstractAxis* a : view->chart()->axes(Qt::Vertical))
            if (auto* v = qobject_cast<QValueAxis*>(a))
                axes << v;
    return axes;
}

void saveScreenshot(QWidget& w, const QString& name) {
    const QString path = QDir::temp().filePath(name);
    QVERIFY(w.grab().save(path));
    qInfo("screenshot: %s", qPrintable(path));
}

}  // namespace

class WidgetsTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void enterSendsShiftEnterAddsLine() {
        MessageListModel model;
        ChatView view(model);
        QSignalSpy sent(&view, &ChatView::sendRequested);
        view.show();
        QTest::keyClicks(view.input(), QStringLiteral("first line"));
        QTest::keyClick(view.input(), Qt::Key_Return, Qt::ShiftModifier);
        QTest::keyClicks(view.input(), QStringLiteral("second"));
        QCOMPARE(sent.size(), 0);
        QTest::keyClick(view.input(), Qt::Key_Return);
        QCOMPARE(sent.size(), 1);
        QCOMPARE(sent.first().first().toString(), QStringLiteral("first line\nsecond"));
        QVERIFY(view.input()->toPlainText().isEmpty());
        QTest::keyClick(view.input(), Qt::Key_Return);  // empty input sends nothing
        QCOMPARE(sent.size(), 1);
    }

    void editLastAndResendMakesBranchRequest() {
        MessageListModel model;
        model.setMessages(sampleChat());
        ChatView view(model);
        QSignalSpy edited(&view, &ChatView::editResendRequested);
        QSignalSpy sent(&view, &ChatView::sendRequested);
        view.beginEditLast();
        QVERIFY(view.isEditing());
        QCOMPARE(view.input()->toPlainText(), QStringLiteral("And in C++?"));
        QTest::keyClicks(view.input(), QStringLiteral(" And Rust?"));
        QTest::keyClick(view.input(), Qt::Key_Return);
        QCOMPARE(edited.size(), 1);
        QCOMPARE(edited.first().at(0).toLongLong(), qint64(3));
        QCOMPARE(edited.first().at(1).toString(), QStringLiteral("And in C++? And Rust?"));
        QCOMPARE(sent.size(), 0);
        QVERIFY(!view.isEditing());

        view.beginEditLast();
        QTest::keyClick(view.input(), Qt::Key_Escape);  // cancels the edit
        QVERIFY(!view.isEditing());
        QVERIFY(view.input()->toPlainText().isEmpty());
    }

    void messageActionsReachTheirSignals() {
        MessageListModel model;
        model.setMessages(sampleChat());
        ChatView view(model);
        auto* delegate = qobject_cast<MessageDelegate*>(view.list()->itemDelegate());
        QVERIFY(delegate);
        QSignalSpy regen(&view, &ChatView::regenerateRequested);
        QSignalSpy branch(&view, &ChatView::branchSwitchRequested);

        Q_EMIT delegate->actionTriggered(model.index(3), MessageAction::ShowRecall);  // the badge was clicked
        QVERIFY(model.index(0).data(MessageListModel::HighlightedRole).toBool());
        QVERIFY(model.index(2).data(MessageListModel::HighlightedRole).toBool());
        Q_EMIT delegate->actionTriggered(model.index(1), MessageAction::ShowRecall);
        QVERIFY(!model.index(2).data(MessageListModel::HighlightedRole).toBool());
        Q_EMIT delegate->actionTriggered(model.index(1), MessageAction::ShowRecall);  // same badge again: clears
        QVERIFY(model.highlightedRounds().isEmpty());

        Q_EMIT delegate->actionTriggered(model.index(3), MessageAction::Regenerate);
        QCOMPARE(regen.size(), 1);
        QCOMPARE(regen.first().first().toLongLong(), qint64(4));
        Q_EMIT delegate->actionTriggered(model.index(3), MessageAction::PrevBranch);
        QCOMPARE(branch.size(), 1);
        QCOMPARE(branch.first().at(1).toInt(), -1);

        Q_EMIT delegate->actionTriggered(model.index(1), MessageAction::CopyCode);
        QCOMPARE(QApplication::clipboard()->text(), QStringLiteral("items = [1, 2, 3]\nprint(items[::-1])\nitems.reverse()"));
        view.list()->setCurrentIndex(model.index(2));
        view.copyCurrent();
        QCOMPARE(QApplication::clipboard()->text(), QStringLiteral("And in C++?"));
    }

    void delegateGivesTallerRowsToLongerText() {
        MessageListModel model;
        model.setMessages({message(1, MessageRole::Assistant, QStringLiteral("short"), 1),
                           message(2, MessageRole::Assistant, QString(QStringLiteral("long text ")).repeated(200), 1)});
        ChatView view(model);
        view.resize(700, 500);
        view.show();
        QVERIFY(QTest::qWaitForWindowExposed(&view));
        const int h0 = view.list()->visualRect(model.index(0)).height();
        const int h1 = view.list()->visualRect(model.index(1)).height();
        QVERIFY2(h1 > 3 * h0, qPrintable(QStringLiteral("%1 vs %2").arg(h0).arg(h1)));
    }

    void sidebarDeleteWithKeyboardAndUndo() {
        ConversationListModel model;
        model.setConversations(sampleConversations());
        ConversationSidebar sidebar(model);
        QSignalSpy activated(&sidebar, &ConversationSidebar::conversationActivated);
        sidebar.show();
        sidebar.activateWindow();
        QVERIFY(QTest::qWaitForWindowActive(&sidebar));
        sidebar.searchBox()->setFocus();
        QTest::keyClicks(sidebar.searchBox(), QStringLiteral("lis"));  // filters to "Reversing lists" / "Lisbon"
        QCOMPARE(sidebar.list()->model()->rowCount(), 2);
        QTest::keyClick(sidebar.searchBox(), Qt::Key_Down);  // into the list, first hit selected
        QVERIFY(sidebar.list()->hasFocus());
        QCOMPARE(activated.size(), 1);
        const qint64 id = sidebar.currentId();
        QTest::keyClick(sidebar.list(), Qt::Key_Delete);
        QCOMPARE(model.rowOfId(id), -1);
        QTest::keyClick(sidebar.list(), Qt::Key_Z, Qt::ControlModifier);
        QVERIFY(model.rowOfId(id) >= 0);
    }

    void shortcutsSwitchPages() {
        MessageListModel messages;
        ConversationListModel conversations;
        MainWindow window(messages, conversations);
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QCOMPARE(window.currentPage(), MainWindow::Page::Chat);
        window.action(QStringLiteral("showHistory"))->trigger();
        QCOMPARE(window.currentPage(), MainWindow::Page::History);
        window.action(QStringLiteral("showMemory"))->trigger();
        QCOMPARE(window.currentPage(), MainWindow::Page::Memory);
        QCOMPARE(window.action(QStringLiteral("showModels"))->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_4));
        SettingsValues custom;
        custom.shortcuts.insert(QStringLiteral("showModels"), QKeySequence(Qt::CTRL | Qt::Key_M));
        window.applyShortcuts(custom);
        QCOMPARE(window.action(QStringLiteral("showModels"))->shortcut(), QKeySequence(Qt::CTRL | Qt::Key_M));
        QSignalSpy stop(window.chat(), &ChatView::stopRequested);
        window.action(QStringLiteral("stop"))->trigger();
        QCOMPARE(stop.size(), 1);

        // The conversation's settings: from any page with the keyboard, or the button under the message box.
        QSignalSpy chatSettings(window.chat(), &ChatView::conversationSettingsRequested);
        QTest::keyClick(&window, Qt::Key_S, Qt::ControlModifier | Qt::ShiftModifier);
        QCOMPARE(chatSettings.size(), 1);
        QCOMPARE(window.currentPage(), MainWindow::Page::Chat);
        window.chat()->findChild<QPushButton*>(QStringLiteral("conversationSettingsButton"))->click();
        QCOMPARE(chatSettings.size(), 2);
    }

    void settingsDialogRoundTrips() {
        SettingsValues v;
        v.backend = BackendChoice::Cpu;
        v.systemPrompt = QStringLiteral("Be brief.");
        v.temperature = 0.3;
        v.roundAttention = true;
        v.watershedAuto = false;
        v.watershedLayer = 11;
        v.vramBudgetMb = 256;
        v.theme = Theme::Dark;
        v.shortcuts.insert(QStringLiteral("stop"), QKeySequence(Qt::CTRL | Qt::Key_Period));
        SettingsDialog dialog(v);
        const SettingsValues out = dialog.values();
        QCOMPARE(int(out.backend), int(BackendChoice::Cpu));
        QCOMPARE(out.systemPrompt, v.systemPrompt);
        QCOMPARE(out.temperature, 0.3);
        QVERIFY(!out.watershedAuto);
        QCOMPARE(out.watershedLayer, 11);
        QCOMPARE(out.vramBudgetMb, 256);
        QCOMPARE(int(out.theme), int(Theme::Dark));
        QCOMPARE(out.shortcuts.value(QStringLiteral("stop")), QKeySequence(Qt::CTRL | Qt::Key_Period));
        QCOMPARE(out.shortcuts.size(), 1);  // defaults are not stored
        QVERIFY(!out.kvSharing);
    }

    // Inter-layer KV sharing: off by default, its token counts editable only while it is on, in both scopes.
    void settingsDialogKvSharing() {
        SettingsValues v;
        v.kvSharingSinkTokens = 4;
        for (SettingsDialog::Scope scope : {SettingsDialog::Scope::App, SettingsDialog::Scope::Conversation}) {
            SettingsDialog dialog(v, nullptr, scope, QStringLiteral("chat"));
            auto* box = dialog.findChild<QCheckBox*>(QStringLiteral("kvSharing"));
            auto* sink = dialog.findChild<QSpinBox*>(QStringLiteral("kvSharingSinkTokens"));
            auto* window = dialog.findChild<QSpinBox*>(QStringLiteral("kvSharingWindowTokens"));
            auto* help = dialog.findChild<QLabel*>(QStringLiteral("kvSharingHelp"));
            QVERIFY(box && sink && window && help);
            QVERIFY(!box->isChecked());
            QVERIFY(!sink->isEnabled());
            QVERIFY(!window->isEnabled());
            QVERIFY(help->text().contains(QStringLiteral("roundchat-cli calibrate")));
            box->click();
            QVERIFY(sink->isEnabled());
            QVERIFY(window->isEnabled());
            window->setValue(64);
            SettingsValues out = dialog.values();
            QVERIFY(out.kvSharing);
            QCOMPARE(out.kvSharingSinkTokens, 4);
            QCOMPARE(out.kvSharingWindowTokens, 64);
            box->click();
            QVERIFY(!sink->isEnabled());
            QVERIFY(!window->isEnabled());
            QVERIFY(!dialog.values().kvSharing);
        }
    }

    void dashboardShowsGpuOrHostMemory() {
        VramDashboard dash;
        MemorySample host;
        host.deviceName = QStringLiteral("x86-64 CPU");
        host.totalBytes = 16ULL << 30;
        host.freeBytes = 8ULL << 30;
        dash.addSample(host);
        QVERIFY(dash.headline().contains(QStringLiteral("No CUDA GPU")));
        MemorySample gpu;
        gpu.gpu = true;
        gpu.deviceName = QStringLiteral("NVIDIA H100");
        gpu.totalBytes = 80ULL * 1000 * 1000 * 1000;
        gpu.freeBytes = 70ULL * 1000 * 1000 * 1000;
        gpu.weightBytes = 700ULL * 1000 * 1000;
        for (int i = 0; i < VramDashboard::kHistorySamples + 5; ++i)
            dash.addSample(gpu);
        QCOMPARE(dash.sampleCount(), VramDashboard::kHistorySamples);
        QVERIFY(dash.headline().contains(QStringLiteral("NVIDIA H100")));
        dash.addAnswer(badge({1}, 3));
        dash.addAnswer(RecallBadge{});  // invalid: not counted
        QCOMPARE(dash.answerCount(), 1);
    }

    // All-zero savings (full KV, or Round Attention that recalled everything) used to label the axis 0.0, 0.0, 0.1,
    // 0.1, 0.1. Every axis must label distinct values, whatever the data.
    void dashboardAxesNeverRepeatLabels() {
        VramDashboard dash;
        auto check = [&](const char* when) {
            const QList<QValueAxis*> axes = valueAxes(dash);
            QCOMPARE(axes.size(), 2);
            for (QValueAxis* axis : axes) {
                const QStringList labels = axisLabels(*axis);
                QVERIFY2(labels.size() >= 2, when);
                QVERIFY2(QSet<QString>(labels.begin(), labels.end()).size() == labels.size(),
                         qPrintable(QStringLiteral("%1: %2").arg(QLatin1String(when), labels.join(QLatin1Char(' ')))));
                QCOMPARE(axis->min(), 0.0);
            }
        };
        check("empty");
        RecallBadge none = badge({1, 2}, 2);
        none.kvBytesInVram = none.kvBytesFull;  // nothing saved
        for (int i = 0; i < 3; ++i)
            dash.addAnswer(none);
        check("zero savings");
        RecallBadge tiny = badge({1}, 2);
        tiny.kvBytesFull = tiny.kvBytesInVram + 12 * 1000;  // 0.012 MB
        dash.addAnswer(tiny);
        check("tiny savings");
        QVERIFY(valueAxes(dash).at(1)->max() >= 0.012);
        MemorySample gpu;
        gpu.gpu = true;
        gpu.totalBytes = 80ULL * 1000 * 1000 * 1000;
        gpu.freeBytes = 79ULL * 1000 * 1000 * 1000;
        dash.addSample(gpu);
        check("gpu sample");
        QVERIFY(valueAxes(dash).at(0)->max() >= 80000.0);
    }

    void historyShowsKvPerConversationCapAndFree() {
        HistoryBrowser history;
        QList<ConversationInfo> list = sampleConversations();
        list[0].kvBytes = 0;
        list[1].kvBytes = 3 * 1000 * 1000;
        history.setConversations(list);
        QCOMPARE(history.table()->item(0, 3)->text(), QStringLiteral("none"));
        QCOMPARE(history.table()->item(1, 3)->text(), formatBytes(list[1].kvBytes));
        QVERIFY(!qobject_cast<QPushButton*>(history.table()->cellWidget(0, 4))->isEnabled());
        auto* free = qobject_cast<QPushButton*>(history.table()->cellWidget(1, 4));
        QVERIFY(free && free->isEnabled());
        QSignalSpy freed(&history, &HistoryBrowser::freeKvRequested);
        free->click();
        QCOMPARE(freed.size(), 1);
        QCOMPARE(freed.first().first().toLongLong(), list[1].id);
        history.setKvCap(500 * 1000 * 1000);
        auto* totals = history.findChild<QLabel*>(QStringLiteral("kvTotals"));
        QVERIFY(totals);
        QVERIFY2(totals->text().contains(QStringLiteral("cap 500 MB")), qPrintable(totals->text()));

        // Stored bytes reported after a write reach the sidebar model too.
        ConversationListModel model;
        model.setConversations(list);
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        model.setKvBytes({{list[0].id, 7000}});
        QCOMPARE(model.at(model.rowOfId(list[0].id)).kvBytes, quint64(7000));
        QCOMPARE(model.at(model.rowOfId(list[1].id)).kvBytes, quint64(0));
        QVERIFY(changed.size() >= 2);
    }

    // The conversation's dialog edits only what a conversation keeps of its own; the app-wide one also the KV cap.
    void conversationSettingsDialogShowsOwnTabsOnly() {
        SettingsValues v;
        v.kvStorageCapMb = 750;
        v.keepLatestRounds = 4;
        SettingsDialog global(v);
        auto* tabs = global.findChild<QTabWidget*>();
        QVERIFY(tabs);
        for (int i = 0; i < tabs->count(); ++i)
            QVERIFY(tabs->isTabVisible(i));
        QCOMPARE(global.findChild<QSpinBox*>(QStringLiteral("kvStorageCap"))->value(), 750);
        global.findChild<QSpinBox*>(QStringLiteral("kvStorageCap"))->setValue(1200);
        QCOMPARE(global.values().kvStorageCapMb, 1200);

        SettingsDialog own(v, nullptr, SettingsDialog::Scope::Conversation, QStringLiteral("Trip to Lisbon"));
        QVERIFY(own.windowTitle().contains(QStringLiteral("Trip to Lisbon")));
        tabs = own.findChild<QTabWidget*>();
        QStringList visible;
        for (int i = 0; i < tabs->count(); ++i)
            if (tabs->isTabVisible(i))
                visible << tabs->tabText(i).remove(QLatin1Char('&'));
        QCOMPARE(visible, (QStringList{QStringLiteral("Generation"), QStringLiteral("Round Attention")}));
        QCOMPARE(own.values().keepLatestRounds, 4);
    }

    void historyEnterOpensHit() {
        HistoryBrowser history;
        QSignalSpy search(&history, &HistoryBrowser::searchRequested);
        QSignalSpy opened(&history, &HistoryBrowser::hitActivated);
        history.show();
        history.activateWindow();
        QVERIFY(QTest::qWaitForWindowActive(&history));
        QTest::keyClicks(history.searchBox(), QStringLiteral("reverse"));
        QTRY_COMPARE(search.size(), 1);  // debounced: one request for the whole word
        QCOMPARE(search.first().first().toString(), QStringLiteral("reverse"));
        history.setResults(QStringLiteral("reverse"),
                           {SearchHit{1, 2, QStringLiteral("Lists"), QStringLiteral("use ") + kSnippetOpen +
                                                                         QStringLiteral("reverse") + kSnippetClose},
                            SearchHit{3, 9, QStringLiteral("C++"), QStringLiteral("std::reverse")}});
        QTest::keyClick(history.searchBox(), Qt::Key_Return);
        QVERIFY(history.results()->hasFocus());
        QTest::keyClick(history.results(), Qt::Key_Down);
        QTest::keyClick(history.results(), Qt::Key_Return);
        QCOMPARE(opened.size(), 1);
        QCOMPARE(opened.first().at(0).toLongLong(), qint64(3));
        QCOMPARE(opened.first().at(1).toLongLong(), qint64(9));

        QSignalSpy freed(&history, &HistoryBrowser::freeKvRequested);
        history.setConversations(sampleConversations());
        auto* button = qobject_cast<QPushButton*>(history.table()->cellWidget(2, 4));
        QVERIFY(button && button->isEnabled());
        button->click();
        QCOMPARE(freed.size(), 1);
        QCOMPARE(freed.first().first().toLongLong(), qint64(3));
    }

    void modelCardsFollowDownloadState() {
        ModelManager manager;
        KnownModel m;
        m.id = QStringLiteral("tiny");
        m.name = QStringLiteral("Tiny");
        m.fileName = QStringLiteral("tiny.gguf");
        manager.setKnownModels({m});
        QSignalSpy download(&manager, &ModelManager::downloadRequested);
        QSignalSpy cancel(&manager, &ModelManager::cancelRequested);
        manager.show();
        auto button = [&](const QString& text) -> QPushButton* {
            for (QPushButton* b : manager.findChildren<QPushButton*>())
                if (b->text() == text && b->isVisible())
                    return b;
            return nullptr;
        };
        QVERIFY(button(QStringLiteral("Download")));
        button(QStringLiteral("Download"))->click();
        QCOMPARE(download.size(), 1);
        manager.setStatus(m.id, {ModelManager::State::Downloading, 50, 100, {}});
        QVERIFY(!button(QStringLiteral("Download")));
        button(QStringLiteral("Cancel"))->click();
        QCOMPARE(cancel.size(), 1);
        manager.setStatus(m.id, {ModelManager::State::Paused, 50, 100, {}});
        QVERIFY(button(QStringLiteral("Resume")));
        manager.setStatus(m.id, {ModelManager::State::Ready, 0, 0, QStringLiteral("verified")});
        QVERIFY(button(QStringLiteral("Use")));
    }

    void bundledModelCardsOfferUseButNeverDownload() {
        ModelManager manager;
        KnownModel m;
        m.id = QStringLiteral("recall");
        m.name = QStringLiteral("Recall");
        m.fileName = QStringLiteral("recall.gguf");
        m.bundled = true;
        manager.setKnownModels({m});
        manager.show();
        auto visible = [&](const QString& text) {
            for (QPushButton* b : manager.findChildren<QPushButton*>())
                if (b->text() == text && b->isVisible())
                    return true;
            return false;
        };
        auto shows = [&](const QString& text) {
            for (QLabel* l : manager.findChildren<QLabel*>())
                if (l->text() == text)
                    return true;
            return false;
        };
        QVERIFY(!visible(QStringLiteral("Download")));  // missing from the installation: nothing to download
        QVERIFY(shows(QStringLiteral("Missing from this installation: reinstall RoundChat.")));
        manager.setStatus(m.id, {ModelManager::State::Ready, 0, 0, {}});
        QVERIFY(visible(QStringLiteral("Use")));
        QVERIFY(!visible(QStringLiteral("Download")));
        QVERIFY(shows(QStringLiteral("Installed with RoundChat.")));
    }

    void screenshots() {
        MessageListModel messages;
        ConversationListModel conversations;
        conversations.setConversations(sampleConversations());
        MainWindow window(messages, conversations);
        window.resize(1280, 800);
        window.setModelStatus(QStringLiteral("TinyLlama 1.1B Chat · CPU · 22 layers · 2048 context"));
        window.sidebar()->selectConversation(1);
        messages.setMessages(sampleChat());
        messages.beginStreaming(99, 3);
        messages.appendToStreaming(99, QStringLiteral("In Rust, call `reverse()` on a mutable slice"));
        window.chat()->setGenerating(true);
        window.chat()->setContextUsage(612, 2048);
        window.chat()->setTokensPerSecond(41.7);
        window.chat()->setBackendText(QStringLiteral("CPU"), {});
        window.chat()->banner()->showMessage(MessageBar::Level::Info,
                                             QStringLiteral("You are using the tiny bundled story model."),
                                             QStringLiteral("Download a chat model"));
        messages.setHighlightedRounds({1});
        window.show();
        QVERIFY(QTest::qWaitForWindowExposed(&window));
        QTest::qWait(80);  // the streamed piece is applied after the coalescing interval
        saveScreenshot(window, QStringLiteral("roundchat_main.png"));

        MemorySample gpu;
        gpu.gpu = true;
        gpu.deviceName = QStringLiteral("NVIDIA H100 80GB HBM3");
        gpu.totalBytes = 80ULL * 1000 * 1000 * 1000;
        for (int i = 0; i < 60; ++i) {
            gpu.weightBytes = 12ULL * 1000 * 1000 * 1000;
            gpu.residentKvBytes = quint64(4 + i / 10) * 1000 * 1000 * 1000;
            gpu.recalledKvBytes = quint64(2 + (i % 7)) * 1000 * 1000 * 1000;
            gpu.scratchBytes = 3ULL * 1000 * 1000 * 1000;
            gpu.freeBytes = gpu.totalBytes - gpu.weightBytes - gpu.residentKvBytes - gpu.recalledKvBytes -
                            gpu.scratchBytes;
            window.dashboard()->addSample(gpu);
        }
        for (int i = 1; i <= 8; ++i) {
            RecallBadge b = badge({1}, i);
            b.kvBytesFull = quint64(100 + 60 * i) * 1000 * 1000;
            b.kvBytesInVram = 120ULL * 1000 * 1000;
            window.dashboard()->addAnswer(b);
        }
        window.showPage(MainWindow::Page::Memory);
        QTest::qWait(50);
        saveScreenshot(window, QStringLiteral("roundchat_vram.png"));

        window.history()->setConversations(sampleConversations());
        window.history()->setResults(QStringLiteral("reverse"),
                                     {SearchHit{1, 2, QStringLiteral("Reversing lists"),
                                                QStringLiteral("Use slicing or the ") + kSnippetOpen +
                                                    QStringLiteral("reverse") + kSnippetClose +
                                                    QStringLiteral("() method")},
                                      SearchHit{1, 4, QStringLiteral("Reversing lists"),
                                                QStringLiteral("Use std::") + kSnippetOpen +
                                                    QStringLiteral("reverse") + kSnippetClose +
                                                    QStringLiteral(" from <algorithm>")}});
        window.showPage(MainWindow::Page::History);
        QTest::qWait(50);
        saveScreenshot(window, QStringLiteral("roundchat_history.png"));

        QString error;
        const QList<KnownModel> known = app::loadKnownModels(&error);
        QVERIFY2(!known.isEmpty(), qPrintable(error));
        window.models()->setKnownModels(known);
        window.models()->setCurrentModel(QStringLiteral("stories260K"), QStringLiteral("/usr/share/roundchat/models/"
                                                                                      "stories260K.gguf"),
                                         QStringLiteral("1 MB weights on CPU"));
        const auto firstDownload =
            std::find_if(known.begin(), known.end(), [](const KnownModel& k) { return !k.bundled; });
        QVERIFY(firstDownload != known.end());
        window.models()->setStatus(firstDownload->id, {ModelManager::State::Downloading, 200000000, 669000000, {}});
        window.models()->setStatus(known.last().id, {ModelManager::State::Ready, 0, 0,
                                                     QStringLiteral("Downloaded and verified (sha256 cdd6bad0…).")});
        window.showPage(MainWindow::Page::Models);
        QTest::qWait(50);
        saveScreenshot(window, QStringLiteral("roundchat_models.png"));

        applyTheme(Theme::Dark);
        window.showPage(MainWindow::Page::Chat);
        QTest::qWait(50);
        saveScreenshot(window, QStringLiteral("roundchat_dark.png"));
        applyTheme(Theme::System);
    }
};

QTEST_MAIN(WidgetsTest)
#include "widgets_test.moc"
