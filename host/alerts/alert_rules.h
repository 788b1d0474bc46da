#pragma once
// The suite's alert rules, counted as failed attempts happen: a rule fires
// when `count` matching attempts fell within its last `window_s` seconds,
// and at most once per window. Thread-safe.
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "suite/suite.h"

namespace shepherd {

struct FiredAlert {
  size_t rule = 0;
  int count = 0;  // matching attempts in the window when it fired
  double at = 0;  // unix seconds
  nlohmann::json to_json(const AlertSpec& spec, const std::string& suite) const;
  std::string text(const AlertSpec& spec, const std::string& suite) const;  // one line for logs and chat
};

class AlertCounter {
 public:
  explicit AlertCounter(const AlertSpec& spec);

  // Rule `rule` last fired at `at` (unix seconds): a run starting within its
  // window stays quiet until the window has passed.
  void fired_before(size_t rule, double at);

  // Failed attempts matching rule `rule` that ended before this counter
  // existed (unix seconds, any order; an earlier run's, still in the store):
  // they count toward its window as if observed, so a run that follows one
  // which stopped just below the count fires at its first match. Seeding
  // alone fires nothing; the next matching attempt does.
  void seed(size_t rule, const std::vector<double>& ended_at);

  // A failed attempt of this class and code at `now` (unix seconds): the
  // rules that fire because of it.
  std::vector<FiredAlert> observe(const std::string& cls, const std::string& code, double now);

 private:
  const AlertSpec& spec_;
  std::mutex mutex_;
  std::vector<std::deque<double>> seen_;     // per rule: times in its window
  std::vector<double> last_fired_;           // per rule; 0: never
};

}  // namespace shepherd
