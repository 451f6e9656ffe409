// The upper layers' KV of a CUDA context under a split placement (kv_placement.h, docs/PAPERS.md A2.5): every
// committed round's layers [watershed, nLayers) in pinned host memory, and a device pool of slots that holds them
// for the rounds the current upper-layer pass attends to, the batch's own round and the VRAM-budget cache.
//
// Pool: (upper layers, poolSlots, kvDim) K and V plus (poolSlots) positions, grown on demand up to the context's
// capacity (the resident rounds never hold more tokens than the context) and shrunk at the next batch once less than
// half of it is in use. Host: per round, (upper layers, K then V, hostTokens, kvDim) in one PinnedBuffer, or in the
// snapshot buffer a restore handed over (adopt). Elements are the context's KV type (fp16 or float32), as bytes.
// A round's upper KV is always complete on the device (resident) or on the host: the batch's round is computed on the
// device and copied to the host when it stops being the last round (flush), before it can be evicted.
//
// Recalls copy host -> device on a second stream, one event per layer, so the compute stream waits for layer l's KV
// only when it reaches layer l. Ownership/threading: owned by one CudaContext, used by the inference thread only;
// borrows the context's compute stream.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "kernels/cuda_raii.h"
#include "kv_placement.h"

namespace inference {

class UpperKv {
public:
    // nLayers and kvDim of the model; elementBytes: bytes of one K/V element (kernels::kvTypeBytes); capacity: the
    // context's token capacity (the pool's ceiling).
    UpperKv(int nLayers, int kvDim, size_t elementBytes, int capacity, cudaStream_t compute);
    Status init();  // the copy stream and events

    const KvPlacement& placement() const { return m_placement; }
    bool split() const { return m_placement.split(); }
    int watershed() const { return m_placement.watershed(); }
    // Drops the pool and the host copies and takes the new placement; the caller re-writes the rounds (write()).
    void configure(int watershed, uint64_t budgetBytes);
    void setBudget(uint64_t budgetBytes) { m_placement.configure(m_placement.watershed(), budgetBytes); }

    // Device pool of an upper layer (watershed <= layer < nLayers), as bytes.
    uint8_t* keys(int layer) const;
    uint8_t* values(int layer) const;
    const int32_t* positions() const { return m_pos.data(); }
    uint64_t poolBytes() const;  // allocated

    // Reserves pool slots for a batch of n tokens of the last round (positions from firstPosition); `generation` is
    // bumped when the pool moves (captured graphs hold its pointers). OutOfGpuMemory leaves everything as it was.
    Status reserve(int n, int firstPosition, uint64_t* generation);
    const std::vector<int32_t>& pending() const { return m_pending; }
    void commit(uint64_t id);  // the pending slots join round id
    // Device slots of a round's committed tokens (empty: not resident).
    std::vector<int32_t> slots(uint64_t id) const;

    // Before an upper-layer pass over `rounds` (ascending, the last round implied): evicts, and copies the missing
    // rounds in on the copy stream. waitLayer(l) makes the compute stream wait for layer l's copies.
    Status recall(const KvRoundTable& table, std::span<const int> rounds, uint64_t* generation);
    bool copying() const { return m_copying; }
    Status waitLayer(int layer);

    // Copies round r's device KV to the host when the host copy is not complete (when it stops being the last).
    Status flush(const KvRoundTable& table, int round);
    // Forgets rounds that left the table and slots of tokens dropped from a round's tail.
    void release(const KvRoundTable& table);
    // Layers [first, first + count) (all upper) of a round, (layer, K then V, tokens, kvDim) in the KV type, from the
    // device when resident, else from the host. Synchronises.
    Status read(const KvRound& round, int first, int count, uint8_t* out) const;
    // Makes the (upper layers, K then V, tokens, kvDim) K/V at byte `offset` of `image` the round's host copy,
    // keeping the buffer: a restore then costs no pinned allocation (about 1.5 GB/s) and no copy. Such a copy is
    // pageable, so its recalls are staged by the driver; flush() gives the round pinned memory if it ever grows.
    // The round is not resident.
    void adopt(uint64_t id, int tokens, std::vector<uint8_t> image, size_t offset);

    uint64_t bytesCopied() const { return m_placement.bytesCopied(); }
    double copyMs() const;  // device time of every recall's copies so far (waits for the last one)

private:
    struct Round {
        std::vector<int32_t> slots;            // device slots of the committed tokens; empty: not resident
        kernels::PinnedBuffer<uint8_t> host;   // (upper layers, 2, hostCapacity, kvDim) elements
        std::vector<uint8_t> adopted;          // instead of `host` after adopt(): the image holding the copy
        size_t adoptedOffset = 0;              // bytes
        int hostCapacity = 0;
        int hostTokens = 0;  // valid tokens of the host copy
        const uint8_t* hostData() const { return adopted.empty() ? host.data() : adopted.data() + adoptedOffset; }
    };
    int upperLayers() const { return m_nLayers - m_placement.watershed(); }
    size_t rowBytes() const { return m_rowBytes; }  // one token's K (or V) of one layer
    struct Pool {
        kernels::DeviceBuffer<uint8_t> k, v;
        kernels::DeviceBuffer<int32_t> pos;
        int slots = 0;
    };
    // A pool of `slots` slots; the compute stream waits for the last recall's copies before it copies anything.
    Result<Pool> allocatePool(int slots) const;
    Status usePool(Pool pool, uint64_t* generation);  // after the copies into it are queued
    Status grow(int freeNeeded, uint64_t* generation);
    // Below half use (the rounds resident now plus freeNeeded, at least kMinPoolSlots), moves the resident rounds
    // to a pool of 1.5 times that: a turn that recalled many rounds does not keep their VRAM for good.
    Status shrink(int freeNeeded, uint64_t* generation);
    std::vector<int32_t> takeLowest(int n);
    void give(const std::vector<int32_t>& slots, size_t from);
    Status uploadPositions(const std::vector<int32_t>& slots, int firstPosition);

    int m_nLayers = 0;
    size_t m_rowBytes = 0;  // kvDim * element bytes
    int m_capacity = 0;
    cudaStream_t m_compute = nullptr;  // borrowed
    KvPlacement m_placement;
    kernels::Stream m_copyStream;
    std::vector<kernels::Event> m_layerReady;  // per upper layer: its copies of the last recall are done
    kernels::Event m_computeMark;              // the copy stream starts after the compute stream's work so far
    kernels::Event m_copyStart, m_copyEnd;     // timing of the last recall
    bool m_copying = false;                    // the last recall copied something the compute stream still waits for
    mutable bool m_timingPending = false;
    mutable double m_copyMs = 0.0;

    int m_poolSlots = 0;
    kernels::DeviceBuffer<uint8_t> m_k, m_v;   // (upper layers, m_poolSlots, kvDim) elements
    kernels::DeviceBuffer<int32_t> m_pos;      // (m_poolSlots)
    std::vector<int32_t> m_free;               // free pool slots, descending
    std::vector<int32_t> m_pending;            // the begun batch's slots
    std::map<uint64_t, Round> m_rounds;        // by KvRound::id
};

}  // namespace inference
