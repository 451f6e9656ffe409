// Model loading: GGUF -> config -> weights -> tokenizer -> chat template -> backend (CUDA when asked and available).
#include "inference/model.h"

#include <filesystem>

#include "backend.h"
#include "cuda_plugin.h"
#include "sha256.h"

namespace inference {

namespace {

bool reportProgress(const LoadOptions& options, float value) {
    return !options.progress || options.progress(value);
}

Error cancelled() {
    return makeError(ErrorCode::Cancelled, "model load cancelled");
}

// Model::templateHash(). Every field is length-prefixed or fixed-size, so distinct inputs never hash alike by
// concatenation.
std::string hashTemplateAndVocab(std::string_view templateSource, const VocabSpec& vocab) {
    Sha256 sha;
    auto putU64 = [&](uint64_t v) { sha.update(&v, sizeof v); };
    auto putText = [&](std::string_view text) {
        putU64(text.size());
        sha.update(text.data(), text.size());
    };
    putText(templateSource);
    putU64(vocab.pieces.size());
    for (const std::string& piece : vocab.pieces) putText(piece);
    putU64(vocab.scores.size());
    sha.update(vocab.scores.data(), vocab.scores.size() * sizeof(float));
    putU64(vocab.types.size());
    sha.update(vocab.types.data(), vocab.types.size() * sizeof(int32_t));
    for (int32_t id : {vocab.bos, vocab.eos, vocab.unk, vocab.pad}) sha.update(&id, sizeof id);
    for (bool flag : {vocab.addBos, vocab.addSpacePrefix}) putU64(flag ? 1 : 0);
    return sha.finishHex();
}

}  // namespace

Model::Model(GgufFile file, ModelConfig config, Tokenizer tokenizer, TemplateChoice tmpl)
    : m_file(std::move(file)),
      m_config(std::move(config)),
      m_tokenizer(std::move(tokenizer)),
      m_template(std::move(tmpl)) {}

Model::~Model() = default;

ChatRenderInput Model::renderInput() const {
    ChatRenderInput input;
    if (m_tokenizer.bos() >= 0)
        input.bosToken = m_tokenizer.rawPiece(m_tokenizer.bos());
    if (m_tokenizer.eos() >= 0)
        input.eosToken = m_tokenizer.rawPiece(m_tokenizer.eos());
    return input;
}

Result<std::unique_ptr<Model>> Model::load(const std::string& path, const LoadOptions& options) {
    if (!reportProgress(options, 0.0f))
        return cancelled();
    Result<GgufFile> file = GgufFile::open(path);
    if (!file)
        return file.error();
    Result<ModelConfig> config = readModelConfig(*file);
    if (!config)
        return config.error();
    Result<VocabSpec> vocab = readVocab(*file);
    if (!vocab)
        return vocab.error();
    if (static_cast<int>(vocab->pieces.size()) != config->nVocab)
        return makeError(ErrorCode::CorruptFile, "the vocabulary has " + std::to_string(vocab->pieces.size()) +
                                                     " tokens, token_embd.weight " + std::to_string(config->nVocab));
    Result<Tokenizer> tokenizer = Tokenizer::fromVocab(*vocab);
    if (!tokenizer)
        return tokenizer.error();
    if (!reportProgress(options, 0.3f))
        return cancelled();

    std::optional<std::string> ggufTemplate;
    if (file->find("tokenizer.chat_template")) {
        Result<std::string> t = file->getString("tokenizer.chat_template");
        if (!t)
            return t.error();
        ggufTemplate = *t;
    }
    Result<TemplateChoice> choice = chooseTemplate(ggufTemplate);
    if (!choice) {
        // The model's own template does not parse: chat with the default one and say so.
        Result<TemplateChoice> fallback = chooseTemplate(std::nullopt);
        if (!fallback)
            return fallback.error();
        fallback->notice = "The model's chat template could not be read (" + choice.error().detail +
                           "); using the default ChatML template instead.";
        choice = std::move(fallback);
    }

    std::unique_ptr<Model> model(
        new Model(std::move(*file), std::move(*config), std::move(*tokenizer), std::move(*choice)));
    Result<ModelWeights> weights = bindWeights(model->m_file, model->m_config);
    if (!weights)
        return weights.error();
    model->m_weights = std::move(*weights);
    model->m_fingerprint = model->m_file.fingerprint();
    model->m_templateHash = hashTemplateAndVocab(model->m_template.tmpl.source(), *vocab);
    model->m_name =
        model->m_config.name.empty() ? std::filesystem::path(path).filename().string() : model->m_config.name;
    model->m_contextLength = options.contextLength > 0 ? options.contextLength : model->m_config.contextLength;
    if (Result<std::vector<std::string>> eot =
            inference::endOfTurnStrings(model->m_template.tmpl, model->renderInput()))
        model->m_endOfTurn = std::move(*eot);
    if (!reportProgress(options, 0.6f))
        return cancelled();

    const BackendOptions backendOptions{options.threads};
    std::string fallbackReason;
    if (options.backend != BackendKind::Cpu) {
        Result<std::unique_ptr<Backend>> cuda = loadCudaBackend(model->m_config, model->m_weights, backendOptions);
        if (cuda)
            model->m_backend = std::move(*cuda);
        else
            fallbackReason = cuda.error().toString();
    }
    if (!model->m_backend) {
        Result<std::unique_ptr<Backend>> cpu = createCpuBackend(model->m_config, model->m_weights, backendOptions);
        if (!cpu)
            return cpu.error();
        model->m_backend = std::move(*cpu);
    }
    model->m_backendInfo = model->m_backend->info();
    model->m_backendInfo.fallbackReason = fallbackReason;
    if (!reportProgress(options, 1.0f))
        return cancelled();
    return model;
}

}  // namespace inference
