#pragma once
// Files written whole or not at all.
#include <string>

namespace shepherd {

// Writes `content` to a temporary file beside `path` (".NAME.tmp-PID"), syncs it, renames it
// over `path` and syncs the directory: a reader (or a crash) never sees a
// partial file. Throws Error(IO_ERROR) naming the path.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace shepherd
