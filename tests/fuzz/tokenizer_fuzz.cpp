// libFuzzer target for the tokenizer on stories260K's own vocabulary (SentencePiece BPE built from GGUF metadata).
// Input: byte 0 selects options (bit 0 addBos, bit 1 parseSpecial, bit 2 decode as continuation); the rest is both
// the text to encode and, read as little-endian 16-bit values, a token-id sequence to decode (ids out of range
// included). Checks: encoding succeeds with ids in range; decode() and Utf8StreamDecoder agree; decoded text is
// valid UTF-8 and survives encode/decode. Validity is checked through SentencePiece, which turns every invalid
// byte into U+FFFD when encoding, so an invalid byte in decoded text breaks the round trip.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "inference/gguf.h"
#include "inference/tokenizer.h"

#ifndef ROUNDCHAT_SHARED_DIR
#error "ROUNDCHAT_SHARED_DIR must name the shared/ folder (stories260K.gguf)"
#endif

namespace {

using inference::DecodeOptions;
using inference::EncodeOptions;
using inference::Tokenizer;

void check(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "tokenizer_fuzz: %s\n", what);
        std::abort();
    }
}

Tokenizer loadTokenizer() {
    auto file = inference::GgufFile::open(std::string(ROUNDCHAT_SHARED_DIR) + "/models/stories260K.gguf");
    check(file.ok(), "cannot open stories260K.gguf");
    auto spec = inference::readVocab(*file);
    check(spec.ok(), "cannot read the stories260K vocabulary");
    auto tokenizer = Tokenizer::fromVocab(*spec);
    check(tokenizer.ok(), "cannot build the stories260K tokenizer");
    return std::move(*tokenizer);
}

std::string replaceSpaceSymbols(std::string text) {
    constexpr std::string_view kSpaceSymbol = "\xE2\x96\x81";  // U+2581 encodes as a space, so decodes as one
    for (size_t pos = text.find(kSpaceSymbol); pos != std::string::npos; pos = text.find(kSpaceSymbol, pos))
        text.replace(pos, kSpaceSymbol.size(), " ");
    return text;
}

void checkDecode(const Tokenizer& tokenizer, const std::vector<int32_t>& ids, DecodeOptions options) {
    const std::string text = tokenizer.decode(ids, options);
    inference::Utf8StreamDecoder decoder(tokenizer, options);
    std::string streamed;
    for (int32_t id : ids)
        streamed += decoder.push(id);
    streamed += decoder.flush();
    check(streamed == text, "streamed text differs from decode()");

    auto again = tokenizer.encode(text);
    check(again.ok(), "encoding decoded text failed");
    check(tokenizer.decode(*again) == replaceSpaceSymbols(text), "decoded text does not survive encode/decode");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const Tokenizer tokenizer = loadTokenizer();
    if (size == 0)
        return 0;
    const EncodeOptions encodeOptions{.addBos = (data[0] & 1) != 0, .parseSpecial = (data[0] & 2) != 0};
    const DecodeOptions decodeOptions{.continuation = (data[0] & 4) != 0};
    const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

    auto ids = tokenizer.encode(text, encodeOptions);
    check(ids.ok(), "encode failed");
    for (int32_t id : *ids)
        check(id >= 0 && id < tokenizer.vocabSize(), "encode produced an id out of range");
    checkDecode(tokenizer, *ids, decodeOptions);

    std::vector<int32_t> rawIds;
    for (size_t i = 1; i + 1 < size; i += 2)
        rawIds.push_back(static_cast<int16_t>(data[i] | data[i + 1] << 8));
    checkDecode(tokenizer, rawIds, decodeOptions);
    return 0;
}
