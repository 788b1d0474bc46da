#pragma once
// The suite's own functions, live in one Lua state: request(cell) or
// task(cell, llm), key_for(cell, keys) and check(cell, response|result). Every call is protected and
// bounded in time and memory. Workers share the state with their policies;
// status and export use one to see which stored answers are stale.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "lua/lua_state.h"
#include "suite/matrix.h"
#include "suite/suite.h"
#include "suite/where.h"

namespace shepherd {

struct CheckInput {
  std::string_view content;
  std::string_view model;
  std::string_view finish_reason;
  std::string_view usage_json;  // empty: none
};

class SuiteRuntime {
 public:
  // Loads the suite into a fresh state and checks that its matrix is the one
  // the tasks were planned from. Throws Error like load_suite.
  SuiteRuntime(const Suite& suite, const Matrix& matrix);
  ~SuiteRuntime();
  SuiteRuntime(const SuiteRuntime&) = delete;
  SuiteRuntime& operator=(const SuiteRuntime&) = delete;

  lua_State* lua() const { return lua_; }

  // request(cell): the body as the suite builds it (the host sets `model`
  // afterwards). False, with `error`, when it raises or returns no object.
  // A task suite's body is that of its first turn: task(cell, llm) runs up
  // to its first llm:chat, which never returns.
  bool request_body(uint64_t ordinal, nlohmann::json& body, std::string& error);

  // key_for(cell, keys): the index of the preferred key, or -1. Throws
  // Error(SUITE_INVALID) when it raises or names an unknown key.
  int preferred_key(uint64_t ordinal, const std::vector<std::string>& key_ids);

  // check(cell, response): true, or false with `reason`.
  bool check(uint64_t ordinal, const CheckInput& response, std::string& reason);

  // check(cell, result) of a task suite, with the result at `index` (popped).
  bool check_result(uint64_t ordinal, int index, std::string& reason);

  void push_cell(uint64_t ordinal);
  void push_function(const char* name);  // suite[name], raw
  const Suite& suite() const { return suite_; }
  const Matrix& matrix() const { return matrix_; }
  // The model a cell's conversation talks to before any switch.
  std::string first_model(uint64_t ordinal) const;

 private:
  void verify_matrix();
  bool first_turn_body(uint64_t ordinal, nlohmann::json& body, std::string& error);
  bool call_check(std::string& reason);  // check and its two arguments are on the stack

  const Suite& suite_;
  const Matrix& matrix_;
  LuaState lua_;
  int suite_ref_ = LUA_NOREF;
};

// What identifies the request a task sends: the body request(cell) built,
// without the model the host sets (a resource model may change). Equal
// bodies, equal hashes: a done task whose hash no longer matches is stale.
std::string request_hash(const nlohmann::json& body);

// Sets each cell's request_hash from request(cell) as the suite builds it now
// (empty where it raises), for the cells `where` keeps. `cells` are
// plan_cells(suite), in matrix order.
void fill_request_hashes(const Suite& suite, std::vector<TaskSeed>& cells, const Where& where = Where());

// The cells `status`, `export` and workflows describe: the suite as it is
// now, with the hashes of the requests it builds now, `where` kept.
std::vector<TaskSeed> cells_in_view(const Suite& suite, const Where& where);

}  // namespace shepherd
