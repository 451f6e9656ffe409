// CPU references for every kernel family. They define the maths the CUDA kernels must reproduce (their tests compare
// against these), and the CPU engine calls them on row slices from its worker threads. All tensors are float32 and
// row-major unless a GgmlType says otherwise; shapes are given outermost first, e.g. (n_tokens, dim).
// Thread safety: pure functions; safe from any thread on disjoint outputs.
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/ggml_types.h"

namespace kernels {

// out[r, i] = x[r, i] / sqrt(mean_i(x[r, :]^2) + eps) * weight[i]. x, out: (rows, dim); out may alias x.
void rmsnormRef(float* out, const float* x, const float* weight, int rows, int dim, float eps);

// Llama "NORM" RoPE in place: rotates adjacent pairs (x[2i], x[2i+1]) of the first ropeDim dims of every head by
// angle pos * freqBase^(-2i / ropeDim). x: (nTokens, nHeads, headDim); positions: (nTokens).
void ropeRef(float* x, const int32_t* positions, int nTokens, int nHeads, int headDim, int ropeDim, float freqBase);

// Re-rotates keys already rotated at `fromPositions` to `toPositions` (rotation by the position difference).
// Used when recalled rounds are shifted to contiguous positions. k: (nTokens, nHeads, headDim).
void ropeShiftRef(float* k, const int32_t* fromPositions, const int32_t* toPositions, int nTokens, int nHeads,
                  int headDim, int ropeDim, float freqBase);

// out = silu(gate) * up, elementwise over n values.
void swigluRef(float* out, const float* gate, const float* up, int64_t n);

// y[r] = dot(W[r, :], x) for r in [0, rows): W is (rows, cols) encoded in `type` (GGUF: ne[0] = cols is contiguous).
// Callers split work by passing a row slice: w advanced by r0 * rowBytes(type, cols), y advanced by r0.
void matvecRef(GgmlType type, const void* w, const float* x, float* y, int rows, int cols);

// out[i, :] = dequantized table[tokens[i], :]; table: (vocab, cols) encoded in `type`; out: (n, cols).
void embeddingRef(GgmlType type, const void* table, int cols, const int32_t* tokens, int n, float* out);

// GQA attention of nQ query tokens over nKv cached tokens, masked by absolute position: key j is visible to query i
// iff minLag <= qPos[i] - kvPos[j] <= maxLag (the defaults: causal; kernels::AttentionArgs has the same lag band).
// q: (nQ, nHeads, headDim); k, v: (nKv, nKvHeads, headDim); out: (nQ, nHeads, headDim).
// Query head h reads kv head h / (nHeads / nKvHeads). scores are (q . k) * scale.
// lse (may be null): (nQ, nHeads) natural log of the softmax denominator (max included), for merging partial
// attentions; a query that sees no key gets out = 0 and lse = -inf.
void attentionRef(const float* q, const float* k, const float* v, float* out, float* lse, const int32_t* qPos,
                  const int32_t* kvPos, int nQ, int nKv, int nHeads, int nKvHeads, int headDim, float scale,
                  int minLag = 0, int maxLag = std::numeric_limits<int>::max());

// Merges two partial attentions over disjoint key sets (log-sum-exp weighting) into outA/lseA.
// outA, outB: (n, headDim) rows; lseA, lseB: (n).
void attentionMergeRef(float* outA, float* lseA, const float* outB, const float* lseB, int n, int headDim);

// Numerically stable softmax in place over n values.
void softmaxRef(float* x, int n);

}  // namespace kernels
