// ModelConfig: the immutable hyperparameters of a llama-architecture GGUF model, and ModelWeights: typed views of
// its tensors, borrowed from the mapped file and checked against the config. Both backends build on these.
// Ownership: WeightView pointers borrow from the GgufFile, which must outlive them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "inference/gguf.h"
#include "roundchat/result.h"

namespace inference {

struct ModelConfig {
    std::string arch;  // general.architecture ("llama")
    std::string name;  // general.name, or empty
    int nVocab = 0;
    int dim = 0;  // embedding length
    int nLayers = 0;
    int nHeads = 0;
    int nKvHeads = 0;
    int headDim = 0;  // dim / nHeads
    int ropeDim = 0;  // rotated dims per head (llama.rope.dimension_count, default headDim)
    int ffn = 0;      // feed-forward hidden size
    float rmsEps = 1e-5f;
    float ropeFreqBase = 10000.0f;
    int contextLength = 0;    // trained context
    bool tiedOutput = false;  // output.weight absent: the token embedding is the output projection

    int kvDim() const { return nKvHeads * headDim; }
    int qDim() const { return nHeads * headDim; }
};

// Reads and checks the hyperparameters: other architectures are Unsupported (naming it), a missing required key is
// CorruptFile naming the key.
Result<ModelConfig> readModelConfig(const GgufFile& file);

// A weight matrix (rows, cols) in its on-disk encoding, cols contiguous (GGUF ne[0] = cols), or a vector (rows 1).
struct WeightView {
    GgmlType type = GgmlType::F32;
    const uint8_t* data = nullptr;
    int64_t rows = 0;
    int64_t cols = 0;
    int64_t rowBytes() const { return kernels::rowBytes(type, cols); }
    int64_t bytes() const { return rows * rowBytes(); }
};

struct LayerWeights {
    WeightView attnNorm;  // (dim) F32
    WeightView wq;        // (nHeads * headDim, dim)
    WeightView wk;        // (nKvHeads * headDim, dim)
    WeightView wv;        // (nKvHeads * headDim, dim)
    WeightView wo;        // (dim, nHeads * headDim)
    WeightView ffnNorm;   // (dim) F32
    WeightView wGate;     // (ffn, dim)   ffn_gate
    WeightView wDown;     // (dim, ffn)   ffn_down
    WeightView wUp;       // (ffn, dim)   ffn_up
};

struct ModelWeights {
    WeightView tokenEmbedding;  // (nVocab, dim)
    std::vector<LayerWeights> layers;
    WeightView outputNorm;  // (dim) F32
    WeightView output;      // (nVocab, dim); the token embedding when tied
    uint64_t totalBytes() const;
};

// Binds every tensor: a missing tensor is CorruptFile naming it, a shape that disagrees with the config is
// CorruptFile naming tensor and shapes, an unsupported type is Unsupported naming the supported ones.
Result<ModelWeights> bindWeights(const GgufFile& file, const ModelConfig& config);

}  // namespace inference
