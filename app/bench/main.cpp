// roundchat-bench: throughput in the manner of llama-bench, plus two subcommands.
//   roundchat-bench -m M.gguf [-m M2.gguf ...] [-p 512,2048] [-n 128] [-d 0,4096,16384] [-r 5] [...] [-o json|md]
//   roundchat-bench rounds -m M.gguf [--conversations N] [--mode story|needle]
//   roundchat-bench recall -m M.gguf --data heldout_d10.jsonl,... (answer accuracy, full KV vs Round Attention)
//   roundchat-bench search [--messages 10000] [--queries 200]
// Throughput tests drive the backend directly (inference/backend.h) with random token ids from a fixed seed:
// ppN prefills N tokens in one batch, tgN decodes N single tokens; both at a depth d the cache was first filled to
// (in chunks of --chunk tokens). Each test runs once untimed (warm-up), then -r timed repetitions; the cache is
// trimmed back to d after each run. Every timed run ends with logits(), which copies to the host and so waits for
// the device (the CUDA backend synchronises its stream there).
// JSON records carry llama-bench's field names (model_filename, n_prompt, n_gen, n_depth, avg_ts, ...) so that
// tools/bench/bench_table.py can join the two.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "inference/backend.h"
#include "inference/calibration.h"
#include "inference/gguf.h"
#include "inference/model.h"
#include "inference/recall_eval.h"
#include "inference/round_bench.h"
#include "storage/chat_store.h"
#include "storage/database.h"

namespace {

using nlohmann::json;
using roundchat::Result;
using roundchat::Status;

constexpr const char* kUsage = R"(usage:
  roundchat-bench -m M.gguf [-m M2.gguf ...] [options]          throughput (pp: prefill, tg: decode)
    -p LIST            prompt sizes, comma separated (default 512; 0 skips)
    -n LIST            generation lengths (default 128; 0 skips)
    -d LIST            KV depths the tests start from (default 0)
    -r N               timed repetitions (default 5)
    --chunk N          batch size for filling the cache to a depth (default 2048)
    --backend B        auto|cpu|cuda (default auto)
    --threads N        CPU threads (default: hardware concurrency)
    -o FMT             json|md (default md)
  roundchat-bench rounds -m M.gguf [--conversations N] [--mode story|needle] [--backend B] [--threads N]
                         [--compare round|full] [--sharing on|off] [--sharing-sink N] [--sharing-window N]
                         [--sharing-groups 0,2,..] [--sharing-js T] [--sharing-variant scores|keys]
      --compare       the run compared with plain full KV (default round: Round Attention)
      --sharing on    inter-layer KV sharing in the compared run (either backend); layer groups from
                      --sharing-groups, else calibrated on other story conversations with --sharing-js
                      (default 0.1); sink/window default 16/4080
  roundchat-bench recall -m M.gguf --data A.jsonl[,B.jsonl] [--limit N] [--backend B] [--watershed L]
                         [--max-rounds N] [--recall-mass F]
  roundchat-bench search [--messages N] [--queries N]
  roundchat-bench rounds-gpu -m M.gguf [--rounds 50] [--tokens 16384] [--question 128] [--gen 64] [--watershed 5]
                         [--max-recalled 4] [--budget-mb 0] [--db PATH] [--restore-threads 4]
      Round Attention KV placement on CUDA vs full KV (VRAM, TTFT, decode) and KV restore from SQLite vs re-prefill
)";

constexpr uint64_t kSeed = 1234;

// ---- arguments ----------------------------------------------------------------------------------------------------

struct Args {
    std::vector<std::string> models;
    std::map<std::string, std::string> values;  // every other "--flag VALUE" / "-f VALUE", last one wins
};

std::optional<Args> parseArgs(int argc, char** argv, int first) {
    Args a;
    for (int i = first; i < argc; ++i) {
        const std::string flag = argv[i];
        if (!flag.starts_with("-") || i + 1 >= argc)
            return std::nullopt;
        const std::string value = argv[++i];
        if (flag == "-m" || flag == "--model")
            a.models.push_back(value);
        else
            a.values[flag] = value;
    }
    return a;
}

std::optional<int> parseInt(std::string_view s) {
    if (s.empty())
        return std::nullopt;
    const std::string text(s);
    char* end = nullptr;
    const long v = std::strtol(text.c_str(), &end, 10);
    if (*end != '\0' || v < 0 || v > (1L << 30))
        return std::nullopt;
    return static_cast<int>(v);
}

std::optional<std::vector<int>> parseList(std::string_view s) {
    std::vector<int> out;
    size_t start = 0;
    while (start <= s.size()) {
        const size_t comma = std::min(s.find(',', start), s.size());
        std::optional<int> v = parseInt(s.substr(start, comma - start));
        if (!v)
            return std::nullopt;
        out.push_back(*v);
        start = comma + 1;
    }
    return out;
}

// Reads flag `key` as an int (or list) into `out`; false when present but malformed.
bool readInt(const Args& a, const std::string& key, int& out) {
    auto it = a.values.find(key);
    if (it == a.values.end())
        return true;
    std::optional<int> v = parseInt(it->second);
    if (v)
        out = *v;
    return v.has_value();
}

bool readList(const Args& a, const std::string& key, std::vector<int>& out) {
    auto it = a.values.find(key);
    if (it == a.values.end())
        return true;
    std::optional<std::vector<int>> v = parseList(it->second);
    if (v)
        out = *v;
    return v.has_value();
}

std::string flagOr(const Args& a, const std::string& key, const std::string& fallback) {
    auto it = a.values.find(key);
    return it == a.values.end() ? fallback : it->second;
}

// The first flag of `a` that is not in `known`, or an empty string.
std::string unknownFlag(const Args& a, std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : a.values)
        if (std::find(known.begin(), known.end(), key) == known.end())
            return key;
    return {};
}

std::optional<inference::BackendKind> parseBackend(std::string_view s) {
    if (s == "auto")
        return inference::BackendKind::Auto;
    if (s == "cpu")
        return inference::BackendKind::Cpu;
    if (s == "cuda")
        return inference::BackendKind::Cuda;
    return std::nullopt;
}

const char* backendName(inference::BackendKind kind) {
    return kind == inference::BackendKind::Cuda ? "CUDA" : "CPU";
}

int usageError(const std::string& message) {
    std::fprintf(stderr, "roundchat-bench: %s\n%s", message.c_str(), kUsage);
    return 2;
}

int fail(const std::string& what, const roundchat::Error& e) {
    std::fprintf(stderr, "roundchat-bench: %s: %s\n", what.c_str(), e.toString().c_str());
    return 1;
}

// ---- statistics ---------------------------------------------------------------------------------------------------

double mean(const std::vector<double>& v) {
    double s = 0.0;
    for (double x : v)
        s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

// Sample standard deviation (n - 1), 0 for fewer than two samples, as llama-bench reports it.
double stddev(const std::vector<double>& v) {
    if (v.size() < 2)
        return 0.0;
    const double m = mean(v);
    double s = 0.0;
    for (double x : v)
        s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
}

double percentile(std::vector<double> v, double q) {
    if (v.empty())
        return 0.0;
    std::sort(v.begin(), v.end());
    const size_t i = static_cast<size_t>(std::ceil(q * static_cast<double>(v.size()))) - 1;
    return v[std::min(i, v.size() - 1)];
}

using Clock = std::chrono::steady_clock;

// The model on the requested backend with `threads` CPU threads (0: all); contextLength 0: the trained context.
Result<std::unique_ptr<inference::Model>> loadModel(const std::string& path, inference::BackendKind backend,
                                                    int threads, int contextLength = 0) {
    inference::LoadOptions load;
    load.backend = backend;
    load.threads = threads;
    load.contextLength = contextLength;
    return inference::Model::load(path, load);
}

double secondsSince(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- throughput ---------------------------------------------------------------------------------------------------

// What the GGUF file holds, independent of the backend.
struct FileFacts {
    uint64_t fileBytes = 0;
    uint64_t tensorBytes = 0;  // llama-bench's model_size
    uint64_t params = 0;
    std::string dominantType;  // the tensor type holding the most parameters
};

Result<FileFacts> readFileFacts(const std::string& path) {
    Result<inference::GgufFile> file = inference::GgufFile::open(path);
    if (!file)
        return file.error();
    FileFacts f;
    std::error_code ec;
    f.fileBytes = std::filesystem::file_size(path, ec);
    std::map<kernels::GgmlType, uint64_t> paramsByType;
    for (const inference::GgufTensorInfo& t : file->tensors()) {
        f.tensorBytes += t.nbytes;
        f.params += t.elementCount();
        paramsByType[t.type] += t.elementCount();
    }
    auto top = std::max_element(paramsByType.begin(), paramsByType.end(),
                                [](const auto& a, const auto& b) { return a.second < b.second; });
    f.dominantType = top == paramsByType.end() ? "none" : kernels::typeName(top->first);
    return f;
}

struct TestSpec {
    int nPrompt = 0;
    int nGen = 0;
    int depth = 0;

    std::string name() const {
        std::string s = nPrompt > 0 ? "pp" + std::to_string(nPrompt) : "tg" + std::to_string(nGen);
        return depth > 0 ? s + "@d" + std::to_string(depth) : s;
    }
};

struct ThroughputOptions {
    std::vector<int> prompts{512};
    std::vector<int> gens{128};
    std::vector<int> depths{0};
    int reps = 5;
    int chunk = 2048;
    inference::BackendKind backend = inference::BackendKind::Auto;
    int threads = 0;
};

std::vector<int32_t> randomTokens(std::mt19937_64& rng, int n, int nVocab) {
    std::uniform_int_distribution<int32_t> dist(0, nVocab - 1);
    std::vector<int32_t> out(static_cast<size_t>(n));
    for (int32_t& t : out)
        t = dist(rng);
    return out;
}

// One forward over `tokens` (last-token logits only), waiting for the device through logits().
Status forwardSynced(inference::BackendContext& ctx, std::span<const int32_t> tokens, int nLayers) {
    RC_TRY(inference::forwardAll(ctx, inference::ForwardBatch{tokens, false, false}, nLayers));
    Result<std::span<const float>> logits = ctx.logits();
    if (!logits)
        return logits.error();
    return {};
}

// Empties the cache and fills it with `depth` random tokens in chunks.
Status fillToDepth(inference::BackendContext& ctx, int depth, int chunk, int nLayers, int nVocab) {
    RC_TRY(ctx.keepRounds(0));
    RC_TRY(ctx.beginRound());
    std::mt19937_64 rng(kSeed);
    const std::vector<int32_t> tokens = randomTokens(rng, depth, nVocab);
    for (int start = 0; start < depth; start += chunk) {
        const int n = std::min(chunk, depth - start);
        RC_TRY(forwardSynced(ctx, std::span(tokens).subspan(static_cast<size_t>(start), static_cast<size_t>(n)),
                             nLayers));
    }
    return {};
}

// One run of `test` from the current depth; returns seconds and trims the cache back.
Result<double> runOnce(inference::BackendContext& ctx, const TestSpec& test, int nLayers, int nVocab,
                       std::mt19937_64& rng) {
    const int n = test.nPrompt > 0 ? test.nPrompt : test.nGen;
    const std::vector<int32_t> tokens = randomTokens(rng, n, nVocab);
    const Clock::time_point t0 = Clock::now();
    if (test.nPrompt > 0) {
        RC_TRY(forwardSynced(ctx, tokens, nLayers));
    } else {
        for (int i = 0; i < n; ++i)
            RC_TRY(forwardSynced(ctx, std::span(tokens).subspan(static_cast<size_t>(i), 1), nLayers));
    }
    const double seconds = secondsSince(t0);
    RC_TRY(ctx.dropTail(n));
    return seconds;
}

// Device memory in bytes; null where the backend cannot tell (the CPU backend reports no device).
json bytesOrNull(bool known, uint64_t bytes) {
    return known ? json(bytes) : json(nullptr);
}

Result<std::vector<json>> benchModel(const std::string& path, const ThroughputOptions& o) {
    Result<FileFacts> facts = readFileFacts(path);
    if (!facts)
        return facts.error();
    int maxDepth = 0;
    int maxRun = 1;
    for (int d : o.depths)
        maxDepth = std::max(maxDepth, d);
    for (int n : o.prompts)
        maxRun = std::max(maxRun, n);
    for (int n : o.gens)
        maxRun = std::max(maxRun, n);
    const int capacity = maxDepth + maxRun;

    Result<std::unique_ptr<inference::Model>> model = loadModel(path, o.backend, o.threads, capacity);
    if (!model)
        return model.error();
    const inference::Backend& backend = (*model)->backend();
    const inference::ModelConfig& config = (*model)->config();
    // A CPU run measured in place of an explicitly requested GPU would be silently misleading.
    const std::string& fallback = (*model)->backendInfo().fallbackReason;
    if (!fallback.empty() && o.backend == inference::BackendKind::Cuda)
        return roundchat::makeError(roundchat::ErrorCode::NoGpu, "no CUDA backend: " + fallback);
    if (!fallback.empty())
        std::fprintf(stderr, "roundchat-bench: %s runs on the CPU: %s\n", path.c_str(), fallback.c_str());

    // The context's allocation (KV cache for `capacity` tokens + workspaces) is the drop in free device memory.
    const inference::BackendInfo before = backend.info();
    Result<std::unique_ptr<inference::BackendContext>> ctx = backend.createContext(capacity);
    if (!ctx)
        return ctx.error();
    const bool onDevice = before.kind == inference::BackendKind::Cuda && before.deviceTotalBytes > 0;

    std::vector<json> records;
    for (int depth : o.depths) {
        std::fprintf(stderr, "roundchat-bench: %s: filling the cache to %d tokens\n", path.c_str(), depth);
        RC_TRY(fillToDepth(**ctx, depth, std::max(1, o.chunk), config.nLayers, config.nVocab));
        std::vector<TestSpec> tests;
        for (int p : o.prompts)
            if (p > 0)
                tests.push_back({p, 0, depth});
        for (int n : o.gens)
            if (n > 0)
                tests.push_back({0, n, depth});
        for (const TestSpec& test : tests) {
            std::mt19937_64 rng(kSeed + 1);
            Result<double> warm = runOnce(**ctx, test, config.nLayers, config.nVocab, rng);
            if (!warm)
                return warm.error();
            std::vector<double> samplesNs;
            std::vector<double> samplesTs;
            const int n = test.nPrompt + test.nGen;
            for (int r = 0; r < o.reps; ++r) {
                Result<double> seconds = runOnce(**ctx, test, config.nLayers, config.nVocab, rng);
                if (!seconds)
                    return seconds.error();
                samplesNs.push_back(*seconds * 1e9);
                samplesTs.push_back(n / *seconds);
            }
            const inference::BackendInfo after = backend.info();
            json r;
            r["model_filename"] = path;
            r["model_size"] = facts->tensorBytes;
            r["file_size"] = facts->fileBytes;
            r["model_type"] = facts->dominantType;
            r["n_params"] = facts->params;
            r["backends"] = backendName(after.kind);
            r["device"] = after.deviceName;
            r["n_threads"] = o.threads;
            r["test"] = test.name();
            r["n_prompt"] = test.nPrompt;
            r["n_gen"] = test.nGen;
            r["n_depth"] = test.depth;
            r["n_batch"] = o.chunk;
            r["avg_ns"] = mean(samplesNs);
            r["stddev_ns"] = stddev(samplesNs);
            r["avg_ts"] = mean(samplesTs);
            r["stddev_ts"] = stddev(samplesTs);
            r["samples_ns"] = samplesNs;
            r["samples_ts"] = samplesTs;
            // kv_bytes: committed K/V at the test's depth (the run's own tokens were trimmed). context_bytes: free
            // device memory lost since just before createContext: the KV cache for every position of `capacity`
            // plus the workspaces grown by the tests so far. device_used_bytes: all device memory in use after the
            // test, other processes included. The CPU backend reports no device memory: these two are null there.
            r["vram"] = {
                {"weight_bytes", after.weightBytes},
                {"kv_bytes", (*ctx)->kvBytes(0, config.nLayers)},
                {"context_capacity", capacity},
                {"context_bytes", bytesOrNull(onDevice, before.deviceFreeBytes - std::min(before.deviceFreeBytes,
                                                                                           after.deviceFreeBytes))},
                {"device_used_bytes", bytesOrNull(onDevice, after.deviceTotalBytes - after.deviceFreeBytes)},
                {"device_total_bytes", bytesOrNull(onDevice, after.deviceTotalBytes)},
            };
            std::fprintf(stderr, "roundchat-bench: %s %s: %.2f ± %.2f t/s\n", path.c_str(), test.name().c_str(),
                         r["avg_ts"].get<double>(), r["stddev_ts"].get<double>());
            records.push_back(std::move(r));
        }
    }
    return records;
}

std::string humanBytes(double bytes) {
    char buf[32];
    if (bytes >= 1024.0 * 1024 * 1024)
        std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / (1024.0 * 1024 * 1024));
    else
        std::snprintf(buf, sizeof buf, "%.2f MiB", bytes / (1024.0 * 1024));
    return buf;
}

void printMarkdown(const std::vector<json>& records) {
    std::printf("| model | type | size | params | backend | device | test | t/s |\n");
    std::printf("| --- | --- | ---: | ---: | --- | --- | --- | ---: |\n");
    for (const json& r : records) {
        const std::string file = std::filesystem::path(r["model_filename"].get<std::string>()).filename().string();
        std::printf("| %s | %s | %s | %.2f M | %s | %s | %s | %.2f ± %.2f |\n", file.c_str(),
                    r["model_type"].get<std::string>().c_str(), humanBytes(r["model_size"].get<double>()).c_str(),
                    r["n_params"].get<double>() / 1e6, r["backends"].get<std::string>().c_str(),
                    r["device"].get<std::string>().c_str(), r["test"].get<std::string>().c_str(),
                    r["avg_ts"].get<double>(), r["stddev_ts"].get<double>());
    }
}

int runThroughput(const Args& a) {
    ThroughputOptions o;
    if (a.models.empty())
        return usageError("at least one -m MODEL is required");
    if (!readList(a, "-p", o.prompts) || !readList(a, "-n", o.gens) || !readList(a, "-d", o.depths) ||
        !readInt(a, "-r", o.reps) || !readInt(a, "--chunk", o.chunk) || !readInt(a, "--threads", o.threads))
        return usageError("malformed number");
    std::optional<inference::BackendKind> backend = parseBackend(flagOr(a, "--backend", "auto"));
    const std::string format = flagOr(a, "-o", "md");
    if (!backend || (format != "json" && format != "md"))
        return usageError("bad --backend or -o");
    o.backend = *backend;
    if (std::string bad = unknownFlag(a, {"-p", "-n", "-d", "-r", "--chunk", "--threads", "--backend", "-o"});
        !bad.empty())
        return usageError("unknown flag " + bad);

    std::vector<json> all;
    for (const std::string& path : a.models) {
        Result<std::vector<json>> records = benchModel(path, o);
        if (!records)
            return fail(path, records.error());
        all.insert(all.end(), records->begin(), records->end());
    }
    if (format == "json")
        std::printf("%s\n", json(all).dump(2).c_str());
    else
        printMarkdown(all);
    return 0;
}

// ---- rounds: Round Attention against full KV ------------------------------------------------------------------------

int runRounds(const Args& a) {
    if (a.models.size() != 1)
        return usageError("rounds takes exactly one -m MODEL");
    int conversations = 20;
    int threads = 0;
    if (!readInt(a, "--conversations", conversations) || !readInt(a, "--threads", threads))
        return usageError("malformed number");
    const std::string mode = flagOr(a, "--mode", "story");
    std::optional<inference::BackendKind> backend = parseBackend(flagOr(a, "--backend", "auto"));
    if (!backend || (mode != "story" && mode != "needle") || flagOr(a, "-o", "json") != "json")
        return usageError("bad --mode, --backend or -o (rounds prints JSON only)");
    if (std::string bad = unknownFlag(a, {"--conversations", "--threads", "--mode", "--backend", "-o", "--compare",
                                          "--sharing", "--sharing-sink", "--sharing-window", "--sharing-groups",
                                          "--sharing-js", "--sharing-variant"});
        !bad.empty())
        return usageError("unknown flag " + bad);
    inference::RoundQualityOptions quality;
    inference::KvSharingOptions& sharing = quality.rounds.sharing;
    const std::string compare = flagOr(a, "--compare", "round");
    const std::string variant = flagOr(a, "--sharing-variant", "scores");
    const std::string sharingFlag = flagOr(a, "--sharing", "off");
    const std::string maxJsText = flagOr(a, "--sharing-js", "0.1");
    char* maxJsEnd = nullptr;
    const float maxJs = std::strtof(maxJsText.c_str(), &maxJsEnd);
    if (maxJsEnd == maxJsText.c_str() || *maxJsEnd != '\0' || (compare != "round" && compare != "full") ||
        (variant != "scores" && variant != "keys") || (sharingFlag != "on" && sharingFlag != "off") ||
        !readInt(a, "--sharing-sink", sharing.sinkTokens) ||
        !readInt(a, "--sharing-window", sharing.windowTokens) || !readList(a, "--sharing-groups", sharing.groupStarts))
        return usageError("bad --compare, --sharing, --sharing-variant or a malformed --sharing-* number");
    quality.comparedMode = compare == "full" ? inference::KvMode::FullKv : inference::KvMode::RoundAttention;
    sharing.enabled = sharingFlag == "on";
    sharing.variant =
        variant == "keys" ? inference::KvSharingVariant::SharedKeys : inference::KvSharingVariant::SharedScores;

    Result<std::unique_ptr<inference::Model>> model = loadModel(a.models[0], *backend, threads);
    if (!model)
        return fail(a.models[0], model.error());
    inference::StoryGenOptions gen;
    gen.conversations = conversations;
    // Leave room for the greedy continuation compared after the final question.
    gen.maxTokens = std::min(gen.maxTokens, (*model)->contextLength() - quality.greedyTokens - 4);
    Result<std::vector<inference::BenchConversation>> convs =
        mode == "story" ? inference::makeStoryConversations((*model)->tokenizer(), gen)
                        : inference::makeNeedleConversations((*model)->tokenizer(), gen);
    if (!convs)
        return fail("conversations", convs.error());
    json sharingJson = nullptr;
    if (sharing.enabled) {
        sharingJson = {{"sink_tokens", sharing.sinkTokens},
                       {"window_tokens", sharing.windowTokens},
                       {"variant", variant}};
        if (sharing.groupStarts.empty()) {
            // Calibrated on other conversations than the measured ones (another seed).
            inference::StoryGenOptions calGen = gen;
            calGen.seed = gen.seed + 1000;
            Result<std::vector<inference::BenchConversation>> cal =
                inference::makeStoryConversations((*model)->tokenizer(), calGen);
            if (!cal)
                return fail("calibration conversations", cal.error());
            std::vector<inference::TokenConversation> calConvs;
            for (inference::BenchConversation& c : *cal) calConvs.push_back(std::move(c.rounds));
            inference::KvSharingCalibrationOptions co;
            co.sinkTokens = sharing.sinkTokens;
            co.windowTokens = sharing.windowTokens;
            co.maxJs = maxJs;
            Result<inference::KvSharingCalibration> groups = inference::calibrateKvSharing(**model, calConvs, co);
            if (!groups)
                return fail("KV sharing calibration", groups.error());
            sharing.groupStarts = groups->groupStarts;
            sharingJson["max_js"] = maxJs;
            sharingJson["calibration_samples"] = groups->samples;
        }
        sharingJson["group_starts"] = sharing.groupStarts;
    }
    const Clock::time_point t0 = Clock::now();
    Result<inference::RoundQualityReport> r = inference::compareFullVsRound(**model, *convs, quality);
    if (!r)
        return fail("compareFullVsRound", r.error());
    const json out = {
        {"model_filename", a.models[0]},
        {"backends", backendName((*model)->backendInfo().kind)},
        {"mode", mode},
        {"seconds", secondsSince(t0)},
        {"conversations", r->conversations},
        {"turns", r->turns},
        {"positions", r->positions},
        {"top1_agreement", r->top1Agreement},
        {"mean_kl", r->meanKl},
        {"max_kl", r->maxKl},
        {"greedy_prefix_agreement", r->greedyPrefixAgreement},
        {"greedy_exact_rate", r->greedyExactRate},
        {"needle_cases", r->needleCases},
        {"needle_recalled", r->needleRecalled},
        {"needle_recall_rate", r->needleRecallRate},
        {"needle_loglik_full", r->needleLogLikFull},
        {"needle_loglik_round", r->needleLogLikRound},
        {"mean_recalled_rounds", r->meanRecalledRounds},
        {"mean_past_rounds", r->meanPastRounds},
        {"mean_vram_share", r->meanVramShare},
        {"flat_fallbacks", r->flatFallbacks},
        {"compared_mode", compare},
        {"kv_sharing", sharingJson},
    };
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
}

// ---- recall: answer accuracy on recall conversations, full KV against Round Attention ---------------------------------

// One JSONL file of tools/train_recall_model/data.py (schema in its README), at most `limit` cases (0: all).
Result<std::vector<inference::RecallCase>> readRecallCases(const std::string& path, int limit) {
    std::ifstream in(path);
    if (!in)
        return roundchat::Error{roundchat::ErrorCode::FileNotFound, "cannot open " + path};
    std::vector<inference::RecallCase> cases;
    std::string line;
    for (int lineNo = 1; std::getline(in, line) && (limit == 0 || static_cast<int>(cases.size()) < limit); ++lineNo) {
        if (line.empty())
            continue;
        const json j = json::parse(line, nullptr, false);
        if (j.is_discarded() || !j.is_object())
            return roundchat::Error{roundchat::ErrorCode::CorruptFile,
                                    path + ":" + std::to_string(lineNo) + ": not a JSON object"};
        try {
            inference::RecallCase c;
            c.depth = j.at("depth").get<int>();
            c.system = j.at("system").get<std::string>();
            for (const json& r : j.at("rounds"))
                c.rounds.push_back({r.at("user").get<std::string>(), r.at("assistant").get<std::string>()});
            c.question = j.at("question").get<std::string>();
            c.answer = j.at("answer").get<std::string>();
            c.factRound = j.at("fact_round").get<int>();
            cases.push_back(std::move(c));
        } catch (const json::exception& e) {
            return roundchat::Error{roundchat::ErrorCode::CorruptFile,
                                    path + ":" + std::to_string(lineNo) + ": " + e.what()};
        }
    }
    return cases;
}

json modeJson(const inference::RecallModeStats& s) {
    return {{"cases", s.cases},
            {"exact", s.exact},
            {"accuracy", s.accuracy()},
            {"fact_recall_rate", s.factRecallRate()},
            {"mean_kv_vram_share", s.meanKvVramShare()},
            {"mean_recalled_rounds", s.cases ? s.recalledRoundsSum / s.cases : 0.0},
            {"mean_first_token_ms", s.cases ? s.firstTokenMsSum / s.cases : 0.0}};
}

int runRecall(const Args& a) {
    if (a.models.size() != 1)
        return usageError("recall takes exactly one -m MODEL");
    int threads = 0, limit = 0, watershed = -1, maxRounds = inference::RoundAttentionOptions{}.maxRecalledRounds;
    if (!readInt(a, "--threads", threads) || !readInt(a, "--limit", limit) || !readInt(a, "--watershed", watershed) ||
        !readInt(a, "--max-rounds", maxRounds))
        return usageError("malformed number");
    std::optional<inference::BackendKind> backend = parseBackend(flagOr(a, "--backend", "auto"));
    const std::string data = flagOr(a, "--data", "");
    if (!backend || data.empty() || flagOr(a, "-o", "json") != "json")
        return usageError("recall needs --data FILE[,FILE...] and a valid --backend (JSON output only)");
    if (std::string bad = unknownFlag(a, {"--data", "--limit", "--threads", "--backend", "--watershed",
                                          "--max-rounds", "--recall-mass", "-o"});
        !bad.empty())
        return usageError("unknown flag " + bad);
    inference::RecallEvalOptions eval;
    eval.rounds.watershedLayer = watershed;
    eval.rounds.maxRecalledRounds = maxRounds;
    const std::string mass = flagOr(a, "--recall-mass", std::to_string(eval.rounds.recallMass));
    char* end = nullptr;
    eval.rounds.recallMass = std::strtof(mass.c_str(), &end);
    if (end == mass.c_str() || *end != '\0' || !(eval.rounds.recallMass > 0.0f && eval.rounds.recallMass <= 1.0f))
        return usageError("--recall-mass must be in (0, 1]");

    std::vector<inference::RecallCase> cases;
    for (size_t start = 0; start <= data.size();) {
        const size_t comma = std::min(data.find(',', start), data.size());
        Result<std::vector<inference::RecallCase>> some = readRecallCases(data.substr(start, comma - start), limit);
        if (!some)
            return fail("--data", some.error());
        cases.insert(cases.end(), some->begin(), some->end());
        start = comma + 1;
    }
    Result<std::unique_ptr<inference::Model>> model = loadModel(a.models[0], *backend, threads);
    if (!model)
        return fail(a.models[0], model.error());
    const Clock::time_point t0 = Clock::now();
    Result<std::vector<inference::RecallDepthReport>> r = inference::evaluateRecall(**model, cases, eval);
    if (!r)
        return fail("evaluateRecall", r.error());
    json depths = json::array();
    for (const inference::RecallDepthReport& d : *r)
        depths.push_back({{"depth", d.depth}, {"full_kv", modeJson(d.full)}, {"round_attention", modeJson(d.round)}});
    const json out = {{"model_filename", a.models[0]},
                      {"backends", backendName((*model)->backendInfo().kind)},
                      {"watershed_layer", watershed},
                      {"recall_mass", eval.rounds.recallMass},
                      {"max_recalled_rounds", eval.rounds.maxRecalledRounds},
                      {"seconds", secondsSince(t0)},
                      {"depths", depths}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
}

// ---- search: full-text search latency -----------------------------------------------------------------------------

// Pseudo-words from syllables, drawn with a skewed distribution so that some words are frequent and most are rare,
// as in chat text.
class WordSource {
public:
    explicit WordSource(std::mt19937_64& rng) : m_rng(rng) {
        static constexpr const char* kSyllables[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "be", "da",
                                                     "fu", "go", "hi", "ja", "pe", "qu", "ro", "ze", "wa", "xi"};
        std::uniform_int_distribution<int> syl(0, 19);
        std::uniform_int_distribution<int> len(1, 4);
        for (int i = 0; i < kWords; ++i) {
            std::string w;
            for (int s = len(m_rng); s > 0; --s)
                w += kSyllables[syl(m_rng)];
            m_words.push_back(std::move(w));
        }
    }

    const std::string& next() {
        // u^3 favours low indices: word 0 is far more frequent than word 4999.
        const double u = m_unit(m_rng);
        return m_words[static_cast<size_t>(u * u * u * kWords) % m_words.size()];
    }

private:
    static constexpr int kWords = 5000;
    std::mt19937_64& m_rng;
    std::uniform_real_distribution<double> m_unit{0.0, 1.0};
    std::vector<std::string> m_words;
};

Status fillStore(storage::ChatStore& store, int messages, WordSource& words, std::mt19937_64& rng) {
    constexpr int kMessagesPerConversation = 100;
    Result<storage::Transaction> tx = storage::Transaction::begin(store.database());
    if (!tx)
        return tx.error();
    std::uniform_int_distribution<int> wordCount(5, 60);
    int64_t conversation = 0;
    int64_t parent = 0;
    for (int i = 0; i < messages; ++i) {
        if (i % kMessagesPerConversation == 0) {
            storage::Conversation c;
            c.title = "Conversation " + std::to_string(i / kMessagesPerConversation);
            Result<int64_t> id = store.createConversation(c);
            if (!id)
                return id.error();
            conversation = *id;
            parent = 0;
        }
        storage::Message m;
        m.conversationId = conversation;
        m.parentId = parent;
        m.role = i % 2 == 0 ? storage::Role::User : storage::Role::Assistant;
        for (int w = wordCount(rng); w > 0; --w)
            m.text += words.next() + (w % 9 == 0 ? ". " : " ");
        Result<int64_t> id = store.appendMessage(m);
        if (!id)
            return id.error();
        parent = *id;
    }
    return tx->commit();
}

int runSearch(const Args& a) {
    int messages = 10000;
    int queries = 200;
    if (!a.models.empty() || !readInt(a, "--messages", messages) || !readInt(a, "--queries", queries) || queries < 1 ||
        flagOr(a, "-o", "json") != "json")
        return usageError("search takes --messages N, --queries N (>= 1) and prints JSON only");
    if (std::string bad = unknownFlag(a, {"--messages", "--queries", "-o"}); !bad.empty())
        return usageError("unknown flag " + bad);
    std::string dirTemplate = (std::filesystem::temp_directory_path() / "roundchat-bench-XXXXXX").string();
    if (mkdtemp(dirTemplate.data()) == nullptr)
        return usageError("cannot create a temporary directory");
    const std::filesystem::path dir = dirTemplate;

    json out;
    {
        Result<storage::Database> db = storage::Database::open((dir / "bench.sqlite").string());
        if (!db)
            return fail("open", db.error());
        storage::ChatStore store(*db);
        std::mt19937_64 rng(kSeed);
        WordSource words(rng);
        Clock::time_point t0 = Clock::now();
        if (Status st = fillStore(store, messages, words, rng); !st)
            return fail("fill", st.error());
        const double fillSeconds = secondsSince(t0);

        // Queries like a user types them: one or two words, the last possibly a prefix still being typed.
        std::vector<double> ms;
        uint64_t hits = 0;
        for (int q = 0; q < queries; ++q) {
            std::string query = words.next();
            if (q % 2 == 1)
                query += " " + words.next();
            if (q % 3 == 0 && query.size() > 3)
                query.resize(query.size() - 2);
            t0 = Clock::now();
            Result<std::vector<storage::SearchHit>> found = store.search(query);
            ms.push_back(secondsSince(t0) * 1e3);
            if (!found)
                return fail("search '" + query + "'", found.error());
            hits += found->size();
        }
        out = {
            {"messages", messages},   {"queries", queries},
            {"fill_seconds", fillSeconds},
            {"p50_ms", percentile(ms, 0.50)}, {"p95_ms", percentile(ms, 0.95)},
            {"max_ms", percentile(ms, 1.0)},  {"mean_ms", mean(ms)},
            {"mean_hits", static_cast<double>(hits) / queries},
        };
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
}

}  // namespace

int runRoundsGpu(int argc, char** argv);  // rounds_gpu.cpp

int main(int argc, char** argv) {
    if (argc >= 2 && (std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h")) {
        std::fputs(kUsage, stdout);
        return 0;
    }
    const std::string_view command = argc >= 2 ? argv[1] : "";
    if (command == "rounds-gpu")
        return runRoundsGpu(argc - 2, argv + 2);
    const bool sub = command == "rounds" || command == "recall" || command == "search";
    std::optional<Args> args = parseArgs(argc, argv, sub ? 2 : 1);
    if (!args)
        return usageError("expected -flag VALUE pairs");
    if (command == "rounds")
        return runRounds(*args);
    if (command == "recall")
        return runRecall(*args);
    if (command == "search")
        return runSearch(*args);
    return runThroughput(*args);
}
