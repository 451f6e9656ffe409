#include "inference/tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "inference/gguf.h"

namespace inference {
namespace {

const std::string kModels = std::string(ROUNDCHAT_SHARED_DIR) + "/models/";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in) << path;
    return {std::istreambuf_iterator<char>(in), {}};
}

// Strict UTF-8 check written independently of the library's repair code: decode each code point and reject
// overlong forms, surrogates and values above U+10FFFF.
bool isValidUtf8(std::string_view s) {
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<uint8_t>(s[i]);
        size_t n = 0;
        uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n > s.size())
            return false;
        for (size_t k = 1; k < n; ++k) {
            const auto b = static_cast<uint8_t>(s[i + k]);
            if ((b & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (b & 0x3F);
        }
        constexpr uint32_t kMinByLength[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMinByLength[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

Tokenizer loadModelFile() {
    Result<Tokenizer> tok = Tokenizer::fromModelFile(kModels + "tokenizer.model");
    EXPECT_TRUE(tok.ok()) << tok.error().toString();
    return std::move(*tok);
}

Result<VocabSpec> readGgufVocab(const std::string& path) {
    Result<GgufFile> file = GgufFile::open(path);
    if (!file)
        return file.error();
    return readVocab(*file);
}

Tokenizer loadGgufVocab(const std::string& name) {
    Result<VocabSpec> spec = readGgufVocab(kModels + name);
    EXPECT_TRUE(spec.ok()) << spec.error().toString();
    Result<Tokenizer> tok = Tokenizer::fromVocab(*spec);
    EXPECT_TRUE(tok.ok()) << tok.error().toString();
    return std::move(*tok);
}

std::vector<int32_t> encode(const Tokenizer& tok, std::string_view text, EncodeOptions options = {}) {
    Result<std::vector<int32_t>> ids = tok.encode(text, options);
    EXPECT_TRUE(ids.ok()) << ids.error().toString();
    return ids.ok() ? *ids : std::vector<int32_t>{};
}

struct VectorCase {
    std::string text;
    std::vector<int32_t> ids;
};

// tokenizer_tests.inp: cases separated by "\n__ggml_vocab_test__\n"; .out: one line of ids per case (no BOS).
std::vector<VectorCase> loadVectors() {
    const std::string inp = readFile(kModels + "tokenizer_tests.inp");
    const std::string out = readFile(kModels + "tokenizer_tests.out");
    constexpr std::string_view kSeparator = "\n__ggml_vocab_test__\n";
    std::vector<VectorCase> cases;
    for (size_t pos = 0; pos < inp.size();) {
        const size_t end = inp.find(kSeparator, pos);
        cases.push_back({inp.substr(pos, end - pos), {}});
        pos = end == std::string::npos ? inp.size() : end + kSeparator.size();
    }
    std::istringstream lines(out);
    std::string line;
    for (VectorCase& c : cases) {
        EXPECT_TRUE(std::getline(lines, line));
        std::istringstream ids(line);
        for (int32_t id = 0; ids >> id;)
            c.ids.push_back(id);
    }
    return cases;
}

void expectMatchesVectors(const Tokenizer& tok) {
    const std::vector<VectorCase> cases = loadVectors();
    ASSERT_EQ(cases.size(), 46u);
    for (const VectorCase& c : cases) {
        const std::vector<int32_t> ids = encode(tok, c.text);
        EXPECT_EQ(ids, c.ids) << "text: \"" << c.text << "\"";
        EXPECT_EQ(tok.decode(ids), c.text);
    }
}

TEST(TokenizerTest, ModelFilePassesLlamaVectors) {
    const Tokenizer tok = loadModelFile();
    EXPECT_EQ(tok.vocabSize(), 32000);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    EXPECT_TRUE(tok.addBosByDefault());
    expectMatchesVectors(tok);
}

TEST(TokenizerTest, GgufVocabPassesLlamaVectors) {
    const Tokenizer tok = loadGgufVocab("ggml-vocab-llama-spm.gguf");
    EXPECT_EQ(tok.vocabSize(), 32000);
    EXPECT_EQ(tok.bos(), 1);
    EXPECT_EQ(tok.eos(), 2);
    expectMatchesVectors(tok);
}

TEST(TokenizerTest, ModelFileAndGgufVocabAgree) {
    const Tokenizer fromFile = loadModelFile();
    const Tokenizer fromGguf = loadGgufVocab("ggml-vocab-llama-spm.gguf");
    for (int32_t id = 0; id < fromFile.vocabSize(); ++id) {
        ASSERT_EQ(fromFile.rawPiece(id), fromGguf.rawPiece(id)) << id;
        ASSERT_EQ(fromFile.tokenToPiece(id), fromGguf.tokenToPiece(id)) << id;
        ASSERT_EQ(fromFile.isControl(id), fromGguf.isControl(id)) << id;
    }
}

TEST(TokenizerTest, PiecesAndBasics) {
    const Tokenizer tok = loadModelFile();
    EXPECT_EQ(tok.rawPiece(2), "</s>");
    EXPECT_EQ(tok.rawPiece(13), "<0x0A>");
    EXPECT_EQ(tok.tokenToPiece(13), "\n");   // byte token -> the byte
    EXPECT_EQ(tok.tokenToPiece(259), "  ");  // "▁▁" -> two spaces
    EXPECT_EQ(tok.tokenToPiece(1), "");      // control tokens have no text
    EXPECT_EQ(tok.tokenToPiece(32000), "");  // out of range
    EXPECT_EQ(tok.rawPiece(-1), "");
    EXPECT_TRUE(tok.isControl(1));
    EXPECT_TRUE(tok.isControl(2));
    EXPECT_FALSE(tok.isControl(0));
    EXPECT_FALSE(tok.isControl(13));
    EXPECT_EQ(encode(tok, "", {.addBos = true}), std::vector<int32_t>{1});
    EXPECT_EQ(encode(tok, "Hello", {.addBos = true}), (std::vector<int32_t>{1, 15043}));
    // decode drops control tokens and the dummy prefix; a continuation keeps the leading space.
    const std::vector<int32_t> hello = {1, 15043, 2};
    EXPECT_EQ(tok.decode(hello), "Hello");
    EXPECT_EQ(tok.decode(hello, {.continuation = true}), " Hello");
    // Only the first text token loses its dummy-prefix space: " Hello" is "▁" "▁Hello".
    const std::vector<int32_t> spaceHello = encode(tok, " Hello", {.addBos = true});
    EXPECT_EQ(spaceHello, (std::vector<int32_t>{1, 29871, 15043}));
    EXPECT_EQ(tok.decode(spaceHello), " Hello");
}

// ---- stories260K's own 512-token vocabulary ---------------------------------------------------------------------

nlohmann::json loadReference() { return nlohmann::json::parse(readFile(kModels + "reference_public.json")); }

TEST(TokenizerTest, Stories260KPromptsAndGreedyText) {
    const Tokenizer tok = loadGgufVocab("stories260K.gguf");
    EXPECT_EQ(tok.vocabSize(), 512);
    EXPECT_TRUE(tok.addBosByDefault());
    const nlohmann::json ref = loadReference();
    ASSERT_EQ(ref["cases"].size(), 3u);
    for (const nlohmann::json& c : ref["cases"]) {
        const auto prompt = c["prompt_text"].get<std::string>();
        const auto promptIds = c["prompt_ids"].get<std::vector<int32_t>>();
        const auto greedy = c["greedy_ids"].get<std::vector<int32_t>>();
        EXPECT_EQ(encode(tok, prompt, {.addBos = true}), promptIds) << prompt;
        EXPECT_EQ(tok.decode(promptIds), prompt);
        std::vector<int32_t> all = promptIds;
        all.insert(all.end(), greedy.begin(), greedy.end());
        EXPECT_EQ(tok.decode(all), c["text"].get<std::string>());
        EXPECT_EQ(tok.decode(greedy, {.continuation = true}), c["continuation_text"].get<std::string>());
    }
}

TEST(TokenizerTest, Stories260KMultiRoundInputs) {
    const Tokenizer tok = loadGgufVocab("stories260K.gguf");
    const nlohmann::json ref = loadReference();
    const nlohmann::json& rounds = ref["multi_round"]["rounds"];
    ASSERT_EQ(rounds.size(), 3u);
    std::vector<int32_t> full;
    for (size_t r = 0; r < rounds.size(); ++r) {
        // Round 0 starts the conversation with BOS; later rounds are appended without BOS but still get the space
        // prefix, because each is encoded on its own.
        const auto text = rounds[r]["text"].get<std::string>();
        const std::vector<int32_t> ids = encode(tok, text, {.addBos = r == 0});
        EXPECT_EQ(ids, rounds[r]["input_ids"].get<std::vector<int32_t>>()) << "round " << r;
        full.insert(full.end(), ids.begin(), ids.end());
        if (rounds[r].contains("greedy_ids")) {
            const auto greedy = rounds[r]["greedy_ids"].get<std::vector<int32_t>>();
            EXPECT_EQ(tok.decode(greedy, {.continuation = true}), rounds[r]["greedy_text"].get<std::string>());
            full.insert(full.end(), greedy.begin(), greedy.end());
        }
    }
    EXPECT_EQ(full, ref["multi_round"]["full_ids"].get<std::vector<int32_t>>());
}

// ---- special tokens ---------------------------------------------------------------------------------------------

TEST(TokenizerTest, SpecialTokensOnlyWithParseSpecial) {
    const Tokenizer tok = loadModelFile();
    EXPECT_EQ(tok.findSpecial("</s>"), 2);
    EXPECT_EQ(tok.findSpecial("<s>"), 1);
    EXPECT_EQ(tok.findSpecial("<unk>"), 0);
    EXPECT_EQ(tok.findSpecial("</s>x"), std::nullopt);
    EXPECT_EQ(tok.findSpecial("</s"), std::nullopt);
    EXPECT_EQ(tok.findSpecial("<|im_start|>"), std::nullopt);  // ordinary text in the LLaMA vocab
    EXPECT_EQ(tok.findSpecial(""), std::nullopt);

    const std::vector<int32_t> plain = encode(tok, "Hi</s>");
    EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
    EXPECT_EQ(tok.decode(plain), "Hi</s>");

    const std::vector<int32_t> hi = encode(tok, "Hi");
    std::vector<int32_t> expected = hi;
    expected.push_back(2);
    EXPECT_EQ(encode(tok, "Hi</s>", {.parseSpecial = true}), expected);
    EXPECT_EQ(encode(tok, "</s></s>", {.parseSpecial = true}), (std::vector<int32_t>{2, 2}));
}

// The space-prefix rule after special tokens (Hugging Face LlamaTokenizer legacy=false, as both chat
// tokenizer_config.json files set): only text at the very start of the input gets "▁".
TEST(TokenizerTest, NoSpacePrefixAfterSpecialToken) {
    const Tokenizer tok = loadModelFile();
    constexpr int32_t kSpace = 29871;  // "▁"
    constexpr int32_t kNewline = 13;   // "<0x0A>"
    // "Hi</s>\nA": after </s> comes "\n" directly, not "▁" "\n" as llama.cpp would produce.
    const std::vector<int32_t> ids = encode(tok, "Hi</s>\nA", {.parseSpecial = true});
    ASSERT_GE(ids.size(), 4u);
    EXPECT_EQ(ids[0], 6324);  // "▁Hi"
    EXPECT_EQ(ids[1], 2);
    EXPECT_EQ(ids[2], kNewline);
    // "<s>Hi": BOS, then "Hi" without prefix, which differs from "▁Hi".
    const std::vector<int32_t> bosHi = encode(tok, "<s>Hi", {.parseSpecial = true});
    ASSERT_GE(bosHi.size(), 2u);
    EXPECT_EQ(bosHi[0], 1);
    EXPECT_NE(bosHi[1], 6324);
    EXPECT_EQ(tok.decode(bosHi, {.continuation = true}), "Hi");

    // The rendered TinyLlama prompt from chat_templates/EXPECTED.md.
    const std::string prompt =
        "<|system|>\nYou are helpful.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nWhat is 2+2?</s>\n"
        "<|assistant|>\n";
    const std::vector<int32_t> chat = encode(tok, prompt, {.addBos = true, .parseSpecial = true});
    ASSERT_GE(chat.size(), 3u);
    EXPECT_EQ(chat[0], 1);
    EXPECT_NE(chat[1], kSpace);
    EXPECT_EQ(std::count(chat.begin(), chat.end(), 2), 4);
    for (size_t i = 0; i + 1 < chat.size(); ++i) {
        if (chat[i] == 2) {
            EXPECT_EQ(chat[i + 1], kNewline) << "after EOS at " << i;
        }
    }
    // Without parseSpecial, "</s>" is plain text and the ids decode back to the whole prompt.
    EXPECT_EQ(tok.decode(encode(tok, prompt)), prompt);
}

// A vocabulary with ChatML markers added as a user-defined and a control token.
TEST(TokenizerTest, UserDefinedAndControlMarkers) {
    Result<VocabSpec> spec = readGgufVocab(kModels + "stories260K.gguf");
    ASSERT_TRUE(spec.ok()) << spec.error().toString();
    const auto add = [&](std::string piece, TokenType type) {
        spec->pieces.push_back(std::move(piece));
        spec->scores.push_back(0.0f);
        spec->types.push_back(static_cast<int32_t>(type));
        return static_cast<int32_t>(spec->pieces.size() - 1);
    };
    const int32_t imStart = add("<|im_start|>", TokenType::UserDefined);
    const int32_t imEnd = add("<|im_end|>", TokenType::Control);
    Result<Tokenizer> tok = Tokenizer::fromVocab(*spec);
    ASSERT_TRUE(tok.ok()) << tok.error().toString();
    EXPECT_EQ(tok->findSpecial("<|im_start|>"), imStart);
    EXPECT_EQ(tok->findSpecial("<|im_end|>"), imEnd);

    const std::vector<int32_t> user = encode(*tok, "user");  // "▁user"
    std::vector<int32_t> userNoPrefix = encode(*tok, "<|im_start|>user", {.parseSpecial = true});
    ASSERT_FALSE(userNoPrefix.empty());
    EXPECT_EQ(userNoPrefix.front(), imStart);
    userNoPrefix.erase(userNoPrefix.begin());
    EXPECT_NE(userNoPrefix, user);
    EXPECT_EQ(tok->decode(userNoPrefix), "user");

    const std::vector<int32_t> ids = encode(*tok, "<|im_start|>user\nHi<|im_end|>", {.parseSpecial = true});
    EXPECT_EQ(ids.front(), imStart);
    EXPECT_EQ(ids.back(), imEnd);
    // Control tokens are text without parseSpecial; SentencePiece matches user-defined pieces in any text.
    const std::vector<int32_t> plain = encode(*tok, "x<|im_end|><|im_start|>");
    EXPECT_EQ(std::count(plain.begin(), plain.end(), imEnd), 0);
    EXPECT_EQ(plain.back(), imStart);
    // Control tokens decode to nothing, user-defined ones to their text.
    EXPECT_EQ(tok->decode(ids), "<|im_start|>user\nHi");
}

// ---- streaming decoder ------------------------------------------------------------------------------------------

// Streams `ids` and checks every chunk is valid UTF-8 and that the chunks add up to decode().
std::string streamAndCheck(const Tokenizer& tok, const std::vector<int32_t>& ids, DecodeOptions options = {}) {
    Utf8StreamDecoder decoder(tok, options);
    std::string text;
    for (int32_t id : ids) {
        const std::string chunk = decoder.push(id);
        EXPECT_TRUE(isValidUtf8(chunk)) << "after token " << id;
        text += chunk;
    }
    const std::string tail = decoder.flush();
    EXPECT_TRUE(isValidUtf8(tail));
    text += tail;
    EXPECT_EQ(text, tok.decode(ids, options));
    return text;
}

TEST(TokenizerTest, StreamingSplitsCharactersOnlyAtBoundaries) {
    const std::string text = "Hi 😀 世界! \xEF\xB7\xBD 𝄞 ẞ ok";  // emoji, CJK, U+FDFD, U+1D11E, U+1E9E
    for (const Tokenizer& tok : {loadGgufVocab("stories260K.gguf"), loadModelFile()}) {
        const std::vector<int32_t> ids = encode(tok, text);
        // stories260K has no multi-byte pieces, so every non-ASCII character spans several byte tokens.
        EXPECT_EQ(streamAndCheck(tok, ids), text);
        Utf8StreamDecoder decoder(tok);
        int heldBack = 0;
        for (int32_t id : ids)
            heldBack += decoder.push(id).empty() ? 1 : 0;
        EXPECT_GE(heldBack, 3);  // at least the emoji, U+1D11E and U+FDFD are split over byte tokens
        EXPECT_TRUE(decoder.flush().empty());
    }
}

TEST(TokenizerTest, StreamingHoldsIncompleteAndReplacesInvalid) {
    const Tokenizer tok = loadGgufVocab("stories260K.gguf");
    const auto byteToken = [](uint8_t b) { return int32_t{3} + b; };  // <0x00> is id 3
    ASSERT_EQ(tok.rawPiece(byteToken(0xF0)), "<0xF0>");
    const int32_t a = encode(tok, "a", {}).back();

    Utf8StreamDecoder decoder(tok, {.continuation = true});
    EXPECT_EQ(decoder.push(byteToken(0xF0)), "");
    EXPECT_EQ(decoder.push(byteToken(0x9F)), "");
    EXPECT_EQ(decoder.push(byteToken(0x98)), "");
    EXPECT_EQ(decoder.push(byteToken(0x80)), "😀");
    // A sequence cut short by an ASCII piece: one U+FFFD for the maximal valid prefix, then the piece.
    EXPECT_EQ(decoder.push(byteToken(0xE4)), "");
    EXPECT_EQ(decoder.push(byteToken(0xB8)), "");
    EXPECT_EQ(decoder.push(a), std::string(kReplacement) + tok.tokenToPiece(a));
    // Bytes that never start a sequence are replaced at once.
    EXPECT_EQ(decoder.push(byteToken(0xFF)), kReplacement);
    EXPECT_EQ(decoder.push(byteToken(0x80)), kReplacement);
    // An incomplete tail is flushed as one U+FFFD.
    EXPECT_EQ(decoder.push(byteToken(0xE4)), "");
    EXPECT_EQ(decoder.flush(), kReplacement);
    EXPECT_EQ(decoder.flush(), "");

    // Overlong (C0 80), surrogate (ED A0 80) and too large (F4 90 80 80) forms.
    const std::vector<int32_t> bad = {byteToken(0xC0), byteToken(0x80), byteToken(0xED), byteToken(0xA0),
                                      byteToken(0x80), byteToken(0xF4), byteToken(0x90), byteToken(0x80),
                                      byteToken(0x80)};
    const std::string decoded = streamAndCheck(tok, bad);
    EXPECT_EQ(decoded.size() % kReplacement.size(), 0u);
    EXPECT_EQ(decoded.size() / kReplacement.size(), bad.size());  // every byte is its own maximal subpart
}

TEST(TokenizerTest, StreamingMatchesDecodeOnRandomTokens) {
    const Tokenizer tok = loadGgufVocab("stories260K.gguf");
    std::mt19937 rng(1234);
    // Mostly byte tokens (3..258), so that valid, invalid and split sequences are all common.
    std::uniform_int_distribution<int32_t> byteIds(3, 258);
    std::uniform_int_distribution<int32_t> anyIds(-2, tok.vocabSize() + 1);
    std::bernoulli_distribution pickByte(0.8);
    for (int trial = 0; trial < 300; ++trial) {
        std::vector<int32_t> ids(trial % 24);
        for (int32_t& id : ids)
            id = pickByte(rng) ? byteIds(rng) : anyIds(rng);
        const std::string text = streamAndCheck(tok, ids, {.continuation = trial % 2 == 0});
        EXPECT_TRUE(isValidUtf8(text));
    }
}

// ---- errors -----------------------------------------------------------------------------------------------------

GgufValue stringArray(const std::vector<std::string>& items) {
    GgufValue value;
    value.type = GgufValueType::Array;
    value.arrayType = GgufValueType::String;
    for (const std::string& item : items) {
        GgufValue v;
        v.type = GgufValueType::String;
        v.s = item;
        value.items.push_back(v);
    }
    return value;
}

GgufValue floatArray(size_t n) {
    GgufValue value;
    value.type = GgufValueType::Array;
    value.arrayType = GgufValueType::Float32;
    value.items.resize(n);
    for (GgufValue& v : value.items)
        v.type = GgufValueType::Float32;
    return value;
}

Result<VocabSpec> readWrittenVocab(const GgufWriter& writer, const std::string& name) {
    const std::string path = std::string(ROUNDCHAT_BINARY_DIR) + "/tokenizer_test_" + name + ".gguf";
    if (Status st = writer.write(path); !st)
        return st.error();
    Result<VocabSpec> spec = readGgufVocab(path);
    std::filesystem::remove(path);
    return spec;
}

TEST(TokenizerTest, ReadVocabDefaultsAndErrors) {
    const std::vector<std::string> pieces = {"<unk>", "<s>", "</s>", "\xE2\x96\x81" "a", "b"};
    {
        GgufWriter writer;
        writer.setString("tokenizer.ggml.model", "llama");
        writer.setValue("tokenizer.ggml.tokens", stringArray(pieces));
        Result<VocabSpec> spec = readWrittenVocab(writer, "defaults");
        ASSERT_TRUE(spec.ok()) << spec.error().toString();
        EXPECT_EQ(spec->bos, 1);
        EXPECT_EQ(spec->eos, 2);
        EXPECT_EQ(spec->unk, 0);
        EXPECT_EQ(spec->pad, -1);
        EXPECT_TRUE(spec->addBos);
        EXPECT_TRUE(spec->addSpacePrefix);
        EXPECT_EQ(spec->scores, std::vector<float>(pieces.size(), 0.0f));
        EXPECT_EQ(spec->types, (std::vector<int32_t>{2, 3, 3, 1, 1}));
        Result<Tokenizer> tok = Tokenizer::fromVocab(*spec);
        ASSERT_TRUE(tok.ok()) << tok.error().toString();
        EXPECT_EQ(encode(*tok, "ab"), (std::vector<int32_t>{3, 4}));
    }
    {
        GgufWriter writer;
        writer.setString("tokenizer.ggml.model", "gpt2");
        writer.setValue("tokenizer.ggml.tokens", stringArray(pieces));
        Result<VocabSpec> spec = readWrittenVocab(writer, "gpt2");
        ASSERT_FALSE(spec.ok());
        EXPECT_EQ(spec.error().code, ErrorCode::Unsupported);
        EXPECT_NE(spec.error().detail.find("gpt2"), std::string::npos);
    }
    {
        GgufWriter writer;
        writer.setString("tokenizer.ggml.model", "llama");
        writer.setValue("tokenizer.ggml.tokens", stringArray(pieces));
        writer.setValue("tokenizer.ggml.scores", floatArray(pieces.size() - 1));
        Result<VocabSpec> spec = readWrittenVocab(writer, "short_scores");
        ASSERT_FALSE(spec.ok());
        EXPECT_EQ(spec.error().code, ErrorCode::CorruptFile);
    }
    {
        GgufWriter writer;
        writer.setString("tokenizer.ggml.model", "llama");
        writer.setValue("tokenizer.ggml.tokens", stringArray(pieces));
        writer.setUInt32("tokenizer.ggml.eos_token_id", 7);
        Result<VocabSpec> spec = readWrittenVocab(writer, "bad_eos");
        ASSERT_FALSE(spec.ok());
        EXPECT_EQ(spec.error().code, ErrorCode::CorruptFile);
    }
}

TEST(TokenizerTest, InvalidVocabulariesAndFiles) {
    const VocabSpec good = {.pieces = {"<unk>", "<s>", "</s>", "a", "b"},
                            .scores = {0, 0, 0, 0, 0},
                            .types = {2, 3, 3, 1, 1}};
    ASSERT_TRUE(Tokenizer::fromVocab(good).ok());
    const auto expectCorrupt = [](const VocabSpec& spec, const char* what) {
        Result<Tokenizer> tok = Tokenizer::fromVocab(spec);
        ASSERT_FALSE(tok.ok()) << what;
        EXPECT_EQ(tok.error().code, ErrorCode::CorruptFile) << what;
    };
    VocabSpec spec = good;
    spec.scores.pop_back();
    expectCorrupt(spec, "score count");
    spec = good;
    spec.pieces[4] = "a";
    expectCorrupt(spec, "duplicate piece");
    spec = good;
    spec.pieces[3] = "";
    expectCorrupt(spec, "empty piece");
    spec = good;
    spec.types[3] = 6;
    expectCorrupt(spec, "byte token not spelled <0xNN>");
    spec = good;
    spec.types[3] = 9;
    expectCorrupt(spec, "unknown type");
    spec = good;
    spec.bos = 5;
    expectCorrupt(spec, "bos out of range");
    spec = good;
    spec.types[0] = 1;
    expectCorrupt(spec, "no unknown token");
    expectCorrupt(VocabSpec{}, "empty vocabulary");

    Result<Tokenizer> missing = Tokenizer::fromModelFile(kModels + "no_such_tokenizer.model");
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().code, ErrorCode::FileNotFound);
    // A GGUF file is not a ModelProto.
    Result<Tokenizer> notProto = Tokenizer::fromModelFile(kModels + "stories260K.gguf");
    ASSERT_FALSE(notProto.ok());
    EXPECT_EQ(notProto.error().code, ErrorCode::CorruptFile);
}

}  // namespace
}  // namespace inference
