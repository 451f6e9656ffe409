// Reads llama hyperparameters from GGUF metadata and binds the weight tensors, checking every shape.
#include "inference/model_config.h"

#include <optional>
#include <string>

namespace inference {

namespace {

// Reads a positive integer key into `out`; when the key is absent, `fallback` is used if given, else it is an error
// (CorruptFile naming the key, from the GGUF reader).
Status readInt(const GgufFile& file, const std::string& key, int& out, std::optional<int> fallback = {}) {
    if (fallback && !file.find(key)) {
        out = *fallback;
        return {};
    }
    Result<uint64_t> v = file.getUInt(key);
    if (!v)
        return v.error();
    if (*v == 0 || *v > (1u << 30))
        return makeError(ErrorCode::CorruptFile,
                         "metadata key '" + key + "' = " + std::to_string(*v) + " is out of range");
    out = static_cast<int>(*v);
    return {};
}

std::string shapeString(const std::vector<uint64_t>& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

bool isSupportedWeightType(GgmlType type) {
    switch (type) {
        case GgmlType::F32:
        case GgmlType::F16:
        case GgmlType::BF16:
        case GgmlType::Q4_0:
        case GgmlType::Q8_0:
        case GgmlType::Q4_K:
        case GgmlType::Q6_K:
            return true;
    }
    return false;
}

// Binds tensor `name` of GGUF shape [cols] (rows 0) or [cols, rows].
Result<WeightView> bindTensor(const GgufFile& file, const std::string& name, int64_t cols, int64_t rows) {
    const GgufTensorInfo* t = file.findTensor(name);
    if (!t)
        return makeError(ErrorCode::CorruptFile, "missing tensor '" + name + "'");
    const std::vector<uint64_t> expected =
        rows == 0 ? std::vector<uint64_t>{static_cast<uint64_t>(cols)}
                  : std::vector<uint64_t>{static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)};
    if (t->shape != expected)
        return makeError(ErrorCode::CorruptFile, "tensor '" + name + "' has shape " + shapeString(t->shape) +
                                                     ", the config implies " + shapeString(expected));
    if (!isSupportedWeightType(t->type))
        return makeError(ErrorCode::Unsupported, "tensor '" + name + "' has type " + kernels::typeName(t->type) +
                                                     "; supported: " + kernels::kSupportedTypeNames);
    if (rows == 0 && t->type != GgmlType::F32)
        return makeError(ErrorCode::Unsupported,
                         "norm tensor '" + name + "' must be F32, not " + kernels::typeName(t->type));
    if (cols % kernels::blockSize(t->type) != 0)
        return makeError(ErrorCode::CorruptFile, "tensor '" + name + "' row length " + std::to_string(cols) +
                                                     " is not a multiple of its block size");
    WeightView w;
    w.type = t->type;
    w.data = file.tensorData(*t).data();
    w.rows = rows == 0 ? 1 : rows;
    w.cols = cols;
    if (static_cast<uint64_t>(w.bytes()) != file.tensorData(*t).size())
        return makeError(ErrorCode::CorruptFile, "tensor '" + name + "' data size disagrees with its shape");
    return w;
}

}  // namespace

Result<ModelConfig> readModelConfig(const GgufFile& file) {
    ModelConfig c;
    Result<std::string> arch = file.getString("general.architecture");
    if (!arch)
        return arch.error();
    if (*arch != "llama")
        return makeError(ErrorCode::Unsupported, "model architecture '" + *arch + "' (only 'llama' is supported)");
    c.arch = *arch;
    if (file.find("general.name")) {
        if (Result<std::string> name = file.getString("general.name"))
            c.name = *name;
    }
    RC_TRY(readInt(file, "llama.embedding_length", c.dim));
    RC_TRY(readInt(file, "llama.block_count", c.nLayers));
    RC_TRY(readInt(file, "llama.attention.head_count", c.nHeads));
    RC_TRY(readInt(file, "llama.attention.head_count_kv", c.nKvHeads, c.nHeads));
    RC_TRY(readInt(file, "llama.feed_forward_length", c.ffn));
    RC_TRY(readInt(file, "llama.context_length", c.contextLength));

    if (c.dim % c.nHeads != 0)
        return makeError(ErrorCode::CorruptFile, "embedding_length " + std::to_string(c.dim) +
                                                     " is not a multiple of head_count " + std::to_string(c.nHeads));
    if (c.nHeads % c.nKvHeads != 0)
        return makeError(ErrorCode::CorruptFile, "head_count " + std::to_string(c.nHeads) +
                                                     " is not a multiple of head_count_kv " +
                                                     std::to_string(c.nKvHeads));
    c.headDim = c.dim / c.nHeads;
    RC_TRY(readInt(file, "llama.rope.dimension_count", c.ropeDim, c.headDim));
    if (c.ropeDim > c.headDim || c.ropeDim % 2 != 0)
        return makeError(ErrorCode::CorruptFile, "rope.dimension_count " + std::to_string(c.ropeDim) +
                                                     " must be even and at most the head size " +
                                                     std::to_string(c.headDim));

    Result<double> eps = file.getFloat("llama.attention.layer_norm_rms_epsilon");
    if (!eps)
        return eps.error();
    c.rmsEps = static_cast<float>(*eps);
    if (file.find("llama.rope.freq_base")) {
        Result<double> base = file.getFloat("llama.rope.freq_base");
        if (!base)
            return base.error();
        c.ropeFreqBase = static_cast<float>(*base);
    }
    if (!(c.rmsEps > 0.0f) || !(c.ropeFreqBase > 1.0f))
        return makeError(ErrorCode::CorruptFile, "rms epsilon or rope freq_base out of range");

    // The vocabulary size comes from the embedding table (llama.vocab_size is often absent).
    const GgufTensorInfo* embd = file.findTensor("token_embd.weight");
    if (!embd)
        return makeError(ErrorCode::CorruptFile, "missing tensor 'token_embd.weight'");
    if (embd->shape.size() != 2 || embd->shape[1] == 0 || embd->shape[1] > (1u << 24))
        return makeError(ErrorCode::CorruptFile, "tensor 'token_embd.weight' has shape " + shapeString(embd->shape));
    c.nVocab = static_cast<int>(embd->shape[1]);
    c.tiedOutput = file.findTensor("output.weight") == nullptr;
    return c;
}

uint64_t ModelWeights::totalBytes() const {
    uint64_t total = static_cast<uint64_t>(tokenEmbedding.bytes() + outputNorm.bytes());
    if (output.data != tokenEmbedding.data)
        total += static_cast<uint64_t>(output.bytes());
    for (const LayerWeights& l : layers)
        for (const WeightView* w : {&l.attnNorm, &l.wq, &l.wk, &l.wv, &l.wo, &l.ffnNorm, &l.wGate, &l.wDown, &l.wUp})
            total += static_cast<uint64_t>(w->bytes());
    return total;
}

Result<ModelWeights> bindWeights(const GgufFile& file, const ModelConfig& c) {
    ModelWeights w;
    struct Binding {
        WeightView* out;
        std::string name;
        int64_t cols;
        int64_t rows;  // 0: a vector
    };
    std::vector<Binding> bindings;
    bindings.push_back({&w.tokenEmbedding, "token_embd.weight", c.dim, c.nVocab});
    bindings.push_back({&w.outputNorm, "output_norm.weight", c.dim, 0});
    if (!c.tiedOutput)
        bindings.push_back({&w.output, "output.weight", c.dim, c.nVocab});
    w.layers.resize(static_cast<size_t>(c.nLayers));
    for (int i = 0; i < c.nLayers; ++i) {
        LayerWeights& l = w.layers[static_cast<size_t>(i)];
        const std::string p = "blk." + std::to_string(i) + ".";
        bindings.push_back({&l.attnNorm, p + "attn_norm.weight", c.dim, 0});
        bindings.push_back({&l.wq, p + "attn_q.weight", c.dim, c.qDim()});
        bindings.push_back({&l.wk, p + "attn_k.weight", c.dim, c.kvDim()});
        bindings.push_back({&l.wv, p + "attn_v.weight", c.dim, c.kvDim()});
        bindings.push_back({&l.wo, p + "attn_output.weight", c.qDim(), c.dim});
        bindings.push_back({&l.ffnNorm, p + "ffn_norm.weight", c.dim, 0});
        bindings.push_back({&l.wGate, p + "ffn_gate.weight", c.dim, c.ffn});
        bindings.push_back({&l.wDown, p + "ffn_down.weight", c.ffn, c.dim});
        bindings.push_back({&l.wUp, p + "ffn_up.weight", c.dim, c.ffn});
    }
    for (const Binding& b : bindings) {
        Result<WeightView> view = bindTensor(file, b.name, b.cols, b.rows);
        if (!view)
            return view.error();
        *b.out = *view;
    }
    if (c.tiedOutput)
        w.output = w.tokenEmbedding;
    return w;
}

}  // namespace inference
