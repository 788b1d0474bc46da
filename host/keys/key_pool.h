#pragma once
// Slots are (key, model) pairs: providers limit each pair on its own. A slot
// is eligible when its key is usable, it is not cooling down after a 429 nor
// parked (quota, no permission, no such model), its breaker and its
// endpoint's breaker admit a request, it has room in flight, and its request
// and token pacers have a token. Acquire picks the eligible slot with the
// most headroom (a task's preferred key first). Not thread-safe: its owner
// serialises calls.
//
// Breakers: a slot's own breaker takes a failing (key, model) out; the
// endpoint's opens only when two keys fail at once (see endpoint_breaker.h),
// so one bad key never stops the others, and an endpoint answering 503 to a
// third of requests almost never stops all traffic (figures in key_pool_test).
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "keys/circuit_breaker.h"
#include "keys/endpoint_breaker.h"
#include "keys/pacer.h"
#include "keys/rate_controller.h"

namespace shepherd {

struct SlotLimits {
  int concurrency = 8;
  double rpm = 0;  // 0: not configured
  double tpm = 0;  // 0: not configured
};

// What one answer tells the pool about its slot.
struct SlotFeedback {
  long status = 0;
  bool transport_failure = false;  // timeout, reset, connect, stall: the endpoint misbehaved
  bool rate_limited = false;       // a 429 that is not about quota
  bool quota_exhausted = false;    // insufficient_quota and the like
  bool auth_failed = false;        // 401: the key is bad
  // A 403 not about quota, or a 404 for the model: this key may not use this
  // model and will not gain it mid-run, so the slot is parked for the run.
  bool forbidden = false;
  bool model_not_found = false;
  std::optional<double> retry_after_s;
  RateHeaders headers;
  int64_t tokens_used = -1;        // the answer's usage.total_tokens
};

struct PoolEvent {
  std::string kind;  // "cooldown", "key_disabled", "quota_parked", "slot_parked", "breaker"
  nlohmann::json detail;
};

struct KeySlot {
  uint32_t key = 0;
  uint32_t model = 0;
  uint32_t endpoint = 0;
  SlotLimits limits;
  int in_flight = 0;
  Pacer requests;  // requests per minute, spread evenly
  Pacer tokens;    // tokens per minute: estimates reserved, reconciled with usage
  RateController rate;
  CircuitBreaker breaker;
  int endpoint_key = 0;  // this slot's key among its endpoint breaker's keys
  TimePoint cooldown_until{};
  TimePoint parked_until{};
  uint64_t granted = 0;
  uint64_t rate_limited = 0;  // 429s seen
  double token_estimate = 512;  // what the last request reserved
  // Requests sent in each of the last 60 seconds: the rpm actually used.
  std::array<uint32_t, 60> per_second{};
  int64_t last_second = 0;

  KeySlot(const SlotLimits& l, const CircuitBreakerOptions& breaker_options);
  uint32_t sent_last_minute(TimePoint now);
};

struct PoolKey {
  std::string id;  // never the key's value
  uint32_t provider = 0;
  bool disabled = false;  // answered 401: out of the run
};

class KeyPool {
 public:
  // slow_start: a slot with no configured rpm sends one request and waits for
  // its answer (and the provider's rate headers) before it fills up.
  explicit KeyPool(bool slow_start = false) : slow_start_(slow_start) {}

  uint32_t add_key(std::string id, uint32_t provider);
  // `breaker`: the options of this slot's own breaker.
  int add_slot(uint32_t key, uint32_t model, const SlotLimits& limits, uint32_t endpoint = 0,
               std::optional<int> quota_reset_minute_utc = std::nullopt, const CircuitBreakerOptions& breaker = {});
  // The endpoint breaker's options (defaults until set). Setup only, before
  // or after its slots are added: it starts afresh, closed.
  void configure_endpoint(uint32_t endpoint, const CircuitBreakerOptions& breaker);

  // A slot with room for `model`, or -1. With a `preferred_key` (else -1)
  // that can still serve the model, only that key's slot is considered.
  int acquire(uint32_t model, TimePoint now, int preferred_key = -1);
  // Tokens reserved for a request just built (prompt estimate + max_tokens).
  void reserve_tokens(int slot, double tokens, TimePoint now);
  // The answer: releases the slot and learns from it; events say what changed.
  std::vector<PoolEvent> on_result(int slot, const SlotFeedback& feedback, double tokens_reserved, TimePoint now);
  // No answer (cancelled, never sent): the room, a probe's place and the
  // tokens reserved for it go back.
  void release(int slot, double tokens_reserved = 0, TimePoint now = {});

  // The slot takes no request before `until` (TimePoint::max(): this run).
  void park_until(int slot, TimePoint until);

  // When a slot of `model` may next become eligible for a reason other than
  // room in flight (cooldown, pacing, breaker, parking); `now` if one is ready.
  TimePoint next_ready(uint32_t model, TimePoint now) const;
  bool model_usable(uint32_t model) const;  // some slot neither disabled nor parked for the rest of the run
  int usable_slots(uint32_t model, int except_slot, TimePoint now) const;
  int capacity(uint32_t model) const;
  int in_flight(uint32_t model) const;
  nlohmann::json snapshot(TimePoint now, const std::vector<std::string>& model_names);
  // The endpoint breakers, for the status view:
  // [{endpoint, state, open_ms_left, calls, failure_rate, failing_keys, keys}].
  nlohmann::json endpoint_snapshot(TimePoint now);

  const KeySlot& slot(int index) const { return slots_[static_cast<size_t>(index)]; }
  const std::vector<KeySlot>& slots() const { return slots_; }
  const PoolKey& key(uint32_t index) const { return keys_[index]; }
  const EndpointBreaker& endpoint(uint32_t index) const { return endpoints_[index]; }
  size_t endpoints() const { return endpoints_.size(); }

 private:
  bool eligible(KeySlot& s, TimePoint now);
  int grant(int slot, TimePoint now);
  void free_slot(KeySlot& s);
  void update_pacing(KeySlot& s, TimePoint now);
  EndpointBreaker& endpoint_of(uint32_t endpoint);
  void park_for_run(KeySlot& s, int slot, const char* reason, long status, std::vector<PoolEvent>& events);

  std::vector<PoolKey> keys_;
  std::vector<KeySlot> slots_;
  std::vector<std::optional<int>> quota_reset_;  // by slot
  std::vector<std::vector<int>> by_model_;
  std::vector<size_t> rotation_;  // spreads ties across keys
  std::vector<EndpointBreaker> endpoints_;
  bool slow_start_ = false;
  std::vector<PoolEvent> pending_events_;  // changes seen in acquire, handed out by the next on_result
};

}  // namespace shepherd
