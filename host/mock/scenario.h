#pragma once
// What the mock provider does: latency, limits, quotas, valid keys, faults,
// how it streams, and canned replies.
// Built from JSON (a .json file, or a .lua scenario the CLI evaluates to JSON).
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

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

// How a request with "stream": true is answered: the headers at once, the
// first content chunk after the drawn latency (time to first token), the rest
// chunk_ms apart.
struct StreamSpec {
  double chunk_ms = 0;    // between content chunks
  double comment_ms = 0;  // ": keep-alive" after this long without a write; 0 = never
};

// How a chat request that offers tools (a non-empty "tools" array) is
// answered. Every choice is a pure function of the request's messages and
// tools, so a conversation replayed gets the same answers byte for byte.
struct ToolsSpec {
  double call_probability = 0;  // chance of answering with tool calls rather than text
  std::optional<int> max_calls;  // tool-calling answers per conversation; absent = no limit
  int parallel = 1;              // tool calls in one answer
};

// A fault a canned rule makes its requests meet, with the mock's own answer.
enum class CannedFault { none, error_500, hang, stall, reset, malformed, wrong_model };

// A fixed answer for requests whose raw body contains `when`: a real
// provider's response replayed as it was.
struct CannedReply {
  std::string when;  // plain substring of the raw request body; empty matches every request
  // Only the request that is this turn of its conversation (1 + the assistant
  // messages it carries); 0 = any turn.
  int turn = 0;
  // Instead of the fixed answer: the mock's own answer meeting this fault
  // ("hang": true is fault "hang"). Such a rule has no status, headers or body.
  CannedFault fault = CannedFault::none;
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // sent as given, besides framing
  std::string body;  // "body", "body_json" dumped, or "body_base64" decoded (any bytes, invalid UTF-8 too)
  int times = 0;  // requests it answers before it stops matching; 0 = no limit
  // The Content-Length to declare instead of the body's true size (a lie, as
  // a broken proxy tells it); the connection then closes after the reply, so
  // a longer claim ends in a truncated transfer and nothing is left to reuse.
  std::optional<uint64_t> content_length;
};

struct Scenario {
  LatencySpec latency;
  std::optional<std::set<std::string>> valid_keys;  // absent: every bearer token is valid
  RateLimitSpec rate_limit;
  std::map<std::string, int> quota;  // model -> successful answers before 403 insufficient_quota
  FaultSpec faults;
  std::string wrong_model_name = "mock-impostor-72b";
  uint64_t seed = 1;
  StreamSpec stream;
  std::vector<CannedReply> canned;  // the first rule that matches answers
  std::optional<ToolsSpec> tools;   // absent: requests offering tools get text, as any other

  // Throws Error(SCENARIO_INVALID) naming `source` and the offending field.
  static Scenario from_json(const nlohmann::json& j, const std::string& source);
};

}  // namespace shepherd
