// Random-weight llama models at any shape, written as GGUF files that llama.cpp also loads. Used by
// roundchat-mkmodel to make benchmark and test models without downloading weights.
// Thread safety: writeRandomLlamaModel may be called from any thread; it starts its own worker threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "inference/gguf.h"

namespace inference {

struct RandomModelSpec {
    std::string vocabPath;              // GGUF whose tokenizer.* keys are copied (its token list sets the vocab size)
    std::string name = "random-llama";  // general.name
    uint32_t dim = 0;                   // embedding_length
    uint32_t layers = 0;                // block_count
    uint32_t heads = 0;                 // attention.head_count; head_dim = dim / heads
    uint32_t kvHeads = 0;               // attention.head_count_kv (divides heads)
    uint32_t ffn = 0;                   // feed_forward_length
    uint32_t context = 4096;            // context_length
    float rmsEps = 1e-5f;               // attention.layer_norm_rms_epsilon
    float ropeFreqBase = 10000.0f;
    GgmlType type = GgmlType::F16;  // 2-D weights, any type whose block size divides dim and ffn; norms are F32
    uint64_t seed = 0;              // same seed and shape give the same file, whatever the thread count
    unsigned threads = 0;           // 0: std::thread::hardware_concurrency()
};

// Named shapes ("tinyllama": TinyLlama-1.1B, "llama2-7b": Llama-2-7B); InvalidArgument names the known ones.
// Only the shape fields (dim, layers, heads, kvHeads, ffn, context, rmsEps, ropeFreqBase, name) are set.
Status applyLlamaPreset(std::string_view preset, RandomModelSpec& spec);

// Writes the model to `outPath` (atomically, streaming one tensor at a time). Weights of 2-D tensors are
// approximately normal with standard deviation 0.02; norm weights are ones.
Status writeRandomLlamaModel(const RandomModelSpec& spec, const std::string& outPath);

}  // namespace inference
