// CPU references of the fused decode kernels (kernels/fused_ref.h): the two-level int8 activation scheme stays within
// its stated error (d / 508 per value, d = max|x| / 127 of the block), gemvRef's epilogues and int8 switch are
// the unfused references composed, and ropeKvStoreRef stores ropeRef's keys exactly in a float32 cache and as their
// fp16 roundings in an fp16 one.
#include "kernels/fused_ref.h"

#include <cmath>
#include <vector>

#include <gtest/gtest.h>

#include "kernels/quant_ref.h"
#include "kernels/reference.h"

namespace {

using kernels::GemvEpilogue;
using kernels::GgmlType;

std::vector<float> ramp(int n, float scale) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
        v[static_cast<size_t>(i)] = scale * std::sin(0.37f * static_cast<float>(i) + 0.1f);
    return v;
}

TEST(FusedRef, TwoLevelActivationWithinBound) {
    const int n = 128;
    std::vector<float> x = ramp(n, 3.0f);
    for (int i = 64; i < 96; ++i)
        x[static_cast<size_t>(i)] = 0.0f;  // an all-zero block: d = 0, q = r = 0
    std::vector<int8_t> q(n), r(n);
    std::vector<float> d(n / kernels::kActBlock);
    kernels::quantizeActivationRef(x.data(), n, q.data(), r.data(), d.data());
    EXPECT_EQ(d[2], 0.0f);
    for (int i = 0; i < n; ++i) {
        const float db = d[static_cast<size_t>(i / kernels::kActBlock)];
        const float back = db * q[static_cast<size_t>(i)] + db / kernels::kActLowDivisor * r[static_cast<size_t>(i)];
        EXPECT_LE(std::fabs(back - x[static_cast<size_t>(i)]), db / 508.0f * 1.001f + 1e-7f) << "value " << i;
        EXPECT_LE(std::abs(q[static_cast<size_t>(i)]), 127);
    }
}

TEST(FusedRef, GemvEpiloguesComposeTheReferences) {
    const int rows = 8, cols = 128;
    const std::vector<float> wf = ramp(rows * cols, 1.0f);
    const std::vector<float> x = ramp(cols, 2.0f);
    const std::vector<float> g(static_cast<size_t>(cols), 1.5f);
    std::vector<float> xn(static_cast<size_t>(cols));
    kernels::rmsnormRef(xn.data(), x.data(), g.data(), 1, cols, 1e-5f);
    std::vector<float> dots(static_cast<size_t>(rows));
    kernels::matvecRef(GgmlType::F32, wf.data(), xn.data(), dots.data(), rows, cols);

    std::vector<float> y(static_cast<size_t>(rows), 1.0f);
    kernels::gemvRef(GgmlType::F32, wf.data(), rows, cols, x.data(), g.data(), 1e-5f, GemvEpilogue::Accumulate,
                     y.data());
    for (int i = 0; i < rows; ++i)
        EXPECT_FLOAT_EQ(y[static_cast<size_t>(i)], 1.0f + dots[static_cast<size_t>(i)]);

    std::vector<float> want(rows / 2);
    kernels::swigluRef(want.data(), dots.data(), dots.data() + rows / 2, rows / 2);
    kernels::gemvRef(GgmlType::F32, wf.data(), rows, cols, x.data(), g.data(), 1e-5f, GemvEpilogue::SwiGlu, y.data());
    for (int i = 0; i < rows / 2; ++i)
        EXPECT_FLOAT_EQ(y[static_cast<size_t>(i)], want[static_cast<size_t>(i)]);

    // Q8_0 rows of whole block pairs use the quantised activation: close to, not equal to, the float product.
    std::vector<uint8_t> wq(static_cast<size_t>(rows * kernels::rowBytes(GgmlType::Q8_0, cols)));
    kernels::quantizeRowRef(GgmlType::Q8_0, wf.data(), wq.data(), static_cast<int64_t>(rows) * cols);
    ASSERT_TRUE(kernels::usesInt8Activations(GgmlType::Q8_0, cols));
    std::vector<float> exact(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
    kernels::matvecRef(GgmlType::Q8_0, wq.data(), x.data(), exact.data(), rows, cols);
    kernels::gemvRef(GgmlType::Q8_0, wq.data(), rows, cols, x.data(), nullptr, 0.0f, GemvEpilogue::Store, got.data());
    for (int i = 0; i < rows; ++i)
        EXPECT_NEAR(got[static_cast<size_t>(i)], exact[static_cast<size_t>(i)], 2.0f / 508.0f * cols);
}

TEST(FusedRef, RopeKvStoreRefStoresRopedKeysInEitherCacheType) {
    const int nHeads = 4, nKvHeads = 2, headDim = 8, qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
    const std::vector<float> qkv = ramp(qDim + 2 * kvDim, 1.5f);
    const int32_t position = 300, slot = 2;
    std::vector<float> q(static_cast<size_t>(qDim)), kF32(4 * static_cast<size_t>(kvDim)), vF32 = kF32;
    std::vector<uint16_t> kF16(kF32.size()), vF16(kF32.size());
    kernels::ropeKvStoreRef(qkv.data(), q.data(), kF32.data(), vF32.data(), &position, &slot, 1, nHeads, nKvHeads,
                            headDim, headDim, 10000.0f);
    kernels::ropeKvStoreRef(qkv.data(), q.data(), kF16.data(), vF16.data(), &position, &slot, 1, nHeads, nKvHeads,
                            headDim, headDim, 10000.0f);
    std::vector<float> k(qkv.begin() + qDim, qkv.begin() + qDim + kvDim);
    kernels::ropeRef(k.data(), &position, 1, nKvHeads, headDim, headDim, 10000.0f);
    for (int i = 0; i < kvDim; ++i) {
        const size_t at = static_cast<size_t>(slot * kvDim + i);
        EXPECT_EQ(kF32[at], k[static_cast<size_t>(i)]);
        EXPECT_EQ(vF32[at], qkv[static_cast<size_t>(qDim + kvDim + i)]);
        EXPECT_EQ(kF16[at], kernels::floatToFp16(kF32[at]));
        EXPECT_EQ(vF16[at], kernels::floatToFp16(vF32[at]));
    }
    EXPECT_EQ(kF32[0], 0.0f);  // other rows untouched
}

}  // namespace
