#include "suite/request_body.h"

#include "core/hash.h"
#include "core/text.h"

namespace shepherd {

RequestBody make_request_body(nlohmann::json body) {
  RequestBody out;
  body.erase("model");
  if (auto it = body.find("stream"); it != body.end()) {
    out.sets_stream = true;
    out.streamed_by_suite = it->is_boolean() && it->get<bool>();
  }
  out.sets_stream_options = body.contains("stream_options");
  if (auto it = body.find("max_tokens"); it != body.end() && it->is_number()) out.max_tokens = it->get<double>();
  out.text = safe_dump(body);
  out.hash = stable_hash_hex(out.text);
  return out;
}

std::string compose_request(const RequestBody& body, std::string_view model, bool stream, bool stream_usage) {
  std::string out;
  out.reserve(body.text.size() + model.size() + 80);
  out += "{\"model\":";
  out += nlohmann::json(std::string(model)).dump();
  // Streaming by default, so that silence is seen as a stall within
  // seconds; a suite that sets `stream` itself keeps its choice.
  if (stream && !body.sets_stream) {
    out += ",\"stream\":true";
    if (stream_usage && !body.sets_stream_options) out += ",\"stream_options\":{\"include_usage\":true}";
  }
  if (body.text.size() > 2) {
    out += ',';
    out.append(body.text, 1, std::string::npos);
  } else {
    out += '}';
  }
  return out;
}

}  // namespace shepherd
