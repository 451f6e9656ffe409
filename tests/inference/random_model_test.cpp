#include "inference/random_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "kernels/quant_ref.h"

namespace inference {
namespace {

const std::string kVocabPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/ggml-vocab-llama-spm.gguf";

std::string tempPath(const std::string& name) {
    return (std::filesystem::path(testing::TempDir()) / ("random_model_test_" + name)).string();
}

std::vector<char> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

RandomModelSpec tinySpec(GgmlType type) {
    RandomModelSpec s;
    s.vocabPath = kVocabPath;
    s.name = "tiny";
    s.dim = 64;
    s.layers = 2;
    s.heads = 4;
    s.kvHeads = 2;
    s.ffn = 96;
    s.context = 512;
    s.type = type;
    s.seed = 42;
    s.threads = 2;
    return s;
}

TEST(RandomModel, WritesALlamaModelThatReadsBack) {
    const std::string path = tempPath("q8.gguf");
    ASSERT_TRUE(writeRandomLlamaModel(tinySpec(GgmlType::Q8_0), path).ok());
    Result<GgufFile> f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().toString();
    Result<GgufFile> vocab = GgufFile::open(kVocabPath);
    ASSERT_TRUE(vocab.ok());

    EXPECT_EQ(*f->getString("general.architecture"), "llama");
    EXPECT_EQ(*f->getString("general.name"), "tiny");
    EXPECT_EQ(*f->getUInt("general.file_type"), 7u);  // llama.cpp's MOSTLY_Q8_0
    EXPECT_EQ(*f->getUInt("llama.context_length"), 512u);
    EXPECT_EQ(*f->getUInt("llama.embedding_length"), 64u);
    EXPECT_EQ(*f->getUInt("llama.block_count"), 2u);
    EXPECT_EQ(*f->getUInt("llama.feed_forward_length"), 96u);
    EXPECT_EQ(*f->getUInt("llama.attention.head_count"), 4u);
    EXPECT_EQ(*f->getUInt("llama.attention.head_count_kv"), 2u);
    EXPECT_EQ(*f->getUInt("llama.rope.dimension_count"), 16u);
    EXPECT_FLOAT_EQ(static_cast<float>(*f->getFloat("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
    EXPECT_FLOAT_EQ(static_cast<float>(*f->getFloat("llama.rope.freq_base")), 10000.0f);
    // Every tokenizer key of the vocab file is copied unchanged.
    int copied = 0;
    for (const GgufKeyValue& kv : vocab->metadata()) {
        if (!kv.key.starts_with("tokenizer."))
            continue;
        ++copied;
        ASSERT_NE(f->find(kv.key), nullptr) << kv.key;
        EXPECT_EQ(f->find(kv.key)->type, kv.value.type) << kv.key;
        EXPECT_EQ(f->find(kv.key)->items.size(), kv.value.items.size()) << kv.key;
    }
    EXPECT_GE(copied, 5);
    const size_t vocabSize = vocab->getStringArray("tokenizer.ggml.tokens")->size();
    EXPECT_EQ(vocabSize, 32000u);

    using Shape = std::vector<uint64_t>;
    ASSERT_EQ(f->tensors().size(), 3u + 2 * 9);
    EXPECT_EQ(f->findTensor("token_embd.weight")->shape, (Shape{64, vocabSize}));
    EXPECT_EQ(f->findTensor("output.weight")->shape, (Shape{64, vocabSize}));
    EXPECT_EQ(f->findTensor("output_norm.weight")->type, GgmlType::F32);
    EXPECT_EQ(f->findTensor("blk.1.attn_q.weight")->shape, (Shape{64, 64}));
    EXPECT_EQ(f->findTensor("blk.1.attn_k.weight")->shape, (Shape{64, 32}));
    EXPECT_EQ(f->findTensor("blk.1.attn_v.weight")->shape, (Shape{64, 32}));
    EXPECT_EQ(f->findTensor("blk.1.attn_output.weight")->shape, (Shape{64, 64}));
    EXPECT_EQ(f->findTensor("blk.0.ffn_gate.weight")->shape, (Shape{64, 96}));
    EXPECT_EQ(f->findTensor("blk.0.ffn_up.weight")->shape, (Shape{64, 96}));
    EXPECT_EQ(f->findTensor("blk.0.ffn_down.weight")->shape, (Shape{96, 64}));
    EXPECT_EQ(f->findTensor("blk.0.ffn_down.weight")->type, GgmlType::Q8_0);
    EXPECT_EQ(f->findTensor("blk.0.ffn_norm.weight")->shape, (Shape{64}));

    const GgufTensorInfo* norm = f->findTensor("blk.1.attn_norm.weight");
    std::vector<float> ones(64);
    std::memcpy(ones.data(), f->tensorData(*norm).data(), 64 * sizeof(float));
    for (float v : ones) EXPECT_EQ(v, 1.0f);

    // Weights: mean ~0, standard deviation ~0.02.
    const GgufTensorInfo* embd = f->findTensor("token_embd.weight");
    const auto n = static_cast<int64_t>(embd->elementCount());
    std::vector<float> w(static_cast<size_t>(n));
    kernels::dequantizeRowRef(embd->type, f->tensorData(*embd).data(), w.data(), n);
    double sum = 0.0;
    double sumSq = 0.0;
    for (float v : w) {
        sum += v;
        sumSq += static_cast<double>(v) * v;
    }
    const double mean = sum / static_cast<double>(n);
    EXPECT_NEAR(mean, 0.0, 2e-4);
    EXPECT_NEAR(std::sqrt(sumSq / static_cast<double>(n) - mean * mean), 0.02, 1e-3);
    std::filesystem::remove(path);
}

TEST(RandomModel, DeterministicForAnyThreadCount) {
    RandomModelSpec spec = tinySpec(GgmlType::F16);
    const std::string a = tempPath("a.gguf");
    const std::string b = tempPath("b.gguf");
    const std::string c = tempPath("c.gguf");
    spec.threads = 1;
    ASSERT_TRUE(writeRandomLlamaModel(spec, a).ok());
    spec.threads = 3;
    ASSERT_TRUE(writeRandomLlamaModel(spec, b).ok());
    spec.seed = 43;
    ASSERT_TRUE(writeRandomLlamaModel(spec, c).ok());
    const std::vector<char> bytesA = readFile(a);
    EXPECT_EQ(bytesA, readFile(b));
    const std::vector<char> bytesC = readFile(c);
    ASSERT_EQ(bytesA.size(), bytesC.size());
    EXPECT_NE(bytesA, bytesC);
    Result<GgufFile> fa = GgufFile::open(a);
    Result<GgufFile> fc = GgufFile::open(c);
    ASSERT_TRUE(fa.ok() && fc.ok());
    EXPECT_EQ(fa->fingerprint(), fc->fingerprint());  // same layout, different weights
    for (const std::string& p : {a, b, c}) std::filesystem::remove(p);
}

TEST(RandomModel, RejectsBadShapesAndPresets) {
    const std::string path = tempPath("bad.gguf");
    RandomModelSpec spec = tinySpec(GgmlType::Q4_0);
    spec.heads = 5;  // 64 is not a multiple of 5
    EXPECT_EQ(writeRandomLlamaModel(spec, path).error().code, ErrorCode::InvalidArgument);
    spec = tinySpec(GgmlType::Q4_0);
    spec.kvHeads = 3;
    EXPECT_EQ(writeRandomLlamaModel(spec, path).error().code, ErrorCode::InvalidArgument);
    spec = tinySpec(GgmlType::Q4_K);  // K-quants need multiples of 256
    EXPECT_EQ(writeRandomLlamaModel(spec, path).error().code, ErrorCode::InvalidArgument);
    spec = tinySpec(GgmlType::Q4_0);
    spec.vocabPath = tempPath("missing_vocab.gguf");
    EXPECT_EQ(writeRandomLlamaModel(spec, path).error().code, ErrorCode::FileNotFound);
    EXPECT_FALSE(std::filesystem::exists(path));

    RandomModelSpec preset;
    ASSERT_TRUE(applyLlamaPreset("tinyllama", preset).ok());
    EXPECT_EQ(preset.dim, 2048u);
    EXPECT_EQ(preset.layers, 22u);
    EXPECT_EQ(preset.heads, 32u);
    EXPECT_EQ(preset.kvHeads, 4u);
    EXPECT_EQ(preset.ffn, 5632u);
    ASSERT_TRUE(applyLlamaPreset("llama2-7b", preset).ok());
    EXPECT_EQ(preset.dim, 4096u);
    EXPECT_EQ(preset.kvHeads, 32u);
    const Status unknown = applyLlamaPreset("gpt2", preset);
    ASSERT_FALSE(unknown.ok());
    EXPECT_NE(unknown.error().detail.find("tinyllama"), std::string::npos);
}

}  // namespace
}  // namespace inference
