// GGML tensor types as stored in GGUF files, their block layouts, and fp16/bf16 <-> float conversions.
// The block structs match the on-disk layout byte for byte (see the GGUF spec and ggml's block definitions), so a
// tensor's bytes can be reinterpreted as an array of blocks. Conversions are usable from host and CUDA device code.
// Thread safety: constants and pure functions only.
#pragma once

#include <cstdint>
#include <cstring>

#ifdef __CUDACC__
#define KERNELS_HD __host__ __device__
#else
#define KERNELS_HD
#endif

namespace kernels {

// Values as stored on disk (GGUF spec, ggml_type): never change or reuse them.
enum class GgmlType : uint32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q8_0 = 8,
    Q4_K = 12,
    Q6_K = 14,
    BF16 = 30,
};

constexpr int kQk8_0 = 32;        // elements per Q8_0 block
constexpr int kQk4_0 = 32;        // elements per Q4_0 block
constexpr int kQkK = 256;         // elements per K-quant super-block
constexpr int kKScaleBytes = 12;  // packed 6-bit scales and mins of Q4_K (8 sub-blocks of 32)

// Q8_0: x[i] = d * qs[i], 32 elements.
struct BlockQ8_0 {
    uint16_t d;  // fp16 scale
    int8_t qs[kQk8_0];
};

// Q4_0: x[i] = d * (nibble - 8); element i < 16 is the low nibble of qs[i], element i + 16 its high nibble.
struct BlockQ4_0 {
    uint16_t d;  // fp16 scale
    uint8_t qs[kQk4_0 / 2];
};

// Q4_K: 256 elements in 8 sub-blocks of 32; x = d * sc[j] * q - dmin * m[j] with 6-bit sc/m packed in `scales`.
// Sub-blocks 2k and 2k+1 share qs[32k .. 32k+32): low nibbles are sub-block 2k, high nibbles sub-block 2k+1.
struct BlockQ4_K {
    uint16_t d;     // fp16 super-block scale for the sub-block scales
    uint16_t dmin;  // fp16 super-block scale for the sub-block mins
    uint8_t scales[kKScaleBytes];
    uint8_t qs[kQkK / 2];
};

// Q6_K: 256 elements in 16 sub-blocks of 16; x = d * scales[j] * (q - 32), q = 4 low bits (ql) | 2 high bits (qh).
struct BlockQ6_K {
    uint8_t ql[kQkK / 2];
    uint8_t qh[kQkK / 4];
    int8_t scales[kQkK / 16];
    uint16_t d;  // fp16 super-block scale
};

static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must match the GGUF layout");
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must match the GGUF layout");
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block must match the GGUF layout");
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must match the GGUF layout");

// Elements per block (1 for the plain float types).
constexpr int64_t blockSize(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
            return 1;
        case GgmlType::Q4_0:
            return kQk4_0;
        case GgmlType::Q8_0:
            return kQk8_0;
        case GgmlType::Q4_K:
        case GgmlType::Q6_K:
            return kQkK;
    }
    return 0;
}

// Bytes per block.
constexpr int64_t blockBytes(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return 4;
        case GgmlType::F16:
        case GgmlType::BF16:
            return 2;
        case GgmlType::Q4_0:
            return sizeof(BlockQ4_0);
        case GgmlType::Q8_0:
            return sizeof(BlockQ8_0);
        case GgmlType::Q4_K:
            return sizeof(BlockQ4_K);
        case GgmlType::Q6_K:
            return sizeof(BlockQ6_K);
    }
    return 0;
}

// Bytes of a row of n elements; n must be a multiple of blockSize(type) (callers validate shapes first).
constexpr int64_t rowBytes(GgmlType type, int64_t n) {
    return n / blockSize(type) * blockBytes(type);
}

constexpr const char* typeName(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return "F32";
        case GgmlType::F16:
            return "F16";
        case GgmlType::Q4_0:
            return "Q4_0";
        case GgmlType::Q8_0:
            return "Q8_0";
        case GgmlType::Q4_K:
            return "Q4_K";
        case GgmlType::Q6_K:
            return "Q6_K";
        case GgmlType::BF16:
            return "BF16";
    }
    return "unknown";
}

// Whether a raw on-disk type value is one of the types above (checked before casting to GgmlType).
constexpr bool isKnownType(uint32_t raw) {
    switch (static_cast<GgmlType>(raw)) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::Q4_0:
        case GgmlType::Q8_0:
        case GgmlType::Q4_K:
        case GgmlType::Q6_K:
        case GgmlType::BF16:
            return true;
    }
    return false;
}

// Comma-separated list for error messages.
constexpr const char* kSupportedTypeNames = "F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K";

// ---- fp16 / bf16 conversions (bit manipulation, IEEE 754 binary16 / bfloat16) ----

KERNELS_HD inline uint32_t floatBits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

KERNELS_HD inline float bitsToFloat(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Exact and branch-free (masks, no selects), so row loops over it vectorise.
KERNELS_HD inline float fp16ToFloat(uint16_t h) {
    const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    const uint32_t expMant = h & 0x7fffu;
    // Normal: shift into place and rebias the exponent 15 -> 127; inf/nan (exponent 31) must land on 255.
    const uint32_t normal = (expMant << 13) + (112u << 23) + static_cast<uint32_t>(expMant >= 0x7c00u) * (112u << 23);
    // Subnormal: mant * 2^-24, exact in float and itself a normal float (no denormal arithmetic).
    const uint32_t subnormal = floatBits(static_cast<float>(static_cast<int32_t>(expMant)) * 5.9604644775390625e-8f);
    const uint32_t isSubnormal = 0u - static_cast<uint32_t>(expMant < 0x400u);  // all ones or zero
    return bitsToFloat(sign | (subnormal & isSubnormal) | (normal & ~isSubnormal));
}

// Round to nearest even; overflow gives inf, NaN stays a (quiet) NaN, tiny values become half subnormals or zero.
KERNELS_HD inline uint16_t floatToFp16(float f) {
    const uint32_t u = floatBits(f);
    const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
    const uint32_t absBits = u & 0x7fffffffu;
    if (absBits >= 0x7f800000u)  // inf or nan
        return static_cast<uint16_t>(sign | 0x7c00u | (absBits > 0x7f800000u ? 0x200u : 0u));
    if (absBits >= 0x477ff000u)  // >= 65520 rounds to inf
        return static_cast<uint16_t>(sign | 0x7c00u);
    const int32_t exp = static_cast<int32_t>(absBits >> 23) - 127;
    if (exp >= -14) {
        // Normal half. Add rounding bias, then drop 13 mantissa bits; a carry into the exponent is correct.
        uint32_t bits = absBits - (112u << 23);
        bits += 0xfffu + ((bits >> 13) & 1u);
        return static_cast<uint16_t>(sign | (bits >> 13));
    }
    if (exp < -25)  // below half of the smallest subnormal: rounds to zero
        return sign;
    // Subnormal half: mantissa with the implicit bit, shifted so the unit is 2^-24.
    const uint32_t mant = (absBits & 0x7fffffu) | 0x800000u;
    const uint32_t shift = static_cast<uint32_t>(-exp - 1);  // 14..24
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u)))
        ++q;
    return static_cast<uint16_t>(sign | q);
}

KERNELS_HD inline float bf16ToFloat(uint16_t b) {
    return bitsToFloat(static_cast<uint32_t>(b) << 16);
}

// Round to nearest even; NaN stays a quiet NaN (rounding must not turn it into inf).
KERNELS_HD inline uint16_t floatToBf16(float f) {
    const uint32_t u = floatBits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return static_cast<uint16_t>((u >> 16) | 0x40u);
    return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

}  // namespace kernels
