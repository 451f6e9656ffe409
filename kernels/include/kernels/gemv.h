// Decode matrix-vector product on the GPU straight from GGUF-encoded weights (CPU reference: matvecRef).
// Bandwidth-bound: each warp streams one weight row with 128-bit (or, for 2-byte-aligned blocks, 16-bit) loads and
// decodes it in registers; x is read through the read-only cache (it is small and shared by every row).
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include "kernels/ggml_types.h"
#include "roundchat/result.h"

namespace kernels {

// y[r] = dot(W[r, :], x), r < rows. w: (rows, cols) device bytes in `type` (16-byte aligned); x: (cols) device
// float32 (16-byte aligned); y: (rows) device float32. Types: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K; cols a multiple
// of the block size (of 4 for F32, of 8 for F16 and BF16).
roundchat::Status matvec(cudaStream_t stream, GgmlType type, const void* w, const float* x, float* y, int rows,
                         int cols);

}  // namespace kernels
