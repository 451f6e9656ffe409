#include "storage/database.h"

#include "migrations.h"
#include "statement.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <unordered_map>
#include <utility>

namespace storage {

namespace fs = std::filesystem;

// ---- Statement

Error sqlError(sqlite3* db, int rc, std::string_view what) {
    const char* message = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    std::string detail = std::string(what) + ": " + message + " (SQLite code " + std::to_string(rc) + ")";
    switch (rc & 0xff) {
        case SQLITE_FULL:
            return makeError(ErrorCode::DiskFull, std::move(detail));
        case SQLITE_CORRUPT:
        case SQLITE_NOTADB:
            return makeError(ErrorCode::CorruptFile, std::move(detail));
        case SQLITE_IOERR:
            return makeError(ErrorCode::IoError, std::move(detail));
        default:
            return makeError(ErrorCode::DatabaseError, std::move(detail));
    }
}

Statement::Statement(Statement&& other) noexcept
    : m_db(other.m_db), m_stmt(std::exchange(other.m_stmt, nullptr)), m_bindError(other.m_bindError) {}

Statement::~Statement() {
    if (m_stmt != nullptr) {
        sqlite3_reset(m_stmt);
        sqlite3_clear_bindings(m_stmt);
    }
}

void Statement::check(int rc) {
    if (rc != SQLITE_OK && m_bindError == SQLITE_OK)
        m_bindError = rc;
}

Result<bool> Statement::step() {
    if (m_bindError != SQLITE_OK)
        return sqlError(m_db, m_bindError, std::string("binding a value for ") + sqlite3_sql(m_stmt));
    const int rc = sqlite3_step(m_stmt);
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE)
        return false;
    return sqlError(m_db, rc, sqlite3_sql(m_stmt));
}

Status Statement::run() {
    for (;;) {
        Result<bool> row = step();
        if (!row)
            return row.error();
        if (!*row)
            return {};
    }
}

std::string Statement::getText(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(m_stmt, column));
    return text != nullptr ? std::string(text, size_t(sqlite3_column_bytes(m_stmt, column))) : std::string();
}

std::vector<uint8_t> Statement::getBlob(int column) const {
    const auto* data = static_cast<const uint8_t*>(sqlite3_column_blob(m_stmt, column));
    return data != nullptr ? std::vector<uint8_t>(data, data + sqlite3_column_bytes(m_stmt, column))
                           : std::vector<uint8_t>();
}

// ---- Database

struct Database::Impl {
    sqlite3* db = nullptr;
    std::string path;
    OpenReport report;
    int schemaVersion = 0;
    int transactionDepth = 0;
    std::unordered_map<std::string, sqlite3_stmt*> statements;

    ~Impl() {
        for (auto& [sql, stmt] : statements) sqlite3_finalize(stmt);
        sqlite3_close_v2(db);
    }
};

namespace {

constexpr char kSqliteMagic[16] = {'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
constexpr int kSqliteHeaderSize = 100;

// A file that exists but does not start with an SQLite header is not a database, whatever SQLite would make of it
// (it treats some short files as empty databases and would overwrite them).
Status checkHeader(const std::string& path) {
    std::error_code ec;
    const auto size = fs::file_size(path, ec);
    if (ec || size == 0)
        return {};  // missing or empty: SQLite creates the database
    if (size < kSqliteHeaderSize)
        return makeError(ErrorCode::CorruptFile, path + " is not an SQLite database (" + std::to_string(size) +
                                                     " bytes, shorter than the 100-byte header)");
    std::ifstream in(path, std::ios::binary);
    char magic[sizeof(kSqliteMagic)] = {};
    if (!in.read(magic, sizeof(magic)))
        return makeError(ErrorCode::IoError, "cannot read the header of " + path);
    if (!std::equal(std::begin(magic), std::end(magic), std::begin(kSqliteMagic)))
        return makeError(ErrorCode::CorruptFile, path + " is not an SQLite database (bad header)");
    return {};
}

Result<std::string> queryText(sqlite3* db, const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
    if (rc != SQLITE_OK)
        return sqlError(db, rc, sql);
    std::string out;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (!out.empty())
            out += '\n';
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
        out += text != nullptr ? text : "";
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return sqlError(db, rc, sql);
    return out;
}

Status execRaw(sqlite3* db, std::string_view sql) {
    const std::string text(sql);
    const int rc = sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK)
        return sqlError(db, rc, text.substr(0, 80));
    return {};
}

// The truncation check quick_check cannot do: pages the header promises but the file lacks read as zeros, which
// quick_check only notices when they belong to a b-tree. Only meaningful with no WAL in use (a clean close).
Status checkFileSize(sqlite3* db, const std::string& path) {
    std::error_code ec;
    if (fs::exists(path + "-wal", ec))
        return {};
    Result<std::string> pageCount = queryText(db, "PRAGMA page_count");
    STORAGE_CHECK(pageCount);
    Result<std::string> pageSize = queryText(db, "PRAGMA page_size");
    STORAGE_CHECK(pageSize);
    const auto expected = std::stoull(*pageCount) * std::stoull(*pageSize);
    const auto actual = fs::file_size(path, ec);
    if (!ec && actual < expected)
        return makeError(ErrorCode::CorruptFile, path + " is truncated (" + std::to_string(actual) + " of " +
                                                     std::to_string(expected) + " bytes)");
    return {};
}

Status migrate(sqlite3* db, int from, int to) {
    for (const Migration& m : migrations()) {
        if (m.version <= from || m.version > to)
            continue;
        RC_TRY(execRaw(db, "BEGIN IMMEDIATE"));
        // user_version cannot be a bound parameter; the value is a compile-time migration number, not user data.
        Status st = execRaw(db, m.sql);
        if (st)
            st = execRaw(db, "PRAGMA user_version = " + std::to_string(m.version));
        if (st)
            st = execRaw(db, "COMMIT");
        if (!st) {
            if (sqlite3_get_autocommit(db) == 0)
                (void)execRaw(db, "ROLLBACK");
            return makeError(st.error().code,
                             "migration to schema version " + std::to_string(m.version) + ": " + st.error().detail);
        }
    }
    return {};
}

std::string utcStamp() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    char buf[32];
    std::strftime(buf, sizeof(buf), "%Y%m%d-%H%M%SZ", &tm);
    return buf;
}

// Moves the damaged file (and its -wal/-shm, which must not be replayed into the fresh database) to a name that does
// not exist yet. Never overwrites: a taken name gets a -1, -2, ... suffix.
Result<std::string> quarantine(const std::string& path) {
    const std::string base = path + ".corrupt-" + utcStamp();
    std::error_code ec;
    for (int n = 0; n < 1000; ++n) {
        const std::string target = n == 0 ? base : base + "-" + std::to_string(n);
        if (fs::exists(target, ec) || fs::exists(target + "-wal", ec) || fs::exists(target + "-shm", ec))
            continue;
        fs::rename(path, target, ec);
        if (ec)
            return makeError(ErrorCode::IoError, "cannot move " + path + " aside: " + ec.message());
        for (const char* suffix : {"-wal", "-shm"}) {
            if (fs::exists(path + suffix, ec))
                fs::rename(path + suffix, target + suffix, ec);
            if (ec)
                return makeError(ErrorCode::IoError, "cannot move " + path + suffix + " aside: " + ec.message());
        }
        return target;
    }
    return makeError(ErrorCode::IoError, "no free name to move " + path + " aside");
}

}  // namespace

int latestSchemaVersion() {
    return migrations().back().version;
}

Database::Database(std::unique_ptr<Impl> impl) : m_impl(std::move(impl)) {}
Database::Database(Database&&) noexcept = default;
Database& Database::operator=(Database&&) noexcept = default;
Database::~Database() = default;

const OpenReport& Database::openReport() const {
    return m_impl->report;
}
const std::string& Database::path() const {
    return m_impl->path;
}
int Database::schemaVersion() const {
    return m_impl->schemaVersion;
}
sqlite3* Database::handle() const {
    return m_impl->db;
}
int& Database::transactionDepth() {
    return m_impl->transactionDepth;
}

int64_t Database::nowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

Status Database::exec(std::string_view sql) {
    return execRaw(m_impl->db, sql);
}

Result<Statement> Database::prepare(std::string_view sql) {
    auto [it, inserted] = m_impl->statements.try_emplace(std::string(sql), nullptr);
    if (inserted) {
        const int rc = sqlite3_prepare_v3(m_impl->db, sql.data(), int(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                          &it->second, nullptr);
        if (rc != SQLITE_OK) {
            sqlite3_finalize(it->second);
            m_impl->statements.erase(it);
            return sqlError(m_impl->db, rc, sql);
        }
    }
    return Statement(m_impl->db, it->second);
}

Result<std::string> Database::integrityCheck() {
    return queryText(m_impl->db, "PRAGMA integrity_check");
}

Result<Database> Database::open(const std::string& path, OpenOptions options) {
    const int target = options.schemaVersion > 0 ? options.schemaVersion : latestSchemaVersion();
    if (target > latestSchemaVersion())
        return makeError(ErrorCode::InvalidArgument, "no schema version " + std::to_string(target));

    auto openOnce = [&]() -> Result<std::unique_ptr<Impl>> {
        RC_TRY(checkHeader(path));
        auto impl = std::make_unique<Impl>();
        impl->path = path;
        const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
        int rc = sqlite3_open_v2(path.c_str(), &impl->db, flags, nullptr);
        if (rc != SQLITE_OK)
            return sqlError(impl->db, rc, "opening " + path);
        sqlite3_extended_result_codes(impl->db, 1);
        sqlite3_busy_timeout(impl->db, options.busyTimeoutMs);
        // The first statements read the header and the schema: a damaged file fails here with CORRUPT/NOTADB.
        RC_TRY(execRaw(impl->db, "PRAGMA foreign_keys = ON"));
        Result<std::string> version = queryText(impl->db, "PRAGMA user_version");
        STORAGE_CHECK(version);
        const int current = std::stoi(*version);
        if (options.verifyOnOpen) {
            Result<std::string> check = queryText(impl->db, "PRAGMA quick_check");
            STORAGE_CHECK(check);
            if (*check != "ok")
                return makeError(ErrorCode::CorruptFile, path + " is damaged: " + check->substr(0, 500));
            RC_TRY(checkFileSize(impl->db, path));
        }
        if (current > latestSchemaVersion())
            return makeError(ErrorCode::Unsupported, path + " has schema version " + std::to_string(current) +
                                                         ", newer than this app's " +
                                                         std::to_string(latestSchemaVersion()));
        Result<std::string> mode = queryText(impl->db, "PRAGMA journal_mode = WAL");
        STORAGE_CHECK(mode);
        if (*mode != "wal")
            return makeError(ErrorCode::DatabaseError, "cannot switch " + path + " to WAL mode (" + *mode + ")");
        // NORMAL in WAL mode: a commit survives an application crash; a power cut may lose the last commits but
        // never corrupts the file.
        RC_TRY(execRaw(impl->db, "PRAGMA synchronous = NORMAL"));
        // A round of tens of MB grows the WAL by as much; after a checkpoint, give the space back beyond 64 MiB.
        RC_TRY(execRaw(impl->db, "PRAGMA journal_size_limit = 67108864"));
        RC_TRY(migrate(impl->db, current, target));
        impl->schemaVersion = std::max(current, target);
        return impl;
    };

    Result<std::unique_ptr<Impl>> first = openOnce();
    if (first)
        return Database(std::move(*first));
    if (first.error().code != ErrorCode::CorruptFile || !options.recoverCorrupt)
        return first.error();

    Result<std::string> moved = quarantine(path);
    if (!moved)
        return makeError(ErrorCode::CorruptFile, first.error().detail + "; and " + moved.error().detail);
    Result<std::unique_ptr<Impl>> fresh = openOnce();
    if (!fresh)
        return fresh.error();
    (*fresh)->report = OpenReport{true, *moved,
                                  "The database was damaged (" + first.error().detail + "). It was moved to " + *moved +
                                      " and a new, empty database was created."};
    return Database(std::move(*fresh));
}

// ---- Transaction

Transaction::Transaction(Database& db, int depth) : m_db(&db), m_depth(depth) {}

Transaction::Transaction(Transaction&& other) noexcept
    : m_db(std::exchange(other.m_db, nullptr)), m_depth(other.m_depth) {}

Transaction::~Transaction() {
    rollback();
}

Result<Transaction> Transaction::begin(Database& db) {
    int& depth = db.transactionDepth();
    if (depth == 0 && sqlite3_get_autocommit(db.handle()) == 0)
        return makeError(ErrorCode::DatabaseError, "a transaction is already open outside storage::Transaction");
    RC_TRY(db.exec(depth == 0 ? std::string("BEGIN IMMEDIATE") : "SAVEPOINT sp" + std::to_string(depth)));
    return Transaction(db, depth++);
}

Status Transaction::commit() {
    assert(m_db != nullptr);
    const Status st = m_db->exec(m_depth == 0 ? std::string("COMMIT") : "RELEASE sp" + std::to_string(m_depth));
    if (!st)
        return st;  // the destructor rolls back what is left
    --m_db->transactionDepth();
    m_db = nullptr;
    return {};
}

void Transaction::rollback() {
    if (m_db == nullptr)
        return;
    // A failed statement (SQLITE_FULL, ...) may already have rolled the whole transaction back.
    if (sqlite3_get_autocommit(m_db->handle()) == 0) {
        if (m_depth == 0)
            (void)m_db->exec("ROLLBACK");
        else
            (void)m_db->exec("ROLLBACK TO sp" + std::to_string(m_depth) + "; RELEASE sp" + std::to_string(m_depth));
    }
    --m_db->transactionDepth();
    m_db = nullptr;
}

}  // namespace storage
