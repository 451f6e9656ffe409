// Watershed calibration (`roundchat-cli calibrate`, docs/PAPERS.md C4): run sample multi-round conversations with
// full KV, record every layer's round-attention distribution for each question, and choose L_w as the smallest
// layer whose selection covers >= 95% of the final layers' round attention mass (round_policy.h chooseWatershed).
// The result is stored per model fingerprint as a small JSON file in a directory the caller gives.
// Threading: runs on the calling thread with the model's backend; the model must not be used elsewhere meanwhile.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "inference/model.h"
#include "inference/round_attention.h"
#include "inference/round_policy.h"

namespace inference {

struct CalibrationOptions {
    RoundAttentionOptions selection;  // the policy whose selections are measured (mode ignored)
    float minCoverage = 0.95f;
    int minPastRounds = 3;            // questions with fewer past rounds say little about selection: skipped
};

// Per question, per layer: the shares of the past rounds, as measured with full KV.
Result<std::vector<CalibrationSample>> collectCalibrationSamples(const Model& model,
                                                                std::span<const TokenConversation> conversations,
                                                                int minPastRounds);

// collectCalibrationSamples + chooseWatershed. InvalidArgument when no conversation yields a sample.
Result<CalibrationResult> calibrateWatershed(const Model& model, std::span<const TokenConversation> conversations,
                                             const CalibrationOptions& options);

// Text conversations through the model's tokenizer: each entry is {question, answer}; the first entry is the
// system prompt (answer empty), encoded with BOS.
struct TextRound {
    std::string question;
    std::string answer;
};
Result<TokenConversation> tokenizeConversation(const Tokenizer& tokenizer, std::span<const TextRound> rounds);

// Storage: <directory>/<fingerprint>.json. The fingerprint must be a file-name-safe id (letters, digits, '-', '_',
// '.'); InvalidArgument otherwise. load: FileNotFound when there is no calibration for that model, CorruptFile when
// the file does not parse, Mismatch when it names another fingerprint.
std::string calibrationToJson(const CalibrationResult& result, const std::string& fingerprint);
Result<CalibrationResult> calibrationFromJson(const std::string& json, const std::string& fingerprint);
Status saveCalibration(const std::string& directory, const std::string& fingerprint, const CalibrationResult& result);
Result<CalibrationResult> loadCalibration(const std::string& directory, const std::string& fingerprint);

}  // namespace inference
