#include "mock/scenario.h"

#include <strings.h>

#include <cmath>
#include <initializer_list>
#include <limits>
#include <string_view>

#include "core/error.h"

namespace shepherd {
namespace {

using nlohmann::json;

constexpr int max_parallel_calls = 128;

// Validates one scenario document; every error names the source and the field.
class ScenarioReader {
 public:
  explicit ScenarioReader(const std::string& source) : source_(source) {}

  [[noreturn]] void fail(const std::string& field, const std::string& problem) const {
    std::string message = source_ + ": " + (field.empty() ? problem : field + ": " + problem);
    throw Error(codes::SCENARIO_INVALID, message, Stage::config,
                {{"source", source_}, {"field", field}});
  }

  void only_fields(const json& object, const std::string& prefix,
                   std::initializer_list<std::string_view> allowed) const {
    for (const auto& [name, value] : object.items()) {
      bool known = false;
      for (std::string_view a : allowed) known = known || a == name;
      if (!known) fail(prefix + name, "unknown field");
    }
  }

  const json& require(const json& object, const std::string& prefix, const char* name) const {
    auto it = object.find(name);
    if (it == object.end()) fail(prefix + name, "required");
    return *it;
  }

  double non_negative_ms(const json& value, const std::string& field) const {
    if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0)
      fail(field, "expected a number of milliseconds >= 0");
    return value.get<double>();
  }

  double probability(const json& value, const std::string& field) const {
    if (!value.is_number()) fail(field, "expected a number in [0,1]");
    double p = value.get<double>();
    if (!(p >= 0 && p <= 1)) fail(field, "expected a number in [0,1]");
    return p;
  }

  int integer(const json& value, const std::string& field, int min) const {
    if (!value.is_number_integer()) fail(field, "expected an integer >= " + std::to_string(min));
    if (value.is_number_unsigned()) {
      if (value.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int>::max()))
        fail(field, "too large");
      return static_cast<int>(value.get<uint64_t>());
    }
    int64_t v = value.get<int64_t>();
    if (v < min) fail(field, "expected an integer >= " + std::to_string(min));
    if (v > std::numeric_limits<int>::max()) fail(field, "too large");
    return static_cast<int>(v);
  }

  const json& object(const json& value, const std::string& field) const {
    if (!value.is_object()) fail(field, "expected an object");
    return value;
  }

  LatencySpec latency(const json& value) const {
    LatencySpec spec;
    if (value.is_number()) {
      spec.a_ms = non_negative_ms(value, "latency");
      return spec;
    }
    if (!value.is_object()) fail("latency", "expected a number of milliseconds or an object");
    const json& kind = require(value, "latency.", "kind");
    if (!kind.is_string()) fail("latency.kind", "expected a string");
    const std::string k = kind.get<std::string>();
    if (k == "fixed") {
      only_fields(value, "latency.", {"kind", "ms"});
      spec.kind = LatencySpec::Kind::fixed;
      spec.a_ms = non_negative_ms(require(value, "latency.", "ms"), "latency.ms");
    } else if (k == "uniform") {
      only_fields(value, "latency.", {"kind", "min_ms", "max_ms"});
      spec.kind = LatencySpec::Kind::uniform;
      spec.a_ms = non_negative_ms(require(value, "latency.", "min_ms"), "latency.min_ms");
      spec.b_ms = non_negative_ms(require(value, "latency.", "max_ms"), "latency.max_ms");
      if (spec.b_ms < spec.a_ms) fail("latency.max_ms", "must be >= latency.min_ms");
    } else if (k == "normal") {
      only_fields(value, "latency.", {"kind", "mean_ms", "stddev_ms"});
      spec.kind = LatencySpec::Kind::normal;
      spec.a_ms = non_negative_ms(require(value, "latency.", "mean_ms"), "latency.mean_ms");
      spec.b_ms = non_negative_ms(require(value, "latency.", "stddev_ms"), "latency.stddev_ms");
    } else if (k == "exponential") {
      only_fields(value, "latency.", {"kind", "mean_ms"});
      spec.kind = LatencySpec::Kind::exponential;
      spec.a_ms = non_negative_ms(require(value, "latency.", "mean_ms"), "latency.mean_ms");
    } else {
      fail("latency.kind", "expected one of fixed, uniform, normal, exponential (got '" + k + "')");
    }
    return spec;
  }

  std::set<std::string> keys(const json& value) const {
    if (!value.is_array()) fail("keys", "expected an array of strings");
    std::set<std::string> out;
    for (size_t i = 0; i < value.size(); ++i) {
      const json& k = value[i];
      if (!k.is_string() || k.get_ref<const std::string&>().empty())
        fail("keys[" + std::to_string(i) + "]", "expected a non-empty string");
      out.insert(k.get<std::string>());
    }
    return out;
  }

  RateLimitSpec rate_limit(const json& value) const {
    object(value, "rate_limit");
    only_fields(value, "rate_limit.", {"requests", "window_ms"});
    RateLimitSpec spec;
    spec.requests = integer(require(value, "rate_limit.", "requests"), "rate_limit.requests", 0);
    if (auto it = value.find("window_ms"); it != value.end())
      spec.window_ms = integer(*it, "rate_limit.window_ms", 1);
    return spec;
  }

  std::map<std::string, int> quota(const json& value) const {
    object(value, "quota");
    std::map<std::string, int> out;
    for (const auto& [model, limit] : value.items())
      out[model] = integer(limit, "quota." + model, 0);
    return out;
  }

  FaultSpec faults(const json& value) const {
    object(value, "faults");
    only_fields(
        value, "faults.",
        {"error_500", "hang", "stall", "reset", "malformed", "wrong_model", "first_attempt_only"});
    FaultSpec spec;
    auto read = [&](const char* name, double& into) {
      if (auto it = value.find(name); it != value.end())
        into = probability(*it, std::string("faults.") + name);
    };
    read("error_500", spec.error_500);
    read("hang", spec.hang);
    read("stall", spec.stall);
    read("reset", spec.reset);
    read("malformed", spec.malformed);
    read("wrong_model", spec.wrong_model);
    if (auto it = value.find("first_attempt_only"); it != value.end()) {
      if (!it->is_boolean()) fail("faults.first_attempt_only", "expected true or false");
      spec.first_attempt_only = it->get<bool>();
    }
    double sum =
        spec.error_500 + spec.hang + spec.stall + spec.reset + spec.malformed + spec.wrong_model;
    if (sum > 1 + 1e-9)
      fail("faults", "probabilities sum to " + std::to_string(sum) + ", must be <= 1");
    return spec;
  }

  StreamSpec stream(const json& value) const {
    object(value, "stream");
    only_fields(value, "stream.", {"chunk_ms", "comment_ms"});
    StreamSpec spec;
    if (auto it = value.find("chunk_ms"); it != value.end())
      spec.chunk_ms = non_negative_ms(*it, "stream.chunk_ms");
    if (auto it = value.find("comment_ms"); it != value.end()) {
      spec.comment_ms = non_negative_ms(*it, "stream.comment_ms");
      // A sub-millisecond period would turn the loop into a busy writer.
      if (spec.comment_ms > 0 && spec.comment_ms < 1)
        fail("stream.comment_ms", "expected 0 (no comments) or a number of milliseconds >= 1");
    }
    return spec;
  }

  ToolsSpec tools(const json& value) const {
    object(value, "tools");
    only_fields(value, "tools.", {"call_probability", "max_calls", "parallel"});
    ToolsSpec spec;
    spec.call_probability =
        probability(require(value, "tools.", "call_probability"), "tools.call_probability");
    if (auto it = value.find("max_calls"); it != value.end())
      spec.max_calls = integer(*it, "tools.max_calls", 0);
    if (auto it = value.find("parallel"); it != value.end()) {
      spec.parallel = integer(*it, "tools.parallel", 1);
      // One answer's size grows with it; no provider sends more at once.
      if (spec.parallel > max_parallel_calls)
        fail("tools.parallel",
             "expected an integer from 1 to " + std::to_string(max_parallel_calls));
    }
    return spec;
  }

  std::vector<CannedReply> canned(const json& value) const {
    // A Lua scenario turns an empty table into {}: read it as an empty list.
    if (value.is_object() && value.empty()) return {};
    if (!value.is_array()) fail("canned", "expected an array of rules");
    std::vector<CannedReply> out;
    out.reserve(value.size());
    for (size_t i = 0; i < value.size(); ++i)
      out.push_back(canned_reply(value[i], "canned[" + std::to_string(i) + "]"));
    return out;
  }

 private:
  CannedReply canned_reply(const json& value, const std::string& field) const {
    object(value, field);
    const std::string prefix = field + ".";
    only_fields(value, prefix,
                {"when", "turn", "hang", "fault", "status", "headers", "body", "body_json",
                 "body_base64", "times", "content_length"});
    CannedReply rule;
    if (auto it = value.find("when"); it != value.end()) {
      if (!it->is_string()) fail(prefix + "when", "expected a string");
      rule.when = it->get<std::string>();
    }
    if (auto it = value.find("turn"); it != value.end())
      rule.turn = integer(*it, prefix + "turn", 1);
    rule.fault = canned_fault(value, prefix);
    if (rule.fault != CannedFault::none) {
      // The mock's own answer meets the fault: a fixed answer would never be sent.
      for (const char* name :
           {"status", "headers", "body", "body_json", "body_base64", "content_length"})
        if (value.contains(name))
          fail(prefix + name,
               "a rule with hang or fault sends the mock's own answer, not a fixed one");
    }
    if (auto it = value.find("status"); it != value.end()) {
      if (!it->is_number_integer() || it->get<int64_t>() < 200 || it->get<int64_t>() > 599)
        fail(prefix + "status", "expected an HTTP status from 200 to 599");
      rule.status = it->get<int>();
    }
    if (auto it = value.find("headers"); it != value.end()) rule.headers = headers(*it, prefix + "headers");
    const auto body = value.find("body");
    const auto body_json = value.find("body_json");
    const auto body_base64 = value.find("body_base64");
    if ((body != value.end()) + (body_json != value.end()) + (body_base64 != value.end()) > 1)
      fail(prefix + (body_base64 != value.end() ? "body_base64" : "body_json"),
           "give one of body, body_json, body_base64");
    if (body != value.end()) {
      if (!body->is_string()) fail(prefix + "body", "expected a string (or use body_json)");
      rule.body = body->get<std::string>();
    } else if (body_json != value.end()) {
      rule.body = body_json->dump(-1, ' ', false, json::error_handler_t::replace);
    } else if (body_base64 != value.end()) {
      if (!body_base64->is_string() || !decode_base64(body_base64->get_ref<const std::string&>(), rule.body))
        fail(prefix + "body_base64", "expected a base64 string (RFC 4648, padding optional)");
    }
    if (auto it = value.find("times"); it != value.end()) rule.times = integer(*it, prefix + "times", 1);
    if (auto it = value.find("content_length"); it != value.end()) {
      if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
        fail(prefix + "content_length", "expected an integer >= 0");
      rule.content_length = it->get<uint64_t>();
    }
    return rule;
  }

  CannedFault canned_fault(const json& rule, const std::string& prefix) const {
    const auto hang = rule.find("hang");
    const auto fault = rule.find("fault");
    if (hang != rule.end() && !hang->is_boolean()) fail(prefix + "hang", "expected true or false");
    const bool hangs = hang != rule.end() && hang->get<bool>();
    if (fault == rule.end()) return hangs ? CannedFault::hang : CannedFault::none;
    if (hang != rule.end()) fail(prefix + "fault", "give one of hang, fault");
    static constexpr std::pair<std::string_view, CannedFault> kinds[] = {
        {"error_500", CannedFault::error_500}, {"hang", CannedFault::hang},
        {"stall", CannedFault::stall},         {"reset", CannedFault::reset},
        {"malformed", CannedFault::malformed}, {"wrong_model", CannedFault::wrong_model}};
    if (fault->is_string()) {
      for (const auto& [name, kind] : kinds)
        if (fault->get_ref<const std::string&>() == name) return kind;
    }
    fail(prefix + "fault",
         "expected one of error_500, hang, stall, reset, malformed, wrong_model");
  }

  // RFC 4648 base64 (standard alphabet); '=' padding optional, no whitespace.
  static bool decode_base64(std::string_view text, std::string& out) {
    while (!text.empty() && text.back() == '=') text.remove_suffix(1);
    if (text.size() % 4 == 1) return false;
    out.clear();
    out.reserve(text.size() / 4 * 3 + 2);
    uint32_t bits = 0;
    int count = 0;
    for (unsigned char c : text) {
      int v = c >= 'A' && c <= 'Z'   ? c - 'A'
              : c >= 'a' && c <= 'z' ? c - 'a' + 26
              : c >= '0' && c <= '9' ? c - '0' + 52
              : c == '+'             ? 62
              : c == '/'             ? 63
                                     : -1;
      if (v < 0) return false;
      bits = (bits << 6) | static_cast<uint32_t>(v);
      if (++count == 4) {
        out.push_back(static_cast<char>(bits >> 16));
        out.push_back(static_cast<char>(bits >> 8));
        out.push_back(static_cast<char>(bits));
        bits = 0;
        count = 0;
      }
    }
    if (count == 2) out.push_back(static_cast<char>(bits >> 4));
    if (count == 3) {
      out.push_back(static_cast<char>(bits >> 10));
      out.push_back(static_cast<char>(bits >> 2));
    }
    return true;
  }

  std::vector<std::pair<std::string, std::string>> headers(const json& value,
                                                           const std::string& field) const {
    if (value.is_array() && value.empty()) return {};  // an empty Lua table
    object(value, field);
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [name, v] : value.items()) {
      const std::string where = field + "." + name;
      if (!is_token(name)) fail(where, "not a valid header name");
      // The server frames the body itself; a second framing would corrupt it.
      if (strcasecmp(name.c_str(), "content-length") == 0 ||
          strcasecmp(name.c_str(), "transfer-encoding") == 0)
        fail(where, "set by the server, cannot be canned");
      if (!v.is_string()) fail(where, "expected a string");
      const std::string& text = v.get_ref<const std::string&>();
      if (text.find_first_of("\r\n") != std::string::npos || text.find('\0') != std::string::npos)
        fail(where, "must not contain line breaks or NUL");
      out.emplace_back(name, text);
    }
    return out;
  }

  // An RFC 9110 token: the characters a header name may use.
  static bool is_token(std::string_view name) {
    if (name.empty()) return false;
    for (unsigned char c : name) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) !=
                          std::string_view::npos;
      if (!ok) return false;
    }
    return true;
  }

  const std::string& source_;
};

}  // namespace

Scenario Scenario::from_json(const nlohmann::json& j, const std::string& source) {
  ScenarioReader reader(source);
  if (!j.is_object()) reader.fail("", "a scenario must be a JSON object");
  reader.only_fields(j, "",
                     {"latency", "keys", "rate_limit", "quota", "faults", "wrong_model", "seed",
                      "stream", "canned", "tools"});
  Scenario s;
  if (auto it = j.find("latency"); it != j.end()) s.latency = reader.latency(*it);
  if (auto it = j.find("keys"); it != j.end()) s.valid_keys = reader.keys(*it);
  if (auto it = j.find("rate_limit"); it != j.end()) s.rate_limit = reader.rate_limit(*it);
  if (auto it = j.find("quota"); it != j.end()) s.quota = reader.quota(*it);
  if (auto it = j.find("faults"); it != j.end()) s.faults = reader.faults(*it);
  if (auto it = j.find("wrong_model"); it != j.end()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty())
      reader.fail("wrong_model", "expected a non-empty string");
    s.wrong_model_name = it->get<std::string>();
  }
  if (auto it = j.find("seed"); it != j.end()) {
    if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
      reader.fail("seed", "expected an integer >= 0");
    s.seed = it->get<uint64_t>();
  }
  if (auto it = j.find("stream"); it != j.end()) s.stream = reader.stream(*it);
  if (auto it = j.find("canned"); it != j.end()) s.canned = reader.canned(*it);
  if (auto it = j.find("tools"); it != j.end()) s.tools = reader.tools(*it);
  return s;
}

}  // namespace shepherd
