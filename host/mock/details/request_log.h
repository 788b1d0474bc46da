#pragma once
// The chat requests the mock answered in full, in the order their answers
// were written: GET /requests. Tests read it to prove which requests a client
// made (after a crash and a resume: none twice). The loop thread writes, any
// thread may read.
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include <nlohmann/json.hpp>

namespace shepherd::details {

struct AnsweredRequest {
  uint64_t body_hash = 0;  // stable_hash64 of the raw request body
  int status = 0;          // the HTTP status answered
  int64_t answered_ms = 0;  // Unix epoch ms when the answer's last byte was written
  int turn = 0;            // of its conversation (1 + assistant messages); 0 without messages
};

class RequestLog {
 public:
  static constexpr size_t default_capacity = 1'000'000;
  explicit RequestLog(size_t capacity = default_capacity);

  void add(const AnsweredRequest& entry);  // the oldest entry goes once capacity is reached
  void clear();
  size_t size() const;

  // [{"hash": "<16 hex>", "status": 200, "answered_ms": …, "turn": 1}, …], oldest first.
  std::string to_json_text() const;
  nlohmann::json to_json() const;

 private:
  mutable std::mutex mutex_;
  std::deque<AnsweredRequest> entries_;
  size_t capacity_;
};

}  // namespace shepherd::details
