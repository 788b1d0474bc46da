#pragma once
// One HTTP answer made ready for the policies: a streamed answer assembled
// into the chat completion it spells out (or the error it reported), the body
// parsed, and the view classify() reads. The engine and the provider-corpus
// test go through exactly this path.
#include <string>
#include <string_view>

#include "engine/response_parser.h"
#include "http/http_types.h"
#include "policy/policy_io.h"

namespace shepherd {

// Replaces r.body with the assembled completion when r is a complete event
// stream; a stream that breaks off keeps its raw text and `stream_error` says
// why (its body is then not read as an answer).
ParsedResponse read_response(HttpResponse& r, size_t max_response_bytes, std::string& stream_error);

// The view points into r, parsed and check_reason: they must outlive it.
OutcomeView outcome_view(const HttpResponse& r, const ParsedResponse& parsed, std::string_view model_requested,
                         std::string_view model_role, const std::string* check_reason);

}  // namespace shepherd
