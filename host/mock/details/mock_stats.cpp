#include "mock/details/mock_stats.h"

#include <algorithm>

namespace shepherd::details {

std::string_view to_string(Outcome outcome) {
  switch (outcome) {
    case Outcome::ok: return "ok";
    case Outcome::bad_request: return "bad_request";
    case Outcome::unauthorized: return "unauthorized";
    case Outcome::rate_limited: return "rate_limited";
    case Outcome::quota_exhausted: return "quota_exhausted";
    case Outcome::error_500: return "error_500";
    case Outcome::hang: return "hang";
    case Outcome::stall: return "stall";
    case Outcome::reset: return "reset";
    case Outcome::malformed: return "malformed";
    case Outcome::wrong_model: return "wrong_model";
    case Outcome::canned: return "canned";
  }
  return "ok";
}

void MockStats::request_started() {
  std::lock_guard lock(mutex_);
  ++requests_;
  ++in_flight_;
  peak_in_flight_ = std::max(peak_in_flight_, in_flight_);
}

void MockStats::request_finished() {
  std::lock_guard lock(mutex_);
  --in_flight_;
}

void MockStats::record(Outcome outcome, std::string_view key, std::string_view model) {
  const auto i = static_cast<size_t>(outcome);
  std::string key_model;
  key_model.reserve(key.size() + model.size() + 1);
  key_model.append(key).append(1, '|').append(model);

  std::lock_guard lock(mutex_);
  ++by_outcome_[i];
  ++by_key_[std::string(key)][i];
  ++by_model_[std::string(model)][i];
  ++by_key_model_[std::move(key_model)][i];
}

void MockStats::record_streamed() {
  std::lock_guard lock(mutex_);
  ++streamed_;
}

void MockStats::clear() {
  std::lock_guard lock(mutex_);
  requests_ = 0;
  streamed_ = 0;
  peak_in_flight_ = in_flight_;
  by_outcome_ = {};
  by_key_.clear();
  by_model_.clear();
  by_key_model_.clear();
}

nlohmann::json MockStats::counts_json(const Counts& counts) {
  // Every outcome is always present, so readers never meet a missing field.
  nlohmann::json out = nlohmann::json::object();
  for (size_t i = 0; i < outcome_count; ++i)
    out[std::string(to_string(static_cast<Outcome>(i)))] = counts[i];
  return out;
}

nlohmann::json MockStats::grouped_json(const CountsByName& groups) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [name, counts] : groups) out[name] = counts_json(counts);
  return out;
}

nlohmann::json MockStats::to_json() const {
  std::lock_guard lock(mutex_);
  return {{"requests", requests_},
          {"in_flight", in_flight_},
          {"peak_in_flight", peak_in_flight_},
          {"streamed", streamed_},
          {"by_outcome", counts_json(by_outcome_)},
          {"by_key", grouped_json(by_key_)},
          {"by_model", grouped_json(by_model_)},
          {"by_key_model", grouped_json(by_key_model_)}};
}

}  // namespace shepherd::details
