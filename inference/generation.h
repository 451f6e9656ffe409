// The decode loop shared by chat sessions and raw completion: sample, stream whole UTF-8 pieces, hold back text that
// could start a stop string, stop on EOS / stop strings / token limit / full context / cancel / callback.
// Internal to the inference library.
#pragma once

#include <atomic>
#include <string>
#include <string_view>
#include <vector>

#include "backend.h"
#include "inference/sampler.h"
#include "inference/session.h"
#include "inference/tokenizer.h"

namespace inference {

class RoundAttention;  // inference/round_attention.h

// Streams text while holding back any tail that could be the start of a stop string, so a stop string is never
// emitted, not even in part.
class StopStringFilter {
public:
    explicit StopStringFilter(std::vector<std::string> stops);
    // Appends decoded text; returns what may be emitted now. After a stop string is found, stopped() is true and
    // the text before it is returned; later pushes return nothing.
    std::string push(std::string_view text);
    bool stopped() const { return m_stopped; }
    // End of the stream without a stop string: the held-back text.
    std::string flush();

private:
    std::vector<std::string> m_stops;
    std::string m_held;
    bool m_stopped = false;
};

struct DecodeSettings {
    int nLayers = 0;  // the model's layer count
    int maxNewTokens = 512;
    bool stopAtEos = true;  // EOS ends generation (and so do control tokens that spell a stop)
    std::vector<std::string> stopStrings;
    const std::atomic<bool>* cancel = nullptr;  // non-owning; checked between tokens
    RoundAttention* rounds = nullptr;           // non-owning; null: full forward
};

struct DecodeOutcome {
    std::vector<int32_t> tokens;  // sampled tokens, without a final EOS or end-of-turn control token
    std::vector<int32_t> fed;     // the ones appended to the KV cache (their KV is in the last round)
    std::string text;             // streamed text (without stop strings)
    StopReason stopReason = StopReason::MaxTokens;
    double decodeMs = 0.0;
};

// Runs after a prefill whose last-token logits are ready in `ctx`. `history` holds the context so far (for the
// repetition penalty); fed tokens are appended to it.
Result<DecodeOutcome> decodeLoop(BackendContext& ctx, const Tokenizer& tokenizer, Sampler& sampler,
                                 std::vector<int32_t>& history, const DecodeSettings& settings,
                                 const TokenCallback& onPiece);

// Feeds tokens to the last round in batches of at most kPrefillBatch (bounding activation memory); the logits of
// the last token are ready afterwards. `recordScores` asks the last batch to record round scores.
inline constexpr int kPrefillBatch = 256;
Status prefill(BackendContext& ctx, std::span<const int32_t> tokens, int nLayers, bool recordScores);

}  // namespace inference
