#include "engine/response_reader.h"

#include "engine/stream_assembler.h"

namespace shepherd {

ParsedResponse read_response(HttpResponse& r, size_t max_response_bytes, std::string& stream_error) {
  stream_error.clear();
  // From here on nothing (policies, store, export) can tell it was streamed.
  if (r.transport == Transport::none && r.status >= 200 && r.status < 300 &&
      is_event_stream(r.header("content-type"), r.body)) {
    AssembledStream a = assemble_stream(r.body, max_response_bytes);
    if (a.complete && a.error.empty() && !a.body.empty()) {
      r.body = std::move(a.body);
    } else {
      stream_error = a.error.empty() ? "the stream carried no answer" : "stream: " + a.error;
    }
  } else if (r.transport == Transport::none && r.body.size() > max_response_bytes) {
    // A streamed request may receive more bytes than the limit (its events
    // repeat their head for every token); a server that ignored "stream" and
    // sent one body is held to the limit, as an unstreamed answer is by the
    // HTTP client.
    r.transport = Transport::too_large;
    r.transport_detail = "response body exceeded " + std::to_string(max_response_bytes) + " bytes";
    r.body.resize(max_response_bytes);
  }
  // What is kept of a stream that is not an answer (broken, or cut short by a
  // stall or a reset) is for diagnosis: never more than the limit.
  if ((!stream_error.empty() || r.transport != Transport::none) && r.body.size() > max_response_bytes) {
    r.body.resize(max_response_bytes);
  }
  return stream_error.empty() ? parse_response(r) : parse_response_failure(r, stream_error);
}

OutcomeView outcome_view(const HttpResponse& r, const ParsedResponse& parsed, std::string_view model_requested,
                         std::string_view model_role, const std::string* check_reason) {
  OutcomeView view;
  view.status = r.status;
  view.transport = to_string(r.transport);
  view.headers = &r.headers;
  view.body = parsed.body.is_discarded() ? nullptr : &parsed.body;
  view.raw = r.body;
  view.elapsed_ms = r.elapsed_ms;
  view.model_requested = model_requested;
  view.model_answered = parsed.model;
  view.model_role = model_role;
  view.content = parsed.is_completion ? &parsed.content : nullptr;
  view.finish_reason = parsed.finish_reason;
  view.refusal = parsed.refusal;
  view.tool_calls = parsed.has_tool_calls;
  view.error_code = parsed.error_code;
  view.error_message = parsed.error_message;
  view.check = check_reason;
  return view;
}

}  // namespace shepherd
