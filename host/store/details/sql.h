#pragma once
// Small helpers shared by the Store and the Writer: NULL mapping for record
// fields and the one funnel that turns SQLite exceptions into shepherd Errors.
#include <cstdint>
#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include <SQLiteCpp/Column.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>

#include "core/error.h"

namespace shepherd::details {

// Records use "" for "unknown"; the database says NULL.
inline void bind_text(SQLite::Statement& st, int index, const std::string& value) {
  if (value.empty()) st.bind(index);
  else st.bind(index, value);
}

// Same, without copying: `value` must outlive the statement's next step.
inline void bind_text_ref(SQLite::Statement& st, int index, const std::string& value) {
  if (value.empty()) st.bind(index);
  else st.bindNoCopy(index, value);
}

// Records use -1 for "unknown".
inline void bind_count(SQLite::Statement& st, int index, int64_t value) {
  if (value < 0) st.bind(index);
  else st.bind(index, value);
}

// Ids start at 1; 0 means "not part of a run".
inline void bind_id(SQLite::Statement& st, int index, int64_t value) {
  if (value <= 0) st.bind(index);
  else st.bind(index, value);
}

// NULL reads back as ""; reuses `out`'s buffer and keeps embedded NULs.
inline void read_text(std::string& out, const SQLite::Column& column) {
  const char* text = column.getText();
  out.assign(text, static_cast<size_t>(column.getBytes()));
}

Error storage_error(const char* code, const std::string& path, std::string_view operation,
                    const std::exception& cause);

// Runs `body`, rethrowing SQLite failures as Error(code, Stage::storage).
template <class Body>
decltype(auto) guard(const char* code, const std::string& path, std::string_view operation,
                     Body&& body) {
  try {
    return std::forward<Body>(body)();
  } catch (const SQLite::Exception& e) {
    throw storage_error(code, path, operation, e);
  }
}

}  // namespace shepherd::details
