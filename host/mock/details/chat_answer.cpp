#include "mock/details/chat_answer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <string_view>
#include <vector>

#include "core/hash.h"

namespace shepherd::details {
namespace {

using nlohmann::json;

// SplitMix64: fully specified, so the same seed gives the same values with
// any standard library (std's distributions promise no such thing).
class Draws {
 public:
  explicit Draws(uint64_t seed) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }

 private:
  uint64_t state_;
};

constexpr std::string_view words[] = {"alpha", "bravo", "cedar",  "delta", "ember", "fjord",
                                      "grove", "harbor", "iris",  "juniper", "kestrel", "lumen",
                                      "maple", "nova",  "orchid", "pebble"};
// Nested objects deeper than this get {}: a schema cannot make the answer explode.
constexpr int max_schema_depth = 8;
// Numbers stay well inside the range a double holds exactly.
constexpr double max_magnitude = 1e12;

std::string dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

const json* field(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  auto it = object.find(key);
  return it == object.end() ? nullptr : &*it;
}

std::string hex16(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

json word(Draws& draws) { return std::string(words[draws.below(std::size(words))]); }

// The schema's type: "type" (the first non-null one of a list), else guessed
// from the keywords present.
std::string schema_type(const json& schema) {
  if (const json* type = field(schema, "type")) {
    if (type->is_string()) return type->get<std::string>();
    if (type->is_array()) {
      for (const json& t : *type)
        if (t.is_string() && t != "null") return t.get<std::string>();
      if (!type->empty()) return "null";
    }
  }
  if (field(schema, "properties")) return "object";
  if (field(schema, "items")) return "array";
  return "string";
}

// A small number inside [minimum, maximum] when given (1 to 100 when not);
// a `number` has one decimal.
json number_for(const json& schema, Draws& draws, bool integer) {
  const json* min = field(schema, "minimum");
  const json* max = field(schema, "maximum");
  const bool has_min = min && min->is_number();
  const bool has_max = max && max->is_number();
  double lo = has_min ? min->get<double>() : 1;
  double hi = has_max ? max->get<double>() : 100;
  if (has_min && !has_max) hi = lo + 99;
  if (has_max && !has_min) lo = hi >= 1 ? 1 : hi - 99;
  lo = std::clamp(lo, -max_magnitude, max_magnitude);
  hi = std::clamp(hi, lo, max_magnitude);
  const double scale = integer ? 1 : 10;
  const auto from = static_cast<int64_t>(std::ceil(lo * scale));
  const auto to = std::max(from, static_cast<int64_t>(std::floor(hi * scale)));
  const int64_t n = from + static_cast<int64_t>(draws.below(static_cast<uint64_t>(to - from) + 1));
  if (integer) return n;
  return static_cast<double>(n) / 10.0;  // n / 10 prints as its shortest decimal
}

json object_for(const json& schema, Draws& draws, int depth);

json value_for(const json& schema, Draws& draws, int depth) {
  if (!schema.is_object()) return word(draws);
  if (const json* c = field(schema, "const")) return *c;
  if (const json* e = field(schema, "enum"); e && e->is_array() && !e->empty())
    return (*e)[draws.below(e->size())];
  for (const char* alternatives : {"anyOf", "oneOf"}) {
    const json* a = field(schema, alternatives);
    if (a && a->is_array() && !a->empty() && depth < max_schema_depth)
      return value_for(a->front(), draws, depth + 1);
  }
  const std::string type = schema_type(schema);
  if (type == "integer") return number_for(schema, draws, true);
  if (type == "number") return number_for(schema, draws, false);
  if (type == "boolean") return draws.below(2) == 1;
  if (type == "array") return json::array();
  if (type == "null") return nullptr;
  if (type == "object")
    return depth < max_schema_depth ? object_for(schema, draws, depth + 1) : json::object();
  return word(draws);
}

// Every required property, and each other one on a coin toss.
json object_for(const json& schema, Draws& draws, int depth) {
  std::set<std::string> required;
  if (const json* r = field(schema, "required"); r && r->is_array())
    for (const json& name : *r)
      if (name.is_string()) required.insert(name.get<std::string>());
  json out = json::object();
  if (const json* properties = field(schema, "properties"); properties && properties->is_object()) {
    for (const auto& [name, property] : properties->items()) {
      const bool toss = draws.unit() < 0.5;  // drawn for every property: the sequence stays stable
      if (toss || required.count(name) > 0) out[name] = value_for(property, draws, depth);
    }
  }
  for (const std::string& name : required)
    if (!out.contains(name)) out[name] = word(draws);  // required but not described
  return out;
}

}  // namespace

ConversationFacts read_conversation(const json& messages) {
  ConversationFacts facts;
  if (!messages.is_array() || messages.empty()) return facts;
  facts.turn = 1;
  for (const json& message : messages) {
    const json* role = field(message, "role");
    if (!role || *role != "assistant") continue;
    ++facts.turn;
    const json* calls = field(message, "tool_calls");
    if (calls && calls->is_array() && !calls->empty()) ++facts.tool_call_answers;
  }
  return facts;
}

std::string tool_arguments(const json& parameters, uint64_t seed) {
  Draws draws(seed);
  return dump(object_for(parameters, draws, 0));
}

ChatAnswer answer_chat(const json& body, const json& messages, const ToolsSpec* tools) {
  ChatAnswer answer = chat_answer(messages);
  if (!tools || tools->call_probability <= 0) return answer;
  const json* offered = field(body, "tools");
  if (!offered || !offered->is_array()) return answer;
  std::vector<const json*> functions;  // the offered tools that name a function
  for (const json& tool : *offered) {
    const json* function = field(tool, "function");
    const json* name = function ? field(*function, "name") : nullptr;
    if (name && name->is_string() && !name->get_ref<const std::string&>().empty())
      functions.push_back(function);
  }
  if (functions.empty()) return answer;
  if (const json* choice = field(body, "tool_choice"); choice && *choice == "none") return answer;
  if (tools->max_calls && read_conversation(messages).tool_call_answers >= *tools->max_calls)
    return answer;

  // The seed: the conversation so far and the tools it offers, nothing else.
  std::string seed_text = "messages\n";
  seed_text += dump(messages);
  seed_text += "\ntools\n";
  seed_text += dump(*offered);
  Draws draws(stable_hash64(seed_text));
  if (!(draws.unit() < tools->call_probability)) return answer;

  static const json no_parameters = json::object();
  const uint64_t first = draws.below(functions.size());
  size_t call_bytes = 0;
  for (int i = 0; i < tools->parallel; ++i) {
    const json& function = *functions[(first + static_cast<uint64_t>(i)) % functions.size()];
    ToolCall call;
    call.id = "call_" + hex16(draws.next());
    call.name = function["name"].get<std::string>();
    const json* parameters = field(function, "parameters");
    call.arguments = tool_arguments(parameters ? *parameters : no_parameters, draws.next());
    call_bytes += call.name.size() + call.arguments.size();
    answer.tool_calls.push_back(std::move(call));
  }
  answer.content.clear();
  answer.completion_tokens = token_estimate(call_bytes);
  return answer;
}

}  // namespace shepherd::details
