// dequantizeToF16() against dequantizeRowRef (exactly, after rounding the reference to fp16) and matmul() against
// matvecRef per token. matmul rounds weights and activations to fp16 (relative error 2^-11 each) and accumulates in
// float: |y - ref| <= 2e-3 * sum_i |w_i x_i| + 1e-4.
#include "kernels/gemm.h"

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

using kernels::GgmlType;

TEST(GemmGpu, DequantizeToF16MatchesReference) {
    for (GgmlType type : {GgmlType::F32, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K,
                          GgmlType::Q6_K}) {
        const int rows = 70, cols = 512;
        SCOPED_TRACE(kernels::typeName(type));
        const auto w = gputest::randomMatrix(type, rows, cols, 5);
        std::vector<float> want(static_cast<size_t>(rows) * cols);
        for (int r = 0; r < rows; ++r)
            kernels::dequantizeRowRef(type, w.data() + r * kernels::rowBytes(type, cols), want.data() + r * cols, cols);
        for (float& v : want)
            v = kernels::fp16ToFloat(kernels::floatToFp16(v));
        auto dw = gputest::toDevice(w);
        auto dout = gputest::deviceZeros<uint16_t>(want.size());
        ASSERT_TRUE(kernels::dequantizeToF16(nullptr, type, dw.data(), dout.data(), rows, cols).ok());
        // The kernel may compute d * q with an fma where the reference rounds twice: allow one fp16 ulp.
        gputest::expectClose(gputest::fromHalf(gputest::toHost(dout)), want, 1e-6f, 1e-3f, "dequantizeToF16");
    }
}

TEST(GemmGpu, MatmulMatchesReference) {
    auto cublas = kernels::CublasHandle::create();
    ASSERT_TRUE(cublas.ok());
    const int shapes[][3] = {{2048, 2048, 7}, {256, 2048, 64}, {5632, 2048, 33}, {2048, 5632, 5}, {40, 256, 300}};
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K,
                          GgmlType::Q6_K}) {
        // F32 runs unrounded: its bound is 100 times tighter.
        const double rel = type == GgmlType::F32 ? 2e-5 : 2e-3;
        for (const auto& s : shapes) {
            const int rows = s[0], cols = s[1], n = s[2];
            SCOPED_TRACE(std::string(kernels::typeName(type)) + " " + std::to_string(rows) + "x" +
                         std::to_string(cols) + " n " + std::to_string(n));
            const auto w = gputest::randomMatrix(type, rows, cols, 8);
            const auto x = gputest::randomFloats(static_cast<size_t>(n) * cols, 9);
            std::vector<float> want(static_cast<size_t>(n) * rows);
            std::vector<float> bound(want.size());
            std::vector<float> wrow(cols);
            for (int t = 0; t < n; ++t)
                kernels::matvecRef(type, w.data(), x.data() + static_cast<size_t>(t) * cols,
                                   want.data() + static_cast<size_t>(t) * rows, rows, cols);
            for (int r = 0; r < rows; ++r) {
                kernels::dequantizeRowRef(type, w.data() + r * kernels::rowBytes(type, cols), wrow.data(), cols);
                for (int t = 0; t < n; ++t) {
                    double a = 0.0;
                    for (int i = 0; i < cols; ++i)
                        a += std::fabs(wrow[i] * x[static_cast<size_t>(t) * cols + i]);
                    bound[static_cast<size_t>(t) * rows + r] = static_cast<float>(rel * a + 1e-4);
                }
            }
            auto dw = gputest::toDevice(w);
            auto dx = gputest::toDevice(x);
            auto dy = gputest::deviceZeros<float>(want.size());
            auto wScratch = gputest::deviceZeros<uint16_t>(static_cast<size_t>(rows) * cols);
            auto aScratch = gputest::deviceZeros<uint16_t>(x.size());
            const kernels::GemmScratch scratch{wScratch.data(), wScratch.size(), aScratch.data(), aScratch.size()};
            ASSERT_TRUE(
                kernels::matmul(nullptr, cublas->get(), type, dw.data(), rows, cols, dx.data(), n, dy.data(), scratch)
                    .ok());
            const auto got = gputest::toHost(dy);
            int bad = 0;
            for (size_t i = 0; i < got.size(); ++i)
                if (std::fabs(got[i] - want[i]) > bound[i] && bad++ == 0)
                    ADD_FAILURE() << "element " << i << " got " << got[i] << " want " << want[i];
            EXPECT_EQ(bad, 0);
        }
    }
}

TEST(GemmGpu, RejectsSmallScratch) {
    auto cublas = kernels::CublasHandle::create();
    ASSERT_TRUE(cublas.ok());
    const kernels::GemmScratch scratch{nullptr, 10, nullptr, 10};
    const auto st = kernels::matmul(nullptr, cublas->get(), GgmlType::Q8_0, nullptr, 64, 64, nullptr, 2, nullptr,
                                    scratch);
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, roundchat::ErrorCode::InvalidArgument);
}

}  // namespace
