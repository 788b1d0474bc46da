#pragma once
// What llm:chat returns for one answered turn, built from the chat
// completion alone: a live answer and the same answer replayed from the
// store give the same table, so a resumed conversation builds the same
// next request.
#include <nlohmann/json.hpp>

namespace shepherd {

// {content, message, tool_calls, finish_reason, usage, model}: `message` is
// the assistant message ready to append (role, content when it is text,
// tool_calls as {id, type, function = {name, arguments}}); absent fields are
// left out (nil in Lua).
nlohmann::json turn_answer(const nlohmann::json& completion);

}  // namespace shepherd
