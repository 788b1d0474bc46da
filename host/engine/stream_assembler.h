#pragma once
// Streamed chat completions (server-sent events of chat.completion.chunk)
// assembled into the one chat.completion JSON object the rest of the engine
// reads, so response_parser and the policies never learn that an answer was
// streamed. Pure: bytes in, one result out; no I/O, no logging, no throwing.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shepherd {

struct AssembledStream {
  bool complete = false;  // the stream ended properly: [DONE], or every choice got a finish_reason
  std::string body;       // a chat.completion JSON object (compact) — or, when the stream carried an
                          // error event, the provider's error as {"error": {...}} — empty if nothing usable
  std::string error;      // why the stream is unusable (truncated, bad chunk JSON, too large, not SSE);
                          // empty when fine
};

// Reads server-sent events (WHATWG framing: lines end in \n, \r\n or \r; a
// blank line dispatches; ':' starts a comment) and merges the chunks per
// choice index and tool-call index. Bytes may arrive split anywhere, even
// inside a line or a UTF-8 sequence. Everything is bounded: the assembled
// content, the pending line and the pending event never exceed
// max_body_bytes (plus a small allowance for the JSON around one delta);
// every chunk is parsed depth-checked.
class StreamAssembler {
 public:
  explicit StreamAssembler(size_t max_body_bytes = 8u << 20);

  void feed(std::string_view bytes);  // any split, even mid-line or mid-UTF-8 sequence
  AssembledStream finish();           // after the last byte

 private:
  struct ToolCall {
    std::string id;
    std::string type;
    std::string name;
    std::string arguments;
  };
  struct Choice {
    std::string role;
    std::string content;
    std::string reasoning;
    std::string refusal;
    std::string finish_reason;
    bool finished = false;
    std::map<int64_t, ToolCall> tool_calls;  // by the delta's index: parallel calls interleave
  };
  enum class State { reading, done, provider_error, failed };

  void feed_bytes(std::string_view bytes);
  void on_line(std::string_view line);
  void dispatch(std::string_view event_type, std::string_view data, bool at_end);
  void on_error_event(std::string_view data);
  void merge_chunk(const nlohmann::json& chunk, bool repaired);
  void merge_delta(Choice& choice, const nlohmann::json& delta, bool repaired);
  void merge_tool_call(Choice& choice, const nlohmann::json& call, bool repaired);
  void append(std::string& to, std::string_view text);
  bool charge(size_t bytes);  // counts toward max_body_bytes; false (and failed) beyond it
  void fail(std::string why, bool keep_partial = false);
  std::string build_completion() const;

  size_t max_body_bytes_;
  size_t max_pending_bytes_;  // one line or one event: the body limit plus room for the JSON around it
  size_t assembled_bytes_ = 0;
  State state_ = State::reading;
  std::string error_;
  bool keep_partial_ = false;  // on failure, the body still shows what was assembled
  std::string error_body_;  // {"error": …} when the provider reported one mid-stream
  bool finished_ = false;

  // Framing.
  std::string bom_probe_;   // the first bytes, until we know whether they are a UTF-8 BOM
  bool bom_checked_ = false;
  bool skip_lf_ = false;    // the last line ended in \r: a \n right after it belongs to it
  std::string line_;
  std::string data_;        // data lines of the pending event, joined with \n
  std::string event_type_;
  bool saw_sse_ = false;    // any SSE field or comment at all
  std::string raw_;         // the lines while nothing SSE-like has been seen (a server that ignored stream)
  bool raw_overflow_ = false;

  // Assembly.
  bool saw_chunk_ = false;
  bool repaired_any_ = false;  // some chunk needed its strings repaired (split UTF-8 or surrogates)
  nlohmann::json id_, created_, model_, system_fingerprint_, usage_;
  std::map<int64_t, Choice> choices_;
};

// Whether a response body should be read as server-sent events: Content-Type
// text/event-stream, or a body that begins with "data:", "event:", "id:",
// "retry:" or ":" after optional whitespace/BOM (no JSON text can begin so,
// so the sniff is safe whatever the header says).
bool is_event_stream(std::string_view content_type, std::string_view body);

// Convenience: feed the whole body at once.
AssembledStream assemble_stream(std::string_view body, size_t max_body_bytes = 8u << 20);

}  // namespace shepherd
