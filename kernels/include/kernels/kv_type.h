// Element type of the GPU KV cache. F16 halves the bytes and is the default; F32 keeps keys and values exact, which
// F32 reference models need: fp16 rounding of K/V alone moves stories260K's logits by up to 1.7e-2 (measured on the
// CPU engine; the reference bound is 1e-2).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kernels {

enum class KvType : uint8_t { F16, F32 };

// Bytes of one cached key or value element.
constexpr size_t kvTypeBytes(KvType t) { return t == KvType::F32 ? 4 : 2; }

constexpr const char* kvTypeName(KvType t) { return t == KvType::F32 ? "f32" : "f16"; }

}  // namespace kernels
