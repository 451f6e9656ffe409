// The item models of the chat (messages with streaming coalescing, conversations with pin order and undoable
// delete) and the small formatting helpers.
#include "ui/conversation_list_model.h"
#include "ui/history_browser.h"
#include "ui/message_delegate.h"
#include "ui/message_list_model.h"
#include "ui/types.h"
#include "widget_test_util.h"

#include <QAbstractItemModelTester>
#include <QSignalSpy>
#include <QTest>

using namespace ui;

namespace {

using ui::test::message;

ConversationInfo conversation(qint64 id, const QString& title, bool pinned, int minutesAgo) {
    ConversationInfo c;
    c.id = id;
    c.title = title;
    c.pinned = pinned;
    c.updated = QDateTime::currentDateTimeUtc().addSecs(-60 * minutesAgo);
    return c;
}

QList<qint64> ids(const ConversationListModel& model) {
    QList<qint64> out;
    for (int r = 0; r < model.rowCount(); ++r)
        out << model.at(r).id;
    return out;
}

}  // namespace

class ModelsTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void badgeTextMatchesTheIssueExample() {
        RecallBadge b;
        b.valid = true;
        b.roundAttention = true;
        b.recalledRounds = {2, 5, 9};
        b.roundsTotal = 14;
        b.kvBytesInVram = 310 * 1000 * 1000;
        b.kvBytesFull = 738 * 1000 * 1000;
        QCOMPARE(badgeText(b), QStringLiteral("recalled rounds 2, 5, 9 of 14 · KV in VRAM 310 MB · saved 58%"));
        b.valid = false;
        QVERIFY(badgeText(b).isEmpty());
        b.valid = true;
        b.roundAttention = false;
        QVERIFY(!badgeText(b).contains(QStringLiteral("saved")));
    }

    void formatBytesUsesDecimalUnits() {
        QCOMPARE(formatBytes(512), QStringLiteral("512 B"));
        QCOMPARE(formatBytes(310 * 1000 * 1000), QStringLiteral("310 MB"));
        QCOMPARE(formatBytes(1500ULL * 1000 * 1000), QStringLiteral("1.5 GB"));
    }

    void codeBlocksAreExtracted() {
        const QString md = QStringLiteral("Try:\n```cpp\nint x = 1;\n```\nthen\n```\nls -l\n```\n");
        QCOMPARE(extractCodeBlocks(md), QStringLiteral("int x = 1;\n\nls -l"));
        QVERIFY(extractCodeBlocks(QStringLiteral("no code")).isEmpty());
    }

    void snippetMarkersBecomeBoldAndTextIsEscaped() {
        const QString s = QStringLiteral("a <b> ") + kSnippetOpen + QStringLiteral("cat") + kSnippetClose;
        QCOMPARE(HistoryBrowser::snippetHtml(s), QStringLiteral("a &lt;b&gt; <b>cat</b>"));
    }

    void messagesStreamCoalesced() {
        MessageListModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setMessages({message(1, MessageRole::User, QStringLiteral("hi"), 1)});
        QSignalSpy changed(&model, &QAbstractItemModel::dataChanged);
        model.beginStreaming(7, 1);
        QCOMPARE(model.rowCount(), 2);
        QVERIFY(model.isStreaming());
        for (const char* piece : {"Hel", "lo", " there"})
            model.appendToStreaming(7, QString::fromLatin1(piece));
        model.appendToStreaming(6, QStringLiteral("stale"));  // another request: ignored
        QCOMPARE(changed.size(), 0);                            // nothing until the coalescing interval passes
        QTRY_COMPARE(changed.size(), 1);
        QCOMPARE(model.index(1).data().toString(), QStringLiteral("Hello there"));
        QVERIFY(model.index(1).data(MessageListModel::StreamingRole).toBool());

        MessageData final = message(0, MessageRole::Assistant, QStringLiteral("Hello there!"), 1);
        final.recall.valid = true;
        final.recall.recalledRounds = {1};
        model.finishStreaming(7, final);
        QVERIFY(!model.isStreaming());
        QCOMPARE(model.index(1).data().toString(), QStringLiteral("Hello there!"));
        QVERIFY(!model.index(1).data(MessageListModel::BadgeTextRole).toString().isEmpty());
        QVERIFY(!model.index(5).data().isValid());  // out of range rows give nothing
    }

    void abortKeepsPartialTextOrDropsEmptyRow() {
        MessageListModel model;
        model.beginStreaming(1, 1);
        model.abortStreaming(1);
        QCOMPARE(model.rowCount(), 0);
        model.beginStreaming(2, 1);
        model.appendToStreaming(2, QStringLiteral("partial"));
        model.abortStreaming(2);  // flushes what was pending
        QCOMPARE(model.rowCount(), 1);
        QCOMPARE(model.index(0).data().toString(), QStringLiteral("partial"));
        QVERIFY(!model.index(0).data(MessageListModel::StreamingRole).toBool());
    }

    void highlightMarksRecalledRounds() {
        MessageListModel model;
        model.setMessages({message(1, MessageRole::User, QStringLiteral("a"), 1),
                           message(2, MessageRole::Assistant, QStringLiteral("b"), 1),
                           message(3, MessageRole::User, QStringLiteral("c"), 2),
                           message(4, MessageRole::Assistant, QStringLiteral("d"), 2)});
        model.setHighlightedRounds({2});
        QVERIFY(!model.index(0).data(MessageListModel::HighlightedRole).toBool());
        QVERIFY(model.index(2).data(MessageListModel::HighlightedRole).toBool());
        QVERIFY(model.index(3).data(MessageListModel::HighlightedRole).toBool());
        QCOMPARE(model.rowOfId(3), 2);
        model.truncateFrom(2);
        QCOMPARE(model.rowCount(), 2);
    }

    void conversationsArePinnedFirstThenRecent() {
        ConversationListModel model;
        QAbstractItemModelTester tester(&model, QAbstractItemModelTester::FailureReportingMode::QtTest);
        model.setConversations({conversation(1, QStringLiteral("old"), false, 60),
                                conversation(2, QStringLiteral("pinned"), true, 600),
                                conversation(3, QStringLiteral("new"), false, 1)});
        QCOMPARE(ids(model), (QList<qint64>{2, 3, 1}));
        model.upsert(conversation(1, QStringLiteral("old, now updated"), false, 0));  // moves below the pinned one
        QCOMPARE(ids(model), (QList<qint64>{2, 1, 3}));
        model.upsert(conversation(4, QStringLiteral("brand new"), false, 0));
        QCOMPARE(model.rowCount(), 4);
        QCOMPARE(model.at(1).id, qint64(4));
    }

    void deleteCanBeUndone() {
        ConversationListModel model;
        model.setConversations({conversation(1, QStringLiteral("a"), false, 5),
                                conversation(2, QStringLiteral("b"), false, 1)});
        QSignalSpy removed(&model, &ConversationListModel::removed);
        QSignalSpy restored(&model, &ConversationListModel::restored);
        model.removeWithUndo(1);
        QCOMPARE(removed.size(), 1);
        QCOMPARE(model.rowCount(), 1);
        QVERIFY(model.canUndo());
        model.undoRemove();
        QCOMPARE(restored.size(), 1);
        QCOMPARE(restored.first().first().toLongLong(), qint64(1));
        QCOMPARE(ids(model), (QList<qint64>{2, 1}));

        model.setUndoWindowMs(20);
        model.removeWithUndo(2);
        QTRY_VERIFY(!model.canUndo());  // the window closes by itself
        model.undoRemove();
        QCOMPARE(model.rowCount(), 1);
    }
};

QTEST_MAIN(ModelsTest)
#include "models_test.moc"
