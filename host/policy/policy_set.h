#pragma once
// The policies loaded into one Lua state (one per worker thread): each file
// in a sandbox of its own, its shape checked at load.
#include <chrono>
#include <string>

#include "lua/lua_call.h"
#include "policy/policy_io.h"
#include "policy/policy_sources.h"
#include "suite/suite.h"

namespace shepherd {

class PolicySet {
 public:
  // Throws Error(POLICY_LOAD_FAILED) with file:line on a syntax error, a load
  // error, a missing function, a wrong metadata type or a failing selftest().
  PolicySet(lua_State* L, const PolicySources& sources, const RetryConfig& retry,
            const MaintainConfig& maintain = {});
  ~PolicySet();
  PolicySet(const PolicySet&) = delete;
  PolicySet& operator=(const PolicySet&) = delete;

  // On a Lua error or a wrong return shape: false, and `failure` says why.
  bool classify(const OutcomeView& outcome, std::string& cls, LuaFailure& failure);
  bool decide(const DecideInput& input, Decision& decision, LuaFailure& failure);
  // `model` empty: no model left.
  bool next_model(const SwitchInput& input, std::string& model, LuaFailure& failure);
  // `selection`: [{group, priority, reason}], checked for shape.
  bool select(const nlohmann::json& stats, nlohmann::json& selection, LuaFailure& failure);

  const std::string& version() const { return version_; }

  struct LazyBox;  // the outcome in the current classify() call

 private:
  int load_module(const PolicySource& src, const char* function);
  // protected_call under a time limit: a runaway policy fails, it never hangs the run.
  // ... and a memory limit: a runaway policy fails, it never takes the machine's memory.
  bool limited_call(int nargs, int nresults, LuaFailure& failure, std::chrono::milliseconds budget,
                    size_t memory = size_t{64} << 20);
  void release();

  lua_State* L_;
  std::string version_;
  int classify_ref_ = LUA_NOREF;  // the module tables
  int retry_ref_ = LUA_NOREF;
  int switch_ref_ = LUA_NOREF;
  int retest_ref_ = LUA_NOREF;
  // Handed to each call as a fresh table: a policy cannot change what the
  // next call (or another policy) sees.
  nlohmann::json retry_config_;
  nlohmann::json maintain_config_;
  int outcome_meta_ref_ = LUA_NOREF;
  LazyBox* box_ = nullptr;  // userdata owned by the Lua state
};

}  // namespace shepherd
