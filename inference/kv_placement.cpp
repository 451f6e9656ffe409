// Upper-layer residency bookkeeping of the Round Attention KV placement.
#include "kv_placement.h"

#include <algorithm>
#include <map>
#include <utility>

namespace inference {

namespace {

std::map<uint64_t, int> tokensById(const KvRoundTable& table) {
    std::map<uint64_t, int> out;
    for (const KvRound& r : table.rounds()) out[r.id] = r.tokenCount;
    return out;
}

}  // namespace

KvPlacement::KvPlacement(int nLayers, uint64_t bytesPerTokenLayer)
    : m_nLayers(nLayers), m_watershed(nLayers), m_bytesPerTokenLayer(bytesPerTokenLayer) {}

uint64_t KvPlacement::upperBytes(int tokens) const {
    return static_cast<uint64_t>(std::max(0, tokens)) * static_cast<uint64_t>(m_nLayers - m_watershed) *
           m_bytesPerTokenLayer;
}

void KvPlacement::configure(int watershed, uint64_t budgetBytes) {
    const int w = std::clamp(watershed, 1, std::max(1, m_nLayers));
    if (w != m_watershed)
        m_lru.clear();
    m_watershed = w;
    m_budget = budgetBytes;
}

KvPlacement::Plan KvPlacement::recall(const KvRoundTable& table, std::span<const int> rounds) {
    Plan plan;
    const int last = table.roundCount() - 1;
    std::vector<int> wanted(rounds.begin(), rounds.end());
    if (last >= 0 && (wanted.empty() || wanted.back() != last))
        wanted.push_back(last);
    for (int r : wanted) {
        const KvRound& round = table.round(r);
        const auto it = std::find(m_lru.begin(), m_lru.end(), round.id);
        if (it != m_lru.end()) {
            m_lru.erase(it);
        } else if (round.tokenCount > 0) {
            plan.copy.push_back(r);
            plan.copyBytes += upperBytes(round.tokenCount);
        }
        m_lru.push_back(round.id);  // most recently used last
    }
    // The rounds before the wanted ones in m_lru are the cache, least recently used first.
    const std::map<uint64_t, int> tokens = tokensById(table);
    const size_t cached = m_lru.size() - wanted.size();
    uint64_t cacheBytes = 0;
    for (size_t i = 0; i < cached; ++i) {
        const auto t = tokens.find(m_lru[i]);
        cacheBytes += t == tokens.end() ? 0 : upperBytes(t->second);
    }
    size_t evict = 0;
    while (evict < cached && cacheBytes > m_budget) {
        const auto t = tokens.find(m_lru[evict]);
        cacheBytes -= t == tokens.end() ? 0 : upperBytes(t->second);
        plan.evict.push_back(m_lru[evict++]);
    }
    m_lru.erase(m_lru.begin(), m_lru.begin() + static_cast<std::ptrdiff_t>(evict));
    m_bytesCopied += plan.copyBytes;
    return plan;
}

void KvPlacement::prune(const KvRoundTable& table) {
    const std::map<uint64_t, int> tokens = tokensById(table);
    std::erase_if(m_lru, [&](uint64_t id) { return !tokens.count(id); });
}

std::vector<uint64_t> KvPlacement::evictAll() {
    return std::exchange(m_lru, {});
}

bool KvPlacement::isResident(uint64_t id) const {
    return std::find(m_lru.begin(), m_lru.end(), id) != m_lru.end();
}

uint64_t KvPlacement::deviceBytes(const KvRoundTable& table) const {
    uint64_t bytes =
        static_cast<uint64_t>(table.tokenCount()) * static_cast<uint64_t>(m_watershed) * m_bytesPerTokenLayer;
    for (const KvRound& r : table.rounds())
        if (isResident(r.id))
            bytes += upperBytes(r.tokenCount);
    return bytes;
}

}  // namespace inference
