// SentencePiece tokenizer for LLaMA-family vocabularies, loaded from a tokenizer.model file or built from the
// tokenizer.ggml.* vocabulary of a GGUF file, plus a streaming decoder that only ever emits valid UTF-8.
// Ownership: a Tokenizer owns its SentencePiece processor and token tables; it is move-only. A Utf8StreamDecoder
// borrows a Tokenizer, which must outlive it.
// Thread safety: a constructed Tokenizer is immutable; its const methods may be called from any thread at once.
// A Utf8StreamDecoder has mutable state and belongs to one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "roundchat/result.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace inference {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;

class GgufFile;

// Token types as GGUF (tokenizer.ggml.token_type) and SentencePiece's ModelProto store them: never change them.
enum class TokenType : int32_t { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6 };

// A SentencePiece (BPE) vocabulary as a GGUF file carries it. pieces/scores/types are indexed by token id.
struct VocabSpec {
    std::vector<std::string> pieces;  // "▁" (U+2581) stands for a space; byte tokens are "<0xNN>"
    std::vector<float> scores;        // BPE merge priority: higher merges first
    std::vector<int32_t> types;       // TokenType values
    int32_t bos = 1, eos = 2, unk = 0;
    int32_t pad = -1;            // -1: none
    bool addBos = true;          // the model expects BOS at the start of a prompt
    bool addSpacePrefix = true;  // SentencePiece's dummy prefix: "Hi" is encoded as " Hi"
};

// Reads tokenizer.ggml.* from a GGUF file. tokenizer.ggml.model must be "llama" (SentencePiece BPE), else
// ErrorCode::Unsupported naming it. Absent optional keys take llama.cpp's defaults (scores 0, all types normal with
// unk/bos/eos marked unknown/control, bos 1, eos 2, unk 0, no pad, add_bos_token and add_space_prefix true); an id
// of 0xFFFFFFFF means "none". Array lengths that disagree or ids out of range are ErrorCode::CorruptFile.
Result<VocabSpec> readVocab(const GgufFile& file);

struct EncodeOptions {
    bool addBos = false;        // prepend the BOS token
    bool parseSpecial = false;  // text forms of special tokens (e.g. "</s>") become their ids, see encode()
};

struct DecodeOptions {
    // The tokens continue text produced earlier (e.g. generated after a prompt): keep the leading space of the
    // first piece instead of removing it as SentencePiece's dummy prefix.
    bool continuation = false;
};

class Tokenizer {
public:
    // Loads a SentencePiece ModelProto file (e.g. LLaMA's tokenizer.model). BOS is expected by default. The file's
    // model and normalizer are used as they are, except that encode() adds the dummy prefix itself (as "▁"), which
    // equals SentencePiece's own for normalizers that keep extra whitespace, as LLaMA's identity normalizer does.
    static Result<Tokenizer> fromModelFile(const std::string& path);
    // Builds a BPE SentencePiece model (byte fallback when the vocabulary has byte tokens, identity normalizer,
    // whitespace escaped to "▁") from a GGUF vocabulary. Invalid vocabularies are ErrorCode::CorruptFile.
    static Result<Tokenizer> fromVocab(const VocabSpec& spec);

    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Encodes UTF-8 text (invalid bytes are encoded as U+FFFD). With parseSpecial the text is first split on the
    // text forms of control, unknown and user-defined tokens (leftmost, longest match first), which become their
    // ids. The space prefix is added only to text at the very start of `text`, never after a special token: this
    // follows Hugging Face LlamaTokenizer with legacy=false, which both chat tokenizer_config.json files in
    // shared/models/chat_templates set (llama.cpp instead prefixes every fragment after a special token).
    // So "<s>Hi" gives [bos, "Hi"], and "Hi</s>\nA" gives ["▁Hi", eos, "\n", "A"] with no "▁" before "\n".
    Result<std::vector<int32_t>> encode(std::string_view text, EncodeOptions options = {}) const;
    // Decodes to valid UTF-8: control tokens produce nothing, byte tokens their byte, "▁" a space, the unknown
    // token " ⁇ " (as SentencePiece does), ids out of range nothing; invalid UTF-8 becomes U+FFFD (one per maximal
    // invalid subpart). Unless options.continuation, one leading space of the first text token (the first that is
    // not a control token) is removed when the vocabulary adds a space prefix, so decode(encode(x)) == x for valid
    // UTF-8 x, with or without BOS.
    std::string decode(std::span<const int32_t> ids, DecodeOptions options = {}) const;
    // The raw bytes token `id` contributes to text (see decode; byte tokens give one byte, which may be part of a
    // multi-byte character). Empty for control tokens and ids out of range.
    std::string tokenToPiece(int32_t id) const;
    // The piece as the vocabulary spells it ("</s>", "▁Hi", "<0x0A>"); e.g. the bos_token/eos_token text a chat
    // template needs. Empty for ids out of range. The view lives as long as the Tokenizer.
    std::string_view rawPiece(int32_t id) const;

    int32_t vocabSize() const;
    int32_t bos() const;           // -1 if the vocabulary has none
    int32_t eos() const;           // -1 if the vocabulary has none
    bool addBosByDefault() const;  // whether prompts of this model should start with BOS
    bool isControl(int32_t id) const;
    // The id of the control, unknown or user-defined token whose text form is exactly `text` ("</s>" -> 2).
    std::optional<int32_t> findSpecial(std::string_view text) const;

private:
    friend class Utf8StreamDecoder;
    struct Impl;
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    // `spec` is validated; `serializedProto` is the SentencePiece ModelProto made from it.
    static Result<Tokenizer> build(const VocabSpec& spec, const std::string& serializedProto);
    // Appends the bytes of token `id` to `out`. `atTextStart`: no text token came before, so the dummy-prefix space
    // of this piece is removed. Returns whether `id` is a text token (in range and not a control token).
    bool appendPiece(int32_t id, bool atTextStart, std::string& out) const;

    std::unique_ptr<Impl> m_impl;
};

// Turns a stream of generated tokens into text chunks that are always complete, valid UTF-8. A character split
// over several byte tokens is held back until it is complete; invalid sequences become U+FFFD. The concatenation
// of every push() and the final flush() equals Tokenizer::decode() of the same tokens with the same options.
class Utf8StreamDecoder {
public:
    // `tokenizer` is borrowed and must outlive the decoder.
    explicit Utf8StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options = {});

    // Returns the text that `token` completes (often empty while a multi-byte character is still incomplete).
    std::string push(int32_t token);
    // Ends the stream: returns the held-back tail, an incomplete character as U+FFFD. Later pushes continue the
    // same text (no leading space is removed again).
    std::string flush();

private:
    const Tokenizer* m_tokenizer;  // non-owning
    bool m_atTextStart;            // no text token has been pushed yet
    std::string m_pending;         // bytes of an incomplete UTF-8 sequence, at most 3
};

}  // namespace inference
