// Attention over the KV cache (fp16 or float32 elements, KvType) on the GPU (CPU references: attentionRef,
// attentionMergeRef).
// The cache is organised per round: the keys a query may see are a list of spans of cache slots (round segments)
// in logical order, and a key at position x is visible to a query at position p iff minLag <= p - x <= maxLag (by
// default 0 and INT_MAX: causal; inter-layer KV sharing attends to its window and its distant keys as two lag bands
// of the same span list, inference/kv_sharing.h). One kernel serves prefill (many query tokens, masked by
// position, flash-style online softmax over key tiles) and decode (one token, split-K over the keys into nSplits
// partial results with their log-sum-exp, merged by a second kernel).
// Head dims 64 and 128 over an fp16 cache run on fp16 tensor cores (sm_75+): the scaled queries and the probabilities
// are rounded to fp16 (scores and outputs within ~1e-3 of float maths); other head dims, and every head dim over a
// float32 cache, use float maths throughout.
// Spans, their count and positions live in device memory, so a captured decode graph reads each step's values.
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "kernels/kv_type.h"
#include "roundchat/result.h"

namespace kernels {

constexpr int kAttentionMaxHeadDim = 128;

// count consecutive cache slots from start.
struct KvSpan {
    int32_t start = 0;
    int32_t count = 0;
};

struct AttentionArgs {
    const float* q = nullptr;         // (nQ, nHeads, headDim) device float32, not yet scaled
    const int32_t* qPos = nullptr;    // (nQ) device: absolute position of each query token
    const void* k = nullptr;          // (capacity, nKvHeads, headDim) device, elements of kvType
    const void* v = nullptr;          // (capacity, nKvHeads, headDim) device, elements of kvType
    KvType kvType = KvType::F16;
    const int32_t* kvPos = nullptr;   // (capacity) device: absolute position of each cache slot
    const KvSpan* spans = nullptr;    // (*nSpans) device, visible slots in logical order
    const int32_t* nSpans = nullptr;  // one device int32
    float* out = nullptr;             // (nQ, nHeads, headDim) device float32
    float* lse = nullptr;             // (nQ, nHeads) device float32: log of the softmax denominator; may be null
    float* workspace = nullptr;       // attentionWorkspaceFloats(...) device floats; may be null when nSplits == 1
    int nQ = 0;
    int nHeads = 0;
    int nKvHeads = 0;  // divides nHeads; query head h reads kv head h / (nHeads / nKvHeads)
    int headDim = 0;   // a multiple of 8, at most kAttentionMaxHeadDim
    int nSplits = 1;   // key ranges computed in parallel (decode: enough blocks to fill the GPU)
    float scale = 1.0f;
    // Lag band (positions): key x is visible to query p iff minLag <= p - x <= maxLag; 0 <= minLag <= maxLag.
    int minLag = 0;
    int maxLag = INT_MAX;
};

// Floats of workspace attention() needs for nSplits > 1.
size_t attentionWorkspaceFloats(int nQ, int nHeads, int headDim, int nSplits);

// A query that sees no key gets out = 0 and lse = -inf.
roundchat::Status attention(cudaStream_t stream, const AttentionArgs& args);

// Writes new keys/values into cache slots: kCache[slots[t], :] = k[t, :] as kvType (fp16: rounded to nearest even),
// the same for v. k, v: (nTokens, kvDim) device float32; kCache, vCache: (capacity, kvDim) device, elements of
// kvType; slots: (nTokens) device.
roundchat::Status kvStore(cudaStream_t stream, const float* k, const float* v, void* kCache, void* vCache,
                          KvType kvType, const int32_t* slots, int nTokens, int kvDim);

}  // namespace kernels
