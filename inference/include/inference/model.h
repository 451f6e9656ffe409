// A loaded model: the mapped GGUF file, its hyperparameters, tokenizer, chat template and the backend holding the
// weights. Sessions borrow a Model (const Model&), which must outlive them.
// Threading: load() may run on any thread; afterwards a Model is used by one thread (the inference worker).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "inference/chat_template.h"
#include "inference/gguf.h"
#include "inference/model_config.h"
#include "inference/session.h"
#include "inference/tokenizer.h"

namespace inference {

class Backend;  // internal (inference/backend.h)

class Model {
public:
    // Errors: FileNotFound, CorruptFile (parser, missing tensor or key, shapes), Unsupported (architecture, type),
    // Cancelled (progress callback returned false), OutOfMemory. Auto/Cuda fall back to the CPU with
    // backendInfo().fallbackReason set when no CUDA backend can be used.
    static Result<std::unique_ptr<Model>> load(const std::string& path, const LoadOptions& options);
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const { return m_config; }
    const Tokenizer& tokenizer() const { return m_tokenizer; }
    const TemplateChoice& chatTemplate() const { return m_template; }
    // The template's end-of-turn markers (e.g. "<|im_end|>"), used as stop strings by sessions.
    const std::vector<std::string>& endOfTurnStrings() const { return m_endOfTurn; }
    // ChatRenderInput with the model's special-token texts filled in (messages empty).
    ChatRenderInput renderInput() const;
    const std::string& fingerprint() const { return m_fingerprint; }
    // SHA-256 hex over the chat template in use and the vocabulary (tokenizer.ggml.*: pieces, scores, types, special
    // ids, flags): a different hash means the same conversation may become different tokens, so stored KV of the
    // same model may not be reused (storage::RestoreKey::templateHash).
    const std::string& templateHash() const { return m_templateHash; }
    const BackendInfo& backendInfo() const { return m_backendInfo; }
    // general.name, or the file name when the model has none.
    const std::string& name() const { return m_name; }
    // KV capacity in tokens for new sessions: LoadOptions::contextLength, or the trained context.
    int contextLength() const { return m_contextLength; }

    const Backend& backend() const { return *m_backend; }

private:
    Model(GgufFile file, ModelConfig config, Tokenizer tokenizer, TemplateChoice tmpl);

    GgufFile m_file;  // owns the mapping the weights point into
    ModelConfig m_config;
    ModelWeights m_weights;
    Tokenizer m_tokenizer;
    TemplateChoice m_template;
    std::vector<std::string> m_endOfTurn;
    std::string m_fingerprint;
    std::string m_templateHash;
    std::string m_name;
    int m_contextLength = 0;
    BackendInfo m_backendInfo;
    std::unique_ptr<Backend> m_backend;  // declared last: destroyed first, it borrows the members above
};

}  // namespace inference
