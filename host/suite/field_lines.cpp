#include "suite/field_lines.h"

#include <algorithm>
#include <cctype>

namespace shepherd {

namespace {

bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Position of `name` used as a table key at or after `from`, or npos.
size_t find_key(const std::string& src, const std::string& name, size_t from) {
  for (size_t pos = src.find(name, from); pos != std::string::npos; pos = src.find(name, pos + 1)) {
    size_t end = pos + name.size();
    bool bare = (pos == 0 || !is_ident_char(src[pos - 1])) && (end >= src.size() || !is_ident_char(src[end]));
    bool quoted = pos >= 2 && src[pos - 1] == '"' && src[pos - 2] == '[' && end < src.size() && src[end] == '"';
    if (!bare && !quoted) continue;
    size_t after = quoted ? end + 2 : end;
    while (after < src.size() && (src[after] == ' ' || src[after] == '\t')) ++after;
    if (after < src.size() && src[after] == '=' && (after + 1 >= src.size() || src[after + 1] != '=')) return pos;
  }
  return std::string::npos;
}

}  // namespace

int find_field_line(const std::string& source, const std::vector<std::string>& path) {
  size_t pos = 0;
  bool found_any = false;
  size_t found_at = 0;
  for (const auto& component : path) {
    if (component.empty() || std::isdigit(static_cast<unsigned char>(component[0]))) continue;  // list index
    size_t p = find_key(source, component, pos);
    if (p == std::string::npos) break;
    found_any = true;
    found_at = pos = p;
  }
  if (!found_any) return 0;
  return 1 + static_cast<int>(std::count(source.begin(), source.begin() + static_cast<long>(found_at), '\n'));
}

}  // namespace shepherd
