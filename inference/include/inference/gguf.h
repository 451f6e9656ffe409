// GGUF reader and writer. The reader memory-maps the file and validates every count, offset and size before use,
// so a corrupt or truncated file yields ErrorCode::CorruptFile naming the problem and its byte offset.
// Ownership: GgufFile owns the mapping; spans returned by tensorData() borrow from it and live as long as it does.
// Thread safety: a loaded GgufFile is immutable and may be read from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/ggml_types.h"
#include "roundchat/result.h"

namespace inference {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;
using kernels::GgmlType;

// Values as stored on disk (GGUF spec): never change them.
enum class GgufValueType : uint32_t {
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};

// One metadata value. Scalars are widened (integers to int64/uint64, floats to double); arrays keep their element
// type and hold either numbers or strings, never nested arrays deeper than the file had.
struct GgufValue {
    GgufValueType type = GgufValueType::UInt8;
    GgufValueType arrayType = GgufValueType::UInt8;  // element type when type == Array
    uint64_t u = 0;                    // unsigned integers and bool
    int64_t i = 0;                     // signed integers
    double f = 0.0;                    // Float32 / Float64
    std::string s;                     // String
    std::vector<GgufValue> items;      // Array elements
};

struct GgufKeyValue {
    std::string key;
    GgufValue value;
};

struct GgufTensorInfo {
    std::string name;
    GgmlType type = GgmlType::F32;
    std::vector<uint64_t> shape;  // ne[0] first: ne[0] is the contiguous (input) dimension
    uint64_t offset = 0;          // from the start of the tensor data section
    uint64_t nbytes = 0;
    uint64_t elementCount() const;
};

class GgufFile {
public:
    // Maps `path` read-only and parses it.
    static Result<GgufFile> open(const std::string& path);
    // Parses a buffer that the caller keeps alive (fuzzing, tests).
    static Result<GgufFile> parse(std::span<const uint8_t> bytes);

    GgufFile(GgufFile&&) noexcept;
    GgufFile& operator=(GgufFile&&) noexcept;
    ~GgufFile();

    uint32_t version() const;
    uint64_t alignment() const;
    uint64_t dataOffset() const;  // absolute offset of the tensor data section

    const std::vector<GgufKeyValue>& metadata() const;
    const GgufValue* find(std::string_view key) const;
    // Typed getters: Mismatch-free conversions only (an integer key read as float is fine, a string is not).
    // A missing key is CorruptFile naming the key, so required keys give a clear message.
    Result<std::string> getString(std::string_view key) const;
    Result<uint64_t> getUInt(std::string_view key) const;
    Result<int64_t> getInt(std::string_view key) const;
    Result<double> getFloat(std::string_view key) const;
    Result<bool> getBool(std::string_view key) const;
    Result<std::vector<std::string>> getStringArray(std::string_view key) const;
    Result<std::vector<float>> getFloatArray(std::string_view key) const;
    Result<std::vector<int32_t>> getIntArray(std::string_view key) const;

    const std::vector<GgufTensorInfo>& tensors() const;
    const GgufTensorInfo* findTensor(std::string_view name) const;
    std::span<const uint8_t> tensorData(const GgufTensorInfo& tensor) const;

    // Hex digest over the architecture metadata (general.architecture and every "<arch>." key), tensor names, types
    // and shapes. Two files with the same weights layout and hyperparameters share it; used as a cache key.
    std::string fingerprint() const;

private:
    struct Impl;
    explicit GgufFile(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> m_impl;
};

// Builds a GGUF v3 file: metadata first, then tensors (already encoded in their type), written with alignment.
class GgufWriter {
public:
    void setValue(std::string key, GgufValue value);
    void setString(std::string key, std::string value);
    void setUInt32(std::string key, uint32_t value);
    void setFloat32(std::string key, float value);
    void setBool(std::string key, bool value);
    // `data` is encoded in `type` (see kernels/ggml_types.h); its size must match the shape.
    Status addTensor(std::string name, GgmlType type, std::vector<uint64_t> shape, std::vector<uint8_t> data);
    // Streaming: fills `out` (exactly the tensor's encoded size) when write() reaches the tensor, so a model larger
    // than memory can be written; only one tensor's bytes are held at a time. Called once per write(), in add order,
    // on the thread calling write(); an error aborts the write and is returned by it.
    using TensorSource = std::function<Status(std::span<uint8_t> out)>;
    Status addTensorSource(std::string name, GgmlType type, std::vector<uint64_t> shape, TensorSource source);
    // Atomic: writes a temporary file next to `path`, then renames. Tensors start at multiples of general.alignment
    // (a UInt32 power of two; 32 when unset). Write failures are IoError, or DiskFull when out of space.
    Status write(const std::string& path) const;

private:
    std::vector<GgufKeyValue> m_metadata;
    struct PendingTensor {
        GgufTensorInfo info;
        std::vector<uint8_t> data;  // used when source is empty
        TensorSource source;
    };
    Status addPending(PendingTensor tensor);
    std::vector<PendingTensor> m_tensors;
};

}  // namespace inference
