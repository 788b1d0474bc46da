#pragma once
// A streamed chat completion as OpenAI sends it: server-sent events, each
// "data: {chat.completion.chunk}\n\n", then "data: [DONE]\n\n".
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mock/details/chat_reply.h"

namespace shepherd::details {

// The fault a stream meets, if any (hang and error_500 are never streamed).
enum class StreamFault { none, stall, reset, malformed };

struct StreamPlan {
  enum class Ending {
    done,   // the last step ends with [DONE]; the response is complete
    stall,  // after the last step: silence until the client gives up
    reset,  // after the last step: the connection is reset
  };
  // What the server writes, one step at a time: steps[0] (the role chunk and
  // the first piece of content or arguments) after the latency, each further
  // step chunk_ms later. The last step of a complete stream holds the finish
  // chunk, the usage chunk (when asked for) and [DONE].
  std::vector<std::string> steps;
  Ending ending = Ending::done;
};

// The identity every chunk of one stream repeats.
struct StreamHead {
  uint64_t id = 0;  // "chatcmpl-mock-<id>", as for a completion
  int64_t created = 0;
  std::string_view model;    // the answering model
  bool include_usage = false;  // stream_options.include_usage: a usage chunk at the end
};

// Text streams as content deltas; tool calls as OpenAI streams them: the
// role chunk opens the first call (id, type, name, "arguments": ""), its
// arguments follow in fragments, each further call opens in its own chunk,
// and the finish chunk says "tool_calls".
StreamPlan stream_plan(const StreamHead& head, const ChatAnswer& answer, StreamFault fault);

// The content cut into 4 to 8 pieces of about equal length (fewer when it is
// shorter than 4 characters), never inside a UTF-8 sequence.
std::vector<std::string_view> split_content(std::string_view content);

// The SSE comment written while a stream waits (as OpenRouter does).
inline constexpr std::string_view keep_alive_comment = ": keep-alive\n\n";
inline constexpr std::string_view done_event = "data: [DONE]\n\n";

}  // namespace shepherd::details
