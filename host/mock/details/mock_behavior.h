#pragma once
// The provider's rules, free of I/O: who may call, how often, how much, and
// which fault (if any) a request meets. The server feeds it facts and acts on
// the decision.
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/clock.h"
#include "mock/details/mock_stats.h"
#include "mock/scenario.h"

namespace shepherd::details {

// What the server knows about one chat request before deciding.
struct ChatFacts {
  bool well_formed = false;  // a JSON object with a string "model"
  std::string_view key;      // bearer token; empty when none was sent
  std::string_view model;
  uint64_t cell = 0;      // stable hash of model + messages (used by first_attempt_only)
  std::string_view body;  // the raw request body (canned rules match on it)
  int turn = 0;           // of its conversation: 1 + assistant messages; 0 without messages
};

struct RateHeaders {  // the x-ratelimit-* view of one (key, model) window
  int limit = 0;
  int remaining = 0;
  int64_t reset_ms = 0;
};

struct Decision {
  Outcome outcome = Outcome::ok;
  double latency_ms = 0;            // delay before answering (faults included)
  std::optional<RateHeaders> rate;  // set once the rate limit was consulted
  // The rule that took the request: outcome canned, or the fault it names.
  const CannedReply* canned = nullptr;
};

class MockBehavior {
 public:
  explicit MockBehavior(const Scenario& scenario);

  bool key_valid(std::string_view key) const;

  // Consumes rate-limit budget, quota and fault draws: call once per request.
  Decision decide(const ChatFacts& facts, TimePoint now);

  // Forgets rate windows, quota use, the cells already seen and canned use.
  void reset();

  bool tracks_cells() const { return scenario_.faults.first_attempt_only; }

 private:
  struct Window {
    TimePoint start;
    int used = 0;
  };

  const CannedReply* match_canned(const ChatFacts& facts);
  Outcome draw_fault(uint64_t cell);
  double draw_latency_ms();

  const Scenario& scenario_;
  std::mt19937_64 fault_rng_;
  std::mt19937_64 latency_rng_;  // separate, so latency draws never shift the fault sequence
  std::unordered_map<std::string, Window> windows_;  // "key|model"
  std::unordered_map<std::string, int> quota_used_;
  std::unordered_set<uint64_t> seen_cells_;
  std::vector<int> canned_used_;  // per canned rule: requests it answered
};

}  // namespace shepherd::details
