// Where a context's KV lives under Round Attention (docs/PAPERS.md A2.5): layers [0, watershed) of every round stay
// on the device; the upper layers [watershed, nLayers) of committed rounds live in host memory, and the device holds
// them only for the rounds an upper-layer pass attends to, the batch's own round, and a cache of recently used rounds
// of at most budgetBytes (least recently used evicted first). watershed == nLayers: everything on the device.
//
// KvPlacement is the bookkeeping of which rounds' upper layers are on the device, keyed by KvRound::id and free of
// any device: the CUDA context carries out its plans (frees slots, copies host -> device), the CPU context keeps it
// for the same accounting, so both backends report the same residency (in their own bytes per value).
// Ownership/threading: a plain value owned by one backend context.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "inference/kv_cache.h"

namespace inference {

class KvPlacement {
public:
    // bytesPerTokenLayer: K + V of one token in one layer as the device stores them.
    KvPlacement(int nLayers, uint64_t bytesPerTokenLayer);

    int nLayers() const { return m_nLayers; }
    int watershed() const { return m_watershed; }
    uint64_t budgetBytes() const { return m_budget; }
    bool split() const { return m_watershed < m_nLayers; }
    // Upper-layer bytes of `tokens` tokens.
    uint64_t upperBytes(int tokens) const;

    // A new watershed (clamped to [1, nLayers]) leaves no upper layers resident: the caller moved them to the host.
    // The same watershed keeps the residency and only changes the budget (applied at the next recall).
    void configure(int watershed, uint64_t budgetBytes);

    struct Plan {
        std::vector<uint64_t> evict;  // ids whose upper layers leave the device
        std::vector<int> copy;        // round indices whose upper layers come from the host, ascending
        uint64_t copyBytes = 0;
    };
    // An upper-layer pass attends `rounds` (ascending round indices) and the table's last round (the batch's own):
    // they become resident and most recently used; then the other resident rounds are evicted, least recently
    // used first, until they hold at most the budget.
    Plan recall(const KvRoundTable& table, std::span<const int> rounds);
    // Forgets rounds that left the table.
    void prune(const KvRoundTable& table);
    // Nothing resident any more (returns the ids that were).
    std::vector<uint64_t> evictAll();

    bool isResident(uint64_t id) const;
    // Committed KV bytes on the device: every round's lower layers plus the resident rounds' upper layers.
    uint64_t deviceBytes(const KvRoundTable& table) const;
    // Upper-layer bytes the recalls have copied from the host so far.
    uint64_t bytesCopied() const { return m_bytesCopied; }

private:
    int m_nLayers = 0;
    int m_watershed = 0;
    uint64_t m_bytesPerTokenLayer = 0;
    uint64_t m_budget = 0;
    uint64_t m_bytesCopied = 0;
    std::vector<uint64_t> m_lru;  // resident round ids, least recently used first
};

}  // namespace inference
