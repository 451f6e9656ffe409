// Decode loop and stop-string filtering.
#include "generation.h"

#include <algorithm>
#include <chrono>

#include "inference/round_attention.h"

namespace inference {

// ---- StopStringFilter ----

StopStringFilter::StopStringFilter(std::vector<std::string> stops) : m_stops(std::move(stops)) {
    std::erase_if(m_stops, [](const std::string& s) { return s.empty(); });
}

std::string StopStringFilter::push(std::string_view text) {
    if (m_stopped)
        return {};
    m_held += text;
    size_t stopAt = std::string::npos;
    for (const std::string& s : m_stops) stopAt = std::min(stopAt, m_held.find(s));
    if (stopAt != std::string::npos) {
        m_stopped = true;
        std::string out = m_held.substr(0, stopAt);
        m_held.clear();
        return out;
    }
    // Hold back the longest tail that is a proper prefix of a stop string. Stop strings are valid UTF-8, so the
    // tail starts at a character boundary.
    size_t hold = 0;
    for (const std::string& s : m_stops) {
        for (size_t len = std::min(s.size() - 1, m_held.size()); len > hold; --len) {
            if (m_held.compare(m_held.size() - len, len, s, 0, len) == 0) {
                hold = len;
                break;
            }
        }
    }
    std::string out = m_held.substr(0, m_held.size() - hold);
    m_held.erase(0, m_held.size() - hold);
    return out;
}

std::string StopStringFilter::flush() {
    std::string out;
    out.swap(m_held);
    return out;
}

// ---- prefill / decode ----

Status prefill(BackendContext& ctx, std::span<const int32_t> tokens, int nLayers, bool recordScores) {
    for (size_t i = 0; i < tokens.size(); i += kPrefillBatch) {
        const size_t n = std::min(tokens.size() - i, static_cast<size_t>(kPrefillBatch));
        ForwardBatch batch;
        batch.tokens = tokens.subspan(i, n);
        batch.recordRoundScores = recordScores && i + n == tokens.size();
        RC_TRY(forwardAll(ctx, batch, nLayers));
    }
    return {};
}

Result<DecodeOutcome> decodeLoop(BackendContext& ctx, const Tokenizer& tokenizer, Sampler& sampler,
                                 std::vector<int32_t>& history, const DecodeSettings& settings,
                                 const TokenCallback& onPiece) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    DecodeOutcome out;
    Utf8StreamDecoder decoder(tokenizer, DecodeOptions{true});
    StopStringFilter filter(settings.stopStrings);
    std::vector<float> logits;
    bool keepGoing = true;
    auto emit = [&](const std::string& text) {
        if (text.empty() || !keepGoing)
            return;
        out.text += text;
        if (onPiece && !onPiece(text))
            keepGoing = false;
    };
    out.stopReason = StopReason::MaxTokens;
    for (int i = 0; i < settings.maxNewTokens; ++i) {
        if (settings.cancel && settings.cancel->load()) {
            out.stopReason = StopReason::Cancelled;
            break;
        }
        Result<std::span<const float>> l = ctx.logits();
        if (!l)
            return l.error();
        logits.assign(l->end() - static_cast<std::ptrdiff_t>(tokenizer.vocabSize()), l->end());
        const int32_t token = sampler.sample(logits, history);
        if (settings.stopAtEos && token == tokenizer.eos()) {
            out.stopReason = StopReason::Eos;
            break;
        }
        if (settings.stopAtEos && tokenizer.isControl(token) &&
            std::ranges::find(settings.stopStrings, tokenizer.rawPiece(token)) != settings.stopStrings.end()) {
            out.stopReason = StopReason::StopString;
            break;
        }
        out.tokens.push_back(token);
        emit(filter.push(decoder.push(token)));
        if (filter.stopped()) {
            out.stopReason = StopReason::StopString;
            break;
        }
        if (!keepGoing) {
            out.stopReason = StopReason::CallbackStop;
            break;
        }
        if (i + 1 == settings.maxNewTokens)
            break;  // the last token need not be fed
        if (ctx.rounds().tokenCount() >= ctx.rounds().capacity()) {
            out.stopReason = StopReason::ContextFull;
            break;
        }
        const int32_t one[1] = {token};
        ForwardBatch batch;
        batch.tokens = one;
        // Past the trained context a full-KV conversation cannot take another token: the answer so far is kept and
        // ends as ContextFull (the forward pass checks before it changes the cache).
        const Status st =
            settings.rounds ? settings.rounds->forward(ctx, batch) : forwardAll(ctx, batch, settings.nLayers);
        if (!st) {
            if (st.error().code != ErrorCode::ContextFull)
                return st.error();
            out.stopReason = StopReason::ContextFull;
            break;
        }
        out.fed.push_back(token);
        history.push_back(token);
    }
    if (!filter.stopped()) {
        emit(filter.push(decoder.flush()));
        if (filter.stopped())
            out.stopReason = StopReason::StopString;
        else
            emit(filter.flush());
    }
    out.decodeMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    return out;
}

}  // namespace inference
