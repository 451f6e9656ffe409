#include "inference/gguf.h"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <limits>
#include <new>
#include <numeric>
#include <sstream>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sha256.h"

namespace inference {

static_assert(std::endian::native == std::endian::little, "GGUF files are read and written little-endian");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint32_t kWriteVersion = 3;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;
constexpr int kMaxArrayDepth = 16;  // real files never nest arrays; the limit keeps recursion bounded
constexpr std::string_view kAlignmentKey = "general.alignment";
constexpr std::string_view kArchitectureKey = "general.architecture";
// Smallest possible encodings, used to bound allocations by what the rest of the file could hold.
constexpr uint64_t kMinKeyValueBytes = 8 + 4 + 1;        // empty key, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // empty name, n_dims = 0, type, offset

template <typename... Parts>
std::string concat(const Parts&... parts) {
    std::ostringstream os;
    (os << ... << parts);
    return os.str();
}

Error corrupt(std::string detail) {
    return makeError(ErrorCode::CorruptFile, std::move(detail));
}

bool isValidValueType(uint32_t raw) {
    return raw <= static_cast<uint32_t>(GgufValueType::Float64);
}

// Encoded size of a value of this type; for strings and arrays the size of an empty one.
uint64_t minValueBytes(GgufValueType type) {
    switch (type) {
        case GgufValueType::UInt8:
        case GgufValueType::Int8:
        case GgufValueType::Bool:
            return 1;
        case GgufValueType::UInt16:
        case GgufValueType::Int16:
            return 2;
        case GgufValueType::UInt32:
        case GgufValueType::Int32:
        case GgufValueType::Float32:
            return 4;
        case GgufValueType::String:
        case GgufValueType::UInt64:
        case GgufValueType::Int64:
        case GgufValueType::Float64:
            return 8;
        case GgufValueType::Array:
            return 4 + 8;
    }
    return 1;
}

const char* valueTypeName(GgufValueType type) {
    switch (type) {
        case GgufValueType::UInt8:
            return "uint8";
        case GgufValueType::Int8:
            return "int8";
        case GgufValueType::UInt16:
            return "uint16";
        case GgufValueType::Int16:
            return "int16";
        case GgufValueType::UInt32:
            return "uint32";
        case GgufValueType::Int32:
            return "int32";
        case GgufValueType::Float32:
            return "float32";
        case GgufValueType::Bool:
            return "bool";
        case GgufValueType::String:
            return "string";
        case GgufValueType::Array:
            return "array";
        case GgufValueType::UInt64:
            return "uint64";
        case GgufValueType::Int64:
            return "int64";
        case GgufValueType::Float64:
            return "float64";
    }
    return "unknown";
}

bool isUnsignedType(GgufValueType t) {
    return t == GgufValueType::UInt8 || t == GgufValueType::UInt16 || t == GgufValueType::UInt32 ||
           t == GgufValueType::UInt64;
}

bool isSignedType(GgufValueType t) {
    return t == GgufValueType::Int8 || t == GgufValueType::Int16 || t == GgufValueType::Int32 ||
           t == GgufValueType::Int64;
}

bool isFloatType(GgufValueType t) {
    return t == GgufValueType::Float32 || t == GgufValueType::Float64;
}

// Rounds `value` up to a multiple of the power of two `alignment`; false on overflow.
bool alignUp(uint64_t value, uint64_t alignment, uint64_t& out) {
    uint64_t bumped = 0;
    if (__builtin_add_overflow(value, alignment - 1, &bumped))
        return false;
    out = bumped & ~(alignment - 1);
    return true;
}

// Validates a shape for `type` and computes its encoded size. Returns an empty string when valid, else the problem.
std::string checkShape(GgmlType type, const std::vector<uint64_t>& shape, uint64_t& nbytes) {
    if (shape.empty() || shape.size() > kMaxDims)
        return concat("has ", shape.size(), " dimensions (1 to ", kMaxDims, " supported)");
    uint64_t elements = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
        if (shape[d] == 0)
            return concat("has zero dimension ne[", d, "]");
        if (__builtin_mul_overflow(elements, shape[d], &elements) ||
            elements > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            return "has an element count that overflows 64 bits";
    }
    const auto block = static_cast<uint64_t>(kernels::blockSize(type));
    if (shape[0] % block != 0)
        return concat("has ne[0] = ", shape[0], ", not a multiple of the ", kernels::typeName(type), " block size ",
                      block);
    if (__builtin_mul_overflow(elements / block, static_cast<uint64_t>(kernels::blockBytes(type)), &nbytes))
        return "has a byte size that overflows 64 bits";
    return {};
}

// ---- encoding (writer and fingerprint share it, so the fingerprint hashes exactly what a file stores) ----

template <typename T>
void putPod(std::string& out, T value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

void putString(std::string& out, std::string_view s) {
    putPod<uint64_t>(out, s.size());
    out.append(s);
}

void putValueBody(std::string& out, const GgufValue& v) {
    switch (v.type) {
        case GgufValueType::UInt8:
            putPod(out, static_cast<uint8_t>(v.u));
            return;
        case GgufValueType::Int8:
            putPod(out, static_cast<int8_t>(v.i));
            return;
        case GgufValueType::UInt16:
            putPod(out, static_cast<uint16_t>(v.u));
            return;
        case GgufValueType::Int16:
            putPod(out, static_cast<int16_t>(v.i));
            return;
        case GgufValueType::UInt32:
            putPod(out, static_cast<uint32_t>(v.u));
            return;
        case GgufValueType::Int32:
            putPod(out, static_cast<int32_t>(v.i));
            return;
        case GgufValueType::Float32:
            putPod(out, static_cast<float>(v.f));
            return;
        case GgufValueType::Bool:
            putPod(out, static_cast<uint8_t>(v.u != 0));
            return;
        case GgufValueType::String:
            putString(out, v.s);
            return;
        case GgufValueType::UInt64:
            putPod(out, v.u);
            return;
        case GgufValueType::Int64:
            putPod(out, v.i);
            return;
        case GgufValueType::Float64:
            putPod(out, v.f);
            return;
        case GgufValueType::Array:
            putPod(out, static_cast<uint32_t>(v.arrayType));
            putPod<uint64_t>(out, v.items.size());
            for (const GgufValue& item : v.items) putValueBody(out, item);
            return;
    }
}

void putKeyValue(std::string& out, const GgufKeyValue& kv) {
    putString(out, kv.key);
    putPod(out, static_cast<uint32_t>(kv.value.type));
    putValueBody(out, kv.value);
}

// Tensor info up to, not including, its data offset (the fingerprint must not depend on padding).
void putTensorLayout(std::string& out, const GgufTensorInfo& t) {
    putString(out, t.name);
    putPod(out, static_cast<uint32_t>(t.shape.size()));
    for (uint64_t d : t.shape) putPod(out, d);
    putPod(out, static_cast<uint32_t>(t.type));
}

// ---- parsing ----

class Parser {
public:
    explicit Parser(std::span<const uint8_t> bytes) : m_bytes(bytes) {}

    uint64_t position() const { return m_pos; }
    uint64_t remaining() const { return m_bytes.size() - m_pos; }

    template <typename T>
    Status readPod(T& out, std::string_view what) {
        if (sizeof(T) > remaining())
            return corrupt(concat("truncated file: ", what, " at offset ", m_pos, " needs ", sizeof(T), " bytes"));
        std::memcpy(&out, m_bytes.data() + m_pos, sizeof(T));
        m_pos += sizeof(T);
        return {};
    }

    Status readString(std::string& out, std::string_view what) {
        const uint64_t start = m_pos;
        uint64_t length = 0;
        RC_TRY(readPod(length, what));
        if (length > remaining())
            return corrupt(concat("truncated file: ", what, " at offset ", start, " is a string of ", length,
                                  " bytes but only ", remaining(), " bytes follow"));
        out.assign(reinterpret_cast<const char*>(m_bytes.data() + m_pos), length);
        m_pos += length;
        return {};
    }

    Status readValue(GgufValueType type, GgufValue& v, std::string_view what, int depth) {
        v.type = type;
        switch (type) {
            case GgufValueType::UInt8:
                return readNumber<uint8_t>(v.u, what);
            case GgufValueType::Int8:
                return readNumber<int8_t>(v.i, what);
            case GgufValueType::UInt16:
                return readNumber<uint16_t>(v.u, what);
            case GgufValueType::Int16:
                return readNumber<int16_t>(v.i, what);
            case GgufValueType::UInt32:
                return readNumber<uint32_t>(v.u, what);
            case GgufValueType::Int32:
                return readNumber<int32_t>(v.i, what);
            case GgufValueType::Float32:
                return readNumber<float>(v.f, what);
            case GgufValueType::UInt64:
                return readNumber<uint64_t>(v.u, what);
            case GgufValueType::Int64:
                return readNumber<int64_t>(v.i, what);
            case GgufValueType::Float64:
                return readNumber<double>(v.f, what);
            case GgufValueType::String:
                return readString(v.s, what);
            case GgufValueType::Bool: {
                const uint64_t start = m_pos;
                RC_TRY(readNumber<uint8_t>(v.u, what));
                if (v.u > 1)
                    return corrupt(concat(what, " at offset ", start, " is a bool with value ", v.u));
                return {};
            }
            case GgufValueType::Array:
                return readArray(v, what, depth);
        }
        return corrupt(concat(what, " at offset ", m_pos, " has an invalid value type"));
    }

    Status readValueType(GgufValueType& out, std::string_view what) {
        const uint64_t start = m_pos;
        uint32_t raw = 0;
        RC_TRY(readPod(raw, what));
        if (!isValidValueType(raw))
            return corrupt(concat(what, " at offset ", start, " has unknown value type ", raw));
        out = static_cast<GgufValueType>(raw);
        return {};
    }

private:
    // Fails unless `count` items of at least `itemBytes` each fit in the rest of the file.
    Status checkCount(uint64_t count, uint64_t itemBytes, uint64_t countOffset, std::string_view what) {
        if (count > remaining() / itemBytes)
            return corrupt(concat("truncated file: ", what, " at offset ", countOffset, " declares ", count,
                                  " items of at least ", itemBytes, " bytes but only ", remaining(), " bytes follow"));
        return {};
    }

    template <typename Disk, typename Field>
    Status readNumber(Field& field, std::string_view what) {
        Disk raw{};
        RC_TRY(readPod(raw, what));
        field = static_cast<Field>(raw);
        return {};
    }

    Status readArray(GgufValue& v, std::string_view what, int depth) {
        const uint64_t start = m_pos;
        if (depth >= kMaxArrayDepth)
            return corrupt(concat(what, " at offset ", start, " nests arrays deeper than ", kMaxArrayDepth));
        RC_TRY(readValueType(v.arrayType, what));
        const uint64_t countOffset = m_pos;
        uint64_t count = 0;
        RC_TRY(readPod(count, what));
        RC_TRY(checkCount(count, minValueBytes(v.arrayType), countOffset, what));
        try {
            v.items.resize(count);  // a valid count can still ask for ~88 bytes per 1-byte element
        } catch (const std::bad_alloc&) {
            return makeError(ErrorCode::OutOfMemory, concat("no memory for the ", count, " items of ", what));
        }
        for (GgufValue& item : v.items) RC_TRY(readValue(v.arrayType, item, what, depth + 1));
        return {};
    }

    std::span<const uint8_t> m_bytes;
    uint64_t m_pos = 0;
};

struct TransparentHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

using NameIndex = std::unordered_map<std::string, size_t, TransparentHash, std::equal_to<>>;

// Owns a read-only mapping of a whole file.
class Mapping {
public:
    Mapping() = default;
    Mapping(void* address, size_t size) : m_address(address), m_size(size) {}
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    ~Mapping() {
        if (m_address != nullptr)
            munmap(m_address, m_size);
    }
    std::span<const uint8_t> bytes() const { return {static_cast<const uint8_t*>(m_address), m_size}; }

private:
    void* m_address = nullptr;
    size_t m_size = 0;
};

Error readError(int err, std::string_view action, const std::string& path) {
    const ErrorCode code = err == ENOENT ? ErrorCode::FileNotFound : ErrorCode::IoError;
    return makeError(code, concat(action, " '", path, "': ", std::strerror(err)));
}

Error writeError(int err, std::string_view action, const std::string& path) {
    const ErrorCode code = (err == ENOSPC || err == EDQUOT) ? ErrorCode::DiskFull : ErrorCode::IoError;
    return makeError(code, concat(action, " '", path, "': ", std::strerror(err)));
}

}  // namespace

uint64_t GgufTensorInfo::elementCount() const {
    return std::accumulate(shape.begin(), shape.end(), uint64_t{1}, std::multiplies<>());
}

struct GgufFile::Impl {
    std::unique_ptr<Mapping> mapping;  // null when parsing a caller's buffer
    std::span<const uint8_t> bytes;
    uint32_t version = 0;
    uint64_t alignment = kDefaultAlignment;
    uint64_t dataOffset = 0;
    std::vector<GgufKeyValue> metadata;
    NameIndex keyIndex;
    std::vector<GgufTensorInfo> tensors;
    NameIndex tensorIndex;

    Status parseHeader();
    Status parseMetadata(Parser& p, uint64_t count);
    Status parseTensorInfos(Parser& p, uint64_t count);
    Status checkTensorData();
};

Status GgufFile::Impl::parseHeader() {
    Parser p(bytes);
    uint32_t magic = 0;
    RC_TRY(p.readPod(magic, "magic"));
    if (magic != kMagic)
        return corrupt(concat("not a GGUF file: bad magic 0x", std::hex, magic, std::dec, " at offset 0"));
    RC_TRY(p.readPod(version, "version"));
    if (version != 2 && version != 3)
        return makeError(ErrorCode::Unsupported,
                         concat("unsupported GGUF version ", version, " at offset 4 (supported: 2, 3)"));
    uint64_t tensorCount = 0;
    uint64_t kvCount = 0;
    RC_TRY(p.readPod(tensorCount, "tensor count"));
    RC_TRY(p.readPod(kvCount, "metadata count"));
    RC_TRY(parseMetadata(p, kvCount));
    RC_TRY(parseTensorInfos(p, tensorCount));
    if (!alignUp(p.position(), alignment, dataOffset))
        return corrupt(concat("data section offset overflows after the header ending at offset ", p.position()));
    return checkTensorData();
}

Status GgufFile::Impl::parseMetadata(Parser& p, uint64_t count) {
    // Grown one entry at a time (a corrupt count then fails at the first missing byte, with a precise message);
    // the reservation is capped by what the rest of the file could possibly hold.
    metadata.reserve(std::min(count, p.remaining() / kMinKeyValueBytes));
    for (uint64_t k = 0; k < count; ++k) {
        GgufKeyValue& kv = metadata.emplace_back();
        const uint64_t keyOffset = p.position();
        RC_TRY(p.readString(kv.key, concat("metadata key #", k)));
        if (!keyIndex.emplace(kv.key, k).second)
            return corrupt(concat("duplicate metadata key '", kv.key, "' at offset ", keyOffset));
        const std::string what = concat("value of metadata key '", kv.key, "'");
        GgufValueType type{};
        RC_TRY(p.readValueType(type, what));
        const uint64_t valueOffset = p.position();
        RC_TRY(p.readValue(type, kv.value, what, 0));
        if (kv.key == kAlignmentKey) {
            if (!isUnsignedType(type) || kv.value.u == 0 || !std::has_single_bit(kv.value.u))
                return corrupt(
                    concat("general.alignment at offset ", valueOffset, " must be an unsigned power of two"));
            alignment = kv.value.u;
        }
    }
    return {};
}

Status GgufFile::Impl::parseTensorInfos(Parser& p, uint64_t count) {
    tensors.reserve(std::min(count, p.remaining() / kMinTensorInfoBytes));
    for (uint64_t k = 0; k < count; ++k) {
        GgufTensorInfo& t = tensors.emplace_back();
        const uint64_t infoOffset = p.position();
        RC_TRY(p.readString(t.name, concat("tensor info #", k, " name")));
        const std::string what = concat("tensor info '", t.name, "'");
        if (!tensorIndex.emplace(t.name, k).second)
            return corrupt(concat("duplicate tensor name '", t.name, "' at offset ", infoOffset));
        uint32_t nDims = 0;
        const uint64_t dimsOffset = p.position();
        RC_TRY(p.readPod(nDims, what));
        if (nDims == 0 || nDims > kMaxDims)
            return corrupt(
                concat(what, " at offset ", dimsOffset, " has ", nDims, " dimensions (1 to ", kMaxDims, " supported)"));
        t.shape.resize(nDims);
        for (uint64_t& d : t.shape) RC_TRY(p.readPod(d, what));
        const uint64_t typeOffset = p.position();
        uint32_t rawType = 0;
        RC_TRY(p.readPod(rawType, what));
        if (!kernels::isKnownType(rawType))
            return makeError(ErrorCode::Unsupported,
                             concat(what, " at offset ", typeOffset, " has tensor type ", rawType,
                                    " (supported: ", kernels::kSupportedTypeNames, ")"));
        t.type = static_cast<GgmlType>(rawType);
        if (std::string problem = checkShape(t.type, t.shape, t.nbytes); !problem.empty())
            return corrupt(concat(what, " at offset ", dimsOffset, " ", problem));
        const uint64_t offsetOffset = p.position();
        RC_TRY(p.readPod(t.offset, what));
        if (t.offset % alignment != 0)
            return corrupt(concat(what, " at offset ", offsetOffset, " has data offset ", t.offset, " not aligned to ",
                                  alignment));
    }
    return {};
}

Status GgufFile::Impl::checkTensorData() {
    const uint64_t fileSize = bytes.size();
    for (const GgufTensorInfo& t : tensors) {
        uint64_t start = 0;
        uint64_t end = 0;
        if (__builtin_add_overflow(dataOffset, t.offset, &start) || __builtin_add_overflow(start, t.nbytes, &end) ||
            end > fileSize)
            return corrupt(concat("truncated file: tensor '", t.name, "' data at offset ", dataOffset, " + ", t.offset,
                                  " needs ", t.nbytes, " bytes but the file ends at offset ", fileSize));
    }
    std::vector<const GgufTensorInfo*> byOffset;
    byOffset.reserve(tensors.size());
    for (const GgufTensorInfo& t : tensors) byOffset.push_back(&t);
    std::sort(byOffset.begin(), byOffset.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
    for (size_t k = 1; k < byOffset.size(); ++k) {
        const GgufTensorInfo& prev = *byOffset[k - 1];
        if (prev.offset + prev.nbytes > byOffset[k]->offset)
            return corrupt(concat("tensor '", byOffset[k]->name, "' data at offset ", dataOffset + byOffset[k]->offset,
                                  " overlaps tensor '", prev.name, "'"));
    }
    return {};
}

GgufFile::GgufFile(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
GgufFile::GgufFile(GgufFile&&) noexcept = default;
GgufFile& GgufFile::operator=(GgufFile&&) noexcept = default;
GgufFile::~GgufFile() = default;

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes) {
    auto impl = std::make_unique<Impl>();
    impl->bytes = bytes;
    RC_TRY(impl->parseHeader());
    return GgufFile(std::move(impl));
}

Result<GgufFile> GgufFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return readError(errno, "cannot open", path);
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        close(fd);
        return readError(err, "cannot stat", path);
    }
    auto mapping = std::make_unique<Mapping>();
    if (st.st_size > 0) {
        void* address = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
        const int err = errno;
        close(fd);
        if (address == MAP_FAILED)
            return readError(err, "cannot map", path);
        mapping = std::make_unique<Mapping>(address, static_cast<size_t>(st.st_size));
    } else {
        close(fd);
    }
    auto impl = std::make_unique<Impl>();
    impl->bytes = mapping->bytes();
    impl->mapping = std::move(mapping);
    if (Status st2 = impl->parseHeader(); !st2)
        return Error{st2.error().code, concat(path, ": ", st2.error().detail)};
    return GgufFile(std::move(impl));
}

uint32_t GgufFile::version() const {
    return m_impl->version;
}
uint64_t GgufFile::alignment() const {
    return m_impl->alignment;
}
uint64_t GgufFile::dataOffset() const {
    return m_impl->dataOffset;
}
const std::vector<GgufKeyValue>& GgufFile::metadata() const {
    return m_impl->metadata;
}
const std::vector<GgufTensorInfo>& GgufFile::tensors() const {
    return m_impl->tensors;
}

const GgufValue* GgufFile::find(std::string_view key) const {
    auto it = m_impl->keyIndex.find(key);
    return it == m_impl->keyIndex.end() ? nullptr : &m_impl->metadata[it->second].value;
}

const GgufTensorInfo* GgufFile::findTensor(std::string_view name) const {
    auto it = m_impl->tensorIndex.find(name);
    return it == m_impl->tensorIndex.end() ? nullptr : &m_impl->tensors[it->second];
}

std::span<const uint8_t> GgufFile::tensorData(const GgufTensorInfo& tensor) const {
    return m_impl->bytes.subspan(m_impl->dataOffset + tensor.offset, tensor.nbytes);
}

// ---- typed getters ----

namespace {

Error missingKey(std::string_view key) {
    return corrupt(concat("missing metadata key '", key, "'"));
}

Error wrongType(std::string_view key, const GgufValue& v, std::string_view expected) {
    std::string actual = valueTypeName(v.type);
    if (v.type == GgufValueType::Array)
        actual = concat("array of ", valueTypeName(v.arrayType));
    return corrupt(concat("metadata key '", key, "' is ", actual, ", expected ", expected));
}

// Numeric conversions that lose nothing: returns false when `v` is not a number or does not fit.
bool toUInt(const GgufValue& v, uint64_t& out) {
    if (isUnsignedType(v.type))
        out = v.u;
    else if (isSignedType(v.type) && v.i >= 0)
        out = static_cast<uint64_t>(v.i);
    else
        return false;
    return true;
}

bool toInt(const GgufValue& v, int64_t& out) {
    if (isSignedType(v.type))
        out = v.i;
    else if (isUnsignedType(v.type) && v.u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        out = static_cast<int64_t>(v.u);
    else
        return false;
    return true;
}

bool toDouble(const GgufValue& v, double& out) {
    if (isFloatType(v.type))
        out = v.f;
    else if (isSignedType(v.type))
        out = static_cast<double>(v.i);
    else if (isUnsignedType(v.type))
        out = static_cast<double>(v.u);
    else
        return false;
    return true;
}

// Converts every element of an array value with `convert`; `expected` names the accepted element type.
template <typename T, typename Convert>
Result<std::vector<T>> convertArray(const GgufValue* v, std::string_view key, std::string_view expected,
                                    Convert convert) {
    if (v == nullptr)
        return missingKey(key);
    if (v->type != GgufValueType::Array)
        return wrongType(key, *v, expected);
    std::vector<T> out(v->items.size());
    for (size_t k = 0; k < out.size(); ++k)
        if (!convert(v->items[k], out[k]))
            return wrongType(key, *v, expected);
    return out;
}

}  // namespace

Result<std::string> GgufFile::getString(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
        return missingKey(key);
    if (v->type != GgufValueType::String)
        return wrongType(key, *v, "string");
    return v->s;
}

Result<uint64_t> GgufFile::getUInt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
        return missingKey(key);
    uint64_t out = 0;
    if (!toUInt(*v, out))
        return wrongType(key, *v, "a non-negative integer");
    return out;
}

Result<int64_t> GgufFile::getInt(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
        return missingKey(key);
    int64_t out = 0;
    if (!toInt(*v, out))
        return wrongType(key, *v, "an integer");
    return out;
}

Result<double> GgufFile::getFloat(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
        return missingKey(key);
    double out = 0.0;
    if (!toDouble(*v, out))
        return wrongType(key, *v, "a number");
    return out;
}

Result<bool> GgufFile::getBool(std::string_view key) const {
    const GgufValue* v = find(key);
    if (v == nullptr)
        return missingKey(key);
    if (v->type != GgufValueType::Bool)
        return wrongType(key, *v, "bool");
    return v->u != 0;
}

Result<std::vector<std::string>> GgufFile::getStringArray(std::string_view key) const {
    return convertArray<std::string>(find(key), key, "array of string", [](const GgufValue& item, std::string& out) {
        if (item.type != GgufValueType::String)
            return false;
        out = item.s;
        return true;
    });
}

Result<std::vector<float>> GgufFile::getFloatArray(std::string_view key) const {
    return convertArray<float>(find(key), key, "array of numbers", [](const GgufValue& item, float& out) {
        double d = 0.0;
        if (!toDouble(item, d))
            return false;
        out = static_cast<float>(d);
        return true;
    });
}

Result<std::vector<int32_t>> GgufFile::getIntArray(std::string_view key) const {
    return convertArray<int32_t>(
        find(key), key, "array of int32-range integers", [](const GgufValue& item, int32_t& out) {
            int64_t i = 0;
            if (!toInt(item, i) || i < std::numeric_limits<int32_t>::min() || i > std::numeric_limits<int32_t>::max())
                return false;
            out = static_cast<int32_t>(i);
            return true;
        });
}

std::string GgufFile::fingerprint() const {
    // Hashes the encoded key/value and tensor layout records in file order, so any change to an architecture
    // hyperparameter, tensor name, type or shape changes the digest, while tokenizer data and padding do not.
    Sha256 sha;
    std::string record;
    std::string archPrefix;
    if (const GgufValue* arch = find(kArchitectureKey); arch != nullptr && arch->type == GgufValueType::String)
        archPrefix = arch->s + ".";
    for (const GgufKeyValue& kv : m_impl->metadata) {
        const bool archKey = kv.key == kArchitectureKey || (!archPrefix.empty() && kv.key.starts_with(archPrefix));
        if (!archKey)
            continue;
        record.clear();
        putKeyValue(record, kv);
        sha.update(record.data(), record.size());
    }
    for (const GgufTensorInfo& t : m_impl->tensors) {
        record.clear();
        putTensorLayout(record, t);
        sha.update(record.data(), record.size());
    }
    return sha.finishHex();
}

// ---- writer ----

void GgufWriter::setValue(std::string key, GgufValue value) {
    auto it = std::find_if(m_metadata.begin(), m_metadata.end(), [&](const GgufKeyValue& kv) { return kv.key == key; });
    if (it != m_metadata.end())
        it->value = std::move(value);
    else
        m_metadata.push_back({std::move(key), std::move(value)});
}

void GgufWriter::setString(std::string key, std::string value) {
    GgufValue v;
    v.type = GgufValueType::String;
    v.s = std::move(value);
    setValue(std::move(key), std::move(v));
}

void GgufWriter::setUInt32(std::string key, uint32_t value) {
    GgufValue v;
    v.type = GgufValueType::UInt32;
    v.u = value;
    setValue(std::move(key), std::move(v));
}

void GgufWriter::setFloat32(std::string key, float value) {
    GgufValue v;
    v.type = GgufValueType::Float32;
    v.f = value;
    setValue(std::move(key), std::move(v));
}

void GgufWriter::setBool(std::string key, bool value) {
    GgufValue v;
    v.type = GgufValueType::Bool;
    v.u = value ? 1 : 0;
    setValue(std::move(key), std::move(v));
}

Status GgufWriter::addPending(PendingTensor tensor) {
    GgufTensorInfo& info = tensor.info;
    if (std::string problem = checkShape(info.type, info.shape, info.nbytes); !problem.empty())
        return makeError(ErrorCode::InvalidArgument, concat("tensor '", info.name, "' ", problem));
    if (!tensor.source && tensor.data.size() != info.nbytes)
        return makeError(ErrorCode::InvalidArgument, concat("tensor '", info.name, "' has ", tensor.data.size(),
                                                            " bytes of data, its shape needs ", info.nbytes));
    for (const PendingTensor& other : m_tensors)
        if (other.info.name == info.name)
            return makeError(ErrorCode::InvalidArgument, concat("duplicate tensor name '", info.name, "'"));
    m_tensors.push_back(std::move(tensor));
    return {};
}

Status GgufWriter::addTensor(std::string name, GgmlType type, std::vector<uint64_t> shape, std::vector<uint8_t> data) {
    return addPending({GgufTensorInfo{std::move(name), type, std::move(shape)}, std::move(data), {}});
}

Status GgufWriter::addTensorSource(std::string name, GgmlType type, std::vector<uint64_t> shape, TensorSource source) {
    if (!source)
        return makeError(ErrorCode::InvalidArgument, concat("tensor '", name, "' has an empty source"));
    return addPending({GgufTensorInfo{std::move(name), type, std::move(shape)}, {}, std::move(source)});
}

namespace {

// A temporary file next to the destination, renamed over it by commit(); removed if never committed.
class AtomicFile {
public:
    AtomicFile() = default;
    AtomicFile(const AtomicFile&) = delete;
    AtomicFile& operator=(const AtomicFile&) = delete;
    ~AtomicFile() {
        if (m_fd >= 0)
            close(m_fd);
        if (!m_tempPath.empty())
            unlink(m_tempPath.c_str());
    }

    Status create(const std::string& path) {
        m_path = path;
        std::string pattern = path + ".tmp-XXXXXX";
        m_fd = mkostemp(pattern.data(), O_CLOEXEC);
        if (m_fd < 0)
            return writeError(errno, "cannot create a temporary file for", path);
        m_tempPath = pattern;
        if (fchmod(m_fd, 0644) != 0)
            return writeError(errno, "cannot set permissions of", m_tempPath);
        return {};
    }

    Status write(const void* data, size_t size) {
        const auto* p = static_cast<const uint8_t*>(data);
        while (size > 0) {
            const ssize_t n = ::write(m_fd, p, size);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return writeError(errno, "cannot write", m_tempPath);
            }
            p += n;
            size -= static_cast<size_t>(n);
            m_written += static_cast<uint64_t>(n);
        }
        return {};
    }

    Status padTo(uint64_t offset) {
        static constexpr uint8_t kZeros[64] = {};
        while (m_written < offset) RC_TRY(write(kZeros, std::min<uint64_t>(sizeof kZeros, offset - m_written)));
        return {};
    }

    Status commit() {
        if (fsync(m_fd) != 0)
            return writeError(errno, "cannot flush", m_tempPath);
        const int fd = m_fd;
        m_fd = -1;
        if (close(fd) != 0)
            return writeError(errno, "cannot close", m_tempPath);
        if (rename(m_tempPath.c_str(), m_path.c_str()) != 0)
            return writeError(errno, "cannot rename the temporary file to", m_path);
        m_tempPath.clear();
        return {};
    }

private:
    std::string m_path;
    std::string m_tempPath;
    int m_fd = -1;
    uint64_t m_written = 0;
};

}  // namespace

Status GgufWriter::write(const std::string& path) const {
    uint64_t alignment = kDefaultAlignment;
    for (const GgufKeyValue& kv : m_metadata) {
        if (kv.key != kAlignmentKey)
            continue;
        if (kv.value.type != GgufValueType::UInt32 || kv.value.u == 0 || !std::has_single_bit(kv.value.u))
            return makeError(ErrorCode::InvalidArgument, "general.alignment must be a uint32 power of two");
        alignment = kv.value.u;
    }

    std::string header;
    putPod(header, kMagic);
    putPod(header, kWriteVersion);
    putPod<uint64_t>(header, m_tensors.size());
    putPod<uint64_t>(header, m_metadata.size());
    for (const GgufKeyValue& kv : m_metadata) putKeyValue(header, kv);
    std::vector<uint64_t> offsets;
    uint64_t dataSize = 0;
    for (const PendingTensor& t : m_tensors) {
        // Sizes were checked by addPending; the sum of real tensors cannot overflow 64 bits.
        alignUp(dataSize, alignment, dataSize);
        offsets.push_back(dataSize);
        putTensorLayout(header, t.info);
        putPod(header, dataSize);
        dataSize += t.info.nbytes;
    }
    uint64_t dataOffset = 0;
    alignUp(header.size(), alignment, dataOffset);

    AtomicFile file;
    RC_TRY(file.create(path));
    RC_TRY(file.write(header.data(), header.size()));
    std::vector<uint8_t> scratch;  // one streamed tensor at a time
    for (size_t k = 0; k < m_tensors.size(); ++k) {
        const PendingTensor& t = m_tensors[k];
        RC_TRY(file.padTo(dataOffset + offsets[k]));
        if (!t.source) {
            RC_TRY(file.write(t.data.data(), t.data.size()));
            continue;
        }
        try {
            scratch.resize(t.info.nbytes);
        } catch (const std::bad_alloc&) {
            return makeError(ErrorCode::OutOfMemory,
                             concat("no memory for the ", t.info.nbytes, " bytes of tensor '", t.info.name, "'"));
        }
        RC_TRY(t.source(scratch));
        RC_TRY(file.write(scratch.data(), scratch.size()));
    }
    uint64_t end = 0;
    alignUp(dataOffset + dataSize, alignment, end);
    RC_TRY(file.padTo(end));
    return file.commit();
}

}  // namespace inference
