#pragma once
// The `llm` object a conversation's task(cell, llm) gets: llm:chat(body)
// yields the turn's body to the host, which resumes the coroutine with the
// answer (or a turn failure, raised in the task as an error object carrying
// the turn's code); llm:random() draws from a generator seeded by the task
// id and the conversation's attempt, so simulated tools replay identically;
// llm.turn, llm.model, llm.task and llm.attempt describe the conversation.
#include <cstdint>
#include <string>

#include "lua/lua_state.h"

namespace shepherd {

struct LlmInit {
  std::string task_id;
  int attempt = 1;    // the try at this conversation
  std::string model;  // the model every turn goes to
};

// Pushes a new llm object bound to the coroutine `co` (llm:chat refuses any
// other coroutine: a yield from a nested one would never reach the host).
void push_llm(lua_State* L, lua_State* co, const LlmInit& init);

// llm.turn = turn (the object at `index`).
void set_llm_turn(lua_State* L, int index, int turn);

// After lua_resume(co) returned LUA_YIELD with `nresults` values: whether
// the coroutine yielded from llm:chat; the body is then at the top of co.
bool is_chat_yield(lua_State* co, int nresults);

// The error object a failed turn raises in the task: a table
// {code, message, turn} whose tostring is "CODE: message".
void push_turn_failure(lua_State* L, const std::string& code, const std::string& message, int turn);

// Whether the value at `index` is such an object; fills code and message.
bool read_turn_failure(lua_State* L, int index, std::string& code, std::string& message);

}  // namespace shepherd
