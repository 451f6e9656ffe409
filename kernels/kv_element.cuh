// Device access to KV-cache elements of either KvType (kernels/kv_type.h), so each kernel that reads or writes the
// cache is written once as a template over the element type KV (__half or float), and its launcher picks the
// instantiation with withKvElement (private to kernels/).
#pragma once

#include <cuda_fp16.h>

#include "cuda_common.cuh"
#include "kernels/kv_type.h"

namespace kernels {

__device__ inline float2 loadKvPair(const __half* p) { return __half22float2(*reinterpret_cast<const __half2*>(p)); }
__device__ inline float2 loadKvPair(const float* p) { return *reinterpret_cast<const float2*>(p); }

// p must be 4-byte (fp16) or 8-byte (float) aligned.
__device__ inline void storeKvPair(__half* p, float2 v) {
    *reinterpret_cast<__half2*>(p) = __floats2half2_rn(v.x, v.y);
}
__device__ inline void storeKvPair(float* p, float2 v) { *reinterpret_cast<float2*>(p) = v; }

__device__ inline void storeKv(__half* p, float v) { *p = __float2half_rn(v); }
__device__ inline void storeKv(float* p, float v) { *p = v; }

// Eight consecutive elements as floats, in 16-byte loads (p 16-byte aligned); zeros when !valid.
__device__ inline void loadKv8(const __half* p, bool valid, float (&out)[8]) {
    const Half8 h = valid ? *reinterpret_cast<const Half8*>(p) : Half8{};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(h.h[j]);
        out[2 * j] = f.x;
        out[2 * j + 1] = f.y;
    }
}
__device__ inline void loadKv8(const float* p, bool valid, float (&out)[8]) {
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    const float4 a = valid ? reinterpret_cast<const float4*>(p)[0] : zero;
    const float4 b = valid ? reinterpret_cast<const float4*>(p)[1] : zero;
    const float f[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < 8; ++j)
        out[j] = f[j];
}

// Names the element type KV for a generic lambda (CUDA sources build as C++17: no std::type_identity).
template <typename KV>
struct KvTag {
    using type = KV;
};

// Calls f(KvTag<KV>{}) with KV the device element type of t (__half for F16, float for F32).
template <typename F>
auto withKvElement(KvType t, F&& f) {
    return t == KvType::F32 ? f(KvTag<float>{}) : f(KvTag<__half>{});
}

}  // namespace kernels
