#include "mock/details/chat_stream.h"

#include <algorithm>

namespace shepherd::details {
namespace {

// Shapes as recorded from the live API (openai-python's stream snapshots):
// every chunk repeats id, object, created and model; a choice carries index,
// delta, logprobs and finish_reason; with include_usage every chunk also has
// "usage": null except the last, whose choices are empty.
void append_head(std::string& out, const StreamHead& head) {
  out += R"(data: {"id":"chatcmpl-mock-)";
  out += std::to_string(head.id);
  out += R"(","object":"chat.completion.chunk","created":)";
  out += std::to_string(head.created);
  out += R"(,"model":)";
  append_json_string(out, head.model);
}

// One chunk with one choice; `delta` is a JSON object, `finish_reason` JSON too.
std::string choice_chunk(const StreamHead& head, std::string_view delta,
                         std::string_view finish_reason) {
  std::string out;
  out.reserve(200 + head.model.size() + delta.size());
  append_head(out, head);
  out += R"(,"choices":[{"index":0,"delta":)";
  out += delta;
  out += R"(,"logprobs":null,"finish_reason":)";
  out += finish_reason;
  out += "}]";
  if (head.include_usage) out += R"(,"usage":null)";
  out += "}\n\n";
  return out;
}

std::string content_chunk(const StreamHead& head, std::string_view piece) {
  std::string delta = R"({"content":)";
  append_json_string(delta, piece);
  delta += '}';
  return choice_chunk(head, delta, "null");
}

// A tool call opens with its id, type and name and empty arguments (the first
// call together with the role, as OpenAI sends it); the arguments follow in
// fragments that carry only the call's index.
std::string tool_call_open(size_t index, const ToolCall& call) {
  std::string out = R"({"index":)";
  out += std::to_string(index);
  out += R"(,"id":)";
  append_json_string(out, call.id);
  out += R"(,"type":"function","function":{"name":)";
  append_json_string(out, call.name);
  out += R"(,"arguments":""}})";
  return out;
}

std::string tool_call_chunk(const StreamHead& head, size_t index, const ToolCall& call) {
  std::string delta;
  if (index == 0) delta = R"({"role":"assistant","content":null,"tool_calls":[)";
  else delta = R"({"tool_calls":[)";
  delta += tool_call_open(index, call);
  delta += index == 0 ? R"(],"refusal":null})" : "]}";
  return choice_chunk(head, delta, "null");
}

std::string arguments_chunk(const StreamHead& head, size_t index, std::string_view piece) {
  std::string delta = R"({"tool_calls":[{"index":)";
  delta += std::to_string(index);
  delta += R"(,"function":{"arguments":)";
  append_json_string(delta, piece);
  delta += "}}]}";
  return choice_chunk(head, delta, "null");
}

// The events of an answer before its finish: the opening chunk (the role),
// then one event per piece of the content or of each call's arguments.
std::vector<std::string> answer_events(const StreamHead& head, const ChatAnswer& answer) {
  std::vector<std::string> events;
  if (answer.tool_calls.empty()) {
    events.push_back(choice_chunk(head, R"({"role":"assistant","content":""})", "null"));
    for (std::string_view piece : split_content(answer.content))
      events.push_back(content_chunk(head, piece));
    return events;
  }
  for (size_t i = 0; i < answer.tool_calls.size(); ++i) {
    const ToolCall& call = answer.tool_calls[i];
    events.push_back(tool_call_chunk(head, i, call));
    for (std::string_view piece : split_content(call.arguments))
      events.push_back(arguments_chunk(head, i, piece));
  }
  return events;
}

std::string usage_chunk(const StreamHead& head, const ChatAnswer& answer) {
  std::string out;
  append_head(out, head);
  out += R"(,"choices":[],"usage":{"prompt_tokens":)";
  out += std::to_string(answer.prompt_tokens);
  out += R"(,"completion_tokens":)";
  out += std::to_string(answer.completion_tokens);
  out += R"(,"total_tokens":)";
  out += std::to_string(answer.prompt_tokens + answer.completion_tokens);
  out += "}}\n\n";
  return out;
}

// The event with its JSON cut in half: a client parsing it must fail.
std::string broken(const std::string& event) {
  constexpr std::string_view data = "data: ";
  const size_t json_size = event.size() - data.size() - 2;  // without "data: " and "\n\n"
  std::string out = event.substr(0, data.size() + json_size / 2);
  out += "\n\n";
  return out;
}

}  // namespace

std::vector<std::string_view> split_content(std::string_view content) {
  std::vector<size_t> starts;  // byte offset of every code point
  for (size_t i = 0; i < content.size(); ++i)
    if ((static_cast<unsigned char>(content[i]) & 0xC0) != 0x80) starts.push_back(i);
  const size_t chars = starts.size();
  const size_t count = std::min(chars, std::clamp<size_t>(chars / 12, 4, 8));
  std::vector<std::string_view> pieces;
  pieces.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    const size_t from = starts[i * chars / count];
    const size_t to = i + 1 == count ? content.size() : starts[(i + 1) * chars / count];
    pieces.push_back(content.substr(from, to - from));
  }
  return pieces;
}

StreamPlan stream_plan(const StreamHead& head, const ChatAnswer& answer, StreamFault fault) {
  std::vector<std::string> events = answer_events(head, answer);
  const size_t pieces = events.size() - 1;  // after the opening chunk
  if (fault == StreamFault::malformed && pieces > 0) {
    std::string& victim = events[1 + pieces / 2];
    victim = broken(victim);
  }
  StreamPlan plan;
  // The first piece comes with the opening chunk; every later event is a step.
  plan.steps.push_back(std::move(events[0]));
  for (size_t i = 1; i < events.size(); ++i) {
    if (i == 1)
      plan.steps.front() += events[i];
    else
      plan.steps.push_back(std::move(events[i]));
  }

  if (fault == StreamFault::stall || fault == StreamFault::reset) {
    // Part of the answer, then the fault: at least the opening and one piece.
    plan.steps.resize(std::max<size_t>(1, pieces / 2));
    plan.ending = fault == StreamFault::stall ? StreamPlan::Ending::stall
                                              : StreamPlan::Ending::reset;
    return plan;
  }
  std::string last =
      choice_chunk(head, "{}", answer.tool_calls.empty() ? R"("stop")" : R"("tool_calls")");
  if (head.include_usage) last += usage_chunk(head, answer);
  last += done_event;
  plan.steps.push_back(std::move(last));
  return plan;
}

}  // namespace shepherd::details
