// roundchat-mkmodel: writes a random-weight llama model as GGUF, e.g.
//   roundchat-mkmodel --vocab ggml-vocab-llama-spm.gguf --out M.gguf --preset tinyllama --type q4_0
// A preset sets the shape; explicit shape flags override it whatever their order.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <sys/stat.h>

#include "inference/random_model.h"

namespace {

constexpr const char* kUsage =
    "usage: roundchat-mkmodel --vocab VOCAB.gguf --out MODEL.gguf [--preset tinyllama|llama2-7b]\n"
    "                         [--dim N] [--layers N] [--heads N] [--kv-heads N] [--ffn N] [--context N]\n"
    "                         [--type f32|f16|bf16|q8_0|q4_0|q4_k|q6_k] [--seed N] [--threads N] [--name NAME]\n";

std::optional<kernels::GgmlType> parseType(std::string_view s) {
    static const std::map<std::string_view, kernels::GgmlType> kTypes = {
        {"f32", kernels::GgmlType::F32},   {"f16", kernels::GgmlType::F16},   {"bf16", kernels::GgmlType::BF16},
        {"q8_0", kernels::GgmlType::Q8_0}, {"q4_0", kernels::GgmlType::Q4_0}, {"q4_k", kernels::GgmlType::Q4_K},
        {"q6_k", kernels::GgmlType::Q6_K},
    };
    auto it = kTypes.find(s);
    return it == kTypes.end() ? std::nullopt : std::optional(it->second);
}

bool parseNumber(std::string_view s, uint64_t& out) {
    if (s.empty())
        return false;
    char* end = nullptr;
    const std::string text(s);
    out = std::strtoull(text.c_str(), &end, 10);
    return *end == '\0' && text[0] != '-';
}

int fail(const std::string& message) {
    std::fprintf(stderr, "roundchat-mkmodel: %s\n%s", message.c_str(), kUsage);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> args;
    for (int i = 1; i < argc; ++i) {
        const std::string flag = argv[i];
        if (flag == "--help" || flag == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (!flag.starts_with("--") || i + 1 >= argc)
            return fail("expected --flag VALUE, got '" + flag + "'");
        args[flag.substr(2)] = argv[++i];
    }

    inference::RandomModelSpec spec;
    std::string outPath;
    if (auto it = args.find("preset"); it != args.end())
        if (inference::Status st = inference::applyLlamaPreset(it->second, spec); !st)
            return fail(st.error().detail);
    std::map<std::string, uint32_t*> shapeFlags = {
        {"dim", &spec.dim},          {"layers", &spec.layers}, {"heads", &spec.heads},
        {"kv-heads", &spec.kvHeads}, {"ffn", &spec.ffn},       {"context", &spec.context},
    };
    for (const auto& [flag, value] : args) {
        uint64_t number = 0;
        if (flag == "preset")
            continue;
        if (flag == "vocab") {
            spec.vocabPath = value;
        } else if (flag == "out") {
            outPath = value;
        } else if (flag == "name") {
            spec.name = value;
        } else if (flag == "type") {
            std::optional<kernels::GgmlType> type = parseType(value);
            if (!type)
                return fail("unknown --type '" + value + "'");
            spec.type = *type;
        } else if (!parseNumber(value, number)) {
            return fail("--" + flag + " needs a non-negative integer, got '" + value + "'");
        } else if (flag == "seed") {
            spec.seed = number;
        } else if (flag == "threads" && number <= 1024) {
            spec.threads = static_cast<unsigned>(number);
        } else if (shapeFlags.contains(flag) && number <= UINT32_MAX) {
            *shapeFlags[flag] = static_cast<uint32_t>(number);
        } else {
            return fail("unknown flag or value out of range: --" + flag + " " + value);
        }
    }
    if (spec.vocabPath.empty() || outPath.empty())
        return fail("--vocab and --out are required");

    const auto start = std::chrono::steady_clock::now();
    if (inference::Status st = inference::writeRandomLlamaModel(spec, outPath); !st) {
        std::fprintf(stderr, "roundchat-mkmodel: %s\n", st.error().toString().c_str());
        return 1;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    struct stat st {};
    stat(outPath.c_str(), &st);
    std::printf("wrote %s: %.1f MB in %.1f s (dim %u, layers %u, heads %u/%u, ffn %u, type %s)\n", outPath.c_str(),
                static_cast<double>(st.st_size) / 1e6, seconds, spec.dim, spec.layers, spec.heads, spec.kvHeads,
                spec.ffn, kernels::typeName(spec.type));
    return 0;
}
