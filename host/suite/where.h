#pragma once
// A slice of a suite's matrix: for some dimensions, the values to keep
// (`--where model=qwen2.5-7b-instruct,qwen2.5-72b-instruct --where prompt_type='flawed_*'`
// on the command line, `{ model = "…", prompt_type = { "flawed_*", "cot" } }`
// in a workflow). A string value may be a glob; a number or a boolean
// matches its text. An unknown dimension, or a value that matches nothing,
// is an error: a typo never silently selects nothing.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "suite/matrix.h"

namespace shepherd {

class Where {
 public:
  Where() = default;  // everything

  // "dim=value[,value…]" each. Throws Error(USAGE) naming the clause.
  static Where parse(const Matrix& matrix, const std::vector<std::string>& clauses);
  // {dim = value | {values}}: the values as patterns (strings) or exact
  // values (numbers, booleans). Throws Error(USAGE) like parse.
  static Where from_json(const Matrix& matrix, const nlohmann::json& spec);

  bool all() const { return allowed_.empty(); }
  bool matches(const Matrix& matrix, uint64_t ordinal) const;
  std::string describe() const;  // "model=a,b prompt_type=flawed_*", for logs and reports

 private:
  void add(const Matrix& matrix, const std::string& dim, const std::vector<nlohmann::json>& patterns,
           const std::string& clause);

  std::vector<std::vector<bool>> allowed_;  // [dim][value index]; empty row: any value
  std::vector<std::string> clauses_;
};

// The text a value matches as (strings as they are, numbers as Lua prints
// them, tables by their name or id): what `--where` and labels show.
std::string value_text(const nlohmann::json& value);

}  // namespace shepherd
