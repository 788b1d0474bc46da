#include "engine/exhausted_memory.h"

#include <map>
#include <utility>

namespace shepherd {

std::vector<RememberedExhaustion> remembered_exhaustion(Store& store, const std::string& suite, double now) {
  std::map<std::pair<std::string, std::string>, RememberedExhaustion> latest;
  for (const auto& e : store.events(suite, {"quota_parked", "exhausted_forgotten"})) {
    if (e["kind"] == "exhausted_forgotten") {
      latest.clear();
      continue;
    }
    const auto& d = e["detail"];
    if (!d.is_object() || !d.contains("model") || !d["model"].is_string() || !d.contains("key")) continue;
    RememberedExhaustion r;
    r.key = d["key"].is_string() ? d["key"].get<std::string>() : d["key"].dump();
    r.model = d["model"].get<std::string>();
    r.until = d.contains("until_unix") && d["until_unix"].is_number() ? d["until_unix"].get<double>() : 0;
    r.since = e["at"].get<double>();
    latest[{r.key, r.model}] = std::move(r);
  }
  std::vector<RememberedExhaustion> out;
  for (auto& [slot, r] : latest) {
    if (r.until == 0 || r.until > now) out.push_back(std::move(r));
  }
  return out;
}

}  // namespace shepherd
