#include "mock/details/request_log.h"

#include <algorithm>
#include <cstdio>

namespace shepherd::details {

RequestLog::RequestLog(size_t capacity) : capacity_(std::max<size_t>(1, capacity)) {}

void RequestLog::add(const AnsweredRequest& entry) {
  std::lock_guard lock(mutex_);
  if (entries_.size() == capacity_) entries_.pop_front();
  entries_.push_back(entry);
}

void RequestLog::clear() {
  std::lock_guard lock(mutex_);
  entries_.clear();
}

size_t RequestLog::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

std::string RequestLog::to_json_text() const {
  // Written by hand: a million entries through nlohmann would cost seconds.
  std::lock_guard lock(mutex_);
  std::string out;
  out.reserve(2 + entries_.size() * 80);
  out += '[';
  char buf[160];
  bool first = true;
  for (const AnsweredRequest& e : entries_) {
    const int n = std::snprintf(buf, sizeof buf,
                                R"(%s{"hash":"%016llx","status":%d,"answered_ms":%lld,"turn":%d})",
                                first ? "" : ",", static_cast<unsigned long long>(e.body_hash),
                                e.status, static_cast<long long>(e.answered_ms), e.turn);
    out.append(buf, static_cast<size_t>(n));
    first = false;
  }
  out += ']';
  return out;
}

nlohmann::json RequestLog::to_json() const { return nlohmann::json::parse(to_json_text()); }

}  // namespace shepherd::details
