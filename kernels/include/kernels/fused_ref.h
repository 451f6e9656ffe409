// CPU references of the fused decode kernels (gemv(), ropeKvStore()) and the int8 activation scheme the GEMV uses
// for Q8_0/Q4_0 weights. They define the maths the CUDA kernels must reproduce; built into kernels_ref (no CUDA).
// Thread safety: pure functions; safe from any thread on disjoint outputs.
#pragma once

#include <cstdint>

#include "kernels/ggml_types.h"

namespace kernels {

// What the decode GEMV does with the dot products d[r] = dot(W[r, :], x') of its rows (x' = the possibly
// normalised input). Values are part of no file format.
enum class GemvEpilogue {
    Store,       // y[r] = d[r]
    Accumulate,  // y[r] += d[r] (the residual add; y must not alias x)
    SwiGlu,      // rows = 2 h (gate rows, then up rows): y[r] = silu(d[r]) * d[r + h], r < h
};

// Elements per int8 activation block (the Q8_0 block size, so weight and activation blocks line up).
constexpr int kActBlock = 32;

// Whether gemv() multiplies `type` weights of rows of `cols` elements with the int8-quantised activation (integer
// dot products; rows need 4-byte alignment and whole pairs of blocks) instead of the float32 one.
constexpr bool usesInt8Activations(GgmlType type, int64_t cols) {
    return (type == GgmlType::Q8_0 || type == GgmlType::Q4_0) && cols % (2 * kActBlock) == 0;
}

// Two-level int8 quantisation per block of kActBlock (one level alone, ~0.5% error per product, compounds past 1%
// over a few layers): x ~ d q + (d / 254) r with d = max|x| / 127, q = round(x / d), r = round((x - d q) / (d / 254))
// clamped to +-127, where "/ d" multiplies by the float reciprocal; IEEE float operations, fused x - d q, rounding
// half to even, q = r = 0 where d is 0.
// x, q, r: (n); d: (n / kActBlock); n a multiple of kActBlock. The error is at most d / 508 per value.
constexpr float kActLowDivisor = 254.0f;
void quantizeActivationRef(const float* x, int64_t n, int8_t* q, int8_t* r, float* d);

// The fused decode GEMV: x' = normWeight ? rmsnorm(x, normWeight, eps) : x; for Q8_0/Q4_0 weights where
// usesInt8Activations, x' is replaced by its two-level int8 quantisation (dequantised); then y = epilogue(W x').
// w: (rows, cols) encoded in `type`; x, normWeight: (cols); y: (rows), or (rows / 2) for SwiGlu.
void gemvRef(GgmlType type, const void* w, int rows, int cols, const float* x, const float* normWeight, float eps,
             GemvEpilogue epilogue, float* y);

// Decode attention input: rotates q and k of every token with RoPE (as ropeRef) and stores k and v into cache rows
// of element type KV: uint16_t (fp16 bits, KvType::F16) or float (KvType::F32); instantiated for those two.
// qkv: (nTokens, (nHeads + 2 nKvHeads) headDim) rows [q | k | v]; q: (nTokens, nHeads, headDim) rotated output;
// kCache, vCache: (capacity, nKvHeads headDim), rows slots[t] written; positions, slots: (nTokens).
template <typename KV>
void ropeKvStoreRef(const float* qkv, float* q, KV* kCache, KV* vCache, const int32_t* positions, const int32_t* slots,
                    int nTokens, int nHeads, int nKvHeads, int headDim, int ropeDim, float freqBase);

}  // namespace kernels
