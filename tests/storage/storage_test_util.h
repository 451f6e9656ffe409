// Helpers shared by the storage tests: a temporary folder and deterministic snapshot bytes.
#pragma once

#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/records.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace storage::test {

// A fresh folder under the system temp dir, removed with everything in it when the object dies.
class TempDir {
public:
    TempDir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "rc-storage-XXXXXX").string();
        m_path = mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
        EXPECT_FALSE(m_path.empty());
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(m_path, ec);
    }
    std::string file(const std::string& name) const { return m_path + "/" + name; }
    const std::string& path() const { return m_path; }

private:
    std::string m_path;
};

// Bytes derived from a seed (xorshift64), so that a reader can regenerate what a writer stored.
inline std::vector<uint8_t> patternBytes(uint64_t seed, size_t size) {
    std::vector<uint8_t> out(size);
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < size; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = uint8_t(x >> 24);
    }
    return out;
}

inline KvSnapshotRecord makeSnapshot(int round, int firstLayer, int layerCount, std::vector<uint8_t> bytes,
                                     const std::string& fingerprint = "model-A", const std::string& hash = "tmpl-1") {
    KvSnapshotRecord s;
    s.round = round;
    s.firstLayer = firstLayer;
    s.layerCount = layerCount;
    s.tokenCount = 7;
    s.modelFingerprint = fingerprint;
    s.dtype = "f16";
    s.templateHash = hash;
    s.bytes = std::move(bytes);
    return s;
}

inline Database openOrDie(const std::string& path, OpenOptions options = {}) {
    Result<Database> db = Database::open(path, options);
    if (!db.ok()) {
        ADD_FAILURE() << db.error().toString();
        std::abort();
    }
    return std::move(*db);
}

// A fresh database with a ChatStore, and a helper that appends one message (failing the test if it cannot).
class ChatStoreFixture : public ::testing::Test {
protected:
    TempDir m_dir;
    Database m_db = openOrDie(m_dir.file("chat.db"));
    ChatStore m_chats{m_db};

    int64_t append(int64_t conversation, int64_t parent, Role role, const std::string& text) {
        Message m;
        m.conversationId = conversation;
        m.parentId = parent;
        m.role = role;
        m.text = text;
        Result<int64_t> id = m_chats.appendMessage(m);
        EXPECT_TRUE(id.ok()) << id.error().toString();
        return id.ok() ? *id : 0;
    }
};

}  // namespace storage::test
