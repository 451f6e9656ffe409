// Recall accuracy through the session API, full KV against Round Attention.
#include "inference/recall_eval.h"

#include <algorithm>
#include <map>
#include <memory>

namespace inference {

namespace {

std::string_view trimmed(std::string_view s) {
    const size_t first = s.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos)
        return {};
    return s.substr(first, s.find_last_not_of(" \t\r\n") - first + 1);
}

Status runCase(const Model& model, const RecallCase& c, KvMode mode, const RecallEvalOptions& options,
               RecallModeStats& stats) {
    SessionOptions so;
    so.systemPrompt = c.system;
    so.sampler.temperature = 0.0f;  // greedy, and no penalty: the answer repeats the question's words
    so.sampler.repeatPenalty = 1.0f;
    so.rounds = options.rounds;
    so.rounds.mode = mode;
    so.maxNewTokens = options.maxNewTokens;
    Result<std::unique_ptr<Session>> session = Session::create(model, so);
    if (!session)
        return session.error();
    for (const RecallCase::Turn& t : c.rounds)
        RC_TRY((*session)->appendRound(t.user, t.assistant));
    Result<GenerationResult> answer = (*session)->send(c.question, [](std::string_view) { return true; });
    if (!answer)
        return answer.error();
    const RecallReport& r = answer->recall;
    ++stats.cases;
    stats.exact += trimmed(answer->text) == trimmed(c.answer) ? 1 : 0;
    stats.factRecalled += std::any_of(r.recalled.begin(), r.recalled.end(),
                                      [&](const RecalledRound& rr) { return rr.round == c.factRound; })
                              ? 1
                              : 0;
    stats.kvVramShareSum += r.kvBytesFull > 0 ? static_cast<double>(r.kvBytesInVram) / r.kvBytesFull : 1.0;
    stats.recalledRoundsSum += static_cast<double>(r.recalled.size());
    stats.firstTokenMsSum += answer->prefillMs;
    return {};
}

}  // namespace

Result<std::vector<RecallDepthReport>> evaluateRecall(const Model& model, std::span<const RecallCase> cases,
                                                      const RecallEvalOptions& options) {
    std::map<int, RecallDepthReport> byDepth;
    for (const RecallCase& c : cases) {
        if (c.factRound < 1 || c.factRound >= static_cast<int>(c.rounds.size()) + 1)
            return makeError(ErrorCode::InvalidArgument, "recall case at depth " + std::to_string(c.depth) +
                                                             ": fact round " + std::to_string(c.factRound) +
                                                             " is not one of its rounds");
        RecallDepthReport& d = byDepth[c.depth];
        d.depth = c.depth;
        RC_TRY(runCase(model, c, KvMode::FullKv, options, d.full));
        RC_TRY(runCase(model, c, KvMode::RoundAttention, options, d.round));
    }
    std::vector<RecallDepthReport> out;
    for (auto& [depth, report] : byDepth)
        out.push_back(report);
    return out;
}

}  // namespace inference
