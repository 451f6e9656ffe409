// storage::Database: one SQLite connection (WAL, foreign keys on, schema migrated to the latest version), with a
// cache of prepared statements, and storage::Transaction, the RAII scope for multi-step writes.
//
// Threading: a Database belongs to one thread at a time (SQLite "multi-thread" mode, no internal mutex). Each thread
// that writes (the StorageWorker, the SnapshotWriter) opens its own Database on the same file; WAL lets readers run
// while another connection writes, and busyTimeoutMs lets a second writer wait instead of failing.
#pragma once

#include "roundchat/result.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

struct sqlite3;

namespace storage {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;

// The schema version a fresh database gets (PRAGMA user_version), i.e. the last entry of the migration list.
int latestSchemaVersion();

struct OpenOptions {
    // Migrate only up to this version (0 = latest). Tests use it to build databases at every earlier version.
    int schemaVersion = 0;
    // Run PRAGMA quick_check on open so that a damaged file is caught now, not in the middle of a chat. It reads
    // every page of the file once (about 1 s per GB), so a caller that must open a huge file fast can turn it off.
    bool verifyOnOpen = true;
    // When the file is damaged: move it aside (never overwriting anything) and start with a fresh database, and say
    // so in Database::openReport(). When false, open() returns ErrorCode::CorruptFile instead. A second connection
    // to a file that another part of the app already opened (the SnapshotWriter) should set this to false.
    bool recoverCorrupt = true;
    int busyTimeoutMs = 5000;  // how long a writer waits for another connection's write transaction
};

// What open() had to do; the app shows `message` to the user when recoveredFromCorruption is true.
struct OpenReport {
    bool recoveredFromCorruption = false;
    std::string quarantinedPath;  // where the damaged file now lies (its -wal/-shm files got the same suffix)
    std::string message;          // one English sentence for the log; the app translates its own
};

class Statement;

class Database {
public:
    // Opens or creates the database at `path` and migrates it. A damaged file (not a database, truncated, a
    // damaged header or pages) gives ErrorCode::CorruptFile, or is quarantined as `<path>.corrupt-<UTC time>[-N]`
    // when options.recoverCorrupt is set. A file written by a newer version gives ErrorCode::Unsupported and is
    // left untouched.
    static Result<Database> open(const std::string& path, OpenOptions options = {});

    Database(Database&&) noexcept;
    Database& operator=(Database&&) noexcept;
    ~Database();  // finalizes the cached statements and closes the connection (checkpointing the WAL if last)

    const OpenReport& openReport() const;
    const std::string& path() const;
    int schemaVersion() const;  // PRAGMA user_version as opened

    // Runs SQL without parameters (schema, pragmas). Never pass user data here: use prepare() + bind.
    Status exec(std::string_view sql);
    // A cached prepared statement for `sql` (normally one of the named constants); reset when the handle dies.
    // The same SQL must not be in use twice at once (no recursion over one statement).
    Result<Statement> prepare(std::string_view sql);
    // PRAGMA integrity_check: "ok", or the problems it found, one per line.
    Result<std::string> integrityCheck();
    // Milliseconds since the Unix epoch (UTC); every created_at/updated_at column uses this clock.
    static int64_t nowMs();

    // The raw connection, for tests (e.g. PRAGMA max_page_count to simulate a full disk). Owned by this object.
    sqlite3* handle() const;

private:
    friend class Transaction;
    int& transactionDepth();  // savepoint nesting depth, managed by Transaction

    struct Impl;
    explicit Database(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

// RAII write transaction. At the top level it is BEGIN IMMEDIATE (takes the write lock at once, so a busy database
// fails here rather than halfway); inside another transaction it is a SAVEPOINT, so repository functions can be
// composed. Destroying it without commit() rolls back.
class Transaction {
public:
    static Result<Transaction> begin(Database& db);
    Transaction(Transaction&& other) noexcept;
    Transaction& operator=(Transaction&&) = delete;
    ~Transaction();

    Status commit();

private:
    Transaction(Database& db, int depth);
    void rollback();

    Database* m_db = nullptr;  // borrowed; null once committed, rolled back or moved from
    int m_depth = 0;           // 0 = top level, otherwise the savepoint number
};

}  // namespace storage
