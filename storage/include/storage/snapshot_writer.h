// storage::SnapshotWriter: writes each round's KV snapshots in the background so that generation and the UI never
// wait on the disk. It owns a worker thread and its own Database connection to the same file.
//
// Back-pressure: the queue holds at most maxQueuedBytes of snapshot data. A round that does not fit is not queued:
// enqueue() returns false at once and the round is counted in droppedRounds(). Nothing is lost but time, since a
// round without a snapshot is prefilled again when the conversation is reopened. A single round larger than the
// whole limit is still accepted when the queue is empty, so a big model always gets its snapshots written.
#pragma once

#include "storage/database.h"
#include "storage/records.h"

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace storage {

struct RoundWrite {
    RoundRecord round;
    std::vector<KvSnapshotRecord> snapshots;
};

struct WriteOutcome {
    int64_t conversationId = 0;
    int roundIndex = 0;
    int64_t roundId = 0;  // 0 when the write failed
    Status status;
};

struct SnapshotWriterOptions {
    std::string databasePath;                 // a file the app has already opened (and migrated) with Database::open
    size_t maxQueuedBytes = size_t(1) << 30;  // snapshot bytes waiting in memory
    bool enforceBudgetAfterWrite = true;      // run KvStore::enforceBudget() after each committed round
    // Called on the writer thread after each round (committed or failed). It must not block and must not call back
    // into the writer; the app forwards it as a queued signal.
    std::function<void(const WriteOutcome&)> onOutcome;
};

class SnapshotWriter {
public:
    static Result<std::unique_ptr<SnapshotWriter>> create(SnapshotWriterOptions options);
    // Writes what is still queued, then stops the thread.
    ~SnapshotWriter();
    SnapshotWriter(const SnapshotWriter&) = delete;
    SnapshotWriter& operator=(const SnapshotWriter&) = delete;

    // Queues a round (moved in, no copy of the bytes) and returns at once. False: dropped by back-pressure.
    // Any thread may call it.
    bool enqueue(RoundWrite write);
    // Blocks until everything queued so far is written. Returns the first error since the previous flush().
    // For shutdown and tests, never the generation thread.
    Status flush();
    // Errors not yet returned by flush(), oldest first, for polling from the UI.
    std::vector<Error> takeErrors();
    uint64_t droppedRounds() const;

private:
    SnapshotWriter(Database db, SnapshotWriterOptions options);
    void run(std::stop_token stop);
    void writeOne(RoundWrite& write);

    Database m_db;  // used only on the worker thread
    SnapshotWriterOptions m_options;

    mutable std::mutex m_mutex;          // guards everything below
    std::condition_variable_any m_wake;  // the worker waits for work or stop
    std::condition_variable m_idle;      // flush() waits for an empty queue
    std::deque<RoundWrite> m_queue;
    size_t m_queuedBytes = 0;
    bool m_busy = false;  // the worker holds a round outside the queue
    uint64_t m_dropped = 0;
    std::vector<Error> m_errors;

    std::jthread m_thread;  // last member: starts after, and is joined before, everything above
};

}  // namespace storage
