// Decode attention input in one launch (CPU reference: ropeKvStoreRef in kernels/fused_ref.h): RoPE of q and k
// straight from the fused QKV projection output, and the store of k and v into their KV-cache rows (fp16 or float32,
// KvType). Angles are computed in double, as in rope().
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kv_type.h"
#include "roundchat/result.h"

namespace kernels {

// Shapes and pointers of ropeKvStore (borrowed device memory).
struct RopeKvStoreArgs {
    const float* qkv = nullptr;        // (nTokens, (nHeads + 2 nKvHeads) headDim) float32 rows [q | k | v]
    float* q = nullptr;                // (nTokens, nHeads, headDim) float32: rotated q; must not alias qkv
    void* kCache = nullptr;            // (capacity, nKvHeads headDim) of kvType: rows slots[t] get rotated k
    void* vCache = nullptr;            // (capacity, nKvHeads headDim) of kvType: rows slots[t] get v
    KvType kvType = KvType::F16;
    const int32_t* positions = nullptr;  // (nTokens) absolute positions
    const int32_t* slots = nullptr;      // (nTokens) cache rows
    int nTokens = 0;
    int nHeads = 0;
    int nKvHeads = 0;
    int headDim = 0;  // even
    int ropeDim = 0;  // even, <= headDim; dims past it are copied
    float freqBase = 10000.0f;
};

roundchat::Status ropeKvStore(cudaStream_t stream, const RopeKvStoreArgs& args);

}  // namespace kernels
