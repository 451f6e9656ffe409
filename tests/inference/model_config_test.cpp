// ModelConfig and weight binding: required keys, architecture, shape checks, tied output, and forward passes over
// every supported weight type (random models from random_model.h).
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "inference/backend.h"
#include "inference/gguf.h"
#include "inference/model.h"
#include "inference/model_config.h"
#include "inference/random_model.h"

namespace inference {
namespace {

std::string tempPath(const std::string& name) {
    return (std::filesystem::temp_directory_path() / ("roundchat_model_config_" + name)).string();
}

std::vector<uint8_t> zerosF32(size_t n) {
    return std::vector<uint8_t>(n * sizeof(float), 0);
}

// A 1-layer llama with dim 8, 2 heads, 1 kv head, ffn 16, vocab 4; `edit` may change it before writing.
Result<GgufFile> writeTiny(const std::string& name, const std::function<void(GgufWriter&, bool&)>& edit) {
    GgufWriter w;
    w.setString("general.architecture", "llama");
    w.setUInt32("llama.embedding_length", 8);
    w.setUInt32("llama.block_count", 1);
    w.setUInt32("llama.attention.head_count", 2);
    w.setUInt32("llama.attention.head_count_kv", 1);
    w.setUInt32("llama.feed_forward_length", 16);
    w.setUInt32("llama.context_length", 32);
    w.setFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
    bool withOutput = true;
    edit(w, withOutput);
    auto add = [&](const std::string& n, std::vector<uint64_t> shape) {
        uint64_t count = 1;
        for (uint64_t d : shape) count *= d;
        EXPECT_TRUE(w.addTensor(n, GgmlType::F32, shape, zerosF32(count)).ok()) << n;
    };
    add("token_embd.weight", {8, 4});
    add("output_norm.weight", {8});
    if (withOutput)
        add("output.weight", {8, 4});
    add("blk.0.attn_norm.weight", {8});
    add("blk.0.attn_q.weight", {8, 8});
    add("blk.0.attn_k.weight", {8, 4});
    add("blk.0.attn_v.weight", {8, 4});
    add("blk.0.attn_output.weight", {8, 8});
    add("blk.0.ffn_norm.weight", {8});
    add("blk.0.ffn_gate.weight", {8, 16});
    add("blk.0.ffn_down.weight", {16, 8});
    add("blk.0.ffn_up.weight", {8, 16});
    const std::string path = tempPath(name + ".gguf");
    RC_TRY(w.write(path));
    return GgufFile::open(path);
}

TEST(ModelConfig, ReadsTheTinyModel) {
    Result<GgufFile> f = writeTiny("ok", [](GgufWriter&, bool&) {});
    ASSERT_TRUE(f.ok()) << f.error().toString();
    Result<ModelConfig> c = readModelConfig(*f);
    ASSERT_TRUE(c.ok()) << c.error().toString();
    EXPECT_EQ(c->nVocab, 4);
    EXPECT_EQ(c->headDim, 4);
    EXPECT_EQ(c->ropeDim, 4);  // defaults to the head size
    EXPECT_EQ(c->kvDim(), 4);
    EXPECT_FLOAT_EQ(c->ropeFreqBase, 10000.0f);  // default
    EXPECT_FALSE(c->tiedOutput);
    Result<ModelWeights> w = bindWeights(*f, *c);
    ASSERT_TRUE(w.ok()) << w.error().toString();
    EXPECT_NE(w->output.data, w->tokenEmbedding.data);
    EXPECT_EQ(w->layers[0].wDown.rows, 8);
    EXPECT_EQ(w->layers[0].wDown.cols, 16);
}

TEST(ModelConfig, TiedOutputUsesTheTokenEmbedding) {
    Result<GgufFile> f = writeTiny("tied", [](GgufWriter&, bool& withOutput) { withOutput = false; });
    ASSERT_TRUE(f.ok());
    Result<ModelConfig> c = readModelConfig(*f);
    ASSERT_TRUE(c.ok());
    EXPECT_TRUE(c->tiedOutput);
    Result<ModelWeights> w = bindWeights(*f, *c);
    ASSERT_TRUE(w.ok());
    EXPECT_EQ(w->output.data, w->tokenEmbedding.data);
}

TEST(ModelConfig, ErrorsNameTheProblem) {
    Result<GgufFile> gpt2 =
        writeTiny("arch", [](GgufWriter& w, bool&) { w.setString("general.architecture", "gpt2"); });
    ASSERT_TRUE(gpt2.ok());
    Result<ModelConfig> c = readModelConfig(*gpt2);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, ErrorCode::Unsupported);
    EXPECT_NE(c.error().detail.find("gpt2"), std::string::npos);

    Result<GgufFile> heads =
        writeTiny("heads", [](GgufWriter& w, bool&) { w.setUInt32("llama.attention.head_count", 3); });
    ASSERT_TRUE(heads.ok());
    c = readModelConfig(*heads);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, ErrorCode::CorruptFile);

    Result<GgufFile> kv =
        writeTiny("kv", [](GgufWriter& w, bool&) { w.setUInt32("llama.attention.head_count_kv", 3); });
    ASSERT_TRUE(kv.ok());
    EXPECT_EQ(readModelConfig(*kv).error().code, ErrorCode::CorruptFile);

    // A wrong ffn size makes the FFN tensors disagree with the config: the error names the tensor.
    Result<GgufFile> shape =
        writeTiny("shape", [](GgufWriter& w, bool&) { w.setUInt32("llama.feed_forward_length", 32); });
    ASSERT_TRUE(shape.ok());
    c = readModelConfig(*shape);
    ASSERT_TRUE(c.ok());
    Result<ModelWeights> w = bindWeights(*shape, *c);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error().code, ErrorCode::CorruptFile);
    EXPECT_NE(w.error().detail.find("blk.0.ffn_gate.weight"), std::string::npos) << w.error().detail;
}

TEST(ModelConfig, MissingRequiredKeyIsNamed) {
    GgufWriter w;
    w.setString("general.architecture", "llama");
    w.setUInt32("llama.embedding_length", 8);
    const std::string path = tempPath("missing.gguf");
    ASSERT_TRUE(w.write(path).ok());
    Result<GgufFile> f = GgufFile::open(path);
    ASSERT_TRUE(f.ok());
    Result<ModelConfig> c = readModelConfig(*f);
    ASSERT_FALSE(c.ok());
    EXPECT_EQ(c.error().code, ErrorCode::CorruptFile);
    EXPECT_NE(c.error().detail.find("llama.block_count"), std::string::npos) << c.error().detail;
}

// Every supported weight type runs through the CPU backend; quantised models stay close to the F16 one.
TEST(ModelConfig, EveryWeightTypeRunsOnTheCpu) {
    std::vector<float> reference;
    for (GgmlType type : {GgmlType::F16, GgmlType::F32, GgmlType::BF16, GgmlType::Q8_0, GgmlType::Q6_K, GgmlType::Q4_K,
                          GgmlType::Q4_0}) {
        SCOPED_TRACE(kernels::typeName(type));
        RandomModelSpec spec;
        spec.vocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/stories260K.gguf";
        spec.dim = 256;
        spec.layers = 2;
        spec.heads = 4;
        spec.kvHeads = 2;
        spec.ffn = 512;
        spec.context = 64;
        spec.type = type;
        spec.seed = 3;
        spec.threads = 2;
        const std::string path = tempPath(std::string(kernels::typeName(type)) + ".gguf");
        ASSERT_TRUE(writeRandomLlamaModel(spec, path).ok());
        LoadOptions options;
        options.backend = BackendKind::Cpu;
        options.threads = 2;
        Result<std::unique_ptr<Model>> model = Model::load(path, options);
        ASSERT_TRUE(model.ok()) << model.error().toString();
        Result<std::unique_ptr<BackendContext>> ctx = (*model)->backend().createContext(64);
        ASSERT_TRUE(ctx.ok());
        ASSERT_TRUE((*ctx)->beginRound().ok());
        const std::vector<int32_t> tokens = {1, 20, 300, 45};
        ASSERT_TRUE(forwardAll(**ctx, ForwardBatch{tokens}, spec.layers).ok());
        Result<std::span<const float>> logits = (*ctx)->logits();
        ASSERT_TRUE(logits.ok());
        std::vector<float> l(logits->begin(), logits->end());
        for (float x : l) ASSERT_TRUE(std::isfinite(x));
        if (reference.empty()) {
            reference = l;
            continue;
        }
        double dot = 0.0, na = 0.0, nb = 0.0;
        for (size_t i = 0; i < l.size(); ++i) {
            dot += static_cast<double>(l[i]) * reference[i];
            na += static_cast<double>(l[i]) * l[i];
            nb += static_cast<double>(reference[i]) * reference[i];
        }
        EXPECT_GT(dot / std::sqrt(na * nb), 0.95);
        std::remove(path.c_str());
    }
}

}  // namespace
}  // namespace inference
