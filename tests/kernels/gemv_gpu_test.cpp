// gemv()/matvec() against gemvRef for every weight type and epilogue over decode shapes (TinyLlama: 2048 -> 2048/256/
// 5632, 5632 -> 2048, the fused QKV 2048 -> 3072 and gate|up 2048 -> 2 x 5632; odd row counts; a row wider than one
// shared-memory slab; Q8_0/Q4_0 rows that are not whole pairs of blocks and take the float path), plus bandwidth
// figures for the record. Tolerance per output: the two sides accumulate in float in a different order, so
// |dot - ref| <= 1e-5 * sum_i |w_i x_i| + 1e-5; on the int8 path the low activation level may round one step apart
// where GPU and CPU normalise x a few ulps apart, worth max|w| * d / 254 per value (2 + cols / 64 such allowed).
#include "kernels/gemv.h"

#include <algorithm>
#include <cstdio>
#include <string>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/fused_ref.h"
#include "kernels/reference.h"

namespace {

using kernels::GemvEpilogue;
using kernels::GgmlType;

const GgmlType kTypes[] = {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0,
                           GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K};

constexpr float kEps = 1e-5f;

// Allowed |dot - ref| per row for input xs (already normalised) on the path gemv takes for this type and width.
std::vector<float> dotTolerance(GgmlType type, const std::vector<uint8_t>& w, const std::vector<float>& xs, int rows,
                                int cols) {
    std::vector<float> row(cols);
    std::vector<float> tol(rows);
    float maxW = 0.0f;
    for (int r = 0; r < rows; ++r) {
        kernels::dequantizeRowRef(type, w.data() + r * kernels::rowBytes(type, cols), row.data(), cols);
        double s = 0.0;
        for (int i = 0; i < cols; ++i) {
            s += std::fabs(row[i] * xs[i]);
            maxW = std::max(maxW, std::fabs(row[i]));
        }
        tol[r] = static_cast<float>(1e-5 * s + 1e-5);
    }
    if (kernels::usesInt8Activations(type, cols)) {
        float maxAbs = 0.0f;
        for (float v : xs)
            maxAbs = std::max(maxAbs, std::fabs(v));
        for (float& t : tol)
            t += (2.0f + cols / 64.0f) * maxW * maxAbs / 127.0f / kernels::kActLowDivisor;
    }
    return tol;
}

struct Case {
    int rows, cols;
    GemvEpilogue epilogue;
    bool norm;
};

// Runs one case on the GPU and checks it against gemvRef; returns the number of outputs out of tolerance.
int checkCase(GgmlType type, const Case& c) {
    const auto w = gputest::randomMatrix(type, c.rows, c.cols, c.rows + c.cols);
    const auto x = gputest::randomFloats(c.cols, 99, -2.0f, 2.0f);
    const auto g = gputest::randomFloats(c.cols, 98, 0.5f, 1.5f);
    const int outputs = c.epilogue == GemvEpilogue::SwiGlu ? c.rows / 2 : c.rows;
    const auto y0 = gputest::randomFloats(outputs, 97);

    std::vector<float> want = y0;
    kernels::gemvRef(type, w.data(), c.rows, c.cols, x.data(), c.norm ? g.data() : nullptr, kEps, c.epilogue,
                     want.data());
    // The dots themselves (to bound the SwiGlu error) and their tolerance, on the normalised input.
    std::vector<float> xs = x;
    if (c.norm)
        kernels::rmsnormRef(xs.data(), x.data(), g.data(), 1, c.cols, kEps);
    std::vector<float> dots(c.rows);
    kernels::gemvRef(type, w.data(), c.rows, c.cols, xs.data(), nullptr, kEps, GemvEpilogue::Store, dots.data());
    const auto tolDot = dotTolerance(type, w, xs, c.rows, c.cols);

    auto dw = gputest::toDevice(w);
    auto dx = gputest::toDevice(x);
    auto dg = gputest::toDevice(g);
    auto dy = gputest::toDevice(y0);
    kernels::GemvArgs a;
    a.type = type;
    a.w = dw.data();
    a.rows = c.rows;
    a.cols = c.cols;
    a.x = dx.data();
    a.normWeight = c.norm ? dg.data() : nullptr;
    a.normEps = kEps;
    a.epilogue = c.epilogue;
    a.y = dy.data();
    const auto st = kernels::gemv(nullptr, a);
    EXPECT_TRUE(st.ok()) << st.error().toString();
    const auto got = gputest::toHost(dy);

    int bad = 0;
    for (int o = 0; o < outputs; ++o) {
        float tol = tolDot[o] + 1e-6f * std::fabs(y0[o]);
        if (c.epilogue == GemvEpilogue::SwiGlu) {  // |d silu / dg| <= 1.1, |silu(g)| <= |g|
            const int u = o + outputs;
            tol = 1.1f * tolDot[o] * (std::fabs(dots[u]) + tolDot[u]) +
                  tolDot[u] * (std::fabs(dots[o]) + tolDot[o]) + 1e-5f;
        }
        if (!(std::fabs(got[o] - want[o]) <= tol) && bad++ == 0)
            ADD_FAILURE() << "output " << o << " got " << got[o] << " want " << want[o] << " (tolerance " << tol
                          << ")";
    }
    return bad;
}

TEST(GemvGpu, MatchesReferenceForEveryTypeAndEpilogue) {
    const Case cases[] = {
        {2048, 2048, GemvEpilogue::Store, false},       {256, 2048, GemvEpilogue::Store, false},
        {5632, 2048, GemvEpilogue::Store, false},       {2048, 5632, GemvEpilogue::Store, false},
        {37, 768, GemvEpilogue::Store, false},          {1, 256, GemvEpilogue::Store, false},
        {3072, 2048, GemvEpilogue::Store, true},        {2048, 2048, GemvEpilogue::Accumulate, false},
        {11264, 2048, GemvEpilogue::SwiGlu, true},      {2048, 5632, GemvEpilogue::Accumulate, false},
        {74, 768, GemvEpilogue::SwiGlu, false},         {19, 8448, GemvEpilogue::Accumulate, true},
        {21, 8448, GemvEpilogue::Store, false},
    };
    for (GgmlType type : kTypes) {
        for (const Case& c : cases) {
            SCOPED_TRACE(std::string(kernels::typeName(type)) + " " + std::to_string(c.rows) + "x" +
                         std::to_string(c.cols) + " epilogue " + std::to_string(static_cast<int>(c.epilogue)) +
                         (c.norm ? " +norm" : ""));
            EXPECT_EQ(checkCase(type, c), 0);
        }
    }
}

// Q8_0/Q4_0 rows of 96 elements (3 blocks, not whole pairs) take the float path; 4-multiple F32 rows (stories260K).
TEST(GemvGpu, OddWidthsTakeTheFloatPath) {
    EXPECT_FALSE(kernels::usesInt8Activations(GgmlType::Q8_0, 96));
    EXPECT_TRUE(kernels::usesInt8Activations(GgmlType::Q4_0, 2048));
    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        SCOPED_TRACE(kernels::typeName(type));
        EXPECT_EQ(checkCase(type, {46, 96, GemvEpilogue::SwiGlu, true}), 0);  // SwiGlu: gate|up, an even count
        EXPECT_EQ(checkCase(type, {17, 96, GemvEpilogue::Accumulate, false}), 0);
    }
    EXPECT_EQ(checkCase(GgmlType::F32, {64, 172, GemvEpilogue::Store, false}), 0);
    EXPECT_EQ(checkCase(GgmlType::F32, {64, 172, GemvEpilogue::SwiGlu, true}), 0);
}

// matvec() is gemv() with Store and no norm.
TEST(GemvGpu, MatvecIsPlainGemv) {
    const int rows = 300, cols = 2048;
    const auto w = gputest::randomMatrix(GgmlType::Q4_0, rows, cols, 3);
    const auto x = gputest::randomFloats(cols, 4);
    std::vector<float> want(rows);
    kernels::gemvRef(GgmlType::Q4_0, w.data(), rows, cols, x.data(), nullptr, 0.0f, GemvEpilogue::Store, want.data());
    auto dw = gputest::toDevice(w);
    auto dx = gputest::toDevice(x);
    auto dy = gputest::deviceZeros<float>(rows);
    ASSERT_TRUE(kernels::matvec(nullptr, GgmlType::Q4_0, dw.data(), dx.data(), dy.data(), rows, cols).ok());
    gputest::expectClose(gputest::toHost(dy), want, 1e-3f, 1e-4f, "matvec Q4_0");
}

TEST(GemvGpu, BadShapesNameTheProblem) {
    const auto st = kernels::matvec(nullptr, GgmlType::Q6_K, nullptr, nullptr, nullptr, 4, 100);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.error().detail.find("Q6_K"), std::string::npos);
    kernels::GemvArgs a;
    a.type = GgmlType::F16;
    a.rows = 3;
    a.cols = 64;
    a.epilogue = GemvEpilogue::SwiGlu;
    EXPECT_FALSE(kernels::gemv(nullptr, a).ok());  // SwiGlu needs an even row count
}

// Not a pass/fail speed test: prints effective bandwidth (weight bytes / time) for the log; asserts only that the
// timed kernels ran. Plain GEMV on the TinyLlama shapes and Llama-2-7B FFN up (11008 x 4096), then the fused decode
// GEMVs of a TinyLlama layer (QKV + norm, wo + residual, gate|up + norm + SwiGLU, down + residual) and their sum.
TEST(GemvGpu, Bandwidth) {
    const Case plain[] = {{2048, 2048, GemvEpilogue::Store, false},
                          {256, 2048, GemvEpilogue::Store, false},
                          {5632, 2048, GemvEpilogue::Store, false},
                          {2048, 5632, GemvEpilogue::Store, false},
                          {11008, 4096, GemvEpilogue::Store, false}};
    const Case layer[] = {{3072, 2048, GemvEpilogue::Store, true},
                          {2048, 2048, GemvEpilogue::Accumulate, false},
                          {11264, 2048, GemvEpilogue::SwiGlu, true},
                          {2048, 5632, GemvEpilogue::Accumulate, false}};
    auto start = kernels::Event::create(true);
    auto end = kernels::Event::create(true);
    ASSERT_TRUE(start.ok() && end.ok());
    auto x = gputest::toDevice(gputest::randomFloats(11008, 1));
    auto g = gputest::toDevice(gputest::randomFloats(11008, 2, 0.5f, 1.5f));
    auto y = gputest::deviceZeros<float>(11264);
    // Returns microseconds per call and prints a line.
    auto time = [&](GgmlType type, const Case& c, const char* label) -> float {
        const size_t bytes = static_cast<size_t>(c.rows * kernels::rowBytes(type, c.cols));
        // Several copies so the working set (>= 200 MB) does not sit in L2 between launches.
        const int copies = static_cast<int>(std::max<size_t>(1, (200u << 20) / bytes));
        auto w = kernels::DeviceBuffer<uint8_t>::create(bytes * copies);
        EXPECT_TRUE(w.ok());
        if (!w.ok())
            return 0.0f;
        EXPECT_EQ(cudaMemset(w->data(), 0x11, w->bytes()), cudaSuccess);  // finite values in every format
        kernels::GemvArgs a;
        a.type = type;
        a.rows = c.rows;
        a.cols = c.cols;
        a.x = x.data();
        a.normWeight = c.norm ? g.data() : nullptr;
        a.normEps = kEps;
        a.epilogue = c.epilogue;
        a.y = y.data();
        const int iters = 200;
        EXPECT_TRUE(start->record(nullptr).ok());
        for (int i = 0; i < iters; ++i) {
            a.w = w->data() + (i % copies) * bytes;
            EXPECT_TRUE(kernels::gemv(nullptr, a).ok());
        }
        EXPECT_TRUE(end->record(nullptr).ok());
        EXPECT_TRUE(end->synchronize().ok());
        const auto ms = kernels::Event::elapsedMs(*start, *end);
        EXPECT_TRUE(ms.ok());
        const float us = *ms * 1000.0f / iters;
        std::printf("%-10s %-5s %5d x %5d: %7.2f us, %6.0f GB/s\n", label, kernels::typeName(type), c.rows, c.cols,
                    us, bytes / (us * 1e-6) / 1e9);
        EXPECT_GT(us, 0.0f);
        return us;
    };
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
        for (const Case& c : plain)
            time(type, c, "gemv");
        float total = 0.0f;
        for (const Case& c : layer)
            total += time(type, c, c.norm ? "fused+norm" : "fused");
        std::printf("TinyLlama layer GEMVs %-5s: %7.2f us (x22 layers: %.0f us)\n", kernels::typeName(type), total,
                    22 * total);
    }
}

}  // namespace
