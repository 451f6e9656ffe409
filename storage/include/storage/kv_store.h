// storage::KvStore: rounds and their KV snapshots (BLOBs written and read in chunks, never whole in SQL), restore
// planning, and the storage budget. It borrows a Database and is used on that Database's thread.
#pragma once

#include "storage/database.h"
#include "storage/records.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

struct sqlite3_blob;

namespace storage {

// Streams one snapshot's bytes into caller buffers (e.g. pinned host memory), without a copy of the whole BLOB.
// Borrows the Database: destroy the reader first. A reader whose snapshot gets evicted fails with DatabaseError.
class SnapshotBlobReader {
public:
    SnapshotBlobReader(SnapshotBlobReader&& other) noexcept;
    SnapshotBlobReader& operator=(SnapshotBlobReader&&) = delete;
    ~SnapshotBlobReader();

    int64_t size() const { return m_size; }
    // Fills dst with bytes [offset, offset + dst.size()); the range must lie inside size().
    Status read(int64_t offset, std::span<uint8_t> dst);

private:
    friend class KvStore;
    SnapshotBlobReader(Database& db, sqlite3_blob* blob, int64_t size) : m_db(&db), m_blob(blob), m_size(size) {}

    Database* m_db;
    sqlite3_blob* m_blob;  // owned
    int64_t m_size;
};

// Whether the stored KV of a round on the active branch can be restored instead of prefilled.
struct RestoreRound {
    RoundRecord round;
    std::vector<KvSnapshotInfo> snapshots;  // sorted by firstLayer, covering [0, layerCount) when usable
    bool usable = false;
    std::string reason;  // why not, for the log and the session's notice ("model fingerprint differs", "evicted")
};

struct RestorePlan {
    std::vector<RestoreRound> rounds;  // the active branch's rounds in round order
    // Rounds [0, restorableRounds) can be imported; from there on the engine prefills (KV positions depend on all
    // earlier tokens, so one missing round forces the rest to be prefilled too).
    int restorableRounds = 0;
};

struct RestoreKey {
    std::string modelFingerprint;
    std::string templateHash;
    int layerCount = 0;  // the model's layer count: a round's snapshots must cover [0, layerCount)
};

// Reads snapshots for a restore: `threads` connections of their own to the database file at `path` (WAL readers, so
// committed data only) read ahead in parallel, and `consume` gets each snapshot on the calling thread, in the order
// of snapshotIds, as soon as it and those before it are read. Restoring a long chat reads hundreds of MB and one
// connection copies BLOB pages at about 1 GB/s, so the reads run in parallel and the caller's import of one
// snapshot overlaps the reading of the next. Read-ahead is bounded (a few snapshots per thread). Stops at the first
// error, of a read or of `consume`, and returns it; consume's index is the position in snapshotIds.
using SnapshotConsumer = std::function<Status(size_t index, KvSnapshotRecord&& snapshot)>;
Status streamSnapshots(const std::string& path, std::span<const int64_t> snapshotIds, int threads,
                       const SnapshotConsumer& consume);

class KvStore {
public:
    explicit KvStore(Database& db) : m_db(db) {}

    // Writes a round and its snapshots in one transaction (a savepoint when the caller has one open). A round of
    // the same assistant message written before is replaced with its snapshots. Returns the round id.
    Result<int64_t> writeRound(const RoundRecord& round, std::span<const KvSnapshotRecord> snapshots);
    Result<RoundRecord> round(int64_t roundId);
    Result<std::vector<RoundRecord>> rounds(int64_t conversationId);  // all branches, by round index then id

    Result<std::vector<KvSnapshotInfo>> snapshots(int64_t roundId);  // by first layer
    Result<SnapshotBlobReader> openSnapshot(int64_t snapshotId);
    // Reads a whole snapshot back (chunked BLOB reads); `round` is filled from the rounds table.
    Result<KvSnapshotRecord> loadSnapshot(int64_t snapshotId);

    // The rounds on the conversation's active branch, and which of them can be restored for this model/template.
    Result<RestorePlan> planRestore(int64_t conversationId, const RestoreKey& key);

    // --- Storage budget. Text is never evicted, only snapshots (the round rows stay, so the round is prefilled).
    Result<std::vector<ConversationKvUsage>> kvBytesPerConversation();  // conversations with snapshots only
    Result<int64_t> totalKvBytes();
    Status setKvBudget(int64_t bytes);  // 0 = no limit; kept in the settings table
    Result<int64_t> kvBudget();
    // Evicts the oldest snapshots (by creation time, then id) until the total fits the budget.
    Result<EvictionReport> enforceBudget();
    Result<EvictionReport> freeKv(int64_t conversationId);

private:
    Status writeBlob(int64_t snapshotId, std::span<const uint8_t> bytes);

    Database& m_db;  // borrowed; must outlive the store
};

}  // namespace storage
