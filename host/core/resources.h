#pragma once
// Finds the packaged policies/ and lua/ library: an installed or source-tree
// copy on disk when there is one (so users can edit it), else the copy
// compiled into the binary.
#include <optional>
#include <string>
#include <vector>

namespace shepherd {

struct EmbeddedFile {
  const char* path;  // relative, e.g. "policies/retry.lua"
  const char* content;
};

namespace details {
const std::vector<EmbeddedFile>& embedded_files();
}

struct Resource {
  std::string name;     // what error messages show: a file path or "<embedded>/…"
  std::string content;
  std::string path;     // empty when embedded
};

// `relative` is e.g. "policies/classify.lua". Throws Error(IO_ERROR) when absent.
Resource load_resource(const std::string& relative);

// The directory holding policies/ and lua/ on disk, if any.
std::optional<std::string> resource_root();

std::string read_file(const std::string& path);  // throws Error(IO_ERROR)

std::string executable_dir();

}  // namespace shepherd
