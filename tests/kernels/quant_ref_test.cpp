#include "kernels/quant_ref.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstddef>
#include <limits>
#include <random>
#include <vector>

#include "kernels/reference.h"

namespace kernels {
namespace {

constexpr GgmlType kAllTypes[] = {GgmlType::F32,  GgmlType::F16,  GgmlType::BF16, GgmlType::Q8_0,
                                  GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};

std::vector<float> randomNormal(int64_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = dist(rng);
    return v;
}

std::vector<uint8_t> quantize(GgmlType type, const std::vector<float>& x) {
    std::vector<uint8_t> q(static_cast<size_t>(rowBytes(type, static_cast<int64_t>(x.size()))));
    quantizeRowRef(type, x.data(), q.data(), static_cast<int64_t>(x.size()));
    return q;
}

std::vector<float> dequantize(GgmlType type, const std::vector<uint8_t>& q, int64_t n) {
    std::vector<float> out(static_cast<size_t>(n));
    dequantizeRowRef(type, q.data(), out.data(), n);
    return out;
}

uint32_t bitsOf(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
}

// ---- fp16 / bf16 ----

TEST(Fp16, EdgeCases) {
    EXPECT_EQ(floatToFp16(0.0f), 0x0000);
    EXPECT_EQ(floatToFp16(-0.0f), 0x8000);
    EXPECT_EQ(floatToFp16(1.0f), 0x3c00);
    EXPECT_EQ(floatToFp16(-2.0f), 0xc000);
    EXPECT_EQ(floatToFp16(65504.0f), 0x7bff);  // largest finite half
    EXPECT_EQ(floatToFp16(65519.0f), 0x7bff);  // just below the rounding boundary
    EXPECT_EQ(floatToFp16(65520.0f), 0x7c00);  // halfway to 65536: rounds to even = inf
    EXPECT_EQ(floatToFp16(1e10f), 0x7c00);
    EXPECT_EQ(floatToFp16(-std::numeric_limits<float>::infinity()), 0xfc00);
    const uint16_t nan = floatToFp16(std::numeric_limits<float>::quiet_NaN());
    EXPECT_EQ(nan & 0x7c00, 0x7c00);
    EXPECT_NE(nan & 0x03ff, 0);
    EXPECT_EQ(floatToFp16(std::ldexp(1.0f, -24)), 0x0001);         // smallest subnormal
    EXPECT_EQ(floatToFp16(std::ldexp(1.0f, -25)), 0x0000);         // tie between 0 and 2^-24: even is 0
    EXPECT_EQ(floatToFp16(std::ldexp(3.0f, -25)), 0x0002);         // tie between 1 and 2 ulps: even is 2
    EXPECT_EQ(floatToFp16(std::ldexp(1.0f, -14)), 0x0400);         // smallest normal
    EXPECT_EQ(floatToFp16(std::ldexp(1023.0f, -24)), 0x03ff);      // largest subnormal
    EXPECT_EQ(floatToFp16(std::ldexp(2047.0f, -25)), 0x0400);      // rounds up into the normal range
    EXPECT_EQ(floatToFp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie: down to even
    EXPECT_EQ(floatToFp16(1.0f + std::ldexp(3.0f, -11)), 0x3c02);  // tie: up to even
    EXPECT_EQ(floatToFp16(1.0f + std::ldexp(1.0f, -10) + std::ldexp(1.0f, -20)), 0x3c01);

    EXPECT_EQ(fp16ToFloat(0x3c00), 1.0f);
    EXPECT_EQ(fp16ToFloat(0x0001), std::ldexp(1.0f, -24));
    EXPECT_EQ(fp16ToFloat(0x03ff), std::ldexp(1023.0f, -24));
    EXPECT_EQ(bitsOf(fp16ToFloat(0x8000)), 0x80000000u);
    EXPECT_EQ(fp16ToFloat(0x7c00), std::numeric_limits<float>::infinity());
    EXPECT_EQ(fp16ToFloat(0xfc00), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isnan(fp16ToFloat(0x7e00)));
    EXPECT_TRUE(std::isnan(fp16ToFloat(0x7c01)));
}

TEST(Fp16, EveryHalfRoundTrips) {
    for (uint32_t h = 0; h <= 0xffff; ++h) {
        const float f = fp16ToFloat(static_cast<uint16_t>(h));
        if (std::isnan(f))
            continue;
        ASSERT_EQ(floatToFp16(f), h) << "half 0x" << std::hex << h;
    }
}

TEST(Fp16, MidpointsRoundToEven) {
    // The midpoint between consecutive finite halves a < b must round to whichever has an even mantissa.
    for (uint32_t h = 0; h < 0x7bff; h += 7) {
        const double a = fp16ToFloat(static_cast<uint16_t>(h));
        const double b = fp16ToFloat(static_cast<uint16_t>(h + 1));
        const auto mid = static_cast<float>((a + b) / 2);  // exact: a float has more mantissa bits than a half
        ASSERT_EQ(floatToFp16(mid), (h % 2 == 0) ? h : h + 1) << "half 0x" << std::hex << h;
    }
}

TEST(Bf16, EdgeCasesAndRounding) {
    EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
    EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
    EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
    auto fromBits = [](uint32_t u) {
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    };
    EXPECT_EQ(floatToBf16(fromBits(0x3f808000)), 0x3f80);  // tie: down to even
    EXPECT_EQ(floatToBf16(fromBits(0x3f818000)), 0x3f82);  // tie: up to even
    EXPECT_EQ(floatToBf16(fromBits(0x3f808001)), 0x3f81);
    EXPECT_EQ(floatToBf16(fromBits(0x7f7fffff)), 0x7f80);  // FLT_MAX rounds to inf
    // A NaN whose payload sits only in the low 16 bits must not collapse to inf.
    const uint16_t nan = floatToBf16(fromBits(0x7f800001));
    EXPECT_TRUE(std::isnan(bf16ToFloat(nan)));
    EXPECT_EQ(bf16ToFloat(0xc040), -3.0f);
    for (uint32_t b = 0; b <= 0xffff; ++b) {
        const float f = bf16ToFloat(static_cast<uint16_t>(b));
        if (!std::isnan(f)) {
            ASSERT_EQ(floatToBf16(f), b);
        }
    }
}

// ---- layouts and hand-made blocks ----

TEST(GgmlTypes, LayoutAndSizes) {
    EXPECT_EQ(offsetof(BlockQ4_K, scales), 4u);
    EXPECT_EQ(offsetof(BlockQ4_K, qs), 16u);
    EXPECT_EQ(offsetof(BlockQ6_K, qh), 128u);
    EXPECT_EQ(offsetof(BlockQ6_K, scales), 192u);
    EXPECT_EQ(offsetof(BlockQ6_K, d), 208u);
    EXPECT_EQ(rowBytes(GgmlType::Q4_0, 4096), 128 * 18);
    EXPECT_EQ(rowBytes(GgmlType::Q6_K, 512), 2 * 210);
    EXPECT_EQ(rowBytes(GgmlType::BF16, 3), 6);
    EXPECT_TRUE(isKnownType(12));
    EXPECT_FALSE(isKnownType(3));  // Q4_1: a ggml type we do not implement
    EXPECT_FALSE(isKnownType(99));
    EXPECT_STREQ(typeName(GgmlType::Q6_K), "Q6_K");
}

TEST(QuantRef, HandMadeQ8_0) {
    BlockQ8_0 b{};
    b.d = floatToFp16(0.5f);
    for (int i = 0; i < 32; ++i) b.qs[i] = static_cast<int8_t>(i * 8 - 128);
    float out[32];
    dequantizeRowRef(GgmlType::Q8_0, &b, out, 32);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * static_cast<float>(i * 8 - 128));
}

TEST(QuantRef, HandMadeQ4_0) {
    BlockQ4_0 b{};
    b.d = floatToFp16(2.0f);
    b.qs[0] = 0x1f;   // element 0: low nibble 15 -> 7 * 2; element 16: high nibble 1 -> -7 * 2
    b.qs[15] = 0x80;  // element 15: 0 -> -16; element 31: 8 -> 0
    for (int i = 1; i < 15; ++i) b.qs[i] = 0x88;
    float out[32];
    dequantizeRowRef(GgmlType::Q4_0, &b, out, 32);
    EXPECT_EQ(out[0], 14.0f);
    EXPECT_EQ(out[16], -14.0f);
    EXPECT_EQ(out[15], -16.0f);
    EXPECT_EQ(out[31], 0.0f);
    EXPECT_EQ(out[7], 0.0f);
}

TEST(QuantRef, HandMadeQ4_K) {
    // Sub-block j uses scale sc[j] and min m[j]; 6-bit values with high bits exercise the packed layout.
    const int sc[8] = {1, 2, 63, 4, 17, 48, 5, 33};
    const int m[8] = {0, 3, 6, 60, 32, 1, 15, 63};
    BlockQ4_K b{};
    b.d = floatToFp16(0.25f);
    b.dmin = floatToFp16(0.5f);
    for (int j = 0; j < 4; ++j) {
        b.scales[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
        b.scales[j + 4] = static_cast<uint8_t>(m[j] | ((m[j + 4] >> 4) << 6));
        b.scales[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
    // Element 32 * j + l holds q = (j + l) % 16: sub-block 2k in the low nibbles of qs[32k..], 2k+1 in the high.
    for (int k = 0; k < 4; ++k)
        for (int l = 0; l < 32; ++l)
            b.qs[32 * k + l] = static_cast<uint8_t>(((2 * k + l) % 16) | (((2 * k + 1 + l) % 16) << 4));
    float out[256];
    dequantizeRowRef(GgmlType::Q4_K, &b, out, 256);
    for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l)
            ASSERT_EQ(out[32 * j + l],
                      0.25f * static_cast<float>(sc[j] * ((j + l) % 16)) - 0.5f * static_cast<float>(m[j]))
                << "sub-block " << j << " element " << l;
}

TEST(QuantRef, HandMadeQ6_K) {
    BlockQ6_K b{};
    b.d = floatToFp16(0.5f);
    for (int j = 0; j < 16; ++j) b.scales[j] = static_cast<int8_t>(j - 7);
    // All codes 32 (value 0) except a few chosen elements. 6-bit code = low nibble | 2 high bits << 4.
    for (auto& v : b.ql) v = 0x00;
    for (auto& v : b.qh) v = 0xaa;  // high bits 2 in every slot: code 32 when the nibble is 0
    b.ql[0] = 0x5f;                 // element 0: low nibble 15; element 64: high nibble 5
    b.qh[0] = 0x2b;       // element 0: bits 0-1 = 3; element 32: bits 2-3 = 2; element 64: bits 4-5 = 2; 96: 0
    b.ql[32] = 0x07;      // element 32: low nibble 7; element 96: high nibble 0
    b.ql[64 + 5] = 0x01;  // element 128 + 5: low nibble 1 (its qh bits stay 2)
    float out[256];
    dequantizeRowRef(GgmlType::Q6_K, &b, out, 256);
    EXPECT_EQ(out[0], 0.5f * -7.0f * static_cast<float>(63 - 32));
    EXPECT_EQ(out[32], 0.5f * -5.0f * static_cast<float>(39 - 32));
    EXPECT_EQ(out[64], 0.5f * -3.0f * static_cast<float>(37 - 32));
    EXPECT_EQ(out[96], 0.5f * -1.0f * static_cast<float>(0 - 32));
    EXPECT_EQ(out[133], 0.5f * 1.0f * static_cast<float>(33 - 32));
    EXPECT_EQ(out[1], 0.0f);
    EXPECT_EQ(out[255], 0.0f);
}

// ---- round trips ----

// Largest error allowed per element, as a fraction of the largest magnitude in its block.
float errorBound(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return 0.0f;
        case GgmlType::F16:
            return 1.0f / 2048;
        case GgmlType::BF16:
            return 1.0f / 256;
        case GgmlType::Q8_0:
            return 0.5f / 127 * 1.01f;  // half a step of amax / 127 (+ fp16 scale rounding)
        case GgmlType::Q4_0:
            return 1.0f / 8 * 1.01f;  // codes span [-8, 7] steps of amax / 8: the far side loses one
        case GgmlType::Q6_K:
            return 0.5f / 31 + 1.0f / 254;  // half a step + 8-bit sub-scale rounding
        case GgmlType::Q4_K:
            return 2.0f / 15 * 0.5f + 2.0f / 63;  // range <= 2 amax; 6-bit scale/min rounding
    }
    return 0.0f;
}

// Largest relative RMS error on unit-normal data (measured values are about 3/4 of these).
double rmsBound(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return 0.0;
        case GgmlType::F16:
            return 3e-4;
        case GgmlType::BF16:
            return 2.5e-3;
        case GgmlType::Q8_0:
            return 7e-3;
        case GgmlType::Q4_0:
            return 0.11;
        case GgmlType::Q4_K:
            return 0.10;
        case GgmlType::Q6_K:
            return 0.025;
    }
    return 0.0;
}

TEST(QuantRef, RoundTripWithinBounds) {
    const int64_t n = 1024;
    for (GgmlType type : kAllTypes) {
        const std::vector<float> x = randomNormal(n, 7);
        const std::vector<float> y = dequantize(type, quantize(type, x), n);
        const int64_t block = std::max<int64_t>(blockSize(type), 32);
        double sqErr = 0.0;
        double sqRef = 0.0;
        for (int64_t b = 0; b < n; b += block) {
            float amax = 0.0f;
            for (int64_t i = b; i < b + block; ++i) amax = std::max(amax, std::fabs(x[i]));
            for (int64_t i = b; i < b + block; ++i) {
                const float bound = type == GgmlType::F16 || type == GgmlType::BF16 ? std::fabs(x[i]) : amax;
                ASSERT_LE(std::fabs(y[i] - x[i]), errorBound(type) * bound) << typeName(type) << " element " << i;
                sqErr += (y[i] - x[i]) * (y[i] - x[i]);
                sqRef += x[i] * x[i];
            }
        }
        // Typical error, relative to the signal: catches a codec that is valid but systematically poor.
        EXPECT_LE(std::sqrt(sqErr / sqRef), rmsBound(type)) << typeName(type);
    }
}

TEST(QuantRef, ZerosAndConstants) {
    for (GgmlType type : kAllTypes) {
        const std::vector<float> zeros(256, 0.0f);
        for (float v : dequantize(type, quantize(type, zeros), 256)) ASSERT_EQ(v, 0.0f) << typeName(type);
        const std::vector<float> constant(256, -0.75f);
        for (float v : dequantize(type, quantize(type, constant), 256))
            ASSERT_NEAR(v, -0.75f, 0.75f * errorBound(type)) << typeName(type);
    }
}

TEST(QuantRef, Q4_0LargestMagnitudeIsExact) {
    std::vector<float> x = randomNormal(32, 3, 0.1f);
    x[5] = -1.5f;  // the extreme maps to code 0 (-8 * d), exactly representable with d = 0.1875
    const std::vector<float> y = dequantize(GgmlType::Q4_0, quantize(GgmlType::Q4_0, x), 32);
    EXPECT_EQ(y[5], -1.5f);
}

// ---- dot products ----

TEST(QuantRef, DotMatchesDequantizedDot) {
    for (GgmlType type : kAllTypes) {
        for (int64_t n : {256, 512, 2304, 4096}) {
            if (n % blockSize(type) != 0)
                continue;
            const std::vector<float> w = randomNormal(n, 11);
            const std::vector<float> x = randomNormal(n, 12);
            const std::vector<uint8_t> q = quantize(type, w);
            const std::vector<float> deq = dequantize(type, q, n);
            double expected = 0.0;
            double magnitude = 0.0;
            for (int64_t i = 0; i < n; ++i) {
                expected += static_cast<double>(deq[i]) * x[i];
                magnitude += std::fabs(static_cast<double>(deq[i]) * x[i]);
            }
            EXPECT_NEAR(dotRowRef(type, q.data(), x.data(), n), expected, 1e-6 * magnitude)
                << typeName(type) << " n=" << n;
        }
    }
    // Rows that are not a multiple of the 256-element decode chunk.
    const std::vector<float> w = randomNormal(96, 1);
    const std::vector<float> x = randomNormal(96, 2);
    const std::vector<uint8_t> q = quantize(GgmlType::Q8_0, w);
    const std::vector<float> deq = dequantize(GgmlType::Q8_0, q, 96);
    float expected = 0.0f;
    for (int i = 0; i < 96; ++i) expected += deq[i] * x[i];
    EXPECT_NEAR(dotRowRef(GgmlType::Q8_0, q.data(), x.data(), 96), expected, 1e-4f);
    const std::vector<float> odd = randomNormal(37, 3);
    const std::vector<uint8_t> oddQ = quantize(GgmlType::F16, odd);
    float oddExpected = 0.0f;
    for (float v : dequantize(GgmlType::F16, oddQ, 37)) oddExpected += v * v;
    EXPECT_NEAR(dotRowRef(GgmlType::F16, oddQ.data(), dequantize(GgmlType::F16, oddQ, 37).data(), 37), oddExpected,
                1e-4f);
}

TEST(QuantRef, MatvecAndEmbedding) {
    const int rows = 5;
    const int cols = 512;
    for (GgmlType type : kAllTypes) {
        const std::vector<float> w = randomNormal(int64_t{rows} * cols, 21);
        const std::vector<float> x = randomNormal(cols, 22);
        const std::vector<uint8_t> q = quantize(type, w);
        const std::vector<float> deq = dequantize(type, q, int64_t{rows} * cols);
        std::vector<float> y(rows);
        matvecRef(type, q.data(), x.data(), y.data(), rows, cols);
        for (int r = 0; r < rows; ++r) {
            float expected = 0.0f;
            for (int c = 0; c < cols; ++c) expected += deq[static_cast<size_t>(r) * cols + c] * x[c];
            EXPECT_NEAR(y[r], expected, 1e-3f) << typeName(type) << " row " << r;
        }
        const int32_t tokens[3] = {4, 0, 4};
        std::vector<float> emb(3 * cols);
        embeddingRef(type, q.data(), cols, tokens, 3, emb.data());
        for (int i = 0; i < 3; ++i)
            for (int c = 0; c < cols; ++c)
                ASSERT_EQ(emb[static_cast<size_t>(i) * cols + c], deq[static_cast<size_t>(tokens[i]) * cols + c]);
    }
}

}  // namespace
}  // namespace kernels
