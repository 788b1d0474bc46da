#include "keys/key_pool.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <ctime>

#include "core/clock.h"

namespace shepherd {

namespace {

// A few requests at most may go back to back; the rest are spread evenly.
constexpr double kRequestBurst = 2;
// Token budgets: a burst of a few seconds' worth.
constexpr double kTokenBurstSeconds = 3;

int64_t seconds_of(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// The next time of day `minute_utc` comes round, on the steady clock.
TimePoint next_reset(int minute_utc, TimePoint now) {
  std::time_t wall = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&wall, &tm);
  int now_s = tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
  int wait_s = minute_utc * 60 - now_s;
  if (wait_s <= 0) wait_s += 24 * 3600;
  return now + std::chrono::seconds(wait_s);
}

std::string iso_in(TimePoint until, TimePoint now) {
  if (until == TimePoint::max()) return "end of run";
  auto ms = std::chrono::duration_cast<Millis>(until - now).count();
  return std::to_string(ms) + " ms";
}

}  // namespace

KeySlot::KeySlot(const SlotLimits& l, const CircuitBreakerOptions& breaker_options)
    : limits(l), rate(l.rpm), breaker(breaker_options) {}

uint32_t KeySlot::sent_last_minute(TimePoint now) {
  int64_t second = seconds_of(now);
  if (second - last_second >= 60) {
    per_second.fill(0);
  } else {
    for (int64_t s = last_second + 1; s <= second; ++s) per_second[static_cast<size_t>(s % 60)] = 0;
  }
  last_second = std::max(last_second, second);
  uint32_t total = 0;
  for (uint32_t n : per_second) total += n;
  return total;
}

uint32_t KeyPool::add_key(std::string id, uint32_t provider) {
  keys_.push_back(PoolKey{std::move(id), provider, false});
  return static_cast<uint32_t>(keys_.size() - 1);
}

int KeyPool::add_slot(uint32_t key, uint32_t model, const SlotLimits& limits, uint32_t endpoint,
                      std::optional<int> quota_reset_minute_utc, const CircuitBreakerOptions& breaker) {
  SlotLimits l = limits;
  if (l.concurrency < 1) l.concurrency = 1;
  KeySlot s(l, breaker);
  s.key = key;
  s.model = model;
  s.endpoint = endpoint;
  s.endpoint_key = endpoint_of(endpoint).add_key(key);
  slots_.push_back(std::move(s));
  quota_reset_.push_back(quota_reset_minute_utc);
  if (by_model_.size() <= model) {
    by_model_.resize(model + 1);
    rotation_.resize(model + 1, 0);
  }
  int index = static_cast<int>(slots_.size() - 1);
  by_model_[model].push_back(index);
  update_pacing(slots_.back(), TimePoint{});
  return index;
}

EndpointBreaker& KeyPool::endpoint_of(uint32_t endpoint) {
  if (endpoints_.size() <= endpoint) endpoints_.resize(endpoint + 1);
  return endpoints_[endpoint];
}

void KeyPool::configure_endpoint(uint32_t endpoint, const CircuitBreakerOptions& breaker) {
  EndpointBreaker& e = endpoint_of(endpoint);
  EndpointBreaker fresh(breaker);
  // The same keys in the same order, so the slots' endpoint_key stay right.
  for (int i = 0; i < e.keys(); ++i) fresh.add_key(e.key_at(i));
  e = std::move(fresh);
}

void KeyPool::update_pacing(KeySlot& s, TimePoint now) {
  double rate = s.rate.rate_per_second();
  if (rate != s.requests.rate()) s.requests.set_rate(rate, kRequestBurst, now);
  // Tokens: the configured tpm (with the same 5% margin) or what the
  // provider's -tokens headers say remains, whichever is lower.
  double tps = s.limits.tpm > 0 ? s.limits.tpm / 60.0 * 0.95 : 0;
  double learned = s.rate.token_rate_per_second();
  if (learned > 0) tps = tps > 0 ? std::min(tps, learned) : learned;
  if (tps > 0 && std::abs(tps - s.tokens.rate()) > 1e-9) s.tokens.set_rate(tps, tps * kTokenBurstSeconds, now);
}

bool KeyPool::eligible(KeySlot& s, TimePoint now) {
  if (keys_[s.key].disabled || s.parked_until > now || s.cooldown_until > now) return false;
  // An open breaker whose wait is over turns half-open here: that is a change too.
  EndpointBreaker& endpoint = endpoints_[s.endpoint];
  if (s.breaker.refresh(now)) {
    pending_events_.push_back({"breaker", {{"key", keys_[s.key].id}, {"scope", "slot"}, {"endpoint", s.endpoint},
                                           {"state", std::string(to_string(s.breaker.state()))}}});
  }
  if (endpoint.refresh(now)) {
    pending_events_.push_back({"breaker", {{"key", keys_[s.key].id}, {"scope", "endpoint"}, {"endpoint", s.endpoint},
                                           {"state", std::string(to_string(endpoint.state()))}}});
  }
  int room = s.limits.concurrency;
  // What the provider says is left this window bounds what may be in flight.
  if (auto remaining = s.rate.remaining_requests(now)) room = std::min(room, std::max(1, static_cast<int>(*remaining)));
  // Slow start: with no limit configured, one request first, so the
  // provider's headers can tell the limit before a whole burst goes out.
  if (slow_start_ && s.limits.rpm <= 0 && s.rate.awaiting_first_answer()) room = 1;
  if (s.in_flight >= room) return false;
  if (s.requests.ready_at(now) > now || s.tokens.ready_at(now, 0) > now) return false;
  // Both must admit: a half-open endpoint's few probes are shared by all its slots.
  return s.breaker.allows(now) && endpoint.allows(now);
}

int KeyPool::acquire(uint32_t model, TimePoint now, int preferred_key) {
  if (model >= by_model_.size()) return -1;
  const auto& candidates = by_model_[model];
  // A preferred key that can still serve the model is waited for; only one
  // that cannot (rejected, parked, its or its endpoint's breaker open) lets
  // the task go elsewhere.
  if (preferred_key >= 0) {
    for (int index : candidates) {
      KeySlot& s = slots_[static_cast<size_t>(index)];
      if (static_cast<int>(s.key) != preferred_key) continue;
      const EndpointBreaker& endpoint = endpoints_[s.endpoint];
      bool can_serve = !keys_[s.key].disabled && s.parked_until <= now &&
                       !(s.breaker.state() == CircuitBreaker::State::open && s.breaker.open_until() > now) &&
                       !(endpoint.state() == CircuitBreaker::State::open && endpoint.open_until() > now);
      if (!can_serve) break;
      return eligible(s, now) ? grant(index, now) : -1;
    }
  }
  size_t n = candidates.size();
  int best = -1;
  int best_headroom = 0;
  size_t start = rotation_[model]++;
  for (size_t i = 0; i < n; ++i) {
    int index = candidates[(start + i) % n];
    KeySlot& s = slots_[static_cast<size_t>(index)];
    if (!eligible(s, now)) continue;
    int headroom = s.limits.concurrency - s.in_flight;
    if (headroom > best_headroom) {
      best = index;
      best_headroom = headroom;
    }
  }
  return best < 0 ? -1 : grant(best, now);
}

int KeyPool::grant(int best, TimePoint now) {
  KeySlot& s = slots_[static_cast<size_t>(best)];
  ++s.in_flight;
  ++s.granted;
  s.requests.try_take(now);
  // The request is not built yet: reserve what the last one needed, so that
  // a batch of grants cannot overrun a token budget; reserve_tokens() corrects it.
  if (!s.tokens.unlimited()) s.tokens.charge(s.token_estimate, now);
  s.rate.on_request(now);
  s.breaker.on_admitted();
  endpoints_[s.endpoint].on_admitted();
  s.sent_last_minute(now);
  ++s.per_second[static_cast<size_t>(seconds_of(now) % 60)];
  return best;
}

void KeyPool::reserve_tokens(int slot, double tokens, TimePoint now) {
  KeySlot& s = slots_[static_cast<size_t>(slot)];
  if (!s.tokens.unlimited()) {
    double diff = tokens - s.token_estimate;
    if (diff > 0) s.tokens.charge(diff, now);
    if (diff < 0) s.tokens.give_back(-diff, now);
  }
  s.token_estimate = tokens;
}

void KeyPool::release(int slot, double tokens_reserved, TimePoint now) {
  KeySlot& s = slots_[static_cast<size_t>(slot)];
  free_slot(s);
  if (tokens_reserved > 0 && !s.tokens.unlimited()) s.tokens.give_back(tokens_reserved, now);
  // No outcome: a half-open breaker's probe place goes back, or it would wait forever.
  s.breaker.on_abandoned();
  endpoints_[s.endpoint].on_abandoned();
}

void KeyPool::free_slot(KeySlot& s) {
  if (s.in_flight > 0) --s.in_flight;
}

std::vector<PoolEvent> KeyPool::on_result(int slot, const SlotFeedback& f, double tokens_reserved, TimePoint now) {
  std::vector<PoolEvent> events = std::exchange(pending_events_, {});
  KeySlot& s = slots_[static_cast<size_t>(slot)];
  free_slot(s);
  PoolKey& key = keys_[s.key];
  auto detail = [&](nlohmann::json extra) {
    extra["key"] = key.id;
    extra["slot"] = slot;
    return extra;
  };

  if (!s.tokens.unlimited() && f.tokens_used >= 0) {
    double diff = static_cast<double>(f.tokens_used) - tokens_reserved;
    if (diff > 0) s.tokens.charge(diff, now);
    if (diff < 0) s.tokens.give_back(-diff, now);
  }
  s.rate.on_headers(f.headers, now);

  if (f.auth_failed && !key.disabled) {
    key.disabled = true;
    events.push_back({"key_disabled", detail({{"status", f.status}})});
  }
  if (f.quota_exhausted) {
    const auto& reset = quota_reset_[static_cast<size_t>(slot)];
    s.parked_until = reset ? next_reset(*reset, now) : TimePoint::max();
    // until_unix (null: no reset known) and the model let a later run
    // remember the exhaustion instead of asking again (engine/exhausted_memory.h).
    nlohmann::json until_unix;
    if (reset) until_unix = unix_now() + std::chrono::duration<double>(s.parked_until - now).count();
    events.push_back({"quota_parked", detail({{"until", iso_in(s.parked_until, now)}, {"model_index", s.model},
                                              {"until_unix", until_unix}})});
  }
  // A key refused this model for good (no permission, no such model): park
  // the slot for the run, so a retry storm across keys ends once each key has
  // been tried. Quota wins: it may come back at its reset time.
  if (!f.quota_exhausted && s.parked_until != TimePoint::max()) {
    if (f.forbidden) park_for_run(s, slot, "forbidden", f.status, events);
    else if (f.model_not_found) park_for_run(s, slot, "model_not_found", f.status, events);
  }
  if (f.rate_limited) {
    ++s.rate_limited;
    s.rate.on_rate_limited(f.retry_after_s, now);
    s.cooldown_until = s.rate.cooldown_until();
    events.push_back({"cooldown", detail({{"for", iso_in(s.cooldown_until, now)},
                                          {"rpm", s.rate.rate_per_second() * 60}})});
  }
  bool failure = f.transport_failure || f.status >= 500;
  bool success = !failure && f.status >= 200 && f.status < 300;
  EndpointBreaker& endpoint = endpoints_[s.endpoint];
  if (!failure && !success) {
    // A 4xx or 429 says nothing about the endpoint's health: a probe's place goes back.
    s.breaker.on_abandoned();
    endpoint.on_abandoned();
  } else {
    // Opening from closed, the event says what the window saw; a re-opening
    // after failed probes says only how long it waits.
    auto report = [&](const char* scope, CircuitBreaker::State state, bool was_closed, Millis wait, int calls,
                      double rate) {
      nlohmann::json d{{"scope", scope}, {"state", to_string(state)}, {"endpoint", s.endpoint}};
      if (state == CircuitBreaker::State::open) {
        d["open_ms"] = wait.count();
        if (was_closed) {
          d["calls"] = calls;
          d["failure_rate"] = rate;
        }
      }
      events.push_back({"breaker", detail(std::move(d))});
    };
    bool slot_was_closed = s.breaker.state() == CircuitBreaker::State::closed;
    if (failure ? s.breaker.on_failure(now) : s.breaker.on_success(now)) {
      report("slot", s.breaker.state(), slot_was_closed, s.breaker.wait(), s.breaker.calls(), s.breaker.failure_rate());
    }
    bool endpoint_was_closed = endpoint.state() == CircuitBreaker::State::closed;
    if (failure ? endpoint.on_failure(s.endpoint_key, now) : endpoint.on_success(s.endpoint_key, now)) {
      report("endpoint", endpoint.state(), endpoint_was_closed, endpoint.wait(), endpoint.calls(),
             endpoint.failure_rate());
    }
  }
  if (success) s.rate.on_success(now);
  update_pacing(s, now);
  return events;
}

void KeyPool::park_until(int slot, TimePoint until) { slots_[static_cast<size_t>(slot)].parked_until = until; }

void KeyPool::park_for_run(KeySlot& s, int slot, const char* reason, long status, std::vector<PoolEvent>& events) {
  s.parked_until = TimePoint::max();
  events.push_back({"slot_parked", {{"key", keys_[s.key].id}, {"slot", slot}, {"reason", reason}, {"status", status},
                                    {"until", "end of run"}}});
}

TimePoint KeyPool::next_ready(uint32_t model, TimePoint now) const {
  if (model >= by_model_.size()) return now;
  TimePoint earliest = TimePoint::max();
  for (int index : by_model_[model]) {
    const KeySlot& s = slots_[static_cast<size_t>(index)];
    if (keys_[s.key].disabled || s.parked_until == TimePoint::max()) continue;
    TimePoint at = std::max({s.cooldown_until, s.parked_until, s.requests.ready_at(now), s.tokens.ready_at(now, 0)});
    if (s.breaker.state() == CircuitBreaker::State::open) at = std::max(at, s.breaker.open_until());
    const EndpointBreaker& endpoint = endpoints_[s.endpoint];
    if (endpoint.state() == CircuitBreaker::State::open) at = std::max(at, endpoint.open_until());
    earliest = std::min(earliest, std::max(at, now));
  }
  return earliest;
}

bool KeyPool::model_usable(uint32_t model) const {
  if (model >= by_model_.size()) return false;
  for (int index : by_model_[model]) {
    const KeySlot& s = slots_[static_cast<size_t>(index)];
    if (!keys_[s.key].disabled && s.parked_until != TimePoint::max()) return true;  // a reset time comes round
  }
  return false;
}

int KeyPool::usable_slots(uint32_t model, int except_slot, TimePoint now) const {
  int n = 0;
  if (model < by_model_.size()) {
    for (int index : by_model_[model]) {
      const KeySlot& s = slots_[static_cast<size_t>(index)];
      if (index != except_slot && !keys_[s.key].disabled && s.parked_until <= now) ++n;
    }
  }
  return n;
}

int KeyPool::capacity(uint32_t model) const {
  int total = 0;
  if (model < by_model_.size())
    for (int index : by_model_[model]) total += slots_[static_cast<size_t>(index)].limits.concurrency;
  return total;
}

int KeyPool::in_flight(uint32_t model) const {
  int total = 0;
  if (model < by_model_.size())
    for (int index : by_model_[model]) total += slots_[static_cast<size_t>(index)].in_flight;
  return total;
}

nlohmann::json KeyPool::snapshot(TimePoint now, const std::vector<std::string>& model_names) {
  nlohmann::json out = nlohmann::json::array();
  for (auto& s : slots_) {
    auto ms_left = [&](TimePoint t) {
      return t > now && t != TimePoint::max() ? std::chrono::duration_cast<Millis>(t - now).count() : 0;
    };
    out.push_back({{"key", keys_[s.key].id},
                   {"model", s.model < model_names.size() ? model_names[s.model] : std::to_string(s.model)},
                   {"in_flight", s.in_flight},
                   {"concurrency", s.limits.concurrency},
                   {"rpm_limit", s.limits.rpm},
                   {"rpm_pace", s.rate.rate_per_second() * 60},
                   {"sent_last_minute", s.sent_last_minute(now)},
                   {"requests", s.granted},
                   {"rate_limited", s.rate_limited},
                   {"cooldown_ms", ms_left(s.cooldown_until)},
                   {"breaker", std::string(to_string(s.breaker.state()))},
                   {"endpoint", s.endpoint},
                   {"disabled", keys_[s.key].disabled},
                   {"parked", s.parked_until == TimePoint::max() ? "end of run"
                              : s.parked_until > now ? std::to_string(ms_left(s.parked_until)) + " ms" : ""}});
  }
  return out;
}

nlohmann::json KeyPool::endpoint_snapshot(TimePoint now) {
  nlohmann::json out = nlohmann::json::array();
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    EndpointBreaker& e = endpoints_[i];
    if (e.keys() == 0) continue;  // an index no slot uses
    e.expire(now);
    bool open = e.state() == CircuitBreaker::State::open;
    int64_t open_ms_left = open && e.open_until() > now ? std::chrono::duration_cast<Millis>(e.open_until() - now).count() : 0;
    out.push_back({{"endpoint", i},
                   {"state", std::string(to_string(e.state()))},
                   {"open_ms_left", open_ms_left},
                   {"calls", e.calls()},
                   {"failure_rate", e.failure_rate()},
                   {"failing_keys", e.failing_keys()},
                   {"keys", e.keys()}});
  }
  return out;
}

}  // namespace shepherd
