// Raw text completion without a chat template: encode the prompt (BOS added), prefill, and sample a continuation.
// Used by the CLI's one-shot mode and by the benchmark.
// Threading: runs on the caller's thread; `cancel` may be set from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "inference/model.h"
#include "inference/session.h"

namespace inference {

struct CompletionOptions {
    SamplerParams sampler;
    int maxNewTokens = 64;
    bool stopAtEos = true;  // false: always generate maxNewTokens (benchmarks, golden tests)
    std::vector<std::string> stopStrings;
    int contextLength = 0;                      // KV capacity; 0: prompt + maxNewTokens
    const std::atomic<bool>* cancel = nullptr;  // non-owning
};

struct CompletionResult {
    std::vector<int32_t> promptTokens;  // as fed, BOS first when the model adds one
    std::vector<int32_t> tokens;        // generated
    std::string text;                   // generated text (streamed pieces concatenated)
    StopReason stopReason = StopReason::MaxTokens;
    double prefillMs = 0.0;
    double decodeMs = 0.0;
    double tokensPerSecond = 0.0;  // generated tokens per second of decoding
};

// Errors: ContextFull when the prompt alone exceeds contextLength (never truncated), backend errors.
Result<CompletionResult> complete(const Model& model, std::string_view prompt, const CompletionOptions& options,
                                  const TokenCallback& onPiece = {});

}  // namespace inference
