// Rotary position embedding on the GPU: Llama "NORM" RoPE (adjacent pairs) of activations, and re-rotation of
// keys already in the KV cache, fp16 or float32 (CPU references: ropeRef, ropeShiftRef). Angles are computed in
// double, as in the reference, because positions reach 1e5 where a float angle loses digits.
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/kv_type.h"
#include "roundchat/result.h"

namespace kernels {

// Rotates x in place. x: (nTokens, nHeads, headDim) device float32; positions: (nTokens) device int32.
// ropeDim <= headDim, even.
roundchat::Status rope(cudaStream_t stream, float* x, const int32_t* positions, int nTokens, int nHeads, int headDim,
                       int ropeDim, float freqBase);

// Re-rotates cached keys from fromPositions to toPositions (rotation by the difference): row slots[t] of dst
// becomes row slots[t] of src rotated, its dims past ropeDim copied unchanged. dst may be src (in place); otherwise
// a scratch copy of the cache (Round Attention reads recalled rounds at shifted positions this way, the stored keys
// unchanged). src, dst: (capacity, nHeads, headDim) device, elements of kvType; slots: (nTokens) device int32
// distinct rows; fromPositions, toPositions: (nTokens) device int32.
roundchat::Status ropeShift(cudaStream_t stream, const void* src, void* dst, KvType kvType, const int32_t* slots,
                            const int32_t* fromPositions, const int32_t* toPositions, int nTokens, int nHeads,
                            int headDim, int ropeDim, float freqBase);

}  // namespace kernels
