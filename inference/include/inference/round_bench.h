// Quality harness for Round Attention (docs/PAPERS.md C5): the same scripted multi-round conversations are run with
// full KV and with Round Attention through the same pipeline (round_attention.h), and their next-token
// distributions are compared; a needle test checks that the round holding a fact is recalled when it is asked about.
// Also generators of story conversations for stories260K (TinyStories vocabulary, within 512 tokens).
// Threading: runs on the calling thread, using the model's backend; the model must not be used elsewhere meanwhile.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/session.h"

namespace inference {

struct BenchConversation {
    TokenConversation rounds;           // round 0: system prompt; the last round's question is the final question
    int needleRound = -1;               // >= 1: the round stating the fact the last question asks about
};

struct RoundQualityOptions {
    RoundAttentionOptions rounds;  // mode is ignored: both modes run; the rest configures Round Attention
    // The mode of the run compared with plain full KV. rounds.sharing applies to that run only, so FullKv with
    // sharing enabled measures inter-layer KV sharing alone.
    KvMode comparedMode = KvMode::RoundAttention;
    int calibratedWatershed = -1;
    int greedyTokens = 16;         // greedy continuation compared after the final question
};

struct RoundQualityReport {
    int conversations = 0;
    int turns = 0;                      // selections made (rounds >= 1 answered)
    int64_t positions = 0;              // teacher-forced answer positions compared
    double top1Agreement = 0.0;         // share of positions whose argmax agrees
    double meanKl = 0.0;                // mean KL(p_full || p_round) per position, nats
    double maxKl = 0.0;
    double greedyPrefixAgreement = 0.0; // mean share of the greedy continuation identical before the first difference
    double greedyExactRate = 0.0;       // share of conversations whose greedy continuations are identical
    int needleCases = 0;
    int needleRecalled = 0;             // the needle round was selected at the final question
    double needleRecallRate = 0.0;
    double needleLogLikFull = 0.0;      // mean log-likelihood (nats) of the final answer under full KV
    double needleLogLikRound = 0.0;     // ... and under Round Attention
    double meanRecalledRounds = 0.0;    // past rounds recalled per turn (pinned included)
    double meanPastRounds = 0.0;
    double meanVramShare = 0.0;         // kvBytesInVram / kvBytesFull at the end of each turn, Round Attention
    int flatFallbacks = 0;
};

// Runs every conversation in both modes. Teacher-forced over each round's answer: the question is prefilled (the
// selection point), then the answer is fed with every position's logits compared. The final round's answer is
// scored as the needle answer when needleRound >= 1.
Result<RoundQualityReport> compareFullVsRound(const Model& model, std::span<const BenchConversation> conversations,
                                              const RoundQualityOptions& options);

// ---- stories260K conversations ----

struct StoryGenOptions {
    int conversations = 20;
    int maxTokens = 500;  // total tokens per conversation (stories260K's context is 512)
    uint64_t seed = 1;
};

// Multi-round story conversations: round 0 a story opening, then rounds of story sentences (question) continued by
// a few more sentences (answer), until maxTokens.
Result<std::vector<BenchConversation>> makeStoryConversations(const Tokenizer& tokenizer,
                                                             const StoryGenOptions& options);
// Needle conversations: a fact "Mia has a red ball." inside round i of N, same-kind distractor facts about other
// names in the other rounds, and the final question "What color is Mia's ball? Mia's ball is" with answer " red.".
// The needle round varies over the conversations.
Result<std::vector<BenchConversation>> makeNeedleConversations(const Tokenizer& tokenizer,
                                                              const StoryGenOptions& options);

}  // namespace inference
