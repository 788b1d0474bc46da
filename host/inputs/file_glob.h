#pragma once
// shepherd.files(glob): the files under a directory whose relative paths
// match a glob, sorted by path. '*' and '?' stay within one path segment,
// '[…]' is a character class, and a "**" segment matches any number of
// directories (none included).
#include <cstdint>
#include <string>
#include <vector>

namespace shepherd {

struct FileRecord {
  std::string path;  // relative to the root, '/'-separated: a task's id derives from it
  std::string name;  // the last segment ("main.c")
  std::string stem;  // the name without its last extension ("main")
  std::string ext;   // the last extension without the dot ("c"), or ""
  uint64_t size = 0;
};

// Whether `path` (relative, '/'-separated) matches `glob`.
bool glob_matches(const std::string& glob, const std::string& path);

// Regular files under `root` matching `glob` (relative to root), sorted by
// path. Hidden entries ('.'-names) match only a pattern that names the dot.
// Throws Error(SUITE_INVALID) when the glob is absolute or climbs out with
// "..", or when root is not a directory.
std::vector<FileRecord> find_files(const std::string& root, const std::string& glob);

}  // namespace shepherd
