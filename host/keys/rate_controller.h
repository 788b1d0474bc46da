#pragma once
// The request rate of one (key, model) slot: configured, learned from the
// provider's rate-limit headers, and adapted on 429s (halve, then climb back
// by small steps while requests keep succeeding). Its owner feeds the result
// to a Pacer and keeps requests away while cooldown_until() lies ahead.
//
// Every limit, configured or learned, is paced at 95 % so that a provider's
// fixed window never sees limit + 1 from timing noise.
//
// Plain and single-threaded: its owner serialises calls and passes the time
// in, so tests drive it with a virtual clock. No call allocates.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/clock.h"

namespace shepherd {

// What a response said about its slot's limits; absent headers stay empty.
// Counts are per the provider's window, resets in seconds from the answer.
struct RateHeaders {
  std::optional<double> limit_requests, remaining_requests, reset_requests_s;
  std::optional<double> limit_tokens, remaining_tokens, reset_tokens_s;
};

// Reads x-ratelimit-{limit,remaining,reset}-{requests,tokens} (OpenAI; Azure
// sends only the remaining ones). Names must be lowercase already; values that
// do not parse are left out rather than guessed.
RateHeaders parse_rate_headers(const std::vector<std::pair<std::string, std::string>>& lowercase_headers);

// A reset value in seconds: Go-style durations ("850ms", "1.5s", "6m0s",
// "2h3m4.5s", units h m s ms us µs ns) or a plain number of seconds. Empty,
// negative or malformed text gives nullopt.
std::optional<double> parse_rate_duration(std::string_view text);

class RateController {
 public:
  // requests_per_minute <= 0: not configured.
  explicit RateController(double requests_per_minute = 0);

  // The rate to pace at; 0 means no limit is known: unlimited.
  double rate_per_second() const;
  // Requests may not go out before this: a 429's Retry-After (1 s without
  // one), or a spent window's end (see remaining_requests(now)).
  TimePoint cooldown_until() const { return cooldown_until_; }
  // The provider's last remaining-requests count; nullopt before any. The
  // count already excludes answered requests, so the owner keeps requests in
  // flight at or below it.
  std::optional<double> remaining_requests() const { return remaining_requests_; }
  // The same while it holds, nullopt after, so a count of 0 cannot hold the
  // slot back once the provider has moved on: until its reset; 1 s when no
  // reset was sent; a count of 0 with a limit only until one request's worth
  // would be back in a refilling window (reset / limit).
  std::optional<double> remaining_requests(TimePoint now) const;

  // The token rate the headers allow (95 % of remaining / reset, else of the
  // limit per minute); 0 when unknown. The owner combines it with any
  // configured tokens-per-minute.
  double token_rate_per_second() const;
  std::optional<double> remaining_tokens() const { return remaining_tokens_; }
  std::optional<double> remaining_tokens(TimePoint now) const;  // nullopt once stale

  // Until the first answer nothing is known about the provider's limit. An
  // owner that keeps one request in flight meanwhile spares a slot whose
  // concurrency exceeds the provider's window a first burst of 429s; it costs
  // one round trip at the start.
  bool awaiting_first_answer() const { return !answered_; }

  void on_request(TimePoint now);
  // For every answer, headers or none, before on_success / on_rate_limited.
  void on_headers(const RateHeaders& h, TimePoint now);
  void on_success(TimePoint now);
  void on_rate_limited(std::optional<double> retry_after_s, TimePoint now);

  // Introspection for events and tests.
  double configured_per_second() const { return configured_rps_; }
  double learned_per_second() const { return learned_rps_; }  // before the margin
  bool backing_off() const { return backoff_rps_ > 0; }
  double observed_per_second(TimePoint now) const;  // from on_request, last ~2 s

 private:
  double ceiling() const;  // the limit with its margin; 0 when none is known
  void start_cooldown(TimePoint until);

  double configured_rps_ = 0;
  double learned_rps_ = 0;  // remaining / reset, or limit per minute
  double learned_token_rps_ = 0;

  std::optional<double> remaining_requests_;
  TimePoint remaining_requests_until_{};
  std::optional<double> remaining_tokens_;
  TimePoint remaining_tokens_until_{};

  // Additive increase / multiplicative decrease. backoff_rps_ > 0 caps the
  // rate until it has climbed back to the ceiling (or, with none known, until
  // a long stretch without a 429).
  double backoff_rps_ = 0;
  double step_rps_ = 0;         // added per full second of success
  TimePoint last_step_{};       // the last decrease or increase
  TimePoint last_limited_{};    // the last 429 that counted
  TimePoint decrease_guard_{};  // 429s before this were sent before the decrease
  TimePoint cooldown_until_{};

  // Requests sent per bucket, a ring over the last ~2 s, to know what rate
  // provoked a 429 when no rate was set.
  static constexpr int kBuckets = 8;
  std::array<uint32_t, kBuckets> bucket_count_{};
  std::array<int64_t, kBuckets> bucket_id_{};
  std::optional<TimePoint> first_request_;
  bool answered_ = false;
};

}  // namespace shepherd
