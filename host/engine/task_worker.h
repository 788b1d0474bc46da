#pragma once
// One worker thread's Lua state: the suite (request, check) and the policies
// (classify, decide). Builds requests and judges answers.
#include <memory>
#include <optional>
#include <string>

#include "conversation/conversation_runner.h"
#include "engine/dispatcher.h"
#include "engine/run_context.h"
#include "http/http_types.h"
#include "keys/key_pool.h"
#include "lua/lua_state.h"
#include "policy/policy_set.h"
#include "store/records.h"
#include "suite/suite_runtime.h"

namespace shepherd {

// No task (and no turn of a conversation) is attempted more often than this
// in one run, whatever retry.lua says.
inline constexpr int kMaxAttemptsPerRun = 100;

struct AttemptOutcome {
  enum class Kind { done, retry, fail, switch_model } kind = Kind::fail;
  long delay_ms = 0;
  SlotFeedback feedback;  // what the key pool learns from this answer
  AttemptRecord record;
  nlohmann::json completion;  // a conversation's answered turn: the chat completion
};

class TaskWorker {
 public:
  explicit TaskWorker(const RunContext& ctx);
  ~TaskWorker();
  TaskWorker(const TaskWorker&) = delete;
  TaskWorker& operator=(const TaskWorker&) = delete;

  // The request body comes from the suite's request(cell), or is the
  // conversation's turn. False: `error` says why. `tokens`: the estimate to
  // reserve (prompt + max_tokens).
  bool build_request(uint32_t task_index, TaskRuntime& task, HttpRequest& out, double& tokens,
                     std::string& error);

  // key_for(cell, keys): the index of the key the suite prefers for this cell, or -1.
  int preferred_key(uint64_t ordinal, const std::vector<std::string>& key_ids) {
    return suite_.preferred_key(ordinal, key_ids);
  }

  // The hash of the request the suite builds for this cell now; empty when
  // request(cell) fails.
  std::string current_request_hash(uint64_t ordinal);

  // Classifies the answer and decides what follows; updates the task's history.
  // `usable_keys`: other keys that may still serve the task's model. A
  // streamed answer's body is replaced by the assembled chat completion. A
  // conversation's turn stays pending whatever happens: its conversation
  // decides how the task ends.
  AttemptOutcome judge(TaskRuntime& task, HttpResponse& response, int usable_keys);

  // Asks switch.lua for the model after `current`. An answer that is not a
  // candidate, or already exhausted, or a policy error falls back to the next
  // unexhausted model in the suite's order; `note` says what happened.
  std::optional<uint32_t> choose_next_model(uint32_t current, const std::vector<uint32_t>& exhausted,
                                            const std::string& cls, std::string& note);

  // The record of an attempt that never reached the network.
  AttemptRecord unsent_failure(TaskRuntime& task, const std::string& code, const std::string& message);

  // This worker's open conversations (task suites), on its Lua state.
  ConversationRunner& conversations() { return conversations_; }
  SuiteRuntime& suite_runtime() { return suite_; }

 private:
  void refresh_policies();  // a reload was published: build the new set here, between decisions

  const RunContext& ctx_;
  SuiteRuntime suite_;  // its Lua state hosts the policies and the conversations too
  std::unique_ptr<PolicySet> policies_;
  uint64_t policy_generation_ = 0;
  uint64_t failed_generation_ = 0;
  ConversationRunner conversations_{suite_};
};

}  // namespace shepherd
