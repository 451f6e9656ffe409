// Upper-layer KV of a CUDA context under a split placement: pinned host copies, a device slot pool, recalls on a
// copy stream with per-layer events.
#include "upper_kv.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string>

namespace inference {

namespace {

// Runs of consecutive slots, as (first index into slots, first slot, count).
struct Run {
    size_t row = 0;
    int32_t slot = 0;
    int32_t count = 0;
};

std::vector<Run> runsOf(const std::vector<int32_t>& slots, size_t count) {
    std::vector<Run> out;
    for (size_t i = 0; i < count;) {
        size_t j = i + 1;
        while (j < count && slots[j] == slots[j - 1] + 1) ++j;
        out.push_back({i, slots[i], static_cast<int32_t>(j - i)});
        i = j;
    }
    return out;
}

constexpr int kMinPoolSlots = 256;

}  // namespace

UpperKv::UpperKv(int nLayers, int kvDim, size_t elementBytes, int capacity, cudaStream_t compute)
    : m_nLayers(nLayers),
      m_rowBytes(static_cast<size_t>(kvDim) * elementBytes),
      m_capacity(capacity),
      m_compute(compute),
      m_placement(nLayers, 2ull * m_rowBytes) {}

Status UpperKv::init() {
    Result<kernels::Stream> s = kernels::Stream::create();
    if (!s)
        return s.error();
    m_copyStream = std::move(*s);
    for (kernels::Event* e : {&m_computeMark, &m_copyStart, &m_copyEnd}) {
        Result<kernels::Event> ev = kernels::Event::create(e != &m_computeMark);
        if (!ev)
            return ev.error();
        *e = std::move(*ev);
    }
    return {};
}

void UpperKv::configure(int watershed, uint64_t budgetBytes) {
    m_placement.configure(watershed, budgetBytes);
    m_k = {};
    m_v = {};
    m_pos = {};
    m_poolSlots = 0;
    m_free.clear();
    m_pending.clear();
    m_rounds.clear();
    m_copying = false;
    m_layerReady.resize(static_cast<size_t>(upperLayers()));
}

uint8_t* UpperKv::keys(int layer) const {
    return const_cast<uint8_t*>(m_k.data()) +
           static_cast<size_t>(layer - watershed()) * static_cast<size_t>(m_poolSlots) * rowBytes();
}

uint8_t* UpperKv::values(int layer) const {
    return const_cast<uint8_t*>(m_v.data()) +
           static_cast<size_t>(layer - watershed()) * static_cast<size_t>(m_poolSlots) * rowBytes();
}

uint64_t UpperKv::poolBytes() const {
    return m_k.bytes() + m_v.bytes();
}

std::vector<int32_t> UpperKv::takeLowest(int n) {
    std::vector<int32_t> out(m_free.rbegin(), m_free.rbegin() + n);
    m_free.resize(m_free.size() - static_cast<size_t>(n));
    return out;
}

void UpperKv::give(const std::vector<int32_t>& slots, size_t from) {
    if (from >= slots.size())
        return;
    m_free.insert(m_free.end(), slots.begin() + static_cast<std::ptrdiff_t>(from), slots.end());
    std::sort(m_free.begin(), m_free.end(), std::greater<>());
}

Result<UpperKv::Pool> UpperKv::allocatePool(int slots) const {
    Pool p;
    p.slots = slots;
    auto k = kernels::DeviceBuffer<uint8_t>::create(static_cast<size_t>(slots) * rowBytes() *
                                                    static_cast<size_t>(upperLayers()));
    if (!k)
        return k.error();
    auto v = kernels::DeviceBuffer<uint8_t>::create(k->size());
    if (!v)
        return v.error();
    auto pos = kernels::DeviceBuffer<int32_t>::create(static_cast<size_t>(slots));
    if (!pos)
        return pos.error();
    p.k = std::move(*k);
    p.v = std::move(*v);
    p.pos = std::move(*pos);
    // Recalled copies into the old pool must be done before anything is copied out of it.
    RC_TRY(kernels::cudaStatus(cudaStreamWaitEvent(m_compute, m_copyEnd.get(), 0), "KV pool resize"));
    return p;
}

Status UpperKv::usePool(Pool pool, uint64_t* generation) {
    RC_TRY(kernels::cudaStatus(cudaStreamSynchronize(m_compute), "KV pool resize"));  // the old pool's last reads
    m_k = std::move(pool.k);
    m_v = std::move(pool.v);
    m_pos = std::move(pool.pos);
    m_poolSlots = pool.slots;
    if (generation)
        ++*generation;
    return {};
}

Status UpperKv::grow(int freeNeeded, uint64_t* generation) {
    const int have = static_cast<int>(m_free.size());
    if (have >= freeNeeded)
        return {};
    const int slots =
        std::min(m_capacity, std::max({m_poolSlots + freeNeeded - have, m_poolSlots * 3 / 2, kMinPoolSlots}));
    if (slots - m_poolSlots + have < freeNeeded)
        return makeError(ErrorCode::ContextFull,
                         "the upper-layer KV pool cannot hold " + std::to_string(freeNeeded) + " more tokens");
    Result<Pool> pool = allocatePool(slots);
    if (!pool)
        return pool.error();
    // Slots keep their numbers: each layer's block of the old pool goes to the start of the new one's.
    const size_t layerBytes = static_cast<size_t>(slots) * rowBytes();
    const size_t oldBytes = static_cast<size_t>(m_poolSlots) * rowBytes();
    for (int l = 0; l < upperLayers() && m_poolSlots > 0; ++l) {
        const size_t to = static_cast<size_t>(l) * layerBytes, from = static_cast<size_t>(l) * oldBytes;
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(pool->k.data() + to, m_k.data() + from, oldBytes,
                                                   cudaMemcpyDeviceToDevice, m_compute),
                                   "KV pool grow"));
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(pool->v.data() + to, m_v.data() + from, oldBytes,
                                                   cudaMemcpyDeviceToDevice, m_compute),
                                   "KV pool grow"));
    }
    if (m_poolSlots > 0)
        RC_TRY(kernels::cudaStatus(
            cudaMemcpyAsync(pool->pos.data(), m_pos.data(), m_pos.bytes(), cudaMemcpyDeviceToDevice, m_compute),
            "KV pool grow"));
    for (int s = m_poolSlots; s < slots; ++s) m_free.push_back(s);
    std::sort(m_free.begin(), m_free.end(), std::greater<>());
    return usePool(std::move(*pool), generation);
}

Status UpperKv::shrink(int freeNeeded, uint64_t* generation) {
    int live = 0;
    for (const auto& [id, r] : m_rounds) live += static_cast<int>(r.slots.size());
    const int needed = std::max(kMinPoolSlots, live + freeNeeded);
    if (m_poolSlots <= 2 * needed || !m_pending.empty())
        return {};
    Result<Pool> pool = allocatePool(std::min(m_capacity, needed * 3 / 2));
    if (!pool)
        return {};  // keeping the bigger pool is always possible
    // The resident rounds' slots are packed at the front of the new pool, in round-id order.
    const size_t layerBytes = static_cast<size_t>(pool->slots) * rowBytes();
    const size_t oldLayerBytes = static_cast<size_t>(m_poolSlots) * rowBytes();
    int32_t next = 0;
    for (auto& [id, r] : m_rounds) {
        for (const Run& run : runsOf(r.slots, r.slots.size())) {
            const size_t bytes = static_cast<size_t>(run.count) * rowBytes();
            const int32_t to = next + static_cast<int32_t>(run.row);
            for (int l = 0; l < upperLayers(); ++l) {
                const size_t dst = static_cast<size_t>(l) * layerBytes + static_cast<size_t>(to) * rowBytes();
                const size_t src = static_cast<size_t>(l) * oldLayerBytes + static_cast<size_t>(run.slot) * rowBytes();
                RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(pool->k.data() + dst, m_k.data() + src, bytes,
                                                           cudaMemcpyDeviceToDevice, m_compute),
                                           "KV pool shrink"));
                RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(pool->v.data() + dst, m_v.data() + src, bytes,
                                                           cudaMemcpyDeviceToDevice, m_compute),
                                           "KV pool shrink"));
            }
            RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(pool->pos.data() + to, m_pos.data() + run.slot,
                                                       static_cast<size_t>(run.count) * sizeof(int32_t),
                                                       cudaMemcpyDeviceToDevice, m_compute),
                                       "KV pool shrink"));
        }
        for (int32_t& slot : r.slots) slot = next++;
    }
    m_free.clear();
    for (int32_t s = pool->slots - 1; s >= next; --s) m_free.push_back(s);
    return usePool(std::move(*pool), generation);
}

Status UpperKv::uploadPositions(const std::vector<int32_t>& slots, int firstPosition) {
    std::vector<int32_t> pos;
    for (const Run& r : runsOf(slots, slots.size())) {
        pos.resize(static_cast<size_t>(r.count));
        for (int32_t i = 0; i < r.count; ++i)
            pos[static_cast<size_t>(i)] = firstPosition + static_cast<int32_t>(r.row) + i;
        RC_TRY(kernels::cudaStatus(cudaMemcpyAsync(m_pos.data() + r.slot, pos.data(), pos.size() * sizeof(int32_t),
                                                   cudaMemcpyHostToDevice, m_compute),
                                   "KV positions upload"));
    }
    return {};
}

Status UpperKv::reserve(int n, int firstPosition, uint64_t* generation) {
    // A batch begun but never finished leaves its slots behind.
    give(std::exchange(m_pending, {}), 0);
    RC_TRY(shrink(n, generation));
    RC_TRY(grow(n, generation));
    m_pending = takeLowest(n);
    return uploadPositions(m_pending, firstPosition);
}

void UpperKv::commit(uint64_t id) {
    std::vector<int32_t>& s = m_rounds[id].slots;
    s.insert(s.end(), m_pending.begin(), m_pending.end());
    m_pending.clear();
}

std::vector<int32_t> UpperKv::slots(uint64_t id) const {
    const auto it = m_rounds.find(id);
    return it == m_rounds.end() ? std::vector<int32_t>{} : it->second.slots;
}

Status UpperKv::recall(const KvRoundTable& table, std::span<const int> rounds, uint64_t* generation) {
    m_copying = false;
    const KvPlacement::Plan plan = m_placement.recall(table, rounds);
    for (uint64_t id : plan.evict) {
        Round& r = m_rounds[id];
        give(std::exchange(r.slots, {}), 0);
    }
    int need = 0;
    for (int r : plan.copy) {
        need += table.round(r).tokenCount;
        if (m_rounds[table.round(r).id].hostTokens < table.round(r).tokenCount)
            return makeError(ErrorCode::GpuError,
                             "upper-layer KV of round " + std::to_string(r) + " is not on the host");
    }
    if (plan.copy.empty())
        return {};
    RC_TRY(grow(need, generation));
    (void)copyMs();  // fold the previous recall's timing before its events are reused
    const cudaStream_t cs = m_copyStream.get();
    RC_TRY(m_computeMark.record(m_compute));  // evicted slots may still be read by earlier kernels
    RC_TRY(kernels::cudaStatus(cudaStreamWaitEvent(cs, m_computeMark.get(), 0), "KV recall"));
    RC_TRY(m_copyStart.record(cs));
    std::vector<std::vector<Run>> runs;
    for (int r : plan.copy) {
        const KvRound& round = table.round(r);
        Round& st = m_rounds[round.id];
        st.slots = takeLowest(round.tokenCount);
        RC_TRY(uploadPositions(st.slots, round.firstPosition));
        runs.push_back(runsOf(st.slots, st.slots.size()));
    }
    for (int l = 0; l < upperLayers(); ++l) {
        for (size_t i = 0; i < plan.copy.size(); ++i) {
            const Round& st = m_rounds[table.round(plan.copy[i]).id];
            for (int kv = 0; kv < 2; ++kv) {
                uint8_t* pool = (kv == 0 ? m_k.data() : m_v.data()) +
                                static_cast<size_t>(l) * static_cast<size_t>(m_poolSlots) * rowBytes();
                const uint8_t* host = st.hostData() + static_cast<size_t>(2 * l + kv) *
                                                          static_cast<size_t>(st.hostCapacity) * rowBytes();
                for (const Run& run : runs[i])
                    RC_TRY(kernels::cudaStatus(
                        cudaMemcpyAsync(pool + static_cast<size_t>(run.slot) * rowBytes(), host + run.row * rowBytes(),
                                        static_cast<size_t>(run.count) * rowBytes(),
                                        cudaMemcpyHostToDevice, cs),
                        "KV recall"));
            }
        }
        if (!m_layerReady[static_cast<size_t>(l)].get()) {
            Result<kernels::Event> e = kernels::Event::create(false);
            if (!e)
                return e.error();
            m_layerReady[static_cast<size_t>(l)] = std::move(*e);
        }
        RC_TRY(m_layerReady[static_cast<size_t>(l)].record(cs));
    }
    RC_TRY(m_copyEnd.record(cs));
    m_timingPending = true;
    m_copying = true;
    return {};
}

Status UpperKv::waitLayer(int layer) {
    if (!m_copying)
        return {};
    return kernels::cudaStatus(
        cudaStreamWaitEvent(m_compute, m_layerReady[static_cast<size_t>(layer - watershed())].get(), 0),
        "KV recall wait");
}

double UpperKv::copyMs() const {
    if (m_timingPending) {
        m_timingPending = false;
        // Elapsed time needs both events completed.
        Result<float> ms = m_copyEnd.synchronize().ok() ? kernels::Event::elapsedMs(m_copyStart, m_copyEnd)
                                                        : Result<float>(Error{ErrorCode::GpuError, "copy timing"});
        if (ms)
            m_copyMs += *ms;
    }
    return m_copyMs;
}

Status UpperKv::flush(const KvRoundTable& table, int round) {
    const KvRound& r = table.round(round);
    Round& st = m_rounds[r.id];
    const int tokens = r.tokenCount;
    if (tokens == 0 || st.hostTokens >= tokens)
        return {};
    if (static_cast<int>(st.slots.size()) < tokens)
        return makeError(ErrorCode::GpuError, "upper-layer KV of round " + std::to_string(round) + " is lost");
    if (st.hostCapacity < tokens || !st.adopted.empty()) {
        // The old copy may still be read by a recall: the free below waits for the device. An adopted image is
        // replaced rather than written to: it is pageable and sized for the restored tokens only.
        auto host = kernels::PinnedBuffer<uint8_t>::create(static_cast<size_t>(2 * upperLayers()) *
                                                           static_cast<size_t>(tokens) * rowBytes());
        if (!host)
            return host.error();
        st.host = std::move(*host);
        st.adopted = {};
        st.hostCapacity = tokens;
    }
    const std::vector<Run> runs = runsOf(st.slots, static_cast<size_t>(tokens));
    for (int l = 0; l < upperLayers(); ++l) {
        for (int kv = 0; kv < 2; ++kv) {
            const uint8_t* pool = (kv == 0 ? m_k.data() : m_v.data()) +
                                  static_cast<size_t>(l) * static_cast<size_t>(m_poolSlots) * rowBytes();
            uint8_t* host =
                st.host.data() + static_cast<size_t>(2 * l + kv) * static_cast<size_t>(st.hostCapacity) * rowBytes();
            for (const Run& run : runs)
                RC_TRY(kernels::cudaStatus(
                    cudaMemcpyAsync(host + run.row * rowBytes(), pool + static_cast<size_t>(run.slot) * rowBytes(),
                                    static_cast<size_t>(run.count) * rowBytes(),
                                    cudaMemcpyDeviceToHost, m_compute),
                    "KV flush"));
        }
    }
    st.hostTokens = tokens;
    return {};
}

void UpperKv::release(const KvRoundTable& table) {
    std::map<uint64_t, int> live;
    for (const KvRound& r : table.rounds()) live[r.id] = r.tokenCount;
    for (auto it = m_rounds.begin(); it != m_rounds.end();) {
        const auto l = live.find(it->first);
        if (l == live.end()) {
            give(it->second.slots, 0);
            it = m_rounds.erase(it);
            continue;
        }
        const size_t keep = std::min(it->second.slots.size(), static_cast<size_t>(l->second));
        give(it->second.slots, keep);
        it->second.slots.resize(keep);
        it->second.hostTokens = std::min(it->second.hostTokens, l->second);
        ++it;
    }
    m_placement.prune(table);
}

Status UpperKv::read(const KvRound& round, int first, int count, uint8_t* out) const {
    const int tokens = round.tokenCount;
    const auto it = m_rounds.find(round.id);
    const size_t block = static_cast<size_t>(tokens) * rowBytes();
    if (tokens == 0)
        return {};
    if (it == m_rounds.end())
        return makeError(ErrorCode::GpuError, "no upper-layer KV for the round");
    const Round& st = it->second;
    RC_TRY(kernels::cudaStatus(cudaStreamSynchronize(m_compute), "KV read"));
    const bool onDevice = static_cast<int>(st.slots.size()) >= tokens;
    if (!onDevice && st.hostTokens < tokens)
        return makeError(ErrorCode::GpuError, "upper-layer KV of the round is lost");
    const std::vector<Run> runs = runsOf(st.slots, onDevice ? static_cast<size_t>(tokens) : 0);
    for (int l = first; l < first + count; ++l) {
        const int u = l - watershed();
        for (int kv = 0; kv < 2; ++kv, out += block) {
            if (!onDevice) {
                std::memcpy(out, st.hostData() + static_cast<size_t>(2 * u + kv) * st.hostCapacity * rowBytes(),
                            block);
                continue;
            }
            const uint8_t* pool = (kv == 0 ? keys(l) : values(l));
            for (const Run& run : runs)
                RC_TRY(kernels::cudaStatus(
                    cudaMemcpyAsync(out + run.row * rowBytes(), pool + static_cast<size_t>(run.slot) * rowBytes(),
                                    static_cast<size_t>(run.count) * rowBytes(),
                                    cudaMemcpyDeviceToHost, m_compute),
                    "KV read"));
        }
    }
    return kernels::cudaStatus(cudaStreamSynchronize(m_compute), "KV read");
}

void UpperKv::adopt(uint64_t id, int tokens, std::vector<uint8_t> image, size_t offset) {
    Round& st = m_rounds[id];
    give(std::exchange(st.slots, {}), 0);
    st.host = {};
    st.adopted = std::move(image);
    st.adoptedOffset = offset;
    st.hostCapacity = tokens;
    st.hostTokens = tokens;
}

}  // namespace inference
