#include "inputs/file_glob.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace shepherd {

namespace {

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t slash = text.find('/', start);
    if (slash == std::string::npos) slash = text.size();
    if (slash > start) out.push_back(text.substr(start, slash - start));
    start = slash + 1;
  }
  return out;
}

bool segments_match(const std::vector<std::string>& pattern, size_t p, const std::vector<std::string>& path, size_t s) {
  if (p == pattern.size()) return s == path.size();
  if (pattern[p] == "**") {
    // Zero or more whole segments, never hidden ones.
    for (size_t k = s; k <= path.size(); ++k) {
      if (segments_match(pattern, p + 1, path, k)) return true;
      if (k < path.size() && path[k][0] == '.') return false;
    }
    return false;
  }
  if (s == path.size()) return false;
  // FNM_PERIOD: "*.c" does not match ".hidden.c"; a pattern naming the dot does.
  if (fnmatch(pattern[p].c_str(), path[s].c_str(), FNM_PERIOD) != 0) return false;
  return segments_match(pattern, p + 1, path, s + 1);
}

bool has_magic(const std::string& segment) { return segment.find_first_of("*?[") != std::string::npos; }

}  // namespace

bool glob_matches(const std::string& glob, const std::string& path) {
  return segments_match(split(glob), 0, split(path), 0);
}

std::vector<FileRecord> find_files(const std::string& root, const std::string& glob) {
  if (glob.empty() || glob[0] == '/') {
    throw Error(codes::SUITE_INVALID, "shepherd.files: the glob must be a relative path, got '" + glob + "'",
                Stage::config, {{"glob", glob}});
  }
  const auto pattern = split(glob);
  if (std::find(pattern.begin(), pattern.end(), "..") != pattern.end()) {
    throw Error(codes::SUITE_INVALID, "shepherd.files: the glob must not climb out with '..' (give {root = …})",
                Stage::config, {{"glob", glob}});
  }
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    throw Error(codes::SUITE_INVALID, "shepherd.files: no such directory: " + root, Stage::config, {{"root", root}});
  }
  // Walk only below the pattern's literal prefix ("inputs/src/**/*.c" walks inputs/src).
  std::string prefix;
  size_t literal = 0;
  while (literal + 1 < pattern.size() && !has_magic(pattern[literal])) prefix += pattern[literal++] + "/";
  std::vector<FileRecord> out;
  const fs::path base = fs::path(root) / prefix;
  auto consider = [&](const fs::directory_entry& entry, const std::string& rel) {
    std::error_code e;
    if (!entry.is_regular_file(e) || !glob_matches(glob, rel)) return;
    FileRecord f;
    f.path = rel;
    f.name = fs::path(rel).filename().string();
    size_t dot = f.name.rfind('.');
    bool has_ext = dot != std::string::npos && dot > 0;
    f.stem = has_ext ? f.name.substr(0, dot) : f.name;
    f.ext = has_ext ? f.name.substr(dot + 1) : "";
    f.size = entry.file_size(e);
    out.push_back(std::move(f));
  };
  if (fs::is_directory(base, ec)) {
    const bool deep = std::find(pattern.begin() + literal, pattern.end(), "**") != pattern.end();
    if (deep) {
      for (fs::recursive_directory_iterator it(base, fs::directory_options::skip_permission_denied, ec), end;
           !ec && it != end; it.increment(ec)) {
        std::string rel = prefix + fs::relative(it->path(), base).generic_string();
        // Hidden directories are never entered.
        if (it->path().filename().string()[0] == '.' && it->is_directory()) {
          it.disable_recursion_pending();
          continue;
        }
        consider(*it, rel);
      }
    } else {
      // Without "**" the depth is fixed: walk just that deep.
      const size_t depth = pattern.size() - literal;
      for (fs::recursive_directory_iterator it(base, fs::directory_options::skip_permission_denied, ec), end;
           !ec && it != end; it.increment(ec)) {
        if (static_cast<size_t>(it.depth()) + 1 >= depth) it.disable_recursion_pending();
        consider(*it, prefix + fs::relative(it->path(), base).generic_string());
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.path < b.path; });
  return out;
}

}  // namespace shepherd
