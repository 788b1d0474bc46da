#include "core/resources.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace fs = std::filesystem;

namespace shepherd {

std::string executable_dir() {
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

std::optional<std::string> resource_root() {
  std::vector<fs::path> candidates;
  if (const char* home = std::getenv("SHEPHERD_HOME")) candidates.emplace_back(home);
  fs::path exe = executable_dir();
  candidates.push_back(exe.parent_path() / SHEPHERD_DATA_SUBDIR);  // installed: bin/../share/shepherd
  candidates.push_back(exe / SHEPHERD_DATA_SUBDIR);
  candidates.emplace_back(SHEPHERD_SOURCE_DIR);  // the build tree of a checkout
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(c / "policies" / "classify.lua", ec)) return c.string();
  }
  return std::nullopt;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(codes::IO_ERROR, "cannot read " + path, Stage::config, {{"path", path}});
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Resource load_resource(const std::string& relative) {
  if (auto root = resource_root()) {
    fs::path p = fs::path(*root) / relative;
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return {p.string(), read_file(p.string()), p.string()};
  }
  for (const auto& f : details::embedded_files()) {
    if (relative == f.path) return {std::string("<embedded>/") + f.path, f.content, ""};
  }
  throw Error(codes::IO_ERROR, "packaged resource not found: " + relative, Stage::config,
              {{"resource", relative}});
}

}  // namespace shepherd
