// Round Attention KV placement on the GPU (kv_placement.h, cuda/upper_kv.h): with the upper layers in host memory
// and a tiny VRAM budget (evictions and re-copies every turn), the CUDA backend gives the CPU backend's logits
// (within fp16 tolerance) and the same residency report (half the bytes: fp16 vs float32); full-KV mode is the plain
// forward; rounds exported and imported into a split context (snapshot restore) continue the conversation the same.
#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "inference/backend.h"
#include "inference/generation.h"
#include "inference/model.h"
#include "inference/random_model.h"
#include "inference/round_attention.h"
#include "tests/inference/fixtures.h"

namespace inference {
namespace {

using test::loadModel;

// A small random llama (GQA, 6 layers) in the build tree, made once.
const std::string& randomModelPath() {
    static const std::string path = [] {
        const std::string out = std::string(ROUNDCHAT_BINARY_DIR) + "/round_placement_random.gguf";
        RandomModelSpec spec;
        spec.vocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/ggml-vocab-llama-spm.gguf";
        spec.dim = 256;
        spec.layers = 6;
        spec.heads = 8;
        spec.kvHeads = 2;
        spec.ffn = 512;
        spec.context = 2048;
        spec.seed = 7;
        const Status st = writeRandomLlamaModel(spec, out);
        EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().toString());
        return out;
    }();
    return path;
}

std::unique_ptr<BackendContext> context(const Model& m, int capacity) {
    Result<std::unique_ptr<BackendContext>> ctx = m.backend().createContext(capacity);
    EXPECT_TRUE(ctx.ok()) << (ctx.ok() ? "" : ctx.error().toString());
    return ctx.ok() ? std::move(*ctx) : nullptr;
}

std::vector<float> logitsOf(BackendContext& ctx) {
    Result<std::span<const float>> l = ctx.logits();
    EXPECT_TRUE(l.ok()) << (l.ok() ? "" : l.error().toString());
    return l.ok() ? std::vector<float>(l->begin(), l->end()) : std::vector<float>{};
}

double relativeL2(const std::vector<float>& got, const std::vector<float>& want) {
    EXPECT_EQ(got.size(), want.size());
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
        num += (got[i] - want[i]) * static_cast<double>(got[i] - want[i]);
        den += want[i] * static_cast<double>(want[i]);
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// Random-token rounds: round 0 a short prompt, then questions of 12..40 and answers of 4..16 tokens.
TokenConversation randomConversation(int rounds, int nVocab, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_int_distribution<int32_t> tok(3, nVocab - 1);
    TokenConversation conv(static_cast<size_t>(rounds));
    for (int r = 0; r < rounds; ++r) {
        const int q = r == 0 ? 8 : 12 + static_cast<int>(rng() % 29);
        const int a = r == 0 ? 0 : 4 + static_cast<int>(rng() % 13);
        for (int i = 0; i < q; ++i) conv[static_cast<size_t>(r)].question.push_back(tok(rng));
        for (int i = 0; i < a; ++i) conv[static_cast<size_t>(r)].answer.push_back(tok(rng));
    }
    return conv;
}

struct TurnResult {
    std::vector<float> logits;  // after the question
    std::vector<int> recalled;
    RecallReport report;  // after the answer
};

// The question in one batch, the answer token by token (as decoding feeds it).
std::vector<TurnResult> run(BackendContext& ctx, RoundAttention& ra, const TokenConversation& conv) {
    std::vector<TurnResult> out;
    for (const TokenRound& r : conv) {
        EXPECT_TRUE(ctx.beginRound().ok());
        const Status st = ra.prefill(ctx, r.question);
        EXPECT_TRUE(st.ok()) << (st.ok() ? "" : st.error().toString());
        TurnResult t;
        t.logits = logitsOf(ctx);
        t.recalled = ra.diagnostics().selection.rounds;
        for (int32_t tok : r.answer) {
            const int32_t one[1] = {tok};
            EXPECT_TRUE(ra.forward(ctx, ForwardBatch{one}).ok());
        }
        t.report = ra.report(ctx);
        out.push_back(std::move(t));
    }
    return out;
}

RoundAttentionOptions roundOptions() {
    RoundAttentionOptions o;
    o.mode = KvMode::RoundAttention;
    o.watershedLayer = 2;
    o.maxRecalledRounds = 2;
    o.recallMass = 0.5f;
    o.keepLatestRounds = 1;
    o.vramBudgetBytes = 1;  // nothing fits: every round a turn does not recall leaves the device
    return o;
}

// cpuBytesPerGpuByte: the CPU accounts float32 KV; the device holds fp16 (2), or float32 (1) for F32 models.
void expectCudaMatchesCpu(const std::string& path, double tolerance, uint64_t cpuBytesPerGpuByte) {
    std::unique_ptr<Model> cpu = loadModel(path, BackendKind::Cpu), gpu = loadModel(path, BackendKind::Cuda);
    ASSERT_TRUE(cpu && gpu);
    const TokenConversation conv = randomConversation(12, cpu->config().nVocab, 5);  // ~400 tokens
    std::unique_ptr<BackendContext> a = context(*cpu, 1024), b = context(*gpu, 1024);
    ASSERT_TRUE(a && b);
    RoundAttention raCpu(cpu->config(), roundOptions()), raGpu(gpu->config(), roundOptions());
    const std::vector<TurnResult> want = run(*a, raCpu, conv);
    const std::vector<TurnResult> got = run(*b, raGpu, conv);
    ASSERT_EQ(got.size(), want.size());
    uint64_t copied = 0;
    bool recalledAnEvictedRound = false;
    for (size_t k = 0; k < want.size(); ++k) {
        SCOPED_TRACE("round " + std::to_string(k));
        // Scores are fp16-close, so the selections agree; the logits then agree within fp16 KV rounding.
        ASSERT_EQ(got[k].recalled, want[k].recalled);
        EXPECT_LT(relativeL2(got[k].logits, want[k].logits), tolerance);
        // The same residency, in each backend's KV element size.
        EXPECT_EQ(cpuBytesPerGpuByte * got[k].report.kvBytesInVram, want[k].report.kvBytesInVram);
        EXPECT_EQ(cpuBytesPerGpuByte * got[k].report.kvBytesFull, want[k].report.kvBytesFull);
        EXPECT_EQ(cpuBytesPerGpuByte * got[k].report.bytesCopiedFromHost, want[k].report.bytesCopiedFromHost);
        EXPECT_GE(got[k].report.copyMs, 0.0);
        copied += got[k].report.bytesCopiedFromHost;
        // Turn k sees rounds 0 .. k - 1; recalling fewer keeps the rest's upper layers off the device. (Flat scores,
        // as random weights give, recall every round.)
        const std::vector<int>& sel = got[k].recalled;
        if (k >= 1 && sel.size() < k) {
            EXPECT_LT(got[k].report.kvBytesInVram, got[k].report.kvBytesFull);
        }
        // With a 1-byte budget, a round neither recalled last turn nor last turn's own round left the device: recalling
        // it again copies it back.
        for (int r : sel) {
            const std::vector<int>& before = k >= 1 ? got[k - 1].recalled : sel;
            if (k >= 2 && r < static_cast<int>(k) - 1 && !std::binary_search(before.begin(), before.end(), r))
                recalledAnEvictedRound = true;
        }
    }
    EXPECT_EQ(copied > 0, recalledAnEvictedRound);
}

TEST(RoundPlacement, CudaMatchesCpuOnStories) {
    expectCudaMatchesCpu(test::kStoriesModelPath, 2e-2, 1);  // F32 weights: float32 KV on the device
}

TEST(RoundPlacement, CudaMatchesCpuOnRandomModel) {
    expectCudaMatchesCpu(randomModelPath(), 2e-2, 2);  // F16 weights: fp16 KV
}

// Turns that recall every round with an unlimited budget grow the upper-layer pool; once later turns attend to round 0
// only (driven directly: random weights give flat scores, which RoundAttention answers by recalling everything), the
// pool shrinks at the next batch (the resident rounds move to new slots) and the logits stay the CPU's.
TEST(RoundPlacement, PoolShrinksAfterBigRecallsAndKeepsTheKv) {
    std::unique_ptr<Model> cpu = loadModel(randomModelPath(), BackendKind::Cpu);
    std::unique_ptr<Model> gpu = loadModel(randomModelPath(), BackendKind::Cuda);
    ASSERT_TRUE(cpu && gpu);
    const ModelConfig& c = gpu->config();
    const TokenConversation conv = randomConversation(40, c.nVocab, 13);  // ~1,400 tokens
    const TokenConversation early(conv.begin(), conv.end() - 4);
    std::unique_ptr<BackendContext> a = context(*cpu, 2048), b = context(*gpu, 2048);
    ASSERT_TRUE(a && b);
    RoundAttentionOptions everything = roundOptions();
    everything.vramBudgetBytes = uint64_t(1) << 40;
    RoundAttention bigCpu(c, everything), bigGpu(c, everything);
    (void)run(*a, bigCpu, early);
    (void)run(*b, bigGpu, early);
    const uint64_t grown = b->placementStats().upperPoolBytes;
    const int w = everything.watershedLayer;
    const int roundZero[1] = {0};
    for (size_t k = conv.size() - 4; k < conv.size(); ++k) {
        SCOPED_TRACE("late round " + std::to_string(k));
        std::vector<float> logits[2];
        for (BackendContext* ctx : {a.get(), b.get()}) {
            ASSERT_TRUE(ctx->setPlacement(w, 1).ok());  // a 1-byte cache: only what a pass attends to stays
            ASSERT_TRUE(ctx->beginRound().ok());
            ASSERT_TRUE(ctx->begin(ForwardBatch{conv[k].question}).ok());
            ASSERT_TRUE(ctx->runLayers(0, w, KvView{}).ok());
            ASSERT_TRUE(ctx->runLayers(w, c.nLayers, KvView{false, roundZero}).ok());
            logits[ctx == b.get()] = logitsOf(*ctx);
        }
        EXPECT_LT(relativeL2(logits[1], logits[0]), 2e-2);
    }
    const uint64_t shrunk = b->placementStats().upperPoolBytes;
    EXPECT_LT(2 * shrunk, grown) << grown << " -> " << shrunk;
}

// Full KV keeps every layer resident and runs the same kernels as the plain forward.
TEST(RoundPlacement, FullKvModeUnchanged) {
    std::unique_ptr<Model> gpu = loadModel(randomModelPath(), BackendKind::Cuda);
    ASSERT_TRUE(gpu);
    const int nLayers = gpu->config().nLayers;
    const TokenConversation conv = randomConversation(8, gpu->config().nVocab, 9);
    std::unique_ptr<BackendContext> a = context(*gpu, 1024), b = context(*gpu, 1024);
    ASSERT_TRUE(a && b);
    RoundAttention full(gpu->config(), RoundAttentionOptions{});
    const std::vector<TurnResult> viaPipeline = run(*a, full, conv);
    for (size_t k = 0; k < conv.size(); ++k) {
        ASSERT_TRUE(b->beginRound().ok());
        ASSERT_TRUE(prefill(*b, conv[k].question, nLayers, false).ok());
        EXPECT_LT(relativeL2(viaPipeline[k].logits, logitsOf(*b)), 1e-5) << "round " << k;
        for (int32_t t : conv[k].answer) {
            const int32_t one[1] = {t};
            ASSERT_TRUE(forwardAll(*b, ForwardBatch{one}, nLayers).ok());
        }
        EXPECT_EQ(viaPipeline[k].report.kvBytesInVram, viaPipeline[k].report.kvBytesFull);
        EXPECT_EQ(viaPipeline[k].report.bytesCopiedFromHost, 0u);
    }
}

// A conversation restored into a split context (lower layers to VRAM, upper layers to host memory) answers the next
// question as the original context does; switching the placement back and forth keeps the KV.
TEST(RoundPlacement, ExportImportAndPlacementSwitch) {
    std::unique_ptr<Model> gpu = loadModel(randomModelPath(), BackendKind::Cuda);
    ASSERT_TRUE(gpu);
    const ModelConfig& c = gpu->config();
    const TokenConversation conv = randomConversation(9, c.nVocab, 11);
    const TokenConversation history(conv.begin(), conv.end() - 1);
    std::unique_ptr<BackendContext> original = context(*gpu, 1024), restored = context(*gpu, 1024);
    ASSERT_TRUE(original && restored);
    RoundAttention ra(c, roundOptions());
    (void)run(*original, ra, history);
    // Full KV -> split -> full on the original: the KV moves through the host and back.
    ASSERT_TRUE(original->setPlacement(c.nLayers, 0).ok());
    ASSERT_TRUE(original->setPlacement(2, 1).ok());

    ASSERT_TRUE(restored->setPlacement(2, 1).ok());
    for (int r = 0; r < original->rounds().roundCount(); ++r) {
        Result<RoundKvSnapshot> snap = original->exportRound(r, 0, c.nLayers);
        ASSERT_TRUE(snap.ok()) << snap.error().toString();
        ASSERT_TRUE(restored->importRound(*snap, original->rounds().round(r).firstPosition).ok());
    }
    const KvPlacementStats before = restored->placementStats();
    EXPECT_EQ(before.deviceBytes, restored->kvBytes(0, 2));  // only the lower layers are on the device
    RoundAttention ra2(c, roundOptions());
    const TokenConversation last(conv.end() - 1, conv.end());
    const std::vector<TurnResult> a = run(*original, ra, last);
    const std::vector<TurnResult> b = run(*restored, ra2, last);
    EXPECT_EQ(a[0].recalled, b[0].recalled);
    EXPECT_LT(relativeL2(b[0].logits, a[0].logits), 1e-5);
    EXPECT_GT(b[0].report.bytesCopiedFromHost, 0u);  // the recalled rounds came from host memory
}

}  // namespace
}  // namespace inference
