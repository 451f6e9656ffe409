// Token embedding lookup on the GPU (CPU reference: embeddingRef).
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/ggml_types.h"
#include "roundchat/result.h"

namespace kernels {

// out[i, :] = dequantised table[tokens[i], :]. table: (vocab, cols) device bytes in `type` (GGUF layout, 16-byte
// aligned); tokens: (n) device int32, each in [0, vocab) (checked by the caller); out: (n, cols) device float32.
// Types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K; cols a multiple of the block size (of 4 for F32, of 8 for F16
// and BF16).
roundchat::Status embedding(cudaStream_t stream, GgmlType type, const void* table, int cols, const int32_t* tokens,
                            int n, float* out);

}  // namespace kernels
