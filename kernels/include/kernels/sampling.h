// Token selection on the GPU, so a decode step only copies one int back to the host.
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "roundchat/result.h"

namespace kernels {

// out[0] = index of the largest of logits[0, n) (the lowest index on ties; NaN never wins).
// logits: (n) device float32; out: one device int32.
roundchat::Status argmax(cudaStream_t stream, const float* logits, int n, int32_t* out);

}  // namespace kernels
