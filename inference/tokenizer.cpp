#include "inference/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <array>
#include <bit>
#include <climits>
#include <fstream>
#include <iterator>

#include "inference/gguf.h"
#include "utf8.h"

namespace inference {

namespace {

constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";       // U+2581, SentencePiece's escaped space
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";  // " ⁇ ", SentencePiece's default unk_surface
constexpr uint32_t kNoTokenId = 0xFFFFFFFFu;                    // GGUF's "no such token"

// ---- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) --------------------------------------
// Just enough to write and read sentencepiece_model.proto's ModelProto, which Debian ships no generated code for.
// Field numbers used here (ModelProto): 1 pieces, 2 trainer_spec, 3 normalizer_spec.
//   SentencePiece: 1 piece, 2 score (float), 3 type.
//   TrainerSpec: 3 model_type (2 = BPE), 4 vocab_size, 35 byte_fallback, 40 unk_id, 41 bos_id, 42 eos_id, 43 pad_id.
//   NormalizerSpec: 1 name, 3 add_dummy_prefix, 4 remove_extra_whitespaces, 5 escape_whitespaces.

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

class ProtoWriter {
public:
    void varintField(uint32_t field, uint64_t value) {
        tag(field, kVarint);
        varint(value);
    }
    // int32 fields store negative values as 10-byte two's complement varints.
    void int32Field(uint32_t field, int32_t value) { varintField(field, static_cast<uint64_t>(int64_t{value})); }
    void floatField(uint32_t field, float value) {
        tag(field, kFixed32);
        const auto bits = std::bit_cast<uint32_t>(value);
        for (int shift = 0; shift < 32; shift += 8)
            m_bytes.push_back(static_cast<char>((bits >> shift) & 0xFF));
    }
    void bytesField(uint32_t field, std::string_view value) {
        tag(field, kLengthDelimited);
        varint(value.size());
        m_bytes.append(value);
    }
    const std::string& bytes() const { return m_bytes; }

private:
    void tag(uint32_t field, WireType wire) { varint(uint64_t{field} << 3 | wire); }
    void varint(uint64_t value) {
        while (value >= 0x80) {
            m_bytes.push_back(static_cast<char>((value & 0x7F) | 0x80));
            value >>= 7;
        }
        m_bytes.push_back(static_cast<char>(value));
    }

    std::string m_bytes;
};

struct ProtoField {
    uint32_t number = 0;
    uint64_t value = 0;     // varint and fixed32/fixed64 fields
    std::string_view data;  // length-delimited fields
};

// Iterates the fields of one message; bounds-checked, so a malformed buffer ends iteration with failed() set.
class ProtoReader {
public:
    explicit ProtoReader(std::string_view bytes) : m_bytes(bytes) {}

    bool next(ProtoField& field) {
        if (m_pos == m_bytes.size() || m_failed)
            return false;
        uint64_t key = 0;
        if (!varint(key))
            return fail();
        field.number = static_cast<uint32_t>(key >> 3);
        field.value = 0;
        field.data = {};
        switch (key & 7) {
        case kVarint:
            return varint(field.value) || fail();
        case kFixed64:
        case kFixed32: {
            const size_t width = (key & 7) == kFixed64 ? 8 : 4;
            if (m_bytes.size() - m_pos < width)
                return fail();
            for (size_t i = 0; i < width; ++i)
                field.value |= uint64_t{static_cast<uint8_t>(m_bytes[m_pos + i])} << (8 * i);
            m_pos += width;
            return true;
        }
        case kLengthDelimited: {
            uint64_t length = 0;
            if (!varint(length) || length > m_bytes.size() - m_pos)
                return fail();
            field.data = m_bytes.substr(m_pos, length);
            m_pos += length;
            return true;
        }
        default:
            return fail();  // groups are not used by sentencepiece_model.proto
        }
    }
    bool failed() const { return m_failed; }

private:
    bool varint(uint64_t& value) {
        value = 0;
        for (int shift = 0; shift < 64 && m_pos < m_bytes.size(); shift += 7) {
            const auto b = static_cast<uint8_t>(m_bytes[m_pos++]);
            value |= uint64_t{b & 0x7Fu} << shift;
            if (b < 0x80)
                return true;
        }
        return false;
    }
    bool fail() {
        m_failed = true;
        return false;
    }

    std::string_view m_bytes;
    size_t m_pos = 0;
    bool m_failed = false;
};

Error corrupt(std::string detail) { return Error{ErrorCode::CorruptFile, std::move(detail)}; }

// ---- vocabulary <-> ModelProto --------------------------------------------------------------------------------------

// "<0xAB>" -> 0xAB; -1 if `piece` is not a byte token's spelling.
int parseBytePiece(std::string_view piece) {
    if (piece.size() != 6 || !piece.starts_with("<0x") || piece.back() != '>')
        return -1;
    int value = 0;
    for (char c : piece.substr(3, 2)) {
        const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (digit < 0)
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

Status validate(const VocabSpec& spec) {
    const size_t n = spec.pieces.size();
    if (n == 0 || n > INT32_MAX)
        return corrupt("tokenizer vocabulary has " + std::to_string(n) + " tokens");
    if (spec.scores.size() != n || spec.types.size() != n)
        return corrupt("tokenizer vocabulary has " + std::to_string(n) + " tokens but " +
                       std::to_string(spec.scores.size()) + " scores and " + std::to_string(spec.types.size()) +
                       " token types");
    for (size_t id = 0; id < n; ++id) {
        const int32_t type = spec.types[id];
        if (type < static_cast<int32_t>(TokenType::Normal) || type > static_cast<int32_t>(TokenType::Byte))
            return corrupt("token " + std::to_string(id) + " has unknown type " + std::to_string(type));
        if (spec.pieces[id].empty())
            return corrupt("token " + std::to_string(id) + " is empty");
        if (type == static_cast<int32_t>(TokenType::Byte) && parseBytePiece(spec.pieces[id]) < 0)
            return corrupt("byte token " + std::to_string(id) + " is not spelled <0xNN>");
    }
    const auto inRange = [n](int32_t id) { return id >= 0 && static_cast<size_t>(id) < n; };
    if (!inRange(spec.unk) || spec.types[spec.unk] != static_cast<int32_t>(TokenType::Unknown))
        return corrupt("unknown-token id " + std::to_string(spec.unk) + " is not a token of type unknown");
    const std::pair<const char*, int32_t> optionalIds[] = {{"bos", spec.bos}, {"eos", spec.eos}, {"pad", spec.pad}};
    for (const auto& [name, id] : optionalIds) {
        if (id != -1 && !inRange(id))
            return corrupt(std::string(name) + " token id " + std::to_string(id) + " is out of range");
    }
    return Status::success();
}

// A BPE ModelProto as LLaMA's tokenizer.model has it, except add_dummy_prefix: Tokenizer adds the space prefix
// itself (see Tokenizer::encode), so the SentencePiece model never does.
std::string encodeModelProto(const VocabSpec& spec) {
    ProtoWriter model;
    bool hasByteTokens = false;
    for (size_t id = 0; id < spec.pieces.size(); ++id) {
        ProtoWriter piece;
        piece.bytesField(1, spec.pieces[id]);
        piece.floatField(2, spec.scores[id]);
        piece.varintField(3, static_cast<uint64_t>(spec.types[id]));
        model.bytesField(1, piece.bytes());
        hasByteTokens = hasByteTokens || spec.types[id] == static_cast<int32_t>(TokenType::Byte);
    }
    ProtoWriter trainer;
    trainer.varintField(3, 2);  // BPE
    trainer.int32Field(4, static_cast<int32_t>(spec.pieces.size()));
    trainer.varintField(35, hasByteTokens ? 1 : 0);  // byte_fallback: unknown characters become byte tokens
    trainer.int32Field(40, spec.unk);
    trainer.int32Field(41, spec.bos);
    trainer.int32Field(42, spec.eos);
    trainer.int32Field(43, spec.pad);
    model.bytesField(2, trainer.bytes());
    ProtoWriter normalizer;
    normalizer.bytesField(1, "identity");
    normalizer.varintField(3, 0);  // add_dummy_prefix
    normalizer.varintField(4, 0);  // remove_extra_whitespaces: "a  b" keeps both spaces
    normalizer.varintField(5, 1);  // escape_whitespaces: ' ' -> "▁"
    model.bytesField(3, normalizer.bytes());
    return model.bytes();
}

// Reads the vocabulary of a serialized ModelProto (defaults as in sentencepiece_model.proto).
Result<VocabSpec> decodeModelProto(std::string_view bytes) {
    VocabSpec spec;
    ProtoReader model(bytes);
    ProtoField field;
    while (model.next(field)) {
        if (field.number == 1) {
            ProtoReader reader(field.data);
            ProtoField pieceField;
            std::string piece;
            float score = 0.0f;
            int32_t type = static_cast<int32_t>(TokenType::Normal);
            while (reader.next(pieceField)) {
                if (pieceField.number == 1)
                    piece = pieceField.data;
                else if (pieceField.number == 2)
                    score = std::bit_cast<float>(static_cast<uint32_t>(pieceField.value));
                else if (pieceField.number == 3)
                    type = static_cast<int32_t>(pieceField.value);
            }
            if (reader.failed())
                return corrupt("malformed piece " + std::to_string(spec.pieces.size()) + " in tokenizer model");
            spec.pieces.push_back(std::move(piece));
            spec.scores.push_back(score);
            spec.types.push_back(type);
        } else if (field.number == 2 || field.number == 3) {
            ProtoReader reader(field.data);
            ProtoField sub;
            while (reader.next(sub)) {
                const auto id = static_cast<int32_t>(sub.value);  // int32 fields; -1 arrives as 2^64 - 1
                if (field.number == 2 && sub.number == 40)
                    spec.unk = id;
                else if (field.number == 2 && sub.number == 41)
                    spec.bos = id;
                else if (field.number == 2 && sub.number == 42)
                    spec.eos = id;
                else if (field.number == 2 && sub.number == 43)
                    spec.pad = id;
                else if (field.number == 3 && sub.number == 3)
                    spec.addSpacePrefix = sub.value != 0;
            }
            if (reader.failed())
                return corrupt("malformed trainer or normalizer spec in tokenizer model");
        }
    }
    if (model.failed())
        return corrupt("tokenizer model is not a SentencePiece ModelProto");
    return spec;
}

// Reads an optional token id into `id`, which keeps its default when the key is absent.
Status readTokenId(const GgufFile& file, std::string_view key, int32_t& id) {
    if (!file.find(key))
        return Status::success();
    Result<uint64_t> value = file.getUInt(key);
    if (!value)
        return value.error();
    if (*value != kNoTokenId && *value > INT32_MAX)
        return corrupt(std::string(key) + " = " + std::to_string(*value) + " is out of range");
    id = *value == kNoTokenId ? -1 : static_cast<int32_t>(*value);
    return Status::success();
}

// Reads an optional flag into `flag`, which keeps its default when the key is absent.
Status readFlag(const GgufFile& file, std::string_view key, bool& flag) {
    if (!file.find(key))
        return Status::success();
    Result<bool> value = file.getBool(key);
    if (!value)
        return value.error();
    flag = *value;
    return Status::success();
}

}  // namespace

Result<VocabSpec> readVocab(const GgufFile& file) {
    Result<std::string> model = file.getString("tokenizer.ggml.model");
    if (!model)
        return model.error();
    if (*model != "llama")
        return Error{ErrorCode::Unsupported,
                     "tokenizer.ggml.model \"" + *model + "\" is not supported (only \"llama\", SentencePiece BPE)"};
    VocabSpec spec;
    Result<std::vector<std::string>> pieces = file.getStringArray("tokenizer.ggml.tokens");
    if (!pieces)
        return pieces.error();
    spec.pieces = std::move(*pieces);
    const size_t n = spec.pieces.size();

    RC_TRY(readTokenId(file, "tokenizer.ggml.bos_token_id", spec.bos));
    RC_TRY(readTokenId(file, "tokenizer.ggml.eos_token_id", spec.eos));
    RC_TRY(readTokenId(file, "tokenizer.ggml.unknown_token_id", spec.unk));
    RC_TRY(readTokenId(file, "tokenizer.ggml.padding_token_id", spec.pad));
    RC_TRY(readFlag(file, "tokenizer.ggml.add_bos_token", spec.addBos));
    RC_TRY(readFlag(file, "tokenizer.ggml.add_space_prefix", spec.addSpacePrefix));

    if (file.find("tokenizer.ggml.scores")) {
        Result<std::vector<float>> scores = file.getFloatArray("tokenizer.ggml.scores");
        if (!scores)
            return scores.error();
        spec.scores = std::move(*scores);
    } else {
        spec.scores.assign(n, 0.0f);
    }
    if (file.find("tokenizer.ggml.token_type")) {
        Result<std::vector<int32_t>> types = file.getIntArray("tokenizer.ggml.token_type");
        if (!types)
            return types.error();
        spec.types = std::move(*types);
    } else {
        spec.types.assign(n, static_cast<int32_t>(TokenType::Normal));
        const auto mark = [&](int32_t id, TokenType type) {
            if (id >= 0 && static_cast<size_t>(id) < n)
                spec.types[id] = static_cast<int32_t>(type);
        };
        mark(spec.bos, TokenType::Control);
        mark(spec.eos, TokenType::Control);
        mark(spec.unk, TokenType::Unknown);
    }
    RC_TRY(validate(spec));
    return spec;
}

// ---- Tokenizer -----------------------------------------------------------------------------------------------------

struct Tokenizer::Impl {
    sentencepiece::SentencePieceProcessor processor;
    std::vector<std::string> pieces;  // as the vocabulary spells them
    std::vector<std::string> texts;   // the bytes each token decodes to
    std::vector<TokenType> types;
    // Control, unknown and user-defined tokens by the first byte of their text, longest first (see encode).
    std::array<std::vector<int32_t>, 256> specialsByFirstByte;
    int32_t bos = -1;
    int32_t eos = -1;
    bool addBos = true;
    bool addSpacePrefix = true;

    // The special token whose text starts `text` (longest wins), if any.
    std::optional<int32_t> matchSpecial(std::string_view text) const {
        if (text.empty())
            return std::nullopt;
        for (int32_t id : specialsByFirstByte[static_cast<uint8_t>(text[0])]) {
            if (text.starts_with(pieces[id]))
                return id;
        }
        return std::nullopt;
    }

    // Appends the ids of plain text (no special tokens); `prefixSpace` adds SentencePiece's dummy prefix "▁".
    Status encodeText(std::string_view text, bool prefixSpace, std::vector<int32_t>& ids) const {
        if (text.empty())
            return Status::success();
        std::string input;
        if (prefixSpace)
            input = kSpaceSymbol;  // what SentencePiece's normalizer inserts for add_dummy_prefix
        input += text;
        std::vector<int> pieceIds;
        if (const auto status = processor.Encode(input, &pieceIds); !status.ok())
            return Error{ErrorCode::InvalidArgument, std::string("SentencePiece encode failed: ") + status.message()};
        ids.insert(ids.end(), pieceIds.begin(), pieceIds.end());
        return Status::success();
    }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::fromModelFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return Error{ErrorCode::FileNotFound, "cannot open tokenizer model " + path};
    std::string bytes(std::istreambuf_iterator<char>(in), {});
    if (in.bad())
        return Error{ErrorCode::IoError, "cannot read tokenizer model " + path};
    Result<VocabSpec> spec = decodeModelProto(bytes);
    const Status valid = spec ? validate(*spec) : Status(spec.error());
    if (!valid)
        return Error{valid.error().code, valid.error().detail + " (" + path + ")"};
    // A second normalizer_spec merges into the first (protobuf semantics): switch the dummy prefix off, since
    // encode() adds it itself. The rest of the file's normalizer is kept.
    ProtoWriter noDummyPrefix;
    noDummyPrefix.varintField(3, 0);
    ProtoWriter normalizerOverride;
    normalizerOverride.bytesField(3, noDummyPrefix.bytes());
    return build(*spec, bytes + normalizerOverride.bytes());
}

Result<Tokenizer> Tokenizer::fromVocab(const VocabSpec& spec) {
    RC_TRY(validate(spec));
    return build(spec, encodeModelProto(spec));
}

Result<Tokenizer> Tokenizer::build(const VocabSpec& spec, const std::string& serializedProto) {
    auto impl = std::make_unique<Impl>();
    if (const auto status = impl->processor.LoadFromSerializedProto(serializedProto); !status.ok())
        return corrupt(std::string("SentencePiece rejected the tokenizer vocabulary: ") + status.message());
    const size_t n = spec.pieces.size();
    if (static_cast<size_t>(impl->processor.GetPieceSize()) != n)
        return corrupt("SentencePiece loaded " + std::to_string(impl->processor.GetPieceSize()) + " of " +
                       std::to_string(n) + " tokens");

    impl->pieces = spec.pieces;
    impl->texts.resize(n);
    impl->types.resize(n);
    for (size_t id = 0; id < n; ++id) {
        const std::string& piece = spec.pieces[id];
        const auto type = static_cast<TokenType>(spec.types[id]);
        impl->types[id] = type;
        std::string& text = impl->texts[id];
        switch (type) {
        case TokenType::Control:
            break;
        case TokenType::Unknown:
            text = kUnknownSurface;
            break;
        case TokenType::Byte:
            text = std::string(1, static_cast<char>(parseBytePiece(piece)));
            break;
        case TokenType::Normal:
        case TokenType::UserDefined:
        case TokenType::Unused:
            for (size_t pos = 0; pos < piece.size();) {
                if (piece.compare(pos, kSpaceSymbol.size(), kSpaceSymbol) == 0) {
                    text.push_back(' ');
                    pos += kSpaceSymbol.size();
                } else {
                    text.push_back(piece[pos++]);
                }
            }
            break;
        }
        if (type == TokenType::Control || type == TokenType::Unknown || type == TokenType::UserDefined)
            impl->specialsByFirstByte[static_cast<uint8_t>(piece[0])].push_back(static_cast<int32_t>(id));
    }
    for (auto& bucket : impl->specialsByFirstByte) {
        std::stable_sort(bucket.begin(), bucket.end(), [&](int32_t a, int32_t b) {
            return impl->pieces[a].size() > impl->pieces[b].size();
        });
    }
    impl->bos = spec.bos;
    impl->eos = spec.eos;
    impl->addBos = spec.addBos;
    impl->addSpacePrefix = spec.addSpacePrefix;
    return Tokenizer(std::move(impl));
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
    const Impl& impl = *m_impl;
    std::vector<int32_t> ids;
    if (options.addBos && impl.bos >= 0)
        ids.push_back(impl.bos);
    // Only text at the very start of the input gets the space prefix (legacy=false, see the header).
    size_t textBegin = 0;
    if (options.parseSpecial) {
        for (size_t pos = 0; pos < text.size();) {
            const std::optional<int32_t> special = impl.matchSpecial(text.substr(pos));
            if (!special) {
                ++pos;
                continue;
            }
            RC_TRY(impl.encodeText(text.substr(textBegin, pos - textBegin), impl.addSpacePrefix && textBegin == 0,
                                   ids));
            ids.push_back(*special);
            pos += impl.pieces[*special].size();
            textBegin = pos;
        }
    }
    RC_TRY(impl.encodeText(text.substr(textBegin), impl.addSpacePrefix && textBegin == 0, ids));
    return ids;
}

bool Tokenizer::appendPiece(int32_t id, bool atTextStart, std::string& out) const {
    if (id < 0 || id >= vocabSize() || m_impl->types[id] == TokenType::Control)
        return false;
    std::string_view text = m_impl->texts[id];
    const TokenType type = m_impl->types[id];
    // Undo the dummy prefix: only a "▁" piece (not a byte token 0x20) at the start of the text carries it.
    if (atTextStart && m_impl->addSpacePrefix && (type == TokenType::Normal || type == TokenType::UserDefined) &&
        text.starts_with(' '))
        text.remove_prefix(1);
    out += text;
    return true;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, DecodeOptions options) const {
    std::string bytes;
    bool atTextStart = !options.continuation;
    for (int32_t id : ids) {
        if (appendPiece(id, atTextStart, bytes))
            atTextStart = false;
    }
    std::string text;
    appendValidUtf8(bytes, true, text);
    return text;
}

std::string Tokenizer::tokenToPiece(int32_t id) const {
    return id >= 0 && id < vocabSize() ? m_impl->texts[id] : std::string();
}

std::string_view Tokenizer::rawPiece(int32_t id) const {
    return id >= 0 && id < vocabSize() ? std::string_view(m_impl->pieces[id]) : std::string_view();
}

int32_t Tokenizer::vocabSize() const { return static_cast<int32_t>(m_impl->pieces.size()); }
int32_t Tokenizer::bos() const { return m_impl->bos; }
int32_t Tokenizer::eos() const { return m_impl->eos; }
bool Tokenizer::addBosByDefault() const { return m_impl->addBos; }

bool Tokenizer::isControl(int32_t id) const {
    return id >= 0 && id < vocabSize() && m_impl->types[id] == TokenType::Control;
}

std::optional<int32_t> Tokenizer::findSpecial(std::string_view text) const {
    const std::optional<int32_t> id = m_impl->matchSpecial(text);
    return id && m_impl->pieces[*id].size() == text.size() ? id : std::nullopt;
}

// ---- Utf8StreamDecoder ---------------------------------------------------------------------------------------------

Utf8StreamDecoder::Utf8StreamDecoder(const Tokenizer& tokenizer, DecodeOptions options)
    : m_tokenizer(&tokenizer), m_atTextStart(!options.continuation) {}

std::string Utf8StreamDecoder::push(int32_t token) {
    if (m_tokenizer->appendPiece(token, m_atTextStart, m_pending))
        m_atTextStart = false;
    std::string text;
    m_pending.erase(0, appendValidUtf8(m_pending, false, text));
    return text;
}

std::string Utf8StreamDecoder::flush() {
    std::string text;
    appendValidUtf8(m_pending, true, text);
    m_pending.clear();
    return text;
}

}  // namespace inference
