// Chat session: renders the conversation with the model's chat template, reuses the cached common prefix, prefills
// only what is new (round by round), and streams the answer.
#include <algorithm>
#include <chrono>
#include <string>

#include "backend.h"
#include "generation.h"
#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/session.h"

namespace inference {

namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

size_t commonPrefix(std::span<const int32_t> a, std::span<const int32_t> b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return i;
}

class ChatSession final : public Session {
public:
    ChatSession(const Model& model, SessionOptions options, std::unique_ptr<BackendContext> ctx)
        : m_model(model),
          m_options(std::move(options)),
          m_ctx(std::move(ctx)),
          m_sampler(m_options.sampler),
          m_roundAttention(model.config(), m_options.rounds) {}

    Result<GenerationResult> send(std::string_view userText, const TokenCallback& onPiece) override {
        RoundInfo round;
        round.index = std::max(1, static_cast<int>(m_rounds.size()));
        round.userText = std::string(userText);
        return answer(std::move(round), onPiece);
    }

    Result<GenerationResult> regenerate(const TokenCallback& onPiece) override {
        if (m_rounds.size() < 2)
            return makeError(ErrorCode::InvalidArgument, "there is no answer to regenerate");
        RoundInfo round = m_rounds.back();
        round.answerText.clear();
        return answer(std::move(round), onPiece);
    }

    Status truncate(int keepRounds) override {
        if (keepRounds < 0 || keepRounds > static_cast<int>(m_rounds.size()))
            return makeError(ErrorCode::InvalidArgument, "cannot keep " + std::to_string(keepRounds) + " of " +
                                                             std::to_string(m_rounds.size()) + " rounds");
        RC_TRY(m_ctx->keepRounds(keepRounds));
        m_rounds.resize(static_cast<size_t>(keepRounds));
        m_roundAttention.reset();
        return {};
    }

    Status appendRound(std::string_view userText, std::string_view answerText) override {
        RoundInfo round;
        round.index = std::max(1, static_cast<int>(m_rounds.size()));
        round.userText = std::string(userText);
        round.answerText = std::string(answerText);
        Result<int> prefilled = prefillThrough(round);
        if (!prefilled)
            return prefilled.error();
        return {};
    }

    Status prefillSystemPrompt() override {
        if (!m_rounds.empty())
            return makeError(ErrorCode::InvalidArgument, "the system prompt is prefilled only into an empty session");
        // The tokens a send() would place in round 0 (see roundStart): the system prompt's rendering, or BOS alone.
        const std::vector<ChatMessage> system = messages(1, nullptr);
        std::vector<int32_t> tokens;
        if (!system.empty()) {
            Result<std::vector<int32_t>> ids = renderTokens(system, false);
            if (!ids)
                return ids.error();
            tokens = std::move(*ids);
        } else if (m_model.tokenizer().addBosByDefault() && m_model.tokenizer().bos() >= 0) {
            tokens.push_back(m_model.tokenizer().bos());
        }
        RC_TRY(m_ctx->beginRound());
        RoundInfo info;
        info.firstPosition = m_ctx->rounds().round(0).firstPosition;
        m_rounds.push_back(std::move(info));
        if (Status st = m_roundAttention.prefill(*m_ctx, tokens); !st) {
            (void)m_ctx->keepRounds(0);  // leave the session empty, as it was
            m_rounds.clear();
            m_roundAttention.reset();
            return st;
        }
        m_rounds.back().tokens = std::move(tokens);
        return {};
    }

    void cancel() override { m_cancel.store(true); }

    const std::vector<RoundInfo>& rounds() const override { return m_rounds; }

    ContextUsage contextUsage() const override {
        return ContextUsage{m_ctx->rounds().tokenCount(), m_ctx->rounds().capacity()};
    }

    const SessionOptions& options() const override { return m_options; }

    Status setOptions(SessionOptions options) override {
        m_options = std::move(options);
        m_sampler = Sampler(m_options.sampler);
        m_roundAttention.setOptions(m_options.rounds);
        return {};  // a changed system prompt is reconciled by the next send (round 0 is re-prefilled)
    }

    Result<RoundKvSnapshot> exportRound(int round) const override {
        if (round < 0 || round >= static_cast<int>(m_rounds.size()))
            return makeError(ErrorCode::InvalidArgument, "no round " + std::to_string(round));
        Result<RoundKvSnapshot> snap = m_ctx->exportRound(round, 0, m_model.config().nLayers);
        if (snap)
            snap->modelFingerprint = m_model.fingerprint();
        return snap;
    }

    Status importRound(const RoundInfo& info, RoundKvSnapshot snapshot) override {
        if (snapshot.modelFingerprint != m_model.fingerprint())
            return makeError(ErrorCode::Mismatch, "KV snapshot was made for another model");
        if (info.index != static_cast<int>(m_rounds.size()) || snapshot.round != info.index)
            return makeError(ErrorCode::InvalidArgument,
                             "rounds must be restored in order: expected round " + std::to_string(m_rounds.size()));
        RoundInfo round = info;
        if (round.tokens.empty() && round.index >= 1) {
            Result<std::vector<int32_t>> tokens = renderRound(round);
            if (!tokens)
                return tokens.error();
            round.tokens = std::move(*tokens);
        }
        if (snapshot.tokenCount != static_cast<int>(round.tokens.size()))
            return makeError(ErrorCode::Mismatch, "KV snapshot has " + std::to_string(snapshot.tokenCount) +
                                                      " tokens, the round " + std::to_string(round.tokens.size()));
        RC_TRY(m_ctx->importRound(std::move(snapshot), round.firstPosition));
        m_rounds.push_back(std::move(round));
        m_roundAttention.reset();
        return {};
    }

private:
    // The conversation as chat messages: the system prompt, then rounds [1, upTo) (user + answer), then `pending`
    // when given: its user message, and its answer when it has one (appendRound).
    std::vector<ChatMessage> messages(int upTo, const RoundInfo* pending) const {
        std::vector<ChatMessage> out;
        if (!m_options.systemPrompt.empty())
            out.push_back({"system", m_options.systemPrompt});
        for (int r = 1; r < upTo; ++r) {
            out.push_back({"user", m_rounds[static_cast<size_t>(r)].userText});
            out.push_back({"assistant", m_rounds[static_cast<size_t>(r)].answerText});
        }
        if (pending) {
            out.push_back({"user", pending->userText});
            if (!pending->answerText.empty())
                out.push_back({"assistant", pending->answerText});
        }
        return out;
    }

    Result<std::vector<int32_t>> renderTokens(std::vector<ChatMessage> msgs, bool addGenerationPrompt) const {
        ChatRenderInput input = m_model.renderInput();
        input.messages = std::move(msgs);
        input.addGenerationPrompt = addGenerationPrompt;
        Result<std::string> text = m_model.chatTemplate().tmpl.render(input);
        if (!text)
            return text.error();
        const Tokenizer& tok = m_model.tokenizer();
        Result<std::vector<int32_t>> ids = tok.encode(*text, EncodeOptions{false, true});
        if (!ids)
            return ids.error();
        // The template may spell BOS itself ("{{ bos_token }}"); add it only when it did not.
        if (tok.addBosByDefault() && tok.bos() >= 0 && (ids->empty() || ids->front() != tok.bos()))
            ids->insert(ids->begin(), tok.bos());
        return ids;
    }

    // Token index where round k (1..n) starts inside `full`: where the rendering of the conversation before it
    // stops agreeing with `full`. Falls back to just the BOS when the template cannot render that prefix alone.
    size_t roundStart(int k, const std::vector<int32_t>& full) const {
        const std::vector<ChatMessage> before = messages(k, nullptr);
        const size_t bosOnly = !full.empty() && full.front() == m_model.tokenizer().bos() ? 1 : 0;
        if (before.empty())
            return bosOnly;
        Result<std::vector<int32_t>> ids = renderTokens(before, false);
        return ids ? std::max(bosOnly, commonPrefix(*ids, full)) : bosOnly;
    }

    // The tokens of an answered round (rounds before it in place) as send() leaves them: its part of the rendered
    // conversation, end-of-turn text included (answer() closes every round).
    Result<std::vector<int32_t>> renderRound(const RoundInfo& round) const {
        Result<std::vector<int32_t>> full = renderTokens(messages(round.index, &round), round.answerText.empty());
        if (!full)
            return full.error();
        const auto start = static_cast<std::ptrdiff_t>(roundStart(round.index, *full));
        return std::vector<int32_t>(full->begin() + start, full->end());
    }

    // Trims the cache to the longest prefix that agrees with `full` round by round (round k of the target spans
    // [starts[k], starts[k + 1])), so that only the rest needs prefilling. Returns the token index to feed from.
    size_t reuseCache(const std::vector<int32_t>& full, const std::vector<size_t>& starts) {
        size_t p = 0;
        int keep = 0;
        for (size_t r = 0; r < m_rounds.size() && r < starts.size(); ++r) {
            // Earlier rounds matched exactly, so cached round r starts at starts[r] too.
            const size_t end = r + 1 < starts.size() ? starts[r + 1] : full.size();
            const std::vector<int32_t>& cached = m_rounds[r].tokens;
            const size_t match = commonPrefix(cached, std::span(full).subspan(starts[r], end - starts[r]));
            keep = static_cast<int>(r) + 1;
            p = starts[r] + match;
            if (match < cached.size() || p < end)
                break;  // this round differs or is shorter: cut it here, drop later rounds
        }
        // Always feed at least one token so that the last token's logits are computed.
        p = std::min(p, full.size() - 1);
        while (keep > 0 && starts[static_cast<size_t>(keep) - 1] > p) --keep;
        return trimTo(keep, p, starts);
    }

    // Keeps rounds [0, keep) with the last one cut to end at token index p.
    size_t trimTo(int keep, size_t p, const std::vector<size_t>& starts) {
        if (keep < static_cast<int>(m_rounds.size())) {
            (void)m_ctx->keepRounds(keep);
            m_rounds.resize(static_cast<size_t>(keep));
            m_roundAttention.reset();  // the rounds it tracked are gone
        }
        if (keep == 0)
            return 0;
        RoundInfo& last = m_rounds.back();
        const size_t keepTokens = p - starts[static_cast<size_t>(keep) - 1];
        if (keepTokens < last.tokens.size()) {
            (void)m_ctx->dropTail(static_cast<int>(last.tokens.size() - keepTokens));
            last.tokens.resize(keepTokens);
        }
        return p;
    }

    // Renders the conversation up to and including `round` (with the generation prompt when it has no answer yet),
    // reuses the cached prefix and prefills the rest round by round. Returns the number of tokens prefilled.
    Result<int> prefillThrough(const RoundInfo& round) {
        const int n = round.index;
        Result<std::vector<int32_t>> full = renderTokens(messages(n, &round), round.answerText.empty());
        if (!full)
            return full.error();
        if (full->empty())
            return makeError(ErrorCode::TemplateError, "the chat template rendered an empty prompt");
        if (static_cast<int>(full->size()) >= m_ctx->rounds().capacity())
            return makeError(ErrorCode::ContextFull, "the conversation needs " + std::to_string(full->size()) +
                                                         " tokens, the context holds " +
                                                         std::to_string(m_ctx->rounds().capacity()) +
                                                         ": start a new chat or remove earlier rounds");
        std::vector<size_t> starts(static_cast<size_t>(n) + 1, 0);  // starts[k]: first token of round k
        for (int k = n; k >= 1; --k)
            starts[static_cast<size_t>(k)] =
                std::min(roundStart(k, *full), k < n ? starts[static_cast<size_t>(k) + 1] : full->size());

        const std::vector<RoundInfo> before = m_rounds;  // texts of rounds that trimming may drop
        const size_t from = reuseCache(*full, starts);
        // Feed round by round from the first token that is not cached.
        int promptTokens = 0;
        for (int k = std::max(0, static_cast<int>(m_rounds.size()) - 1); k <= n; ++k) {
            if (k >= static_cast<int>(m_rounds.size())) {
                RC_TRY(m_ctx->beginRound());
                RoundInfo info = k == n                                ? round
                                 : k < static_cast<int>(before.size()) ? before[static_cast<size_t>(k)]
                                                                       : RoundInfo{};
                info.index = k;
                info.tokens.clear();
                info.firstPosition = m_ctx->rounds().round(k).firstPosition;
                m_rounds.push_back(std::move(info));
            }
            const size_t begin = std::max(from, starts[static_cast<size_t>(k)]);
            const size_t end = k < n ? starts[static_cast<size_t>(k) + 1] : full->size();
            if (begin >= end)
                continue;
            const std::span<const int32_t> chunk = std::span(*full).subspan(begin, end - begin);
            RoundInfo& info = m_rounds[static_cast<size_t>(k)];
            if (Status st = m_roundAttention.prefill(*m_ctx, chunk); !st) {
                // Leave the cache as the rounds record it: a question that did not fit (ContextFull past the
                // trained context) must not stay behind as history.
                if (info.tokens.empty()) {
                    (void)m_ctx->keepRounds(k);
                    m_rounds.resize(static_cast<size_t>(k));
                } else {
                    (void)m_ctx->dropTail(m_ctx->rounds().round(k).tokenCount - static_cast<int>(info.tokens.size()));
                }
                return st.error();
            }
            info.tokens.insert(info.tokens.end(), chunk.begin(), chunk.end());
            promptTokens += static_cast<int>(chunk.size());
        }
        return promptTokens;
    }

    Result<GenerationResult> answer(RoundInfo round, const TokenCallback& onPiece) {
        m_cancel.store(false);
        const bool newRound = round.index >= static_cast<int>(m_rounds.size());
        const auto prefillStart = Clock::now();
        Result<int> promptTokens = prefillThrough(round);
        if (!promptTokens)
            return promptTokens.error();
        GenerationResult result;
        result.promptTokens = *promptTokens;
        result.prefillMs = msSince(prefillStart);
        if (m_options.recordFirstLogits) {
            Result<std::span<const float>> logits = m_ctx->logits();
            if (!logits)
                return logits.error();
            const auto vocab = static_cast<std::ptrdiff_t>(m_model.tokenizer().vocabSize());
            result.firstTokenLogits.assign(logits->end() - vocab, logits->end());
        }

        std::vector<int32_t> history;
        for (const RoundInfo& r : m_rounds) history.insert(history.end(), r.tokens.begin(), r.tokens.end());
        DecodeSettings settings;
        settings.nLayers = m_model.config().nLayers;
        settings.maxNewTokens = m_options.maxNewTokens;
        settings.stopStrings = m_model.endOfTurnStrings();
        settings.stopStrings.insert(settings.stopStrings.end(), m_options.stopStrings.begin(),
                                    m_options.stopStrings.end());
        settings.cancel = &m_cancel;
        settings.rounds = &m_roundAttention;
        Result<DecodeOutcome> out = decodeLoop(*m_ctx, m_model.tokenizer(), m_sampler, history, settings, onPiece);
        if (!out) {
            // A failed decode (ContextFull past the trained context, a device error) leaves the cache as the rounds
            // record it: the tokens it fed go, and the round too when this send added it.
            if (newRound) {
                (void)m_ctx->keepRounds(round.index);
                m_rounds.resize(static_cast<size_t>(round.index));
            } else {
                (void)m_ctx->dropTail(m_ctx->rounds().rounds().back().tokenCount -
                                      static_cast<int>(m_rounds.back().tokens.size()));
            }
            return out.error();
        }
        RoundInfo& info = m_rounds.back();
        info.tokens.insert(info.tokens.end(), out->fed.begin(), out->fed.end());
        info.answerText = out->text;
        result.text = std::move(out->text);
        result.tokens = std::move(out->tokens);
        result.stopReason = out->stopReason;
        result.recall = m_roundAttention.report(*m_ctx);
        // Close the round now, as the next send would: feed the answer's end-of-turn text (and re-feed any answer
        // tokens that the template's rendering spells differently). Its KV is then final, so an exported snapshot
        // matches the round's rendering and can be restored from the texts alone. A failure (a full context)
        // leaves the round open; the next send closes it.
        const RoundInfo answered = m_rounds.back();
        (void)prefillThrough(answered);
        result.decodeMs = out->decodeMs;
        result.tokensPerSecond =
            out->decodeMs > 0.0 ? 1000.0 * static_cast<double>(result.tokens.size()) / out->decodeMs : 0.0;
        return result;
    }

    const Model& m_model;
    SessionOptions m_options;
    std::unique_ptr<BackendContext> m_ctx;
    Sampler m_sampler;
    RoundAttention m_roundAttention;  // runs every forward pass: full KV or Round Attention per m_options.rounds
    std::vector<RoundInfo> m_rounds;  // parallel to the KV cache's rounds
    std::atomic<bool> m_cancel{false};
};

}  // namespace

Result<std::unique_ptr<Session>> Session::create(const Model& model, SessionOptions options) {
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(model.contextLength());
    if (!ctx)
        return ctx.error();
    return std::unique_ptr<Session>(std::make_unique<ChatSession>(model, std::move(options), std::move(*ctx)));
}

}  // namespace inference
