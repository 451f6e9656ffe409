// Full KV against Round Attention on scripted conversations; story and needle conversation generators.
#include "inference/round_bench.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

#include "backend.h"

namespace inference {

namespace {

// log-softmax of one logits row, in double.
std::vector<double> logSoftmax(std::span<const float> row) {
    const float mx = *std::max_element(row.begin(), row.end());
    double sum = 0.0;
    for (float v : row)
        sum += std::exp(static_cast<double>(v) - mx);
    const double lse = mx + std::log(sum);
    std::vector<double> out(row.size());
    for (size_t i = 0; i < row.size(); ++i)
        out[i] = row[i] - lse;
    return out;
}

int32_t argmax(std::span<const float> row) {
    return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// One mode's run of a conversation.
struct ModeRun {
    std::unique_ptr<BackendContext> ctx;
    std::unique_ptr<RoundAttention> ra;

    // Feeds tokens as one batch; returns a copy of the logits (every row when allLogits).
    Result<std::vector<float>> feed(std::span<const int32_t> tokens, bool allLogits) {
        ForwardBatch batch;
        batch.tokens = tokens;
        batch.allLogits = allLogits;
        RC_TRY(ra->forward(*ctx, batch));
        Result<std::span<const float>> l = ctx->logits();
        if (!l)
            return l.error();
        return std::vector<float>(l->begin(), l->end());
    }
};

struct Accumulator {
    RoundQualityReport r;
    double klSum = 0.0;
    double greedySum = 0.0;
    int greedyExact = 0;
    double recalledSum = 0.0, pastSum = 0.0, vramSum = 0.0;

    void compareRow(std::span<const float> full, std::span<const float> round) {
        const std::vector<double> lf = logSoftmax(full), lr = logSoftmax(round);
        double kl = 0.0;
        for (size_t i = 0; i < lf.size(); ++i)
            kl += std::exp(lf[i]) * (lf[i] - lr[i]);
        klSum += kl;
        r.maxKl = std::max(r.maxKl, kl);
        r.top1Agreement += argmax(full) == argmax(round) ? 1.0 : 0.0;
        ++r.positions;
    }
};

// Greedy continuation of `count` tokens from the current logits; the fed tokens are dropped again afterwards.
Result<std::vector<int32_t>> greedy(ModeRun& run, std::vector<float> logits, int count) {
    std::vector<int32_t> out;
    for (int i = 0; i < count; ++i) {
        out.push_back(argmax(logits));
        const int32_t one[1] = {out.back()};
        Result<std::vector<float>> next = run.feed(one, false);
        if (!next)
            return next.error();
        logits = std::move(*next);
    }
    RC_TRY(run.ctx->dropTail(count));
    return out;
}

double logLikelihood(std::span<const float> firstRow, std::span<const float> answerRows,
                     std::span<const int32_t> answer, int nVocab) {
    double ll = 0.0;
    for (size_t j = 0; j < answer.size(); ++j) {
        const std::span<const float> row =
            j == 0 ? firstRow : answerRows.subspan((j - 1) * static_cast<size_t>(nVocab), static_cast<size_t>(nVocab));
        ll += logSoftmax(row)[static_cast<size_t>(answer[j])];
    }
    return ll;
}

Status runConversation(const Model& model, const BenchConversation& conv, const RoundQualityOptions& options,
                       Accumulator& acc) {
    const ModelConfig& config = model.config();
    const size_t vocab = static_cast<size_t>(config.nVocab);
    int capacity = options.greedyTokens + 1;
    for (const TokenRound& r : conv.rounds)
        capacity += static_cast<int>(r.question.size() + r.answer.size());
    ModeRun runs[2];
    for (int m = 0; m < 2; ++m) {
        Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(capacity);
        if (!ctx)
            return ctx.error();
        RoundAttentionOptions ro = options.rounds;
        ro.mode = m == 0 ? KvMode::FullKv : options.comparedMode;
        ro.sharing.enabled = m == 1 && options.rounds.sharing.enabled;  // the reference is plain full KV
        runs[m].ctx = std::move(*ctx);
        runs[m].ra = std::make_unique<RoundAttention>(config, ro, options.calibratedWatershed);
    }
    ModeRun& full = runs[0];
    ModeRun& round = runs[1];
    const int last = static_cast<int>(conv.rounds.size()) - 1;
    for (int k = 0; k <= last; ++k) {
        const TokenRound& tr = conv.rounds[static_cast<size_t>(k)];
        if (tr.question.empty())
            return makeError(ErrorCode::InvalidArgument, "round " + std::to_string(k) + " has no question tokens");
        std::vector<float> q[2];
        for (int m = 0; m < 2; ++m) {
            RC_TRY(runs[m].ctx->beginRound());
            Result<std::vector<float>> l = runs[m].feed(tr.question, false);
            if (!l)
                return l.error();
            q[m] = std::move(*l);
        }
        if (k == 0) {  // nothing to recall yet: both modes compute the same
            for (ModeRun& run : runs) {
                if (tr.answer.empty())
                    continue;
                Result<std::vector<float>> l = run.feed(tr.answer, false);
                if (!l)
                    return l.error();
            }
            continue;
        }
        const TurnDiagnostics& diag = round.ra->diagnostics();
        ++acc.r.turns;
        acc.recalledSum += static_cast<double>(diag.selection.rounds.size());
        acc.pastSum += k;
        acc.r.flatFallbacks += diag.selection.flatFallback ? 1 : 0;
        if (k == last) {
            Result<std::vector<int32_t>> gf = greedy(full, q[0], options.greedyTokens);
            Result<std::vector<int32_t>> gr = greedy(round, q[1], options.greedyTokens);
            if (!gf)
                return gf.error();
            if (!gr)
                return gr.error();
            size_t same = 0;
            while (same < gf->size() && (*gf)[same] == (*gr)[same])
                ++same;
            acc.greedySum += gf->empty() ? 1.0 : static_cast<double>(same) / static_cast<double>(gf->size());
            acc.greedyExact += same == gf->size() ? 1 : 0;
            if (conv.needleRound >= 1) {
                ++acc.r.needleCases;
                const std::vector<int>& sel = diag.selection.rounds;
                acc.r.needleRecalled += std::binary_search(sel.begin(), sel.end(), conv.needleRound) ? 1 : 0;
            }
        }
        std::vector<float> a[2];
        if (!tr.answer.empty()) {
            for (int m = 0; m < 2; ++m) {
                Result<std::vector<float>> l = runs[m].feed(tr.answer, true);
                if (!l)
                    return l.error();
                a[m] = std::move(*l);
            }
            // Row 0 predicts answer token 0 (from the question); answer row j predicts token j + 1.
            acc.compareRow(q[0], q[1]);
            for (size_t j = 0; j + 1 < tr.answer.size(); ++j)
                acc.compareRow(std::span(a[0]).subspan(j * vocab, vocab), std::span(a[1]).subspan(j * vocab, vocab));
            if (k == last && conv.needleRound >= 1) {
                acc.r.needleLogLikFull += logLikelihood(q[0], a[0], tr.answer, config.nVocab);
                acc.r.needleLogLikRound += logLikelihood(q[1], a[1], tr.answer, config.nVocab);
            }
        }
        const RecallReport rep = round.ra->report(*round.ctx);
        acc.vramSum += rep.kvBytesFull > 0 ? static_cast<double>(rep.kvBytesInVram) / rep.kvBytesFull : 1.0;
    }
    ++acc.r.conversations;
    return {};
}

}  // namespace

Result<RoundQualityReport> compareFullVsRound(const Model& model, std::span<const BenchConversation> conversations,
                                              const RoundQualityOptions& options) {
    Accumulator acc;
    for (const BenchConversation& conv : conversations)
        RC_TRY(runConversation(model, conv, options, acc));
    RoundQualityReport& r = acc.r;
    if (r.positions > 0) {
        r.top1Agreement /= static_cast<double>(r.positions);
        r.meanKl = acc.klSum / static_cast<double>(r.positions);
    }
    if (r.conversations > 0) {
        r.greedyPrefixAgreement = acc.greedySum / r.conversations;
        r.greedyExactRate = static_cast<double>(acc.greedyExact) / r.conversations;
    }
    if (r.turns > 0) {
        r.meanRecalledRounds = acc.recalledSum / r.turns;
        r.meanPastRounds = acc.pastSum / r.turns;
        r.meanVramShare = acc.vramSum / r.turns;
    }
    if (r.needleCases > 0) {
        r.needleRecallRate = static_cast<double>(r.needleRecalled) / r.needleCases;
        r.needleLogLikFull /= r.needleCases;
        r.needleLogLikRound /= r.needleCases;
    }
    return r;
}

// ---- stories260K conversations ----

namespace {

constexpr const char* kNames[] = {"Mia", "Tom", "Lily", "Ben", "Sam", "Anna", "Max", "Lucy", "Tim", "Sue", "Jack",
                                  "Kate", "Bob", "Amy", "Joe", "Sara"};
constexpr const char* kColours[] = {"red", "blue", "green", "yellow", "pink", "purple", "brown", "white", "black"};
constexpr const char* kThings[] = {"ball", "hat", "car", "kite", "box", "cup", "boat", "bike", "dress", "toy"};
constexpr const char* kAnimals[] = {"dog", "cat", "bird", "fish", "frog", "bunny", "bear", "duck"};
constexpr const char* kPlaces[] = {"park", "garden", "forest", "house", "school", "lake"};

class StoryText {
public:
    explicit StoryText(uint64_t seed) : m_rng(seed) {}

    template <size_t N>
    std::string pick(const char* const (&list)[N]) { return list[m_rng() % N]; }

    // One simple TinyStories-like sentence about `name`.
    std::string sentence(const std::string& name) {
        switch (m_rng() % 8) {
        case 0: return name + " liked to play in the " + pick(kPlaces) + " with a friend.";
        case 1: return "One day, " + name + " saw a big " + pick(kAnimals) + " near the tree.";
        case 2: return "The " + pick(kAnimals) + " was very happy and wanted to play.";
        case 3: return name + " and the " + pick(kAnimals) + " ran and jumped all day.";
        case 4: return "They had a lot of fun together in the " + pick(kPlaces) + ".";
        case 5: return "At night, " + name + " went home and told mom about the day.";
        case 6: return "Mom smiled and gave " + name + " a big hug.";
        default: return name + " was sad, but then " + name + " smiled again.";
        }
    }

private:
    std::mt19937_64 m_rng;
};

Result<std::vector<int32_t>> encode(const Tokenizer& tokenizer, const std::string& text, bool bos) {
    return tokenizer.encode(text, EncodeOptions{bos, false});
}

int tokenCount(const TokenConversation& conv) {
    int n = 0;
    for (const TokenRound& r : conv)
        n += static_cast<int>(r.question.size() + r.answer.size());
    return n;
}

Result<TokenRound> makeRound(const Tokenizer& tokenizer, const std::string& question, const std::string& answer,
                             bool bos) {
    TokenRound r;
    Result<std::vector<int32_t>> q = encode(tokenizer, question, bos);
    if (!q)
        return q.error();
    r.question = std::move(*q);
    if (!answer.empty()) {
        Result<std::vector<int32_t>> a = encode(tokenizer, answer, false);
        if (!a)
            return a.error();
        r.answer = std::move(*a);
    }
    return r;
}

}  // namespace

Result<std::vector<BenchConversation>> makeStoryConversations(const Tokenizer& tokenizer,
                                                             const StoryGenOptions& options) {
    std::vector<BenchConversation> out;
    for (int c = 0; c < options.conversations; ++c) {
        StoryText text(options.seed * 1000003u + static_cast<uint64_t>(c));
        BenchConversation conv;
        const std::string hero = text.pick(kNames);
        Result<TokenRound> r0 =
            makeRound(tokenizer, "Once upon a time, there was a little child named " + hero + ".", "", true);
        if (!r0)
            return r0.error();
        conv.rounds.push_back(std::move(*r0));
        while (true) {
            const std::string name = text.pick(kNames);
            Result<TokenRound> r = makeRound(tokenizer, text.sentence(name),
                                             text.sentence(name) + " " + text.sentence(hero), false);
            if (!r)
                return r.error();
            if (tokenCount(conv.rounds) + static_cast<int>(r->question.size() + r->answer.size()) > options.maxTokens)
                break;
            conv.rounds.push_back(std::move(*r));
        }
        out.push_back(std::move(conv));
    }
    return out;
}

Result<std::vector<BenchConversation>> makeNeedleConversations(const Tokenizer& tokenizer,
                                                              const StoryGenOptions& options) {
    std::vector<BenchConversation> out;
    for (int c = 0; c < options.conversations; ++c) {
        StoryText text(options.seed * 7919u + static_cast<uint64_t>(c));
        // Distinct names per round: kNames[order[i]] states a fact in round i + 1.
        std::vector<int> order(std::size(kNames));
        for (size_t i = 0; i < order.size(); ++i)
            order[i] = static_cast<int>(i);
        std::shuffle(order.begin(), order.end(), std::mt19937_64(options.seed + static_cast<uint64_t>(c)));
        const std::string thing = text.pick(kThings);
        struct Fact {
            std::string name, colour;
        };
        std::vector<Fact> facts;
        BenchConversation conv;
        Result<TokenRound> r0 = makeRound(tokenizer, "Once upon a time, there were many friends in a small town.", "",
                                          true);
        if (!r0)
            return r0.error();
        conv.rounds.push_back(std::move(*r0));
        std::vector<TokenRound> body;
        for (size_t i = 0; i < order.size(); ++i) {
            Fact f{kNames[order[i]], text.pick(kColours)};
            Result<TokenRound> r = makeRound(tokenizer, f.name + " has a " + f.colour + " " + thing + ".",
                                             text.sentence(f.name) + " " + text.sentence(f.name), false);
            if (!r)
                return r.error();
            // Room for the final question (about 25 tokens).
            if (tokenCount(conv.rounds) + tokenCount(body) + static_cast<int>(r->question.size() + r->answer.size()) +
                    25 > options.maxTokens)
                break;
            body.push_back(std::move(*r));
            facts.push_back(std::move(f));
        }
        if (body.size() < 3)
            return makeError(ErrorCode::InvalidArgument, "maxTokens leaves room for fewer than 3 needle rounds");
        // The needle is one of rounds [1, N - 2]: not the latest round, which is always recalled.
        const int needle = 1 + static_cast<int>(static_cast<size_t>(c) % (body.size() - 1));
        const Fact& f = facts[static_cast<size_t>(needle - 1)];
        for (TokenRound& r : body)
            conv.rounds.push_back(std::move(r));
        Result<TokenRound> q = makeRound(tokenizer,
                                         "What color is " + f.name + "'s " + thing + "? " + f.name + "'s " + thing +
                                             " is",
                                         f.colour + ".", false);
        if (!q)
            return q.error();
        conv.rounds.push_back(std::move(*q));
        conv.needleRound = needle;
        out.push_back(std::move(conv));
    }
    return out;
}

}  // namespace inference
