#include "engine/progress.h"

#include <cmath>

namespace shepherd {

Progress::Progress(std::string suite, bool live)
    : suite_(std::move(suite)), live_(live), start_(SteadyClock::now()), rate_at_(start_) {}

std::string Progress::line(const DispatchCounters& c, double rate, double elapsed_s) {
  uint64_t pending = c.total - c.done - c.failed;
  char eta[32] = "--";
  if (rate > 0 && pending > 0) {
    long s = static_cast<long>(std::ceil(static_cast<double>(pending) / rate));
    std::snprintf(eta, sizeof eta, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  } else if (pending == 0) {
    std::snprintf(eta, sizeof eta, "0:00:00");
  }
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "done %llu/%llu  failed %llu  in flight %llu  %.0f tasks/s  elapsed %.0fs  ETA %s",
                static_cast<unsigned long long>(c.done), static_cast<unsigned long long>(c.total),
                static_cast<unsigned long long>(c.failed), static_cast<unsigned long long>(c.in_flight), rate,
                elapsed_s, eta);
  return buf;
}

void Progress::update(const DispatchCounters& c, TimePoint now) {
  double since = ms_between(rate_at_, now) / 1000.0;
  if (since >= 1.0) {
    double instant = static_cast<double>(c.done_now - rate_done_) / since;
    rate_ = rate_ == 0 ? instant : 0.7 * rate_ + 0.3 * instant;
    rate_at_ = now;
    rate_done_ = c.done_now;
  }
  if (!live_ || ms_between(last_draw_, now) < 200) return;
  last_draw_ = now;
  std::fprintf(stderr, "\r\033[K%s: %s", suite_.c_str(), line(c, rate_, ms_between(start_, now) / 1000.0).c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::clear() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace shepherd
