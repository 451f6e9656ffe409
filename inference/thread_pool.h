// A fixed pool of worker threads for data-parallel loops of the CPU backend.
// Ownership/threading: owned by one CpuBackend; parallelFor is called from one thread at a time (the inference
// worker) and blocks until every chunk has run.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace inference {

class ThreadPool {
public:
    // threads: total threads including the caller; <= 0 picks the hardware concurrency.
    explicit ThreadPool(int threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int threadCount() const { return static_cast<int>(m_workers.size()) + 1; }

    // Splits [0, n) into contiguous chunks, one per thread, and calls fn(begin, end) for each (the caller runs one).
    void parallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

private:
    void workerLoop(int index);

    std::vector<std::thread> m_workers;
    std::mutex m_mutex;
    std::condition_variable m_wake;
    std::condition_variable m_done;
    const std::function<void(int64_t, int64_t)>* m_task = nullptr;  // non-owning, valid during parallelFor
    int64_t m_n = 0;
    uint64_t m_generation = 0;  // bumped per parallelFor so workers run each task once
    int m_pending = 0;          // workers still running the current task
    bool m_stop = false;
};

}  // namespace inference
