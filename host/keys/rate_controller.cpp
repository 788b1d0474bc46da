#include "keys/rate_controller.h"

#include <algorithm>
#include <cmath>

namespace shepherd {

namespace {

using std::chrono::seconds;

// Pace 5 % under any limit: a fixed window then never sees limit + 1 from the
// pacer's burst or the network's jitter.
constexpr double kMargin = 0.95;
// Each full second of success after a 429 adds this share of the rate the
// slot ran at before it.
constexpr double kStepShare = 0.05;
// With no limit known, this long without a 429 lifts the cap altogether.
constexpr auto kUnlimitedAfter = seconds(30);
// Halving never goes below one request a minute: the slot must keep probing.
constexpr double kMinRate = 1.0 / 60;
// A 429 with no rate set and none measured: start again from one a second.
constexpr double kFallbackRate = 1.0;
// Headers with a count but no reset describe a window of unknown length;
// trust them this long.
constexpr double kDefaultValidity = 1.0;
// Retry-After values past a day are treated as a day; TimePoint must not
// overflow on a provider's nonsense.
constexpr double kMaxWaitSeconds = 86400;
constexpr auto kBucket = std::chrono::milliseconds(250);

TimePoint after(TimePoint now, double secs) {
  if (!(secs > 0)) return now;
  secs = std::min(secs, kMaxWaitSeconds);
  return now + std::chrono::ceil<SteadyClock::duration>(std::chrono::duration<double>(secs));
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// An unsigned decimal ("12", "1.5", ".5", "5.") at s[pos]; advances pos. No
// signs, exponents, inf or nan: none of them is a count or a duration.
std::optional<double> read_number(std::string_view s, size_t& pos) {
  double value = 0;
  bool any = false;
  while (pos < s.size() && is_digit(s[pos])) {
    value = value * 10 + (s[pos++] - '0');
    any = true;
  }
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    double scale = 0.1;
    while (pos < s.size() && is_digit(s[pos])) {
      value += (s[pos++] - '0') * scale;
      scale /= 10;
      any = true;
    }
  }
  if (!any || !std::isfinite(value)) return std::nullopt;
  return value;
}

// The unit at s[pos] in seconds; advances pos. Longest match first: "ms"
// before "m".
std::optional<double> read_unit(std::string_view s, size_t& pos) {
  struct Unit {
    std::string_view name;
    double seconds;
  };
  static constexpr Unit units[] = {
      {"ms", 1e-3}, {"us", 1e-6}, {"\xC2\xB5s", 1e-6}, {"\xCE\xBCs", 1e-6},
      {"ns", 1e-9}, {"h", 3600},  {"m", 60},           {"s", 1},
  };
  std::string_view rest = s.substr(pos);
  for (const Unit& u : units) {
    if (rest.substr(0, u.name.size()) == u.name) {
      pos += u.name.size();
      return u.seconds;
    }
  }
  return std::nullopt;
}

std::optional<double> parse_count(std::string_view text) {
  text = trim_spaces(text);
  size_t pos = 0;
  auto value = read_number(text, pos);
  if (!value || pos != text.size()) return std::nullopt;
  return value;
}

}  // namespace

std::optional<double> parse_rate_duration(std::string_view text) {
  text = trim_spaces(text);
  size_t pos = 0;
  auto plain = read_number(text, pos);
  if (!plain) return std::nullopt;
  if (pos == text.size()) return plain;  // a bare number is seconds

  double total = 0;
  pos = 0;
  while (pos < text.size()) {
    auto number = read_number(text, pos);
    if (!number) return std::nullopt;
    auto unit = read_unit(text, pos);
    if (!unit) return std::nullopt;
    total += *number * *unit;
  }
  if (!std::isfinite(total)) return std::nullopt;
  return total;
}

RateHeaders parse_rate_headers(const std::vector<std::pair<std::string, std::string>>& lowercase_headers) {
  RateHeaders h;
  constexpr std::string_view prefix = "x-ratelimit-";
  for (const auto& [name_text, value] : lowercase_headers) {
    std::string_view name = name_text;
    if (name.substr(0, prefix.size()) != prefix) continue;
    name.remove_prefix(prefix.size());
    if (name == "limit-requests") h.limit_requests = parse_count(value);
    else if (name == "remaining-requests") h.remaining_requests = parse_count(value);
    else if (name == "reset-requests") h.reset_requests_s = parse_rate_duration(value);
    else if (name == "limit-tokens") h.limit_tokens = parse_count(value);
    else if (name == "remaining-tokens") h.remaining_tokens = parse_count(value);
    else if (name == "reset-tokens") h.reset_tokens_s = parse_rate_duration(value);
  }
  return h;
}

namespace {

// The sustainable rate one kind of header describes: what is left of the
// provider's window over the time left in it; else the limit, read per minute.
// This also settles on the refill rate of a provider that refills continuously
// (OpenAI): spending faster lowers remaining and raises reset until the two
// balance. An exhausted or just-reset window says nothing about the rate (and
// the limit read per minute would be wrong for a window of another length), so
// `previous` stays and the cooldown covers the wait; no headers keep it too.
double learned_rate(std::optional<double> limit, std::optional<double> remaining,
                    std::optional<double> reset_s, double previous) {
  if (remaining && reset_s) return *reset_s > 0 && *remaining >= 1 ? *remaining / *reset_s : previous;
  if (limit && *limit > 0) return *limit / 60;
  return previous;
}

// How long a remaining count holds, in seconds. A count left over holds until
// the reset: a fixed window only spends it, a refilling one only adds to it.
// A count of zero is different: a fixed window stays empty until its reset,
// but OpenAI refills continuously and reports the time until it is *full*
// (up to a minute) while one request's worth comes back after reset / limit.
// Waiting that long and then asking costs a fixed window one 429 (whose
// Retry-After then covers the rest) and saves a refilling one a minute idle.
double validity(std::optional<double> limit, std::optional<double> remaining, std::optional<double> reset_s) {
  if (!reset_s) return kDefaultValidity;
  if (remaining && *remaining < 1 && limit && *limit >= 1) return *reset_s / *limit;
  return *reset_s;
}

int64_t bucket_of(TimePoint t) { return t.time_since_epoch() / kBucket; }

size_t ring_index(int64_t bucket, int size) {
  return static_cast<size_t>(((bucket % size) + size) % size);
}

}  // namespace

RateController::RateController(double requests_per_minute)
    : configured_rps_(requests_per_minute > 0 ? requests_per_minute / 60 : 0) {}

double RateController::ceiling() const {
  double limit = configured_rps_;
  if (learned_rps_ > 0) limit = limit > 0 ? std::min(limit, learned_rps_) : learned_rps_;
  return limit * kMargin;
}

double RateController::rate_per_second() const {
  double limit = ceiling();
  if (backoff_rps_ > 0) return limit > 0 ? std::min(limit, backoff_rps_) : backoff_rps_;
  return limit;
}

double RateController::token_rate_per_second() const { return learned_token_rps_ * kMargin; }

std::optional<double> RateController::remaining_requests(TimePoint now) const {
  if (now >= remaining_requests_until_) return std::nullopt;
  return remaining_requests_;
}

std::optional<double> RateController::remaining_tokens(TimePoint now) const {
  if (now >= remaining_tokens_until_) return std::nullopt;
  return remaining_tokens_;
}

void RateController::start_cooldown(TimePoint until) { cooldown_until_ = std::max(cooldown_until_, until); }

void RateController::on_request(TimePoint now) {
  int64_t bucket = bucket_of(now);
  size_t i = ring_index(bucket, kBuckets);
  if (bucket_id_[i] != bucket) {
    bucket_id_[i] = bucket;
    bucket_count_[i] = 0;
  }
  ++bucket_count_[i];
  if (!first_request_) first_request_ = now;
}

double RateController::observed_per_second(TimePoint now) const {
  if (!first_request_) return 0;
  int64_t newest = bucket_of(now);
  int64_t oldest = newest - (kBuckets - 1);
  uint64_t sent = 0;
  for (size_t i = 0; i < bucket_id_.size(); ++i)
    if (bucket_id_[i] >= oldest && bucket_id_[i] <= newest) sent += bucket_count_[i];
  // Over the ring's span, or since the first request if that is shorter, but
  // never under a second: a burst of ten in one millisecond is not 10,000/s.
  TimePoint from = std::max(TimePoint(oldest * kBucket), *first_request_);
  double span = std::max(1.0, std::chrono::duration<double>(now - from).count());
  return static_cast<double>(sent) / span;
}

void RateController::on_headers(const RateHeaders& h, TimePoint now) {
  answered_ = true;
  learned_rps_ = learned_rate(h.limit_requests, h.remaining_requests, h.reset_requests_s, learned_rps_);
  learned_token_rps_ = learned_rate(h.limit_tokens, h.remaining_tokens, h.reset_tokens_s, learned_token_rps_);

  if (h.remaining_requests) {
    remaining_requests_ = *h.remaining_requests;
    remaining_requests_until_ = after(now, validity(h.limit_requests, h.remaining_requests, h.reset_requests_s));
    // Spent: nothing more gets through before the count is worth asking again.
    if (*h.remaining_requests < 1) start_cooldown(remaining_requests_until_);
  }
  if (h.remaining_tokens) {
    remaining_tokens_ = *h.remaining_tokens;
    remaining_tokens_until_ = after(now, validity(h.limit_tokens, h.remaining_tokens, h.reset_tokens_s));
  }
}

void RateController::on_rate_limited(std::optional<double> retry_after_s, TimePoint now) {
  answered_ = true;
  double wait = retry_after_s && *retry_after_s >= 0 ? *retry_after_s : 1.0;
  start_cooldown(after(now, wait));
  // Requests sent before the last decrease answer with 429s too; they say
  // nothing about the new rate. Nothing is sent during the cooldown, so the
  // guard lasts at least that long.
  if (now < decrease_guard_) return;

  double current = rate_per_second();
  if (current <= 0) current = observed_per_second(now);
  if (current <= 0) current = kFallbackRate;
  // The climb back is measured against where this episode started, not the
  // already-halved rate of a second decrease.
  if (backoff_rps_ <= 0) step_rps_ = current * kStepShare;
  backoff_rps_ = std::max(current / 2, kMinRate);
  last_step_ = now;
  last_limited_ = now;
  decrease_guard_ = std::max(now + seconds(1), cooldown_until_);
}

void RateController::on_success(TimePoint now) {
  answered_ = true;
  if (backoff_rps_ <= 0 || now - last_step_ < seconds(1)) return;
  auto steps = (now - last_step_) / seconds(1);
  backoff_rps_ += static_cast<double>(steps) * step_rps_;
  last_step_ += steps * seconds(1);
  double limit = ceiling();
  // (The small allowance keeps ten steps of 5 % from missing by a rounding.)
  bool recovered = limit > 0 ? backoff_rps_ >= limit * (1 - 1e-9) : now - last_limited_ >= kUnlimitedAfter;
  if (recovered) backoff_rps_ = 0;
}

}  // namespace shepherd
