// roundchat-cli: raw completion of a prompt (one-shot) or an interactive chat on stdin/stdout.
//   roundchat-cli --model M.gguf --prompt "Once upon a time" [-n 64] [--json] [sampling flags]
//   roundchat-cli chat --model M.gguf [--system "..."] [sampling flags]
#include <charconv>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "inference/completion.h"
#include "inference/model.h"
#include "inference/session.h"

namespace {

using namespace inference;

constexpr const char* kUsage = R"(Usage:
  roundchat-cli --model M.gguf --prompt TEXT [options]     raw completion (no chat template, BOS added)
  roundchat-cli chat --model M.gguf [--system TEXT] [options]  interactive chat on stdin (EOF ends)
Options:
  -n N                  tokens to generate (default 64; chat: 512)
  --temp T              temperature, <= 0 is greedy (default 0.8)
  --top-k K  --top-p P  --min-p P  --repeat-penalty R  --seed N (0: random)
  --threads N           CPU threads (default: all cores)
  --ctx N               context length in tokens (default: the model's)
  --backend auto|cpu|cuda
  --json                one-shot: print {"prompt_ids","ids","text","tokens_per_second"} instead of the text
)";

struct CliOptions {
    bool chat = false;
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
        o.chat = true;
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
    if (!o.chat && !o.prompt)
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
    return options.chat ? runChat(**model, options) : runCompletion(**model, options);
}
