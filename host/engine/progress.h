#pragma once
// Live progress on a terminal (done, failed, in flight, tasks/s, ETA) and the
// closing summary.
#include <cstdio>
#include <string>

#include "core/clock.h"
#include "engine/dispatcher.h"

namespace shepherd {

class Progress {
 public:
  Progress(std::string suite, bool live);
  void update(const DispatchCounters& c, TimePoint now);  // redraws at most 5 times a second
  void clear();  // erases the live line before other output

  static std::string line(const DispatchCounters& c, double rate, double elapsed_s);

 private:
  std::string suite_;
  bool live_;
  TimePoint start_;
  TimePoint last_draw_{};
  TimePoint rate_at_;
  uint64_t rate_done_ = 0;
  double rate_ = 0;  // smoothed tasks/s
  bool drawn_ = false;
};

}  // namespace shepherd
