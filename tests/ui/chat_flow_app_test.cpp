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

#include <QLabel>
#include <QListView>
#include <QSettings>
#include <QSignalSpy>
#include <QStatusBar>
#include <QTemporaryDir>
#include <QTest>

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
        // The restored session continues the conversation.
        ui::ChatInput* input = again.window().chat()->input();
        QTest::keyClicks(input, QStringLiteral("The end"));
        QTest::keyClick(input, Qt::Key_Return);
        QTRY_VERIFY_WITH_TIMEOUT(answered(messagesOf(again), 4), kTimeoutMs);
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
};

QTEST_MAIN(ChatFlowTest)
#include "chat_flow_app_test.moc"
