// Result<T> / Status: the error type every core library returns (a small mirror of std::expected, which gcc 12
// lacks in C++20 mode). No exception crosses a library boundary; app/ maps ErrorCode to a sentence for the user.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace roundchat {

// Stored in logs and databases: values are fixed, never change or reuse one.
enum class ErrorCode : int {
    Ok = 0,
    InvalidArgument = 1,   // a caller passed something out of range
    FileNotFound = 2,
    IoError = 3,           // read/write/mmap failed
    CorruptFile = 4,       // a model or database file is malformed (detail names the problem and offset)
    Unsupported = 5,       // a valid file using a feature we do not implement (tensor type, architecture)
    OutOfMemory = 6,       // host allocation failed
    OutOfGpuMemory = 7,
    NoGpu = 8,             // no usable CUDA device or driver
    ContextFull = 9,       // the conversation does not fit the context window
    TemplateError = 10,    // a chat template failed to parse or render
    Cancelled = 11,
    DatabaseError = 12,
    DiskFull = 13,
    Mismatch = 14,         // e.g. a KV snapshot made for another model fingerprint
    NetworkError = 15,
    ChecksumMismatch = 16,
    GpuError = 17,         // a CUDA or cuBLAS call failed for another reason
};

const char* errorCodeName(ErrorCode code);

struct Error {
    ErrorCode code = ErrorCode::InvalidArgument;
    std::string detail;  // for the log and for developers; app/ shows its own translated sentence

    std::string toString() const { return std::string(errorCodeName(code)) + ": " + detail; }
};

inline Error makeError(ErrorCode code, std::string detail) { return Error{code, std::move(detail)}; }

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : m_v(std::in_place_index<0>, std::move(value)) {}
    Result(Error error) : m_v(std::in_place_index<1>, std::move(error)) {}

    bool ok() const { return m_v.index() == 0; }
    explicit operator bool() const { return ok(); }

    T& value() & { assert(ok()); return std::get<0>(m_v); }
    const T& value() const& { assert(ok()); return std::get<0>(m_v); }
    T&& value() && { assert(ok()); return std::get<0>(std::move(m_v)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const { assert(!ok()); return std::get<1>(m_v); }

private:
    std::variant<T, Error> m_v;
};

class [[nodiscard]] Status {
public:
    Status() = default;
    Status(Error error) : m_error(std::move(error)), m_ok(false) {}

    static Status success() { return {}; }
    bool ok() const { return m_ok; }
    explicit operator bool() const { return m_ok; }
    const Error& error() const { assert(!m_ok); return m_error; }

private:
    Error m_error;
    bool m_ok = true;
};

inline const char* errorCodeName(ErrorCode code) {
    switch (code) {
    case ErrorCode::Ok: return "ok";
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::FileNotFound: return "file not found";
    case ErrorCode::IoError: return "I/O error";
    case ErrorCode::CorruptFile: return "corrupt file";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::OutOfMemory: return "out of memory";
    case ErrorCode::OutOfGpuMemory: return "out of GPU memory";
    case ErrorCode::NoGpu: return "no usable GPU";
    case ErrorCode::ContextFull: return "context full";
    case ErrorCode::TemplateError: return "chat template error";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::DatabaseError: return "database error";
    case ErrorCode::DiskFull: return "disk full";
    case ErrorCode::Mismatch: return "mismatch";
    case ErrorCode::NetworkError: return "network error";
    case ErrorCode::ChecksumMismatch: return "checksum mismatch";
    case ErrorCode::GpuError: return "GPU error";
    }
    return "unknown error";
}

}  // namespace roundchat

// Propagates an error from an expression returning Status or Result<T>.
#define RC_TRY(expr)                                   \
    do {                                               \
        if (auto&& rc_try_ = (expr); !rc_try_.ok())      \
            return rc_try_.error();                    \
    } while (0)
