// CPU backend against the float64 reference logits of stories260K (shared/models/reference_public.json), fed through
// the round-segmented KV cache; thread-count independence; layer-range splitting and round scores.
#include <cmath>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "tests/inference/fixtures.h"
#include "inference/backend.h"
#include "inference/generation.h"
#include "inference/completion.h"
#include "inference/model.h"

namespace inference {
namespace {

const std::string& kModelPath = test::kStoriesModelPath;

using test::referenceJson;

std::unique_ptr<Model> loadModel(int threads) {
    LoadOptions options;
    options.backend = BackendKind::Cpu;
    options.threads = threads;
    Result<std::unique_ptr<Model>> model = Model::load(kModelPath, options);
    EXPECT_TRUE(model.ok()) << (model.ok() ? "" : model.error().toString());
    return model.ok() ? std::move(*model) : nullptr;
}

float maxAbsDiff(std::span<const float> a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float m = 0.0f;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
    return m;
}

int32_t argmax(std::span<const float> v) {
    return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::vector<float> lastLogits(BackendContext& ctx) {
    Result<std::span<const float>> l = ctx.logits();
    EXPECT_TRUE(l.ok());
    return l.ok() ? std::vector<float>(l->begin(), l->end()) : std::vector<float>{};
}

TEST(CpuBackend, ConfigMatchesReferenceHparams) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const nlohmann::json& h = referenceJson()["hparams"];
    const ModelConfig& c = model->config();
    EXPECT_EQ(c.nVocab, h["n_vocab"].get<int>());
    EXPECT_EQ(c.dim, h["n_embd"].get<int>());
    EXPECT_EQ(c.nLayers, h["n_layer"].get<int>());
    EXPECT_EQ(c.nHeads, h["n_head"].get<int>());
    EXPECT_EQ(c.nKvHeads, h["n_head_kv"].get<int>());
    EXPECT_EQ(c.ffn, h["n_ff"].get<int>());
    EXPECT_EQ(c.headDim, h["head_dim"].get<int>());
    EXPECT_EQ(c.ropeDim, h["n_rot"].get<int>());
    EXPECT_EQ(c.contextLength, h["context_length_meta"].get<int>());
    EXPECT_FLOAT_EQ(c.ropeFreqBase, 10000.0f);
    EXPECT_NEAR(c.rmsEps, h["rms_eps"].get<double>(), 1e-12);
    EXPECT_FALSE(c.tiedOutput);
    EXPECT_EQ(model->backendInfo().kind, BackendKind::Cpu);
    EXPECT_GT(model->backendInfo().weightBytes, 0u);
}

TEST(CpuBackend, ReferenceCasesLogitsAndGreedyIds) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    for (const nlohmann::json& c : referenceJson()["cases"]) {
        SCOPED_TRACE(c["name"].get<std::string>());
        const std::vector<int32_t> prompt = c["prompt_ids"].get<std::vector<int32_t>>();
        const std::vector<int32_t> greedy = c["greedy_ids"].get<std::vector<int32_t>>();
        // The tokenizer must give the reference prompt ids too (BOS added by default).
        Result<std::vector<int32_t>> enc =
            model->tokenizer().encode(c["prompt_text"].get<std::string>(), EncodeOptions{true, false});
        ASSERT_TRUE(enc.ok());
        EXPECT_EQ(*enc, prompt);

        Result<std::unique_ptr<BackendContext>> ctx = model->backend().createContext(256);
        ASSERT_TRUE(ctx.ok());
        ASSERT_TRUE((*ctx)->beginRound().ok());
        ASSERT_TRUE(prefill(**ctx, prompt, nLayers, false).ok());
        std::vector<int32_t> ids;
        for (size_t step = 0; step < greedy.size(); ++step) {
            const std::vector<float> logits = lastLogits(**ctx);
            if (step == 0) {
                EXPECT_LE(maxAbsDiff(logits, c["logits"]["last_prompt"].get<std::vector<float>>()), 1e-3f);
            }
            if (step == 8) {
                EXPECT_LE(maxAbsDiff(logits, c["logits"]["after_8"].get<std::vector<float>>()), 1e-3f);
            }
            if (step == 32) {
                EXPECT_LE(maxAbsDiff(logits, c["logits"]["after_32"].get<std::vector<float>>()), 1e-3f);
            }
            ids.push_back(argmax(logits));
            const int32_t one[1] = {ids.back()};
            ASSERT_TRUE(forwardAll(**ctx, ForwardBatch{one}, nLayers).ok());
        }
        EXPECT_EQ(ids, greedy);
    }
}

TEST(CpuBackend, MultiRoundThroughRoundSegmentedCache) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    const nlohmann::json& mr = referenceJson()["multi_round"];
    Result<std::unique_ptr<BackendContext>> ctx = model->backend().createContext(512);
    ASSERT_TRUE(ctx.ok());
    std::vector<int32_t> fed;
    std::vector<int32_t> previousAnswer;
    for (const nlohmann::json& r : mr["rounds"]) {
        // Round k holds its input; the previous round's greedy answer belongs to the previous round.
        if (!previousAnswer.empty()) {
            ASSERT_TRUE(prefill(**ctx, previousAnswer, nLayers, false).ok());
            fed.insert(fed.end(), previousAnswer.begin(), previousAnswer.end());
        }
        ASSERT_TRUE((*ctx)->beginRound().ok());
        const std::vector<int32_t> input = r["input_ids"].get<std::vector<int32_t>>();
        ASSERT_TRUE(prefill(**ctx, input, nLayers, false).ok());
        fed.insert(fed.end(), input.begin(), input.end());
        EXPECT_LE(maxAbsDiff(lastLogits(**ctx), r["logits_last_input"].get<std::vector<float>>()), 1e-3f);
        // The greedy answer, fed token by token (the last round has none).
        previousAnswer.clear();
        if (!r.contains("greedy_ids"))
            break;
        const std::vector<int32_t> greedy = r["greedy_ids"].get<std::vector<int32_t>>();
        for (size_t i = 0; i < greedy.size(); ++i) {
            const std::vector<float> logits = lastLogits(**ctx);
            previousAnswer.push_back(argmax(logits));
            if (i + 1 < greedy.size()) {
                const int32_t one[1] = {previousAnswer.back()};
                ASSERT_TRUE(forwardAll(**ctx, ForwardBatch{one}, nLayers).ok());
                fed.push_back(one[0]);
            }
        }
        EXPECT_EQ(previousAnswer, greedy);
        // The last greedy token is fed with the next round's input (kept in this round).
        previousAnswer = {previousAnswer.back()};
    }
    EXPECT_EQ(fed, mr["full_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ((*ctx)->rounds().roundCount(), 3);
    EXPECT_EQ((*ctx)->rounds().tokenCount(), mr["n_tokens"].get<int>());
    const std::vector<float> finalLogits = lastLogits(**ctx);
    EXPECT_LE(maxAbsDiff(finalLogits, mr["final_logits"].get<std::vector<float>>()), 1e-3f);
    EXPECT_EQ(argmax(finalLogits), mr["final_argmax"].get<int32_t>());
}

TEST(CpuBackend, ThreadCountDoesNotChangeLogits) {
    std::unique_ptr<Model> one = loadModel(1);
    std::unique_ptr<Model> four = loadModel(4);
    ASSERT_TRUE(one && four);
    const std::vector<int32_t> prompt = referenceJson()["multi_round"]["full_ids"].get<std::vector<int32_t>>();
    std::vector<std::vector<float>> results;
    for (Model* m : {one.get(), four.get()}) {
        Result<std::unique_ptr<BackendContext>> ctx = m->backend().createContext(512);
        ASSERT_TRUE(ctx.ok());
        ASSERT_TRUE((*ctx)->beginRound().ok());
        ASSERT_TRUE((*ctx)->begin(ForwardBatch{prompt, true, false}).ok());
        ASSERT_TRUE((*ctx)->runLayers(0, m->config().nLayers, KvView{}).ok());
        results.push_back(lastLogits(**ctx));
    }
    ASSERT_EQ(results[0].size(), prompt.size() * static_cast<size_t>(one->config().nVocab));
    EXPECT_LE(maxAbsDiff(results[0], results[1]), 1e-5f);
}

TEST(CpuBackend, LayerSplitAndRoundScores) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    const std::vector<int32_t> a = {1, 403, 407, 261, 378};
    const std::vector<int32_t> b = {432, 383, 286};
    Result<std::unique_ptr<BackendContext>> split = model->backend().createContext(64);
    Result<std::unique_ptr<BackendContext>> whole = model->backend().createContext(64);
    ASSERT_TRUE(split.ok() && whole.ok());
    for (BackendContext* ctx : {split->get(), whole->get()}) {
        ASSERT_TRUE(ctx->beginRound().ok());
        ASSERT_TRUE(prefill(*ctx, a, nLayers, false).ok());
        ASSERT_TRUE(ctx->beginRound().ok());
    }
    ASSERT_TRUE(forwardAll(**whole, ForwardBatch{b}, nLayers).ok());
    ASSERT_TRUE((*split)->begin(ForwardBatch{b, false, true}).ok());
    ASSERT_TRUE((*split)->runLayers(0, 2, KvView{}).ok());
    EXPECT_FALSE((*split)->logits().ok());  // not at the last layer yet
    Result<std::vector<float>> scores = (*split)->roundScores(1);
    ASSERT_TRUE(scores.ok());
    ASSERT_EQ(scores->size(), 2u);
    // Every query's softmax mass sums to 1 per head: entries add up to nTokens * nHeads.
    EXPECT_NEAR((*scores)[0] + (*scores)[1], 3.0 * model->config().nHeads, 1e-3);
    EXPECT_GT((*scores)[0], 0.0f);
    ASSERT_TRUE((*split)->runLayers(2, nLayers, KvView{}).ok());
    EXPECT_LE(maxAbsDiff(lastLogits(**split), lastLogits(**whole)), 1e-6f);
    EXPECT_EQ((*split)->rounds().tokenCount(), 8);

    // Upper layers that do not see round 0 change the result, and round 0 then scores 0 there.
    Result<std::unique_ptr<BackendContext>> sparse = model->backend().createContext(64);
    ASSERT_TRUE(sparse.ok());
    ASSERT_TRUE((*sparse)->beginRound().ok());
    ASSERT_TRUE(prefill(**sparse, a, nLayers, false).ok());
    ASSERT_TRUE((*sparse)->beginRound().ok());
    ASSERT_TRUE((*sparse)->begin(ForwardBatch{b, false, true}).ok());
    ASSERT_TRUE((*sparse)->runLayers(0, 2, KvView{}).ok());
    const std::vector<int> none;
    ASSERT_TRUE((*sparse)->runLayers(2, nLayers, KvView{false, none}).ok());
    Result<std::vector<float>> upper = (*sparse)->roundScores(nLayers - 1);
    ASSERT_TRUE(upper.ok());
    EXPECT_EQ((*upper)[0], 0.0f);
    EXPECT_NEAR((*upper)[1], 3.0 * model->config().nHeads, 1e-3);
    EXPECT_GT(maxAbsDiff(lastLogits(**sparse), lastLogits(**whole)), 1e-3f);
}

TEST(CpuBackend, BatchThatDoesNotFitLeavesCacheUnchanged) {
    std::unique_ptr<Model> model = loadModel(1);
    ASSERT_TRUE(model);
    Result<std::unique_ptr<BackendContext>> ctx = model->backend().createContext(6);
    ASSERT_TRUE(ctx.ok());
    ASSERT_TRUE((*ctx)->beginRound().ok());
    const std::vector<int32_t> five = {1, 403, 407, 261, 378};
    ASSERT_TRUE(prefill(**ctx, five, model->config().nLayers, false).ok());
    const std::vector<int32_t> two = {432, 383};
    Status st = (*ctx)->begin(ForwardBatch{two});
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::ContextFull);
    EXPECT_EQ((*ctx)->rounds().tokenCount(), 5);
    const std::vector<int32_t> bad = {100000};
    EXPECT_EQ((*ctx)->begin(ForwardBatch{bad}).error().code, ErrorCode::InvalidArgument);
}

TEST(CpuBackend, ImportedRoundsGiveIdenticalLogits) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const int nLayers = model->config().nLayers;
    const std::vector<int32_t> round0 = {1, 403, 407, 261, 378};
    const std::vector<int32_t> round1 = {432, 383, 286, 261, 376, 298};
    const std::vector<int32_t> next = {315, 421, 395};
    Result<std::unique_ptr<BackendContext>> live = model->backend().createContext(64);
    ASSERT_TRUE(live.ok());
    for (const std::vector<int32_t>* r : {&round0, &round1}) {
        ASSERT_TRUE((*live)->beginRound().ok());
        ASSERT_TRUE(prefill(**live, *r, nLayers, false).ok());
    }
    Result<std::unique_ptr<BackendContext>> restored = model->backend().createContext(64);
    ASSERT_TRUE(restored.ok());
    for (int r = 0; r < 2; ++r) {
        Result<RoundKvSnapshot> snap = (*live)->exportRound(r, 0, nLayers);
        ASSERT_TRUE(snap.ok());
        ASSERT_TRUE((*restored)->importRound(*snap, (*live)->rounds().round(r).firstPosition).ok());
    }
    EXPECT_EQ((*restored)->rounds().nextPosition(), (*live)->rounds().nextPosition());
    ASSERT_TRUE(forwardAll(**live, ForwardBatch{next}, nLayers).ok());
    ASSERT_TRUE(forwardAll(**restored, ForwardBatch{next}, nLayers).ok());
    EXPECT_EQ(lastLogits(**live), lastLogits(**restored));  // bit-identical
}

TEST(CpuBackend, GoldenGreedyCompletion) {
    std::unique_ptr<Model> model = loadModel(2);
    ASSERT_TRUE(model);
    const nlohmann::json& c = referenceJson()["cases"][0];
    CompletionOptions options;
    options.sampler.temperature = 0.0f;
    options.sampler.repeatPenalty = 1.0f;
    options.maxNewTokens = 48;
    options.stopAtEos = false;
    std::string streamed;
    Result<CompletionResult> r =
        complete(*model, c["prompt_text"].get<std::string>(), options, [&](std::string_view piece) {
            streamed += piece;
            return true;
        });
    ASSERT_TRUE(r.ok()) << r.error().toString();
    EXPECT_EQ(r->promptTokens, c["prompt_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(r->tokens, c["greedy_ids"].get<std::vector<int32_t>>());
    EXPECT_EQ(r->text, streamed);
    EXPECT_EQ(c["prompt_text"].get<std::string>() + r->text, c["text"].get<std::string>());
    EXPECT_EQ(r->stopReason, StopReason::MaxTokens);
}

TEST(ModelLoad, ClearErrors) {
    Result<std::unique_ptr<Model>> missing = Model::load("/nonexistent/model.gguf", LoadOptions{});
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::FileNotFound);
    LoadOptions cancel;
    cancel.progress = [](float p) { return p < 0.5f; };
    Result<std::unique_ptr<Model>> cancelled = Model::load(kModelPath, cancel);
    ASSERT_FALSE(cancelled.ok());
    EXPECT_EQ(cancelled.error().code, ErrorCode::Cancelled);
}

// Auto uses the GPU where one is usable; otherwise it runs on the CPU and says why.
TEST(ModelLoad, AutoUsesGpuOrExplainsTheCpuFallback) {
    Result<std::unique_ptr<Model>> model = Model::load(kModelPath, LoadOptions{});
    ASSERT_TRUE(model.ok());
    const BackendInfo info = (*model)->backendInfo();
    if (info.kind == BackendKind::Cpu) {
        EXPECT_FALSE(info.fallbackReason.empty());
    } else {
        EXPECT_EQ(info.kind, BackendKind::Cuda);
        EXPECT_TRUE(info.fallbackReason.empty());
        EXPECT_FALSE(info.deviceName.empty());
    }
    EXPECT_FALSE((*model)->fingerprint().empty());
    EXPECT_FALSE((*model)->name().empty());
}

}  // namespace
}  // namespace inference
