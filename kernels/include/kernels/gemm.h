// Prefill matrix products on the GPU: Y = X W^T through cuBLAS on tensor cores. A quantised weight is first
// dequantised whole into an fp16 scratch matrix (one matrix at a time, reused across layers): the dequantisation
// moves ~2 bytes per weight, which next to 2 * nTokens flops per weight is noise once nTokens is in the tens, and
// cuBLAS then runs its best fp16 kernel for the shape. F16 weights are used in place; F32 weights (small reference
// models) run a float32 GEMM with no rounding and no scratch.
// Thread safety: launchers enqueue on the given stream; call them from the thread that owns the CUDA state.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "kernels/ggml_types.h"
#include "roundchat/result.h"

namespace kernels {

// Device scratch the caller owns (sized once for the largest matrix and batch).
struct GemmScratch {
    uint16_t* weights = nullptr;  // fp16, at least rows * cols elements (unused for F16 and F32 weights)
    size_t weightElems = 0;
    uint16_t* activations = nullptr;  // fp16, at least nTokens * cols elements (unused for F32 weights)
    size_t activationElems = 0;
};

// dst = fp16(decoded src), src: (rows, cols) device bytes in `type`; dst: (rows, cols) device fp16 bits.
roundchat::Status dequantizeToF16(cudaStream_t stream, GgmlType type, const void* src, uint16_t* dst, int rows,
                                  int cols);

// dst = fp16(src) over n device values.
roundchat::Status convertToF16(cudaStream_t stream, const float* src, uint16_t* dst, int64_t n);

// y[t, r] = dot(W[r, :], x[t, :]). w: (rows, cols) device bytes in `type`; x: (nTokens, cols) device float32;
// y: (nTokens, rows) device float32. Except for F32 weights, inputs are rounded to fp16; products accumulate in
// float32.
roundchat::Status matmul(cudaStream_t stream, cublasHandle_t cublas, GgmlType type, const void* w, int rows, int cols,
                         const float* x, int nTokens, float* y, const GemmScratch& scratch);

}  // namespace kernels
