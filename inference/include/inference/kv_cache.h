// The KV cache, organised by conversation round. Round r holds the tokens of one round (round 0: BOS + system
// prompt; later rounds: a user message and its answer) at contiguous absolute positions starting at firstPosition.
// Rounds may leave gaps between them (a removed round keeps later rounds at their original positions: keys are
// stored after RoPE, so they must never move).
//
// KvRoundTable is the bookkeeping shared by every backend (the CUDA cache mirrors its rounds on the device).
// KvCache adds float32 host storage: per round and layer, K and V of shape (tokenCount, nKvHeads, headDim).
//
// Updates are two-phase (style guide §10): reserve() validates and allocates without changing what is visible, the
// forward pass writes the pending K/V of every layer, commit() makes the tokens part of the round. A failing
// reserve leaves the cache as it was; an uncommitted reservation is simply overwritten by the next one.
//
// Ownership/threading: plain values owned by one backend context; not thread-safe. Workers may write disjoint
// pending slots of different layers concurrently.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "inference/session.h"
#include "roundchat/result.h"

namespace inference {

struct KvLayout {
    int nLayers = 0;
    int nKvHeads = 0;
    int headDim = 0;
    // Floats of K (and of V) per token per layer.
    int64_t tokenFloats() const { return static_cast<int64_t>(nKvHeads) * headDim; }
};

struct KvRound {
    uint64_t id = 0;        // unique for the table's lifetime, never reused (device mirrors key buffers by it)
    int firstPosition = 0;  // absolute position of token 0
    int tokenCount = 0;     // committed tokens
};

class KvRoundTable {
public:
    explicit KvRoundTable(int capacityTokens = 0) : m_capacity(capacityTokens) {}

    int capacity() const { return m_capacity; }  // most tokens the cache may hold, over all rounds
    int roundCount() const { return static_cast<int>(m_rounds.size()); }
    const KvRound& round(int r) const { return m_rounds[static_cast<size_t>(r)]; }
    std::span<const KvRound> rounds() const { return m_rounds; }
    int tokenCount() const { return m_tokenCount; }  // committed tokens over all rounds
    int maxPosition() const;                         // last committed position; -1 when empty
    int nextPosition() const;                        // position the next appended token gets

    // Opens a new, empty round at nextPosition(), or at firstPosition (>= nextPosition()) for restored rounds.
    Status beginRound();
    Status beginRoundAt(int firstPosition);
    // Validates an append of nTokens to the last round (a round exists; capacity: ContextFull).
    Status checkAppend(int nTokens) const;
    void commitAppend(int nTokens);  // precondition: checkAppend(nTokens) succeeded
    // Keeps rounds [0, n); drops the rest.
    Status keepRounds(int n);
    // Deletes rounds [first, last); later rounds keep their positions and move down to index first.
    Status removeRounds(int first, int last);
    // Drops the last nTokens tokens of the last round (regenerating an answer).
    Status dropTail(int nTokens);

private:
    std::vector<KvRound> m_rounds;
    int m_capacity = 0;
    int m_tokenCount = 0;
    uint64_t m_nextId = 0;
};

// Snapshot byte layout (RoundKvSnapshot::bytes, dtype "f32"): for each layer l in [firstLayer, firstLayer +
// layerCount), first K then V, each tokenCount * nKvHeads * headDim float32 values in little-endian byte order,
// row-major (token, kv head, dim). Keys are after RoPE at the round's original absolute positions. dtype "f16" is
// the same layout with IEEE half values (the CUDA cache's own type, half the bytes). A backend exports its cache's
// type, so that saving and restoring converts nothing, and imports both.
uint64_t snapshotBytes(const KvLayout& layout, int layerCount, int tokenCount);  // for dtype "f32"
// Converts a snapshot's values to dtype ("f32" or "f16") in place; Unsupported for another dtype.
Status convertSnapshot(RoundKvSnapshot& snapshot, std::string_view dtype);

class KvCache {
public:
    KvCache(KvLayout layout, int capacityTokens);

    const KvLayout& layout() const { return m_layout; }
    const KvRoundTable& table() const { return m_table; }

    Status beginRound();
    Status keepRounds(int n);
    Status removeRounds(int first, int last);
    Status dropTail(int nTokens);

    // Phase 1: validates and allocates room for nTokens more in the last round (OutOfMemory, ContextFull).
    Status reserve(int nTokens);
    // The reserved slot of a layer: (nTokens, nKvHeads, headDim), right after the last round's committed tokens.
    float* pendingKeys(int layer);
    float* pendingValues(int layer);
    // Phase 2: the reserved tokens become part of the last round. Precondition: reserve(nTokens) succeeded.
    void commit(int nTokens);

    // K/V of a round for a layer: (tokenCount [+ pending for the last round], nKvHeads, headDim).
    const float* keys(int round, int layer) const;
    const float* values(int round, int layer) const;

    // Committed bytes of K and V for layers [firstLayer, lastLayer) over all rounds.
    uint64_t bytes(int firstLayer, int lastLayer) const;

    // One round's K/V for layers [firstLayer, firstLayer + layerCount) (layout above; modelFingerprint left empty).
    Result<RoundKvSnapshot> exportRound(int round, int firstLayer, int layerCount) const;
    // Appends a new round at firstPosition from a snapshot covering every layer. Validates everything first.
    Status importRound(const RoundKvSnapshot& snapshot, int firstPosition);

private:
    struct RoundStorage {
        std::vector<std::vector<float>> k;  // per layer: (capacity tokens, nKvHeads, headDim)
        std::vector<std::vector<float>> v;
    };
    Status openRound(int firstPosition);
    Status growLast(int tokens);  // room for `tokens` in every layer of the last round

    KvLayout m_layout;
    KvRoundTable m_table;
    std::vector<RoundStorage> m_storage;  // parallel to m_table.rounds()
};

}  // namespace inference
