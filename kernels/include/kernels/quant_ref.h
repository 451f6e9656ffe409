// CPU reference codecs for every GgmlType: row dequantisation, quantisation, and a fused dot product that decodes
// block by block without materialising the row (the CPU engine's inner loop).
// Rows hold n elements; n must be a multiple of blockSize(type) (asserted: shapes are validated at load time).
// Thread safety: pure functions; safe from any thread on disjoint outputs.
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace kernels {

// dst[0..n) = decoded src, where src holds rowBytes(type, n) bytes.
void dequantizeRowRef(GgmlType type, const void* src, float* dst, int64_t n);

// Encodes src[0..n) into rowBytes(type, n) bytes at dst. Q4_K/Q6_K use a simple min/max scale search (not an
// error-minimising one): valid blocks that decode close to the input.
void quantizeRowRef(GgmlType type, const float* src, void* dst, int64_t n);

// sum_i decoded(row)[i] * x[i], accumulated in float.
float dotRowRef(GgmlType type, const void* row, const float* x, int64_t n);

}  // namespace kernels
