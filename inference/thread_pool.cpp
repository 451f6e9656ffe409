// ThreadPool: workers wait for a generation bump, run their chunk, and report back.
#include "thread_pool.h"

#include <algorithm>

namespace inference {

namespace {

// Chunk `index` of `parts` over [0, n): sizes differ by at most one.
std::pair<int64_t, int64_t> chunk(int64_t n, int index, int parts) {
    return {n * index / parts, n * (index + 1) / parts};
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
    if (threads <= 0)
        threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 1; i < threads; ++i) m_workers.emplace_back([this, i] { workerLoop(i); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard lock(m_mutex);
        m_stop = true;
    }
    m_wake.notify_all();
    for (std::thread& t : m_workers) t.join();
}

void ThreadPool::workerLoop(int index) {
    uint64_t seen = 0;
    for (;;) {
        const std::function<void(int64_t, int64_t)>* task;
        int64_t n;
        {
            std::unique_lock lock(m_mutex);
            m_wake.wait(lock, [&] { return m_stop || m_generation != seen; });
            if (m_stop)
                return;
            seen = m_generation;
            task = m_task;
            n = m_n;
        }
        const auto [begin, end] = chunk(n, index, threadCount());
        if (begin < end)
            (*task)(begin, end);
        {
            std::lock_guard lock(m_mutex);
            if (--m_pending == 0)
                m_done.notify_one();
        }
    }
}

void ThreadPool::parallelFor(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn) {
    if (m_workers.empty() || n <= 1) {
        if (n > 0)
            fn(0, n);
        return;
    }
    {
        std::lock_guard lock(m_mutex);
        m_task = &fn;
        m_n = n;
        m_pending = static_cast<int>(m_workers.size());
        ++m_generation;
    }
    m_wake.notify_all();
    const auto [begin, end] = chunk(n, 0, threadCount());
    if (begin < end)
        fn(begin, end);
    std::unique_lock lock(m_mutex);
    m_done.wait(lock, [&] { return m_pending == 0; });
    m_task = nullptr;
}

}  // namespace inference
