// roundchat-cli: raw completion of a prompt (one-shot) or an interactive chat on stdin/stdout.
//   roundchat-cli --model M.gguf --prompt "Once upon a time" [-n 64] [--json] [sampling flags]
//   roundchat-cli chat --model M.gguf [--system "..."] [sampling flags]
//   roundchat-cli calibrate --model M.gguf [--out DIR] [--data CHATS.jsonl] [--sharing-sink N] [--sharing-window N]
//                           [--sharing-js T]
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "inference/calibration.h"
#include "inference/completion.h"
#include "inference/model.h"
#include "inference/round_bench.h"
#include "inference/session.h"

namespace {

using namespace inference;

constexpr const char* kUsage = R"(Usage:
  roundchat-cli --model M.gguf --prompt TEXT [options]     raw completion (no chat template, BOS added)
  roundchat-cli chat --model M.gguf [--system TEXT] [options]  interactive chat on stdin (EOF ends)
  roundchat-cli calibrate --model M.gguf [--out DIR]       choose the Round Attention watershed layer L_w and
                                                           store it in DIR/<fingerprint>.json (default DIR: .);
                                                           then group layers for inter-layer KV sharing and store
                                                           the groups in DIR/<fingerprint>.kv_sharing.json
  calibrate options: --data FILE: sample chats, one JSON object per line {"system": ..., "rounds": [{"user": ...,
                     "assistant": ...}, ...]} (e.g. tools/train_recall_model/heldout/*.jsonl); without it, a few
                     built-in chats, too short to tell layers apart when a chat has more rounds than are recalled
                     --sharing-sink N (16), --sharing-window N (4080): the proximal tokens; --sharing-js T (0.1):
                     a layer joins a group while its normalised Jensen-Shannon divergence to the group's first
                     layer's attention over distant tokens is at most T
Options:
  -n N                  tokens to generate (default 64; chat: 512)
  --temp T              temperature, <= 0 is greedy (default 0.8)
  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --seed N (0: random)
  --threads N           CPU threads (default: all cores)
  --ctx N               context length in tokens (default: the model's)
  --backend auto|cpu|cuda
  --json                one-shot: print {"prompt_ids","ids","text","tokens_per_second"} instead of the text
)";

enum class Command { Complete, Chat, Calibrate };

struct CliOptions {
    Command command = Command::Complete;
    std::string outDir = ".";
    std::string calibrationData;  // JSONL of sample chats for calibrate
    KvSharingCalibrationOptions sharing;
    std::string model;
    std::optional<std::string> prompt;
    std::string system;
    int maxTokens = -1;
    bool json = false;
    SamplerParams sampler;
    LoadOptions load;
};

template <typename T>
bool parseNumber(std::string_view s, T& out) {
    if constexpr (std::is_floating_point_v<T>) {
        try {
            size_t used = 0;
            out = static_cast<T>(std::stod(std::string(s), &used));
            return used == s.size();
        } catch (...) {
            return false;
        }
    } else {
        const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc() && end == s.data() + s.size();
    }
}

// Returns an error message, or nothing on success.
std::optional<std::string> parseArgs(int argc, char** argv, CliOptions& o) {
    int i = 1;
    if (i < argc && std::string_view(argv[i]) == "chat") {
        o.command = Command::Chat;
        ++i;
    } else if (i < argc && std::string_view(argv[i]) == "calibrate") {
        o.command = Command::Calibrate;
        ++i;
    }
    for (; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--json") {
            o.json = true;
            continue;
        }
        if (arg == "-h" || arg == "--help")
            return std::string();
        if (i + 1 >= argc)
            return "missing value after " + std::string(arg);
        const std::string_view val = argv[++i];
        bool ok = true;
        if (arg == "--model" || arg == "-m")
            o.model = val;
        else if (arg == "--prompt" || arg == "-p")
            o.prompt = std::string(val);
        else if (arg == "--system")
            o.system = val;
        else if (arg == "--out")
            o.outDir = val;
        else if (arg == "--data")
            o.calibrationData = val;
        else if (arg == "--sharing-sink")
            ok = parseNumber(val, o.sharing.sinkTokens);
        else if (arg == "--sharing-window")
            ok = parseNumber(val, o.sharing.windowTokens);
        else if (arg == "--sharing-js")
            ok = parseNumber(val, o.sharing.maxJs);
        else if (arg == "-n")
            ok = parseNumber(val, o.maxTokens);
        else if (arg == "--temp")
            ok = parseNumber(val, o.sampler.temperature);
        else if (arg == "--top-k")
            ok = parseNumber(val, o.sampler.topK);
        else if (arg == "--top-p")
            ok = parseNumber(val, o.sampler.topP);
        else if (arg == "--min-p")
            ok = parseNumber(val, o.sampler.minP);
        else if (arg == "--repeat-penalty")
            ok = parseNumber(val, o.sampler.repeatPenalty);
        else if (arg == "--seed")
            ok = parseNumber(val, o.sampler.seed);
        else if (arg == "--threads")
            ok = parseNumber(val, o.load.threads);
        else if (arg == "--ctx")
            ok = parseNumber(val, o.load.contextLength);
        else if (arg == "--backend") {
            if (val == "auto")
                o.load.backend = BackendKind::Auto;
            else if (val == "cpu")
                o.load.backend = BackendKind::Cpu;
            else if (val == "cuda")
                o.load.backend = BackendKind::Cuda;
            else
                ok = false;
        } else
            return "unknown option " + std::string(arg);
        if (!ok)
            return "invalid value '" + std::string(val) + "' for " + std::string(arg);
    }
    if (o.model.empty())
        return std::string("--model is required");
    if (o.command == Command::Complete && !o.prompt)
        return std::string("--prompt is required (or use the 'chat' command)");
    return std::nullopt;
}

int fail(const std::string& what, const Error& error) {
    std::cerr << "roundchat-cli: " << what << ": " << error.toString() << "\n";
    return 1;
}

bool printPiece(std::string_view piece) {
    std::cout << piece << std::flush;
    return true;
}

int runCompletion(const Model& model, const CliOptions& o) {
    CompletionOptions options;
    options.sampler = o.sampler;
    options.maxNewTokens = o.maxTokens >= 0 ? o.maxTokens : 64;
    options.contextLength = o.load.contextLength;
    if (!o.json)
        std::cout << *o.prompt << std::flush;
    Result<CompletionResult> r = complete(model, *o.prompt, options, o.json ? TokenCallback{} : printPiece);
    if (!r)
        return fail("generation failed", r.error());
    if (o.json) {
        nlohmann::json j;
        j["prompt_ids"] = r->promptTokens;
        j["ids"] = r->tokens;
        j["text"] = r->text;
        j["tokens_per_second"] = r->tokensPerSecond;
        std::cout << j.dump() << "\n";
    } else {
        std::cout << "\n";
        std::cerr << r->tokens.size() << " tokens, prefill " << r->prefillMs << " ms, " << r->tokensPerSecond
                  << " tokens/s\n";
    }
    return 0;
}

void printStats(const Session& session, const GenerationResult* last) {
    const ContextUsage usage = session.contextUsage();
    std::cout << "[context " << usage.usedTokens << "/" << usage.contextLength << " tokens, " << session.rounds().size()
              << " rounds";
    if (last)
        std::cout << "; last answer: " << last->tokens.size() << " tokens, prefill " << last->promptTokens
                  << " tokens in " << last->prefillMs << " ms, " << last->tokensPerSecond << " tokens/s";
    std::cout << "]\n";
}

int runChat(const Model& model, const CliOptions& o) {
    SessionOptions options;
    options.systemPrompt = o.system;
    options.sampler = o.sampler;
    if (o.maxTokens >= 0)
        options.maxNewTokens = o.maxTokens;
    Result<std::unique_ptr<Session>> session = Session::create(model, options);
    if (!session)
        return fail("cannot start a chat", session.error());
    if (!model.chatTemplate().notice.empty())
        std::cerr << model.chatTemplate().notice << "\n";
    std::cerr << "Chatting with " << model.name() << " on " << model.backendInfo().deviceName
              << ". Type /help for commands.\n";
    std::optional<GenerationResult> last;
    std::string line;
    while (std::cout << "> " << std::flush, std::getline(std::cin, line)) {
        if (line.empty())
            continue;
        Result<GenerationResult> r = makeError(ErrorCode::InvalidArgument, "");
        if (line == "/quit")
            break;
        if (line == "/help") {
            std::cout << "/help  this text\n/quit  leave\n/regen answer the last message again\n"
                         "/reset forget the conversation\n/stats context use and speed\n";
            continue;
        }
        if (line == "/stats") {
            printStats(**session, last ? &*last : nullptr);
            continue;
        }
        if (line == "/reset") {
            if (Status st = (*session)->truncate(0); !st)
                return fail("reset failed", st.error());
            last.reset();
            std::cout << "[conversation cleared]\n";
            continue;
        }
        if (line == "/regen")
            r = (*session)->regenerate(printPiece);
        else if (line[0] == '/') {
            std::cout << "unknown command " << line << " (try /help)\n";
            continue;
        } else
            r = (*session)->send(line, printPiece);
        std::cout << "\n";
        if (!r) {
            // Recoverable: e.g. a full context. Say what to do and keep the chat open.
            std::cerr << "error: " << r.error().toString() << "\n";
            if (r.error().code == ErrorCode::ContextFull)
                std::cerr << "The context is full: /reset starts over.\n";
            continue;
        }
        if (r->stopReason == StopReason::ContextFull)
            std::cerr << "[stopped: the context is full; /reset starts over]\n";
        last = std::move(*r);
    }
    return 0;
}

// Generic multi-round chats for models with a real context; each round is rendered through the model's chat
// template (the text a session would feed), one {question, answer} text per round.
constexpr size_t kMaxCalibrationChats = 24;  // from --data: enough questions, bounded time
constexpr const char* kGenericChats[][8] = {
    {"I am planning a trip to Lisbon in May.", "May is a good month: warm, not crowded yet.",
     "What should I pack?", "Light clothes, a jacket for the evenings and walking shoes.",
     "Which museums are worth it?", "The Gulbenkian and the tile museum are the classic picks.",
     "And where can I eat fish?", "Try the small places around the Cais do Sodre market."},
    {"My tomato plants have yellow leaves.", "Often that means overwatering or too little nitrogen.",
     "I water them every day.", "Water deeply twice a week instead and let the soil dry between.",
     "Should I use fertilizer?", "A balanced one every two weeks helps while they set fruit.",
     "How tall will they grow?", "Indeterminate kinds can reach two meters, so stake them early."},
    {"Explain what a hash map is.", "It stores key-value pairs in buckets chosen by hashing the key.",
     "Why is lookup fast?", "The hash points straight to a bucket, so a lookup is constant time on average.",
     "What happens on collisions?", "Entries share a bucket in a list, or probe for the next free slot.",
     "When should I use a tree instead?", "When you need keys in sorted order or guaranteed worst-case time."},
};

struct TextChat {
    std::string system;
    std::vector<std::pair<std::string, std::string>> rounds;  // user, assistant
};

// Sample chats from a JSONL file (see --data), at most `limit`.
Result<std::vector<TextChat>> readChats(const std::string& path, size_t limit) {
    std::ifstream in(path);
    if (!in)
        return makeError(ErrorCode::FileNotFound, "cannot open " + path);
    std::vector<TextChat> chats;
    std::string line;
    for (int lineNo = 1; chats.size() < limit && std::getline(in, line); ++lineNo) {
        const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        TextChat chat;
        const bool ok = j.is_object() && j.contains("system") && j["system"].is_string() && j.contains("rounds") &&
                        j["rounds"].is_array();
        if (ok) {
            chat.system = j["system"].get<std::string>();
            for (const nlohmann::json& r : j["rounds"]) {
                if (!r.is_object() || !r.contains("user") || !r["user"].is_string() || !r.contains("assistant") ||
                    !r["assistant"].is_string())
                    return makeError(ErrorCode::CorruptFile, path + ":" + std::to_string(lineNo) + ": bad round");
                chat.rounds.emplace_back(r["user"].get<std::string>(), r["assistant"].get<std::string>());
            }
        }
        if (!ok)
            return makeError(ErrorCode::CorruptFile,
                             path + ":" + std::to_string(lineNo) + ": expected {\"system\": ..., \"rounds\": [...]}");
        chats.push_back(std::move(chat));
    }
    return chats;
}

// One text round rendered through the template: the text between the conversation rendered before it and after it.
Result<TokenConversation> renderChat(const Model& model, const TextChat& chat) {
    ChatRenderInput input = model.renderInput();
    auto render = [&](bool addGenerationPrompt) {
        input.addGenerationPrompt = addGenerationPrompt;
        return model.chatTemplate().tmpl.render(input);
    };
    const Tokenizer& tok = model.tokenizer();
    auto encode = [&](const std::string& text, bool bos) {
        return tok.encode(text, EncodeOptions{bos && tok.addBosByDefault(), true});
    };
    TokenConversation conv;
    input.messages.push_back({"system", chat.system});
    Result<std::string> before = render(false);
    if (!before)
        return before.error();
    Result<std::vector<int32_t>> system = encode(*before, true);
    if (!system)
        return system.error();
    conv.push_back(TokenRound{std::move(*system), {}});
    for (const auto& [user, assistant] : chat.rounds) {
        input.messages.push_back({"user", user});
        Result<std::string> asked = render(true);
        input.messages.push_back({"assistant", assistant});
        Result<std::string> answered = render(false);
        if (!asked || !answered)
            return asked ? answered.error() : asked.error();
        if (!asked->starts_with(*before) || !answered->starts_with(*asked))
            return makeError(ErrorCode::TemplateError, "the chat template does not render rounds as prefixes");
        Result<std::vector<int32_t>> q = encode(asked->substr(before->size()), false);
        Result<std::vector<int32_t>> a = encode(answered->substr(asked->size()), false);
        if (!q || !a)
            return q ? a.error() : q.error();
        conv.push_back(TokenRound{std::move(*q), std::move(*a)});
        before = std::move(answered);
    }
    return conv;
}

// Layer groups for inter-layer KV sharing, from the same conversations. Conversations with no distant token for the
// window (a short-context model with the default window) are reported, not an error: the watershed is still saved.
int calibrateSharing(const Model& model, const std::vector<TokenConversation>& conversations, const CliOptions& o) {
    Result<KvSharingCalibration> s = calibrateKvSharing(model, conversations, o.sharing);
    if (!s) {
        if (s.error().code != ErrorCode::InvalidArgument)
            return fail("KV sharing calibration failed", s.error());
        std::cout << "KV sharing: not calibrated: " << s.error().detail << " (try a smaller --sharing-window)\n";
        return 0;
    }
    std::cout << "KV sharing: normalised JS between the layers' attention over distant tokens (" << s->samples
              << " query-head samples; sink " << s->sinkTokens << ", window " << s->windowTokens << ")\n";
    for (int a = 0; a < s->nLayers; ++a) {
        std::printf("%5d ", a);
        for (int b = 0; b < s->nLayers; ++b) std::printf(" %6.3f", s->js[static_cast<size_t>(a * s->nLayers + b)]);
        std::printf("\n");
    }
    std::cout << "groups (first layers) at JS <= " << s->maxJs << ":";
    for (int g : s->groupStarts) std::cout << " " << g;
    std::cout << "\n";
    if (Status st = saveKvSharingCalibration(o.outDir, model.fingerprint(), *s); !st)
        return fail("cannot save the KV sharing calibration", st.error());
    std::cout << "saved to " << o.outDir << "/" << model.fingerprint() << ".kv_sharing.json\n";
    return 0;
}

int runCalibrate(const Model& model, const CliOptions& o) {
    std::vector<TokenConversation> conversations;
    // Story conversations fit stories260K-sized models (512-token context, TinyStories vocabulary).
    if (model.contextLength() <= 1024) {
        Result<std::vector<BenchConversation>> stories = makeStoryConversations(model.tokenizer(), StoryGenOptions{});
        if (!stories)
            return fail("cannot make sample conversations", stories.error());
        for (BenchConversation& c : *stories) conversations.push_back(std::move(c.rounds));
    } else {
        std::vector<TextChat> chats;
        if (!o.calibrationData.empty()) {
            Result<std::vector<TextChat>> read = readChats(o.calibrationData, kMaxCalibrationChats);
            if (!read)
                return fail("cannot read the sample chats", read.error());
            chats = std::move(*read);
        } else {
            for (const auto& turns : kGenericChats) {
                TextChat& chat = chats.emplace_back();
                chat.system = "You are a helpful assistant.";
                for (size_t t = 0; t + 1 < std::size(turns); t += 2)
                    chat.rounds.emplace_back(turns[t], turns[t + 1]);
            }
        }
        for (const TextChat& chat : chats) {
            Result<TokenConversation> conv = renderChat(model, chat);
            if (!conv)
                return fail("cannot render sample conversations", conv.error());
            conversations.push_back(std::move(*conv));
        }
    }
    CalibrationOptions options;
    options.minPastRounds = 3;
    Result<CalibrationResult> r = calibrateWatershed(model, conversations, options);
    if (!r)
        return fail("calibration failed", r.error());
    std::cout << "layer  mean coverage  min coverage  mean JS\n";
    for (const LayerCalibration& l : r->layers)
        std::printf("%5d  %13.3f  %12.3f  %7.4f\n", l.layer, l.meanCoverage, l.minCoverage, l.meanJs);
    std::cout << "L_w = " << r->watershedLayer << " of " << r->nLayers << " layers (" << r->samples << " questions; "
              << (r->criterionMet ? "criterion met" : "no layer met the criterion") << "); KV saving bound (1 - L_w/L) "
              << 1.0 - static_cast<double>(r->watershedLayer) / r->nLayers << "\n";
    if (Status st = saveCalibration(o.outDir, model.fingerprint(), *r); !st)
        return fail("cannot save the calibration", st.error());
    std::cout << "saved to " << o.outDir << "/" << model.fingerprint() << ".json\n";
    return calibrateSharing(model, conversations, o);
}

}  // namespace

int main(int argc, char** argv) {
    CliOptions options;
    if (std::optional<std::string> err = parseArgs(argc, argv, options)) {
        if (!err->empty())
            std::cerr << "roundchat-cli: " << *err << "\n\n";
        std::cerr << kUsage;
        return err->empty() ? 0 : 2;
    }
    Result<std::unique_ptr<Model>> model = Model::load(options.model, options.load);
    if (!model)
        return fail("cannot load model '" + options.model + "'", model.error());
    if (!(*model)->backendInfo().fallbackReason.empty() && options.load.backend == BackendKind::Cuda)
        std::cerr << "CUDA unavailable (" << (*model)->backendInfo().fallbackReason << "); running on the CPU\n";
    switch (options.command) {
    case Command::Chat: return runChat(**model, options);
    case Command::Calibrate: return runCalibrate(**model, options);
    case Command::Complete: break;
    }
    return runCompletion(**model, options);
}
