#include "alerts/alert_rules.h"

#include <algorithm>
#include <cstdio>

namespace shepherd {

nlohmann::json FiredAlert::to_json(const AlertSpec& spec, const std::string& suite) const {
  return {{"suite", suite}, {"rule", spec.rules[rule].to_json()}, {"count", count}, {"at", at}};
}

std::string FiredAlert::text(const AlertSpec& spec, const std::string& suite) const {
  const AlertRule& r = spec.rules[rule];
  char buf[512];
  std::snprintf(buf, sizeof buf, "shepherd alert [%s] %s: %d failed attempts%s%s%s%s in the last %.0f s (threshold %d)",
                suite.c_str(), r.name.c_str(), count, r.cls.empty() ? "" : " of class ", r.cls.c_str(),
                r.code.empty() ? "" : " with code ", r.code.c_str(), r.window_s, r.count);
  return buf;
}

AlertCounter::AlertCounter(const AlertSpec& spec)
    : spec_(spec), seen_(spec.rules.size()), last_fired_(spec.rules.size(), 0) {}

void AlertCounter::fired_before(size_t rule, double at) {
  std::lock_guard lock(mutex_);
  if (rule < last_fired_.size()) last_fired_[rule] = std::max(last_fired_[rule], at);
}

void AlertCounter::seed(size_t rule, const std::vector<double>& ended_at) {
  std::lock_guard lock(mutex_);
  if (rule >= seen_.size()) return;
  auto& times = seen_[rule];
  times.insert(times.end(), ended_at.begin(), ended_at.end());
  std::sort(times.begin(), times.end());  // observe() drops expired times from the front
}

std::vector<FiredAlert> AlertCounter::observe(const std::string& cls, const std::string& code, double now) {
  std::vector<FiredAlert> fired;
  std::lock_guard lock(mutex_);
  for (size_t i = 0; i < spec_.rules.size(); ++i) {
    const AlertRule& r = spec_.rules[i];
    if (!r.matches(cls, code)) continue;
    auto& times = seen_[i];
    times.push_back(now);
    while (!times.empty() && times.front() < now - r.window_s) times.pop_front();
    const bool quiet = last_fired_[i] == 0 || now - last_fired_[i] >= r.window_s;  // once per window
    if (static_cast<int>(times.size()) >= r.count && quiet) {
      last_fired_[i] = now;
      fired.push_back(FiredAlert{i, static_cast<int>(times.size()), now});
    }
  }
  return fired;
}

}  // namespace shepherd
