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
    src.chunk_name = override_it->second;
    src.text = read_file(override_it->second);
  } else {
    Resource r = load_resource("policies/" + kind + ".lua");
    src.chunk_name = r.name;
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
  out.version = stable_hash_hex(out.classify.hash + out.retry.hash).substr(0, 12);
  return out;
}

}  // namespace shepherd
