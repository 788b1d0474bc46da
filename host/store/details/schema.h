#pragma once
// Every store connection is opened here, the one way: pragmas, version check,
// and (for writable connections) the forward migration to Store::kSchemaVersion.
#include <memory>
#include <string>

namespace SQLite { class Database; }

namespace shepherd::details {

enum class Access { read_write, read_only };

// Opens `path`, applies the pragmas and brings the schema up to date.
// Throws Error: STORE_OPEN_FAILED (missing read-only store, not a store,
// unreadable), STORE_SCHEMA_TOO_NEW (written by a newer shepherd).
std::unique_ptr<SQLite::Database> open_store(const std::string& path, Access access);

// The version recorded in `meta`; 0 for a file with no schema yet.
int read_schema_version(SQLite::Database& db);

}  // namespace shepherd::details
