#include "kernels/quant_ref.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <iterator>

namespace kernels {

namespace {

// Independent partial sums, so the float reduction vectorises without -ffast-math reassociation.
constexpr int kLanes = 16;
// Elements decoded at a time by dotRowRef: a multiple of every block size, small enough to stay in L1.
constexpr int64_t kDotChunk = 256;

float dotF32(const float* a, const float* x, int64_t n) {
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
        for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * x[i + l];
    for (; i < n; ++i) acc[0] += a[i] * x[i];
    float sum = 0.0f;
    for (float v : acc) sum += v;
    return sum;
}

float roundToInt(float v) {
    return std::nearbyint(v);
}

// Encoders quantise against the scale as it will be decoded (after fp16 rounding), so that rounding is compensated.
float inverseOrZero(float scale) {
    return scale != 0.0f ? 1.0f / scale : 0.0f;
}

// ---- decoders: n elements from src (n a multiple of the block size) ----

void decodeF32(const uint8_t* src, float* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
}

void decodeF16(const uint8_t* src, float* dst, int64_t n) {
    const auto* h = reinterpret_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16ToFloat(h[i]);
}

void decodeBF16(const uint8_t* src, float* dst, int64_t n) {
    const auto* h = reinterpret_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16ToFloat(h[i]);
}

void decodeQ8_0(const uint8_t* src, float* dst, int64_t n) {
    const auto* blocks = reinterpret_cast<const BlockQ8_0*>(src);
    for (int64_t b = 0; b < n / kQk8_0; ++b, dst += kQk8_0) {
        const float d = fp16ToFloat(blocks[b].d);
        for (int j = 0; j < kQk8_0; ++j) dst[j] = d * static_cast<float>(blocks[b].qs[j]);
    }
}

void decodeQ4_0(const uint8_t* src, float* dst, int64_t n) {
    const auto* blocks = reinterpret_cast<const BlockQ4_0*>(src);
    constexpr int kHalf = kQk4_0 / 2;
    for (int64_t b = 0; b < n / kQk4_0; ++b, dst += kQk4_0) {
        const float d = fp16ToFloat(blocks[b].d);
        for (int j = 0; j < kHalf; ++j) dst[j] = d * static_cast<float>((blocks[b].qs[j] & 0xf) - 8);
        for (int j = 0; j < kHalf; ++j) dst[j + kHalf] = d * static_cast<float>((blocks[b].qs[j] >> 4) - 8);
    }
}

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes: bytes 0-3 hold scales 0-3 (low 6 bits) and the
// top 2 bits of scales 4-7; bytes 4-7 the same for mins; bytes 8-11 the low nibbles of scales 4-7 and mins 4-7.
void unpackScaleMinQ4K(const uint8_t* packed, int j, int& scale, int& min) {
    if (j < 4) {
        scale = packed[j] & 63;
        min = packed[j + 4] & 63;
    } else {
        scale = (packed[j + 4] & 0xf) | ((packed[j - 4] >> 6) << 4);
        min = (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4);
    }
}

void packScaleMinQ4K(const uint8_t* scales, const uint8_t* mins, uint8_t* packed) {
    for (int j = 0; j < 4; ++j) {
        packed[j] = static_cast<uint8_t>(scales[j] | ((scales[j + 4] >> 4) << 6));
        packed[j + 4] = static_cast<uint8_t>(mins[j] | ((mins[j + 4] >> 4) << 6));
        packed[j + 8] = static_cast<uint8_t>((scales[j + 4] & 0xf) | ((mins[j + 4] & 0xf) << 4));
    }
}

constexpr int kQ4KSub = 32;  // elements per Q4_K sub-block
constexpr int kQ6KSub = 16;  // elements per Q6_K sub-block

void decodeQ4_K(const uint8_t* src, float* dst, int64_t n) {
    const auto* blocks = reinterpret_cast<const BlockQ4_K*>(src);
    for (int64_t b = 0; b < n / kQkK; ++b, dst += kQkK) {
        const BlockQ4_K& blk = blocks[b];
        const float d = fp16ToFloat(blk.d);
        const float dmin = fp16ToFloat(blk.dmin);
        for (int j = 0; j < kQkK / kQ4KSub; ++j) {
            int scale = 0;
            int min = 0;
            unpackScaleMinQ4K(blk.scales, j, scale, min);
            const float dj = d * static_cast<float>(scale);
            const float mj = dmin * static_cast<float>(min);
            const uint8_t* q = blk.qs + kQ4KSub * (j / 2);
            const int shift = 4 * (j % 2);
            for (int l = 0; l < kQ4KSub; ++l)
                dst[kQ4KSub * j + l] = dj * static_cast<float>((q[l] >> shift) & 0xf) - mj;
        }
    }
}

// Q6_K element e = 128 * h + 32 * g + l (half h, group g < 4, l < 32): its low 4 bits are nibble g / 2 of
// ql[64 * h + 32 * (g % 2) + l], its high 2 bits are bits 2g..2g+1 of qh[32 * h + l]; its scale is scales[e / 16].
// Consecutive elements within a 16-element sub-block map to consecutive bytes with the same shifts.
struct Q6KPos {
    int qlIndex;
    int qlShift;
    int qhIndex;
    int qhShift;
};

constexpr Q6KPos q6kPos(int e) {
    const int h = e / 128;
    const int g = (e % 128) / 32;
    const int l = e % 32;
    return {64 * h + 32 * (g % 2) + l, 4 * (g / 2), 32 * h + l, 2 * g};
}

// Same layout as q6kPos, walked so that each inner loop has fixed shifts and one scale (it vectorises).
void decodeQ6_K(const uint8_t* src, float* dst, int64_t n) {
    const auto* blocks = reinterpret_cast<const BlockQ6_K*>(src);
    for (int64_t b = 0; b < n / kQkK; ++b, dst += kQkK) {
        const BlockQ6_K& blk = blocks[b];
        const float d = fp16ToFloat(blk.d);
        for (int e0 = 0; e0 < kQkK; e0 += kQ6KSub) {
            const Q6KPos p = q6kPos(e0);
            const uint8_t* ql = blk.ql + p.qlIndex;
            const uint8_t* qh = blk.qh + p.qhIndex;
            const float scale = d * static_cast<float>(blk.scales[e0 / kQ6KSub]);
            for (int l = 0; l < kQ6KSub; ++l) {
                const int q = ((ql[l] >> p.qlShift) & 0xf) | (((qh[l] >> p.qhShift) & 3) << 4);
                dst[e0 + l] = scale * static_cast<float>(q - 32);
            }
        }
    }
}

// ---- encoders ----

void encodeF16(const float* src, uint8_t* dst, int64_t n) {
    auto* h = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = floatToFp16(src[i]);
}

void encodeBF16(const float* src, uint8_t* dst, int64_t n) {
    auto* h = reinterpret_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) h[i] = floatToBf16(src[i]);
}

float maxAbs(const float* x, int n) {
    float m = 0.0f;
    for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
    return m;
}

void encodeQ8_0(const float* src, uint8_t* dst, int64_t n) {
    auto* blocks = reinterpret_cast<BlockQ8_0*>(dst);
    for (int64_t b = 0; b < n / kQk8_0; ++b, src += kQk8_0) {
        blocks[b].d = floatToFp16(maxAbs(src, kQk8_0) / 127.0f);
        const float inv = inverseOrZero(fp16ToFloat(blocks[b].d));
        for (int j = 0; j < kQk8_0; ++j)
            blocks[b].qs[j] = static_cast<int8_t>(std::clamp(roundToInt(src[j] * inv), -127.0f, 127.0f));
    }
}

void encodeQ4_0(const float* src, uint8_t* dst, int64_t n) {
    auto* blocks = reinterpret_cast<BlockQ4_0*>(dst);
    constexpr int kHalf = kQk4_0 / 2;
    for (int64_t b = 0; b < n / kQk4_0; ++b, src += kQk4_0) {
        // The value of largest magnitude maps to -8 exactly (the asymmetric end of [-8, 7]); the rest stay in range.
        float extreme = 0.0f;
        for (int j = 0; j < kQk4_0; ++j)
            if (std::fabs(src[j]) > std::fabs(extreme))
                extreme = src[j];
        blocks[b].d = floatToFp16(extreme / -8.0f);
        const float inv = inverseOrZero(fp16ToFloat(blocks[b].d));
        auto quant = [&](float v) { return static_cast<uint8_t>(std::clamp(roundToInt(v * inv) + 8.0f, 0.0f, 15.0f)); };
        for (int j = 0; j < kHalf; ++j)
            blocks[b].qs[j] = static_cast<uint8_t>(quant(src[j]) | (quant(src[j + kHalf]) << 4));
    }
}

// Scale of a quantised 6-bit (or int8) sub-block scale: v / super, rounded and clamped to [0, maxQ].
uint8_t quantizeSubScale(float v, float super, int maxQ) {
    if (super <= 0.0f)
        return 0;
    return static_cast<uint8_t>(std::clamp(roundToInt(v / super), 0.0f, static_cast<float>(maxQ)));
}

void encodeQ4_K(const float* src, uint8_t* dst, int64_t n) {
    auto* blocks = reinterpret_cast<BlockQ4_K*>(dst);
    constexpr int kSubs = kQkK / kQ4KSub;
    for (int64_t b = 0; b < n / kQkK; ++b, src += kQkK) {
        BlockQ4_K& blk = blocks[b];
        // Per sub-block affine range [-min, -min + 15 * scale]; min >= 0 because 0 is always inside the range.
        float scales[kSubs];
        float mins[kSubs];
        for (int j = 0; j < kSubs; ++j) {
            const float* x = src + kQ4KSub * j;
            const float lo = std::min(0.0f, *std::min_element(x, x + kQ4KSub));
            const float hi = *std::max_element(x, x + kQ4KSub);
            scales[j] = (hi - lo) / 15.0f;
            mins[j] = -lo;
        }
        blk.d = floatToFp16(*std::max_element(scales, scales + kSubs) / 63.0f);
        blk.dmin = floatToFp16(*std::max_element(mins, mins + kSubs) / 63.0f);
        const float d = fp16ToFloat(blk.d);
        const float dmin = fp16ToFloat(blk.dmin);
        uint8_t qScales[kSubs];
        uint8_t qMins[kSubs];
        for (int j = 0; j < kSubs; ++j) {
            qScales[j] = quantizeSubScale(scales[j], d, 63);
            qMins[j] = quantizeSubScale(mins[j], dmin, 63);
        }
        packScaleMinQ4K(qScales, qMins, blk.scales);
        std::fill(std::begin(blk.qs), std::end(blk.qs), uint8_t{0});
        for (int j = 0; j < kSubs; ++j) {
            const float step = d * static_cast<float>(qScales[j]);
            const float offset = dmin * static_cast<float>(qMins[j]);
            const float inv = inverseOrZero(step);
            uint8_t* q = blk.qs + kQ4KSub * (j / 2);
            for (int l = 0; l < kQ4KSub; ++l) {
                const float v = std::clamp(roundToInt((src[kQ4KSub * j + l] + offset) * inv), 0.0f, 15.0f);
                q[l] = static_cast<uint8_t>(q[l] | (static_cast<int>(v) << (4 * (j % 2))));
            }
        }
    }
}

void encodeQ6_K(const float* src, uint8_t* dst, int64_t n) {
    auto* blocks = reinterpret_cast<BlockQ6_K*>(dst);
    constexpr int kSubs = kQkK / kQ6KSub;
    for (int64_t b = 0; b < n / kQkK; ++b, src += kQkK) {
        BlockQ6_K& blk = blocks[b];
        // Symmetric per sub-block: q in [-31, 31] (the 6-bit code -32 is left unused).
        float scales[kSubs];
        for (int j = 0; j < kSubs; ++j) scales[j] = maxAbs(src + kQ6KSub * j, kQ6KSub) / 31.0f;
        blk.d = floatToFp16(*std::max_element(scales, scales + kSubs) / 127.0f);
        const float d = fp16ToFloat(blk.d);
        for (int j = 0; j < kSubs; ++j) blk.scales[j] = static_cast<int8_t>(quantizeSubScale(scales[j], d, 127));
        std::fill(std::begin(blk.ql), std::end(blk.ql), uint8_t{0});
        std::fill(std::begin(blk.qh), std::end(blk.qh), uint8_t{0});
        for (int e = 0; e < kQkK; ++e) {
            const float step = d * static_cast<float>(blk.scales[e / kQ6KSub]);
            const float v = step > 0.0f ? std::clamp(roundToInt(src[e] / step), -32.0f, 31.0f) : 0.0f;
            const int q = static_cast<int>(v) + 32;
            const Q6KPos p = q6kPos(e);
            blk.ql[p.qlIndex] = static_cast<uint8_t>(blk.ql[p.qlIndex] | ((q & 0xf) << p.qlShift));
            blk.qh[p.qhIndex] = static_cast<uint8_t>(blk.qh[p.qhIndex] | ((q >> 4) << p.qhShift));
        }
    }
}

using Decoder = void (*)(const uint8_t*, float*, int64_t);

Decoder decoderFor(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return decodeF32;
        case GgmlType::F16:
            return decodeF16;
        case GgmlType::BF16:
            return decodeBF16;
        case GgmlType::Q8_0:
            return decodeQ8_0;
        case GgmlType::Q4_0:
            return decodeQ4_0;
        case GgmlType::Q4_K:
            return decodeQ4_K;
        case GgmlType::Q6_K:
            return decodeQ6_K;
    }
    assert(false && "unknown GgmlType");
    return nullptr;
}

// Decodes kDotChunk elements at a time into an L1-resident buffer and dots them with x. The decoder is a template
// argument so it is inlined into the loop.
template <Decoder decode>
float dotChunked(GgmlType type, const uint8_t* row, const float* x, int64_t n) {
    float buf[kDotChunk];
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i += kDotChunk) {
        const int64_t m = std::min(kDotChunk, n - i);
        decode(row + rowBytes(type, i), buf, m);
        sum += dotF32(buf, x + i, m);
    }
    return sum;
}

}  // namespace

void dequantizeRowRef(GgmlType type, const void* src, float* dst, int64_t n) {
    assert(n % blockSize(type) == 0);
    decoderFor(type)(static_cast<const uint8_t*>(src), dst, n);
}

void quantizeRowRef(GgmlType type, const float* src, void* dst, int64_t n) {
    assert(n % blockSize(type) == 0);
    auto* out = static_cast<uint8_t*>(dst);
    switch (type) {
        case GgmlType::F32:
            std::memcpy(out, src, static_cast<size_t>(n) * 4);
            return;
        case GgmlType::F16:
            encodeF16(src, out, n);
            return;
        case GgmlType::BF16:
            encodeBF16(src, out, n);
            return;
        case GgmlType::Q8_0:
            encodeQ8_0(src, out, n);
            return;
        case GgmlType::Q4_0:
            encodeQ4_0(src, out, n);
            return;
        case GgmlType::Q4_K:
            encodeQ4_K(src, out, n);
            return;
        case GgmlType::Q6_K:
            encodeQ6_K(src, out, n);
            return;
    }
    assert(false && "unknown GgmlType");
}

float dotRowRef(GgmlType type, const void* row, const float* x, int64_t n) {
    assert(n % blockSize(type) == 0);
    const auto* bytes = static_cast<const uint8_t*>(row);
    switch (type) {
        case GgmlType::F32:
            return dotF32(static_cast<const float*>(row), x, n);
        case GgmlType::F16:
            return dotChunked<decodeF16>(type, bytes, x, n);
        case GgmlType::BF16:
            return dotChunked<decodeBF16>(type, bytes, x, n);
        case GgmlType::Q8_0:
            return dotChunked<decodeQ8_0>(type, bytes, x, n);
        case GgmlType::Q4_0:
            return dotChunked<decodeQ4_0>(type, bytes, x, n);
        case GgmlType::Q4_K:
            return dotChunked<decodeQ4_K>(type, bytes, x, n);
        case GgmlType::Q6_K:
            return dotChunked<decodeQ6_K>(type, bytes, x, n);
    }
    assert(false && "unknown GgmlType");
    return 0.0f;
}

}  // namespace kernels
