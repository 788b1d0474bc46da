#pragma once
// The body a task sends, serialised once: the suite's fields as JSON text
// without `model` (the host decides it per attempt), the hash that
// identifies the request (stale answers and replayed turns are found by
// it), and what the host adds when it sends.
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace shepherd {

struct RequestBody {
  std::string text;  // compact JSON object, without "model"
  std::string hash;  // request_hash (suite_runtime.h) of the body
  bool sets_stream = false;          // the suite chose `stream` itself
  bool sets_stream_options = false;
  bool streamed_by_suite = false;    // it set "stream": true
  double max_tokens = -1;            // -1: not set
};

// `body` must be a JSON object; its "model", if any, is dropped.
RequestBody make_request_body(nlohmann::json body);

// The text sent: `model` first, streaming added unless the suite chose it.
std::string compose_request(const RequestBody& body, std::string_view model, bool stream, bool stream_usage);

}  // namespace shepherd
