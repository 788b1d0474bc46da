#pragma once
// What the mock answers a chat request with: text, or calls to the tools the
// request offers. A pure function of the request's messages and tools (never
// of a counter, the clock or the scenario's random stream), so a conversation
// replayed after a crash gets the same answers byte for byte.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "mock/details/chat_reply.h"
#include "mock/scenario.h"

namespace shepherd::details {

// Where a request stands in its conversation.
struct ConversationFacts {
  int turn = 0;  // 1 + the messages with role "assistant"; 0 when there are no messages
  int tool_call_answers = 0;  // assistant messages that carry a non-empty "tool_calls"
};

ConversationFacts read_conversation(const nlohmann::json& messages);

// `body` is the parsed request; `tools` the scenario's rule (null: text only).
// Tool calls when the body offers tools, tool_choice is not "none", the
// conversation has had fewer than max_calls tool-calling answers, and a draw
// seeded by the messages and tools falls under call_probability.
ChatAnswer answer_chat(const nlohmann::json& body, const nlohmann::json& messages,
                       const ToolsSpec* tools);

// Arguments for a function with this JSON-schema `parameters`, drawn from
// `seed`: every required property and about half of the others, each of its
// type (the enum or const if given; objects recursively).
std::string tool_arguments(const nlohmann::json& parameters, uint64_t seed);

}  // namespace shepherd::details
