// matvec() against matvecRef for every weight type over decode shapes (TinyLlama: 2048 -> 2048/256/5632,
// 5632 -> 2048; odd row counts), plus a bandwidth figure for the record. Both sides accumulate in float in a
// different order: |y - ref| <= 1e-5 * sum_i |w_i x_i| + 1e-5 per row.
#include "kernels/gemv.h"

#include <cstdio>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/reference.h"

namespace {

using kernels::GgmlType;

const GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                           GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};

// sum_i |W[r, i] x[i]| per row: the scale of the rounding error of a dot product.
std::vector<float> absDot(GgmlType type, const std::vector<uint8_t>& w, const std::vector<float>& x, int rows,
                          int cols) {
    std::vector<float> row(cols);
    std::vector<float> out(rows);
    for (int r = 0; r < rows; ++r) {
        kernels::dequantizeRowRef(type, w.data() + r * kernels::rowBytes(type, cols), row.data(), cols);
        double s = 0.0;
        for (int i = 0; i < cols; ++i)
            s += std::fabs(row[i] * x[i]);
        out[r] = static_cast<float>(s);
    }
    return out;
}

TEST(GemvGpu, MatchesReferenceForEveryType) {
    const int shapes[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {37, 768}, {1, 256}};
    for (GgmlType type : kTypes) {
        for (const auto& s : shapes) {
            const int rows = s[0], cols = s[1];
            SCOPED_TRACE(std::string(kernels::typeName(type)) + " " + std::to_string(rows) + "x" +
                         std::to_string(cols));
            const auto w = gputest::randomMatrix(type, rows, cols, rows + cols);
            const auto x = gputest::randomFloats(cols, 99);
            std::vector<float> want(rows);
            kernels::matvecRef(type, w.data(), x.data(), want.data(), rows, cols);
            const auto scale = absDot(type, w, x, rows, cols);
            auto dw = gputest::toDevice(w);
            auto dx = gputest::toDevice(x);
            auto dy = gputest::deviceZeros<float>(rows);
            ASSERT_TRUE(kernels::matvec(nullptr, type, dw.data(), dx.data(), dy.data(), rows, cols).ok());
            const auto got = gputest::toHost(dy);
            int bad = 0;
            for (int r = 0; r < rows; ++r)
                if (std::fabs(got[r] - want[r]) > 1e-5f * scale[r] + 1e-5f && bad++ == 0)
                    ADD_FAILURE() << "row " << r << " got " << got[r] << " want " << want[r];
            EXPECT_EQ(bad, 0);
        }
    }
}

TEST(GemvGpu, F32RowsOfFourMultiples) {
    const int rows = 64, cols = 172;  // stories260K FFN down projection
    const auto w = gputest::randomFloats(static_cast<size_t>(rows) * cols, 1);
    const auto x = gputest::randomFloats(cols, 2);
    std::vector<float> want(rows);
    kernels::matvecRef(GgmlType::F32, w.data(), x.data(), want.data(), rows, cols);
    auto dw = gputest::toDevice(w);
    auto dx = gputest::toDevice(x);
    auto dy = gputest::deviceZeros<float>(rows);
    ASSERT_TRUE(kernels::matvec(nullptr, GgmlType::F32, dw.data(), dx.data(), dy.data(), rows, cols).ok());
    gputest::expectClose(gputest::toHost(dy), want, 1e-5f, 1e-5f, "matvec F32 172");
}

TEST(GemvGpu, UnsupportedShapeNamesTheProblem) {
    const auto st = kernels::matvec(nullptr, GgmlType::Q6_K, nullptr, nullptr, nullptr, 4, 100);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().detail.find("Q6_K"), std::string::npos);
}

// Not a pass/fail speed test: prints effective bandwidth (weight bytes / time) for the log; asserts only that the
// timed kernel ran. Shapes: TinyLlama FFN down (2048 x 5632) and Llama-2-7B FFN up (11008 x 4096).
TEST(GemvGpu, Bandwidth) {
    const int shapes[][2] = {{2048, 5632}, {11008, 4096}};
    auto start = kernels::Event::create(true);
    auto end = kernels::Event::create(true);
    ASSERT_TRUE(start.ok() && end.ok());
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
        for (const auto& s : shapes) {
            const int rows = s[0], cols = s[1];
            const size_t bytes = static_cast<size_t>(rows * kernels::rowBytes(type, cols));
            // Several copies so the working set (>= 200 MB) does not sit in L2 between launches.
            const int copies = static_cast<int>(std::max<size_t>(1, (200u << 20) / bytes));
            auto w = kernels::DeviceBuffer<uint8_t>::create(bytes * copies);
            ASSERT_TRUE(w.ok());
            ASSERT_EQ(cudaMemset(w->data(), 0x11, w->bytes()), cudaSuccess);  // finite values in every format
            auto x = gputest::toDevice(gputest::randomFloats(cols, 1));
            auto y = gputest::deviceZeros<float>(rows);
            const int iters = 200;
            ASSERT_TRUE(start->record(nullptr).ok());
            for (int i = 0; i < iters; ++i)
                ASSERT_TRUE(kernels::matvec(nullptr, type, w->data() + (i % copies) * bytes, x.data(), y.data(), rows,
                                            cols)
                                .ok());
            ASSERT_TRUE(end->record(nullptr).ok());
            ASSERT_TRUE(end->synchronize().ok());
            const auto ms = kernels::Event::elapsedMs(*start, *end);
            ASSERT_TRUE(ms.ok());
            std::printf("matvec %-5s %5d x %5d: %7.2f us, %6.0f GB/s\n", kernels::typeName(type), rows, cols,
                        *ms * 1000.0f / iters, bytes * iters / (*ms * 1e-3) / 1e9);
            EXPECT_GT(*ms, 0.0f);
        }
    }
}

}  // namespace
