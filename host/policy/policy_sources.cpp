#include "policy/policy_sources.h"

#include "core/hash.h"
#include "core/resources.h"

namespace shepherd {

namespace {

PolicySource load(const Suite& suite, const std::string& kind) {
  PolicySource src;
  src.kind = kind;
  auto override_it = suite.policies.overrides.find(kind);
  if (override_it != suite.policies.overrides.end()) {
    src.chunk_name = src.path = override_it->second;
    src.text = read_file(src.path);
  } else {
    Resource r = load_resource("policies/" + kind + ".lua");
    src.chunk_name = r.name;
    src.path = r.path;
    src.text = std::move(r.content);
  }
  src.hash = stable_hash_hex(src.text).substr(0, 12);
  return src;
}

}  // namespace

PolicySources PolicySources::for_suite(const Suite& suite) {
  PolicySources out;
  out.classify = load(suite, "classify");
  out.retry = load(suite, "retry");
  out.switch_model = load(suite, "switch");
  out.retest = load(suite, "retest");
  out.update_version();
  return out;
}

PolicySources PolicySources::reread() const {
  PolicySources out = *this;
  for (PolicySource* src : {&out.classify, &out.retry, &out.switch_model, &out.retest}) {
    if (src->path.empty()) continue;
    src->text = read_file(src->path);
    src->hash = stable_hash_hex(src->text).substr(0, 12);
  }
  out.update_version();
  return out;
}

PolicySource* PolicySources::find(const std::string& kind) {
  for (PolicySource* src : {&classify, &retry, &switch_model, &retest})
    if (src->kind == kind) return src;
  return nullptr;
}

const PolicySource* PolicySources::find(const std::string& kind) const {
  return const_cast<PolicySources*>(this)->find(kind);
}

std::vector<const PolicySource*> PolicySources::all() const { return {&classify, &retry, &switch_model, &retest}; }

void PolicySources::update_version() {
  std::string hashes;
  for (const PolicySource* src : all()) hashes += src->hash;
  version = stable_hash_hex(hashes).substr(0, 12);
}

}  // namespace shepherd
