#pragma once
// Counters behind GET /stats. The loop thread writes, any thread may read.
#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace shepherd::details {

// What the mock decided for one chat request.
enum class Outcome : uint8_t {
  ok,
  bad_request,
  unauthorized,
  rate_limited,
  quota_exhausted,
  error_500,
  hang,
  stall,
  reset,
  malformed,
  wrong_model,
  canned,  // answered by a canned rule of the scenario
};
inline constexpr size_t outcome_count = 12;

std::string_view to_string(Outcome outcome);

class MockStats {
 public:
  void request_started();   // a chat request arrived
  void request_finished();  // ...and was answered, or its connection closed
  void record(Outcome outcome, std::string_view key, std::string_view model);
  void record_streamed();  // the request is answered as an event stream

  // Forgets counts; requests still held stay in flight.
  void clear();

  nlohmann::json to_json() const;

 private:
  using Counts = std::array<uint64_t, outcome_count>;
  using CountsByName = std::unordered_map<std::string, Counts>;

  static nlohmann::json counts_json(const Counts& counts);
  static nlohmann::json grouped_json(const CountsByName& groups);

  mutable std::mutex mutex_;
  uint64_t requests_ = 0;
  int64_t in_flight_ = 0;
  int64_t peak_in_flight_ = 0;
  uint64_t streamed_ = 0;
  Counts by_outcome_{};
  CountsByName by_key_;
  CountsByName by_model_;
  CountsByName by_key_model_;
};

}  // namespace shepherd::details
