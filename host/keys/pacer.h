#pragma once
// A token bucket that spreads requests evenly over time. Providers state limits
// per minute but enforce them over much shorter windows, so the bucket never
// holds a minute's worth: it holds at most `burst` tokens (a few) and starts
// with one, refilling at `rate` tokens per second. The same class paces
// requests (n = 1 each) and tokens (n = the request's estimate, `burst` in
// tokens); for tokens the estimate is reconciled with the real usage later
// through give_back / charge.
//
// Plain and single-threaded: its owner serialises calls and passes the time
// in, so tests drive it with a virtual clock. No call allocates.
#include "core/clock.h"

namespace shepherd {

class Pacer {
 public:
  Pacer() = default;  // unlimited

  // per_second <= 0 means unlimited. Tokens earned so far are kept, capped at
  // the new burst, and a debt (negative level) is kept too. Leaving unlimited
  // starts from one token, not a full bucket.
  void set_rate(double per_second, double burst, TimePoint now);

  // Takes n tokens if they are there. An n above the burst can never be there
  // in full: it goes out once the bucket is full and leaves the level negative,
  // so the average rate still holds.
  bool try_take(TimePoint now, double n = 1);
  // When try_take(…, n) will succeed: `now` if it would already.
  TimePoint ready_at(TimePoint now, double n = 1) const;

  // Reconciling an estimate with the real usage: a refund (capped at the
  // burst), or a further charge that may leave the level negative so later
  // requests wait for the debt to be paid off.
  void give_back(double n, TimePoint now);
  void charge(double n, TimePoint now);

  double rate() const { return rate_; }  // per second; 0 when unlimited
  double burst() const { return burst_; }
  bool unlimited() const { return rate_ <= 0; }
  // Tokens available at `now`; negative while a charge is being paid off.
  double level(TimePoint now) const;

 private:
  void refill(TimePoint now);
  double needed(double n) const;

  double rate_ = 0;
  double burst_ = 1;
  double level_ = 1;
  TimePoint stamp_{};  // when level_ was last brought up to date
};

}  // namespace shepherd
