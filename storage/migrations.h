// Internal: the ordered schema migrations. Version N is reached by running migrations 1..N in order, each in its own
// transaction, and PRAGMA user_version records the last one applied. Never edit a released migration: add one.
#pragma once

#include <span>

namespace storage {

struct Migration {
    int version;      // 1, 2, ... without gaps
    const char* sql;  // one or more statements, no parameters
};

std::span<const Migration> migrations();

}  // namespace storage
