// RMSNorm on the GPU (CPU reference: rmsnormRef in kernels/reference.h).
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cuda_runtime_api.h>

#include "roundchat/result.h"

namespace kernels {

// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. x, out: (rows, dim) device float32, out may alias x;
// weight: (dim) device float32.
roundchat::Status rmsnorm(cudaStream_t stream, float* out, const float* x, const float* weight, int rows, int dim,
                          float eps);

}  // namespace kernels
