// Elementwise kernels of the feed-forward block and the residual stream (CPU reference: swigluRef).
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "roundchat/result.h"

namespace kernels {

// out = silu(gate) * up over n device float32 values; out may alias gate or up.
roundchat::Status swiglu(cudaStream_t stream, float* out, const float* gate, const float* up, int64_t n);

// x += y over n device float32 values (the residual add).
roundchat::Status addInPlace(cudaStream_t stream, float* x, const float* y, int64_t n);

}  // namespace kernels
