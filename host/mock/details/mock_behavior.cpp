#include "mock/details/mock_behavior.h"

#include <algorithm>
#include <chrono>

namespace shepherd::details {
namespace {

Outcome canned_outcome(CannedFault fault) {
  switch (fault) {
    case CannedFault::none: return Outcome::canned;
    case CannedFault::error_500: return Outcome::error_500;
    case CannedFault::hang: return Outcome::hang;
    case CannedFault::stall: return Outcome::stall;
    case CannedFault::reset: return Outcome::reset;
    case CannedFault::malformed: return Outcome::malformed;
    case CannedFault::wrong_model: return Outcome::wrong_model;
  }
  return Outcome::canned;
}

}  // namespace

MockBehavior::MockBehavior(const Scenario& scenario)
    : scenario_(scenario),
      fault_rng_(scenario.seed),
      latency_rng_(scenario.seed ^ 0x9e3779b97f4a7c15ULL),
      canned_used_(scenario.canned.size(), 0) {}

bool MockBehavior::key_valid(std::string_view key) const {
  if (key.empty()) return false;
  if (!scenario_.valid_keys) return true;
  // std::set<std::string> has no heterogeneous find without a transparent comparator.
  return scenario_.valid_keys->count(std::string(key)) > 0;
}

Decision MockBehavior::decide(const ChatFacts& facts, TimePoint now) {
  Decision d;
  if (!facts.well_formed) {
    d.outcome = Outcome::bad_request;
    return d;
  }
  if (!key_valid(facts.key)) {
    d.outcome = Outcome::unauthorized;
    return d;
  }
  // Canned replies stand in for a real provider's answers: they come before
  // this mock's own limits and faults, and take its latency. A rule naming a
  // fault makes the request meet it, as a drawn fault would.
  if (const CannedReply* rule = match_canned(facts)) {
    d.outcome = canned_outcome(rule->fault);
    d.canned = rule;
    if (d.outcome != Outcome::hang) d.latency_ms = draw_latency_ms();
    return d;
  }

  const RateLimitSpec& limit = scenario_.rate_limit;
  if (limit.requests > 0) {
    std::string id;
    id.reserve(facts.key.size() + facts.model.size() + 1);
    id.append(facts.key).append(1, '|').append(facts.model);
    Window& w = windows_[std::move(id)];
    const auto window = std::chrono::milliseconds(limit.window_ms);
    if (w.used == 0 || now - w.start >= window) {
      w.start = now;
      w.used = 0;
    }
    auto left = std::chrono::ceil<std::chrono::milliseconds>(w.start + window - now).count();
    const int64_t reset_ms = std::max<int64_t>(1, left);
    if (w.used >= limit.requests) {
      d.outcome = Outcome::rate_limited;
      d.rate = RateHeaders{limit.requests, 0, reset_ms};
      return d;
    }
    ++w.used;
    d.rate = RateHeaders{limit.requests, limit.requests - w.used, reset_ms};
  }

  auto quota = scenario_.quota.empty() ? scenario_.quota.end()
                                       : scenario_.quota.find(std::string(facts.model));
  if (quota != scenario_.quota.end() && quota_used_[quota->first] >= quota->second) {
    d.outcome = Outcome::quota_exhausted;
    return d;
  }

  d.outcome = draw_fault(facts.cell);
  if (d.outcome == Outcome::ok && quota != scenario_.quota.end()) ++quota_used_[quota->first];
  if (d.outcome != Outcome::hang) d.latency_ms = draw_latency_ms();
  return d;
}

const CannedReply* MockBehavior::match_canned(const ChatFacts& facts) {
  const std::vector<CannedReply>& rules = scenario_.canned;
  for (size_t i = 0; i < rules.size(); ++i) {
    const CannedReply& rule = rules[i];
    if (rule.times > 0 && canned_used_[i] >= rule.times) continue;
    if (rule.turn > 0 && rule.turn != facts.turn) continue;
    if (facts.body.find(rule.when) == std::string_view::npos) continue;  // "" is found everywhere
    ++canned_used_[i];
    return &rule;
  }
  return nullptr;
}

Outcome MockBehavior::draw_fault(uint64_t cell) {
  // One draw per request even when faults are suppressed, so the sequence
  // depends only on the seed and the number of requests.
  const double u = std::uniform_real_distribution<double>(0.0, 1.0)(fault_rng_);
  const FaultSpec& f = scenario_.faults;
  if (f.first_attempt_only && !seen_cells_.insert(cell).second) return Outcome::ok;
  double edge = 0;
  const std::pair<double, Outcome> order[] = {
      {f.error_500, Outcome::error_500}, {f.hang, Outcome::hang},
      {f.stall, Outcome::stall},         {f.reset, Outcome::reset},
      {f.malformed, Outcome::malformed}, {f.wrong_model, Outcome::wrong_model}};
  for (const auto& [p, outcome] : order) {
    edge += p;
    if (p > 0 && u < edge) return outcome;
  }
  return Outcome::ok;
}

double MockBehavior::draw_latency_ms() {
  const LatencySpec& l = scenario_.latency;
  switch (l.kind) {
    case LatencySpec::Kind::fixed: return l.a_ms;
    case LatencySpec::Kind::uniform:
      return l.b_ms > l.a_ms ? std::uniform_real_distribution<double>(l.a_ms, l.b_ms)(latency_rng_)
                             : l.a_ms;
    case LatencySpec::Kind::normal:
      return l.b_ms > 0
                 ? std::max(0.0, std::normal_distribution<double>(l.a_ms, l.b_ms)(latency_rng_))
                 : l.a_ms;
    case LatencySpec::Kind::exponential:
      return l.a_ms > 0 ? std::exponential_distribution<double>(1.0 / l.a_ms)(latency_rng_) : 0;
  }
  return 0;
}

void MockBehavior::reset() {
  windows_.clear();
  quota_used_.clear();
  seen_cells_.clear();
  std::fill(canned_used_.begin(), canned_used_.end(), 0);
}

}  // namespace shepherd::details
