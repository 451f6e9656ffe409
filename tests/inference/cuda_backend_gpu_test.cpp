// CUDA backend against the float64 reference of stories260K (logits within 1e-2, same greedy ids), against the CPU
// backend on random TinyLlama-shape models (F16, Q8_0, Q4_0: logits within 1% relative L2), on round views and round
// scores, KV export/import and tail drops; the KV element type (float32 for F32 models, else fp16); out-of-memory is
// an error value.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/inference/fixtures.h"
#include "inference/backend.h"
#include "inference/generation.h"
#include "inference/model.h"
#include "inference/random_model.h"

namespace inference {
namespace {

const std::string& kModelPath = test::kStoriesModelPath;

using test::loadModel;
using test::referenceJson;

float maxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0.0f;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
        m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

double relativeL2(const std::vector<float>& got, const std::vector<float>& want) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
        den += want[i] * static_cast<double>(want[i]);
    }
    return std::sqrt(num / den);
}

int32_t argmax(const std::vector<float>& v) {
    return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<float> logitsOf(BackendContext& ctx) {
    Result<std::span<const float>> l = ctx.logits();
    EXPECT_TRUE(l.ok()) << (l.ok() ? "" : l.error().toString());
    return l.ok() ? std::vector<float>(l->begin(), l->end()) : std::vector<float>{};
}

std::unique_ptr<BackendContext> context(const Model& m, int capacity) {
    Result<std::unique_ptr<BackendContext>> ctx = m.backend().createContext(capacity);
    EXPECT_TRUE(ctx.ok()) << (ctx.ok() ? "" : ctx.error().toString());
    return ctx.ok() ? std::move(*ctx) : nullptr;
}

TEST(CudaBackend, ReferenceCasesLogitsAndGreedyIds) {
    std::unique_ptr<Model> model = loadModel(kModelPath, BackendKind::Cuda);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    for (const nlohmann::json& c : referenceJson()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
        const std::vector<int32_t> greedy = c["greedy_ids"].get<std::vector<int32_t>>();
        auto ctx = context(*model, 256);
        ASSERT_TRUE(ctx);
        ASSERT_TRUE(ctx->beginRound().ok());
        ASSERT_TRUE(prefill(*ctx, prompt, nLayers, false).ok());
        std::vector<int32_t> ids;
        for (size_t step = 0; step < greedy.size(); ++step) {
            const std::vector<float> logits = logitsOf(*ctx);
            const char* key = step == 0 ? "last_prompt" : step == 8 ? "after_8" : step == 32 ? "after_32" : nullptr;
            if (key) {
                const float err = maxAbsDiff(logits, c["logits"][key].get<std::vector<float>>());
                std::printf("%s %s: max logit error %.2e\n", c["name"].get<std::string>().c_str(), key, err);
                EXPECT_LE(err, 1e-2f) << key;
            }
            ids.push_back(argmax(logits));
            const int32_t one[1] = {ids.back()};
            ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{one}, nLayers).ok());
        }
        EXPECT_EQ(ids, greedy);
    }
}

TEST(CudaBackend, MatchesCpuOnRoundViewsScoresAndEdits) {
    std::unique_ptr<Model> gpu = loadModel(kModelPath, BackendKind::Cuda);
    std::unique_ptr<Model> cpu = loadModel(kModelPath, BackendKind::Cpu);
    ASSERT_TRUE(gpu && cpu);
    const int nLayers = gpu->config().nLayers;
    const std::vector<int32_t> full = referenceJson()["multi_round"]["full_ids"].get<std::vector<int32_t>>();
    const std::vector<int32_t> r0(full.begin(), full.begin() + 40);
    const std::vector<int32_t> r1(full.begin() + 40, full.begin() + 90);
    const std::vector<int32_t> r2(full.begin() + 90, full.begin() + 100);
    std::vector<std::vector<float>> logits, scores;
    for (Model* m : {gpu.get(), cpu.get()}) {
        auto ctx = context(*m, 512);
        ASSERT_TRUE(ctx);
        for (const auto* r : {&r0, &r1}) {
            ASSERT_TRUE(ctx->beginRound().ok());
            ASSERT_TRUE(prefill(*ctx, *r, nLayers, false).ok());
        }
        // Round 2 sees round 0 only above layer 2, with round scores recorded at layer 1.
        ASSERT_TRUE(ctx->beginRound().ok());
        ASSERT_TRUE(ctx->begin(ForwardBatch{r2, true, true}).ok());
        ASSERT_TRUE(ctx->runLayers(0, 2, KvView{}).ok());
        const int keep[] = {0};
        ASSERT_TRUE(ctx->runLayers(2, nLayers, KvView{false, keep}).ok());
        logits.push_back(logitsOf(*ctx));
        Result<std::vector<float>> s = ctx->roundScores(1);
        ASSERT_TRUE(s.ok());
        scores.push_back(*s);
        // Edits: drop two tokens and refeed them (decode path), remove the middle round, decode once more.
        ASSERT_TRUE(ctx->dropTail(2).ok());
        for (size_t i = r2.size() - 2; i < r2.size(); ++i) {
            const int32_t one[1] = {r2[i]};
            ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{one}, nLayers).ok());
        }
        logits.push_back(logitsOf(*ctx));
        ASSERT_TRUE(ctx->removeRounds(1, 2).ok());
        const int32_t one[1] = {7};
        ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{one}, nLayers).ok());
        logits.push_back(logitsOf(*ctx));
        EXPECT_EQ(ctx->rounds().tokenCount(), 40 + 10 + 1);
    }
    for (size_t i = 0; i < 3; ++i)
        EXPECT_LE(maxAbsDiff(logits[i], logits[3 + i]), 1e-2f) << "step " << i;
    ASSERT_EQ(scores[0].size(), scores[1].size());
    for (size_t r = 0; r < scores[0].size(); ++r)
        EXPECT_NEAR(scores[0][r], scores[1][r], 1e-3 * r2.size() * gpu->config().nHeads) << "round " << r;
}

TEST(CudaBackend, ExportImportRoundTrip) {
    std::unique_ptr<Model> model = loadModel(kModelPath, BackendKind::Cuda);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378, 432, 383};
    auto a = context(*model, 64);
    auto b = context(*model, 64);
    ASSERT_TRUE(a && b);
    ASSERT_TRUE(a->beginRound().ok());
    ASSERT_TRUE(prefill(*a, prompt, nLayers, false).ok());
    Result<RoundKvSnapshot> snap = a->exportRound(0, 0, nLayers);
    ASSERT_TRUE(snap.ok()) << snap.error().toString();
    EXPECT_EQ(snap->tokenCount, static_cast<int>(prompt.size()));
    ASSERT_TRUE(b->importRound(*snap, 0).ok());
    EXPECT_EQ(b->rounds().tokenCount(), static_cast<int>(prompt.size()));
    const int32_t one[1] = {286};
    ASSERT_TRUE(forwardAll(*a, ForwardBatch{one}, nLayers).ok());
    ASSERT_TRUE(forwardAll(*b, ForwardBatch{one}, nLayers).ok());
    EXPECT_LE(maxAbsDiff(logitsOf(*a), logitsOf(*b)), 1e-5f);
}

// Models whose weights are all F32 get a float32 KV cache (fp16 K/V alone moves stories260K's logits by up to
// 1.7e-2 against the float64 reference, as measured on the CPU engine), every other model fp16; kvBytes counts 4 or 2
// bytes per element.
TEST(CudaBackend, KvElementTypeFollowsWeights) {
    RandomModelSpec spec;
    spec.vocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/ggml-vocab-llama-spm.gguf";
    spec.dim = 64;
    spec.layers = 2;
    spec.heads = 4;
    spec.kvHeads = 2;
    spec.ffn = 128;
    spec.context = 256;
    spec.type = GgmlType::F16;
    const std::string f16Path = std::string(ROUNDCHAT_BINARY_DIR) + "/cuda_backend_kv_f16.gguf";
    ASSERT_TRUE(writeRandomLlamaModel(spec, f16Path).ok());
    const std::vector<int32_t> prompt = {1, 403, 407, 261, 378};
    for (const auto& [path, elementBytes] : {std::pair{kModelPath, 4ull}, std::pair{f16Path, 2ull}}) {
        SCOPED_TRACE(path);
        std::unique_ptr<Model> model = loadModel(path, BackendKind::Cuda);
        ASSERT_TRUE(model);
        const ModelConfig& c = model->config();
        auto ctx = context(*model, 64);
        ASSERT_TRUE(ctx);
        ASSERT_TRUE(ctx->beginRound().ok());
        ASSERT_TRUE(prefill(*ctx, prompt, c.nLayers, false).ok());
        EXPECT_EQ(ctx->kvBytes(0, c.nLayers), prompt.size() * c.kvDim() * 2 * elementBytes * c.nLayers);
    }
    std::remove(f16Path.c_str());
}

TEST(CudaBackend, OutOfMemoryIsAnError) {
    std::unique_ptr<Model> model = loadModel(kModelPath, BackendKind::Cuda);
    ASSERT_TRUE(model);
    Result<std::unique_ptr<BackendContext>> ctx = model->backend().createContext(1 << 30);
    ASSERT_FALSE(ctx.ok());
    EXPECT_EQ(ctx.error().code, roundchat::ErrorCode::OutOfGpuMemory);
    EXPECT_TRUE(context(*model, 64) != nullptr);  // and the device is still usable
}

// Two TinyLlama-width layers with the real LLaMA vocabulary: prefill 37 tokens (cuBLAS path) and decode 3 (GEMV and
// split-K attention path), GPU vs CPU per weight type.
TEST(CudaBackend, TinyLlamaShapeMatchesCpu) {
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        SCOPED_TRACE(kernels::typeName(type));
        RandomModelSpec spec;
        spec.vocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/ggml-vocab-llama-spm.gguf";
        ASSERT_TRUE(applyLlamaPreset("tinyllama", spec).ok());
        spec.layers = 2;
        spec.type = type;
        spec.seed = 5;
        const std::string path = std::string(ROUNDCHAT_BINARY_DIR) + "/cuda_backend_test_" +
                                 kernels::typeName(type) + ".gguf";
        ASSERT_TRUE(writeRandomLlamaModel(spec, path).ok());
        std::unique_ptr<Model> gpu = loadModel(path, BackendKind::Cuda);
        std::unique_ptr<Model> cpu = loadModel(path, BackendKind::Cpu);
        ASSERT_TRUE(gpu && cpu);
        std::vector<int32_t> prompt(37);
        for (size_t i = 0; i < prompt.size(); ++i)
            prompt[i] = static_cast<int32_t>(1 + (i * 7919) % 31999);
        std::vector<std::vector<float>> out[2];
        int side = 0;
        for (Model* m : {gpu.get(), cpu.get()}) {
            auto ctx = context(*m, 128);
            ASSERT_TRUE(ctx);
            ASSERT_TRUE(ctx->beginRound().ok());
            ASSERT_TRUE(prefill(*ctx, prompt, 2, false).ok());
            out[side].push_back(logitsOf(*ctx));
            for (int32_t t : {100, 2000, 30000}) {
                const int32_t one[1] = {t};
                ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{one}, 2).ok());
                out[side].push_back(logitsOf(*ctx));
            }
            ++side;
        }
        for (size_t i = 0; i < out[0].size(); ++i) {
            const double rel = relativeL2(out[0][i], out[1][i]);
            std::printf("%s step %zu: relative L2 %.2e\n", kernels::typeName(type), i, rel);
            EXPECT_LE(rel, 1e-2) << "step " << i;
        }
        std::remove(path.c_str());
    }
}

// Speed figures for the log, not a pass/fail test (run with --gtest_also_run_disabled_tests): the full 22-layer
// TinyLlama shape, prefill of 512 tokens and 128 decode steps (each step includes the logits copy to the host).
TEST(CudaBackend, DISABLED_TinyLlamaSpeed) {
    for (GgmlType type : {GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
        RandomModelSpec spec;
        spec.vocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/ggml-vocab-llama-spm.gguf";
        ASSERT_TRUE(applyLlamaPreset("tinyllama", spec).ok());
        spec.type = type;
        const std::string path = std::string(ROUNDCHAT_BINARY_DIR) + "/cuda_speed.gguf";
        ASSERT_TRUE(writeRandomLlamaModel(spec, path).ok());
        std::unique_ptr<Model> gpu = loadModel(path, BackendKind::Cuda);
        ASSERT_TRUE(gpu);
        const int nLayers = gpu->config().nLayers;
        auto ctx = context(*gpu, 4096);
        ASSERT_TRUE(ctx);
        ASSERT_TRUE(ctx->beginRound().ok());
        std::vector<int32_t> prompt(512);
        for (size_t i = 0; i < prompt.size(); ++i)
            prompt[i] = static_cast<int32_t>(1 + (i * 7919) % 31999);
        ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{prompt}, nLayers).ok());  // warm-up (cuBLAS, allocations)
        logitsOf(*ctx);
        ASSERT_TRUE(ctx->keepRounds(0).ok());
        ASSERT_TRUE(ctx->beginRound().ok());
        using Clock = std::chrono::steady_clock;
        const auto t0 = Clock::now();
        ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{prompt}, nLayers).ok());
        std::vector<float> l = logitsOf(*ctx);
        const auto t1 = Clock::now();
        for (int i = 0; i < 128; ++i) {
            const int32_t one[1] = {argmax(l)};
            ASSERT_TRUE(forwardAll(*ctx, ForwardBatch{one}, nLayers).ok());
            l = logitsOf(*ctx);
        }
        const auto t2 = Clock::now();
        const double pp = 512 / std::chrono::duration<double>(t1 - t0).count();
        const double tg = 128 / std::chrono::duration<double>(t2 - t1).count();
        std::printf("TinyLlama %s: pp512 %.0f t/s, tg128 %.1f t/s\n", kernels::typeName(type), pp, tg);
        std::remove(path.c_str());
    }
}

}  // namespace
}  // namespace inference
