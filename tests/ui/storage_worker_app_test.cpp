// The storage worker on the test thread (its slots called directly, its replies caught with QSignalSpy) over a database
// in a temporary folder: recall badges of reopened answers, the stored KV per conversation, the cap on stored KV
// (oldest snapshots evicted first, text kept), and per-conversation settings.
#include "app_settings.h"
#include "storage_worker.h"
#include "worker_types.h"

#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/kv_store.h"

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

namespace {

constexpr int kWaitMs = 10000;

ui::MessageData message(ui::MessageRole role, const QString& text, int round, qint64 parentId = 0) {
    ui::MessageData m;
    m.role = role;
    m.text = text;
    m.round = round;
    m.parentId = parentId;
    return m;
}

ui::RecallBadge badge(bool roundAttention, QList<int> rounds, int total, quint64 inVram, quint64 full) {
    ui::RecallBadge b;
    b.valid = true;
    b.roundAttention = roundAttention;
    b.recalledRounds = std::move(rounds);
    b.roundsTotal = total;
    b.kvBytesInVram = inVram;
    b.kvBytesFull = full;
    return b;
}

// A worker with an open database and helpers that wait for its replies.
class Fixture {
public:
    Fixture() : m_created(&worker, &app::StorageWorker::conversationChanged),
                m_saved(&worker, &app::StorageWorker::messageSaved),
                m_failed(&worker, &app::StorageWorker::failed) {
        path = dir.filePath(QStringLiteral("chat.sqlite3"));
        worker.open(1, path);
    }

    qint64 createConversation(const QString& title, const QString& settingsJson = QStringLiteral("{}")) {
        m_created.clear();
        worker.createConversation(2, title, QStringLiteral("Be brief."), settingsJson);
        return m_created.isEmpty() ? 0 : m_created.back().at(1).value<ui::ConversationInfo>().id;
    }
    qint64 append(qint64 conversationId, const ui::MessageData& m, const app::RecallDetails& details = {}) {
        m_saved.clear();
        worker.appendMessage(3, conversationId, m, 0, details);
        return m_saved.isEmpty() ? 0 : m_saved.back().front().value<app::MessageSaved>().message.id;
    }
    // The question and answer of round n; returns the answer's id.
    qint64 addRound(qint64 conversationId, int n, qint64 parentId, const ui::RecallBadge& recall = {}) {
        const qint64 user =
            append(conversationId, message(ui::MessageRole::User, QStringLiteral("question %1").arg(n), n, parentId));
        ui::MessageData answer = message(ui::MessageRole::Assistant, QStringLiteral("answer %1").arg(n), n, user);
        answer.recall = recall;
        return append(conversationId, answer);
    }
    QList<ui::MessageData> load(qint64 conversationId) {
        QSignalSpy loaded(&worker, &app::StorageWorker::messagesLoaded);
        worker.loadMessages(4, conversationId);
        return loaded.isEmpty() ? QList<ui::MessageData>{}
                                : loaded.back().front().value<app::ConversationMessages>().messages;
    }
    int failures() const { return int(m_failed.size()); }

    QTemporaryDir dir;
    QString path;
    app::StorageWorker worker;

private:
    QSignalSpy m_created;
    QSignalSpy m_saved;
    QSignalSpy m_failed;
};

// Writes a round of `bytes` snapshot bytes for the conversation's round `roundIndex` (from 0) over a second
// connection, as the snapshot writer does.
void writeSnapshot(const QString& path, qint64 conversationId, int roundIndex, qint64 userId, qint64 answerId,
                   size_t bytes) {
    auto db = storage::Database::open(path.toStdString());
    QVERIFY(db.ok());
    storage::KvStore kv(*db);
    storage::RoundRecord r;
    r.conversationId = conversationId;
    r.roundIndex = roundIndex;
    r.userMessageId = userId;
    r.assistantMessageId = answerId;
    r.tokenCount = 5;
    storage::KvSnapshotRecord snap;
    snap.round = roundIndex;
    snap.layerCount = 2;
    snap.tokenCount = 5;
    snap.modelFingerprint = "model";
    snap.dtype = "f16";
    snap.templateHash = "template";
    snap.bytes.assign(bytes, uint8_t(roundIndex));
    QVERIFY(kv.writeRound(r, std::vector{snap}).ok());
}

}  // namespace

class StorageWorkerTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { app::registerWorkerTypes(); }

    // Round 1 under Round Attention recalls nothing and holds as much KV as full KV would; reopened, its badge must
    // still say Round Attention (the log records the mode), and a full-KV answer must stay full KV.
    void reopenedAnswersKeepTheirRecallBadge() {
        Fixture f;
        const qint64 id = f.createConversation(QStringLiteral("badges"));
        QVERIFY(id != 0);
        const ui::RecallBadge first = badge(true, {}, 0, 4000, 4000);
        const ui::RecallBadge second = badge(true, {1}, 1, 6000, 8000);
        const ui::RecallBadge third = badge(false, {1, 2}, 2, 12000, 12000);
        qint64 parent = f.addRound(id, 1, 0, first);
        parent = f.addRound(id, 2, parent, second);
        f.addRound(id, 3, parent, third);
        QCOMPARE(f.failures(), 0);

        const QList<ui::MessageData> loaded = f.load(id);
        QCOMPARE(loaded.size(), 6);
        const QList<ui::RecallBadge> expected{first, second, third};
        for (int k = 0; k < 3; ++k) {
            const ui::RecallBadge& got = loaded[2 * k + 1].recall;
            QVERIFY(got.valid);
            QCOMPARE(got.roundAttention, expected[k].roundAttention);
            QCOMPARE(got.recalledRounds, expected[k].recalledRounds);
            QCOMPARE(got.roundsTotal, expected[k].roundsTotal);
            QCOMPARE(ui::badgeText(got), ui::badgeText(expected[k]));
        }
        QVERIFY(ui::badgeText(loaded[1].recall).startsWith(QStringLiteral("recalled rounds – of 0")));
        QVERIFY(ui::badgeText(loaded[5].recall).startsWith(QStringLiteral("full KV")));

        // A log entry from before the mode was recorded (schema v2): the mode is inferred from the bytes.
        const qint64 legacy = f.addRound(id, 4, loaded[5].id);
        {
            auto db = storage::Database::open(f.path.toStdString());
            QVERIFY(db.ok());
            storage::RecallLogEntry e;
            e.messageId = legacy;
            e.rounds = {{2, 0.7}};
            e.vramKvBytes = 5000;
            e.fullKvBytes = 9000;
            QVERIFY(storage::ChatStore(*db).addRecallLog(e).ok());
        }
        const ui::RecallBadge old = f.load(id).at(7).recall;
        QVERIFY(old.valid && old.roundAttention);
        QCOMPARE(old.recalledRounds, QList<int>{2});
        QCOMPARE(old.roundsTotal, 3);
    }

    // The recall log keeps an answer's round scores and copy costs, not only what its badge shows.
    void recallLogKeepsScoresAndCopyCosts() {
        Fixture f;
        const qint64 id = f.createConversation(QStringLiteral("costs"));
        const qint64 user = f.append(id, message(ui::MessageRole::User, QStringLiteral("question 1"), 1));
        ui::MessageData answer = message(ui::MessageRole::Assistant, QStringLiteral("answer 1"), 1, user);
        answer.recall = badge(true, {1}, 1, 6000, 8000);
        const qint64 saved = f.append(id, answer, app::RecallDetails{{0.75}, 5000, 1.5, 2.5});
        QVERIFY(saved != 0);
        auto db = storage::Database::open(f.path.toStdString());
        QVERIFY(db.ok());
        auto log = storage::ChatStore(*db).recallLog(saved);
        QVERIFY(log.ok() && log->size() == 1);
        const storage::RecallLogEntry& e = log->front();
        QCOMPARE(e.rounds.size(), size_t(1));
        QCOMPARE(e.rounds[0].score, 0.75);
        QCOMPARE(e.copiedBytes, int64_t(5000));
        QCOMPARE(e.selectMs, 1.5);
        QCOMPARE(e.copyMs, 2.5);
    }

    // Every conversationChanged reply (after a message, a rename...) carries the stored KV, and a snapshot written
    // by the snapshot writer is reported per conversation.
    void conversationRepliesCarryStoredKv() {
        Fixture f;
        const qint64 id = f.createConversation(QStringLiteral("kv"));
        const qint64 answer = f.addRound(id, 1, 0);
        const QList<ui::MessageData> path = f.load(id);
        QCOMPARE(path.size(), 2);
        writeSnapshot(f.path, id, 0, path[0].id, answer, 3000);

        QSignalSpy changed(&f.worker, &app::StorageWorker::conversationChanged);
        f.worker.renameConversation(5, id, QStringLiteral("renamed"));
        QCOMPARE(changed.size(), 1);
        QCOMPARE(changed.front().at(1).value<ui::ConversationInfo>().kvBytes, quint64(3000));

        // Round 2 through the snapshot writer (its own thread): the usage report follows its commit.
        const qint64 second = f.addRound(id, 2, answer);
        QVERIFY(second != 0);
        QSignalSpy usage(&f.worker, &app::StorageWorker::kvUsage);
        app::RoundKv kv;
        kv.round = 2;
        kv.firstPosition = 5;
        kv.tokenCount = 4;
        kv.layerCount = 2;
        kv.modelFingerprint = QStringLiteral("model");
        kv.templateHash = QStringLiteral("template");
        kv.dtype = QStringLiteral("f16");
        kv.bytes = std::make_shared<std::vector<uint8_t>>(1500, uint8_t('k'));
        f.worker.writeRoundKv(6, id, kv);
        QVERIFY(usage.wait(kWaitMs));
        const auto report = usage.back().front().value<app::KvUsage>();
        QCOMPARE(report.bytesByConversation.value(id), quint64(4500));
        QCOMPARE(report.totalBytes, quint64(4500));
        QCOMPARE(f.failures(), 0);
    }

    // A cap below the stored total evicts the oldest snapshots first, across conversations; text is never evicted.
    void kvCapEvictsOldestSnapshotsAndKeepsText() {
        Fixture f;
        const qint64 a = f.createConversation(QStringLiteral("older"));
        const qint64 b = f.createConversation(QStringLiteral("newer"));
        const qint64 a1 = f.addRound(a, 1, 0);
        const qint64 b1 = f.addRound(b, 1, 0);
        const qint64 a2 = f.addRound(a, 2, a1);
        const QList<ui::MessageData> pathA = f.load(a);
        const QList<ui::MessageData> pathB = f.load(b);
        writeSnapshot(f.path, a, 0, pathA[0].id, a1, 1000);  // the oldest
        writeSnapshot(f.path, b, 0, pathB[0].id, b1, 1000);
        writeSnapshot(f.path, a, 1, pathA[2].id, a2, 1000);

        QSignalSpy usage(&f.worker, &app::StorageWorker::kvUsage);
        f.worker.setKvCap(7, 2500);
        QCOMPARE(usage.size(), 1);
        auto report = usage.back().front().value<app::KvUsage>();
        QCOMPARE(report.requestId, quint64(7));
        QCOMPARE(report.capBytes, quint64(2500));
        QCOMPARE(report.evictedSnapshots, 1);
        QCOMPARE(report.evictedBytes, quint64(1000));
        QCOMPARE(report.totalBytes, quint64(2000));
        QCOMPARE(report.bytesByConversation.value(a), quint64(1000));
        QCOMPARE(report.bytesByConversation.value(b), quint64(1000));

        auto db = storage::Database::open(f.path.toStdString());
        QVERIFY(db.ok());
        storage::KvStore kv(*db);
        auto rounds = kv.rounds(a);
        QVERIFY(rounds.ok());
        QCOMPARE(rounds->size(), size_t(2));
        QVERIFY(kv.snapshots(rounds->at(0).id)->empty());    // round 1 of the older conversation went first
        QCOMPARE(kv.snapshots(rounds->at(1).id)->size(), size_t(1));
        QCOMPARE(*kv.kvBudget(), int64_t(2500));
        QCOMPARE(f.load(a).size(), 4);  // every message is still there
        QCOMPARE(f.load(a).at(2).text, QStringLiteral("question 2"));

        // Removing the cap evicts nothing more.
        f.worker.setKvCap(8, 0);
        report = usage.back().front().value<app::KvUsage>();
        QCOMPARE(report.evictedSnapshots, 0);
        QCOMPARE(report.capBytes, quint64(0));
        QCOMPARE(report.totalBytes, quint64(2000));
        QCOMPARE(f.failures(), 0);
    }

    void conversationSettingsAreStoredPerConversation() {
        Fixture f;
        ui::SettingsValues defaults;
        ui::SettingsValues own = defaults;
        own.temperature = 0.2;
        own.roundAttention = false;
        own.keepLatestRounds = 3;
        const qint64 id = f.createConversation(QStringLiteral("tuned"), app::conversationSettingsJson(own));
        const qint64 other = f.createConversation(QStringLiteral("plain"));

        QSignalSpy listed(&f.worker, &app::StorageWorker::conversationsListed);
        f.worker.listConversations(9);
        QCOMPARE(listed.size(), 1);
        ui::ConversationInfo tuned, plain;
        for (const ui::ConversationInfo& c : listed.front().at(1).value<QList<ui::ConversationInfo>>())
            (c.id == id ? tuned : plain) = c;
        QCOMPARE(plain.id, other);
        ui::SettingsValues got = app::conversationSettings(defaults, tuned);
        QCOMPARE(got.temperature, 0.2);
        QCOMPARE(got.roundAttention, false);
        QCOMPARE(got.keepLatestRounds, 3);
        QCOMPARE(got.systemPrompt, QStringLiteral("Be brief."));
        QCOMPARE(app::conversationSettings(defaults, plain).roundAttention, defaults.roundAttention);

        QSignalSpy changed(&f.worker, &app::StorageWorker::conversationChanged);
        own.watershedAuto = false;
        own.watershedLayer = 5;
        f.worker.setConversationSettings(10, id, QStringLiteral("Answer in French."),
                                         app::conversationSettingsJson(own));
        QCOMPARE(changed.size(), 1);
        got = app::conversationSettings(defaults, changed.front().at(1).value<ui::ConversationInfo>());
        QCOMPARE(got.systemPrompt, QStringLiteral("Answer in French."));
        QCOMPARE(got.watershedAuto, false);
        QCOMPARE(got.watershedLayer, 5);
        QCOMPARE(f.failures(), 0);
    }
};

QTEST_MAIN(StorageWorkerTest)
#include "storage_worker_app_test.moc"
