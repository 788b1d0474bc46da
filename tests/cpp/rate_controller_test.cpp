// The rate controller: limits read from headers or configuration (paced at
// 95 %), halving on a 429 and climbing back while requests succeed, and a
// simulated provider with a fixed window showing the two together with a Pacer.
#include "keys/rate_controller.h"

#include <cmath>
#include <cstdio>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "keys/pacer.h"

namespace shepherd {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Headers = std::vector<std::pair<std::string, std::string>>;

const TimePoint kStart = TimePoint{} + std::chrono::hours(1);

RateHeaders window(double remaining, double reset_s, std::optional<double> limit = std::nullopt) {
  RateHeaders h;
  h.limit_requests = limit;
  h.remaining_requests = remaining;
  h.reset_requests_s = reset_s;
  return h;
}

// ---------------------------------------------------------------- parsing

TEST(RateHeaders, DurationsParse) {
  struct Case {
    const char* text;
    double seconds;
  };
  const Case cases[] = {
      {"1s", 1},        {"6m0s", 360},     {"850ms", 0.85},        {"1.5s", 1.5},
      {"20ms", 0.02},   {"2h3m4.5s", 7384.5}, {"30", 30},          {"0.5", 0.5},
      {"0s", 0},        {"1m", 60},        {"100us", 1e-4},        {"5ns", 5e-9},
      {"1\xC2\xB5s", 1e-6}, {"1m30.25s", 90.25}, {" 7s ", 7},       {".5s", 0.5},
      {"1h", 3600},     {"59m59.999s", 3599.999},
  };
  for (const Case& c : cases) {
    auto got = parse_rate_duration(c.text);
    ASSERT_TRUE(got.has_value()) << c.text;
    EXPECT_NEAR(*got, c.seconds, 1e-9 * std::max(1.0, c.seconds)) << c.text;
  }
}

TEST(RateHeaders, GarbageDurationsAreRefused) {
  for (const char* text : {"", " ", "abc", "s", "ms", "1x", "-1s", "+5", "1s2", "1 s", "1.2.3s", "1e3",
                           "inf", "nan", "5m-3s", "..s", ".s", "2024-05-01T00:00:00Z", "1d", "10sec"}) {
    EXPECT_FALSE(parse_rate_duration(text).has_value()) << '"' << text << '"';
  }
}

TEST(RateHeaders, OpenAiHeaders) {
  Headers headers = {
      {"content-type", "application/json"},
      {"x-ratelimit-limit-requests", "500"},
      {"x-ratelimit-remaining-requests", "499"},
      {"x-ratelimit-reset-requests", "120ms"},
      {"x-ratelimit-limit-tokens", "30000"},
      {"x-ratelimit-remaining-tokens", "29000"},
      {"x-ratelimit-reset-tokens", "2s"},
      {"x-request-id", "req_1"},
  };
  RateHeaders h = parse_rate_headers(headers);
  EXPECT_EQ(h.limit_requests, 500);
  EXPECT_EQ(h.remaining_requests, 499);
  EXPECT_NEAR(h.reset_requests_s.value(), 0.12, 1e-12);
  EXPECT_EQ(h.limit_tokens, 30000);
  EXPECT_EQ(h.remaining_tokens, 29000);
  EXPECT_EQ(h.reset_tokens_s, 2);
}

TEST(RateHeaders, AzureSendsOnlyRemaining) {
  RateHeaders h = parse_rate_headers(
      {{"x-ratelimit-remaining-requests", "42"}, {"x-ratelimit-remaining-tokens", "9000"}});
  EXPECT_EQ(h.remaining_requests, 42);
  EXPECT_EQ(h.remaining_tokens, 9000);
  EXPECT_FALSE(h.limit_requests || h.reset_requests_s || h.limit_tokens || h.reset_tokens_s);
}

TEST(RateHeaders, BadValuesAndOtherHeadersAreLeftOut) {
  RateHeaders h = parse_rate_headers({{"x-ratelimit-limit-requests", "lots"},
                                      {"x-ratelimit-remaining-requests", "-3"},
                                      {"x-ratelimit-reset-requests", "soon"},
                                      {"x-ratelimit-limit-tokens", " 1000 "},
                                      {"ratelimit-remaining", "5"},
                                      {"x-ratelimit-reset", "1s"}});
  EXPECT_FALSE(h.limit_requests || h.remaining_requests || h.reset_requests_s);
  EXPECT_EQ(h.limit_tokens, 1000);
  EXPECT_FALSE(h.remaining_tokens || h.reset_tokens_s);
  RateHeaders none = parse_rate_headers({});
  EXPECT_FALSE(none.limit_requests || none.remaining_tokens);
}

// ---------------------------------------------------------------- rates

TEST(RateController, UnlimitedWhenNothingIsKnown) {
  RateController c;
  TimePoint t = kStart;
  EXPECT_EQ(c.rate_per_second(), 0);
  for (int i = 0; i < 100; ++i, t += milliseconds(10)) {
    c.on_request(t);
    c.on_success(t);
  }
  c.on_headers(RateHeaders{}, t);
  EXPECT_EQ(c.rate_per_second(), 0);
  EXPECT_LE(c.cooldown_until(), t);
  EXPECT_FALSE(c.remaining_requests(t).has_value());
  EXPECT_FALSE(c.remaining_requests().has_value());
  EXPECT_FALSE(c.remaining_tokens().has_value());
  EXPECT_EQ(c.token_rate_per_second(), 0);
}

TEST(RateController, ConfiguredLimitIsPacedAtNinetyFivePercent) {
  EXPECT_DOUBLE_EQ(RateController(600).rate_per_second(), 9.5);
  EXPECT_DOUBLE_EQ(RateController(60).rate_per_second(), 0.95);
  EXPECT_DOUBLE_EQ(RateController(600).configured_per_second(), 10);
  EXPECT_EQ(RateController(0).rate_per_second(), 0);
  EXPECT_EQ(RateController(-5).rate_per_second(), 0);
}

TEST(RateController, RemainingOverResetIsTheSustainableRate) {
  RateController c;
  c.on_headers(window(50, 10, 100), kStart);
  EXPECT_DOUBLE_EQ(c.learned_per_second(), 5);
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);
  // Late in the window with plenty left, it may go faster.
  c.on_headers(window(40, 2, 100), kStart + seconds(8));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 0.95 * 20);
  EXPECT_EQ(c.remaining_requests(kStart + seconds(9)), 40);
  EXPECT_FALSE(c.remaining_requests(kStart + seconds(10)).has_value());  // its window reset
  EXPECT_EQ(c.remaining_requests(), 40);  // the last count, however old
}

TEST(RateController, ALimitAloneIsReadPerMinute) {
  RateController c;
  RateHeaders h;
  h.limit_requests = 120;
  c.on_headers(h, kStart);
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 0.95 * 2);
}

TEST(RateController, RemainingWithoutResetOnlyBoundsInFlight) {
  RateController c;
  RateHeaders h;
  h.remaining_requests = 5;
  c.on_headers(h, kStart);
  EXPECT_EQ(c.rate_per_second(), 0);  // a count without a window says no rate
  EXPECT_EQ(c.remaining_requests(kStart + milliseconds(999)), 5);
  EXPECT_FALSE(c.remaining_requests(kStart + seconds(1)).has_value());
}

TEST(RateController, ConfiguredCeilingWins) {
  RateController c(600);
  c.on_headers(window(1000, 10), kStart);  // the provider would allow 100/s
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5);
  c.on_headers(window(30, 10), kStart + seconds(1));  // but it is nearly spent
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 0.95 * 3);
  RateHeaders limit_only;
  limit_only.limit_requests = 6000;
  c.on_headers(limit_only, kStart + seconds(2));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5);
}

TEST(RateController, SpentWindowCoolsDownUntilItsReset) {
  RateController c;
  c.on_headers(window(50, 10), kStart);
  TimePoint t = kStart + seconds(7);
  c.on_headers(window(0, 2.5), t);
  EXPECT_EQ(c.cooldown_until(), t + milliseconds(2500));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);  // the rate to resume at
  EXPECT_EQ(c.remaining_requests(t), 0);
  EXPECT_FALSE(c.remaining_requests(t + milliseconds(2500)).has_value());
  // A window reported as just reset says nothing about the rate either.
  c.on_headers(window(99, 0), t + seconds(3));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);
}

TEST(RateController, SpentWindowWithALimitWaitsForOneRequestsWorth) {
  // OpenAI refills continuously and its reset is the time until the bucket
  // is full: with 60 a minute, one request's worth is back after a second,
  // not after the minute the header names.
  RateController c;
  c.on_headers(window(30, 30, 60), kStart);
  TimePoint t = kStart + seconds(1);
  c.on_headers(window(0, 60, 60), t);
  EXPECT_EQ(c.cooldown_until(), t + seconds(1));
  EXPECT_EQ(c.remaining_requests(t + milliseconds(999)), 0);
  EXPECT_FALSE(c.remaining_requests(t + seconds(1)).has_value());
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 0.95);  // the rate to resume at
  // Azure sends no reset: the count of 0 holds for a second.
  RateController azure;
  RateHeaders h;
  h.remaining_requests = 0;
  azure.on_headers(h, kStart);
  EXPECT_EQ(azure.cooldown_until(), kStart + seconds(1));
}

TEST(RateController, TokenRateFromHeaders) {
  RateController c;
  RateHeaders h;
  h.limit_tokens = 90000;
  h.remaining_tokens = 60000;
  h.reset_tokens_s = 20;
  c.on_headers(h, kStart);
  EXPECT_DOUBLE_EQ(c.token_rate_per_second(), 0.95 * 3000);
  EXPECT_EQ(c.remaining_tokens(kStart + seconds(19)), 60000);
  EXPECT_FALSE(c.remaining_tokens(kStart + seconds(20)).has_value());
  EXPECT_EQ(c.rate_per_second(), 0);  // tokens say nothing about requests
}

// ---------------------------------------------------------------- AIMD

TEST(RateController, HalvesOnA429ThenClimbsBackToTheCeiling) {
  RateController c(600);
  TimePoint t = kStart;
  c.on_rate_limited(std::nullopt, t);
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);
  EXPECT_TRUE(c.backing_off());
  EXPECT_EQ(c.cooldown_until(), t + seconds(1));  // no Retry-After: 1 s

  // Answers to requests sent before the decrease: the cooldown stretches, the
  // rate is not halved again.
  c.on_rate_limited(0.8, t + milliseconds(500));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);
  EXPECT_EQ(c.cooldown_until(), t + milliseconds(1300));

  // Each full second of success adds 5 % of the ceiling: ten seconds back up.
  double previous = c.rate_per_second();
  for (TimePoint s = t + milliseconds(100); s <= t + seconds(10); s += milliseconds(100)) {
    c.on_success(s);
    double now_rate = c.rate_per_second();
    ASSERT_GE(now_rate, previous);
    ASSERT_LE(now_rate, 9.5);
    auto whole = (s - t) / seconds(1);
    ASSERT_NEAR(now_rate, std::min(9.5, 4.75 + 0.475 * static_cast<double>(whole)), 1e-9);
    previous = now_rate;
  }
  EXPECT_FALSE(c.backing_off());
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5);
  c.on_success(t + seconds(100));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5);  // never above the ceiling
}

TEST(RateController, RetryAfterSetsTheCooldown) {
  RateController c(600);
  c.on_rate_limited(7.5, kStart);
  EXPECT_EQ(c.cooldown_until(), kStart + milliseconds(7500));
  // A shorter one later does not cut it short.
  c.on_rate_limited(1, kStart + seconds(1));
  EXPECT_EQ(c.cooldown_until(), kStart + milliseconds(7500));
  RateController zero(600);
  zero.on_rate_limited(0.0, kStart);
  EXPECT_EQ(zero.cooldown_until(), kStart);
}

TEST(RateController, A429AfterTheGuardHalvesAgainWithTheSameStep) {
  RateController c(600);
  c.on_rate_limited(std::nullopt, kStart);
  c.on_rate_limited(std::nullopt, kStart + seconds(2));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5 / 4);
  c.on_success(kStart + seconds(3));  // one step of 5 % of 9.5, not of 4.75
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5 / 4 + 0.475);
  // A success right after a 429 is no sustained success.
  c.on_rate_limited(std::nullopt, kStart + seconds(5));
  double halved = c.rate_per_second();
  c.on_success(kStart + seconds(5) + milliseconds(999));
  EXPECT_DOUBLE_EQ(c.rate_per_second(), halved);
}

TEST(RateController, NeverHalvesBelowOneRequestAMinute) {
  RateController c(60);
  for (int i = 0; i < 40; ++i) c.on_rate_limited(std::nullopt, kStart + seconds(2 * i));
  EXPECT_NEAR(c.rate_per_second(), 1.0 / 60, 1e-12);
}

TEST(RateController, LearnedLimitIsTheCeilingToClimbBackTo) {
  RateController c;
  RateHeaders h;
  h.limit_requests = 600;
  c.on_headers(h, kStart);
  c.on_rate_limited(std::nullopt, kStart);
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 4.75);
  for (int s = 1; s <= 10; ++s) c.on_success(kStart + seconds(s));
  EXPECT_FALSE(c.backing_off());
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 9.5);
}

TEST(RateController, ObservedRateMeasuresRecentRequests) {
  RateController c;
  TimePoint t = kStart;
  EXPECT_EQ(c.observed_per_second(t), 0);
  for (int i = 0; i < 60; ++i, t += milliseconds(50)) c.on_request(t);  // 20/s for 3 s
  EXPECT_NEAR(c.observed_per_second(t), 20, 1.5);
  // A burst at the very start is not read as thousands a second.
  RateController burst;
  for (int i = 0; i < 50; ++i) burst.on_request(kStart);
  EXPECT_DOUBLE_EQ(burst.observed_per_second(kStart + milliseconds(1)), 50);
  // The window moves on: old requests fall out of it.
  EXPECT_EQ(c.observed_per_second(t + seconds(5)), 0);
}

TEST(RateController, UnknownLimitStartsFromTheObservedRateThenLiftsTheCap) {
  RateController c;
  TimePoint t = kStart;
  for (int i = 0; i < 60; ++i, t += milliseconds(50)) c.on_request(t);  // 20/s
  c.on_rate_limited(std::nullopt, t);
  double halved = c.rate_per_second();
  EXPECT_NEAR(halved, 10, 1);
  TimePoint limited = t;
  // With no ceiling it keeps probing upwards by 5 % of the old rate a second,
  // and after 30 s without a 429 the cap goes altogether.
  for (int s = 1; s < 30; ++s) {
    c.on_success(limited + seconds(s));
    ASSERT_NEAR(c.rate_per_second(), halved + s * halved / 10, 1e-9);
  }
  c.on_success(limited + seconds(30));
  EXPECT_FALSE(c.backing_off());
  EXPECT_EQ(c.rate_per_second(), 0);
}

TEST(RateController, A429WithNothingMeasuredStartsFromOneASecond) {
  RateController c;
  c.on_rate_limited(std::nullopt, kStart);
  EXPECT_DOUBLE_EQ(c.rate_per_second(), 0.5);
}

// ---------------------------------------------------------------- simulation

// A reset as OpenAI writes it: "850ms", "7.25s", "6m0s".
std::string go_duration(double seconds) {
  char text[48];
  if (seconds < 1) {
    std::snprintf(text, sizeof text, "%dms", static_cast<int>(seconds * 1000));
  } else if (seconds < 60) {
    std::snprintf(text, sizeof text, "%.3gs", seconds);
  } else {
    int minutes = static_cast<int>(seconds / 60);
    std::snprintf(text, sizeof text, "%dm%.3gs", minutes, seconds - 60 * minutes);
  }
  return text;
}

struct Answer {
  bool ok = false;
  Headers headers;  // as text: the client parses them back
  std::optional<double> retry_after_s;
};

Headers request_headers(int limit, int remaining, double reset_s) {
  return {{"x-ratelimit-limit-requests", std::to_string(limit)},
          {"x-ratelimit-remaining-requests", std::to_string(remaining)},
          {"x-ratelimit-reset-requests", go_duration(reset_s)}};
}

// Admits `limit` requests per fixed window. Requests are judged on arrival,
// in arrival order.
class FixedWindowProvider {
 public:
  FixedWindowProvider(int limit, Millis window, bool send_headers)
      : limit_(limit), window_(window), window_start_(kStart), send_headers_(send_headers) {}

  Answer judge(TimePoint arrival) {
    while (arrival >= window_start_ + window_) {
      window_start_ += window_;
      used_ = 0;
    }
    double reset_s = std::chrono::duration<double>(window_start_ + window_ - arrival).count();
    Answer a;
    a.ok = used_ < limit_;
    if (a.ok) ++used_;
    else a.retry_after_s = std::ceil(reset_s);  // Retry-After is whole seconds
    if (send_headers_) a.headers = request_headers(limit_, limit_ - used_, reset_s);
    return a;
  }

  // The most it could have answered with success over `span`.
  double capacity(Millis span) const { return static_cast<double>(limit_) * (span / window_); }

 private:
  int limit_;
  Millis window_;
  TimePoint window_start_;
  bool send_headers_;
  int used_ = 0;
};

// OpenAI's kind: a bucket of `limit` requests refilled continuously over a
// minute; reset is the time until it is full again.
class RefillingProvider {
 public:
  explicit RefillingProvider(int limit_per_minute) : limit_(limit_per_minute), level_(limit_per_minute) {}

  Answer judge(TimePoint arrival) {
    double refill = limit_ / 60.0;
    level_ = std::min<double>(limit_, level_ + refill * std::chrono::duration<double>(arrival - stamp_).count());
    stamp_ = arrival;
    Answer a;
    a.ok = level_ >= 1;
    if (a.ok) level_ -= 1;
    else a.retry_after_s = std::ceil((1 - level_) / refill);
    a.headers = request_headers(limit_, static_cast<int>(level_), (limit_ - level_) / refill);
    return a;
  }

  double capacity(Millis span) const {
    return limit_ + limit_ / 60.0 * std::chrono::duration<double>(span).count();
  }

 private:
  int limit_;
  double level_;
  TimePoint stamp_ = kStart;
};

struct SimResult {
  int ok = 0;
  int limited = 0;
  double used_share = 0;     // ok / what the provider could have admitted
  double limited_share = 0;  // 429s / answers
};

// An owner as the key pool would be: a queue that never runs dry, at most
// `concurrency` in flight and never more than the provider's last remaining
// count, one request in flight until the first answer, nothing sent during a
// cooldown, and the controller's rate applied to a Pacer with a burst of 2.
// Requests take 20 ms each way; an answer takes 0.1 to 1.5 s to generate (a
// 429 none). The virtual clock advances a millisecond at a time.
template <class Provider>
SimResult simulate(Provider& provider, double configured_rpm, Millis span, int concurrency = 64,
                   bool slow_start = true) {
  const Millis link(20);
  RateController controller(configured_rpm);
  Pacer pacer;
  double applied = -1;

  struct InFlight {
    TimePoint back;
    Answer answer;
    bool operator>(const InFlight& o) const { return back > o.back; }
  };
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> in_flight;
  uint32_t seed = 12345;  // a fixed LCG: the same run every time
  auto generation = [&seed] {
    seed = seed * 1664525u + 1013904223u;
    return Millis(100 + static_cast<int>((seed >> 8) % 1400));
  };

  SimResult r;
  const TimePoint end = kStart + span;
  for (TimePoint t = kStart; t < end; t += milliseconds(1)) {
    while (!in_flight.empty() && in_flight.top().back <= t) {
      const Answer& a = in_flight.top().answer;
      controller.on_headers(parse_rate_headers(a.headers), t);
      if (a.ok) {
        ++r.ok;
        controller.on_success(t);
      } else {
        ++r.limited;
        controller.on_rate_limited(a.retry_after_s, t);
      }
      in_flight.pop();
    }
    if (double rate = controller.rate_per_second(); rate != applied) {
      pacer.set_rate(rate, 2, t);
      applied = rate;
    }
    while (t >= controller.cooldown_until()) {
      double room = slow_start && controller.awaiting_first_answer() ? 1 : concurrency;
      if (auto remaining = controller.remaining_requests(t)) room = std::min(room, *remaining);
      if (static_cast<double>(in_flight.size()) >= room || !pacer.try_take(t)) break;
      controller.on_request(t);
      Answer answer = provider.judge(t + link);
      TimePoint back = t + 2 * link + (answer.ok ? generation() : Millis(0));
      in_flight.push(InFlight{back, std::move(answer)});
    }
  }
  r.used_share = r.ok / provider.capacity(span);
  r.limited_share = static_cast<double>(r.limited) / std::max(1, r.ok + r.limited);
  return r;
}

TEST(RateControllerSimulation, HeadersAloneKeep429sRareAndUseMostOfTheLimit) {
  for (int limit : {20, 100, 600}) {
    FixedWindowProvider provider(limit, seconds(10), true);
    SimResult r = simulate(provider, 0, seconds(120));
    EXPECT_LE(r.limited_share, 0.10) << limit << " per 10 s: " << r.limited << " 429s, " << r.ok << " ok";
    EXPECT_GE(r.used_share, 0.80) << limit << " per 10 s: " << r.ok << " ok";
    std::printf("headers only, %d per 10 s: %.1f%% used, %d 429s of %d answers\n", limit,
                100 * r.used_share, r.limited, r.ok + r.limited);
  }
}

TEST(RateControllerSimulation, HeadersAloneFollowAContinuouslyRefillingLimit) {
  for (int rpm : {60, 600, 3000}) {
    RefillingProvider provider(rpm);
    SimResult r = simulate(provider, 0, seconds(300), 128);
    EXPECT_LE(r.limited_share, 0.10) << rpm << " rpm: " << r.limited << " 429s, " << r.ok << " ok";
    EXPECT_GE(r.used_share, 0.80) << rpm << " rpm: " << r.ok << " ok";
    std::printf("headers only, refilling %d rpm: %.1f%% used, %d 429s of %d answers\n", rpm,
                100 * r.used_share, r.limited, r.ok + r.limited);
  }
}

TEST(RateControllerSimulation, WithoutSlowStartOnlyTheFirstBurstIsRefused) {
  // Sending `concurrency` at once before anything is known overruns a small
  // window once; after that the headers keep it clean, but for a request or
  // two let through early by a stale count from that burst (answers come back
  // out of order).
  const int concurrency = 64;
  const int stragglers = 2;
  for (int limit : {20, 100}) {
    FixedWindowProvider provider(limit, seconds(10), true);
    SimResult r = simulate(provider, 0, seconds(120), concurrency, false);
    EXPECT_LE(r.limited, std::max(0, concurrency - limit) + stragglers) << limit << " per 10 s";
    EXPECT_GE(r.used_share, 0.80) << limit << " per 10 s";
    std::printf("no slow start, %d per 10 s: %.1f%% used, %d 429s of %d answers\n", limit,
                100 * r.used_share, r.limited, r.ok + r.limited);
  }
  RefillingProvider provider(60);
  SimResult r = simulate(provider, 0, seconds(300), concurrency, false);
  EXPECT_LE(r.limited, concurrency - 60 + stragglers);
  EXPECT_GE(r.used_share, 0.80);
  std::printf("no slow start, refilling 60 rpm: %.1f%% used, %d 429s of %d answers\n",
              100 * r.used_share, r.limited, r.ok + r.limited);
}

TEST(RateControllerSimulation, ARightConfiguredLimitGivesNo429s) {
  for (bool headers : {false, true}) {
    for (int limit : {20, 100, 600}) {
      FixedWindowProvider provider(limit, seconds(10), headers);
      // The provider's 10 s window of `limit` is 6 * limit a minute.
      SimResult r = simulate(provider, 6.0 * limit, seconds(120));
      EXPECT_EQ(r.limited, 0) << limit << " per 10 s" << (headers ? " with headers" : "");
      EXPECT_GE(r.used_share, 0.90) << limit << " per 10 s" << (headers ? " with headers" : "");
      std::printf("configured%s, %d per 10 s: %.1f%% used, %d 429s\n", headers ? " + headers" : "",
                  limit, 100 * r.used_share, r.limited);
    }
  }
}

}  // namespace
}  // namespace shepherd
