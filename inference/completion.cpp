// Raw completion: one round holding the prompt and the continuation.
#include "inference/completion.h"

#include <chrono>

#include "backend.h"
#include "generation.h"

namespace inference {

Result<CompletionResult> complete(const Model& model, std::string_view prompt, const CompletionOptions& options,
                                  const TokenCallback& onPiece) {
    const Tokenizer& tokenizer = model.tokenizer();
    Result<std::vector<int32_t>> ids = tokenizer.encode(prompt, EncodeOptions{tokenizer.addBosByDefault(), false});
    if (!ids)
        return ids.error();
    if (ids->empty())
        return makeError(ErrorCode::InvalidArgument, "empty prompt");
    const int capacity = options.contextLength > 0 ? options.contextLength
                                                   : static_cast<int>(ids->size()) + std::max(options.maxNewTokens, 1);
    if (static_cast<int>(ids->size()) > capacity)
        return makeError(ErrorCode::ContextFull, "the prompt has " + std::to_string(ids->size()) +
                                                     " tokens, the context holds " + std::to_string(capacity));
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(capacity);
    if (!ctx)
        return ctx.error();
    RC_TRY((*ctx)->beginRound());

    CompletionResult result;
    result.promptTokens = *ids;
    const int nLayers = model.config().nLayers;
    const auto start = std::chrono::steady_clock::now();
    RC_TRY(prefill(**ctx, result.promptTokens, nLayers, false));
    result.prefillMs = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();

    Sampler sampler(options.sampler);
    std::vector<int32_t> history = result.promptTokens;
    DecodeSettings settings;
    settings.nLayers = nLayers;
    settings.maxNewTokens = options.maxNewTokens;
    settings.stopAtEos = options.stopAtEos;
    settings.stopStrings = options.stopStrings;
    settings.cancel = options.cancel;
    Result<DecodeOutcome> out = decodeLoop(**ctx, tokenizer, sampler, history, settings, onPiece);
    if (!out)
        return out.error();
    result.tokens = std::move(out->tokens);
    result.text = std::move(out->text);
    result.stopReason = out->stopReason;
    result.decodeMs = out->decodeMs;
    result.tokensPerSecond =
        out->decodeMs > 0.0 ? 1000.0 * static_cast<double>(result.tokens.size()) / out->decodeMs : 0.0;
    return result;
}

}  // namespace inference
