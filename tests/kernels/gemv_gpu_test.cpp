// gemv()/matvec() against gemvRef for every launch variant, weight type and epilogue over decode shapes (TinyLlama:
// 2048 -> 2048/256/5632, 5632 -> 2048, the fused QKV 2048 -> 3072 and gate|up 2048 -> 2 x 5632; odd row counts; a row
// wider than one shared-memory slab; split-K over several column chunks; Q8_0/Q4_0 rows that are not whole pairs of
// blocks and take the float path), plus a speed table (every variant x type x TinyLlama / Llama-2-7B layer GEMV) for
// tuning the dispatcher. Tolerance per output: the two sides accumulate in float in a different order, so
// |dot - ref| <= 1e-5 * sum_i |w_i x_i| + 1e-5; on the int8 path the low activation level may round one step apart
// where GPU and CPU normalise x a few ulps apart, worth max|w| * d / 254 per value (2 + cols / 64 such allowed).
#include "kernels/gemv.h"

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "gpu_test_util.h"
#include "kernels/fused_ref.h"
#include "kernels/reference.h"

namespace {

using kernels::GemvEpilogue;
using kernels::GemvVariant;
using kernels::GgmlType;

const GemvVariant kVariants[] = {GemvVariant::Auto, GemvVariant::Wide, GemvVariant::Multi, GemvVariant::Pdl};

const char* variantName(GemvVariant v) {
    switch (v) {
    case GemvVariant::Auto: return "Auto";
    case GemvVariant::Wide: return "Wide";
    case GemvVariant::Multi: return "Multi";
    case GemvVariant::Pdl: return "Pdl";
    }
    return "?";
}

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

// Runs one case on the GPU with every variant and checks each against gemvRef; returns the number of outputs out of
// tolerance over all variants (each variant's first failure is reported).
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
    // A stream of its own, as the backend uses (the legacy default stream has extra ordering rules); toDevice and
    // toHost synchronise the whole device around it.
    auto stream = kernels::Stream::create();
    EXPECT_TRUE(stream.ok());
    if (!stream.ok())
        return 1;
    int bad = 0;
    for (GemvVariant variant : kVariants) {
        SCOPED_TRACE(variantName(variant));
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
        a.variant = variant;
        const auto st = kernels::gemv(stream->get(), a);
        EXPECT_TRUE(st.ok()) << st.error().toString();
        const auto got = gputest::toHost(dy);
        int badHere = 0;
        for (int o = 0; o < outputs; ++o) {
            float tol = tolDot[o] + 1e-6f * std::fabs(y0[o]);
            if (c.epilogue == GemvEpilogue::SwiGlu) {  // |d silu / dg| <= 1.1, |silu(g)| <= |g|
                const int u = o + outputs;
                tol = 1.1f * tolDot[o] * (std::fabs(dots[u]) + tolDot[u]) +
                      tolDot[u] * (std::fabs(dots[o]) + tolDot[o]) + 1e-5f;
            }
            if (!(std::fabs(got[o] - want[o]) <= tol) && badHere++ == 0)
                ADD_FAILURE() << "output " << o << " got " << got[o] << " want " << want[o] << " (tolerance " << tol
                              << ")";
        }
        bad += badHere;
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
        {21, 8448, GemvEpilogue::Store, false},         {37, 4352, GemvEpilogue::Accumulate, false},
        {38, 8448, GemvEpilogue::SwiGlu, true},
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

kernels::GemvArgs shapeArgs(GgmlType type, int rows, int cols, GemvEpilogue epilogue) {
    kernels::GemvArgs a;
    a.type = type;
    a.rows = rows;
    a.cols = cols;
    a.epilogue = epilogue;
    return a;
}

// The dispatcher resolves Auto to a concrete variant for every decode shape.
TEST(GemvGpu, AutoPicksAConcreteVariant) {
    for (GgmlType type : kTypes) {
        for (const GemvEpilogue e : {GemvEpilogue::Store, GemvEpilogue::Accumulate, GemvEpilogue::SwiGlu}) {
            for (const int rows : {2, 2048, 2560, 11264, 22016}) {
                EXPECT_NE(kernels::gemvAutoVariant(shapeArgs(type, rows, 4096, e)), GemvVariant::Auto)
                    << kernels::typeName(type) << " " << rows;
            }
        }
    }
}

// The dispatcher table in kernels/gemv.cu, per family: Accumulate, then Store/SwiGlu below and from 8192 outputs.
TEST(GemvGpu, AutoFollowsTheMeasuredTable) {
    const auto pick = [](GgmlType type, int rows, int cols, GemvEpilogue e) {
        return kernels::gemvAutoVariant(shapeArgs(type, rows, cols, e));
    };
    for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::BF16}) {
        SCOPED_TRACE(kernels::typeName(type));
        EXPECT_EQ(pick(type, 2048, 2048, GemvEpilogue::Accumulate), GemvVariant::Pdl);
        EXPECT_EQ(pick(type, 8192, 22016, GemvEpilogue::Accumulate), GemvVariant::Pdl);  // any output count
        EXPECT_EQ(pick(type, 2560, 2048, GemvEpilogue::Store), GemvVariant::Wide);
        EXPECT_EQ(pick(type, 22016, 4096, GemvEpilogue::SwiGlu), GemvVariant::Wide);
    }
    for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
        SCOPED_TRACE(kernels::typeName(type));
        EXPECT_EQ(pick(type, 4096, 11008, GemvEpilogue::Accumulate), GemvVariant::Wide);
        EXPECT_EQ(pick(type, 2560, 2048, GemvEpilogue::Store), GemvVariant::Multi);
        EXPECT_EQ(pick(type, 16382, 2048, GemvEpilogue::SwiGlu), GemvVariant::Multi);  // 8191 outputs
        EXPECT_EQ(pick(type, 16384, 2048, GemvEpilogue::SwiGlu), GemvVariant::Wide);   // 8192 outputs
        EXPECT_EQ(pick(type, 8192, 4096, GemvEpilogue::Store), GemvVariant::Wide);
        // Rows that are not whole pairs of blocks take the float path, hence the block-quant rule.
        EXPECT_EQ(pick(type, 8192, 96, GemvEpilogue::Store), GemvVariant::Multi);
    }
    for (GgmlType type : {GgmlType::Q4_K, GgmlType::Q6_K}) {
        SCOPED_TRACE(kernels::typeName(type));
        for (const GemvEpilogue e : {GemvEpilogue::Store, GemvEpilogue::Accumulate, GemvEpilogue::SwiGlu})
            for (const int rows : {2048, 22016})
                EXPECT_EQ(pick(type, rows, 4096, e), GemvVariant::Multi) << rows;
    }
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

// Not a pass/fail speed test: prints, for every weight type and the decode GEMVs of one TinyLlama-1.1B and one
// Llama-2-7B layer (QKV + norm, wo + residual, gate|up + norm + SwiGLU, down + residual), the time and effective
// bandwidth (weight bytes / time) of every variant, marks the fastest (*), and sums each variant over the layer
// ("best" = the per-shape winners). Auto runs what gemv() does by default; its pick is shown in brackets. Each
// figure is one CUDA-graph replay of many launches (as decode replays them: no per-launch CPU overhead) rotating
// over copies of the weights that together exceed the 50 MB L2, so every launch reads its weights from DRAM.
// Asserts only that the timed kernels ran.
TEST(GemvGpu, Speed) {
    struct Model {
        const char* name;
        Case layer[4];
    };
    const Model models[] = {{"TinyLlama", {{2560, 2048, GemvEpilogue::Store, true},
                                           {2048, 2048, GemvEpilogue::Accumulate, false},
                                           {11264, 2048, GemvEpilogue::SwiGlu, true},
                                           {2048, 5632, GemvEpilogue::Accumulate, false}}},
                            {"Llama-2-7B", {{12288, 4096, GemvEpilogue::Store, true},
                                            {4096, 4096, GemvEpilogue::Accumulate, false},
                                            {22016, 4096, GemvEpilogue::SwiGlu, true},
                                            {4096, 11008, GemvEpilogue::Accumulate, false}}}};
    const char* shapeNames[] = {"qkv+norm", "o+res", "gateup+swiglu", "down+res"};
    constexpr size_t kPoolBytes = size_t{512} << 20;  // >= 2 copies of the largest matrix (F16 22016 x 4096: 180 MB)
    constexpr double kBytesPerFigure = 2e9;           // weight bytes read per timed graph (about 1 ms)
    constexpr int kVariantCount = static_cast<int>(std::size(kVariants));
    auto pool = kernels::DeviceBuffer<uint8_t>::create(kPoolBytes);
    ASSERT_TRUE(pool.ok()) << pool.error().toString();
    ASSERT_EQ(cudaMemset(pool->data(), 0x11, pool->bytes()), cudaSuccess);  // finite values in every format
    auto stream = kernels::Stream::create();
    auto start = kernels::Event::create(true);
    auto end = kernels::Event::create(true);
    ASSERT_TRUE(stream.ok() && start.ok() && end.ok());
    auto x = gputest::toDevice(gputest::randomFloats(11008, 1));
    auto g = gputest::toDevice(gputest::randomFloats(11008, 2, 0.5f, 1.5f));
    auto y = gputest::deviceZeros<float>(22016);
    const cudaStream_t s = stream->get();

    // Microseconds per launch of one variant on one shape, or -1 if it failed.
    auto time = [&](GgmlType type, const Case& c, GemvVariant variant) -> float {
        const size_t bytes = static_cast<size_t>(c.rows) * kernels::rowBytes(type, c.cols);
        const size_t copies = kPoolBytes / bytes;
        const int iters = std::clamp(static_cast<int>(kBytesPerFigure / static_cast<double>(bytes)), 50, 1000);
        kernels::GemvArgs a;
        a.type = type;
        a.rows = c.rows;
        a.cols = c.cols;
        a.x = x.data();
        a.normWeight = c.norm ? g.data() : nullptr;
        a.normEps = kEps;
        a.epilogue = c.epilogue;
        a.y = y.data();
        a.variant = variant;
        kernels::GraphExec graph;
        EXPECT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
        bool launched = true;
        for (int i = 0; i < iters; ++i) {
            a.w = pool->data() + (static_cast<size_t>(i) % copies) * bytes;
            launched = kernels::gemv(s, a).ok() && launched;
        }
        const auto captured = graph.endCapture(s);
        EXPECT_TRUE(launched && captured.ok());
        if (!launched || !captured.ok())
            return -1.0f;
        EXPECT_TRUE(graph.launch(s).ok());  // warm-up (instruction cache, first-touch)
        EXPECT_TRUE(start->record(s).ok());
        EXPECT_TRUE(graph.launch(s).ok());
        EXPECT_TRUE(end->record(s).ok());
        EXPECT_TRUE(end->synchronize().ok());
        const auto ms = kernels::Event::elapsedMs(*start, *end);
        EXPECT_TRUE(ms.ok());
        return ms.ok() ? *ms * 1000.0f / static_cast<float>(iters) : -1.0f;
    };

    std::printf("GEMV speed (us per launch, GB/s of weights; * = fastest variant for the shape)\n");
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K, GgmlType::Q6_K}) {
        for (const Model& m : models) {
            float layerSum[kVariantCount] = {};
            float bestSum = 0.0f;
            double layerBytes = 0.0;
            for (int k = 0; k < 4; ++k) {
                const Case& c = m.layer[k];
                const double bytes = static_cast<double>(c.rows) * static_cast<double>(kernels::rowBytes(type, c.cols));
                layerBytes += bytes;
                float us[kVariantCount];
                int best = 1;
                for (int v = 0; v < kVariantCount; ++v) {
                    us[v] = time(type, c, kVariants[v]);
                    EXPECT_GT(us[v], 0.0f);
                    layerSum[v] += us[v];
                    if (v > 0 && us[v] > 0.0f && (us[best] <= 0.0f || us[v] < us[best]))
                        best = v;
                }
                bestSum += us[best];
                const GemvVariant autoPick = kernels::gemvAutoVariant(shapeArgs(type, c.rows, c.cols, c.epilogue));
                std::printf("%-5s %-10s %-13s %5d x %5d [Auto=%s]", kernels::typeName(type), m.name, shapeNames[k],
                            c.rows, c.cols, variantName(autoPick));
                for (int v = 0; v < kVariantCount; ++v)
                    std::printf(" | %s%s %7.2f us %5.0f GB/s", v == best ? "*" : " ", variantName(kVariants[v]), us[v],
                                bytes / (us[v] * 1e-6) / 1e9);
                std::printf("\n");
            }
            std::printf("%-5s %-10s LAYER SUM us (GB/s):", kernels::typeName(type), m.name);
            for (int v = 0; v < kVariantCount; ++v)
                std::printf(" %s %.2f (%.0f)", variantName(kVariants[v]), layerSum[v],
                            layerBytes / (layerSum[v] * 1e-6) / 1e9);
            std::printf(" | best-per-shape %.2f (%.0f)\n", bestSum, layerBytes / (bestSum * 1e-6) / 1e9);
        }
    }
}

}  // namespace
