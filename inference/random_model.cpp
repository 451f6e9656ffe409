#include "inference/random_model.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <thread>
#include <vector>

#include "kernels/quant_ref.h"

namespace inference {

namespace {

constexpr float kWeightStd = 0.02f;
constexpr uint32_t kQuantizationVersion = 2;  // general.quantization_version of the current ggml block formats

struct Preset {
    std::string_view name;
    RandomModelSpec shape;
};

RandomModelSpec makeShape(std::string name, uint32_t dim, uint32_t layers, uint32_t heads, uint32_t kvHeads,
                          uint32_t ffn, uint32_t context) {
    RandomModelSpec s;
    s.name = std::move(name);
    s.dim = dim;
    s.layers = layers;
    s.heads = heads;
    s.kvHeads = kvHeads;
    s.ffn = ffn;
    s.context = context;
    return s;
}

// llama_ftype values written to general.file_type (llama.cpp shows them as the file's quantisation).
uint32_t fileTypeFor(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
            return 0;
        case GgmlType::F16:
            return 1;
        case GgmlType::Q4_0:
            return 2;
        case GgmlType::Q8_0:
            return 7;
        case GgmlType::Q4_K:
            return 15;  // "Q4_K - Medium"
        case GgmlType::Q6_K:
            return 18;
        case GgmlType::BF16:
            return 32;
    }
    return 0;
}

// SplitMix64 (Steele, Lea, Flood 2014): a tiny counter-based generator, seeded per row so rows are independent.
uint64_t splitMix64(uint64_t& state) {
    state += 0x9e3779b97f4a7c15ull;
    uint64_t z = state;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// Approximately N(0, 1): the Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit variance. Bounded
// to about +-3.46, which is fine for random weights and much cheaper than Box-Muller.
float approxNormal(uint64_t bits) {
    constexpr float kMean = 4 * 65535.0f / 2;
    constexpr float kInvStd = 1.7320508f / 65536.0f;  // sqrt(3) / 65536: the sum's std is 65536 / sqrt(3)
    const auto sum =
        static_cast<float>((bits & 0xffff) + ((bits >> 16) & 0xffff) + ((bits >> 32) & 0xffff) + (bits >> 48));
    return (sum - kMean) * kInvStd;
}

struct TensorPlan {
    std::string name;
    std::vector<uint64_t> shape;  // GGUF ne order
    bool isNorm;
};

std::vector<TensorPlan> llamaTensors(const RandomModelSpec& s, uint64_t vocab) {
    const uint64_t dim = s.dim;
    const uint64_t kvDim = dim / s.heads * s.kvHeads;
    std::vector<TensorPlan> plan = {
        {"token_embd.weight", {dim, vocab}, false},
        {"output_norm.weight", {dim}, true},
        {"output.weight", {dim, vocab}, false},
    };
    for (uint32_t l = 0; l < s.layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        plan.push_back({p + "attn_norm.weight", {dim}, true});
        plan.push_back({p + "attn_q.weight", {dim, dim}, false});
        plan.push_back({p + "attn_k.weight", {dim, kvDim}, false});
        plan.push_back({p + "attn_v.weight", {dim, kvDim}, false});
        plan.push_back({p + "attn_output.weight", {dim, dim}, false});
        plan.push_back({p + "ffn_norm.weight", {dim}, true});
        plan.push_back({p + "ffn_gate.weight", {dim, s.ffn}, false});
        plan.push_back({p + "ffn_up.weight", {dim, s.ffn}, false});
        plan.push_back({p + "ffn_down.weight", {uint64_t{s.ffn}, dim}, false});
    }
    return plan;
}

// Fills `out` with rows of random weights encoded in `type`; rows are split across threads, and each row's stream
// is seeded from (seed, tensor, row) so the bytes do not depend on the thread count.
void fillRandomRows(GgmlType type, uint64_t cols, uint64_t rows, uint64_t seed, uint64_t tensorIndex, unsigned threads,
                    std::span<uint8_t> out) {
    const auto rowSize = static_cast<uint64_t>(kernels::rowBytes(type, static_cast<int64_t>(cols)));
    auto work = [&](uint64_t r0, uint64_t r1) {
        std::vector<float> row(cols);
        for (uint64_t r = r0; r < r1; ++r) {
            uint64_t state = seed ^ (tensorIndex << 40) ^ (r * 0xd1b54a32d192ed03ull);
            splitMix64(state);  // decorrelate nearby seeds
            for (float& v : row) v = kWeightStd * approxNormal(splitMix64(state));
            kernels::quantizeRowRef(type, row.data(), out.data() + r * rowSize, static_cast<int64_t>(cols));
        }
    };
    const uint64_t workers = std::clamp<uint64_t>(rows / 64, 1, threads);
    std::vector<std::thread> pool;
    for (uint64_t w = 1; w < workers; ++w) pool.emplace_back(work, rows * w / workers, rows * (w + 1) / workers);
    work(0, rows / workers);
    for (std::thread& t : pool) t.join();
}

Status checkSpec(const RandomModelSpec& s) {
    auto invalid = [](std::string detail) { return makeError(ErrorCode::InvalidArgument, std::move(detail)); };
    if (s.dim == 0 || s.layers == 0 || s.heads == 0 || s.kvHeads == 0 || s.ffn == 0 || s.context == 0)
        return invalid("dim, layers, heads, kv-heads, ffn and context must all be positive");
    if (s.dim % s.heads != 0 || (s.dim / s.heads) % 2 != 0)
        return invalid("dim must be a multiple of heads with an even head dimension (RoPE rotates pairs)");
    if (s.heads % s.kvHeads != 0)
        return invalid("heads must be a multiple of kv-heads");
    const auto block = static_cast<uint32_t>(kernels::blockSize(s.type));
    if (s.dim % block != 0 || s.ffn % block != 0)
        return invalid("dim and ffn must be multiples of " + std::to_string(block) + " for type " +
                       kernels::typeName(s.type));
    return {};
}

}  // namespace

Status applyLlamaPreset(std::string_view preset, RandomModelSpec& spec) {
    static const std::array<Preset, 2> kPresets = {{
        {"tinyllama", makeShape("random-tinyllama", 2048, 22, 32, 4, 5632, 2048)},
        {"llama2-7b", makeShape("random-llama2-7b", 4096, 32, 32, 32, 11008, 4096)},
    }};
    for (const Preset& p : kPresets) {
        if (p.name != preset)
            continue;
        spec.name = p.shape.name;
        spec.dim = p.shape.dim;
        spec.layers = p.shape.layers;
        spec.heads = p.shape.heads;
        spec.kvHeads = p.shape.kvHeads;
        spec.ffn = p.shape.ffn;
        spec.context = p.shape.context;
        spec.rmsEps = p.shape.rmsEps;
        spec.ropeFreqBase = p.shape.ropeFreqBase;
        return {};
    }
    return makeError(ErrorCode::InvalidArgument,
                     "unknown preset '" + std::string(preset) + "' (known: tinyllama, llama2-7b)");
}

Status writeRandomLlamaModel(const RandomModelSpec& spec, const std::string& outPath) {
    RC_TRY(checkSpec(spec));
    Result<GgufFile> vocab = GgufFile::open(spec.vocabPath);
    if (!vocab)
        return vocab.error();
    const GgufValue* tokens = vocab->find("tokenizer.ggml.tokens");
    if (tokens == nullptr || tokens->type != GgufValueType::Array || tokens->items.empty())
        return makeError(ErrorCode::CorruptFile, spec.vocabPath + ": no tokenizer.ggml.tokens array");
    const uint64_t vocabSize = tokens->items.size();

    GgufWriter writer;
    writer.setString("general.architecture", "llama");
    writer.setString("general.name", spec.name);
    writer.setUInt32("general.file_type", fileTypeFor(spec.type));
    if (kernels::blockSize(spec.type) > 1)
        writer.setUInt32("general.quantization_version", kQuantizationVersion);
    writer.setUInt32("llama.context_length", spec.context);
    writer.setUInt32("llama.embedding_length", spec.dim);
    writer.setUInt32("llama.block_count", spec.layers);
    writer.setUInt32("llama.feed_forward_length", spec.ffn);
    writer.setUInt32("llama.attention.head_count", spec.heads);
    writer.setUInt32("llama.attention.head_count_kv", spec.kvHeads);
    writer.setUInt32("llama.rope.dimension_count", spec.dim / spec.heads);
    writer.setFloat32("llama.attention.layer_norm_rms_epsilon", spec.rmsEps);
    writer.setFloat32("llama.rope.freq_base", spec.ropeFreqBase);
    for (const GgufKeyValue& kv : vocab->metadata())
        if (kv.key.starts_with("tokenizer."))
            writer.setValue(kv.key, kv.value);

    const unsigned threads = spec.threads != 0 ? spec.threads : std::max(1u, std::thread::hardware_concurrency());
    const std::vector<TensorPlan> plan = llamaTensors(spec, vocabSize);
    for (uint64_t k = 0; k < plan.size(); ++k) {
        const TensorPlan& t = plan[k];
        if (t.isNorm) {
            std::vector<float> ones(t.shape[0], 1.0f);
            std::vector<uint8_t> bytes(ones.size() * sizeof(float));
            std::memcpy(bytes.data(), ones.data(), bytes.size());
            RC_TRY(writer.addTensor(t.name, GgmlType::F32, t.shape, std::move(bytes)));
            continue;
        }
        const uint64_t cols = t.shape[0];
        const uint64_t rows = t.shape[1];
        auto source = [type = spec.type, seed = spec.seed, cols, rows, k, threads](std::span<uint8_t> out) {
            fillRandomRows(type, cols, rows, seed, k, threads, out);
            return Status{};
        };
        RC_TRY(writer.addTensorSource(t.name, spec.type, t.shape, std::move(source)));
    }
    return writer.write(outPath);
}

}  // namespace inference
