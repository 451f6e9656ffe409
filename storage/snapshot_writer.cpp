#include "storage/snapshot_writer.h"

#include "statement.h"
#include "storage/kv_store.h"

#include <utility>

namespace storage {
namespace {

size_t payloadBytes(const RoundWrite& w) {
    size_t n = 0;
    for (const KvSnapshotRecord& s : w.snapshots) n += s.bytes.size();
    return n;
}

}  // namespace

Result<std::unique_ptr<SnapshotWriter>> SnapshotWriter::create(SnapshotWriterOptions options) {
    OpenOptions open;
    open.verifyOnOpen = false;    // the app's main connection has just checked the file
    open.recoverCorrupt = false;  // never move a file another connection is using
    Result<Database> db = Database::open(options.databasePath, open);
    STORAGE_CHECK(db);
    return std::unique_ptr<SnapshotWriter>(new SnapshotWriter(std::move(*db), std::move(options)));
}

SnapshotWriter::SnapshotWriter(Database db, SnapshotWriterOptions options)
    : m_db(std::move(db)), m_options(std::move(options)), m_thread([this](std::stop_token st) { run(st); }) {}

SnapshotWriter::~SnapshotWriter() {
    m_thread.request_stop();  // wakes the worker, which drains the queue before it returns
    m_thread.join();
}

bool SnapshotWriter::enqueue(RoundWrite write) {
    const size_t bytes = payloadBytes(write);
    {
        std::lock_guard lock(m_mutex);
        const bool empty = m_queue.empty() && !m_busy;
        if (!empty && m_queuedBytes + bytes > m_options.maxQueuedBytes) {
            ++m_dropped;
            return false;
        }
        m_queuedBytes += bytes;
        m_queue.push_back(std::move(write));
    }
    m_wake.notify_one();
    return true;
}

Status SnapshotWriter::flush() {
    std::unique_lock lock(m_mutex);
    m_idle.wait(lock, [this] { return m_queue.empty() && !m_busy; });
    if (m_errors.empty())
        return {};
    Error first = m_errors.front();
    m_errors.clear();
    return first;
}

std::vector<Error> SnapshotWriter::takeErrors() {
    std::lock_guard lock(m_mutex);
    return std::exchange(m_errors, {});
}

uint64_t SnapshotWriter::droppedRounds() const {
    std::lock_guard lock(m_mutex);
    return m_dropped;
}

void SnapshotWriter::run(std::stop_token stop) {
    for (;;) {
        RoundWrite write;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, stop, [this] { return !m_queue.empty(); });
            if (m_queue.empty())
                return;  // stop requested and nothing left to write
            write = std::move(m_queue.front());
            m_queue.pop_front();
            m_busy = true;
        }
        const size_t bytes = payloadBytes(write);
        writeOne(write);
        {
            std::lock_guard lock(m_mutex);
            m_queuedBytes -= bytes;
            m_busy = false;
        }
        m_idle.notify_all();
    }
}

void SnapshotWriter::writeOne(RoundWrite& write) {
    KvStore store(m_db);
    WriteOutcome outcome{write.round.conversationId, write.round.roundIndex, 0, {}};
    Result<int64_t> id = store.writeRound(write.round, write.snapshots);
    if (id) {
        outcome.roundId = *id;
        if (m_options.enforceBudgetAfterWrite) {
            Result<EvictionReport> evicted = store.enforceBudget();
            if (!evicted)
                outcome.status = evicted.error();
        }
    } else {
        outcome.status = id.error();
    }
    if (!outcome.status) {
        std::lock_guard lock(m_mutex);
        m_errors.push_back(outcome.status.error());
    }
    if (m_options.onOutcome)
        m_options.onOutcome(outcome);
}

}  // namespace storage
