#pragma once
// One worker's open conversations: each is a coroutine of task(cell, llm)
// parked on the worker's Lua state. The runner resumes it until it asks for
// a turn that must be sent (llm:chat), or ends; turns already answered in
// the store are served from there, in order, while the request the function
// builds is the one recorded (same hash, same model) — durable execution by
// replay. It holds no HTTP slot: the engine sends the turns.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/clock.h"
#include "store/records.h"
#include "suite/request_body.h"
#include "suite/suite_runtime.h"

namespace shepherd {

struct ConversationStart {
  std::string task_id;
  uint64_t ordinal = 0;
  int attempt = 1;         // the try at this conversation: seeds llm:random()
  std::string model;       // every turn goes to it
  TimePoint deadline;      // conversation.task_timeout_ms from now
  std::vector<RecordedTurn> recorded;  // answered turns of this try, by turn then attempt
};

// What the conversation needs next.
struct ConversationStep {
  enum class Kind { send, finished } kind = Kind::finished;
  RequestBody request;  // send: the turn's body
  int turn = 0;         // send: its number (1-based)
  int replayed = 0;     // turns answered from the store on the way here
  TaskResultRecord result;  // finished: done, or failed with a code
};

// An answered turn's facts, summed into the task's result.
struct TurnFacts {
  double latency_ms = 0;
  int64_t prompt_tokens = -1;
  int64_t completion_tokens = -1;
  std::string model_answered;
};

class ConversationRunner {
 public:
  explicit ConversationRunner(SuiteRuntime& suite);
  ~ConversationRunner();
  ConversationRunner(const ConversationRunner&) = delete;
  ConversationRunner& operator=(const ConversationRunner&) = delete;

  // `key` names the conversation from here on (the engine's task index).
  ConversationStep start(uint32_t key, ConversationStart start);
  // The turn asked for last was answered (`completion`: the chat completion).
  ConversationStep answered(uint32_t key, const nlohmann::json& completion, const TurnFacts& facts);
  // The turn failed for good: llm:chat raises an error carrying `code`.
  ConversationStep turn_failed(uint32_t key, const std::string& cls, const std::string& code,
                               const std::string& message);
  // Ends it from outside (deadline): the task fails with `code`.
  TaskResultRecord stop(uint32_t key, const std::string& code, const std::string& message);
  // Drops it without a result (its model is gone: it starts again elsewhere).
  void close(uint32_t key);

  size_t open() const { return open_.size(); }
  bool is_open(uint32_t key) const { return open_.count(key) > 0; }
  TimePoint deadline(uint32_t key) const;

 private:
  struct Conversation {
    lua_State* co = nullptr;
    int thread_ref = LUA_NOREF;  // anchors the coroutine in the registry
    int llm_ref = LUA_NOREF;
    ConversationStart start;
    int turn = 0;           // turns asked for so far
    int answered = 0;       // ... and answered (live or replayed)
    bool replaying = true;  // until the first turn that is not in the store
    int replayed_n = 0;     // attempt number of the last replayed record
    std::string first_hash;
    std::string last_request;  // body text of the last turn: the transcript's messages
    nlohmann::json last_message;  // the last answer's message, null when none
    double latency_ms = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    bool tokens_known = false;
    std::string model_answered;
    std::string failed_class;  // class and code of the turn that failed for good, if any
    std::string failed_code;
  };
  ConversationStep resume(uint32_t key, Conversation& c, int nargs);
  // The yielded body: answered from the store (true, answer pushed on the
  // coroutine), or to be sent (false).
  bool replay(Conversation& c, const RequestBody& body, ConversationStep& step);
  ConversationStep finish(uint32_t key, Conversation& c, int status, bool time_limit_hit);
  TaskResultRecord result_of(Conversation& c, TaskState state, const std::string& code, const std::string& message);
  void release(Conversation& c);

  SuiteRuntime& suite_;
  std::unordered_map<uint32_t, Conversation> open_;
};

}  // namespace shepherd
