#include "suite/field_lines.h"

#include <algorithm>
#include <cctype>

namespace shepherd {

namespace {

constexpr size_t npos = std::string::npos;

bool is_ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Length of a long bracket opener "[==[" at i, or 0.
size_t long_bracket(const std::string& s, size_t i) {
  if (i >= s.size() || s[i] != '[') return 0;
  size_t j = i + 1;
  while (j < s.size() && s[j] == '=') ++j;
  return j < s.size() && s[j] == '[' ? j - i + 1 : 0;
}

// If a string literal or a comment starts at i, the index just past it; else i.
size_t skip_noncode(const std::string& s, size_t i) {
  if (s.compare(i, 2, "--") == 0) {
    if (size_t open = long_bracket(s, i + 2)) {
      std::string close = "]" + std::string(open - 2, '=') + "]";
      size_t end = s.find(close, i + 2 + open);
      return end == npos ? s.size() : end + close.size();
    }
    size_t end = s.find('\n', i);
    return end == npos ? s.size() : end;
  }
  if (size_t open = long_bracket(s, i)) {
    std::string close = "]" + std::string(open - 2, '=') + "]";
    size_t end = s.find(close, i + open);
    return end == npos ? s.size() : end + close.size();
  }
  if (s[i] == '"' || s[i] == '\'') {
    char q = s[i];
    size_t j = i + 1;
    while (j < s.size() && s[j] != q && s[j] != '\n') j += s[j] == '\\' ? 2 : 1;
    return std::min(j + 1, s.size());
  }
  return i;
}

size_t skip_space(const std::string& s, size_t i) {
  while (i < s.size()) {
    if (std::isspace(static_cast<unsigned char>(s[i]))) {
      ++i;
    } else if (s.compare(i, 2, "--") == 0) {
      i = skip_noncode(s, i);
    } else {
      break;
    }
  }
  return i;
}

// Calls visit(pos) for each position at depth 1 inside the table whose '{'
// is at `open`; visit returns true to stop. Returns the stop position or npos.
template <typename Visit>
size_t scan_table(const std::string& s, size_t open, Visit visit) {
  int depth = 0;
  for (size_t i = open; i < s.size();) {
    size_t after = skip_noncode(s, i);
    if (after != i) {
      i = after;
      continue;
    }
    char c = s[i];
    if (depth == 1 && visit(i)) return i;
    if (c == '{' || c == '(' || (c == '[' && !long_bracket(s, i))) {
      ++depth;
    } else if (c == '}' || c == ')' || c == ']') {
      if (--depth == 0) return npos;
    }
    ++i;
  }
  return npos;
}

// Is `name =` or `["name"] =` written at i?
bool key_at(const std::string& s, size_t i, const std::string& name) {
  size_t after;
  if (s[i] == '[') {
    size_t q = skip_space(s, i + 1);
    if (q >= s.size() || (s[q] != '"' && s[q] != '\'')) return false;
    if (s.compare(q + 1, name.size(), name) != 0 || q + 1 + name.size() >= s.size() || s[q + 1 + name.size()] != s[q]) {
      return false;
    }
    after = skip_space(s, q + 2 + name.size());
    if (after >= s.size() || s[after] != ']') return false;
    after = skip_space(s, after + 1);
  } else {
    bool bare = s.compare(i, name.size(), name) == 0 && (i == 0 || (!is_ident_char(s[i - 1]) && s[i - 1] != '.')) &&
                (i + name.size() >= s.size() || !is_ident_char(s[i + name.size()]));
    if (!bare) return false;
    after = skip_space(s, i + name.size());
  }
  return after < s.size() && s[after] == '=' && (after + 1 >= s.size() || s[after + 1] != '=');
}

// `name =` as a field of the table opened at `open`.
size_t find_field(const std::string& s, size_t open, const std::string& name) {
  return scan_table(s, open, [&](size_t i) { return key_at(s, i, name); });
}

// `name =` anywhere: for a file that does not `return { … }` directly.
size_t find_field_anywhere(const std::string& s, const std::string& name) {
  for (size_t i = 0; i < s.size();) {
    size_t after = skip_noncode(s, i);
    if (after != i) {
      i = after;
      continue;
    }
    if (key_at(s, i, name)) return i;
    ++i;
  }
  return npos;
}

// Start of the n-th (1-based) item of the table opened at `open`.
size_t find_item(const std::string& s, size_t open, int n) {
  int item = 1;
  size_t first = skip_space(s, open + 1);
  if (n == 1) return first;
  return scan_table(s, open, [&](size_t i) {
    if (s[i] == ',' || s[i] == ';') ++item;
    return item == n && (s[i] == ',' || s[i] == ';');
  });
}

// The '{' of a table literal assigned at `pos` (after its '='), or npos.
size_t table_after(const std::string& s, size_t pos) {
  size_t eq = s.find('=', pos);
  if (eq == npos) return npos;
  size_t v = skip_space(s, eq + 1);
  return v < s.size() && s[v] == '{' ? v : npos;
}

// The table the chunk returns: "return {" at the top level.
size_t root_table(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    size_t after = skip_noncode(s, i);
    if (after != i) {
      i = after;
      continue;
    }
    if (s.compare(i, 6, "return") == 0 && (i == 0 || !is_ident_char(s[i - 1]))) {
      size_t v = skip_space(s, i + 6);
      if (v < s.size() && s[v] == '{') return v;
    }
    ++i;
  }
  return npos;
}

}  // namespace

int find_field_line(const std::string& source, const std::vector<std::string>& path) {
  size_t table = root_table(source);
  size_t found_at = npos;
  for (const auto& component : path) {
    if (component.empty()) break;
    if (table == npos) {
      if (found_at != npos || std::isdigit(static_cast<unsigned char>(component[0]))) break;
      found_at = find_field_anywhere(source, component);
      if (found_at == npos) break;
      table = table_after(source, found_at);
      continue;
    }
    size_t pos;
    if (std::isdigit(static_cast<unsigned char>(component[0]))) {
      pos = find_item(source, table, std::stoi(component));
      if (pos != npos && source[pos] != '{') pos = skip_space(source, pos + (source[pos] == ',' || source[pos] == ';'));
      table = pos != npos && pos < source.size() && source[pos] == '{' ? pos : npos;
    } else {
      pos = find_field(source, table, component);
      table = pos == npos ? npos : table_after(source, pos);
    }
    if (pos == npos) break;
    found_at = pos;
  }
  if (found_at == npos) return 0;
  return 1 + static_cast<int>(std::count(source.begin(), source.begin() + static_cast<long>(found_at), '\n'));
}

}  // namespace shepherd
