#include "conversation/conversation_runner.h"

#include <algorithm>

#include "conversation/turn_answer.h"
#include "core/error.h"
#include "core/text.h"
#include "lua/api_llm.h"
#include "lua/call_limit.h"
#include "lua/lua_call.h"
#include "lua/lua_json.h"

namespace shepherd {

namespace {

// Lua between two turns (simulating tools, scoring) may do real work, but
// one resumption stuck for ever must not hold a worker for ever; the task's
// deadline cuts it shorter.
constexpr Millis kResumeBudget{10'000};
constexpr size_t kResumeMemory = size_t{1} << 30;

// An error object's __tostring is the suite's code: it may raise or loop.
constexpr Millis kDescribeBudget{1'000};

// Where a Lua error came from: the message's "file:line:" prefix, else the
// innermost Lua frame of the dead coroutine. An error object's __tostring
// runs on L (a dead coroutine takes no calls), protected and bounded.
LuaFailure failure_in(lua_State* L, lua_State* co) {
  std::string raw;
  if (lua_type(co, -1) == LUA_TSTRING) {
    raw = lua_tostring(co, -1);
  } else {
    raw = std::string("(error object is a ") + luaL_typename(co, -1) + " value)";
    if (luaL_getmetafield(co, -1, "__tostring")) {
      lua_pushvalue(co, -2);
      lua_xmove(co, L, 2);
      int status = 0;
      {
        CallLimit limit(L, kDescribeBudget);
        MemoryLimit memory(L, kResumeMemory);
        status = lua_pcall(L, 1, 1, 0);
      }
      if (status == 0 && lua_type(L, -1) == LUA_TSTRING) raw = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
  }
  LuaFailure f = parse_lua_message(clip_text(raw));
  if (f.file.empty()) {
    lua_Debug ar;
    for (int level = 0; lua_getstack(co, level, &ar); ++level) {
      lua_getinfo(co, "Sl", &ar);
      if (ar.currentline > 0 && ar.source && ar.source[0] == '@') {
        f.file = ar.source + 1;
        f.line = ar.currentline;
        break;
      }
    }
  }
  return f;
}

std::string transcript_of(const std::string& last_request, const nlohmann::json& last_message) {
  if (last_request.empty()) return {};
  auto body = nlohmann::json::parse(last_request, nullptr, false);
  nlohmann::json messages = nlohmann::json::array();
  if (body.is_object()) {
    if (auto it = body.find("messages"); it != body.end() && it->is_array()) messages = std::move(*it);
  }
  if (!last_message.is_null()) messages.push_back(last_message);
  return safe_dump(messages);
}

}  // namespace

ConversationRunner::ConversationRunner(SuiteRuntime& suite) : suite_(suite) {}

ConversationRunner::~ConversationRunner() {
  for (auto& [key, c] : open_) release(c);
}

TimePoint ConversationRunner::deadline(uint32_t key) const {
  auto it = open_.find(key);
  return it == open_.end() ? TimePoint::max() : it->second.start.deadline;
}

void ConversationRunner::release(Conversation& c) {
  lua_State* L = suite_.lua();
  luaL_unref(L, LUA_REGISTRYINDEX, c.thread_ref);
  luaL_unref(L, LUA_REGISTRYINDEX, c.llm_ref);
  c.thread_ref = c.llm_ref = LUA_NOREF;
  c.co = nullptr;
}

void ConversationRunner::close(uint32_t key) {
  auto it = open_.find(key);
  if (it == open_.end()) return;
  release(it->second);
  open_.erase(it);
}

ConversationStep ConversationRunner::start(uint32_t key, ConversationStart start) {
  close(key);
  lua_State* L = suite_.lua();
  Conversation& c = open_[key];
  c.start = std::move(start);
  c.co = lua_newthread(L);
  c.thread_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  push_llm(L, c.co, LlmInit{c.start.task_id, c.start.attempt, c.start.model});
  c.llm_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  suite_.push_function("task");
  suite_.push_cell(c.start.ordinal);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c.llm_ref);
  lua_xmove(L, c.co, 3);
  return resume(key, c, 2);
}

ConversationStep ConversationRunner::answered(uint32_t key, const nlohmann::json& completion, const TurnFacts& facts) {
  Conversation& c = open_.at(key);
  nlohmann::json answer = turn_answer(completion);
  c.last_message = answer["message"];
  ++c.answered;
  c.latency_ms += facts.latency_ms;
  if (facts.prompt_tokens >= 0 && facts.completion_tokens >= 0) {
    c.prompt_tokens += facts.prompt_tokens;
    c.completion_tokens += facts.completion_tokens;
    c.tokens_known = true;
  }
  if (!facts.model_answered.empty()) c.model_answered = facts.model_answered;
  std::string error;
  if (!try_push_json(c.co, answer, error)) {
    // Nothing a provider sends gets here (bodies are depth-checked when read).
    return turn_failed(key, "bad_response", codes::INTERNAL, "the answer cannot reach Lua: " + error);
  }
  return resume(key, c, 1);
}

ConversationStep ConversationRunner::turn_failed(uint32_t key, const std::string& cls, const std::string& code,
                                                 const std::string& message) {
  Conversation& c = open_.at(key);
  c.failed_class = cls;
  c.failed_code = code;
  lua_pushnil(c.co);
  push_turn_failure(c.co, code, message, c.turn);
  return resume(key, c, 2);
}

TaskResultRecord ConversationRunner::stop(uint32_t key, const std::string& code, const std::string& message) {
  Conversation& c = open_.at(key);
  TaskResultRecord r = result_of(c, TaskState::failed, code, message);
  close(key);
  return r;
}

bool ConversationRunner::replay(Conversation& c, const RequestBody& body, ConversationStep& step) {
  if (!c.replaying) return false;
  // The latest record of this turn, made after the turn replayed before it:
  // records past an earlier divergence are history, never answers.
  const RecordedTurn* found = nullptr;
  for (const auto& r : c.start.recorded)
    if (r.turn == c.turn && r.n > c.replayed_n) found = &r;
  nlohmann::json completion;
  if (found && found->request_hash == body.hash && found->model_requested == c.start.model) {
    completion = nlohmann::json::parse(found->response, nullptr, false);
  }
  if (!completion.is_object()) {
    c.replaying = false;  // from here on every turn goes live
    c.start.recorded.clear();
    c.start.recorded.shrink_to_fit();
    return false;
  }
  c.replayed_n = found->n;
  nlohmann::json answer = turn_answer(completion);
  std::string error;
  if (!try_push_json(c.co, answer, error)) {
    c.replaying = false;
    return false;
  }
  c.last_message = answer["message"];
  ++c.answered;
  ++step.replayed;
  c.latency_ms += found->latency_ms;
  if (found->prompt_tokens >= 0 && found->completion_tokens >= 0) {
    c.prompt_tokens += found->prompt_tokens;
    c.completion_tokens += found->completion_tokens;
    c.tokens_known = true;
  }
  if (!found->model_answered.empty()) c.model_answered = found->model_answered;
  return true;
}

ConversationStep ConversationRunner::resume(uint32_t key, Conversation& c, int nargs) {
  lua_State* L = suite_.lua();
  const int max_turns = suite_.suite().conversation.max_turns;
  ConversationStep step;
  for (;;) {
    TimePoint now = SteadyClock::now();
    if (now >= c.start.deadline) {
      step.result = stop(key, codes::TASK_TIMEOUT, "the task ran past conversation.task_timeout_ms (" +
                                                  std::to_string(suite_.suite().conversation.task_timeout_ms) + " ms)");
      step.kind = ConversationStep::Kind::finished;
      return step;
    }
    auto budget = std::min(kResumeBudget, std::chrono::duration_cast<Millis>(c.start.deadline - now) + Millis(1));
    int status = 0;
    bool limit_hit = false;
    {
      CallLimit limit(L, budget);
      MemoryLimit memory(L, kResumeMemory);
      status = lua_resume(c.co, nargs);
      limit_hit = limit.expired();
    }
    if (status != LUA_YIELD) {
      ConversationStep done = finish(key, c, status, limit_hit);
      done.replayed = step.replayed;
      return done;
    }
    if (!is_chat_yield(c.co, lua_gettop(c.co))) {
      step.result = stop(key, codes::TASK_ERROR,
                         "task(cell, llm) yielded outside llm:chat (coroutine.yield in the task itself?)");
      return step;
    }
    nlohmann::json body;
    std::string error;
    if (!try_to_json(c.co, lua_gettop(c.co), body, error, "llm:chat body") || !body.is_object()) {
      lua_settop(c.co, 0);
      lua_pushnil(c.co);
      push_turn_failure(c.co, codes::REQUEST_INVALID,
                        error.empty() ? "llm:chat needs a table of request fields" : clip_text(error), c.turn + 1);
      nargs = 2;
      continue;
    }
    lua_settop(c.co, 0);
    ++c.turn;
    lua_rawgeti(L, LUA_REGISTRYINDEX, c.llm_ref);
    set_llm_turn(L, lua_gettop(L), c.turn);
    lua_pop(L, 1);
    if (c.turn > max_turns) {
      step.result = stop(key, codes::MAX_TURNS, "task(cell, llm) asked for turn " + std::to_string(c.turn) +
                                               "; conversation.max_turns is " + std::to_string(max_turns));
      return step;
    }
    RequestBody request = make_request_body(std::move(body));
    if (c.turn == 1) c.first_hash = request.hash;
    c.last_request = request.text;
    if (replay(c, request, step)) {
      nargs = 1;
      continue;
    }
    step.kind = ConversationStep::Kind::send;
    step.turn = c.turn;
    step.request = std::move(request);
    return step;
  }
}

ConversationStep ConversationRunner::finish(uint32_t key, Conversation& c, int status, bool limit_hit) {
  ConversationStep step;
  step.kind = ConversationStep::Kind::finished;
  lua_State* co = c.co;
  if (status != 0) {
    std::string code, message;
    if (read_turn_failure(co, -1, code, message)) {
      step.result = result_of(c, TaskState::failed, code, message);
    } else if (limit_hit && SteadyClock::now() >= c.start.deadline) {
      step.result = result_of(c, TaskState::failed, codes::TASK_TIMEOUT,
                              "the task's Lua code ran past conversation.task_timeout_ms (" +
                                  std::to_string(suite_.suite().conversation.task_timeout_ms) + " ms)");
    } else {
      LuaFailure f = failure_in(suite_.lua(), co);
      step.result = result_of(c, TaskState::failed, codes::TASK_ERROR, f.describe());
    }
    close(key);
    return step;
  }
  // return result | return nil, reason
  const int n = lua_gettop(co);
  const int type = n >= 1 ? lua_type(co, 1) : LUA_TNIL;
  if (type == LUA_TNIL) {
    std::string reason = n >= 2 && lua_type(co, 2) == LUA_TSTRING ? clip_text(lua_tostring(co, 2))
                                                                   : "task(cell, llm) returned nil";
    step.result = result_of(c, TaskState::failed, codes::CHECK_FAILED, reason);
    close(key);
    return step;
  }
  std::string content;
  if (type == LUA_TSTRING) {
    size_t len = 0;
    const char* text = lua_tolstring(co, 1, &len);
    content.assign(text, len);
  } else if (type == LUA_TTABLE) {
    nlohmann::json value;
    std::string error;
    if (!try_to_json(co, 1, value, error, "result")) {
      step.result = result_of(c, TaskState::failed, codes::TASK_ERROR,
                              clip_text("task(cell, llm) returned a table that is not JSON: " + error));
      close(key);
      return step;
    }
    content = safe_dump(value);
  } else {
    step.result = result_of(c, TaskState::failed, codes::TASK_ERROR,
                            std::string("task(cell, llm) returned a ") + luaL_typename(co, 1) +
                                ": return a string or a table (or nil, reason)");
    close(key);
    return step;
  }
  if (suite_.suite().has_check) {
    lua_State* L = suite_.lua();
    lua_settop(co, 1);
    lua_xmove(co, L, 1);
    std::string reason;
    if (!suite_.check_result(c.start.ordinal, -1, reason)) {
      step.result = result_of(c, TaskState::failed, codes::CHECK_FAILED, reason);
      step.result.content = std::move(content);  // kept: what failed the check
      close(key);
      return step;
    }
  }
  step.result = result_of(c, TaskState::done, "", "");
  step.result.content = std::move(content);
  close(key);
  return step;
}

TaskResultRecord ConversationRunner::result_of(Conversation& c, TaskState state, const std::string& code,
                                               const std::string& message) {
  TaskResultRecord r;
  r.task_id = c.start.task_id;
  r.state = state;
  r.error_code = code;
  r.error_message = clip_text(message);
  // The class of a turn that failed for good, if that failure ended the
  // task; else the code itself, as a class (task_timeout, max_turns, ...).
  if (state == TaskState::done) {
    r.cls = "ok";
  } else if (code == c.failed_code && !c.failed_class.empty()) {
    r.cls = c.failed_class;
  } else {
    r.cls = code;
    for (auto& ch : r.cls) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  r.model = c.model_answered.empty() ? c.start.model : c.model_answered;
  if (c.tokens_known) {
    r.usage_json = safe_dump({{"prompt_tokens", c.prompt_tokens},
                              {"completion_tokens", c.completion_tokens},
                              {"total_tokens", c.prompt_tokens + c.completion_tokens}});
  }
  r.latency_ms = c.answered > 0 ? c.latency_ms : -1;
  r.request_hash = c.first_hash;
  r.turns = c.answered;
  r.conversation = c.start.attempt;
  r.transcript = transcript_of(c.last_request, c.last_message);
  return r;
}

}  // namespace shepherd
