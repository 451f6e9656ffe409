#include "inference/gguf.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "inference/sha256.h"
#include "kernels/quant_ref.h"

namespace inference {
namespace {

const std::string kStoriesPath = std::string(ROUNDCHAT_SHARED_DIR) + "/models/stories260K.gguf";
constexpr uint64_t kStoriesDataOffset = 14176;

std::vector<uint8_t> readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string tempPath(const std::string& name) {
    return (std::filesystem::path(testing::TempDir()) / ("gguf_parser_test_" + name)).string();
}

// Parses a private copy sized exactly to `size` bytes, so the sanitizer build catches any read past the end.
Result<GgufFile> parseCopy(const std::vector<uint8_t>& bytes, size_t size) {
    auto copy = std::make_unique<std::vector<uint8_t>>(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(size));
    return GgufFile::parse(*copy);  // the result must not be used after `copy` dies: callers only inspect errors
}

void expectCorruptWithOffset(const Result<GgufFile>& r, const std::string& context) {
    ASSERT_FALSE(r.ok()) << context;
    EXPECT_EQ(r.error().code, ErrorCode::CorruptFile) << context << ": " << r.error().detail;
    EXPECT_NE(r.error().detail.find("offset"), std::string::npos) << context << ": " << r.error().detail;
}

// Byte offset of the tensor info of `name` (at its name-length field) in a GGUF header.
size_t tensorInfoOffset(const std::vector<uint8_t>& bytes, const std::string& name) {
    std::vector<uint8_t> needle(8);
    const uint64_t length = name.size();
    std::memcpy(needle.data(), &length, 8);
    needle.insert(needle.end(), name.begin(), name.end());
    auto it = std::search(bytes.begin(), bytes.begin() + kStoriesDataOffset, needle.begin(), needle.end());
    return static_cast<size_t>(it - bytes.begin());
}

// ---- the real fixture ----

TEST(GgufStories, HeaderAndHyperparameters) {
    Result<GgufFile> f = GgufFile::open(kStoriesPath);
    ASSERT_TRUE(f.ok()) << f.error().toString();
    EXPECT_EQ(f->version(), 3u);
    EXPECT_EQ(f->metadata().size(), 19u);
    EXPECT_EQ(f->tensors().size(), 48u);
    EXPECT_EQ(f->alignment(), 32u);
    EXPECT_EQ(f->dataOffset(), kStoriesDataOffset);
    EXPECT_EQ(*f->getString("general.architecture"), "llama");
    EXPECT_EQ(*f->getUInt("llama.embedding_length"), 64u);
    EXPECT_EQ(*f->getUInt("llama.block_count"), 5u);
    EXPECT_EQ(*f->getUInt("llama.attention.head_count"), 8u);
    EXPECT_EQ(*f->getUInt("llama.attention.head_count_kv"), 4u);
    EXPECT_EQ(*f->getUInt("llama.feed_forward_length"), 172u);
    EXPECT_EQ(*f->getUInt("llama.rope.dimension_count"), 8u);
    EXPECT_EQ(*f->getInt("llama.context_length"), 2048);
    EXPECT_EQ(*f->getFloat("llama.attention.layer_norm_rms_epsilon"), static_cast<double>(1e-5f));
    EXPECT_EQ(f->find("llama.rope.freq_base"), nullptr);
    const std::vector<std::string> tokens = *f->getStringArray("tokenizer.ggml.tokens");
    ASSERT_EQ(tokens.size(), 512u);
    EXPECT_EQ(tokens[1], "<s>");
    EXPECT_EQ(tokens[3], "<0x00>");
    const std::vector<int32_t> types = *f->getIntArray("tokenizer.ggml.token_type");
    ASSERT_EQ(types.size(), 512u);
    EXPECT_EQ(types[0], 2);
    EXPECT_EQ(types[2], 3);
    EXPECT_EQ(types[3], 6);
    EXPECT_EQ(f->getFloatArray("tokenizer.ggml.scores")->size(), 512u);
}

TEST(GgufStories, TensorShapes) {
    Result<GgufFile> f = GgufFile::open(kStoriesPath);
    ASSERT_TRUE(f.ok()) << f.error().toString();
    auto shapeOf = [&](const std::string& name) {
        const GgufTensorInfo* t = f->findTensor(name);
        EXPECT_NE(t, nullptr) << name;
        return t != nullptr ? t->shape : std::vector<uint64_t>{};
    };
    using Shape = std::vector<uint64_t>;
    EXPECT_EQ(shapeOf("token_embd.weight"), (Shape{64, 512}));
    EXPECT_EQ(shapeOf("output_norm.weight"), (Shape{64}));
    EXPECT_EQ(shapeOf("output.weight"), (Shape{64, 512}));
    for (int l = 0; l < 5; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        EXPECT_EQ(shapeOf(p + "attn_norm.weight"), (Shape{64}));
        EXPECT_EQ(shapeOf(p + "attn_q.weight"), (Shape{64, 64}));
        EXPECT_EQ(shapeOf(p + "attn_k.weight"), (Shape{64, 32}));
        EXPECT_EQ(shapeOf(p + "attn_v.weight"), (Shape{64, 32}));
        EXPECT_EQ(shapeOf(p + "attn_output.weight"), (Shape{64, 64}));
        EXPECT_EQ(shapeOf(p + "ffn_norm.weight"), (Shape{64}));
        EXPECT_EQ(shapeOf(p + "ffn_gate.weight"), (Shape{64, 172}));
        EXPECT_EQ(shapeOf(p + "ffn_up.weight"), (Shape{64, 172}));
        EXPECT_EQ(shapeOf(p + "ffn_down.weight"), (Shape{172, 64}));
    }
    EXPECT_EQ(f->findTensor("blk.5.attn_q.weight"), nullptr);
    for (const GgufTensorInfo& t : f->tensors()) {
        EXPECT_EQ(t.type, GgmlType::F32) << t.name;
        EXPECT_EQ(t.nbytes, t.elementCount() * 4) << t.name;
        EXPECT_EQ(f->tensorData(t).size(), t.nbytes) << t.name;
        EXPECT_EQ(t.offset % 32, 0u) << t.name;
    }
    // RMSNorm weights of a trained model are finite and mostly positive.
    const std::span<const uint8_t> norm = f->tensorData(*f->findTensor("output_norm.weight"));
    std::vector<float> w(64);
    std::memcpy(w.data(), norm.data(), norm.size());
    int positive = 0;
    for (float v : w) {
        EXPECT_TRUE(std::isfinite(v));
        positive += v > 0.0f;
    }
    EXPECT_GT(positive, 48);
}

TEST(GgufStories, TypedGettersReportProblems) {
    Result<GgufFile> f = GgufFile::open(kStoriesPath);
    ASSERT_TRUE(f.ok());
    Result<uint64_t> wrong = f->getUInt("general.architecture");
    ASSERT_FALSE(wrong.ok());
    EXPECT_EQ(wrong.error().code, ErrorCode::CorruptFile);
    EXPECT_NE(wrong.error().detail.find("general.architecture"), std::string::npos);
    Result<std::string> missing = f->getString("llama.no_such_key");
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().detail.find("llama.no_such_key"), std::string::npos);
    EXPECT_FALSE(f->getStringArray("tokenizer.ggml.scores").ok());
    EXPECT_FALSE(f->getBool("llama.block_count").ok());
    EXPECT_DOUBLE_EQ(*f->getFloat("llama.block_count"), 5.0);  // integers widen to float
}

TEST(GgufStories, MissingFileIsFileNotFound) {
    Result<GgufFile> f = GgufFile::open(tempPath("does_not_exist.gguf"));
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.error().code, ErrorCode::FileNotFound);
}

TEST(GgufStories, FingerprintIsStableAndTracksLayout) {
    const std::vector<uint8_t> bytes = readFile(kStoriesPath);
    Result<GgufFile> a = GgufFile::parse(bytes);
    Result<GgufFile> b = GgufFile::open(kStoriesPath);
    ASSERT_TRUE(a.ok() && b.ok());
    EXPECT_EQ(a->fingerprint().size(), 64u);
    EXPECT_EQ(a->fingerprint(), b->fingerprint());
    // Pinned: the fingerprint keys caches on disk, so the algorithm must not drift silently.
    EXPECT_EQ(a->fingerprint(), "cf02ece4985e0383425bcb110b0495a82610b64c76a5784681df2a14f1742874");

    // token_embd [64, 512] -> [64, 256]: still a valid file (less data, nothing overlaps), another layout.
    std::vector<uint8_t> shrunk = bytes;
    const size_t info = tensorInfoOffset(shrunk, "token_embd.weight");
    const size_t ne1 = info + 8 + std::strlen("token_embd.weight") + 4 + 8;
    const uint64_t rows = 256;
    std::memcpy(shrunk.data() + ne1, &rows, 8);
    Result<GgufFile> c = GgufFile::parse(shrunk);
    ASSERT_TRUE(c.ok()) << c.error().toString();
    EXPECT_EQ(c->findTensor("token_embd.weight")->shape[1], 256u);
    EXPECT_NE(c->fingerprint(), a->fingerprint());

    // Tokenizer strings are not part of the layout.
    std::vector<uint8_t> renamed = bytes;
    const std::string unk = "<unk>";
    auto it = std::search(renamed.begin(), renamed.end(), unk.begin(), unk.end());
    ASSERT_NE(it, renamed.end());
    it[3] = 'K';
    Result<GgufFile> d = GgufFile::parse(renamed);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->getStringArray("tokenizer.ggml.tokens")->at(0), "<unK>");
    EXPECT_EQ(d->fingerprint(), a->fingerprint());
}

TEST(GgufStories, EveryTruncationIsCorruptFileWithOffset) {
    const std::vector<uint8_t> bytes = readFile(kStoriesPath);
    ASSERT_EQ(bytes.size(), 1185376u);
    for (size_t size = 0; size < kStoriesDataOffset + 64; ++size) {
        expectCorruptWithOffset(parseCopy(bytes, size), "truncated to " + std::to_string(size));
        if (testing::Test::HasFailure())
            return;
    }
    for (size_t size = kStoriesDataOffset + 64; size < bytes.size(); size += 4099)
        expectCorruptWithOffset(parseCopy(bytes, size), "truncated to " + std::to_string(size));
    expectCorruptWithOffset(parseCopy(bytes, bytes.size() - 1), "missing last byte");
    EXPECT_TRUE(parseCopy(bytes, bytes.size()).ok());
}

TEST(GgufStories, TruncationMessagesNameWhatWasRead) {
    const std::vector<uint8_t> bytes = readFile(kStoriesPath);
    const size_t info = tensorInfoOffset(bytes, "blk.0.attn_q.weight");
    const size_t dimsEnd = info + 8 + std::strlen("blk.0.attn_q.weight") + 4 + 16;
    Result<GgufFile> r = parseCopy(bytes, dimsEnd + 2);  // inside the type field
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().detail, "truncated file: tensor info 'blk.0.attn_q.weight' at offset " +
                                    std::to_string(dimsEnd) + " needs 4 bytes");
}

TEST(GgufStories, ByteFlipsNeverCrash) {
    std::vector<uint8_t> bytes = readFile(kStoriesPath);
    std::mt19937 rng(1234);
    std::vector<size_t> positions;
    for (size_t p = 0; p < 2048; ++p) positions.push_back(p);
    std::uniform_int_distribution<size_t> anywhere(0, kStoriesDataOffset + 63);
    for (int k = 0; k < 3000; ++k) positions.push_back(anywhere(rng));
    int accepted = 0;
    for (size_t p : positions) {
        for (uint8_t mask : {0x01, 0x80, 0xff}) {
            bytes[p] ^= mask;  // in place: the buffer is exactly the file, so over-reads hit the heap redzone
            Result<GgufFile> r = GgufFile::parse(bytes);
            if (r.ok()) {
                ++accepted;
                for (const GgufTensorInfo& t : r->tensors()) {
                    const std::span<const uint8_t> data = r->tensorData(t);
                    ASSERT_EQ(data.size(), t.nbytes);
                    ASSERT_GE(data.data(), bytes.data());
                    ASSERT_LE(data.data() + data.size(), bytes.data() + bytes.size());
                }
                (void)r->fingerprint();
            } else {
                EXPECT_FALSE(r.error().detail.empty());
            }
            bytes[p] ^= mask;
        }
    }
    EXPECT_GT(accepted, 0);  // flips inside string contents and float values are harmless
}

// ---- hand-built headers ----

// Little-endian GGUF byte builder for malicious and edge-case headers.
struct Builder {
    std::vector<uint8_t> b;
    Builder& u8(uint8_t v) { return raw(&v, 1); }
    Builder& u32(uint32_t v) { return raw(&v, 4); }
    Builder& u64(uint64_t v) { return raw(&v, 8); }
    Builder& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
    Builder& raw(const void* p, size_t n) {
        b.insert(b.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
        return *this;
    }
    Builder& header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
        return u32(0x46554747).u32(version).u64(tensors).u64(kvs);
    }
    Builder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type, uint64_t offset) {
        str(name).u32(static_cast<uint32_t>(dims.size()));
        for (uint64_t d : dims) u64(d);
        return u32(type).u64(offset);
    }
    Builder& padTo(size_t alignment) {
        while (b.size() % alignment != 0) u8(0);
        return *this;
    }
    Builder& zeros(size_t n) {
        b.resize(b.size() + n);
        return *this;
    }
};

Result<GgufFile> parse(const Builder& builder) {
    return GgufFile::parse(builder.b);
}

void expectError(const Result<GgufFile>& r, ErrorCode code, const std::string& needle) {
    ASSERT_FALSE(r.ok()) << "expected an error containing '" << needle << "'";
    EXPECT_EQ(r.error().code, code) << r.error().detail;
    EXPECT_NE(r.error().detail.find(needle), std::string::npos) << r.error().detail;
}

TEST(GgufMalicious, MagicAndVersion) {
    Builder bad;
    bad.u32(0x46554746).u32(3).u64(0).u64(0);
    expectError(parse(bad), ErrorCode::CorruptFile, "magic");
    Builder v1;
    v1.header(0, 0, 1);
    expectError(parse(v1), ErrorCode::Unsupported, "unsupported GGUF version 1");
    Builder v4;
    v4.header(0, 0, 4);
    expectError(parse(v4), ErrorCode::Unsupported, "version 4");
    Builder v2;
    v2.header(1, 0, 2).tensor("t", {32}, 0, 0).padTo(32).zeros(128);
    Result<GgufFile> ok = parse(v2);
    ASSERT_TRUE(ok.ok()) << ok.error().toString();
    EXPECT_EQ(ok->version(), 2u);
}

TEST(GgufMalicious, HugeStringLength) {
    Builder b;
    b.header(0, 1).u64(uint64_t{1} << 62).raw("abc", 3);
    expectError(parse(b), ErrorCode::CorruptFile, "metadata key #0 at offset 24 is a string of");
    Builder value;
    value.header(0, 1).str("k").u32(8).u64(~uint64_t{0});
    expectError(parse(value), ErrorCode::CorruptFile, "value of metadata key 'k'");
}

TEST(GgufMalicious, HugeCounts) {
    Builder arrays;
    arrays.header(0, 1).str("a").u32(9).u32(0).u64(uint64_t{1} << 60).u8(1);
    expectError(parse(arrays), ErrorCode::CorruptFile, "declares 1152921504606846976 items");
    Builder kvs;
    kvs.header(0, ~uint64_t{0});
    expectError(parse(kvs), ErrorCode::CorruptFile, "truncated file: metadata key #0 at offset 24 needs 8 bytes");
    Builder tensors;
    tensors.header(uint64_t{1} << 40, 0).tensor("t", {32}, 0, 0);
    expectError(parse(tensors), ErrorCode::CorruptFile, "truncated file: tensor info #1 name at offset 57 needs 8");
}

TEST(GgufMalicious, BadValues) {
    Builder type;
    type.header(0, 1).str("k").u32(13).u32(0);
    expectError(parse(type), ErrorCode::CorruptFile, "unknown value type 13");
    Builder arrayType;
    arrayType.header(0, 1).str("k").u32(9).u32(77).u64(0);
    expectError(parse(arrayType), ErrorCode::CorruptFile, "unknown value type 77");
    Builder boolean;
    boolean.header(0, 1).str("k").u32(7).u8(2);
    expectError(parse(boolean), ErrorCode::CorruptFile, "bool with value 2");
    Builder dup;
    dup.header(0, 2).str("k").u32(4).u32(1).str("k").u32(4).u32(2);
    expectError(parse(dup), ErrorCode::CorruptFile, "duplicate metadata key 'k' at offset");
    Builder align;
    align.header(0, 1).str("general.alignment").u32(4).u32(48);
    expectError(parse(align), ErrorCode::CorruptFile, "power of two");
    Builder alignType;
    alignType.header(0, 1).str("general.alignment").u32(8).str("32");
    expectError(parse(alignType), ErrorCode::CorruptFile, "power of two");
}

TEST(GgufMalicious, NestedArrays) {
    // [[1, 2], [3]] as an array of arrays of int16.
    Builder ok;
    ok.header(0, 1).str("n").u32(9).u32(9).u64(2);
    ok.u32(3).u64(2).raw("\x01\x00\x02\x00", 4).u32(3).u64(1).raw("\x03\x00", 2);
    Result<GgufFile> r = parse(ok);
    ASSERT_TRUE(r.ok()) << r.error().toString();
    const GgufValue* v = r->find("n");
    ASSERT_NE(v, nullptr);
    ASSERT_EQ(v->items.size(), 2u);
    EXPECT_EQ(v->items[0].arrayType, GgufValueType::Int16);
    EXPECT_EQ(v->items[0].items[1].i, 2);
    EXPECT_EQ(v->items[1].items[0].i, 3);

    Builder deep;
    deep.header(0, 1).str("deep").u32(9);
    for (int level = 0; level < 40; ++level) deep.u32(9).u64(1);
    deep.u32(0).u64(0);
    expectError(parse(deep), ErrorCode::CorruptFile, "nests arrays deeper than");
}

TEST(GgufMalicious, BadTensorInfos) {
    Builder dims5;
    dims5.header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0);
    expectError(parse(dims5), ErrorCode::CorruptFile, "has 5 dimensions");
    Builder zero;
    zero.header(1, 0).tensor("t", {4, 0}, 0, 0);
    expectError(parse(zero), ErrorCode::CorruptFile, "zero dimension ne[1]");
    Builder overflow;
    overflow.header(1, 0).tensor("t", {uint64_t{1} << 32, uint64_t{1} << 32, uint64_t{1} << 32}, 0, 0);
    expectError(parse(overflow), ErrorCode::CorruptFile, "overflows");
    Builder bytesOverflow;  // 2^62 F32 elements fit int64, but not their byte count
    bytesOverflow.header(1, 0).tensor("t", {uint64_t{1} << 62}, 0, 0);
    expectError(parse(bytesOverflow), ErrorCode::CorruptFile, "overflows");
    Builder type;
    type.header(1, 0).tensor("t", {32}, 99, 0);
    expectError(parse(type), ErrorCode::Unsupported, "tensor type 99 (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K");
    Builder block;
    block.header(1, 0).tensor("t", {48}, 8, 0).padTo(32).zeros(64);
    expectError(parse(block), ErrorCode::CorruptFile, "not a multiple of the Q8_0 block size 32");
    Builder past;
    past.header(1, 0).tensor("t", {32}, 0, 64).padTo(32).zeros(128);
    expectError(parse(past), ErrorCode::CorruptFile, "needs 128 bytes but the file ends at offset");
    Builder hugeOffset;
    hugeOffset.header(1, 0).tensor("t", {32}, 0, ~uint64_t{31}).padTo(32).zeros(128);
    expectError(parse(hugeOffset), ErrorCode::CorruptFile, "the file ends at offset");
    Builder misaligned;
    misaligned.header(1, 0).tensor("t", {8}, 0, 4).padTo(32).zeros(64);
    expectError(parse(misaligned), ErrorCode::CorruptFile, "not aligned to 32");
    Builder dupName;
    dupName.header(2, 0).tensor("t", {8}, 0, 0).tensor("t", {8}, 0, 32).padTo(32).zeros(64);
    expectError(parse(dupName), ErrorCode::CorruptFile, "duplicate tensor name 't'");
    Builder overlap;
    overlap.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {8}, 0, 32).padTo(32).zeros(96);
    expectError(parse(overlap), ErrorCode::CorruptFile, "overlaps tensor 'a'");
}

TEST(GgufMalicious, CustomAlignment) {
    Builder b;
    b.header(2, 1).str("general.alignment").u32(4).u32(64);
    b.tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 64).padTo(64).zeros(128);
    Result<GgufFile> r = parse(b);
    ASSERT_TRUE(r.ok()) << r.error().toString();
    EXPECT_EQ(r->alignment(), 64u);
    EXPECT_EQ(r->dataOffset() % 64, 0u);
    Builder bad;
    bad.header(1, 1).str("general.alignment").u32(4).u32(64).tensor("a", {8}, 0, 32).padTo(64).zeros(128);
    expectError(parse(bad), ErrorCode::CorruptFile, "not aligned to 64");
}

// ---- SHA-256 (FIPS 180-4 / NIST example vectors) ----

std::string sha256Hex(const std::string& s) {
    Sha256 sha;
    sha.update(s.data(), s.size());
    return sha.finishHex();
}

TEST(Sha256, KnownAnswers) {
    EXPECT_EQ(sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    EXPECT_EQ(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
              "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    // A million 'a' fed in uneven pieces exercises the block buffering.
    Sha256 sha;
    const std::string chunk(997, 'a');
    size_t left = 1000000;
    while (left > 0) {
        const size_t n = std::min(left, chunk.size());
        sha.update(chunk.data(), n);
        left -= n;
    }
    EXPECT_EQ(sha.finishHex(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// ---- writer ----

GgufValue scalar(GgufValueType type, uint64_t u, int64_t i, double f) {
    GgufValue v;
    v.type = type;
    v.u = u;
    v.i = i;
    v.f = f;
    return v;
}

TEST(GgufWriter, RoundTripsEveryValueAndTensorType) {
    GgufWriter w;
    w.setValue("u8", scalar(GgufValueType::UInt8, 250, 0, 0));
    w.setValue("i8", scalar(GgufValueType::Int8, 0, -120, 0));
    w.setValue("u16", scalar(GgufValueType::UInt16, 65000, 0, 0));
    w.setValue("i16", scalar(GgufValueType::Int16, 0, -32000, 0));
    w.setUInt32("u32", 4000000000u);
    w.setValue("i32", scalar(GgufValueType::Int32, 0, -2000000000, 0));
    w.setFloat32("f32", 0.125f);
    w.setBool("bool", true);
    w.setString("str", std::string("h\0llo", 5));
    w.setValue("u64", scalar(GgufValueType::UInt64, ~uint64_t{0}, 0, 0));
    w.setValue("i64", scalar(GgufValueType::Int64, 0, INT64_MIN, 0));
    w.setValue("f64", scalar(GgufValueType::Float64, 0, 0, 1e300));
    GgufValue strings;
    strings.type = GgufValueType::Array;
    strings.arrayType = GgufValueType::String;
    for (const char* s : {"a", "", "ccc"}) {
        GgufValue item;
        item.type = GgufValueType::String;
        item.s = s;
        strings.items.push_back(item);
    }
    w.setValue("strings", strings);
    GgufValue nested;
    nested.type = GgufValueType::Array;
    nested.arrayType = GgufValueType::Array;
    nested.items = {strings, strings};
    w.setValue("nested", nested);
    w.setUInt32("u32", 7);  // replaces in place

    const std::vector<std::pair<GgmlType, std::vector<uint64_t>>> tensors = {
        {GgmlType::F32, {3}},        {GgmlType::F16, {5, 2}},
        {GgmlType::BF16, {2, 3, 4}}, {GgmlType::Q8_0, {64, 2, 1, 2}},
        {GgmlType::Q4_0, {32, 3}},   {GgmlType::Q4_K, {256, 2}},
        {GgmlType::Q6_K, {512}},
    };
    std::vector<std::vector<uint8_t>> data;
    std::mt19937 rng(5);
    std::normal_distribution<float> normal;
    for (size_t k = 0; k < tensors.size(); ++k) {
        const auto& [type, shape] = tensors[k];
        uint64_t n = 1;
        for (uint64_t d : shape) n *= d;
        std::vector<float> x(n);
        for (float& v : x) v = normal(rng);
        std::vector<uint8_t> bytes(static_cast<size_t>(kernels::rowBytes(type, static_cast<int64_t>(n))));
        kernels::quantizeRowRef(type, x.data(), bytes.data(), static_cast<int64_t>(n));
        data.push_back(bytes);
        const std::string name = std::string("t.") + kernels::typeName(type);
        if (k % 2 == 0) {
            ASSERT_TRUE(w.addTensor(name, type, shape, bytes).ok());
        } else {
            auto source = [bytes](std::span<uint8_t> out) {
                std::memcpy(out.data(), bytes.data(), bytes.size());
                return Status{};
            };
            ASSERT_TRUE(w.addTensorSource(name, type, shape, source).ok());
        }
    }
    const std::string path = tempPath("roundtrip.gguf");
    ASSERT_TRUE(w.write(path).ok());

    Result<GgufFile> f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().toString();
    EXPECT_EQ(f->version(), 3u);
    ASSERT_EQ(f->metadata().size(), 14u);
    EXPECT_EQ(f->metadata()[4].key, "u32");
    EXPECT_EQ(*f->getUInt("u8"), 250u);
    EXPECT_EQ(*f->getInt("i8"), -120);
    EXPECT_EQ(*f->getUInt("u16"), 65000u);
    EXPECT_EQ(*f->getInt("i16"), -32000);
    EXPECT_EQ(*f->getUInt("u32"), 7u);
    EXPECT_EQ(*f->getInt("i32"), -2000000000);
    EXPECT_EQ(*f->getFloat("f32"), 0.125);
    EXPECT_TRUE(*f->getBool("bool"));
    EXPECT_EQ(*f->getString("str"), std::string("h\0llo", 5));
    EXPECT_EQ(*f->getUInt("u64"), ~uint64_t{0});
    EXPECT_FALSE(f->getInt("u64").ok());  // does not fit int64
    EXPECT_EQ(*f->getInt("i64"), INT64_MIN);
    EXPECT_EQ(*f->getFloat("f64"), 1e300);
    EXPECT_EQ(*f->getStringArray("strings"), (std::vector<std::string>{"a", "", "ccc"}));
    EXPECT_EQ(f->find("u8")->type, GgufValueType::UInt8);
    EXPECT_EQ(f->find("i16")->type, GgufValueType::Int16);
    const GgufValue* n = f->find("nested");
    ASSERT_NE(n, nullptr);
    ASSERT_EQ(n->items.size(), 2u);
    EXPECT_EQ(n->items[1].items[2].s, "ccc");
    ASSERT_EQ(f->tensors().size(), tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) {
        const GgufTensorInfo& t = f->tensors()[k];
        EXPECT_EQ(t.type, tensors[k].first);
        EXPECT_EQ(t.shape, tensors[k].second);
        EXPECT_EQ(t.offset % 32, 0u);
        const std::span<const uint8_t> bytes = f->tensorData(t);
        EXPECT_TRUE(std::equal(bytes.begin(), bytes.end(), data[k].begin(), data[k].end())) << t.name;
    }
    std::filesystem::remove(path);
}

TEST(GgufWriter, RewritingStoriesReproducesTheFile) {
    // llama.cpp wrote this file with the same layout rules, so our writer must reproduce its header byte for byte.
    const std::vector<uint8_t> original = readFile(kStoriesPath);
    Result<GgufFile> f = GgufFile::parse(original);
    ASSERT_TRUE(f.ok());
    GgufWriter w;
    for (const GgufKeyValue& kv : f->metadata()) w.setValue(kv.key, kv.value);
    for (const GgufTensorInfo& t : f->tensors()) {
        const std::span<const uint8_t> d = f->tensorData(t);
        ASSERT_TRUE(w.addTensor(t.name, t.type, t.shape, {d.begin(), d.end()}).ok());
    }
    const std::string path = tempPath("stories_copy.gguf");
    ASSERT_TRUE(w.write(path).ok());
    const std::vector<uint8_t> copy = readFile(path);
    ASSERT_GE(copy.size(), original.size());
    EXPECT_TRUE(std::equal(original.begin(), original.end(), copy.begin()));
    Result<GgufFile> g = GgufFile::parse(copy);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(g->fingerprint(), f->fingerprint());
    std::filesystem::remove(path);
}

TEST(GgufWriter, RejectsBadTensorsAndCleansUpOnFailure) {
    GgufWriter w;
    EXPECT_EQ(w.addTensor("a", GgmlType::F32, {4}, std::vector<uint8_t>(15)).error().code, ErrorCode::InvalidArgument);
    EXPECT_EQ(w.addTensor("q", GgmlType::Q4_0, {48}, std::vector<uint8_t>(27)).error().code,
              ErrorCode::InvalidArgument);
    EXPECT_EQ(w.addTensor("z", GgmlType::F32, {}, {}).error().code, ErrorCode::InvalidArgument);
    ASSERT_TRUE(w.addTensor("a", GgmlType::F32, {4}, std::vector<uint8_t>(16)).ok());
    EXPECT_EQ(w.addTensor("a", GgmlType::F32, {4}, std::vector<uint8_t>(16)).error().code, ErrorCode::InvalidArgument);
    auto failing = [](std::span<uint8_t>) -> Status { return makeError(ErrorCode::Cancelled, "stop"); };
    ASSERT_TRUE(w.addTensorSource("b", GgmlType::F16, {8}, failing).ok());

    const std::filesystem::path dir = std::filesystem::path(tempPath("failing_dir"));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const Status st = w.write((dir / "m.gguf").string());
    ASSERT_FALSE(st.ok());
    EXPECT_EQ(st.error().code, ErrorCode::Cancelled);
    EXPECT_TRUE(std::filesystem::is_empty(dir));  // no destination, no temporary left behind
    std::filesystem::remove_all(dir);

    GgufWriter empty;
    const Status noDir = empty.write(tempPath("no/such/dir/m.gguf"));
    ASSERT_FALSE(noDir.ok());
    EXPECT_EQ(noDir.error().code, ErrorCode::IoError);

    GgufWriter badAlign;
    badAlign.setUInt32("general.alignment", 24);
    EXPECT_EQ(badAlign.write(tempPath("bad_align.gguf")).error().code, ErrorCode::InvalidArgument);
}

TEST(GgufWriter, HonoursGeneralAlignment) {
    GgufWriter w;
    w.setUInt32("general.alignment", 256);
    ASSERT_TRUE(w.addTensor("a", GgmlType::F32, {3}, std::vector<uint8_t>(12, 1)).ok());
    ASSERT_TRUE(w.addTensor("b", GgmlType::F32, {5}, std::vector<uint8_t>(20, 2)).ok());
    const std::string path = tempPath("align256.gguf");
    ASSERT_TRUE(w.write(path).ok());
    Result<GgufFile> f = GgufFile::open(path);
    ASSERT_TRUE(f.ok()) << f.error().toString();
    EXPECT_EQ(f->alignment(), 256u);
    EXPECT_EQ(f->dataOffset(), 256u);
    EXPECT_EQ(f->tensors()[1].offset, 256u);
    EXPECT_EQ(f->tensorData(f->tensors()[1])[19], 2);
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace inference
