// Scenario::from_json on any JSON, as `shepherd mock --scenario FILE.json`
// reads it (the text parsed within the host's bounds first). Invariants: a
// scenario is built or shepherd::Error SCENARIO_INVALID is thrown (nlohmann's
// own exceptions escaping would be a finding); a built scenario is within
// the ranges the mock relies on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/json_limits.h"
#include "core/text.h"
#include "fuzz_check.h"
#include "mock/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  nlohmann::json j = shepherd::parse_json_bounded(text);
  if (j.is_discarded()) return 0;
  try {
    shepherd::Scenario s = shepherd::Scenario::from_json(j, "fuzz.json");
    auto probability = [](double p) { return p >= 0 && p <= 1; };
    const auto& f = s.faults;
    FUZZ_CHECK(probability(f.error_500) && probability(f.hang) && probability(f.stall) && probability(f.reset) &&
                   probability(f.malformed) && probability(f.wrong_model),
               "a fault probability outside [0,1]");
    FUZZ_CHECK(std::isfinite(s.latency.a_ms) && std::isfinite(s.latency.b_ms) && s.latency.a_ms >= 0 &&
                   s.latency.b_ms >= 0,
               "latency %g %g", s.latency.a_ms, s.latency.b_ms);
    FUZZ_CHECK(std::isfinite(s.stream.chunk_ms) && s.stream.chunk_ms >= 0 && std::isfinite(s.stream.comment_ms) &&
                   s.stream.comment_ms >= 0,
               "stream timings %g %g", s.stream.chunk_ms, s.stream.comment_ms);
    FUZZ_CHECK(s.rate_limit.requests >= 0 && s.rate_limit.window_ms > 0, "rate limit %d per %d ms",
               s.rate_limit.requests, s.rate_limit.window_ms);
    for (const auto& [model, n] : s.quota) FUZZ_CHECK(n >= 0, "quota %d for %s", n, model.c_str());
    for (const auto& rule : s.canned) {
      FUZZ_CHECK(rule.status >= 200 && rule.status <= 599, "canned status %d", rule.status);
      FUZZ_CHECK(rule.times >= 0, "canned times %d", rule.times);
    }
  } catch (const shepherd::Error& e) {
    FUZZ_CHECK(e.code() == "SCENARIO_INVALID", "unexpected code %s: %s", e.code().c_str(), e.what());
    (void)shepherd::safe_dump(e.to_json());
  }
  return 0;
}
