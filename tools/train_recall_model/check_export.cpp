// Engine side of check_export.py: loads a GGUF through inference::Model, renders a conversation with the model's
// chat template, tokenizes it as the session does (special tokens parsed, BOS added) and runs the CPU forward pass.
// Usage: check_export MODEL.gguf MESSAGES.txt OUT_PREFIX
//   MESSAGES.txt: one message per line, "role<TAB>content"; the last line may be "generation_prompt".
//   Writes OUT_PREFIX.render.txt (template output), OUT_PREFIX.ids.txt (ids, space separated) and
//   OUT_PREFIX.logits.bin (float32, (n_tokens, n_vocab), row-major). Prints the end-of-turn markers.
// Built by check_export.py against a CPU build of the engine (it includes the internal inference/backend.h).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"
#include "inference/model.h"

using namespace inference;

namespace {

int fail(const std::string& what, const Error& e) {
    std::cerr << what << ": " << e.toString() << "\n";
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::cerr << "usage: check_export MODEL.gguf MESSAGES.txt OUT_PREFIX\n";
        return 2;
    }
    LoadOptions options;
    options.backend = BackendKind::Cpu;
    Result<std::unique_ptr<Model>> model = Model::load(argv[1], options);
    if (!model)
        return fail("load", model.error());
    const Model& m = **model;
    std::cout << "loaded: vocab " << m.config().nVocab << ", layers " << m.config().nLayers << ", template "
              << m.chatTemplate().name << (m.chatTemplate().isFallback ? " (FALLBACK)" : "") << "\n";
    for (const std::string& s : m.endOfTurnStrings()) std::cout << "end-of-turn: " << s << "\n";

    ChatRenderInput input = m.renderInput();
    std::ifstream in(argv[2]);
    for (std::string line; std::getline(in, line);) {
        if (line == "generation_prompt") {
            input.addGenerationPrompt = true;
            continue;
        }
        const size_t tab = line.find('\t');
        input.messages.push_back({line.substr(0, tab), line.substr(tab + 1)});
    }
    Result<std::string> text = m.chatTemplate().tmpl.render(input);
    if (!text)
        return fail("render", text.error());
    const std::string prefix = argv[3];
    std::ofstream(prefix + ".render.txt", std::ios::binary) << *text;

    const Tokenizer& tok = m.tokenizer();
    Result<std::vector<int32_t>> ids = tok.encode(*text, {.addBos = true, .parseSpecial = true});
    if (!ids)
        return fail("encode", ids.error());
    std::ofstream idsOut(prefix + ".ids.txt");
    for (int32_t id : *ids) idsOut << id << " ";

    Result<std::unique_ptr<BackendContext>> ctx = m.backend().createContext(static_cast<int>(ids->size()) + 8);
    if (!ctx)
        return fail("context", ctx.error());
    if (Status st = (*ctx)->beginRound(); !st)
        return fail("beginRound", st.error());
    const ForwardBatch batch{.tokens = *ids, .allLogits = true};
    if (Status st = forwardAll(**ctx, batch, m.config().nLayers); !st)
        return fail("forward", st.error());
    Result<std::span<const float>> logits = (*ctx)->logits();
    if (!logits)
        return fail("logits", logits.error());
    std::ofstream(prefix + ".logits.bin", std::ios::binary)
        .write(reinterpret_cast<const char*>(logits->data()), static_cast<std::streamsize>(logits->size_bytes()));
    std::cout << "tokens " << ids->size() << ", logits " << logits->size() << "\n";
    return 0;
}
