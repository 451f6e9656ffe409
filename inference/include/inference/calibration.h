// Watershed calibration (`roundchat-cli calibrate`, docs/PAPERS.md C4): run sample multi-round conversations with
// full KV, record every layer's round-attention distribution for each question, and choose L_w as the smallest
// layer whose selection covers >= 95% of the final layers' round attention mass (round_policy.h chooseWatershed).
// The result is stored per model fingerprint as a small JSON file in a directory the caller gives. The same command
// also groups layers for inter-layer KV sharing (second half of this file).
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

// ---- layer groups for inter-layer KV sharing (inference/kv_sharing.h, docs/PAPERS.md B2.1) ----
//
// Each conversation runs with full attention; for its last `queries` tokens every layer's attention distribution
// over the query's distant keys (per query head, renormalised over the distant keys) is recorded. The similarity of
// layers a and b is the mean Jensen-Shannon divergence of those distributions, normalised to [0, 1] (JS / ln 2).
// Groups are grown bottom-up as in the paper's Algorithm 1, but per layer (all heads share one grouping, so one key
// buffer serves a group) and against the group's first layer rather than the previous layer: the later layers
// reuse that first layer's keys (and, SharedScores, its weights), and comparing consecutive layers only would let
// a group drift through small steps. The divergence of consecutive layers is stored too, for reading.

struct KvSharingCalibrationOptions {
    int sinkTokens = 16;
    int windowTokens = 4080;
    float maxJs = 0.1f;  // a layer joins the current group while its normalised JS to the group's first layer <= this
    int queries = 8;     // last tokens of each conversation measured
};

struct KvSharingCalibration {
    int nLayers = 0;
    int sinkTokens = 0;
    int windowTokens = 0;
    float maxJs = 0.0f;
    int samples = 0;              // (query, head) distributions compared per layer pair
    std::vector<float> js;        // (nLayers, nLayers) mean normalised JS between the layers' distant attention
    std::vector<int> groupStarts; // KvSharingOptions::groupStarts
};

// Mean normalised JS between every pair of layers. distributions[l][i]: distribution i at layer l (the same query
// and head, over the same keys, at every layer); entries empty in any layer are skipped. Returns (nLayers, nLayers).
std::vector<float> layerJsMatrix(std::span<const std::vector<std::vector<float>>> distributions);
// Greedy bottom-up grouping of a (nLayers, nLayers) JS matrix: layer l joins the group led by a while js[a][l] <=
// maxJs, otherwise it starts a new group. Returns the first layer of each group.
std::vector<int> chooseLayerGroups(std::span<const float> js, int nLayers, float maxJs);

// InvalidArgument when no conversation has a distant token for its last queries (a window too wide for them).
Result<KvSharingCalibration> calibrateKvSharing(const Model& model, std::span<const TokenConversation> conversations,
                                                const KvSharingCalibrationOptions& options);

// Storage next to the watershed calibration: <directory>/<fingerprint>.kv_sharing.json (same rules and errors).
std::string kvSharingToJson(const KvSharingCalibration& calibration, const std::string& fingerprint);
Result<KvSharingCalibration> kvSharingFromJson(const std::string& json, const std::string& fingerprint);
Status saveKvSharingCalibration(const std::string& directory, const std::string& fingerprint,
                                const KvSharingCalibration& calibration);
Result<KvSharingCalibration> loadKvSharingCalibration(const std::string& directory, const std::string& fingerprint);

}  // namespace inference
