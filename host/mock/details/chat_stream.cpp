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
  const std::vector<std::string_view> pieces = split_content(answer.content);
  StreamPlan plan;
  plan.steps.push_back(choice_chunk(head, R"({"role":"assistant","content":""})", "null"));
  for (size_t i = 0; i < pieces.size(); ++i) {
    std::string event = content_chunk(head, pieces[i]);
    if (fault == StreamFault::malformed && i == pieces.size() / 2) event = broken(event);
    if (i == 0)
      plan.steps.front() += event;  // the first token comes with the role
    else
      plan.steps.push_back(std::move(event));
  }

  if (fault == StreamFault::stall || fault == StreamFault::reset) {
    // Part of the content, then the fault: at least the role and one piece.
    plan.steps.resize(std::max<size_t>(1, pieces.size() / 2));
    plan.ending = fault == StreamFault::stall ? StreamPlan::Ending::stall
                                              : StreamPlan::Ending::reset;
    return plan;
  }
  std::string last = choice_chunk(head, "{}", R"("stop")");
  if (head.include_usage) last += usage_chunk(head, answer);
  last += done_event;
  plan.steps.push_back(std::move(last));
  return plan;
}

}  // namespace shepherd::details
