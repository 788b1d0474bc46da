#pragma once
// What the mock provider does: latency, limits, quotas, valid keys, faults.
// Built from JSON (a .json file, or a .lua scenario the CLI evaluates to JSON).
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

namespace shepherd {

struct LatencySpec {
  enum class Kind { fixed, uniform, normal, exponential } kind = Kind::fixed;
  double a_ms = 0;  // fixed: value; uniform: min; normal: mean; exponential: mean
  double b_ms = 0;  // uniform: max; normal: stddev
};

struct FaultSpec {  // probabilities in [0, 1], drawn per request in this order
  double error_500 = 0;
  double hang = 0;         // never answer (client's total timeout must fire)
  double stall = 0;        // send headers and part of the body, then go silent
  double reset = 0;        // reset the connection (RST) without answering
  double malformed = 0;    // 200 with a body that is not a chat completion
  double wrong_model = 0;  // 200 whose "model" is another model
  bool first_attempt_only = false;  // faults only on a cell's first request
};

struct RateLimitSpec {  // per (key, model)
  int requests = 0;     // 0 = unlimited
  int window_ms = 60'000;
};

struct Scenario {
  LatencySpec latency;
  std::optional<std::set<std::string>> valid_keys;  // absent: every bearer token is valid
  RateLimitSpec rate_limit;
  std::map<std::string, int> quota;  // model -> successful answers before 403 insufficient_quota
  FaultSpec faults;
  std::string wrong_model_name = "mock-impostor-72b";
  uint64_t seed = 1;

  // Throws Error(SCENARIO_INVALID) naming `source` and the offending field.
  static Scenario from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace shepherd
