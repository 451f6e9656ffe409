// Round bookkeeping and float32 host storage of the KV cache.
#include "inference/kv_cache.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <new>
#include <string>

#include "kernels/ggml_types.h"

namespace inference {

static_assert(std::endian::native == std::endian::little, "snapshots are little-endian float32 copied as bytes");

// ---- KvRoundTable ----

int KvRoundTable::maxPosition() const {
    for (auto it = m_rounds.rbegin(); it != m_rounds.rend(); ++it)
        if (it->tokenCount > 0)
            return it->firstPosition + it->tokenCount - 1;
    return -1;
}

int KvRoundTable::nextPosition() const {
    if (m_rounds.empty())
        return 0;
    return m_rounds.back().firstPosition + m_rounds.back().tokenCount;
}

Status KvRoundTable::beginRound() {
    return beginRoundAt(nextPosition());
}

Status KvRoundTable::beginRoundAt(int firstPosition) {
    if (firstPosition < nextPosition())
        return makeError(ErrorCode::InvalidArgument, "round would start at position " + std::to_string(firstPosition) +
                                                         ", before the next free position " +
                                                         std::to_string(nextPosition()));
    m_rounds.push_back(KvRound{m_nextId++, firstPosition, 0});
    return {};
}

Status KvRoundTable::checkAppend(int nTokens) const {
    if (m_rounds.empty())
        return makeError(ErrorCode::InvalidArgument, "no round to append to: call beginRound() first");
    if (nTokens < 0)
        return makeError(ErrorCode::InvalidArgument, "negative token count");
    if (m_tokenCount + nTokens > m_capacity)
        return makeError(ErrorCode::ContextFull, std::to_string(m_tokenCount) + " tokens cached + " +
                                                     std::to_string(nTokens) + " new exceed the context of " +
                                                     std::to_string(m_capacity));
    return {};
}

void KvRoundTable::commitAppend(int nTokens) {
    m_rounds.back().tokenCount += nTokens;
    m_tokenCount += nTokens;
}

Status KvRoundTable::keepRounds(int n) {
    if (n < 0 || n > roundCount())
        return makeError(ErrorCode::InvalidArgument,
                         "cannot keep " + std::to_string(n) + " of " + std::to_string(roundCount()) + " rounds");
    return removeRounds(n, roundCount());
}

Status KvRoundTable::removeRounds(int first, int last) {
    if (first < 0 || last > roundCount() || first > last)
        return makeError(ErrorCode::InvalidArgument, "round range [" + std::to_string(first) + ", " +
                                                         std::to_string(last) + ") is outside 0.." +
                                                         std::to_string(roundCount()));
    for (int r = first; r < last; ++r) m_tokenCount -= m_rounds[static_cast<size_t>(r)].tokenCount;
    m_rounds.erase(m_rounds.begin() + first, m_rounds.begin() + last);
    return {};
}

Status KvRoundTable::dropTail(int nTokens) {
    if (m_rounds.empty() || nTokens < 0 || nTokens > m_rounds.back().tokenCount)
        return makeError(ErrorCode::InvalidArgument,
                         "cannot drop " + std::to_string(nTokens) + " tokens from the last round");
    m_rounds.back().tokenCount -= nTokens;
    m_tokenCount -= nTokens;
    return {};
}

// ---- KvCache ----

uint64_t snapshotBytes(const KvLayout& layout, int layerCount, int tokenCount) {
    return 2ull * static_cast<uint64_t>(layerCount) * static_cast<uint64_t>(tokenCount) *
           static_cast<uint64_t>(layout.tokenFloats()) * sizeof(float);
}

Status convertSnapshot(RoundKvSnapshot& snapshot, std::string_view dtype) {
    auto elementBytes = [](std::string_view d) -> size_t { return d == "f32" ? 4 : d == "f16" ? 2 : 0; };
    const size_t from = elementBytes(snapshot.dtype), to = elementBytes(dtype);
    if (from == 0 || to == 0)
        return makeError(ErrorCode::Unsupported, "KV snapshot dtype '" + (from == 0 ? snapshot.dtype : std::string(dtype)) +
                                                     "' (f32 and f16 are known)");
    if (from == to)
        return {};
    const size_t n = snapshot.bytes.size() / from;
    std::vector<uint8_t> out;
    try {
        out.resize(n * to);
    } catch (const std::bad_alloc&) {
        return makeError(ErrorCode::OutOfMemory, "KV snapshot conversion");
    }
    const uint8_t* in = snapshot.bytes.data();
    for (size_t i = 0; i < n; ++i) {
        if (to == sizeof(uint16_t)) {
            float f;
            std::memcpy(&f, in + i * sizeof f, sizeof f);
            const uint16_t h = kernels::floatToFp16(f);
            std::memcpy(out.data() + i * sizeof h, &h, sizeof h);
        } else {
            uint16_t h;
            std::memcpy(&h, in + i * sizeof h, sizeof h);
            const float f = kernels::fp16ToFloat(h);
            std::memcpy(out.data() + i * sizeof f, &f, sizeof f);
        }
    }
    snapshot.bytes = std::move(out);
    snapshot.dtype = std::string(dtype);
    return {};
}

KvCache::KvCache(KvLayout layout, int capacityTokens) : m_layout(layout), m_table(capacityTokens) {}

Status KvCache::beginRound() {
    return openRound(m_table.nextPosition());
}

Status KvCache::openRound(int firstPosition) {
    try {
        RoundStorage storage;
        storage.k.resize(static_cast<size_t>(m_layout.nLayers));
        storage.v.resize(static_cast<size_t>(m_layout.nLayers));
        m_storage.push_back(std::move(storage));
    } catch (const std::bad_alloc&) {
        return makeError(ErrorCode::OutOfMemory, "KV cache round");
    }
    if (Status st = m_table.beginRoundAt(firstPosition); !st) {
        m_storage.pop_back();
        return st;
    }
    return {};
}

Status KvCache::keepRounds(int n) {
    RC_TRY(m_table.keepRounds(n));
    m_storage.resize(static_cast<size_t>(n));
    return {};
}

Status KvCache::removeRounds(int first, int last) {
    RC_TRY(m_table.removeRounds(first, last));
    m_storage.erase(m_storage.begin() + first, m_storage.begin() + last);
    return {};
}

Status KvCache::dropTail(int nTokens) {
    return m_table.dropTail(nTokens);
}

Status KvCache::growLast(int tokens) {
    const size_t need = static_cast<size_t>(tokens) * static_cast<size_t>(m_layout.tokenFloats());
    RoundStorage& s = m_storage.back();
    try {
        // Grow geometrically so a decode loop of single tokens does not reallocate every step. All layers are
        // grown before any is touched by the caller, so a bad_alloc midway leaves committed data intact.
        for (int l = 0; l < m_layout.nLayers; ++l) {
            for (std::vector<float>* buf : {&s.k[static_cast<size_t>(l)], &s.v[static_cast<size_t>(l)]}) {
                if (buf->size() < need) {
                    buf->reserve(std::max(need, buf->size() * 2));
                    buf->resize(need);
                }
            }
        }
    } catch (const std::bad_alloc&) {
        return makeError(ErrorCode::OutOfMemory, "KV cache: " + std::to_string(tokens) + " tokens in one round");
    }
    return {};
}

Status KvCache::reserve(int nTokens) {
    RC_TRY(m_table.checkAppend(nTokens));
    return growLast(m_table.rounds().back().tokenCount + nTokens);
}

float* KvCache::pendingKeys(int layer) {
    return m_storage.back().k[static_cast<size_t>(layer)].data() +
           static_cast<int64_t>(m_table.rounds().back().tokenCount) * m_layout.tokenFloats();
}

float* KvCache::pendingValues(int layer) {
    return m_storage.back().v[static_cast<size_t>(layer)].data() +
           static_cast<int64_t>(m_table.rounds().back().tokenCount) * m_layout.tokenFloats();
}

void KvCache::commit(int nTokens) {
    m_table.commitAppend(nTokens);
}

const float* KvCache::keys(int round, int layer) const {
    return m_storage[static_cast<size_t>(round)].k[static_cast<size_t>(layer)].data();
}

const float* KvCache::values(int round, int layer) const {
    return m_storage[static_cast<size_t>(round)].v[static_cast<size_t>(layer)].data();
}

uint64_t KvCache::bytes(int firstLayer, int lastLayer) const {
    return snapshotBytes(m_layout, lastLayer - firstLayer, m_table.tokenCount());
}

Result<RoundKvSnapshot> KvCache::exportRound(int round, int firstLayer, int layerCount) const {
    if (round < 0 || round >= m_table.roundCount())
        return makeError(ErrorCode::InvalidArgument, "no round " + std::to_string(round));
    if (firstLayer < 0 || layerCount < 0 || firstLayer + layerCount > m_layout.nLayers)
        return makeError(ErrorCode::InvalidArgument, "layer range outside the model");
    RoundKvSnapshot snap;
    snap.round = round;
    snap.firstLayer = firstLayer;
    snap.layerCount = layerCount;
    snap.tokenCount = m_table.round(round).tokenCount;
    snap.dtype = "f32";
    const size_t blockBytes = static_cast<size_t>(snap.tokenCount) * m_layout.tokenFloats() * sizeof(float);
    try {
        snap.bytes.resize(snapshotBytes(m_layout, layerCount, snap.tokenCount));
    } catch (const std::bad_alloc&) {
        return makeError(ErrorCode::OutOfMemory, "KV snapshot");
    }
    uint8_t* out = snap.bytes.data();
    for (int l = firstLayer; l < firstLayer + layerCount; ++l) {
        if (blockBytes == 0)
            break;
        std::memcpy(out, keys(round, l), blockBytes);
        std::memcpy(out + blockBytes, values(round, l), blockBytes);
        out += 2 * blockBytes;
    }
    return snap;
}

Status KvCache::importRound(const RoundKvSnapshot& snapshot, int firstPosition) {
    if (snapshot.dtype != "f32")
        return makeError(ErrorCode::Unsupported,
                         "KV snapshot dtype '" + snapshot.dtype + "' (the CPU cache needs f32)");
    if (snapshot.firstLayer != 0 || snapshot.layerCount != m_layout.nLayers)
        return makeError(ErrorCode::Mismatch, "KV snapshot covers layers [" + std::to_string(snapshot.firstLayer) +
                                                  ", +" + std::to_string(snapshot.layerCount) + "), the model has " +
                                                  std::to_string(m_layout.nLayers));
    if (snapshot.tokenCount < 0 ||
        snapshot.bytes.size() != snapshotBytes(m_layout, snapshot.layerCount, snapshot.tokenCount))
        return makeError(ErrorCode::CorruptFile,
                         "KV snapshot has " + std::to_string(snapshot.bytes.size()) + " bytes, expected " +
                             std::to_string(snapshotBytes(m_layout, snapshot.layerCount, snapshot.tokenCount)));
    if (firstPosition < m_table.nextPosition())
        return makeError(ErrorCode::InvalidArgument, "restored round overlaps the positions of earlier rounds");
    if (m_table.tokenCount() + snapshot.tokenCount > m_table.capacity())
        return makeError(ErrorCode::ContextFull, "restored round does not fit the context");
    const int countBefore = m_table.roundCount();
    RC_TRY(openRound(firstPosition));
    if (Status st = growLast(snapshot.tokenCount); !st) {
        (void)keepRounds(countBefore);  // undo the new round
        return st;
    }
    const size_t blockBytes = static_cast<size_t>(snapshot.tokenCount) * m_layout.tokenFloats() * sizeof(float);
    const uint8_t* in = snapshot.bytes.data();
    for (int l = 0; l < m_layout.nLayers && blockBytes > 0; ++l) {
        std::memcpy(pendingKeys(l), in, blockBytes);
        std::memcpy(pendingValues(l), in + blockBytes, blockBytes);
        in += 2 * blockBytes;
    }
    commit(snapshot.tokenCount);
    return {};
}

}  // namespace inference
