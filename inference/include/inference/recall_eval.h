// Answer accuracy on multi-round recall conversations (tools/train_recall_model/ writes them as JSONL): a fact is
// stated in one round, many rounds later a question asks for it, and the greedy answer must equal the expected text.
// Every case runs through the real session path (Session::appendRound for the earlier rounds, Session::send for the
// question) once with full KV and once with Round Attention, so the figures are what a user of the app would get.
// Threading: runs on the calling thread, using the model's backend; the model must not be used elsewhere meanwhile.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "inference/model.h"
#include "inference/session.h"

namespace inference {

struct RecallCase {
    int depth = 0;                 // the question is round `depth` (round 0 is the system prompt)
    std::string system;
    struct Turn {
        std::string user;
        std::string assistant;
    };
    std::vector<Turn> rounds;      // rounds 1 .. depth - 1
    std::string question;
    std::string answer;            // the expected answer text, compared after trimming whitespace
    int factRound = 0;             // the round (>= 1) stating the fact asked about
};

struct RecallModeStats {
    int cases = 0;
    int exact = 0;                 // greedy answers equal to the expected text
    int factRecalled = 0;          // the fact round was among the rounds recalled for the question
    double kvVramShareSum = 0.0;   // sum over cases of kvBytesInVram / kvBytesFull at the answer
    double recalledRoundsSum = 0.0;
    double firstTokenMsSum = 0.0;  // prefill of the question (selection and copies included)

    double accuracy() const { return cases ? static_cast<double>(exact) / cases : 0.0; }
    double factRecallRate() const { return cases ? static_cast<double>(factRecalled) / cases : 0.0; }
    double meanKvVramShare() const { return cases ? kvVramShareSum / cases : 0.0; }
};

struct RecallDepthReport {
    int depth = 0;
    RecallModeStats full;
    RecallModeStats round;
};

struct RecallEvalOptions {
    RoundAttentionOptions rounds;  // mode is ignored: both modes run; the rest configures Round Attention
    int maxNewTokens = 48;
};

// One report per distinct depth, ascending. Errors from the session (e.g. ContextFull) stop the evaluation.
Result<std::vector<RecallDepthReport>> evaluateRecall(const Model& model, std::span<const RecallCase> cases,
                                                      const RecallEvalOptions& options);

}  // namespace inference
