// Internal: a borrowed, cached prepared statement with typed binding, and the mapping of SQLite result codes to
// ErrorCode. Every value reaches SQL through bind(); text and BLOBs are bound with explicit lengths so NUL bytes
// survive.
#pragma once

#include "storage/database.h"

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

// roundchat's RC_TRY copies a named Result (impossible for the move-only Statement/Transaction, wasteful for vectors);
// this checks one in place.
#define STORAGE_CHECK(result)        \
    do {                             \
        if (!(result).ok())          \
            return (result).error(); \
    } while (0)

namespace storage {

// SQLITE_FULL -> DiskFull, SQLITE_CORRUPT/NOTADB -> CorruptFile, SQLITE_IOERR -> IoError, else DatabaseError.
Error sqlError(sqlite3* db, int rc, std::string_view what);

struct BlobView {
    std::span<const uint8_t> bytes;
};
struct ZeroBlob {
    int64_t size = 0;  // bytes reserved for sqlite3_blob_write
};

// 0 binds NULL: ids use 0 for "none" in the API and NULL in foreign-key columns.
inline std::optional<int64_t> idOrNull(int64_t id) {
    return id == 0 ? std::nullopt : std::optional<int64_t>(id);
}

class Statement {
public:
    Statement(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}
    Statement(Statement&& other) noexcept;
    Statement& operator=(Statement&&) = delete;
    ~Statement();  // resets the cached statement and clears its bindings

    // Binds args to ?1, ?2, ... in order. A bind error is kept and returned by the next step()/run().
    template <typename... Args>
    Statement& bind(const Args&... args) {
        [[maybe_unused]] int index = 1;
        (bindOne(index++, args), ...);
        return *this;
    }
    template <typename T>
    void bindOne(int index, const T& value) {
        if constexpr (std::is_same_v<T, bool>) {
            check(sqlite3_bind_int(m_stmt, index, value ? 1 : 0));
        } else if constexpr (std::is_integral_v<T> || std::is_enum_v<T>) {
            check(sqlite3_bind_int64(m_stmt, index, static_cast<sqlite3_int64>(value)));
        } else if constexpr (std::is_floating_point_v<T>) {
            check(sqlite3_bind_double(m_stmt, index, static_cast<double>(value)));
        } else if constexpr (std::is_same_v<T, std::optional<int64_t>>) {
            check(value ? sqlite3_bind_int64(m_stmt, index, *value) : sqlite3_bind_null(m_stmt, index));
        } else if constexpr (std::is_same_v<T, BlobView>) {
            // A zero-length blob with a null pointer would bind NULL; a static empty buffer keeps it a BLOB.
            static const uint8_t kEmpty = 0;
            const uint8_t* data = value.bytes.empty() ? &kEmpty : value.bytes.data();
            check(sqlite3_bind_blob64(m_stmt, index, data, value.bytes.size(), SQLITE_TRANSIENT));
        } else if constexpr (std::is_same_v<T, ZeroBlob>) {
            check(sqlite3_bind_zeroblob64(m_stmt, index, static_cast<sqlite3_uint64>(value.size)));
        } else {
            const std::string_view text(value);
            check(sqlite3_bind_text64(m_stmt, index, text.data(), text.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
        }
    }

    Result<bool> step();  // true: a row is available
    Status run();         // steps until done (for INSERT/UPDATE/DELETE)

    int64_t getInt(int column) const { return sqlite3_column_int64(m_stmt, column); }
    double getDouble(int column) const { return sqlite3_column_double(m_stmt, column); }
    std::string getText(int column) const;  // exact bytes, NULs included; "" for NULL
    std::vector<uint8_t> getBlob(int column) const;
    bool isNull(int column) const { return sqlite3_column_type(m_stmt, column) == SQLITE_NULL; }

private:
    void check(int rc);

    sqlite3* m_db;
    sqlite3_stmt* m_stmt;  // owned by the Database's cache; null once moved from
    int m_bindError = SQLITE_OK;
};

}  // namespace storage
