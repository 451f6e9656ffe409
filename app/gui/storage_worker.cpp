#include "storage_worker.h"

#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/export.h"
#include "storage/kv_store.h"
#include "storage/snapshot_writer.h"

#include <QFile>

namespace app {

namespace {

constexpr int64_t kTrashKeepMs = 7LL * 24 * 3600 * 1000;  // deleted conversations stay in the trash a week
constexpr size_t kSavedIdsKept = 256;

QString qs(const std::string& s) { return QString::fromStdString(s); }

ui::ConversationInfo toInfo(const storage::Conversation& c) {
    ui::ConversationInfo info;
    info.id = c.id;
    info.title = qs(c.title);
    info.pinned = c.pinned;
    info.updated = QDateTime::fromMSecsSinceEpoch(c.updatedAtMs, Qt::UTC);
    info.systemPrompt = qs(c.systemPrompt);
    info.settingsJson = qs(c.settingsJson);
    return info;
}

ui::MessageRole toRole(storage::Role r) { return ui::MessageRole(int(r)); }

// The active branch as rounds: per user message, its id and the answer that follows it (0 when none).
struct PathRound {
    const storage::Message* user = nullptr;
    const storage::Message* answer = nullptr;
};

std::vector<PathRound> roundsOf(const std::vector<storage::Message>& path) {
    std::vector<PathRound> rounds;
    for (const storage::Message& m : path) {
        if (m.role == storage::Role::User)
            rounds.push_back({&m, nullptr});
        else if (m.role == storage::Role::Assistant && !rounds.empty() && !rounds.back().answer)
            rounds.back().answer = &m;
    }
    return rounds;
}

}  // namespace

StorageWorker::StorageWorker() = default;
StorageWorker::~StorageWorker() = default;

void StorageWorker::fail(quint64 requestId, int code, const std::string& detail) {
    Q_EMIT failed(ErrorInfo{requestId, code, qs(detail)});
}

bool StorageWorker::ready(quint64 requestId) {
    if (m_chats)
        return true;
    fail(requestId, int(storage::ErrorCode::DatabaseError), "the database is not open");
    return false;
}

void StorageWorker::open(quint64 requestId, const QString& path) {
    auto db = storage::Database::open(path.toStdString());
    if (!db) {
        fail(requestId, int(db.error().code), db.error().detail);
        return;
    }
    m_db = std::make_unique<storage::Database>(std::move(*db));
    m_chats = std::make_unique<storage::ChatStore>(*m_db);
    m_kv = std::make_unique<storage::KvStore>(*m_db);
    storage::SnapshotWriterOptions writerOptions;
    writerOptions.databasePath = path.toStdString();
    writerOptions.onOutcome = [this](const storage::WriteOutcome& outcome) {
        // Runs on the writer's thread: only a queued signal or call leaves it.
        if (!outcome.status)
            fail(0, int(outcome.status.error().code), outcome.status.error().detail);
        else  // the new snapshot, and what the budget evicted for it, show on the storage thread's next turn
            QMetaObject::invokeMethod(this, [this] { emitKvUsage(0, 0, 0); }, Qt::QueuedConnection);
    };
    m_writer.reset();
    if (auto writer = storage::SnapshotWriter::create(std::move(writerOptions)))
        m_writer = std::move(*writer);
    else
        fail(0, int(writer.error().code), writer.error().detail);  // chats still work; their KV is not kept
    if (auto purged = m_chats->purgeDeleted(storage::Database::nowMs() - kTrashKeepMs); !purged)
        fail(0, int(purged.error().code), purged.error().detail);
    const storage::OpenReport& report = m_db->openReport();
    Q_EMIT opened(requestId, report.recoveredFromCorruption, qs(report.quarantinedPath));
    emitKvUsage(requestId, 0, 0);
}

void StorageWorker::emitKvUsage(quint64 requestId, int evictedSnapshots, quint64 evictedBytes) {
    auto usage = m_kv->kvBytesPerConversation();
    auto cap = m_kv->kvBudget();
    if (!usage)
        return fail(requestId, int(usage.error().code), usage.error().detail);
    if (!cap)
        return fail(requestId, int(cap.error().code), cap.error().detail);
    KvUsage out{requestId, {}, 0, quint64(*cap), evictedSnapshots, evictedBytes};
    for (const storage::ConversationKvUsage& u : *usage) {
        out.bytesByConversation.insert(u.conversationId, quint64(u.bytes));
        out.totalBytes += quint64(u.bytes);
    }
    Q_EMIT kvUsage(out);
}

void StorageWorker::listConversations(quint64 requestId) {
    if (!ready(requestId))
        return;
    auto list = m_chats->listConversations();
    if (!list) {
        fail(requestId, int(list.error().code), list.error().detail);
        return;
    }
    std::unordered_map<int64_t, int64_t> kvBytes;
    if (auto usage = m_kv->kvBytesPerConversation())
        for (const storage::ConversationKvUsage& u : *usage)
            kvBytes[u.conversationId] = u.bytes;
    QList<ui::ConversationInfo> out;
    for (const storage::Conversation& c : *list) {
        ui::ConversationInfo info = toInfo(c);
        info.kvBytes = quint64(kvBytes[c.id]);
        if (auto path = m_chats->activePath(c.id))
            info.messageCount = int(path->size());
        out.append(info);
    }
    Q_EMIT conversationsListed(requestId, out);
}

void StorageWorker::emitConversation(quint64 requestId, qint64 conversationId) {
    auto c = m_chats->conversation(conversationId);
    if (!c) {
        fail(requestId, int(c.error().code), c.error().detail);
        return;
    }
    ui::ConversationInfo info = toInfo(*c);
    if (auto path = m_chats->activePath(conversationId))
        info.messageCount = int(path->size());
    if (auto usage = m_kv->kvBytesPerConversation())
        for (const storage::ConversationKvUsage& u : *usage)
            if (u.conversationId == conversationId)
                info.kvBytes = quint64(u.bytes);
    Q_EMIT conversationChanged(requestId, info);
}

void StorageWorker::createConversation(quint64 requestId, const QString& title, const QString& systemPrompt,
                                       const QString& settingsJson) {
    if (!ready(requestId))
        return;
    storage::Conversation c;
    c.title = title.toStdString();
    c.systemPrompt = systemPrompt.toStdString();
    c.settingsJson = settingsJson.toStdString();
    auto id = m_chats->createConversation(c);
    if (!id) {
        fail(requestId, int(id.error().code), id.error().detail);
        return;
    }
    emitConversation(requestId, *id);
}

void StorageWorker::setConversationSettings(quint64 requestId, qint64 conversationId, const QString& systemPrompt,
                                            const QString& settingsJson) {
    if (!ready(requestId))
        return;
    auto tx = storage::Transaction::begin(*m_db);
    if (!tx)
        return fail(requestId, int(tx.error().code), tx.error().detail);
    storage::Status st = m_chats->setSystemPrompt(conversationId, systemPrompt.toStdString());
    if (st)
        st = m_chats->setConversationSettings(conversationId, settingsJson.toStdString());
    if (st)
        st = tx->commit();
    if (!st)
        return fail(requestId, int(st.error().code), st.error().detail);
    emitConversation(requestId, conversationId);
}

void StorageWorker::renameConversation(quint64 requestId, qint64 conversationId, const QString& title) {
    if (!ready(requestId))
        return;
    if (auto st = m_chats->renameConversation(conversationId, title.toStdString()); !st)
        return fail(requestId, int(st.error().code), st.error().detail);
    emitConversation(requestId, conversationId);
}

void StorageWorker::setPinned(quint64 requestId, qint64 conversationId, bool pinned) {
    if (!ready(requestId))
        return;
    if (auto st = m_chats->setPinned(conversationId, pinned); !st)
        return fail(requestId, int(st.error().code), st.error().detail);
    emitConversation(requestId, conversationId);
}

void StorageWorker::deleteConversation(quint64 requestId, qint64 conversationId) {
    if (!ready(requestId))
        return;
    if (auto st = m_chats->deleteConversation(conversationId); !st)
        fail(requestId, int(st.error().code), st.error().detail);
}

void StorageWorker::restoreConversation(quint64 requestId, qint64 conversationId) {
    if (!ready(requestId))
        return;
    if (auto st = m_chats->restoreConversation(conversationId); !st)
        return fail(requestId, int(st.error().code), st.error().detail);
    emitConversation(requestId, conversationId);
}

void StorageWorker::loadMessages(quint64 requestId, qint64 conversationId) {
    if (!ready(requestId))
        return;
    auto path = m_chats->activePath(conversationId);
    if (!path) {
        fail(requestId, int(path.error().code), path.error().detail);
        return;
    }
    ConversationMessages out{requestId, conversationId, {}};
    int round = 0;
    for (const storage::Message& m : *path) {
        if (m.role == storage::Role::System)
            continue;
        if (m.role == storage::Role::User)
            ++round;
        ui::MessageData d;
        d.id = m.id;
        d.parentId = m.parentId;
        d.role = toRole(m.role);
        d.text = qs(m.text);
        d.round = round;
        if (auto sibs = m_chats->siblings(m.id); sibs && sibs->size() > 1) {
            d.branchCount = int(sibs->size());
            for (size_t i = 0; i < sibs->size(); ++i)
                if ((*sibs)[i].id == m.id)
                    d.branchIndex = int(i);
        }
        if (m.role == storage::Role::Assistant) {
            if (auto log = m_chats->recallLog(m.id); log && !log->empty()) {
                const storage::RecallLogEntry& e = log->back();
                d.recall.valid = true;
                // The log says which mode answered; entries from before it did (schema v2) are guessed from the
                // bytes, which cannot tell Round Attention that recalled every round from full KV.
                d.recall.roundAttention = e.mode ? *e.mode == storage::RecallKvMode::RoundAttention
                                                 : e.vramKvBytes < e.fullKvBytes;
                d.recall.roundsTotal = round - 1;
                for (const storage::RecalledRound& rr : e.rounds)
                    d.recall.recalledRounds.append(rr.roundIndex);
                d.recall.kvBytesInVram = quint64(e.vramKvBytes);
                d.recall.kvBytesFull = quint64(e.fullKvBytes);
            }
        }
        out.messages.append(d);
    }
    Q_EMIT messagesLoaded(out);
}

void StorageWorker::appendMessage(quint64 requestId, qint64 conversationId, const ui::MessageData& message,
                                  quint64 parentRequestId, const RecallDetails& recall) {
    if (!ready(requestId))
        return;
    storage::Message m;
    m.conversationId = conversationId;
    m.parentId = message.parentId;
    if (m.parentId == 0 && parentRequestId != 0) {
        const auto it = m_savedIds.find(parentRequestId);
        if (it == m_savedIds.end())
            return fail(requestId, int(storage::ErrorCode::DatabaseError), "the question of this answer was not saved");
        m.parentId = it->second;
    }
    m.role = storage::Role(int(message.role));
    m.text = message.text.toStdString();
    auto id = m_chats->appendMessage(m);
    if (!id) {
        fail(requestId, int(id.error().code), id.error().detail);
        return;
    }
    if (m_savedIds.size() > kSavedIdsKept)
        m_savedIds.clear();  // parents are looked up within a few requests; old entries are never needed
    m_savedIds[requestId] = *id;
    if (message.recall.valid) {
        storage::RecallLogEntry e;
        e.messageId = *id;
        e.mode = message.recall.roundAttention ? storage::RecallKvMode::RoundAttention : storage::RecallKvMode::FullKv;
        for (int i = 0; i < message.recall.recalledRounds.size(); ++i)
            e.rounds.push_back({message.recall.recalledRounds[i], i < recall.scores.size() ? recall.scores[i] : 0.0});
        e.vramKvBytes = int64_t(message.recall.kvBytesInVram);
        e.fullKvBytes = int64_t(message.recall.kvBytesFull);
        e.copiedBytes = int64_t(recall.bytesCopiedFromHost);
        e.selectMs = recall.selectMs;
        e.copyMs = recall.copyMs;
        if (auto logged = m_chats->addRecallLog(e); !logged)
            fail(0, int(logged.error().code), logged.error().detail);
    }
    ui::MessageData saved = message;
    saved.id = *id;
    saved.parentId = m.parentId;
    Q_EMIT messageSaved(MessageSaved{requestId, conversationId, saved});
    emitConversation(0, conversationId);
}

void StorageWorker::switchBranch(quint64 requestId, qint64 messageId, int delta) {
    if (!ready(requestId))
        return;
    auto sibs = m_chats->siblings(messageId);
    auto msg = m_chats->message(messageId);
    if (!sibs || !msg)
        return fail(requestId, int(storage::ErrorCode::DatabaseError), "message not found");
    int index = 0;
    for (size_t i = 0; i < sibs->size(); ++i)
        if ((*sibs)[i].id == messageId)
            index = int(i);
    const int target = std::clamp(index + delta, 0, int(sibs->size()) - 1);
    if (auto st = m_chats->switchBranch((*sibs)[size_t(target)].id); !st)
        return fail(requestId, int(st.error().code), st.error().detail);
    loadMessages(requestId, msg->conversationId);
}

void StorageWorker::search(quint64 requestId, const QString& query) {
    if (!ready(requestId))
        return;
    SearchResults out{requestId, query, {}};
    if (!query.trimmed().isEmpty()) {
        storage::SearchOptions options;
        options.highlightOpen = std::string(1, char(ui::kSnippetOpen.unicode()));
        options.highlightClose = std::string(1, char(ui::kSnippetClose.unicode()));
        auto hits = m_chats->search(query.toStdString(), options);
        if (!hits)
            return fail(requestId, int(hits.error().code), hits.error().detail);
        for (const storage::SearchHit& h : *hits)
            out.hits.append(ui::SearchHit{h.conversationId, h.messageId, qs(h.conversationTitle), qs(h.snippet)});
    }
    Q_EMIT searchResults(out);
}

void StorageWorker::exportConversation(quint64 requestId, qint64 conversationId, bool json, const QString& path) {
    if (!ready(requestId))
        return;
    auto text = json ? storage::exportJson(*m_chats, conversationId) : storage::exportMarkdown(*m_chats, conversationId);
    if (!text)
        return fail(requestId, int(text.error().code), text.error().detail);
    QFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(text->data(), qint64(text->size())) != qint64(text->size()))
        return fail(requestId, int(storage::ErrorCode::IoError), f.errorString().toStdString());
    Q_EMIT exported(ExportResult{requestId, path});
}

void StorageWorker::importConversation(quint64 requestId, const QString& path) {
    if (!ready(requestId))
        return;
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return fail(requestId, int(storage::ErrorCode::FileNotFound), f.errorString().toStdString());
    const QByteArray data = f.readAll();
    auto id = storage::importJson(*m_chats, std::string_view(data.constData(), size_t(data.size())));
    if (!id)
        return fail(requestId, int(id.error().code == storage::ErrorCode::InvalidArgument ? storage::ErrorCode::CorruptFile
                                                                                          : id.error().code),
                    id.error().detail);
    emitConversation(requestId, *id);
}

void StorageWorker::freeKv(quint64 requestId, qint64 conversationId) {
    if (!ready(requestId))
        return;
    auto freed = m_kv->freeKv(conversationId);
    if (!freed)
        return fail(requestId, int(freed.error().code), freed.error().detail);
    emitKvUsage(requestId, freed->snapshotsEvicted, quint64(freed->bytesFreed));
}

void StorageWorker::setKvCap(quint64 requestId, quint64 capBytes) {
    if (!ready(requestId))
        return;
    if (auto st = m_kv->setKvBudget(int64_t(capBytes)); !st)
        return fail(requestId, int(st.error().code), st.error().detail);
    auto evicted = m_kv->enforceBudget();
    if (!evicted)
        return fail(requestId, int(evicted.error().code), evicted.error().detail);
    emitKvUsage(requestId, evicted->snapshotsEvicted, quint64(evicted->bytesFreed));
}

void StorageWorker::writeRoundKv(quint64 requestId, qint64 conversationId, const RoundKv& kv) {
    if (!ready(requestId) || !m_writer || !kv.bytes)
        return;
    auto path = m_chats->activePath(conversationId);
    if (!path)
        return fail(requestId, int(path.error().code), path.error().detail);
    const std::vector<PathRound> rounds = roundsOf(*path);
    if (kv.round < 1 || size_t(kv.round) > rounds.size() || !rounds[size_t(kv.round) - 1].answer)
        return;  // the branch changed before the KV arrived: it belongs to no round on it
    const PathRound& r = rounds[size_t(kv.round) - 1];
    storage::RoundWrite write;
    write.round.conversationId = conversationId;
    write.round.roundIndex = kv.round - 1;  // storage counts user rounds from 0
    write.round.userMessageId = r.user->id;
    write.round.assistantMessageId = r.answer->id;
    write.round.firstPosition = kv.firstPosition;
    write.round.tokenCount = kv.tokenCount;
    storage::KvSnapshotRecord snap;
    snap.round = kv.round - 1;
    snap.firstLayer = 0;
    snap.layerCount = kv.layerCount;
    snap.tokenCount = kv.tokenCount;
    snap.modelFingerprint = kv.modelFingerprint.toStdString();
    snap.dtype = kv.dtype.toStdString();
    snap.templateHash = kv.templateHash.toStdString();
    snap.bytes = std::move(*kv.bytes);
    write.snapshots.push_back(std::move(snap));
    if (!m_writer->enqueue(std::move(write)))
        qInfo("KV of round %d not stored (snapshot queue full); it is prefilled when reopened", kv.round);
}

void StorageWorker::loadRestore(quint64 requestId, qint64 conversationId, const QString& fingerprint,
                                const QString& templateHash, int layerCount) {
    if (!ready(requestId))
        return;
    auto path = m_chats->activePath(conversationId);
    if (!path)
        return fail(requestId, int(path.error().code), path.error().detail);
    const storage::RestoreKey key{fingerprint.toStdString(), templateHash.toStdString(), layerCount};
    auto plan = m_kv->planRestore(conversationId, key);
    if (!plan)
        return fail(requestId, int(plan.error().code), plan.error().detail);
    RestoreData data;
    data.requestId = requestId;
    data.conversationId = conversationId;
    const std::vector<PathRound> rounds = roundsOf(*path);
    for (const PathRound& r : rounds) {
        if (!r.answer)
            break;  // a question without answer ends the history (send() answers it again)
        data.rounds.append({qs(r.user->text), qs(r.answer->text)});
    }
    for (int k = 0; k < data.rounds.size(); ++k) {
        if (k >= plan->restorableRounds) {
            data.reason = k < int(plan->rounds.size()) ? qs(plan->rounds[size_t(k)].reason)
                                                       : QStringLiteral("no KV was stored");
            break;
        }
        const storage::RestoreRound& rr = plan->rounds[size_t(k)];
        if (rr.round.assistantMessageId != rounds[size_t(k)].answer->id || rr.snapshots.size() != 1) {
            data.reason = QStringLiteral("the stored KV does not match the branch");
            break;
        }
        data.snapshots.append({rr.snapshots.front().id, rr.round.firstPosition});
    }
    data.databasePath = qs(m_db->path());
    Q_EMIT restoreLoaded(data);
}

}  // namespace app
