// Merging two partial attentions over disjoint key sets on the GPU (CPU reference: attentionMergeRef in
// kernels/reference.h). Inter-layer KV sharing (inference/kv_sharing.h) attends proximal keys and distant keys
// separately, each with kernels::attention returning its log-sum-exp, and merges them with this kernel.
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include "roundchat/result.h"

namespace kernels {

// outA/lseA = the softmax over A's keys and B's keys together: each row weighs its two parts by exp(lse - max).
// outA, outB: (n, headDim) device float32; lseA, lseB: (n) device float32, -inf where a part saw no key (then the
// other part is the result). In place in A; B is not written.
roundchat::Status attentionMerge(cudaStream_t stream, float* outA, float* lseA, const float* outB, const float* lseB,
                                 int n, int headDim);

}  // namespace kernels
