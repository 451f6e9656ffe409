#include "storage/kv_store.h"

#include "statement.h"
#include "storage/chat_store.h"

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

namespace storage {
namespace {

// BLOBs move in 1 MiB pieces: big enough for few calls, small enough to keep a tens-of-MB snapshot out of SQL memory.
constexpr int64_t kBlobChunkBytes = int64_t(1) << 20;
constexpr char kBudgetKey[] = "kv_budget_bytes";

constexpr char kDeleteRoundOfMessage[] = "DELETE FROM rounds WHERE assistant_message_id = ?1";
constexpr char kInsertRound[] =
    "INSERT INTO rounds (conversation_id, round_index, user_message_id, assistant_message_id, first_position, "
    "token_count, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
constexpr char kInsertSnapshot[] =
    "INSERT INTO kv_snapshots (round_id, first_layer, layer_count, token_count, dtype, model_fingerprint, "
    "template_hash, byte_size, created_at, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
#define RC_ROUND_COLUMNS                                                                                            \
    "SELECT id, conversation_id, round_index, user_message_id, assistant_message_id, first_position, token_count, " \
    "created_at FROM rounds "
constexpr char kSelectRound[] = RC_ROUND_COLUMNS "WHERE id = ?1";
constexpr char kSelectRounds[] = RC_ROUND_COLUMNS "WHERE conversation_id = ?1 ORDER BY round_index, id";
// The newest round of each assistant message on the active branch, in branch order.
constexpr char kRoundsOnActivePath[] =
    "WITH RECURSIVE path(id) AS ("
    "  SELECT active_leaf_id FROM conversations WHERE id = ?1 AND active_leaf_id IS NOT NULL"
    "  UNION ALL SELECT m.parent_id FROM messages m JOIN path p ON m.id = p.id WHERE m.parent_id IS NOT NULL) "
    "SELECT r.id, r.conversation_id, r.round_index, r.user_message_id, r.assistant_message_id, r.first_position, "
    "r.token_count, r.created_at FROM rounds r JOIN path p ON r.assistant_message_id = p.id "
    "WHERE r.conversation_id = ?1 ORDER BY r.round_index, r.id";
#define RC_SNAPSHOT_COLUMNS                                                                                \
    "SELECT s.id, s.round_id, s.first_layer, s.layer_count, s.token_count, s.dtype, s.model_fingerprint, " \
    "s.template_hash, s.byte_size, s.created_at FROM kv_snapshots s "
constexpr char kSelectSnapshots[] = RC_SNAPSHOT_COLUMNS "WHERE s.round_id = ?1 ORDER BY s.first_layer";
constexpr char kSelectSnapshot[] = RC_SNAPSHOT_COLUMNS "WHERE s.id = ?1";
constexpr char kSelectRoundIndexOfSnapshot[] =
    "SELECT r.round_index FROM kv_snapshots s JOIN rounds r ON r.id = s.round_id WHERE s.id = ?1";
constexpr char kKvPerConversation[] =
    "SELECT r.conversation_id, SUM(s.byte_size), COUNT(*) FROM kv_snapshots s JOIN rounds r ON r.id = s.round_id "
    "GROUP BY r.conversation_id ORDER BY r.conversation_id";
constexpr char kTotalKv[] = "SELECT COALESCE(SUM(byte_size), 0) FROM kv_snapshots";
constexpr char kSnapshotsOldestFirst[] = "SELECT id, byte_size FROM kv_snapshots ORDER BY created_at, id";
constexpr char kDeleteSnapshot[] = "DELETE FROM kv_snapshots WHERE id = ?1";
constexpr char kConversationKv[] =
    "SELECT COUNT(*), COALESCE(SUM(byte_size), 0) FROM kv_snapshots "
    "WHERE round_id IN (SELECT id FROM rounds WHERE conversation_id = ?1)";
constexpr char kDeleteConversationKv[] =
    "DELETE FROM kv_snapshots WHERE round_id IN (SELECT id FROM rounds WHERE conversation_id = ?1)";

RoundRecord readRound(const Statement& s) {
    return RoundRecord{s.getInt(0), s.getInt(1),      int(s.getInt(2)), s.getInt(3),
                       s.getInt(4), int(s.getInt(5)), int(s.getInt(6)), s.getInt(7)};
}

KvSnapshotInfo readSnapshotInfo(const Statement& s) {
    return KvSnapshotInfo{s.getInt(0),  s.getInt(1),  int(s.getInt(2)), int(s.getInt(3)), int(s.getInt(4)),
                          s.getText(5), s.getText(6), s.getText(7),     s.getInt(8),      s.getInt(9)};
}

// Runs `sql` with `args` bound and turns each row into a T with `read`.
template <typename T, typename Read, typename... Args>
Result<std::vector<T>> collect(Database& db, const char* sql, Read read, const Args&... args) {
    Result<Statement> s = db.prepare(sql);
    STORAGE_CHECK(s);
    s->bind(args...);
    std::vector<T> out;
    for (;;) {
        Result<bool> row = s->step();
        STORAGE_CHECK(row);
        if (!*row)
            return out;
        out.push_back(read(*s));
    }
}

// Why a round's snapshots cannot be restored for `key`, or "" when they can.
std::string unusableReason(const std::vector<KvSnapshotInfo>& snaps, const RestoreKey& key) {
    if (snaps.empty())
        return "no snapshot (never written or evicted)";
    int nextLayer = 0;
    for (const KvSnapshotInfo& s : snaps) {
        if (s.modelFingerprint != key.modelFingerprint)
            return "model fingerprint differs (snapshot " + s.modelFingerprint + ", model " + key.modelFingerprint +
                   ")";
        if (s.templateHash != key.templateHash)
            return "template/tokenizer hash differs (snapshot " + s.templateHash + ", now " + key.templateHash + ")";
        if (s.firstLayer != nextLayer)
            return "layers " + std::to_string(nextLayer) + ".." + std::to_string(s.firstLayer - 1) + " missing";
        nextLayer = s.firstLayer + s.layerCount;
    }
    if (nextLayer != key.layerCount)
        return "snapshots cover " + std::to_string(nextLayer) + " of " + std::to_string(key.layerCount) + " layers";
    return {};
}

}  // namespace

// ---- SnapshotBlobReader

SnapshotBlobReader::SnapshotBlobReader(SnapshotBlobReader&& other) noexcept
    : m_db(other.m_db), m_blob(std::exchange(other.m_blob, nullptr)), m_size(other.m_size) {}

SnapshotBlobReader::~SnapshotBlobReader() {
    if (m_blob != nullptr)
        sqlite3_blob_close(m_blob);
}

Status SnapshotBlobReader::read(int64_t offset, std::span<uint8_t> dst) {
    if (offset < 0 || offset > m_size || int64_t(dst.size()) > m_size - offset)
        return makeError(ErrorCode::InvalidArgument, "read of " + std::to_string(dst.size()) + " bytes at " +
                                                         std::to_string(offset) + " past a snapshot of " +
                                                         std::to_string(m_size) + " bytes");
    for (size_t done = 0; done < dst.size();) {
        const int n = int(std::min<int64_t>(kBlobChunkBytes, int64_t(dst.size() - done)));
        const int rc = sqlite3_blob_read(m_blob, dst.data() + done, n, int(offset + int64_t(done)));
        if (rc != SQLITE_OK)
            return sqlError(m_db->handle(), rc, "reading a KV snapshot");
        done += size_t(n);
    }
    return {};
}

// ---- Rounds and snapshots

Status KvStore::writeBlob(int64_t snapshotId, std::span<const uint8_t> bytes) {
    sqlite3_blob* blob = nullptr;
    int rc = sqlite3_blob_open(m_db.handle(), "main", "kv_snapshots", "data", snapshotId, 1, &blob);
    for (size_t done = 0; rc == SQLITE_OK && done < bytes.size();) {
        const int n = int(std::min<int64_t>(kBlobChunkBytes, int64_t(bytes.size() - done)));
        rc = sqlite3_blob_write(blob, bytes.data() + done, n, int(done));
        done += size_t(n);
    }
    const int closeRc = sqlite3_blob_close(blob);
    if (rc == SQLITE_OK)
        rc = closeRc;
    if (rc != SQLITE_OK)
        return sqlError(m_db.handle(), rc, "writing a KV snapshot");
    return {};
}

Result<int64_t> KvStore::writeRound(const RoundRecord& round, std::span<const KvSnapshotRecord> snapshots) {
    for (const KvSnapshotRecord& snap : snapshots) {
        // sqlite3_blob_write addresses bytes with an int.
        if (snap.bytes.size() > size_t(std::numeric_limits<int>::max()))
            return makeError(ErrorCode::InvalidArgument, "a KV snapshot of " + std::to_string(snap.bytes.size()) +
                                                             " bytes is over the 2 GiB BLOB limit");
    }
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    const int64_t now = Database::nowMs();
    if (round.assistantMessageId != 0) {
        Result<Statement> s = m_db.prepare(kDeleteRoundOfMessage);
        STORAGE_CHECK(s);
        RC_TRY(s->bind(round.assistantMessageId).run());
    }
    {
        Result<Statement> s = m_db.prepare(kInsertRound);
        STORAGE_CHECK(s);
        RC_TRY(s->bind(round.conversationId, round.roundIndex, idOrNull(round.userMessageId),
                       idOrNull(round.assistantMessageId), round.firstPosition, round.tokenCount, now)
                   .run());
    }
    const int64_t roundId = sqlite3_last_insert_rowid(m_db.handle());
    for (const KvSnapshotRecord& snap : snapshots) {
        {
            Result<Statement> s = m_db.prepare(kInsertSnapshot);
            STORAGE_CHECK(s);
            RC_TRY(s->bind(roundId, snap.firstLayer, snap.layerCount, snap.tokenCount, snap.dtype,
                           snap.modelFingerprint, snap.templateHash, int64_t(snap.bytes.size()), now,
                           ZeroBlob{int64_t(snap.bytes.size())})
                       .run());
        }
        RC_TRY(writeBlob(sqlite3_last_insert_rowid(m_db.handle()), snap.bytes));
    }
    RC_TRY(tx->commit());
    return roundId;
}

Result<RoundRecord> KvStore::round(int64_t roundId) {
    Result<std::vector<RoundRecord>> found = collect<RoundRecord>(m_db, kSelectRound, readRound, roundId);
    STORAGE_CHECK(found);
    if (found->empty())
        return makeError(ErrorCode::InvalidArgument, "no round with id " + std::to_string(roundId));
    return found->front();
}

Result<std::vector<RoundRecord>> KvStore::rounds(int64_t conversationId) {
    return collect<RoundRecord>(m_db, kSelectRounds, readRound, conversationId);
}

Result<std::vector<KvSnapshotInfo>> KvStore::snapshots(int64_t roundId) {
    return collect<KvSnapshotInfo>(m_db, kSelectSnapshots, readSnapshotInfo, roundId);
}

Result<SnapshotBlobReader> KvStore::openSnapshot(int64_t snapshotId) {
    sqlite3_blob* blob = nullptr;
    const int rc = sqlite3_blob_open(m_db.handle(), "main", "kv_snapshots", "data", snapshotId, 0, &blob);
    if (rc != SQLITE_OK) {
        sqlite3_blob_close(blob);
        return sqlError(m_db.handle(), rc, "opening KV snapshot " + std::to_string(snapshotId));
    }
    return SnapshotBlobReader(m_db, blob, sqlite3_blob_bytes(blob));
}

Result<KvSnapshotRecord> KvStore::loadSnapshot(int64_t snapshotId) {
    Result<std::vector<KvSnapshotInfo>> info =
        collect<KvSnapshotInfo>(m_db, kSelectSnapshot, readSnapshotInfo, snapshotId);
    STORAGE_CHECK(info);
    if (info->empty())
        return makeError(ErrorCode::InvalidArgument, "no KV snapshot with id " + std::to_string(snapshotId));
    Result<std::vector<int>> roundIndex = collect<int>(
        m_db, kSelectRoundIndexOfSnapshot, [](const Statement& s) { return int(s.getInt(0)); }, snapshotId);
    STORAGE_CHECK(roundIndex);
    const KvSnapshotInfo& i = info->front();
    KvSnapshotRecord out{roundIndex->front(), i.firstLayer, i.layerCount,   i.tokenCount,
                         i.modelFingerprint,  i.dtype,      i.templateHash, {}};
    Result<SnapshotBlobReader> reader = openSnapshot(snapshotId);
    STORAGE_CHECK(reader);
    out.bytes.resize(size_t(reader->size()));
    RC_TRY(reader->read(0, out.bytes));
    return out;
}

Status streamSnapshots(const std::string& path, std::span<const int64_t> snapshotIds, int threads,
                       const SnapshotConsumer& consume) {
    const size_t n = snapshotIds.size();
    const size_t readers = std::min(n, static_cast<size_t>(std::max(1, threads)));
    const size_t readAhead = 4 * readers;  // snapshots read but not consumed yet, at most
    std::mutex lock;
    std::condition_variable changed;
    std::vector<std::optional<Result<KvSnapshotRecord>>> ready(n);
    size_t next = 0;      // the next snapshot a reader takes
    size_t consumed = 0;  // snapshots handed to consume
    bool stop = false;
    std::optional<Error> openError;
    auto read = [&] {
        OpenOptions readerOptions;
        readerOptions.verifyOnOpen = false;  // the app checked the file when it opened it
        readerOptions.recoverCorrupt = false;
        Result<Database> db = Database::open(path, readerOptions);
        std::unique_lock<std::mutex> held(lock);
        if (!db) {
            openError = db.error();
            changed.notify_all();
            return;
        }
        KvStore store(*db);
        for (;;) {
            changed.wait(held, [&] { return stop || next >= n || next < consumed + readAhead; });
            if (stop || next >= n)
                return;
            const size_t i = next++;
            held.unlock();
            Result<KvSnapshotRecord> rec = store.loadSnapshot(snapshotIds[i]);
            held.lock();
            ready[i] = std::move(rec);
            changed.notify_all();
        }
    };
    std::vector<std::thread> pool;
    for (size_t t = 0; t < readers; ++t) pool.emplace_back(read);
    Status result;
    for (size_t i = 0; i < n && result.ok(); ++i) {
        std::unique_lock<std::mutex> held(lock);
        changed.wait(held, [&] { return ready[i].has_value() || openError.has_value(); });
        if (!ready[i]) {
            result = *openError;
            break;
        }
        Result<KvSnapshotRecord> rec = std::move(*ready[i]);
        ready[i].reset();
        consumed = i + 1;
        changed.notify_all();
        held.unlock();
        result = rec ? consume(i, std::move(*rec)) : Status{rec.error()};
    }
    {
        const std::lock_guard<std::mutex> held(lock);
        stop = true;
    }
    changed.notify_all();
    for (std::thread& t : pool) t.join();
    return result;
}

Result<RestorePlan> KvStore::planRestore(int64_t conversationId, const RestoreKey& key) {
    Result<std::vector<RoundRecord>> onPath =
        collect<RoundRecord>(m_db, kRoundsOnActivePath, readRound, conversationId);
    STORAGE_CHECK(onPath);
    RestorePlan plan;
    bool prefixUsable = true;
    for (RoundRecord& r : *onPath) {
        RestoreRound rr;
        rr.round = r;
        Result<std::vector<KvSnapshotInfo>> snaps = snapshots(r.id);
        STORAGE_CHECK(snaps);
        rr.snapshots = std::move(*snaps);
        if (r.roundIndex != int(plan.rounds.size()))
            rr.reason = "round " + std::to_string(plan.rounds.size()) + " has no round record";
        else
            rr.reason = unusableReason(rr.snapshots, key);
        rr.usable = rr.reason.empty();
        prefixUsable = prefixUsable && rr.usable;
        plan.restorableRounds += prefixUsable ? 1 : 0;
        plan.rounds.push_back(std::move(rr));
    }
    return plan;
}

// ---- Budget

Result<std::vector<ConversationKvUsage>> KvStore::kvBytesPerConversation() {
    return collect<ConversationKvUsage>(m_db, kKvPerConversation, [](const Statement& s) {
        return ConversationKvUsage{s.getInt(0), s.getInt(1), int(s.getInt(2))};
    });
}

Result<int64_t> KvStore::totalKvBytes() {
    Result<std::vector<int64_t>> total =
        collect<int64_t>(m_db, kTotalKv, [](const Statement& s) { return s.getInt(0); });
    STORAGE_CHECK(total);
    return total->front();
}

Status KvStore::setKvBudget(int64_t bytes) {
    if (bytes < 0)
        return makeError(ErrorCode::InvalidArgument, "a negative KV budget");
    return ChatStore(m_db).setSetting(kBudgetKey, std::to_string(bytes));
}

Result<int64_t> KvStore::kvBudget() {
    Result<std::optional<std::string>> value = ChatStore(m_db).setting(kBudgetKey);
    STORAGE_CHECK(value);
    if (!value->has_value())
        return int64_t(0);
    char* end = nullptr;
    const long long bytes = std::strtoll((*value)->c_str(), &end, 10);
    if (end == (*value)->c_str() || *end != '\0' || bytes < 0)
        return makeError(ErrorCode::CorruptFile,
                         "setting " + std::string(kBudgetKey) + " is not a byte count: " + **value);
    return int64_t(bytes);
}

Result<EvictionReport> KvStore::enforceBudget() {
    Result<int64_t> budget = kvBudget();
    STORAGE_CHECK(budget);
    Result<int64_t> total = totalKvBytes();
    STORAGE_CHECK(total);
    EvictionReport report;
    if (*budget == 0 || *total <= *budget)
        return report;
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    std::vector<int64_t> victims;
    {
        Result<Statement> s = m_db.prepare(kSnapshotsOldestFirst);
        STORAGE_CHECK(s);
        while (*total - report.bytesFreed > *budget) {
            Result<bool> row = s->step();
            STORAGE_CHECK(row);
            if (!*row)
                break;
            victims.push_back(s->getInt(0));
            report.bytesFreed += s->getInt(1);
        }
    }
    for (int64_t id : victims) {
        Result<Statement> s = m_db.prepare(kDeleteSnapshot);
        STORAGE_CHECK(s);
        RC_TRY(s->bind(id).run());
    }
    RC_TRY(tx->commit());
    report.snapshotsEvicted = int(victims.size());
    return report;
}

Result<EvictionReport> KvStore::freeKv(int64_t conversationId) {
    Result<Transaction> tx = Transaction::begin(m_db);
    STORAGE_CHECK(tx);
    EvictionReport report;
    {
        Result<Statement> s = m_db.prepare(kConversationKv);
        STORAGE_CHECK(s);
        Result<bool> row = s->bind(conversationId).step();
        STORAGE_CHECK(row);
        report.snapshotsEvicted = int(s->getInt(0));
        report.bytesFreed = s->getInt(1);
    }
    Result<Statement> s = m_db.prepare(kDeleteConversationKv);
    STORAGE_CHECK(s);
    RC_TRY(s->bind(conversationId).run());
    RC_TRY(tx->commit());
    return report;
}

}  // namespace storage
