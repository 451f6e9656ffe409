// The whole app on the offscreen platform with the bundled stories260K model and a database in a temporary folder:
// load, send with the keyboard, stream, recall badge, regenerate (a branch), and a restart that finds everything
// committed in the database and restores the conversation's KV from its snapshots instead of prefilling it again.
#include "app_controller.h"
#include "worker_types.h"

#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/kv_store.h"
#include "ui/chat_view.h"
#include "ui/conversation_sidebar.h"
#include "ui/message_bar.h"
#include "ui/message_list_model.h"
#include "ui/settings_dialog.h"

#include <QApplication>
#include <QCheckBox>
#include <QDir>
#include <QDialog>
#include <QLabel>
#include <QListView>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>

namespace {

const QString kModel = QStringLiteral(ROUNDCHAT_SOURCE_DIR "/resources/models/stories260K.gguf");
constexpr int kTimeoutMs = 60000;

ui::MessageListModel& messagesOf(app::AppController& c) {
    return *qobject_cast<ui::MessageListModel*>(c.window().chat()->list()->model());
}

bool modelReady(app::AppController& c) {
    const auto* backend = c.window().chat()->findChild<QLabel*>(QStringLiteral("backendLabel"));
    return backend && !backend->text().isEmpty();
}

bool answered(ui::MessageListModel& m, int rows) {
    return m.rowCount() == rows && !m.isStreaming() && m.messageAt(rows - 1).id != 0;
}

}  // namespace

class ChatFlowTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { app::registerWorkerTypes(); }

    void sendRegenerateAndRestart() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        QSettings settings(dir.filePath(QStringLiteral("settings.ini")), QSettings::IniFormat);
        settings.setValue(QStringLiteral("generation/maxNewTokens"), 24);
        settings.setValue(QStringLiteral("generation/temperature"), 0.0);
        QString badgeBefore;
        {
            app::AppController controller(settings, dir.filePath(QStringLiteral("data")), kModel);
            controller.start();
            QTRY_VERIFY_WITH_TIMEOUT(modelReady(controller), kTimeoutMs);
            QVERIFY(controller.window().chat()->banner()->isVisible());  // the tiny-model banner

            ui::ChatInput* input = controller.window().chat()->input();
            QTest::keyClicks(input, QStringLiteral("Once upon a time"));
            QTest::keyClick(input, Qt::Key_Return);
            ui::MessageListModel& messages = messagesOf(controller);
            QTRY_VERIFY_WITH_TIMEOUT(answered(messages, 2), kTimeoutMs);
            QCOMPARE(messages.messageAt(0).text, QStringLiteral("Once upon a time"));
            QVERIFY(messages.messageAt(0).id != 0);
            QVERIFY(!messages.messageAt(1).text.isEmpty());
            QVERIFY(messages.messageAt(1).recall.valid);
            QCOMPARE(messages.messageAt(1).round, 1);

            controller.window().chat()->regenerateLast();
            QTRY_VERIFY_WITH_TIMEOUT(answered(messages, 2) && messages.messageAt(1).branchCount == 2, kTimeoutMs);
            QCOMPARE(messages.messageAt(1).branchIndex, 1);
            QVERIFY(messages.messageAt(1).recall.roundAttention);  // the default mode
            badgeBefore = messages.data(messages.index(1), ui::MessageListModel::BadgeTextRole).toString();
            QVERIFY(badgeBefore.startsWith(QStringLiteral("recalled rounds")));
        }  // the controller stops its workers; every write was committed when it was acknowledged

        auto db = storage::Database::open(dir.filePath(QStringLiteral("data/roundchat.sqlite3")).toStdString());
        QVERIFY(db.ok());
        storage::ChatStore store(*db);
        auto conversations = store.listConversations();
        QVERIFY(conversations.ok());
        QCOMPARE(conversations->size(), size_t(1));
        QCOMPARE(QString::fromStdString(conversations->front().title), QStringLiteral("Once upon a time"));
        auto path = store.activePath(conversations->front().id);
        QVERIFY(path.ok());
        QCOMPARE(path->size(), size_t(2));
        QVERIFY(!store.recallLog(path->back().id)->empty());
        // Both answers' KV reached the database through the snapshot writer.
        storage::KvStore kv(*db);
        auto rounds = kv.rounds(conversations->front().id);
        QVERIFY(rounds.ok());
        QCOMPARE(rounds->size(), size_t(2));
        QVERIFY(*kv.totalKvBytes() > 0);

        // A restart shows the last conversation again.
        app::AppController again(settings, dir.filePath(QStringLiteral("data")), kModel);
        QSignalSpy restored(&again, &app::AppController::conversationRestored);
        again.start();
        QTRY_COMPARE_WITH_TIMEOUT(messagesOf(again).rowCount(), 2, kTimeoutMs);
        QCOMPARE(messagesOf(again).messageAt(1).branchCount, 2);
        // The reopened answer shows the badge it had, from the recall log (not "full KV").
        QCOMPARE(messagesOf(again).data(messagesOf(again).index(1), ui::MessageListModel::BadgeTextRole).toString(),
                 badgeBefore);
        QCOMPARE(again.window().sidebar()->currentId(), conversations->front().id);

        // Reopening the conversation imported round 1 from its snapshot: only the system prompt (BOS) was computed.
        QTRY_COMPARE_WITH_TIMEOUT(restored.count(), 1, kTimeoutMs);
        const auto done = restored.front().front().value<app::RestoreDone>();
        QCOMPARE(done.conversationId, conversations->front().id);
        QCOMPARE(done.restoredRounds, 1);
        QCOMPARE(done.recomputedRounds, 0);
        QVERIFY(done.restoredTokens > 0);
        QVERIFY2(done.prefilledTokens <= 1, qPrintable(QString::number(done.prefilledTokens)));
        QVERIFY(again.window().statusBar()->currentMessage().startsWith(QStringLiteral("Restored 1 rounds")));
        // The context meter shows the reopened conversation's tokens.
        auto* meter = again.window().chat()->findChild<QProgressBar*>(QStringLiteral("contextMeter"));
        QVERIFY(meter);
        QCOMPARE(meter->value(), done.restoredTokens + done.prefilledTokens);
        // The restored session continues the conversation.
        ui::ChatInput* input = again.window().chat()->input();
        QTest::keyClicks(input, QStringLiteral("The end"));
        QTest::keyClick(input, Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messagesOf(again), 4), kTimeoutMs);
    }

    // Each conversation runs with its own settings: switching applies them, a new chat gets the app-wide defaults,
    // and the conversation's settings dialog changes them for that conversation only (and in the database).
    void perConversationSettingsFollowTheSelection() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath(QStringLiteral("settings.ini")), QSettings::IniFormat);
        settings.setValue(QStringLiteral("generation/maxNewTokens"), 24);
        settings.setValue(QStringLiteral("generation/temperature"), 0.0);
        const QString dataDir = dir.filePath(QStringLiteral("data"));
        QVERIFY(QDir().mkpath(dataDir));
        const std::string dbPath = (dataDir + QStringLiteral("/roundchat.sqlite3")).toStdString();
        int64_t fullKv = 0, plain = 0;
        {
            auto db = storage::Database::open(dbPath);
            QVERIFY(db.ok());
            storage::ChatStore store(*db);
            storage::Conversation c;
            c.title = "full KV, short answers";
            c.systemPrompt = "A story about a cat.";
            c.settingsJson = R"({"roundAttention": false, "maxNewTokens": 6})";
            fullKv = *store.createConversation(c);
            c.title = "defaults";
            c.systemPrompt = "";
            c.settingsJson = "{}";
            plain = *store.createConversation(c);
        }
        app::AppController controller(settings, dataDir, kModel);
        controller.start();
        QTRY_VERIFY_WITH_TIMEOUT(modelReady(controller), kTimeoutMs);
        QCOMPARE(controller.activeSettings().maxNewTokens, 24);  // no conversation open yet: the defaults

        ui::ConversationSidebar* side = controller.window().sidebar();
        QTRY_COMPARE_WITH_TIMEOUT(side->list()->model()->rowCount(), 2, kTimeoutMs);
        Q_EMIT side->conversationActivated(fullKv);
        QCOMPARE(controller.activeSettings().maxNewTokens, 6);
        QCOMPARE(controller.activeSettings().roundAttention, false);
        QCOMPARE(controller.activeSettings().systemPrompt, QStringLiteral("A story about a cat."));
        Q_EMIT side->conversationActivated(plain);
        QCOMPARE(controller.activeSettings().maxNewTokens, 24);
        QVERIFY(controller.activeSettings().roundAttention);
        Q_EMIT side->conversationActivated(fullKv);

        // The engine answers in this conversation's mode.
        ui::ChatInput* input = controller.window().chat()->input();
        QTest::keyClicks(input, QStringLiteral("Once upon a time"));
        QTest::keyClick(input, Qt::Key_Return);
        ui::MessageListModel& messages = messagesOf(controller);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messages, 2), kTimeoutMs);
        QVERIFY(messages.messageAt(1).recall.valid);
        QVERIFY(!messages.messageAt(1).recall.roundAttention);

        // Its settings dialog (the button under the message box) turns Round Attention on for it.
        QTimer::singleShot(0, this, [] {
            auto* dialog = qobject_cast<ui::SettingsDialog*>(QApplication::activeModalWidget());
            QVERIFY(dialog && dialog->scope() == ui::SettingsDialog::Scope::Conversation);
            dialog->findChild<QCheckBox*>(QStringLiteral("roundAttention"))->setChecked(true);
            dialog->accept();
        });
        controller.window().chat()->findChild<QPushButton*>(QStringLiteral("conversationSettingsButton"))->click();
        QVERIFY(controller.activeSettings().roundAttention);
        QCOMPARE(controller.activeSettings().maxNewTokens, 6);
        QTest::keyClicks(input, QStringLiteral("The cat"));
        QTest::keyClick(input, Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messages, 4), kTimeoutMs);
        QVERIFY(messages.messageAt(3).recall.roundAttention);

        // Stored in the conversation's row; the other conversation and the defaults are unchanged.
        auto db = storage::Database::open(dbPath);
        QVERIFY(db.ok());
        storage::ChatStore store(*db);
        QTRY_VERIFY_WITH_TIMEOUT(store.conversation(fullKv)->settingsJson.find(R"("roundAttention":true)") !=
                                     std::string::npos,
                                 kTimeoutMs);
        QCOMPARE(QString::fromStdString(store.conversation(plain)->settingsJson), QStringLiteral("{}"));
        Q_EMIT side->newRequested();
        QCOMPARE(controller.activeSettings().maxNewTokens, 24);
    }

    // Switching to another conversation right after sending (the answer cancelled before or while it runs) shows
    // the new conversation, not the old one's rows, and the app accepts the next message.
    void switchingConversationMidAnswerShowsTheNewOne() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath(QStringLiteral("settings.ini")), QSettings::IniFormat);
        settings.setValue(QStringLiteral("generation/maxNewTokens"), 200);
        const QString dataDir = dir.filePath(QStringLiteral("data"));
        QVERIFY(QDir().mkpath(dataDir));
        int64_t first = 0, second = 0;
        {
            auto db = storage::Database::open((dataDir + QStringLiteral("/roundchat.sqlite3")).toStdString());
            QVERIFY(db.ok());
            storage::ChatStore store(*db);
            for (int64_t* id : {&first, &second}) {
                storage::Conversation c;
                c.title = id == &first ? "first" : "second";
                *id = *store.createConversation(c);
                storage::Message m;
                m.conversationId = *id;
                m.text = c.title + " question";
                m.parentId = *store.appendMessage(m);
                m.role = storage::Role::Assistant;
                m.text = c.title + " answer";
                QVERIFY(store.appendMessage(m).ok());
            }
        }
        app::AppController controller(settings, dataDir, kModel);
        controller.start();
        QTRY_VERIFY_WITH_TIMEOUT(modelReady(controller), kTimeoutMs);
        ui::ConversationSidebar* side = controller.window().sidebar();
        QTRY_COMPARE_WITH_TIMEOUT(side->list()->model()->rowCount(), 2, kTimeoutMs);
        ui::MessageListModel& messages = messagesOf(controller);
        Q_EMIT side->conversationActivated(first);
        QTRY_COMPARE_WITH_TIMEOUT(messages.rowCount(), 2, kTimeoutMs);
        QCOMPARE(messages.messageAt(0).text, QStringLiteral("first question"));

        ui::ChatInput* input = controller.window().chat()->input();
        QTest::keyClicks(input, QStringLiteral("Once upon a time"));
        QTest::keyClick(input, Qt::Key_Return);
        Q_EMIT side->conversationActivated(second);
        QTRY_VERIFY_WITH_TIMEOUT(!controller.window().chat()->isGenerating(), kTimeoutMs);
        QTRY_VERIFY_WITH_TIMEOUT(
            messages.rowCount() == 2 && messages.messageAt(0).text == QStringLiteral("second question"), kTimeoutMs);
        QVERIFY(!messages.isStreaming());

        QTest::keyClicks(input, QStringLiteral("The end"));
        QTest::keyClick(input, Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messages, 4), kTimeoutMs);
        QCOMPARE(messages.messageAt(2).text, QStringLiteral("The end"));
        QCOMPARE(messages.messageAt(0).text, QStringLiteral("second question"));
    }

    void badModelFileGivesActionableError() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath(QStringLiteral("settings.ini")), QSettings::IniFormat);
        const QString bad = dir.filePath(QStringLiteral("broken.gguf"));
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write("GGUF but not really a model");
        f.close();
        app::AppController controller(settings, dir.filePath(QStringLiteral("data")), bad);
        controller.start();
        ui::MessageBar* bar = controller.window().chat()->errorBar();
        QTRY_VERIFY_WITH_TIMEOUT(bar->isVisible(), kTimeoutMs);
        QVERIFY2(bar->text().contains(QStringLiteral("broken.gguf")), qPrintable(bar->text()));
        QCOMPARE(bar->actionId(), QStringLiteral("openModel"));
    }

    // Inter-layer KV sharing turned on for a model that was never calibrated: the answer comes (nothing is shared)
    // and the chat says why sharing has no effect.
    void kvSharingWithoutCalibrationIsExplained() {
        QTemporaryDir dir;
        QSettings settings(dir.filePath(QStringLiteral("settings.ini")), QSettings::IniFormat);
        settings.setValue(QStringLiteral("engine/backend"), int(ui::BackendChoice::Cpu));
        settings.setValue(QStringLiteral("generation/maxNewTokens"), 8);
        settings.setValue(QStringLiteral("rounds/kvSharing"), true);
        app::AppController controller(settings, dir.filePath(QStringLiteral("data")), kModel);
        controller.start();
        QTRY_VERIFY_WITH_TIMEOUT(modelReady(controller), kTimeoutMs);
        ui::ChatInput* input = controller.window().chat()->input();
        QTest::keyClicks(input, QStringLiteral("Once upon a time"));
        QTest::keyClick(input, Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messagesOf(controller), 2), kTimeoutMs);
        ui::MessageBar* bar = controller.window().chat()->errorBar();
        QTRY_VERIFY_WITH_TIMEOUT(bar->text().contains(QStringLiteral("roundchat-cli calibrate")), kTimeoutMs);
        QVERIFY(bar->isVisible());
    }
};

QTEST_MAIN(ChatFlowTest)
#include "chat_flow_app_test.moc"
